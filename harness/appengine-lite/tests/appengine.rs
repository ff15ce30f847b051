//! `pv-appengine` end to end on this host (process runtime, no Docker):
//! boot, READY, pv-ctrl shapes and codes, restart policy, managed daemon
//! respawn, refusal to start on bad input, `pvcontrol` output.

mod common;

use std::time::{Duration, Instant};

use common::*;
use pv_testkit::require_tool;
use serde_json::{json, Value};

fn unix_pair(root: &std::path::Path) {
    write_exports(
        root,
        &[
            Spec {
                group: "platform",
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
                policy: "system",
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

#[test]
fn boots_to_ready_and_serves_pv_ctrl() {
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    ae.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
    let log = ae.log();
    for c in ["srv", "cli", "sys"] {
        assert!(
            log.contains(&format!("platform '{c}' status is now STARTED")),
            "{log}"
        );
    }
    // Group order: platform (srv, sys) before app (cli).
    let pos = |s: &str| log.find(s).unwrap_or(usize::MAX);
    assert!(
        pos("platform 'srv' status is now STARTED") < pos("starting platform 'cli'"),
        "{log}"
    );
    // Daemon output lands in pantavisor.log verbatim.
    ae.wait_log(
        &format!("fake-xconnect line one ctrl={}", ae.socket().display()),
        Duration::from_secs(5),
    );

    let dm = ae.get_json("/device-meta");
    assert_eq!(dm["pantavisor.status"], "READY");

    let (code, head, body) = ae.get("/containers");
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(
        head.starts_with("HTTP/1.0 200"),
        "HTTP/1.0 request gets HTTP/1.0 reply: {head}"
    );
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v,
        json!([
          {"name":"cli","group":"app","status":"STARTED","status_goal":"STARTED","restart_policy":"container","roles":[],"user_stopped":"false"},
          {"name":"srv","group":"platform","status":"STARTED","status_goal":"STARTED","restart_policy":"container","roles":[],"user_stopped":"false"},
          {"name":"sys","group":"app","status":"STARTED","status_goal":"STARTED","restart_policy":"system","roles":[],"user_stopped":"false"}
        ])
    );
    // Key order of a container object is upstream's.
    assert!(
        body.starts_with(r#"[{"name":"cli","group":"app","status":"STARTED","status_goal""#),
        "{body}"
    );

    let (code, _, body) = ae.get("/xconnect-graph");
    assert_eq!(code, 200);
    let (cpid, ppid) = graph_pids(&ae);
    assert!(
        cpid > 0 && pid_alive(cpid),
        "consumer pid {cpid} is a live process"
    );
    assert!(
        ppid > 0 && pid_alive(ppid),
        "provider pid {ppid} is a live process"
    );
    assert_eq!(
        body,
        format!(
            r#"[{{"consumer":"cli","consumer_pid":{cpid},"provider":"srv","provider_pid":{ppid},"name":"raw-unix","type":"unix","role":"any","interface":"unix","target":"/run/pv/services/raw-unix.sock","socket":"/run/example/raw.sock"}}]"#
        )
    );

    let d = ae.get_json("/daemons");
    assert_eq!(d[0]["name"], "fake-xconnect");
    assert!(d[0]["pid"].as_i64().unwrap_or(0) > 0, "{d}");
    assert_eq!(d[0]["respawn"], true);

    // Console output of a container.
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
    let via_run = ae
        .root
        .path()
        .join("run/pantavisor/pv/logs/0/cli/lxc/console.log");
    assert!(via_run.exists(), "console.log also under the run dir");

    // Errors.
    let (code, head, body) = ae.get("/nope?x=1");
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"Error":"unknown endpoint: /nope?x=1"}"#)
    );
    assert!(head.to_ascii_lowercase().contains("application/json"));
    assert_eq!(ae.get("/containers/").0, 400);
    let (code, _, body) = ae.put("/containers", "{}");
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"Error":"Method not supported for this endpoint"}"#)
    );
    let (code, _, _) = http(&ae.socket(), "GET", "/containers", "", "");
    assert_eq!(code, 200, "empty Host is accepted");
    let (code, head, body) = http(&ae.socket(), "GET", "/containers", "", "evil.example");
    assert_eq!(
        (code, head.as_str(), body.as_str()),
        (0, "", ""),
        "foreign Host: connection closed without a reply, as libevent does"
    );
    let (code, _, body) = ae.put("/containers/ghost", r#"{"action":"stop"}"#);
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"Error":"Container not found"}"#)
    );
    let (code, _, body) = ae.put("/containers/sys", r#"{"action":"stop"}"#);
    assert_eq!(
        code, 400,
        "restart_policy system cannot be controlled: {body}"
    );
    assert!(body.contains("restart_policy 'system'"), "{body}");
    let (code, _, body) = ae.put("/containers/cli", r#"{"action":"dance"}"#);
    assert_eq!(
        (code, body.as_str()),
        (
            400,
            r#"{"Error":"Invalid action. Use 'start', 'stop', or 'restart'"}"#
        )
    );
    let (code, _, body) = ae.put("/containers/cli", "not json");
    assert_eq!((code, body.as_str()), (400, r#"{"Error":"Invalid JSON"}"#));
    let (code, _, body) = ae.put("/containers/cli", r#"{"foo":1}"#);
    assert_eq!(
        (code, body.as_str()),
        (400, r#"{"Error":"Missing 'action' field"}"#)
    );
    let (code, _, body) = ae.put("/daemons/nope", r#"{"action":"stop"}"#);
    assert_eq!(
        (code, body.as_str()),
        (404, r#"{"Error":"Daemon not found"}"#)
    );
}

#[test]
fn stop_start_restart_and_restart_policy() {
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    ae.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
    let (cpid, _) = graph_pids(&ae);

    // Stop: 200 with an empty body, STOPPED, pid stays (stale) in the graph.
    let (code, _, body) = ae.put("/containers/cli", r#"{"action":"stop"}"#);
    assert_eq!((code, body.as_str()), (200, ""));
    assert_eq!(ae.container_status("cli"), "STOPPED");
    assert!(!pid_alive(cpid), "init {cpid} killed");
    assert_eq!(graph_pids(&ae).0, cpid, "stale pid kept after stop");
    let c = ae.get_json("/containers");
    assert_eq!(c[0]["user_stopped"], "true");
    assert_eq!(c[0]["status_goal"], "STOPPED");
    // A user-stopped container is not restarted by the restart policy.
    std::thread::sleep(Duration::from_millis(800));
    assert_eq!(ae.container_status("cli"), "STOPPED");
    // Starting a container that is not STOPPED is a no-op 200... restart
    // of a stopped one starts it.
    let (code, _, _) = ae.put("/containers/cli", r#"{"action":"start"}"#);
    assert_eq!(code, 200);
    wait_for(Duration::from_secs(5), || {
        ae.container_status("cli") == "STARTED"
    })
    .expect("started again");
    let (cpid2, _) = graph_pids(&ae);
    assert!(cpid2 != cpid && pid_alive(cpid2), "new init pid {cpid2}");
    let (code, _, _) = ae.put("/containers/cli", r#"{"action":"restart"}"#);
    assert_eq!(code, 200);
    let (cpid3, _) = graph_pids(&ae);
    assert!(cpid3 != cpid2 && pid_alive(cpid3) && !pid_alive(cpid2));

    // Init exits on its own: restart policy `container` brings it back.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(cpid3 as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill init");
    wait_for(Duration::from_secs(5), || {
        let p = graph_pids(&ae).0;
        p != cpid3 && pid_alive(p)
    })
    .expect("container restarted after its init died");
    assert!(ae
        .log()
        .contains("platform 'cli' init exited; restart policy 'container'"));
}

#[test]
fn daemon_respawns_after_delay_and_obeys_stop_start() {
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
            "gap {gap} too short: {s:?}"
        );
        assert!(
            gap < 0.2 + delay_ms as f64 / 1000.0 + 1.0,
            "gap {gap} too long: {s:?}"
        );
    }
    wait_for(Duration::from_secs(3), || {
        ae.log().matches("fake daemon says hi").count() >= 3
    })
    .unwrap_or_else(|| panic!("daemon output in pantavisor.log:\n{}", ae.log()));
    let log = ae.log();
    assert!(
        !log.contains("unexpected args"),
        "spawned with no arguments"
    );

    let (code, _, body) = ae.put("/daemons/fake-xconnect", r#"{"action":"stop"}"#);
    assert_eq!((code, body.as_str()), (200, ""));
    wait_for(Duration::from_secs(3), || {
        ae.get_json("/daemons")[0]["pid"] == -1
    })
    .expect("pid -1 after stop");
    assert_eq!(ae.get_json("/daemons")[0]["respawn"], false);
    let n = spawns().len();
    std::thread::sleep(Duration::from_millis(delay_ms + 700));
    assert_eq!(spawns().len(), n, "no respawn while stopped");

    let t0 = Instant::now();
    let (code, _, _) = ae.put("/daemons/fake-xconnect", r#"{"action":"start"}"#);
    assert_eq!(code, 200);
    wait_for(Duration::from_secs(3), || spawns().len() > n).expect("started again");
    assert!(
        t0.elapsed() < Duration::from_millis(delay_ms),
        "start is immediate"
    );
    assert_eq!(ae.get_json("/daemons")[0]["respawn"], true);
}

#[test]
fn missing_required_service_starts_nothing_but_answers() {
    let root = tempfile::tempdir().expect("tempdir");
    write_exports(
        root.path(),
        &[Spec {
            required: vec![json!({"name":"raw-unix"})],
            ..Spec::new("lonely", "sh -c 'echo SHOULD NOT RUN; exec sleep 1000'")
        }],
    );
    let marker = root.path().join("daemon-ran");
    let xc = script(
        root.path(),
        "fake-xconnect",
        &format!("touch {}\nsleep 1000", marker.display()),
    );
    let ae = start(root, &xc, 200);
    ae.wait_log(
        "required service 'raw-unix' for platform 'lonely' not found",
        Duration::from_secs(5),
    );
    let (code, _, body) = ae.get("/xconnect-graph");
    assert_eq!(
        (code, body.as_str()),
        (500, r#"{"Error":"State not loaded yet"}"#)
    );
    assert_eq!(ae.get("/containers"), ae.get("/containers"));
    assert_eq!(ae.get_json("/containers"), json!([]));
    assert_ne!(ae.get_json("/device-meta")["pantavisor.status"], "READY");
    std::thread::sleep(Duration::from_millis(700));
    let console = ae
        .root
        .path()
        .join("var/pantavisor/storage/logs/0/lonely/lxc/console.log");
    assert!(!console.exists(), "nothing started");
    assert!(!marker.exists(), "daemon not started either");
    assert!(!ae.log().contains("status is now READY"));
}

#[test]
fn corrupt_object_is_logged_and_nothing_starts() {
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
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 200);
    ae.wait_log("bad checksum", Duration::from_secs(5));
    let log = ae.log();
    let line = log
        .lines()
        .find(|l| l.contains("bad checksum"))
        .unwrap_or_default();
    assert!(
        line.contains("bad.tgz") && line.contains(&sha) && line.contains("ERROR"),
        "{line}"
    );
    assert_eq!(ae.get("/xconnect-graph").0, 500);
    assert!(!ae
        .root
        .path()
        .join("var/pantavisor/storage/.pvtx-done")
        .exists());
}

#[test]
fn pvcontrol_prints_like_upstream() {
    let root = tempfile::tempdir().expect("tempdir");
    unix_pair(root.path());
    let xc = idle_daemon(root.path());
    let ae = start(root, &xc, 5000);
    ae.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
    let sock = ae.socket();
    let pvc = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_pvcontrol"))
            .arg("-s")
            .arg(&sock)
            .args(args)
            .output()
            .expect("run pvcontrol");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = pvc(&["ls"]);
    assert_eq!(code, 0);
    assert_eq!(out, format!("{}\n", ae.get("/containers").2));
    let (code, out, _) = pvc(&["graph", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""name":"raw-unix""#), "{out}");
    let (code, out, _) = pvc(&["devmeta", "ls"]);
    assert_eq!(code, 0);
    assert!(out.contains(r#""pantavisor.status":"READY""#), "{out}");
    let (code, out, _) = pvc(&["daemons", "ls"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(r#"[{"name":"fake-xconnect","pid":"#),
        "{out}"
    );
    let (code, out, err) = pvc(&["containers", "stop", "ghost"]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (255, "", "{\"Error\":\"Container not found\"}\n")
    );
    let (code, out, _) = pvc(&["containers", "stop", "cli"]);
    assert_eq!((code, out.as_str()), (0, "\n"));
    let (code, _, _) = pvc(&["containers", "start", "cli"]);
    assert_eq!(code, 0);
    let (code, _, _) = pvc(&["bogus"]);
    assert_eq!(code, 1);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pvcontrol"))
        .args(["-s", "/nonexistent/pv-ctrl", "ls"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "ERROR: /nonexistent/pv-ctrl not found\n"
    );
}

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
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.ends_with("\n200"), "{text}");
    assert!(text.starts_with(r#"[{"name":"fake-xconnect""#), "{text}");
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
