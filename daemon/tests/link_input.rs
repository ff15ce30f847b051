//! `input` links on the real kernel (run as root), like `link_drm.rs`.
//! The provider's evdev node is made with mknod (13:N, what a uinput
//! device's `eventN` is); the consumer must receive an identical node,
//! lose it when the link stops, and never receive a node that resolves
//! outside the provider's root or is not an input device.

mod common;

use std::sync::Arc;

use common::{assert_char_node, node_spec};
use pv_testkit::Container;
use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link::{self, LinkError};
use pv_xconnect::shutdown::Shutdown;

fn spec(c: &Container, p: &Container, target: &str, device: &str) -> Arc<LinkSpec> {
    node_spec(ServiceType::Input, "keyboard", (c, p), target, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_gets_the_providers_evdev_node_and_loses_it_on_stop() {
    let p = Container::start("input-provider", "sleep infinity");
    let c = Container::start("input-consumer", "sleep infinity");
    p.sh(
        "mkdir -p /dev/input && mknod -m 0640 /dev/input/event7 c 13 71 && chown 0:105 /dev/input/event7",
    );
    let root = Shutdown::new();
    // Another path in the consumer than in the provider.
    let h = link::start(
        spec(&c, &p, "/dev/input/event0", "/dev/input/event7"),
        &root,
    )
    .await
    .expect("input link starts");
    assert_char_node(&c.path("/dev/input/event0"), (13, 71), 0o640, (0, 105));
    assert!(
        !std::path::Path::new("/dev/input/event0").exists(),
        "not on the host"
    );
    // The consumer sees it in its own namespace with the same numbers.
    let out = c.exec("stat -c '%F %t:%T' /dev/input/event0");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "character special file d:47"
    );

    h.stop().await;
    assert!(
        !c.path("/dev/input/event0").exists(),
        "node removed on stop"
    );
    assert!(
        p.path("/dev/input/event7").exists(),
        "the provider's node is left alone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_sources_are_refused() {
    let p = Container::start("input-hostile", "sleep infinity");
    let c = Container::start("input-victim", "sleep infinity");
    assert!(
        std::path::Path::new("/dev/loop0").exists(),
        "host block device /dev/loop0 exists for this test"
    );
    // A host input node the provider must not reach through a symlink.
    std::fs::create_dir_all("/tmp/pvx-input-host").unwrap();
    let _ = std::fs::remove_file("/tmp/pvx-input-host/event9");
    nix::sys::stat::mknod(
        "/tmp/pvx-input-host/event9",
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        nix::sys::stat::makedev(13, 73),
    )
    .expect("mknod a host input node");
    p.sh("mkdir -p /dev/input && ln -s /dev/loop0 /dev/input/event0 \
         && ln -s /dev/null /dev/input/event1 && mknod /dev/input/event2 b 7 0 \
         && ln -s ../../../../../tmp/pvx-input-host/event9 /dev/input/event3 \
         && mknod /dev/input/event4 c 226 0 && touch /dev/input/event5 \
         && mknod /dev/input/event6 c 10 223");
    let root = Shutdown::new();
    for (dev, why) in [
        ("/dev/input/event0", "cannot be resolved"),
        ("/dev/input/event1", "not input"),
        ("/dev/input/event2", "block device"),
        ("/dev/input/event3", "cannot be resolved"),
        ("/dev/input/event4", "not input"),
        ("/dev/input/event5", "not a character device"),
        ("/dev/input/event6", "not input"),
    ] {
        let target = "/dev/input/event0";
        match link::start(spec(&c, &p, target, dev), &root).await {
            Err(LinkError::Refused(msg)) => assert!(msg.contains(why), "{dev}: {msg}"),
            Err(other) => panic!("{dev}: wrong error {other}"),
            Ok(h) => {
                h.stop().await;
                panic!("{dev} was accepted");
            }
        }
        assert!(!c.path(target).exists(), "{dev}: nothing created");
    }
    let _ = std::fs::remove_dir_all("/tmp/pvx-input-host");
}
