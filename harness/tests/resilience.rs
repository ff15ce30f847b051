//! resilience (unix pair): the mesh heals after the daemon is killed, after
//! a consumer restarts and after its provider comes back. The tests share
//! one appengine and disturb it, so they run one at a time.

use std::sync::Mutex;
use std::time::Duration;

use harness::appengine::{Appengine, ContainerAction};
use harness::group::Group;

const SERVER: &str = "pv-example-unix-server";
const CLIENT: &str = "pv-example-unix-client";
const TARGET: &str = "/run/pv/services/raw-unix.sock";
const OK: &str = "unix-echo OK";

static RES: Group = Group::new("resilience", &[SERVER, CLIENT], 3);
static SERIAL: Mutex<()> = Mutex::new(());

/// Waits until `container`'s console shows `needle` in output written
/// after `mark` (a log length taken earlier; a restart may truncate).
fn wait_new(ae: &Appengine, container: &str, mark: usize, needles: &[&str], secs: u64) -> String {
    ae.wait_for(
        &format!("new {needles:?} in {container}'s console"),
        Duration::from_secs(secs),
        |ae| {
            let log = ae.console_log(container);
            let fresh = if log.len() >= mark {
                &log[mark..]
            } else {
                &log[..]
            };
            Ok(needles
                .iter()
                .any(|n| fresh.contains(n))
                .then(|| fresh.to_string()))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn consumer_pid(ae: &Appengine) -> i64 {
    ae.wait_link(CLIENT, "raw-unix", Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"))["consumer_pid"]
        .as_i64()
        .expect("pid")
}

fn daemon_pid(ae: &Appengine) -> i64 {
    ae.daemons()
        .expect("daemons ls")
        .iter()
        .find(|d| d["name"] == "pv-xconnect")
        .and_then(|d| d["pid"].as_i64())
        .unwrap_or(-1)
}

#[test]
fn killed_daemon_is_respawned_and_reinjects() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ae = RES.enter();
    let pid = consumer_pid(&ae);
    ae.wait_console(CLIENT, OK, Duration::from_secs(60))
        .expect("works before");
    let inode = |ae: &Appengine| ae.sh(&format!("stat -c %i /proc/{pid}/root{TARGET}"));
    let before = inode(&ae).expect("target exists");
    let old = daemon_pid(&ae);
    assert!(old > 0, "pv-xconnect not running");
    let mark = ae.console_log(CLIENT).len();
    ae.sh(&format!("kill -9 {old}")).expect("kill pv-xconnect");
    let new = ae
        .wait_for("pv-xconnect respawned", Duration::from_secs(30), |ae| {
            let p = daemon_pid(ae);
            Ok((p > 0 && p != old).then_some(p))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("pv-xconnect {old} killed, respawned as {new}");
    ae.wait_for("target re-injected", Duration::from_secs(30), |ae| {
        Ok(inode(ae).ok().filter(|i| *i != before))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    wait_new(&ae, CLIENT, mark, &[OK], 90);
}

#[test]
fn restarted_consumer_is_reinjected_in_its_new_namespace() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ae = RES.enter();
    let old = consumer_pid(&ae);
    let mark = ae.console_log(CLIENT).len();
    ae.container_action(CLIENT, ContainerAction::Restart)
        .expect("restart accepted");
    let new = ae
        .wait_for("a new consumer pid", Duration::from_secs(60), |ae| {
            let p = consumer_pid(ae);
            Ok((p != old).then_some(p))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        ae.exists_in(new, TARGET).expect("exec"),
        "not injected into {new}"
    );
    wait_new(&ae, CLIENT, mark, &[OK], 90);
}

#[test]
fn consumer_fails_cleanly_without_provider_and_recovers() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ae = RES.enter();
    consumer_pid(&ae);
    let mark = ae.console_log(CLIENT).len();
    ae.container_action(SERVER, ContainerAction::Stop)
        .expect("stop accepted");
    ae.wait_for("provider STOPPED", Duration::from_secs(30), |ae| {
        Ok((ae.container_status(SERVER)?.as_deref() == Some("STOPPED")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let fresh = wait_new(&ae, CLIENT, mark, &["FAIL", "ERROR", "error"], 90);
    println!("client while the provider is down:\n{fresh}");
    assert_eq!(
        ae.container_status(CLIENT).expect("ls").as_deref(),
        Some("STARTED"),
        "the consumer must survive its provider's absence"
    );
    let mark = ae.console_log(CLIENT).len();
    ae.container_action(SERVER, ContainerAction::Start)
        .expect("start accepted");
    wait_new(&ae, CLIENT, mark, &[OK], 90);
}
