//! resilience (unix pair): the mesh heals after the daemon is killed, after
//! a consumer restarts and after its provider comes back; hostile
//! containers (a provider exporting the host's pv-ctrl, a stale pid reused
//! by another process) get nothing and take no other link down. The tests
//! share one appengine and disturb it, so they run one at a time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use harness::appengine::{Appengine, ContainerAction};
use harness::examples::busybox_export;
use harness::group::Group;
use harness::pvrexport::{ContainerSpec, DockerConfig};
use serde_json::{json, Map, Value};

const SERVER: &str = "pv-example-unix-server";
const CLIENT: &str = "pv-example-unix-client";
const TARGET: &str = "/run/pv/services/raw-unix.sock";
const OK: &str = "unix-echo OK";

/// Exports, as its service, the pv-ctrl socket every container sees under
/// `/pantavisor` (a bind mount of the host's).
const THIEF: &str = "pvx-ctrl-thief";
/// Consumes the thief's service.
const THIEF_CONSUMER: &str = "pvx-ctrl-consumer";
const STOLEN: &str = "stolen-ctrl";
/// Where every container sees the host's pv-ctrl.
const PV_CTRL: &str = "/pantavisor/pv-ctrl";
const STOLEN_TARGET: &str = "/run/pv/services/stolen.sock";
/// A second consumer of raw-unix, stopped so that its stale pid can be
/// handed to another process.
const REUSED: &str = "pvx-reuse-consumer";
const REUSED_TARGET: &str = "/run/pv/services/reused.sock";

static RES: Group = Group::new("resilience", &[SERVER, CLIENT], 5).with_exports(test_exports);
static SERIAL: Mutex<()> = Mutex::new(());

/// A busybox container idling until stopped (a shell as PID 1 ignores
/// signals it does not trap: it traps LXC's halt signal, SIGPWR, or a stop
/// waits for the SIGKILL).
fn idle(name: &str, args: Value, services: Option<Value>) -> ContainerSpec {
    let script = "trap 'exit 0' PWR TERM INT; while :; do sleep 1000 & wait $!; done";
    ContainerSpec {
        name: name.into(),
        args: serde_json::from_value::<Map<String, Value>>(args).expect("args object"),
        docker: DockerConfig::for_command(vec!["/bin/sh".into(), "-c".into(), script.into()]),
        services,
    }
}

fn test_exports(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let specs = [
        idle(
            THIEF,
            json!({}),
            Some(json!({"#spec": "service-manifest-xconnect@1",
                "services": [{"name": STOLEN, "type": "unix", "socket": PV_CTRL}]})),
        ),
        idle(
            THIEF_CONSUMER,
            json!({"PV_SERVICES_REQUIRED": [{"name": STOLEN, "target": STOLEN_TARGET}]}),
            None,
        ),
        idle(
            REUSED,
            json!({"PV_RESTART_POLICY": "container",
                   "PV_SERVICES_REQUIRED": [{"name": "raw-unix", "target": REUSED_TARGET}]}),
            None,
        ),
    ];
    let mut files = Vec::new();
    for spec in &specs {
        let path = dir.join(format!("{}.pvrexport.tgz", spec.name));
        busybox_export(spec)?.write(&path)?;
        files.push(path);
    }
    Ok(files)
}

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

/// pv-xconnect's own view of link `name` of `consumer` (`pv-xconnect
/// status`), or "" while it has none.
fn link_status(ae: &Appengine, consumer: &str, name: &str) -> String {
    let out = ae.exec(&["pv-xconnect", "status"]).expect("exec");
    out.stdout
        .lines()
        .find(|l| {
            l.contains(&format!("consumer={consumer} ")) && l.contains(&format!("name={name} "))
        })
        .unwrap_or("")
        .to_string()
}

fn wait_status(ae: &Appengine, consumer: &str, name: &str, needle: &str, secs: u64) -> String {
    ae.wait_for(
        &format!("{consumer}/{name} status containing {needle:?}"),
        Duration::from_secs(secs),
        |ae| {
            let line = link_status(ae, consumer, name);
            Ok(line.contains(needle).then_some(line))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}"))
}

fn pid_in_graph(ae: &Appengine, consumer: &str, name: &str) -> i64 {
    ae.graph()
        .expect("graph")
        .iter()
        .find(|l| l["consumer"] == consumer && l["name"] == name)
        .and_then(|l| l["consumer_pid"].as_i64())
        .expect("link in the graph")
}

#[test]
fn a_provider_exporting_the_hosts_pv_ctrl_never_serves_its_consumer() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ae = RES.enter();
    consumer_pid(&ae);
    let link = ae
        .wait_link(THIEF_CONSUMER, STOLEN, Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let pid = link["consumer_pid"].as_i64().expect("pid");
    let mark = ae.console_log(CLIENT).len();

    ae.wait_for("provider STARTED", Duration::from_secs(30), |ae| {
        Ok((ae.container_status(SERVER)?.as_deref() == Some("STARTED")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    let log_mark = ae.pantavisor_log().len();

    // What the consumer would do with management access: read the
    // containers (pv-ctrl answers at once) and stop the unix server
    // (answered after the container's loggers stop, 5 s: the stop itself
    // is the evidence). Any byte back means a request reached pv-ctrl.
    let http = |head: &str, body: &str| {
        format!(
            "{head} HTTP/1.0\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\nContent-Length: {}\\r\\n\\r\\n{body}",
            body.len()
        )
    };
    let requests = [
        http("GET /containers", ""),
        http(&format!("PUT /containers/{SERVER}"), r#"{"action":"stop"}"#),
    ];
    // The refusal is shown while the link waits for its retry (the poll
    // period), then it is injected again: ask for it after each attempt.
    let refusal = format!("provider socket {PV_CTRL} is served from outside container {THIEF}");
    let mut attempts = 0;
    let line = ae
        .wait_for(
            &format!("{THIEF_CONSUMER}/{STOLEN} status containing {refusal:?}"),
            Duration::from_secs(30),
            |ae| {
                for request in &requests {
                    let out = ae.exec(&[
                        "sh",
                        "-c",
                        &format!(
                            "printf '{request}' | nc -N -w 5 -U /proc/{pid}/root{STOLEN_TARGET}; true"
                        ),
                    ])?;
                    assert_eq!(out.stdout, "", "pv-ctrl answered the consumer");
                    attempts += 1;
                }
                let line = link_status(ae, THIEF_CONSUMER, STOLEN);
                Ok(line.contains(&refusal).then_some(line))
            },
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    println!("after {attempts} requests: {line}");
    assert!(line.contains("bytes=0"), "bytes relayed: {line}");
    // Past the 5 s a stop takes to reach the halt signal.
    std::thread::sleep(Duration::from_secs(7));
    let log = ae.pantavisor_log();
    let fresh = log.get(log_mark..).unwrap_or(&log);
    assert!(
        !fresh.contains(&format!("stopping platform '{SERVER}'")),
        "the consumer's stop reached pv-ctrl:\n{fresh}"
    );
    assert_eq!(
        ae.container_status(SERVER).expect("ls").as_deref(),
        Some("STARTED"),
        "the consumer's stop reached pv-ctrl"
    );
    // The other link kept working.
    wait_new(&ae, CLIENT, mark, &[OK], 90);
    assert!(ae.exists_in(consumer_pid(&ae), TARGET).expect("exec"));
}

#[test]
fn a_stale_pid_reused_by_another_process_gets_no_socket() {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    let ae = RES.enter();
    consumer_pid(&ae);
    let link = ae
        .wait_link(REUSED, "raw-unix", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stale = link["consumer_pid"].as_i64().expect("pid");
    ae.container_action(REUSED, ContainerAction::Stop)
        .expect("stop accepted");
    ae.wait_for("consumer STOPPED", Duration::from_secs(30), |ae| {
        Ok((ae.container_status(REUSED)?.as_deref() == Some("STOPPED")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    // As Pantavisor, appengine-lite keeps the stale pid in the graph.
    assert_eq!(pid_in_graph(&ae, REUSED, "raw-unix"), stale);
    wait_status(&ae, REUSED, "raw-unix", "pending", 30);

    // Hand the stale pid to a process of the appengine itself (the
    // daemon's own mount namespace): ns_last_pid, then one fork.
    let mut reuser = None;
    for _ in 0..50 {
        let out = ae
            .sh(&format!(
                "echo {} > /proc/sys/kernel/ns_last_pid && {{ sleep 600 </dev/null >/dev/null 2>&1 & echo $!; }}",
                stale - 1
            ))
            .expect("fork");
        let got: i64 = out.trim().parse().expect("a pid");
        if got == stale {
            reuser = Some(got);
            break;
        }
        let _ = ae.sh(&format!("kill {got}"));
    }
    let reuser = reuser.expect("stale pid reused");
    println!("stale pid {stale} now names an appengine-side sleep");
    let mark = ae.console_log(CLIENT).len();
    // Make the daemon look again now (graph re-fetch), not at its next poll.
    let daemon = daemon_pid(&ae);
    ae.sh(&format!("kill -HUP {daemon}")).expect("SIGHUP");
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !ae.exists_in(reuser, REUSED_TARGET).expect("exec"),
        "socket created in the daemon's own namespace"
    );
    assert!(
        !ae.exists_in(reuser, "/run/pv/services").expect("exec"),
        "directory created in the daemon's own namespace"
    );
    let line = link_status(&ae, REUSED, "raw-unix");
    assert!(line.contains("pending"), "{line}");
    assert_eq!(daemon_pid(&ae), daemon, "the daemon kept running");
    wait_new(&ae, CLIENT, mark, &[OK], 90);

    // The consumer comes back with a new pid: so does its link.
    ae.sh(&format!("kill {reuser}")).expect("kill the reuser");
    ae.container_action(REUSED, ContainerAction::Start)
        .expect("start accepted");
    let back = ae
        .wait_link(REUSED, "raw-unix", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_ne!(back["consumer_pid"].as_i64(), Some(stale));
}
