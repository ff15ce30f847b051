//! The pv-ctrl client and the graph sources against a fake pv-ctrl on a
//! real Unix socket, and a real graph file.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pv_testkit::pvctrl::{FakePvCtrl, Reply};
use pv_testkit::Logs;
use pv_xconnect::ctrl::{self, CtrlClient, FetchError, Source};
use pv_xconnect::graph::LinkSpec;
use pv_xconnect::shutdown::Shutdown;
use tokio::sync::watch;

/// `n` links as Pantavisor prints them (keys in its order).
fn graph(n: usize, consumer_pid: i32) -> String {
    let entries: Vec<String> = (0..n)
        .map(|i| {
            format!(
                r#"{{"consumer":"client-{i}","consumer_pid":{consumer_pid},"provider":"server","provider_pid":5678,"name":"svc-{i}","type":"unix","role":"any","interface":"unix","target":"/run/pv/services/svc-{i}.sock","socket":"/run/example/raw-{i}.sock"}}"#
            )
        })
        .collect();
    format!("[{}]", entries.join(","))
}

type Rx = watch::Receiver<Option<Arc<Vec<LinkSpec>>>>;

fn start_source(source: Source, interval_ms: u64) -> (Rx, Shutdown) {
    let (rx, _reload, shutdown) = start_reloadable(source, interval_ms);
    (rx, shutdown)
}

/// A source and the sender of its reloads (SIGHUP).
fn start_reloadable(source: Source, interval_ms: u64) -> (Rx, watch::Sender<u64>, Shutdown) {
    let (tx, rx) = watch::channel(None);
    let (reload, reload_rx) = watch::channel(0u64);
    let shutdown = Shutdown::new();
    tokio::spawn(ctrl::run(
        source,
        Duration::from_millis(interval_ms),
        tx,
        reload_rx,
        shutdown.clone(),
    ));
    (rx, reload, shutdown)
}

/// Wait until the published graph satisfies `pred`.
async fn wait_graph(rx: &mut Rx, within: Duration, pred: impl Fn(&[LinkSpec]) -> bool) {
    let ok = tokio::time::timeout(within, async {
        loop {
            if let Some(g) = rx.borrow_and_update().as_deref() {
                if pred(g) {
                    return;
                }
            }
            if rx.changed().await.is_err() {
                panic!("source ended");
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "expected graph not published within {within:?}");
}

fn pid_of_first(rx: &Rx) -> Option<i32> {
    rx.borrow().as_deref().map(|g| g[0].consumer_pid)
}

#[tokio::test]
async fn normal_http11_answer_and_request_shape() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let fake = FakePvCtrl::with_graph(&sock, &graph(2, 1234));
    let resolved = CtrlClient::new(&sock).graph().await.expect("graph");
    assert_eq!(resolved.links.len(), 2);
    assert_eq!(resolved.links[1].name, "svc-1");
    assert_eq!(resolved.links[1].consumer_pid, 1234);
    let req = &fake.requests()[0];
    assert!(req.starts_with("GET /xconnect-graph HTTP/1."), "{req}");
    assert!(
        req.to_ascii_lowercase().contains("host: localhost\r\n"),
        "pv-ctrl wants Host: localhost, got {req}"
    );
}

#[tokio::test]
async fn http10_answer_without_length_is_read_to_the_end() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    // ~60 KiB, sent in three writes with pauses: more than one read.
    let body = graph(300, 42);
    assert!(body.len() > 50_000);
    let _fake = FakePvCtrl::start(&sock, Reply::Http10(body));
    let resolved = CtrlClient::new(&sock).graph().await.expect("graph");
    assert_eq!(resolved.links.len(), 300);
    assert_eq!(resolved.links[299].name, "svc-299");
}

#[tokio::test]
async fn error_conditions_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let client = CtrlClient::new(&sock);
    assert!(matches!(client.graph().await, Err(FetchError::Missing(_))));

    // A socket file nobody listens on: refused.
    drop(std::os::unix::net::UnixListener::bind(&sock).expect("bind"));
    assert!(matches!(client.graph().await, Err(FetchError::Refused(_))));

    let fake = FakePvCtrl::start(&sock, Reply::Error(500, "State not loaded yet".into()));
    match client.graph().await {
        Err(FetchError::Status { status, message }) => {
            assert_eq!(status.as_u16(), 500);
            assert_eq!(message, "State not loaded yet");
        }
        other => panic!("expected a 500, got {other:?}"),
    }
    fake.set(Reply::NotJson("<html>oops</html>".into()));
    assert!(matches!(client.graph().await, Err(FetchError::Graph(_))));
    fake.set(Reply::Graph(r#"{"Error":"nope"}"#.into()));
    assert!(matches!(client.graph().await, Err(FetchError::Graph(_))));
    fake.set(Reply::Garbage(b"SSH-2.0-OpenSSH\r\n".to_vec()));
    assert!(matches!(client.graph().await, Err(FetchError::Http(_))));
}

#[tokio::test]
async fn failures_keep_the_last_good_graph_and_log_each_change_once() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let fake = FakePvCtrl::with_graph(&sock, &graph(1, 100));
    let (mut rx, shutdown) = start_source(Source::Ctrl(sock.clone()), 50);
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 1).await;

    let polls_before = fake.request_count();
    fake.set(Reply::Error(500, "State not loaded yet".into()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(fake.request_count() >= polls_before + 4, "keeps polling");
    assert_eq!(pid_of_first(&rx), Some(100), "last good graph kept on 500");

    fake.set(Reply::NotJson("garbage".into()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pid_of_first(&rx),
        Some(100),
        "last good graph kept on garbage"
    );

    fake.set(Reply::Garbage(b"\x00\x01\x02 not http".to_vec()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(pid_of_first(&rx), Some(100), "kept on a non-HTTP answer");

    fake.set_graph(&graph(1, 200));
    wait_graph(&mut rx, Duration::from_secs(2), |g| {
        g[0].consumer_pid == 200
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();

    assert_eq!(
        logs.count(&["HTTP status 500", "keeping the last good graph (1 links)"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count(&["graph is not JSON"]), 1, "{}", logs.text());
    assert_eq!(logs.count(&["HTTP:"]), 1, "{}", logs.text());
    assert_eq!(logs.count(&["answering again"]), 1, "{}", logs.text());
    assert_eq!(logs.count(&["first graph"]), 1, "{}", logs.text());
}

#[tokio::test]
async fn missing_socket_then_appearing_applies_the_first_graph_promptly() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    // The default-like 1 s interval: the first graph must not wait for it.
    let (mut rx, shutdown) = start_source(Source::Ctrl(sock.clone()), 1000);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(rx.borrow().is_none());

    let appeared = Instant::now();
    let _fake = FakePvCtrl::with_graph(&sock, &graph(3, 7));
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 3).await;
    let took = appeared.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "first graph after {took:?}"
    );
    shutdown.cancel();

    assert_eq!(
        logs.count(&["does not exist", "no graph yet"]),
        1,
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn pv_ctrl_going_away_keeps_links_then_recovers() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let fake = FakePvCtrl::with_graph(&sock, &graph(2, 1));
    let (mut rx, shutdown) = start_source(Source::Ctrl(sock.clone()), 50);
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 2).await;
    fake.shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.borrow().as_deref().map(Vec::len), Some(2));
    let _fake = FakePvCtrl::with_graph(&sock, &graph(1, 1));
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 1).await;
    shutdown.cancel();
    assert_eq!(
        logs.count(&["does not exist", "keeping the last good graph (2 links)"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count(&["answering again"]), 1, "{}", logs.text());
}

#[tokio::test]
async fn unchanged_graph_is_published_once_and_bad_entries_logged_once() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let body = r#"[{"consumer":"a","consumer_pid":1,"provider":"p","provider_pid":2,"name":"x","type":"unix","target":null,"socket":null},
                   {"consumer":"b","consumer_pid":1,"provider":"p","provider_pid":2,"name":"y","type":"unix","target":null,"socket":"/s"}]"#;
    let fake = FakePvCtrl::with_graph(&sock, body);
    let (mut rx, shutdown) = start_source(Source::Ctrl(sock.clone()), 30);
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 1).await;
    let polls = fake.request_count();
    let mut publications = 0;
    let _ = tokio::time::timeout(Duration::from_millis(400), async {
        while rx.changed().await.is_ok() {
            publications += 1;
        }
    })
    .await;
    assert!(fake.request_count() > polls + 5);
    assert_eq!(publications, 0, "an unchanged graph is not re-published");
    shutdown.cancel();
    assert_eq!(logs.count(&["a/x", "socket is null"]), 1, "{}", logs.text());
}

async fn write(path: &Path, body: &str) {
    // Write-then-rename, as an operator's tool would, so a poll never sees
    // a half-written file.
    let tmp = path.with_extension("tmp");
    tokio::fs::write(&tmp, body).await.expect("write");
    tokio::fs::rename(&tmp, path).await.expect("rename");
}

#[tokio::test]
async fn graph_file_is_reread_on_change_and_failures_keep_the_last() {
    let (logs, _guard) = Logs::capture();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("graph.json");
    let (mut rx, shutdown) = start_source(Source::File(file.clone()), 50);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.borrow().is_none(), "no file, no graph");

    write(&file, "[]").await;
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.is_empty()).await;
    write(&file, &graph(2, -1)).await;
    wait_graph(&mut rx, Duration::from_secs(2), |g| g.len() == 2).await;

    write(&file, "{not json").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.borrow().as_deref().map(Vec::len), Some(2));
    tokio::fs::remove_file(&file).await.expect("rm");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.borrow().as_deref().map(Vec::len), Some(2));

    write(&file, &graph(1, 9)).await;
    wait_graph(&mut rx, Duration::from_secs(2), |g| {
        g.len() == 1 && g[0].consumer_pid == 9
    })
    .await;
    shutdown.cancel();
    assert_eq!(logs.count(&["graph is not JSON"]), 1, "{}", logs.text());
    // Missing at start and missing again later: two separate changes.
    assert_eq!(logs.count(&["does not exist"]), 2, "{}", logs.text());
}

#[tokio::test]
async fn hung_pv_ctrl_times_out_without_blocking_forever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("pv-ctrl");
    let _fake = FakePvCtrl::start(&sock, Reply::Hang);
    let started = Instant::now();
    let r = CtrlClient::new(&sock).graph().await;
    assert!(matches!(r, Err(FetchError::Timeout)), "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(8));
}

#[tokio::test]
async fn a_reload_fetches_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("pv-ctrl");
    let fake = FakePvCtrl::with_graph(&sock, &graph(1, 1234));
    // An interval far longer than the test.
    let (mut rx, reload, shutdown) = start_reloadable(Source::Ctrl(sock.clone()), 600_000);
    wait_graph(&mut rx, Duration::from_secs(5), |g| g.len() == 1).await;
    let before = fake.request_count();
    fake.set_graph(&graph(2, 1234));
    reload.send_modify(|n| *n += 1);
    wait_graph(&mut rx, Duration::from_secs(5), |g| g.len() == 2).await;
    assert_eq!(fake.request_count(), before + 1);
    shutdown.cancel();
}
