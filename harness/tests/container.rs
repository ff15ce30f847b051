//! The appengine container itself, independent of what runs inside:
//! capability set, devices, installed exports, exec, and removal when the
//! handle is dropped (also on panic).

use harness::appengine::{Appengine, BootOptions, PVTX_DIR};

fn exists(name: &str) -> bool {
    std::process::Command::new("docker")
        .args(["inspect", "--type", "container", name])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
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
        examples: Vec::new(),
        wait_ready: false,
        ..Default::default()
    })
    .expect("boots");
    let name = ae.name.clone();
    assert!(exists(&name), "container {name} runs");

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
    assert!(
        !volume_exists(&format!("{name}-storage")),
        "volume left behind"
    );
}
