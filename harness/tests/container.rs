//! The appengine container itself, independent of what runs inside:
//! capability set, devices, installed exports, exec, and removal when the
//! handle is dropped (also on panic).

use harness::appengine::{Appengine, BootOptions, Examples, PVTX_DIR, STORAGE};

fn exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// `(destination, volume name)` of each volume mounted in a container.
fn volumes_of(name: &str) -> Vec<(String, String)> {
    let out = std::process::Command::new("docker")
        .args([
            "inspect",
            "--type",
            "container",
            "-f",
            "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Destination}} {{.Name}}\n{{end}}{{end}}",
            name,
        ])
        .output()
        .expect("docker inspect");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(d, n)| (d.to_string(), n.to_string()))
        .collect()
}

fn volume_exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["volume", "inspect", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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
    // No network but loopback.
    let ifs = ae.sh("ls /sys/class/net").expect("ifs");
    assert_eq!(ifs.split_whitespace().collect::<Vec<_>>(), vec!["lo"]);

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
}
