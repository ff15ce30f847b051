//! End-to-end: the real `pv-xconnect` binary, real containers (run as
//! root) and the graph from a fake pv-ctrl over a Unix socket (or from a
//! graph file). The test process plays the provider's server (on a
//! listener created inside the provider container, [`Container::listen`])
//! and the consumer's client, or runs curl inside the consumer.

use std::convert::Infallible;
use std::path::Path;
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper_util::rt::TokioIo;
use pv_testkit::pvctrl::{FakePvCtrl, Reply};
use pv_testkit::Container;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

mod common;

use common::{echo_ok, echo_provider, is_socket, wait_until, Daemon, GraphFrom, PROVIDER_SOCK};

const TARGET: &str = "/run/pv/services/raw-unix.sock";

fn graph(links: &[(&Container, i32, &Container, &str)]) -> String {
    let items: Vec<String> = links
        .iter()
        .map(|(c, cpid, p, target)| {
            format!(
                r#"{{"consumer":"{}","consumer_pid":{},"provider":"{}","provider_pid":{},"name":"raw-unix","type":"unix","role":"any","interface":"unix","target":"{}","socket":"{}"}}"#,
                c.name, cpid, p.name, p.pid, target, PROVIDER_SOCK
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_restart_reinjects_and_dropped_link_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let p = Container::start("e2e-server", "sleep infinity");
    let c1 = Container::start("e2e-client", "sleep infinity");
    echo_provider(&p);
    let ctrl = FakePvCtrl::with_graph(
        &dir.path().join("pv-ctrl"),
        &graph(&[(&c1, c1.pid, &p, TARGET)]),
    );
    let mut d = Daemon::start(ctrl.path());

    assert!(
        wait_until(Duration::from_secs(5), || is_socket(&c1.path(TARGET))).await,
        "injected at first graph; logs:\n{}",
        d.logs()
    );
    assert!(!Path::new(TARGET).exists(), "not on the host");
    assert!(echo_ok(&c1.path(TARGET)).await, "echo; logs:\n{}", d.logs());
    let status = d.status();
    assert!(status.contains("name=raw-unix"), "status: {status}");

    // Consumer restart: a new container (new pid) under the same name.
    drop(c1);
    let c2 = Container::start("e2e-client", "sleep infinity");
    ctrl.set_graph(&graph(&[(&c2, c2.pid, &p, TARGET)]));
    let t0 = Instant::now();
    assert!(
        wait_until(Duration::from_secs(2), || is_socket(&c2.path(TARGET))).await,
        "re-injected within 2 s; logs:\n{}",
        d.logs()
    );
    println!("consumer re-injected after {:?}", t0.elapsed());
    assert!(echo_ok(&c2.path(TARGET)).await);

    // Link dropped from the graph: the socket goes away.
    ctrl.set_graph("[]");
    assert!(
        wait_until(Duration::from_secs(2), || !c2.path(TARGET).exists()).await,
        "socket removed when the link left the graph; logs:\n{}",
        d.logs()
    );
    assert!(d.alive());

    // Back again, then SIGTERM: the daemon removes what it injected.
    ctrl.set_graph(&graph(&[(&c2, c2.pid, &p, TARGET)]));
    assert!(wait_until(Duration::from_secs(2), || is_socket(&c2.path(TARGET))).await);
    assert!(d.terminate(), "clean exit on SIGTERM");
    assert!(!c2.path(TARGET).exists(), "removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_started_consumer_gets_nothing_on_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let p = Container::start("e2e-pending-server", "sleep infinity");
    let c = Container::start("e2e-pending-client", "sleep infinity");
    echo_provider(&p);
    let host_dir = dir.path().join("would-be-created");
    let host_target = host_dir.join("pending.sock");
    let target = host_target.to_str().unwrap().to_string();
    let ctrl = FakePvCtrl::with_graph(
        &dir.path().join("pv-ctrl"),
        &graph(&[(&c, -1, &p, &target)]),
    );
    let d = Daemon::start(ctrl.path());
    let polls = ctrl.request_count();
    assert!(
        wait_until(Duration::from_secs(5), || ctrl.request_count() >= polls + 5).await,
        "daemon polls"
    );
    assert!(!host_dir.exists(), "nothing created on the host for pid -1");
    let status = d.status();
    assert!(status.contains("pending"), "status: {status}");

    // Once it starts, the link is injected inside the consumer only.
    ctrl.set_graph(&graph(&[(&c, c.pid, &p, &target)]));
    assert!(
        wait_until(Duration::from_secs(3), || is_socket(&c.path(&target))).await,
        "logs:\n{}",
        d.logs()
    );
    assert!(!host_dir.exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_answers_and_missing_pvctrl_keep_the_last_good_links() {
    let dir = tempfile::tempdir().unwrap();
    let p = Container::start("e2e-robust-server", "sleep infinity");
    let c = Container::start("e2e-robust-client", "sleep infinity");
    echo_provider(&p);
    let sock = dir.path().join("pv-ctrl");
    let good = graph(&[(&c, c.pid, &p, TARGET)]);
    let ctrl = FakePvCtrl::with_graph(&sock, &good);
    let mut d = Daemon::start(ctrl.path());
    assert!(wait_until(Duration::from_secs(5), || is_socket(&c.path(TARGET))).await);
    assert!(echo_ok(&c.path(TARGET)).await);

    for bad in [
        Reply::NotJson("[{\"consumer\": ".into()),
        Reply::Error(500, "State not loaded yet".into()),
        Reply::Garbage(b"\x00\x01 not http at all".to_vec()),
    ] {
        let seen = ctrl.request_count();
        ctrl.set(bad.clone());
        assert!(wait_until(Duration::from_secs(3), || ctrl.request_count() >= seen + 3).await);
        assert!(d.alive(), "daemon alive after {bad:?}");
        assert!(is_socket(&c.path(TARGET)), "link kept after {bad:?}");
        assert!(echo_ok(&c.path(TARGET)).await, "link works after {bad:?}");
    }

    // pv-ctrl gone altogether.
    ctrl.shutdown();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(d.alive());
    assert!(
        echo_ok(&c.path(TARGET)).await,
        "link works with pv-ctrl down"
    );

    // pv-ctrl back: the daemon picks the graph up again.
    let ctrl = FakePvCtrl::with_graph(&sock, "[]");
    assert!(
        wait_until(Duration::from_secs(3), || !c.path(TARGET).exists()).await,
        "graph applied after pv-ctrl returned; logs:\n{}",
        d.logs()
    );
    drop(ctrl);
}

fn greeting_provider(p: &Container, hello: &'static [u8]) {
    let (l, holder) = p.listen(PROVIDER_SOCK);
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(hello).await;
        }
    });
}

async fn greeting(path: &Path) -> Vec<u8> {
    let Ok(mut s) = UnixStream::connect(path).await else {
        return Vec::new();
    };
    let mut out = vec![0u8; 4];
    match tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut out)).await {
        Ok(Ok(_)) => out,
        _ => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_restart_new_connections_reach_the_new_provider() {
    let dir = tempfile::tempdir().unwrap();
    let p1 = Container::start("e2e-prov", "sleep infinity");
    let c = Container::start("e2e-prov-client", "sleep infinity");
    greeting_provider(&p1, b"one\n");
    let ctrl = FakePvCtrl::with_graph(
        &dir.path().join("pv-ctrl"),
        &graph(&[(&c, c.pid, &p1, TARGET)]),
    );
    let d = Daemon::start(ctrl.path());
    assert!(wait_until(Duration::from_secs(5), || is_socket(&c.path(TARGET))).await);
    assert_eq!(greeting(&c.path(TARGET)).await, b"one\n");

    // The provider container restarts: new pid, new server.
    drop(p1);
    let p2 = Container::start("e2e-prov", "sleep infinity");
    greeting_provider(&p2, b"two\n");
    ctrl.set_graph(&graph(&[(&c, c.pid, &p2, TARGET)]));
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        got = greeting(&c.path(TARGET)).await;
        if got == b"two\n" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(got, b"two\n", "new provider reached; logs:\n{}", d.logs());
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(") ").map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ... utime(11) stime(12).
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fd_exhaustion_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let p = Container::start("e2e-emfile-server", "sleep infinity");
    let c = Container::start("e2e-emfile-client", "sleep infinity");
    echo_provider(&p);
    let ctrl = FakePvCtrl::with_graph(
        &dir.path().join("pv-ctrl"),
        &graph(&[(&c, c.pid, &p, TARGET)]),
    );
    let mut d = Daemon::start_limited(ctrl.path(), Some(40));
    assert!(
        wait_until(Duration::from_secs(5), || is_socket(&c.path(TARGET))).await,
        "logs:\n{}",
        d.logs()
    );
    // Hold far more connections than the daemon has fds for.
    let mut held = Vec::new();
    for _ in 0..80 {
        if let Ok(s) = UnixStream::connect(c.path(TARGET)).await {
            held.push(s);
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pid = d.child.id();
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(pid) - before;
    assert!(
        used < 30,
        "daemon spun under fd exhaustion: {used} ticks in 1 s"
    );
    assert!(d.alive());
    assert!(d.logs().contains("out of resources"), "logs:\n{}", d.logs());

    drop(held);
    pv_testkit::assert_eventually!(
        echo_ok(&c.path(TARGET)).await,
        "link recovers once fds are free; logs:\n{}",
        d.logs()
    );
}

/// A REST provider answering every request with the identity headers it
/// received, as JSON lists (so a duplicate would show).
fn identity_provider(p: &Container, inside: &str) {
    let (l, holder) = p.listen(inside);
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((s, _)) = l.accept().await {
            let service =
                hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| {
                    let seen = |name: &str| -> Vec<String> {
                        req.headers()
                            .get_all(name)
                            .iter()
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .collect()
                    };
                    let body = serde_json::json!({
                        "client": seen("x-pv-client"),
                        "role": seen("x-pv-role"),
                    });
                    async move {
                        Ok::<_, Infallible>(http::Response::new(Full::new(bytes::Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service),
            );
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_injects_rest_link_from_a_graph_file() {
    pv_testkit::require_tool("curl");
    let provider = Container::start("pv-example-rest-server", "sleep infinity");
    let consumer = Container::start("pv-example-rest-client", "sleep infinity");
    // The example manifests' paths.
    let (socket, target) = ("/run/nm/api.sock", "/run/pv/services/network-manager.sock");
    identity_provider(&provider, socket);

    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("graph.json");
    let link = serde_json::json!([{
        "consumer": consumer.name, "consumer_pid": consumer.pid,
        "provider": provider.name, "provider_pid": provider.pid,
        "name": "network-manager", "type": "rest", "role": "operator",
        "interface": "rest", "target": target, "socket": socket,
    }]);
    std::fs::write(&graph, link.to_string()).expect("write graph");
    let d = Daemon::spawn(GraphFrom::File(&graph), None);
    assert!(
        wait_until(Duration::from_secs(10), || is_socket(
            &consumer.path(target)
        ))
        .await,
        "link socket never appeared in the consumer; logs:\n{}",
        d.logs()
    );

    // curl inside the consumer's mount namespace, spoof attempt included.
    let out = consumer.exec(&format!(
        "curl -sS -H 'X-PV-Role: admin' -H 'x-pv-client: intruder' \
         --unix-socket {target} http://localhost/info"
    ));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("{e}: {stdout} / {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(
        seen["client"],
        serde_json::json!(["pv-example-rest-client"])
    );
    assert_eq!(seen["role"], serde_json::json!(["operator"]));
    assert!(
        !Path::new(target).exists(),
        "the link socket must exist only inside the consumer"
    );
    assert!(d.terminate(), "clean exit on SIGTERM");
}
