//! unix: the upstream unix server/client pair in one appengine.

use std::time::Duration;

use harness::group::Group;

const SERVER: &str = "pv-example-unix-server";
const CLIENT: &str = "pv-example-unix-client";
const TARGET: &str = "/run/pv/services/raw-unix.sock";

static UNIX: Group = Group::new("unix", &[SERVER, CLIENT], 5);

#[test]
fn unix_appengine_reaches_ready_with_both_started() {
    let ae = UNIX.enter();
    let meta = ae.devmeta().expect("devmeta");
    assert_eq!(meta["pantavisor.status"], "READY", "{meta}");
    let list = ae.containers().expect("pvcontrol ls");
    for c in [SERVER, CLIENT] {
        let entry = list
            .iter()
            .find(|e| e["name"] == c)
            .unwrap_or_else(|| panic!("{c} not in pvcontrol ls: {list:?}"));
        assert_eq!(entry["status"], "STARTED", "{entry}");
    }
    let log = ae.pantavisor_log();
    assert!(
        log.contains("state revision '0' status is now READY"),
        "{log}"
    );
    for c in [SERVER, CLIENT] {
        assert!(log.contains(&format!("platform '{c}' status is now STARTED")));
    }
}

#[test]
fn unix_graph_shows_the_link_with_real_pids() {
    let ae = UNIX.enter();
    let link = ae
        .wait_link(CLIENT, "raw-unix", Duration::from_secs(30))
        .expect("link");
    assert_eq!(link["provider"], SERVER);
    assert_eq!(link["type"], "unix");
    assert_eq!(link["role"], "any");
    assert_eq!(link["target"], TARGET);
    assert_eq!(link["socket"], "/run/example/raw.sock");
    // Real pids: each one is the init of the container it names.
    for (who, pid) in [
        (CLIENT, &link["consumer_pid"]),
        (SERVER, &link["provider_pid"]),
    ] {
        let pid = pid.as_i64().expect("numeric pid");
        assert!(pid > 0, "{who} pid {pid}");
        assert!(
            ae.exists_in(pid, &format!("/usr/bin/{who}")).unwrap(),
            "pid {pid} is not {who}'s init"
        );
    }
}

#[test]
fn unix_socket_is_injected_at_the_target() {
    let ae = UNIX.enter();
    let link = ae
        .wait_link(CLIENT, "raw-unix", Duration::from_secs(30))
        .expect("link");
    let pid = link["consumer_pid"].as_i64().unwrap();
    ae.sh(&format!("test -S /proc/{pid}/root{TARGET}"))
        .expect("a socket at the target in the client's mount namespace");
}

#[test]
fn unix_client_echo_ok() {
    let ae = UNIX.enter();
    ae.wait_console(CLIENT, "unix-echo OK", Duration::from_secs(60))
        .expect("client reports the echo");
}

#[test]
fn unix_client_fd_passing_ok() {
    let ae = UNIX.enter();
    ae.wait_console(CLIENT, "unix-fd OK", Duration::from_secs(60))
        .expect("client reports fd passing");
}
