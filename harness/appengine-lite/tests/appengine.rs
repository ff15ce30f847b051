//! `pv-appengine` end to end on this host (process runtime, no Docker):
//! boot, READY, pv-ctrl answers, lifecycle, auto-recovery, daemons, bad
//! input. Every expectation copies what the real appengine
//! (`pantavisor-appengine:real-src`, upstream master in appengine mode) was
//! seen to do; each test names that behaviour.

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use pv_testkit::require_tool;
use serde_json::{json, Value};

/// A provider in `platform` with restart policy container, a consumer in
/// `app`, and an `app` container with restart policy system.
fn unix_pair(root: &std::path::Path) {
    write_exports(
        root,
        &[
            Spec {
                group: Some("platform"),
                services: Some(json!({"#spec":"service-manifest-xconnect@1","services":[
                    {"name":"raw-unix","type":"unix","socket":"/run/example/raw.sock"}]})),
                ..Spec::new("srv", "sh -c 'echo server up; exec sleep 1000'")
            },
            Spec {
                required: vec![
                    json!({"name":"raw-unix","target":"/run/pv/services/raw-unix.sock"}),
                ],
                ..Spec::new("cli", "sh -c 'echo unix-echo OK; exec sleep 1000'")
            },
            Spec {
                policy: Some("system"),
                ..Spec::new("sys", "sleep 1000")
            },
        ],
    );
}

fn idle_daemon(root: &std::path::Path) -> std::path::PathBuf {
    script(
        root,
        "fake-xconnect",
        "echo fake-xconnect line one ctrl=$PV_XCONNECT_CTRL_SOCKET\nexec sleep 1000",
    )
}

fn graph_pids(ae: &Appengine) -> (i64, i64) {
    let g = ae.get_json("/xconnect-graph");
    let l = &g[0];
    (
        l["consumer_pid"].as_i64().unwrap_or(0),
        l["provider_pid"].as_i64().unwrap_or(0),
    )
}

fn ready(ae: &Appengine) {
    ae.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
}

fn booted_pair() -> Appengine {
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    ready(&ae);
    ae
}

#[test]
fn boots_to_ready_and_serves_pv_ctrl() {
    let ae = booted_pair();
    let log = ae.log();
    for c in ["srv", "cli", "sys"] {
        assert!(
            log.contains(&format!("platform '{c}' status is now STARTED")),
            "{log}"
        );
    }
    // Group order: platform (srv) before app (cli, sys).
    let pos = |s: &str| log.find(s).unwrap_or(usize::MAX);
    assert!(
        pos("platform 'srv' status is now STARTED") < pos("platform 'cli' status is now STARTING"),
        "{log}"
    );
    // Daemon output lands in pantavisor.log verbatim.
    ae.wait_log(
        &format!("fake-xconnect line one ctrl={}", ae.socket().display()),
        Duration::from_secs(5),
    );
    assert_eq!(ae.get_json("/device-meta")["pantavisor.status"], "READY");

    let (code, _, body) = ae.get("/xconnect-graph");
    assert_eq!(code, 200);
    let (cpid, ppid) = graph_pids(&ae);
    assert!(cpid > 0 && pid_alive(cpid), "consumer pid {cpid} is live");
    assert!(ppid > 0 && pid_alive(ppid), "provider pid {ppid} is live");
    assert_eq!(
        body,
        format!(
            r#"[{{"consumer":"cli","consumer_pid":{cpid},"provider":"srv","provider_pid":{ppid},"name":"raw-unix","type":"unix","role":"any","interface":"unix","target":"/run/pv/services/raw-unix.sock","socket":"/run/example/raw.sock"}}]"#
        )
    );

    // Console output of a container, also under the run dir.
    let console = ae
        .root
        .path()
        .join("var/pantavisor/storage/logs/0/cli/lxc/console.log");
    wait_for(Duration::from_secs(5), || {
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .contains("unix-echo OK")
    })
    .expect("console.log shows the client's output");
    assert!(ae
        .root
        .path()
        .join("run/pantavisor/pv/logs/0/cli/lxc/console.log")
        .exists());
}

/// Upstream's `GET /containers` (platforms.c pv_platform_add_json), as the
/// real appengine lists them: roles default `["mgmt"]`; `auto_recovery`
/// only once a container carries one (the `app` group's, whatever its
/// restart policy); `user_stopped` only for restart policy `container`.
#[test]
fn containers_are_listed_like_upstream() {
    let ae = booted_pair();
    let (code, head, body) = ae.get("/containers");
    assert_eq!(code, 200);
    let recovery = json!({"policy":"on-failure","max_retries":5,"current_retries":0,
        "stable_timeout":30,"is_stable":"false","backoff_policy":"reboot"});
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v,
        json!([
          {"name":"cli","group":"app","status":"STARTED","status_goal":"STARTED","restart_policy":"container","roles":["mgmt"],"auto_recovery":recovery,"user_stopped":"false"},
          {"name":"srv","group":"platform","status":"STARTED","status_goal":"STARTED","restart_policy":"container","roles":["mgmt"],"user_stopped":"false"},
          {"name":"sys","group":"app","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":["mgmt"],"auto_recovery":recovery}
        ])
    );
    // Key order is upstream's.
    assert!(
        body.starts_with(r#"[{"name":"cli","group":"app","status":"STARTED","status_goal":"STARTED","restart_policy":"container","roles":["mgmt"],"auto_recovery":{"policy""#),
        "{body}"
    );
    assert!(head.contains("Content-Type: application/json"), "{head}");
}

/// Upstream without groups.json (state.c pv_state_set_default_runlevels,
/// seen on the real appengine): the first group-less container goes to
/// `root`, the others to `platform`, both with restart policy `system`;
/// `roles: []` and `roles: ["nobody"]` list `[]`.
#[test]
fn group_less_containers_and_explicit_roles() {
    let root = tempfile::tempdir().expect("tempdir");
    write_exports(
        root.path(),
        &[
            Spec {
                group: None,
                policy: None,
                ..Spec::new("aa", "sleep 1000")
            },
            Spec {
                group: None,
                policy: None,
                run: json!({"roles":["nobody"]}),
                ..Spec::new("ab", "sleep 1000")
            },
            Spec {
                run: json!({"roles":[]}),
                ..Spec::new("ac", "sleep 1000")
            },
        ],
    );
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    ready(&ae);
    let got: Vec<(String, String, String, Value)> = ["aa", "ab", "ac"]
        .iter()
        .map(|n| {
            let c = ae.container(n);
            (
                c["group"].as_str().unwrap_or("").into(),
                c["restart_policy"].as_str().unwrap_or("").into(),
                c["user_stopped"].as_str().unwrap_or("absent").into(),
                c["roles"].clone(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "root".into(),
                "system".into(),
                "absent".into(),
                json!(["mgmt"])
            ),
            (
                "platform".into(),
                "system".into(),
                "absent".into(),
                json!([])
            ),
            ("app".into(), "container".into(), "false".into(), json!([])),
        ]
    );
    // Upstream's default groups, `GET /groups`.
    let (code, _, body) = ae.get("/groups");
    assert_eq!(code, 200);
    assert_eq!(
        body,
        r#"[{"name":"data","status_goal":"MOUNTED","restart_policy":"system","status":"READY"},{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"},{"name":"platform","status_goal":"STARTED","restart_policy":"system","status":"READY"},{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"READY","auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}]"#
    );
}

/// libevent's answers on the real appengine: HTTP/1.0 gets no
/// Content-Length and no Date, and the connection closes; HTTP/1.1 gets
/// both and stays open unless asked to close; unknown endpoints, wrong
/// methods, foreign Host headers.
#[test]
fn wire_format_and_routing_like_libevent() {
    let ae = booted_pair();
    let (code, head, body) = ae.get("/nope?x=1");
    assert_eq!(
        (code, head.as_str(), body.as_str()),
        (
            400,
            "HTTP/1.0 400 Bad Request\r\nContent-Type: application/json",
            r#"{"Error":"unknown endpoint: /nope?x=1"}"#
        )
    );
    let (code, head, _) = ae.get("/daemons");
    assert_eq!(
        (code, head.as_str()),
        (200, "HTTP/1.0 200 OK\r\nContent-Type: application/json")
    );
    // Two HTTP/1.1 requests on one connection.
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(ae.socket()).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"GET /daemons HTTP/1.1\r\nHost: localhost\r\n\r\nGET /groups HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut all = String::new();
    s.read_to_string(&mut all).expect("read");
    let replies: Vec<&str> = all.split("HTTP/1.1 200 OK\r\n").skip(1).collect();
    assert_eq!(replies.len(), 2, "{all}");
    assert!(replies[0].starts_with("Content-Type: application/json\r\nDate: "));
    assert!(replies[0].contains("\r\nContent-Length: "), "{all}");
    assert!(!replies[0].contains("Connection: close"), "{all}");
    assert!(
        replies[1].contains("Connection: close\r\n\r\n[{\"name\":\"data\""),
        "{all}"
    );

    assert_eq!(ae.get("/containers/").0, 400, "trailing slash is unknown");
    let (code, _, body) = ae.put("/containers", "{}");
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"Error":"Method not supported for this endpoint"}"#)
    );
    let (code, _, body) = http(&ae.socket(), "GET", "/containers/cli", "", "localhost");
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"Error":"Method not supported for this endpoint"}"#),
        "a {{}} endpoint with the wrong method"
    );
    assert_eq!(http(&ae.socket(), "GET", "/containers", "", "").0, 200);
    assert_eq!(
        http(&ae.socket(), "GET", "/containers", "", "evil.example"),
        (0, String::new(), String::new()),
        "foreign Host: closed without a reply"
    );
}

/// ctrl_containers_ep.c as the real appengine answers: 404 unknown, 403
/// for restart policy `system` (with upstream's text), 400s for bad bodies.
#[test]
fn put_containers_refusals() {
    let ae = booted_pair();
    let (code, _, body) = ae.put("/containers/ghost", r#"{"action":"stop"}"#);
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"Error":"Container not found"}"#)
    );
    let (code, _, body) = ae.put("/containers/sys", r#"{"action":"stop"}"#);
    assert_eq!(
        (code, body.as_str()),
        (
            403,
            r#"{"Error":"Container has restart_policy 'system' and cannot be controlled via API"}"#
        )
    );
    for (b, msg) in [
        (
            r#"{"action":"dance"}"#,
            "Invalid action. Use 'start', 'stop', or 'restart'",
        ),
        ("not json", "Invalid JSON"),
        (r#"{"foo":1}"#, "Missing 'action' field"),
    ] {
        let (code, _, body) = ae.put("/containers/cli", b);
        assert_eq!((code, body), (400, format!("{{\"Error\":\"{msg}\"}}")));
    }
    let big = format!(r#"{{"action":"stop","pad":"{}"}}"#, "x".repeat(2000));
    let (code, _, body) = ae.put("/containers/cli", &big);
    assert_eq!(
        (code, body.as_str()),
        (507, r#"{"Error":"Not enough disk space available"}"#)
    );
}

fn pwr_trap(tag: &str) -> String {
    format!("sh -c 'trap \"echo {tag} got-PWR; exit 0\" PWR; while true; do sleep 0.1; done'")
}

/// Upstream's stop (platforms.c pv_platform_stop, seen on the real
/// appengine): the answer comes after the container's loggers are stopped
/// (5 s upstream), once the halt signal — SIGPWR — is sent; the container
/// is STOPPING, then STOPPED with `user_stopped` and an unchanged
/// `status_goal`; the graph keeps its stale pid; it is not restarted.
#[test]
fn stop_answers_after_the_logger_stop_and_halts_with_sigpwr() {
    let root = tempfile::tempdir().expect("tempdir");
    let cmd = pwr_trap("app");
    write_exports(root.path(), &[Spec::new("app", &cmd)]);
    let xc = idle_daemon(root.path());
    let t = Timing {
        logger_stop_ms: 1000,
        ..Timing::fast(5000)
    };
    let ae = start_with(root, &xc, t, &[]);
    ready(&ae);
    let pid = ae.get_json("/xconnect-graph");
    assert_eq!(pid, json!([]));
    let t0 = Instant::now();
    let (code, _, body) = ae.put("/containers/app", r#"{"action":"stop"}"#);
    let took = t0.elapsed();
    assert_eq!((code, body.as_str()), (200, ""));
    assert!(
        took >= Duration::from_millis(1000),
        "answered after the logger stop, took {took:?}"
    );
    assert!(took < Duration::from_millis(2500), "took {took:?}");
    ae.wait_status("app", "STOPPED", Duration::from_secs(3));
    // The stop's callback marks it on the loop's next pass, as upstream's.
    wait_for(Duration::from_secs(2), || {
        ae.container("app")["user_stopped"] == "true"
    })
    .expect("user_stopped after the stop completed");
    assert_eq!(ae.container("app")["status_goal"], "STARTED");
    let console = ae
        .root
        .path()
        .join("var/pantavisor/storage/logs/0/app/lxc/console.log");
    wait_for(Duration::from_secs(2), || {
        std::fs::read_to_string(&console)
            .unwrap_or_default()
            .contains("app got-PWR")
    })
    .expect("init got SIGPWR");
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ae.container_status("app"), "STOPPED", "user stop sticks");
    // A second stop of a stopped container is a quick no-op.
    let t0 = Instant::now();
    assert_eq!(ae.put("/containers/app", r#"{"action":"stop"}"#).0, 200);
    assert!(t0.elapsed() < Duration::from_millis(500));
}

/// Upstream's lenient stop: an init that ignores the halt signal is
/// SIGKILLed 5 s later (here the shortened grace), going through STOPPING.
#[test]
fn an_init_ignoring_the_halt_signal_is_forced_after_the_grace() {
    let root = tempfile::tempdir().expect("tempdir");
    write_exports(
        root.path(),
        &[Spec::new("deaf", "sh -c 'trap \"\" PWR; exec sleep 1000'")],
    );
    let xc = idle_daemon(root.path());
    let t = Timing {
        logger_stop_ms: 100,
        stop_timeout_ms: 1500,
        ..Timing::fast(5000)
    };
    let ae = start_with(root, &xc, t, &[]);
    ready(&ae);
    let t0 = Instant::now();
    assert_eq!(ae.put("/containers/deaf", r#"{"action":"stop"}"#).0, 200);
    assert_eq!(ae.container_status("deaf"), "STOPPING");
    ae.wait_status("deaf", "STOPPED", Duration::from_secs(5));
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "{:?}",
        t0.elapsed()
    );
    assert!(ae
        .log()
        .contains("platform 'deaf' did not exit after lenient stop, force stopping"));
}

/// Upstream's restart and start (ctrl_containers_ep.c): restart of a
/// running container stops it (after the logger stop) and starts it again
/// from INSTALLED; start of a STOPPED one reinstalls it; start of a running
/// one is a no-op 200.
#[test]
fn restart_and_start() {
    let ae = booted_pair();
    let (cpid, _) = graph_pids(&ae);
    assert_eq!(ae.put("/containers/cli", r#"{"action":"start"}"#).0, 200);
    assert_eq!(graph_pids(&ae).0, cpid, "start of a running one: no-op");
    assert_eq!(ae.put("/containers/cli", r#"{"action":"restart"}"#).0, 200);
    ae.wait_status("cli", "STARTED", Duration::from_secs(5));
    wait_for(Duration::from_secs(5), || {
        let p = graph_pids(&ae).0;
        p != cpid && pid_alive(p)
    })
    .expect("new init after restart");
    assert!(!pid_alive(cpid));
    assert_eq!(ae.container("cli")["user_stopped"], "false");
    assert_eq!(ae.put("/containers/cli", r#"{"action":"stop"}"#).0, 200);
    ae.wait_status("cli", "STOPPED", Duration::from_secs(5));
    wait_for(Duration::from_secs(2), || {
        ae.container("cli")["user_stopped"] == "true"
    })
    .expect("user stop recorded");
    let stale = graph_pids(&ae).0;
    assert!(!pid_alive(stale), "graph keeps the stale pid {stale}");
    assert_eq!(ae.put("/containers/cli", r#"{"action":"start"}"#).0, 200);
    ae.wait_status("cli", "STARTED", Duration::from_secs(5));
    assert_eq!(ae.container("cli")["user_stopped"], "false");
}

/// Upstream's auto-recovery of the `app` group (seen on the real appengine:
/// "attempt 1/5 in 5 seconds" … "attempt 5/5 in 80 seconds", then
/// "backoff_policy=reboot — triggering reboot"): every exit is retried
/// from RECOVERING after 5, 10, 20, 40, 80 s; after the fifth the device
/// reboots — every container and daemon restarts.
#[test]
fn crashes_are_retried_with_doubling_delays_then_reboot() {
    let root = tempfile::tempdir().expect("tempdir");
    write_exports(
        root.path(),
        &[
            Spec::new("crashy", "sh -c 'exit 3'"),
            Spec::new("steady", "sleep 1000"),
        ],
    );
    let xc = idle_daemon(root.path());
    let t = Timing {
        unit_ms: 20,
        reboot_ms: 300,
        ..Timing::fast(5000)
    };
    let ae = start_with(root, &xc, t, &[]);
    ae.wait_log("(attempt 1/5) in 5 seconds", Duration::from_secs(5));
    assert_eq!(ae.container_status("crashy"), "RECOVERING");
    let steady = ae.container("steady");
    assert_eq!(steady["status"], "STARTED");
    let daemon_pid = ae.get_json("/daemons")[1]["pid"].as_i64().unwrap_or(0);
    ae.wait_log(
        "backoff_policy=reboot — triggering reboot",
        Duration::from_secs(10),
    );
    let log = ae.log();
    for (n, d) in [(1, 5), (2, 10), (3, 20), (4, 40), (5, 80)] {
        assert!(
            log.contains(&format!(
                "platform 'crashy' crashed. Attempting auto-recovery (attempt {n}/5) in {d} seconds..."
            )),
            "{log}"
        );
    }
    assert!(log.contains("platform 'crashy' reached max retries (5)."));
    assert!(log.contains("Tearing down"), "{log}");
    // After the reboot the daemon is a new process.
    wait_for(Duration::from_secs(5), || {
        let p = ae
            .try_get_json("/daemons")
            .and_then(|d| d[1]["pid"].as_i64())
            .unwrap_or(0);
        p > 0 && p != daemon_pid
    })
    .expect("daemon restarted by the reboot");
    assert!(ae.log().contains("booting again after the reboot"));
}

/// Seen on the real appengine: a stop while a retry is pending marks the
/// container `user_stopped`, but the retry still starts it (and the start
/// clears the flag).
#[test]
fn a_stop_during_a_pending_retry_does_not_stick() {
    let root = tempfile::tempdir().expect("tempdir");
    let marker = root.path().join("crashed-once");
    let cmd = format!(
        "sh -c 'if [ -e {m} ]; then exec sleep 1000; else touch {m}; exit 1; fi'",
        m = marker.display()
    );
    write_exports(root.path(), &[Spec::new("flaky", &cmd)]);
    let xc = idle_daemon(root.path());
    let t = Timing {
        unit_ms: 200,
        ..Timing::fast(5000)
    };
    let ae = start_with(root, &xc, t, &[]);
    ae.wait_status("flaky", "RECOVERING", Duration::from_secs(5));
    assert_eq!(ae.put("/containers/flaky", r#"{"action":"stop"}"#).0, 200);
    assert_eq!(ae.container("flaky")["user_stopped"], "true");
    ae.wait_status("flaky", "STARTED", Duration::from_secs(5));
    let c = ae.container("flaky");
    assert_eq!(c["user_stopped"], "false");
    assert_eq!(c["auto_recovery"]["current_retries"], 1);
}

/// Upstream: a container without auto-recovery whose init exits makes the
/// device reboot ("platform '…' suddenly stopped", "a platform did not
/// work as expected. Tearing down..."); in appengine mode (pantavisor.c
/// pv_shutdown, seen on the real appengine) Pantavisor only shuts down —
/// "will not actually perform 'reboot' as we are in appengine mode",
/// pv-ctrl's listener closed with its socket file left, the daemon
/// stopped — and pv-appengine launches it again after its restart delay:
/// the revision boots again.
#[test]
fn an_exit_without_auto_recovery_reboots() {
    let root = tempfile::tempdir().expect("tempdir");
    let other_log = root.path().join("other-starts");
    let other = format!(
        "sh -c 'echo up >> {}; exec sleep 1000'",
        other_log.display()
    );
    write_exports(
        root.path(),
        &[
            Spec {
                group: Some("platform"),
                ..Spec::new("plat", "sh -c 'sleep 1.5; exit 0'")
            },
            Spec::new("other", &other),
        ],
    );
    let xc = idle_daemon(root.path());
    let timing = Timing {
        reboot_ms: 2000,
        ..Timing::fast(5000)
    };
    let ae = start_with(root, &xc, timing, &[]);
    ready(&ae);
    let plat = ae.container("plat");
    assert!(plat.get("auto_recovery").is_none(), "{plat}");
    let daemon_pid = ae.get_json("/daemons")[1]["pid"].as_i64().unwrap_or(0);
    ae.wait_log("platform 'plat' suddenly stopped", Duration::from_secs(5));
    ae.wait_log(
        &format!("Stopping daemon fake-xconnect (pid {daemon_pid})"),
        Duration::from_secs(5),
    );
    let log = ae.log();
    let from = log.find("suddenly stopped").unwrap_or(0);
    assert_in_order(
        &log,
        from,
        [
            "ERROR -- [controller]: a platform did not work as expected. Tearing down...",
            "preparing 'reboot'...",
            "will not actually perform 'reboot' as we are in appengine mode",
            "server stopped",
            &format!("Stopping daemon fake-xconnect (pid {daemon_pid})"),
        ],
    );
    assert_ctrl_closed(&ae.socket());
    wait_for(Duration::from_secs(10), || {
        std::fs::read_to_string(&other_log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .unwrap_or_else(|| panic!("other restarted by the reboot:\n{}", ae.log()));
    wait_for(Duration::from_secs(5), || {
        ae.log()
            .matches("state revision '0' status is now READY")
            .count()
            >= 2
    })
    .unwrap_or_else(|| panic!("READY again after the reboot:\n{}", ae.log()));
}

/// Upstream's daemons (daemons.c, seen on the real appengine): `/daemons`
/// lists `hwrngd` (never run in the appengine: pid 0) before pv-xconnect;
/// a daemon is spawned without arguments; after it exits a placeholder
/// `sleep` holds its pid for the respawn delay; stop turns respawn off and
/// the pid to -1; start turns it on and — a real daemon having run before
/// — goes through the placeholder again.
#[test]
fn daemons_respawn_through_a_placeholder_and_obey_stop_start() {
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let stamps = root.path().join("spawns");
    let xc = script(
        root.path(),
        "fake-xconnect",
        &format!(
            "[ $# -eq 0 ] || echo \"unexpected args: $@\"\ndate +%s.%N >> {}\necho fake daemon says hi\nsleep 0.2\nexit 3",
            stamps.display()
        ),
    );
    let delay_ms = 600u64;
    let ae = start(root, &xc, delay_ms);
    let d = ae.get_json("/daemons");
    assert_eq!(d[0], json!({"name":"hwrngd","pid":0,"respawn":true}));
    assert_eq!(d[1]["name"], "fake-xconnect");
    let spawns = || -> Vec<f64> {
        std::fs::read_to_string(&stamps)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    };
    wait_for(Duration::from_secs(10), || spawns().len() >= 3).expect("three spawns");
    let s = spawns();
    for w in s.windows(2) {
        let gap = w[1] - w[0];
        // 0.2 s run time + respawn delay, with scheduling slack.
        assert!(
            gap >= 0.2 + delay_ms as f64 / 1000.0 - 0.05,
            "gap {gap}: {s:?}"
        );
        assert!(
            gap < 0.2 + delay_ms as f64 / 1000.0 + 1.0,
            "gap {gap}: {s:?}"
        );
    }
    // Between runs the pid is the placeholder's.
    wait_for(Duration::from_secs(3), || {
        let pid = ae.get_json("/daemons")[1]["pid"].as_i64().unwrap_or(0);
        std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.starts_with("sleep\0"))
    })
    .expect("placeholder sleep seen in /daemons");
    assert!(
        !ae.log().contains("unexpected args"),
        "spawned with no arguments"
    );

    let (code, _, body) = ae.put("/daemons/fake-xconnect", r#"{"action":"stop"}"#);
    assert_eq!((code, body.as_str()), (200, ""));
    wait_for(Duration::from_secs(3), || {
        ae.get_json("/daemons")[1]["pid"] == -1
    })
    .expect("pid -1 after stop");
    assert_eq!(ae.get_json("/daemons")[1]["respawn"], false);
    let n = spawns().len();
    std::thread::sleep(Duration::from_millis(delay_ms + 700));
    assert_eq!(spawns().len(), n, "no respawn while stopped");
    assert_eq!(
        ae.put("/daemons/fake-xconnect", r#"{"action":"start"}"#).0,
        200
    );
    assert_eq!(ae.get_json("/daemons")[1]["respawn"], true);
    wait_for(Duration::from_secs(3), || spawns().len() > n).expect("started again");
    assert_eq!(
        ae.put("/daemons/nope", r#"{"action":"stop"}"#),
        (
            404,
            "HTTP/1.0 404 Not Found\r\nContent-Type: application/json".into(),
            r#"{"Error":"Daemon not found"}"#.into()
        )
    );
    // hwrngd: start and stop flip respawn, nothing ever runs.
    assert_eq!(ae.put("/daemons/hwrngd", r#"{"action":"stop"}"#).0, 200);
    assert_eq!(
        ae.get_json("/daemons")[0],
        json!({"name":"hwrngd","pid":0,"respawn":false})
    );
}

/// Each of `lines` appears in `log` after `from`, in this order.
fn assert_in_order<S: AsRef<str>>(log: &str, from: usize, lines: impl IntoIterator<Item = S>) {
    let mut at = from;
    for line in lines {
        let line = line.as_ref();
        match log[at..].find(line) {
            Some(i) => at += i + line.len(),
            None => panic!("{line:?} missing or out of order:\n{log}"),
        }
    }
}

/// pv-ctrl as upstream leaves it when a launch ends: the socket file in
/// place, its listener gone (a client's connect is refused).
fn assert_ctrl_closed(socket: &std::path::Path) {
    assert!(socket.exists(), "pv-ctrl's socket file stays");
    let err = UnixStream::connect(socket).expect_err("pv-ctrl no longer accepts");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

/// An appengine on `root` that launches Pantavisor again 2 s after a
/// launch ends.
fn start_relaunching(root: tempfile::TempDir) -> Appengine {
    let xc = idle_daemon(root.path());
    let timing = Timing {
        reboot_ms: 2000,
        ..Timing::fast(200)
    };
    start_with(root, &xc, timing, &[])
}

/// What a refused launch leaves, as on the real appengine: pv-ctrl's
/// listener closed but its socket file in place (a client connects to a
/// refusing socket; upstream's pvcontrol, through pvcurl, prints `ERROR:
/// got no response` and exits 1), and, `reboot_ms` later, the same refusal
/// logged again by the next launch.
fn assert_refused_launch(ae: &Appengine, first_error: &str, teardown: &[&str]) {
    ae.wait_log("server stopped", Duration::from_secs(5));
    let log = ae.log();
    assert_in_order(
        &log,
        0,
        std::iter::once(first_error)
            .chain(teardown.iter().copied())
            .chain([
                "preparing 'reboot'...",
                "will not actually perform 'reboot' as we are in appengine mode",
                "server stopped",
            ]),
    );
    assert_ctrl_closed(&ae.socket());
    assert_eq!(
        ae.pvcontrol(&["containers", "ls"]),
        (1, String::new(), "ERROR: got no response\n".to_owned())
    );
    wait_for(Duration::from_secs(10), || {
        ae.log().matches(first_error).count() >= 2
    })
    .unwrap_or_else(|| panic!("launched again and refused again:\n{}", ae.log()));
    assert!(!ae.log().contains("status is now READY"));
}

/// Upstream's first state run (state.c pv_state_run, seen on the real
/// appengine) refuses a required service nobody exports: "a platform did
/// not work as expected. Tearing down...", then STATE_REBOOT, which in
/// appengine mode only shuts Pantavisor down (pantavisor.c pv_shutdown);
/// pv-appengine launches it again after its restart delay, which refuses
/// again. Nothing starts.
#[test]
fn missing_required_service_is_refused_like_upstream() {
    let root = tempfile::tempdir().expect("tempdir");
    write_exports(
        root.path(),
        &[Spec {
            required: vec![json!({"name":"raw-unix"})],
            ..Spec::new("lonely", "sh -c 'echo SHOULD NOT RUN; exec sleep 1000'")
        }],
    );
    let ae = start_relaunching(root);
    assert_refused_launch(
        &ae,
        "ERROR -- [state]: required service 'raw-unix' for platform 'lonely' not found",
        &["ERROR -- [controller]: a platform did not work as expected. Tearing down..."],
    );
    let console = ae
        .root
        .path()
        .join("var/pantavisor/storage/logs/0/lonely/lxc/console.log");
    assert!(!console.exists(), "nothing started");
}

/// Upstream's pvtx stores an object under the name the export gives it
/// without checking it (pvtx_txn.c); Pantavisor's `_pv_run` then checks
/// every trail object (state.c pv_state_validate_checksum, seen on the
/// real appengine: "trails object <key> with checksum <sha> failed",
/// "state objects validation went wrong"), cannot roll a factory revision
/// back ("bad factory revision") and goes to its appengine-mode non-reboot.
#[test]
fn corrupt_object_is_refused_like_upstream() {
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path().join("usr/lib/pantavisor/pvtx.d");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let sha = appengine_lite::pvrexport::sha256_hex(b"original");
    appengine_lite::pvrexport::write(
        &dir.join("bad.tgz"),
        &json!({"x/run.json":{"name":"x"},"x/lxc.container.conf":sha}),
        &[(sha.clone(), b"tampered".to_vec())],
    )
    .expect("write");
    let ae = start_relaunching(root);
    assert_refused_launch(
        &ae,
        &format!("ERROR -- [state]: trails object x/lxc.container.conf with checksum {sha} failed"),
        &[
            "ERROR -- [controller]: state objects validation went wrong",
            "ERROR -- [controller]: bad factory revision",
        ],
    );
    assert!(
        ae.root
            .path()
            .join("var/pantavisor/storage/.pvtx-done")
            .exists(),
        "pvtx installed it"
    );
}

/// pvcurl (`nc -N`) half-closes after the request; every request must
/// still get its answer.
#[test]
fn half_closed_requests_are_answered() {
    use std::io::{Read, Write};
    let root = tempfile::tempdir().expect("tempdir");
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    for i in 0..300 {
        let (method, path, body) = if i % 2 == 0 {
            ("PUT", "/daemons/fake-xconnect", r#"{"action":"start"}"#)
        } else {
            ("GET", "/daemons", "")
        };
        let mut s = std::os::unix::net::UnixStream::connect(ae.socket()).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        // One write, then the half-close, as `nc -N` does.
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).expect("write");
        s.shutdown(std::net::Shutdown::Write).expect("half-close");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        assert!(
            resp.starts_with("HTTP/1.0 200 OK"),
            "request {i} ({method}): {resp:?}"
        );
    }
}

/// curl (HTTP/1.1, the other client upstream's pvcontrol can use) works.
#[test]
fn curl_http11_works() {
    require_tool("curl");
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    let out = std::process::Command::new("curl")
        .args(["-s", "-w", "\n%{http_code}", "--unix-socket"])
        .arg(ae.socket())
        .arg("http://localhost/daemons")
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.starts_with(r#"[{"name":"hwrngd","pid":0"#), "{text}");
}

/// Upstream's group gate (pv_state_check_goal_prev_group): a stopped
/// container of an earlier group (past its goal) does not hold a later
/// group's start back.
#[test]
fn a_stopped_earlier_group_does_not_block_later_starts() {
    let ae = booted_pair();
    assert_eq!(ae.put("/containers/srv", r#"{"action":"stop"}"#).0, 200);
    ae.wait_status("srv", "STOPPED", Duration::from_secs(5));
    assert_eq!(ae.put("/containers/cli", r#"{"action":"restart"}"#).0, 200);
    ae.wait_status("cli", "STARTED", Duration::from_secs(5));
}
