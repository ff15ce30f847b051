//! `wayland` links across real namespaces: our compositor in a provider
//! container, our client and Debian's wayland-info in a consumer container,
//! wired by `link::start` exactly as the daemon does for a graph entry
//! (`wayland-0`, socket and target `/run/wayland-0`, as upstream's example
//! manifests). Needs root.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pv_testkit::{require_tool, Container};
use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link;
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;

fn spec(consumer: &Container, provider: &Container, interface: &str) -> Arc<LinkSpec> {
    LinkSpecBuilder::new(ServiceType::Wayland)
        .consumer(&consumer.name, consumer.pid)
        .provider(&provider.name, provider.pid)
        .name("wayland-0")
        .interface(interface)
        .target("/run/wayland-0")
        .socket("/run/wayland-0")
        .arc()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_in_consumer_draws_on_compositor_in_provider() {
    let server = Path::new(env!("CARGO_BIN_EXE_e2e-wayland-server"));
    let client = Path::new(env!("CARGO_BIN_EXE_e2e-wayland-client"));
    let bins = server.parent().expect("binary directory");
    let p = Container::start_with_binds(
        "wl-prov",
        &format!("{} > /tmp/compositor.log 2>&1", server.display()),
        &[bins],
    );
    assert!(
        p.wait_for("/run/wayland-0", Duration::from_secs(10)),
        "compositor socket in provider"
    );
    let c = Container::start_with_binds("wl-cons", "sleep infinity", &[bins]);
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, "wayland"), &root)
        .await
        .expect("link starts");

    let out = c.exec(&format!(
        "WAYLAND_DISPLAY=/run/wayland-0 {} --once --timeout 5",
        client.display()
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "client in consumer: {stdout} {:?}",
        out.stderr
    );
    let sum = stdout
        .lines()
        .find_map(|l| l.strip_prefix("wayland OK frame="))
        .expect("client printed its frame")
        .to_owned();
    let compositor_log =
        || std::fs::read_to_string(p.path("/tmp/compositor.log")).unwrap_or_default();
    pv_testkit::assert_eventually!(
        compositor_log().contains("commit buffer"),
        "the compositor never committed a buffer:\n{}",
        compositor_log()
    );
    let log = compositor_log();
    assert!(
        log.contains(&format!("checksum={sum}")),
        "compositor saw other pixels than {sum}:\n{log}"
    );

    // Debian's wayland-info, inside the consumer, through the same link.
    require_tool("wayland-info");
    let info = c.exec("WAYLAND_DISPLAY=/run/wayland-0 wayland-info");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success(), "wayland-info: {:?}", info);
    for g in ["wl_compositor", "wl_shm", "xdg_wm_base"] {
        assert!(text.contains(&format!("'{g}'")), "{g} missing: {text}");
    }
    assert!(h.stats().bytes() > 0, "bytes counted");
    h.stop().await;
    assert!(!c.path("/run/wayland-0").exists(), "target removed on stop");
}

/// Upstream's arrangement: weston as the provider's compositor; Debian's
/// weston-simple-shm in the consumer draws through the link (its shm pool
/// fds must cross both namespaces).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weston_in_provider_serves_simple_shm_in_consumer() {
    require_tool("weston");
    require_tool("weston-simple-shm");
    let p = Container::start(
        "wl-weston",
        "sh -c 'chmod 700 /run; XDG_RUNTIME_DIR=/run exec weston --backend=headless-backend.so \
         --socket=wayland-0 --idle-time=0 --no-config > /tmp/weston.log 2>&1'",
    );
    assert!(
        p.wait_for("/run/wayland-0", Duration::from_secs(10)),
        "weston socket in provider"
    );
    let c = Container::start("wl-shm", "sleep infinity");
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, "wayland"), &root)
        .await
        .expect("link starts");
    // Runs until killed; 1.5 s of frames, then timeout stops it (124).
    let out = c.exec(
        "WAYLAND_DISPLAY=/run/wayland-0 WAYLAND_DEBUG=client timeout 1.5 weston-simple-shm \
         2>/tmp/shm.log; echo rc=$?; grep -c 'wl_buffer@[0-9]*.release' /tmp/shm.log; \
         grep 'error' /tmp/shm.log | head -3",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("rc=124"),
        "simple-shm ended early: {text}"
    );
    let releases: usize = lines.next().and_then(|l| l.parse().ok()).unwrap_or(0);
    assert!(
        releases >= 5,
        "weston released only {releases} buffers: {text}"
    );
    assert!(lines.next().is_none(), "protocol error: {text}");
    h.stop().await;
}
