//! The appengine container itself, independent of what runs inside:
//! capability set, devices, installed exports, exec, and removal when the
//! handle is dropped (also on panic).

use std::path::Path;
use std::time::{Duration, Instant};

use harness::appengine::{Appengine, BootOptions, Examples, PVTX_DIR, STORAGE};

/// `docker <args>`'s stdout, or `None` if it failed.
fn docker(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("docker")
        .args(args)
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn exists(name: &str) -> bool {
    docker(&["inspect", "--type", "container", name]).is_some()
}

/// `docker inspect -f <format>` of a container that exists.
fn inspect(name: &str, format: &str) -> String {
    docker(&["inspect", "--type", "container", "-f", format, name])
        .unwrap_or_else(|| panic!("docker inspect {name}"))
}

/// `(destination, volume name)` of each volume mounted in a container.
fn volumes_of(name: &str) -> Vec<(String, String)> {
    inspect(
        name,
        "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Destination}} {{.Name}}\n{{end}}{{end}}",
    )
    .lines()
    .filter_map(|l| l.split_once(' '))
    .map(|(d, n)| (d.to_string(), n.to_string()))
    .collect()
}

/// Docker's network mode of a container (`none`: loopback only).
fn network_mode(name: &str) -> String {
    inspect(name, "{{.HostConfig.NetworkMode}}")
        .trim()
        .to_string()
}

fn volume_exists(name: &str) -> bool {
    docker(&["volume", "inspect", name]).is_some()
}

#[test]
fn container_has_devices_exports_and_is_removed_after_panic() {
    let ae = Appengine::boot(BootOptions {
        group: "container".into(),
        examples: Examples::All,
        wait_ready: false,
        ..Default::default()
    })
    .expect("boots");
    let name = ae.name.clone();
    assert!(exists(&name), "container {name} runs");
    // pvtx.d and the storage live on volumes, not on Docker's overlay.
    let volumes = volumes_of(&name);
    let mut dests: Vec<&str> = volumes.iter().map(|(d, _)| d.as_str()).collect();
    dests.sort_unstable();
    assert_eq!(dests, vec![PVTX_DIR, STORAGE], "{volumes:?}");

    // DRM nodes with the right numbers (placeholders here: no host DRM).
    let dri = ae
        .sh("stat -c '%n %t:%T' /dev/dri/card0 /dev/dri/renderD128")
        .expect("dri nodes");
    assert!(dri.contains("/dev/dri/card0 e2:0"), "{dri}");
    assert!(dri.contains("/dev/dri/renderD128 e2:80"), "{dri}");
    if !ae.host_drm {
        harness::util::note("host has no /dev/dri: checked the placeholder nodes only");
    }
    // Loop devices for squashfs and the capabilities LXC needs.
    ae.sh("test -c /dev/loop-control && test -b /dev/loop0")
        .expect("loop nodes");
    let caps = ae.sh("grep CapEff /proc/self/status").expect("caps");
    assert!(!caps.contains("0000000000000000"), "{caps}");
    // Mounting works (LXC and the squashfs mounts need it).
    ae.sh("mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && umount /tmp/m")
        .expect("mount inside the appengine");
    // Installed exports are in pvtx.d under their upstream names.
    let listing = ae.sh(&format!("ls {PVTX_DIR}")).expect("ls pvtx.d");
    for ex in &ae.installed {
        assert!(
            listing.contains(&format!("{ex}.pvrexport.tgz")),
            "{ex} missing in {listing}"
        );
    }
    // No way out: Docker gave it no network (`--network none`) and
    // nothing inside has a default route. Interfaces are not counted: real
    // Pantavisor creates its own `lxcbr0` bridge (the containers' side),
    // which reaches nothing outside the appengine.
    assert_eq!(network_mode(&name), "none");
    let routes = ae.sh("cat /proc/net/route").expect("routes");
    let default: Vec<&str> = routes
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some("00000000"))
        .collect();
    assert!(default.is_empty(), "default route inside: {default:?}");

    // Squashfs images on loop devices: those belong to the host kernel and
    // outlive a killed container unless released (real Pantavisor attaches
    // them without autoclear).
    let loops = ae
        .wait_for(
            "a container root on a loop device",
            Duration::from_secs(120),
            |ae| {
                let out = ae.sh(
                    "cat /proc/[0-9]*/mounts 2>/dev/null | cut -d' ' -f1 | grep '^/dev/loop[0-9]' | sort -u; true",
                )?;
                let devs: Vec<String> = out.lines().map(|l| l.trim().to_string()).collect();
                Ok((!devs.is_empty()).then_some(devs))
            },
        )
        .expect("squashfs mounted");

    // A panicking test still removes its appengine and volumes.
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _ae = ae;
        panic!("deliberate");
    }));
    assert!(r.is_err());
    assert!(!exists(&name), "container {name} left behind");
    for (dest, vol) in &volumes {
        assert!(!volume_exists(vol), "volume {vol} ({dest}) left behind");
    }
    // ... and its loop devices are free again (the kernel detaches them
    // when their last mount goes, a moment after the removal).
    let attached = |d: &str| {
        let n = d.trim_start_matches("/dev/");
        Path::new(&format!("/sys/block/{n}/loop/backing_file")).exists()
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    while loops.iter().any(|d| attached(d)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left: Vec<&String> = loops.iter().filter(|d| attached(d)).collect();
    assert!(
        left.is_empty(),
        "loop devices still attached: {left:?} (of {loops:?})"
    );
}
