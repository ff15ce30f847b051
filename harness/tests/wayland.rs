//! wayland: a client in one container draws through the mediated socket
//! into the compositor of another; the frame checksum the client computed
//! is the one the compositor logged for the committed buffer. As upstream's
//! weston container, the compositor requires `drm-master`, so the DRM
//! provider boots with it and its card0 is injected into the compositor.

use std::time::Duration;

use harness::group::Group;

const SERVER: &str = "pv-example-wayland-server";
const CLIENT: &str = "pv-example-wayland-client";
const DRM_PROVIDER: &str = "pv-example-drm-provider";

static WAYLAND: Group = Group::new("wayland", &[DRM_PROVIDER, SERVER, CLIENT], 2);

#[test]
fn wayland_frame_reaches_the_compositor_intact() {
    let ae = WAYLAND.enter();
    ae.wait_link(CLIENT, "wayland-0", Duration::from_secs(30))
        .expect("link");
    let log = ae
        .wait_console(CLIENT, "wayland OK frame=", Duration::from_secs(90))
        .expect("client drew a frame");
    let sum = log
        .lines()
        .find_map(|l| l.trim().strip_prefix("wayland OK frame="))
        .expect("checksum")
        .trim()
        .to_string();
    ae.wait_console(SERVER, &format!("checksum={sum}"), Duration::from_secs(30))
        .expect("compositor logged the same frame");
}

#[test]
fn wayland_server_gets_drm_master_card0() {
    let ae = WAYLAND.enter();
    let link = ae
        .wait_link(SERVER, "drm-master", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let target = ae.link_target(&link);
    assert_eq!(target, "/dev/dri/card0");
    let pid = link["consumer_pid"].as_i64().expect("pid");
    let node = ae
        .sh(&format!("stat -c '%F %t:%T' /proc/{pid}/root{target}"))
        .expect("stat node");
    assert_eq!(node.trim(), "character special file e2:0");
}
