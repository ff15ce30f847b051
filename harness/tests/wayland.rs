//! wayland: a client in one container draws through the mediated socket
//! into the compositor of another; the frame checksum the client computed
//! is the one the compositor logged for the committed buffer.

use std::time::Duration;

use harness::group::Group;

const SERVER: &str = "pv-example-wayland-server";
const CLIENT: &str = "pv-example-wayland-client";

static WAYLAND: Group = Group::new("wayland", &[SERVER, CLIENT], 1);

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
