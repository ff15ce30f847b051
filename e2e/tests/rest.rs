//! `rest` links end to end on the host: curl (and raw sockets where curl
//! cannot express the case) → a rest link (the daemon's accept loop and
//! `link::rest`) → the example REST server. The daemon binary with a rest
//! link between two containers is tested in `daemon/tests/e2e_daemon.rs`.
//!
//! Tests measuring this process's memory or fd count take [`EXCLUSIVE`] for
//! writing so that no other test of this binary runs meanwhile.

use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pv_e2e::rest::{self, Provider};
use pv_e2e::Proxy;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::RwLock;

static EXCLUSIVE: RwLock<()> = RwLock::const_new(());

const CONSUMER: &str = "pv-example-rest-client";
const IO_TIMEOUT: Duration = Duration::from_secs(20);

struct Setup {
    _dir: tempfile::TempDir,
    provider: Provider,
    proxy: Proxy,
}

async fn setup(role: &str) -> Setup {
    let dir = tempfile::tempdir().expect("tempdir");
    let provider = Provider::start(dir.path());
    let proxy = rest::proxy(dir.path(), &provider.path, CONSUMER, role).await;
    Setup {
        _dir: dir,
        provider,
        proxy,
    }
}

struct Curl {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn curl(socket: &Path, args: &[&str], stdin: Option<Vec<u8>>) -> Curl {
    let mut cmd = tokio::process::Command::new(pv_testkit::require_tool("curl"));
    cmd.arg("-sS")
        .arg("--unix-socket")
        .arg(socket)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd
        .spawn()
        .expect("curl must be installed (apt-get install curl)");
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        tokio::spawn(async move {
            let _ = pipe.write_all(&data).await;
        });
    }
    let out = tokio::time::timeout(IO_TIMEOUT, child.wait_with_output())
        .await
        .expect("curl timed out")
        .expect("curl ran");
    Curl {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Write `request` (optionally half-closing), read until the peer closes.
async fn raw(socket: &Path, request: &[u8], half_close: bool) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(request).await.expect("write");
    if half_close {
        s.shutdown().await.expect("shutdown");
    }
    let mut out = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, s.read_to_end(&mut out))
        .await
        .expect("connection not closed in time")
        .expect("read");
    out
}

/// A parsed response with a Content-Length body.
struct Res {
    status: u16,
    body: Vec<u8>,
}

impl Res {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Split a byte stream into its responses (Content-Length framing only).
fn responses(mut buf: &[u8]) -> Vec<Res> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut res = httparse::Response::new(&mut headers);
        let head = match res.parse(buf).expect("response head") {
            httparse::Status::Complete(n) => n,
            httparse::Status::Partial => {
                panic!("partial response head: {}", String::from_utf8_lossy(buf))
            }
        };
        let len = res
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("content-length"))
            .map(|h| {
                std::str::from_utf8(h.value)
                    .expect("ascii")
                    .parse::<usize>()
                    .expect("length")
            })
            .unwrap_or(0);
        out.push(Res {
            status: res.code.expect("code"),
            body: buf[head..head + len].to_vec(),
        });
        buf = &buf[head + len..];
    }
    out
}

/// Values of `name` in a `/headers` answer.
fn header_values(headers_json: &Value, name: &str) -> Vec<String> {
    headers_json
        .as_array()
        .expect("array")
        .iter()
        .filter(|p| p[0].as_str().is_some_and(|n| n.eq_ignore_ascii_case(name)))
        .map(|p| p[1].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_info_shows_consumer_and_role() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let out = curl(&s.proxy.path, &["http://localhost/info"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let info: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(info["service"], "network-manager-mock");
    assert_eq!(info["client"], CONSUMER);
    assert_eq!(info["role"], "any");

    let op = setup("operator").await;
    let out = curl(&op.proxy.path, &["http://localhost/info"], None).await;
    let info: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(info["role"], "operator");
    assert!(s.proxy.stats.bytes_relayed.load(Ordering::Relaxed) > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_client_sees_identity_and_refused_spoof() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let report = pv_examples::rest::check(&s.proxy.path)
        .await
        .expect("check");
    assert_eq!(report.info.client, CONSUMER);
    assert_eq!(report.info.role, "any");
    assert!(report.spoof_refused(), "{report:?}");
    // Without pv-xconnect in between, the same check must notice the spoof.
    let direct = pv_examples::rest::check(&s.provider.path)
        .await
        .expect("check");
    assert!(!direct.spoof_refused(), "{direct:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alive_requests_all_carry_identity() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let out = curl(
        &s.proxy.path,
        &[
            "-H",
            "X-PV-Role: admin",
            "http://localhost/info",
            "http://localhost/info",
        ],
        None,
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let infos: Vec<Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("json stream");
    assert_eq!(infos.len(), 2, "{}", out.stdout);
    for info in &infos {
        assert_eq!(info["client"], CONSUMER);
        assert_eq!(info["role"], "any");
    }
    assert_eq!(s.proxy.accepted(), 1, "curl should reuse its connection");
    assert_eq!(s.provider.connections(), 1);
    assert_eq!(s.provider.requests(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_all_carry_identity() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let out = raw(
        &s.proxy.path,
        b"GET /info HTTP/1.1\r\nHost: a\r\nX-PV-Client: intruder\r\n\r\n\
          GET /headers HTTP/1.1\r\nHost: a\r\nX-PV-Role: admin\r\n\r\n\
          GET /info HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    let res = responses(&out);
    assert_eq!(res.len(), 3, "{}", String::from_utf8_lossy(&out));
    assert!(res.iter().all(|r| r.status == 200));
    assert_eq!(res[0].json()["client"], CONSUMER);
    assert_eq!(header_values(&res[1].json(), "x-pv-role"), ["any"]);
    assert_eq!(header_values(&res[1].json(), "x-pv-client"), [CONSUMER]);
    assert_eq!(res[2].json()["client"], CONSUMER);
    assert_eq!(s.provider.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_identity_headers_are_stripped() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("viewer").await;
    let out = curl(
        &s.proxy.path,
        &[
            "-H",
            "x-pv-role: admin",
            "-H",
            "X-PV-ROLE:admin",
            "-H",
            "X-Pv-Role:    admin   ",
            "-H",
            "X-PV-Client: intruder",
            "-H",
            "x-pV-cLiEnT:intruder",
            "http://localhost/headers",
        ],
        None,
    )
    .await;
    let headers: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(header_values(&headers, "x-pv-role"), ["viewer"]);
    assert_eq!(header_values(&headers, "x-pv-client"), [CONSUMER]);

    // Tabs around the value, and repeats separated by other headers.
    let out = raw(
        &s.proxy.path,
        b"GET /headers HTTP/1.1\r\nHost: a\r\nX-PV-Role:\tadmin\t\r\nAccept: */*\r\n\
          X-PV-Role: admin, root\r\nX-PV-Client:\t intruder\r\nConnection: close\r\n\r\n",
        false,
    )
    .await;
    let res = responses(&out);
    assert_eq!(header_values(&res[0].json(), "x-pv-role"), ["viewer"]);
    assert_eq!(header_values(&res[0].json(), "x-pv-client"), [CONSUMER]);

    // Whitespace before the colon or a folded continuation line: the head is
    // refused (400) and nothing reaches the provider.
    let before = s.provider.requests();
    for bad in [
        &b"GET /headers HTTP/1.1\r\nHost: a\r\nX-PV-Role : admin\r\n\r\n"[..],
        &b"GET /headers HTTP/1.1\r\nHost: a\r\nX-PV-Role\t: admin\r\n\r\n"[..],
        &b"GET /headers HTTP/1.1\r\nHost: a\r\nX-Other: a\r\n X-PV-Role: admin\r\n\r\n"[..],
    ] {
        let out = raw(&s.proxy.path, bad, false).await;
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(s.provider.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_small_uploads_arrive_intact() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let want = hex::encode(Sha256::digest(&data));
    // `-T -` streams stdin with Transfer-Encoding: chunked.
    let out = curl(
        &s.proxy.path,
        &["-T", "-", "-v", "http://localhost/echo"],
        Some(data.clone()),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("Transfer-Encoding: chunked"),
        "curl did not send chunked: {}",
        out.stderr
    );
    let echo: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(echo["length"], data.len());
    assert_eq!(echo["sha256"], want);

    let out = curl(
        &s.proxy.path,
        &[
            "--data-binary",
            "hello through pv-xconnect",
            "http://localhost/echo",
        ],
        None,
    )
    .await;
    let echo: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(echo["body"], "hello through pv-xconnect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_upload_with_bounded_memory() {
    let _g = EXCLUSIVE.write().await;
    let s = setup("").await;
    const TOTAL: usize = 1 << 30;
    const CHUNK: usize = 64 * 1024;
    // A 1 MiB pseudo-random pool; each chunk is a different window of it,
    // so the stream is cheap to generate and not trivially repetitive.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let pool: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();

    let rss_before = rss_bytes();
    let peak = Arc::new(AtomicU64::new(rss_before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(rss_bytes(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    let started = Instant::now();
    let mut conn = UnixStream::connect(&s.proxy.path).await.expect("connect");
    conn.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {TOTAL}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .expect("head");
    let mut hasher = Sha256::new();
    for i in 0..TOTAL / CHUNK {
        let off = (i * 4099) % (pool.len() - CHUNK);
        let chunk = &pool[off..off + CHUNK];
        hasher.update(chunk);
        conn.write_all(chunk).await.expect("body");
    }
    let mut out = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, conn.read_to_end(&mut out))
        .await
        .expect("response in time")
        .expect("read");
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");

    let res = responses(&out);
    let echo = res[0].json();
    assert_eq!(echo["length"], TOTAL);
    assert_eq!(echo["sha256"], hex::encode(hasher.finalize()));
    let growth = peak.load(Ordering::Relaxed).saturating_sub(rss_before);
    println!(
        "1 GiB through the proxy in {elapsed:?} ({:.0} MB/s); RSS growth {} KiB (proxy, provider and client together)",
        TOTAL as f64 / elapsed.as_secs_f64() / 1e6,
        growth / 1024
    );
    assert!(
        growth < 64 << 20,
        "RSS grew by {} MiB while streaming 1 GiB",
        growth >> 20
    );
    assert!(s.proxy.stats.bytes_relayed.load(Ordering::Relaxed) >= TOTAL as u64);
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("rss field");
    pages * 4096
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expect_100_continue_is_answered() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let data = vec![b'x'; 2 << 20];
    let started = Instant::now();
    // Without a 100 from the proxy curl would wait the full 10 s timeout.
    let out = curl(
        &s.proxy.path,
        &[
            "-v",
            "-H",
            "Expect: 100-continue",
            "--expect100-timeout",
            "10",
            "--data-binary",
            "@-",
            "http://localhost/echo",
        ],
        Some(data.clone()),
    )
    .await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("HTTP/1.1 100 Continue"),
        "no 100 Continue: {}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let echo: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(echo["sha256"], hex::encode(Sha256::digest(&data)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_switches_to_raw_relay() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let mut conn = UnixStream::connect(&s.proxy.path).await.expect("connect");
    conn.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: pv-echo\r\n\r\n",
    )
    .await
    .expect("write");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(IO_TIMEOUT, conn.read(&mut b))
            .await
            .expect("head in time")
            .expect("read");
        assert_eq!(
            n,
            1,
            "closed before 101: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    // Not HTTP any more: arbitrary bytes, both ways, then half-close.
    conn.write_all(b"\x00raw ping\r\n\r\nGET / HTTP/1.1\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 29];
    tokio::time::timeout(IO_TIMEOUT, conn.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .expect("read");
    assert_eq!(&buf, b"\x00raw ping\r\n\r\nGET / HTTP/1.1\r\n");
    conn.write_all(b"last words").await.expect("write");
    conn.shutdown().await.expect("half-close");
    let mut rest = Vec::new();
    tokio::time::timeout(IO_TIMEOUT, conn.read_to_end(&mut rest))
        .await
        .expect("closed in time")
        .expect("read");
    assert_eq!(rest, b"last words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_1_0_requests_work() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let out = curl(&s.proxy.path, &["--http1.0", "http://localhost/info"], None).await;
    assert_eq!(out.code, 0, "{}", out.stderr);
    let info: Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(info["client"], CONSUMER);
    // A bare 1.0 request without Host, as pv-ctrl clients send it.
    let out = raw(&s.proxy.path, b"GET /info HTTP/1.0\r\n\r\n", false).await;
    let res = responses(&out);
    assert_eq!(res.len(), 1);
    assert_eq!(res[0].status, 200);
    assert_eq!(res[0].json()["role"], "any");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_head_gets_400_and_never_reaches_provider() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        &b"GET /info HTTP/1.1\r\nHost: a\r\nNo colon here\r\n\r\n"[..],
        &b"GET /info HTTP/9.9\r\nHost: a\r\n\r\n"[..],
        &b"GET /info HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"[..],
    ] {
        let out = raw(&s.proxy.path, bad, false).await;
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "{:?} -> {}",
            String::from_utf8_lossy(bad),
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(s.provider.connections(), 0);
    assert_eq!(s.provider.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_head_gets_431() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let big = format!("X-Big: {}", "a".repeat(70 * 1024));
    let out = curl(
        &s.proxy.path,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &big,
            "http://localhost/info",
        ],
        None,
    )
    .await;
    assert_eq!(out.stdout, "431", "{}", out.stderr);
    assert_eq!(s.provider.requests(), 0);
    // Just under the limit still passes.
    let fits = format!("X-Big: {}", "a".repeat(60 * 1024));
    let out = curl(
        &s.proxy.path,
        &[
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &fits,
            "http://localhost/info",
        ],
        None,
    )
    .await;
    assert_eq!(out.stdout, "200", "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_provider_gets_502_json() {
    let _g = EXCLUSIVE.read().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let proxy = rest::proxy(dir.path(), &dir.path().join("nobody.sock"), CONSUMER, "").await;
    let out = curl(
        &proxy.path,
        &["-w", "\n%{http_code}", "http://localhost/info"],
        None,
    )
    .await;
    let (body, code) = out.stdout.rsplit_once('\n').expect("code line");
    assert_eq!(code, "502");
    let err: Value = serde_json::from_str(body).expect("json");
    assert!(
        err["error"]
            .as_str()
            .is_some_and(|e| e.contains("unreachable")),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_as_they_come() {
    let _g = EXCLUSIVE.read().await;
    let s = setup("").await;
    let mut conn = UnixStream::connect(&s.proxy.path).await.expect("connect");
    let started = Instant::now();
    conn.write_all(
        b"GET /events?n=3&interval_ms=600 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut seen = Vec::new();
    let mut first_event_at = None;
    loop {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(IO_TIMEOUT, conn.read(&mut buf))
            .await
            .expect("read in time")
            .expect("read");
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
        if first_event_at.is_none() && String::from_utf8_lossy(&seen).contains("data: {\"seq\":0}")
        {
            first_event_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_event_at.expect("first event");
    let text = String::from_utf8_lossy(&seen);
    assert!(text.contains("data: {\"seq\":2}"), "{text}");
    assert!(
        first < Duration::from_millis(500) && total >= Duration::from_millis(1200),
        "first event after {first:?}, all after {total:?}: the response was buffered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_killed_mid_response_closes_consumer() {
    let _g = EXCLUSIVE.read().await;
    let mut s = setup("").await;
    let mut conn = UnixStream::connect(&s.proxy.path).await.expect("connect");
    conn.write_all(b"GET /events?n=1000&interval_ms=50 HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    while !String::from_utf8_lossy(&seen).contains("data:") {
        let mut buf = [0u8; 4096];
        let n = tokio::time::timeout(IO_TIMEOUT, conn.read(&mut buf))
            .await
            .expect("first event in time")
            .expect("read");
        assert!(n > 0, "closed before the first event");
        seen.extend_from_slice(&buf[..n]);
    }
    s.provider.kill();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest))
        .await
        .expect("consumer connection must be closed when the provider dies")
        .ok();
    seen.extend_from_slice(&rest);
    assert!(
        !seen.ends_with(b"0\r\n\r\n"),
        "the truncated stream must not look complete"
    );
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").expect("fd dir").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_closed_clients_get_full_answers_and_fds_return_to_baseline() {
    let _g = EXCLUSIVE.write().await;
    let s = setup("").await;
    // Warm up lazily created runtime resources before taking the baseline.
    let out = raw(
        &s.proxy.path,
        b"GET /info HTTP/1.1\r\nHost: a\r\n\r\n",
        true,
    )
    .await;
    assert_eq!(responses(&out)[0].json()["client"], CONSUMER);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let baseline = fd_count();

    for batch in 0..10 {
        let mut jobs = Vec::new();
        for _ in 0..10 {
            let path = s.proxy.path.clone();
            jobs.push(tokio::spawn(async move {
                let mut child = tokio::process::Command::new("nc")
                    .arg("-N")
                    .arg("-U")
                    .arg(&path)
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .kill_on_drop(true)
                    .spawn()
                    .expect("nc (netcat-openbsd) must be installed");
                let mut stdin = child.stdin.take().expect("stdin");
                stdin
                    .write_all(b"GET /info HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .await
                    .expect("write");
                drop(stdin);
                tokio::time::timeout(IO_TIMEOUT, child.wait_with_output())
                    .await
                    .expect("nc finished in time")
                    .expect("nc ran")
            }));
        }
        for job in jobs {
            let out = job.await.expect("join");
            let res = responses(&out.stdout);
            assert_eq!(
                res.len(),
                1,
                "batch {batch}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            assert_eq!(res[0].json()["client"], CONSUMER);
        }
    }
    assert_eq!(s.proxy.accepted(), 101);

    pv_testkit::assert_eventually!(
        fd_count() <= baseline,
        "fd leak after 100 half-closed requests: baseline {baseline}, now {}",
        fd_count()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_shutdown_closes_upgraded_streams() {
    let _g = EXCLUSIVE.read().await;
    let Setup {
        _dir,
        provider: _provider,
        proxy,
    } = setup("").await;
    let mut conn = UnixStream::connect(&proxy.path).await.expect("connect");
    conn.write_all(
        b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: pv-echo\r\n\r\n",
    )
    .await
    .expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(IO_TIMEOUT, conn.read(&mut buf))
        .await
        .expect("101 in time")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 101"));
    conn.write_all(b"ping").await.expect("write");
    let mut echo = [0u8; 4];
    conn.read_exact(&mut echo).await.expect("echo");
    drop(proxy); // cancels the link's shutdown token
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut rest))
        .await
        .expect("upgraded stream must close when the link stops")
        .ok();
}
