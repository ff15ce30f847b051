//! dbus: the hosted bus of pv-example-dbus-server reached by a root client,
//! a nobody client and an attacker, each through its own mediated socket.

use std::time::Duration;

use harness::group::Group;

const SERVER: &str = "pv-example-dbus-server";
const CLIENT: &str = "pv-example-dbus-client";
const NOBODY: &str = "pv-example-dbus-client-nobody";
const ATTACKER: &str = "pv-example-dbus-client-attacker";

static DBUS: Group = Group::new("dbus", &[SERVER, CLIENT, NOBODY, ATTACKER], 4);

fn has_line(log: &str, line: &str) -> bool {
    log.lines().any(|l| l.trim() == line)
}

#[test]
fn dbus_root_client_is_seen_as_uid_0() {
    let ae = DBUS.enter();
    ae.wait_link(CLIENT, "system-bus", Duration::from_secs(30))
        .expect("link");
    let log = ae
        .wait_console(CLIENT, "dbus OK uid=", Duration::from_secs(90))
        .expect("client result");
    assert!(has_line(&log, "dbus OK uid=0"), "{log}");
    assert!(log.contains("dbus-example"), "GetInfo reply missing: {log}");
}

#[test]
fn dbus_nobody_client_is_seen_as_uid_65534() {
    let ae = DBUS.enter();
    let log = ae
        .wait_console(NOBODY, "dbus OK uid=", Duration::from_secs(90))
        .expect("client result");
    assert!(has_line(&log, "dbus OK uid=65534"), "{log}");
}

#[test]
fn dbus_attacker_is_refused_everything() {
    let ae = DBUS.enter();
    let log = ae
        .wait_console(ATTACKER, "attacker RESULT", Duration::from_secs(90))
        .expect("attacker verdict");
    assert!(log.contains("attacker RESULT all refused"), "{log}");
    assert!(!log.contains("attacker ALLOWED"), "{log}");
    assert!(log.contains("attacker REFUSED"), "{log}");
}

#[test]
fn dbus_server_still_serves_after_the_attack() {
    let ae = DBUS.enter();
    ae.wait_console(ATTACKER, "attacker RESULT", Duration::from_secs(90))
        .expect("attacker done");
    assert_eq!(
        ae.container_status(SERVER)
            .expect("pvcontrol ls")
            .as_deref(),
        Some("STARTED")
    );
    // Ask the service directly on the provider's own bus, as root.
    let link = ae
        .wait_link(CLIENT, "system-bus", Duration::from_secs(30))
        .expect("link");
    let pid = link["provider_pid"].as_i64().expect("provider pid");
    let reply = ae
        .sh(&format!(
            "dbus-send --bus=unix:path=/proc/{pid}/root/run/dbus/system_bus_socket \
             --print-reply --dest=org.pantavisor.Example /org/pantavisor/Example \
             org.pantavisor.Example.GetInfo"
        ))
        .expect("GetInfo answered");
    assert!(
        reply.contains("dbus-example") && reply.contains("active"),
        "{reply}"
    );
}
