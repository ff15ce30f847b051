//! `drm` links on the real kernel (run as root). There is no DRM driver
//! here, so the provider's "GPU" is a node made with mknod (226:N); the
//! consumer must receive an identical node. Hostile providers (symlinks to
//! host block devices or to /dev/null, block nodes) must be refused.

mod common;

use std::sync::Arc;

use common::{assert_char_node, node_spec};
use pv_testkit::Container;
use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link::{self, LinkError};
use pv_xconnect::shutdown::Shutdown;

fn spec(c: &Container, p: &Container, target: &str, device: &str) -> Arc<LinkSpec> {
    node_spec(ServiceType::Drm, "drm-master", (c, p), target, device)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_gets_the_providers_drm_node_and_loses_it_on_stop() {
    let p = Container::start("drm-provider", "sleep infinity");
    let c = Container::start("drm-master", "sleep infinity");
    p.sh(
        "mkdir -p /dev/dri && mknod -m 0620 /dev/dri/card0 c 226 0 && chown 0:44 /dev/dri/card0 \
         && mknod -m 0666 /dev/dri/renderD128 c 226 128",
    );
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, "/dev/dri/card0", "/dev/dri/card0"), &root)
        .await
        .expect("drm link starts");
    assert_char_node(&c.path("/dev/dri/card0"), (226, 0), 0o620, (0, 44));
    assert!(
        !std::path::Path::new("/dev/dri/card0").exists(),
        "not on the host"
    );
    // Opening it reaches the (absent) driver: ENXIO, not ENOENT.
    let out = c.exec("cat /dev/dri/card0 2>&1; true");
    println!(
        "open in consumer (no DRM driver on this machine): {}",
        String::from_utf8_lossy(&out.stdout).trim()
    );

    // A render node under a different target path.
    let h2 = link::start(
        spec(&c, &p, "/dev/dri/renderD128", "/dev/dri/renderD128"),
        &root,
    )
    .await
    .unwrap();
    assert_char_node(&c.path("/dev/dri/renderD128"), (226, 128), 0o666, (0, 0));

    h.stop().await;
    h2.stop().await;
    assert!(!c.path("/dev/dri/card0").exists(), "node removed on stop");
    assert!(!c.path("/dev/dri/renderD128").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_drm_sources_are_refused() {
    let p = Container::start("drm-hostile", "sleep infinity");
    let c = Container::start("drm-victim", "sleep infinity");
    assert!(
        std::path::Path::new("/dev/loop0").exists(),
        "host block device /dev/loop0 exists for this test"
    );
    p.sh(
        "mkdir -p /dev/dri && ln -s /dev/loop0 /dev/dri/card0 && ln -s /dev/null /dev/dri/card1 \
         && mknod /dev/dri/card2 b 7 0 && ln -s ../../../../../dev/loop0 /dev/dri/card3 \
         && mknod /dev/dri/card4 c 1 5 && touch /dev/dri/card5",
    );
    let root = Shutdown::new();
    for (dev, why) in [
        ("/dev/dri/card0", "cannot be resolved"),
        ("/dev/dri/card1", "not DRM"),
        ("/dev/dri/card2", "block device"),
        ("/dev/dri/card3", "cannot be resolved"),
        ("/dev/dri/card4", "not DRM"),
        ("/dev/dri/card5", "not a character device"),
    ] {
        let target = "/dev/dri/card0";
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
}
