//! Packaging an example into a pvrexport: real static binaries, busybox,
//! mksquashfs. Uses a synthetic example that runs the daemon's binary so it
//! does not depend on which examples exist yet. No Docker needed.

use std::process::Command;

use harness::config::Config;
use harness::examples::{self, Example};
use harness::pvrexport::Pvrexport;
use serde_json::json;

#[test]
fn example_becomes_a_verifiable_pvrexport_with_a_runnable_rootfs() {
    let config = Config::get().expect("config");
    harness::binaries::build(config).expect("static build");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pvx-packaging-test");
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("rootfs/etc/extra.conf"), "hello\n").unwrap();
    std::fs::write(
        dir.join("args.json"),
        json!({"PV_SERVICES_REQUIRED": [{"name": "raw-unix",
               "target": "/run/pv/services/raw-unix.sock"}]})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.join("harness.json"),
        json!({"binary": "pv-xconnect", "cmd": ["/usr/bin/pv-xconnect", "--help"]}).to_string(),
    )
    .unwrap();
    let ex = Example::load(&dir).expect("loads");
    let built = examples::build_export(config, &ex).expect("packages");
    let e = Pvrexport::read(&built.path).expect("reads back");
    e.verify().expect("objects match their hashes");
    assert_eq!(e.containers(), vec!["pvx-packaging-test".to_string()]);
    let run = &e.state["pvx-packaging-test/run.json"];
    assert_eq!(run["services"]["required"][0]["name"], "raw-unix");
    let conf_sha = e.state["pvx-packaging-test/lxc.container.conf"]
        .as_str()
        .unwrap();
    let conf = String::from_utf8(e.objects[conf_sha].clone()).unwrap();
    assert!(
        conf.contains("lxc.init.cmd = /usr/bin/pv-xconnect \"--help\"\n"),
        "{conf}"
    );

    // The squashfs really holds the binary, busybox's shell and the overlay.
    let sq_sha = e.state["pvx-packaging-test/root.squashfs"]
        .as_str()
        .unwrap();
    let sq = tmp.path().join("root.squashfs");
    std::fs::write(&sq, &e.objects[sq_sha]).unwrap();
    let out = Command::new("unsquashfs")
        .arg("-l")
        .arg(&sq)
        .output()
        .expect("unsquashfs");
    let list = String::from_utf8_lossy(&out.stdout);
    for want in [
        "/usr/bin/pv-xconnect",
        "/bin/busybox",
        "/bin/sh",
        "/etc/extra.conf",
        "/etc/passwd",
    ] {
        assert!(
            list.contains(&format!("squashfs-root{want}\n")),
            "{want} missing:\n{list}"
        );
    }
    // Same inputs: the cached export is reused, byte for byte.
    let again = examples::build_export(config, &ex).expect("cached");
    assert_eq!(again.path, built.path);
}
