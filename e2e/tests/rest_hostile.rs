//! A `rest` link against hostile consumers: raw requests spelling the
//! identity headers the way CGI/WSGI frameworks fold them, naming them in
//! `Connection`, offering cleartext HTTP/2, trickling a head byte by byte;
//! the provider (the example REST server, whose `/headers` echoes what it
//! received) says what got through. WebSocket goes through with Python's
//! `websockets` on both ends. Pipelined requests, duplicate headers and
//! request smuggling (CL.TE, TE.CL, obfuscated codings, identity trailers)
//! go to a provider that records the bytes it got ([`RawProvider`]).

use std::path::Path;
use std::time::{Duration, Instant};

use pv_e2e::rest::{self, Provider};
use pv_xconnect::link::{rest as rest_link, Options};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const CONSUMER: &str = "pv-example-rest-client";
const T: Duration = Duration::from_secs(20);

/// Write `request`, read until the proxy closes.
async fn raw(socket: &Path, request: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("connection not closed in time")
        .expect("read");
    out
}

/// Write `request` and read one response (Content-Length framed) on a
/// connection left open.
async fn one_response(socket: &Path, request: &[u8]) -> Vec<u8> {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    loop {
        let mut b = [0u8; 4096];
        let n = tokio::time::timeout(T, s.read(&mut b))
            .await
            .expect("response in time")
            .expect("read");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&out));
        out.extend_from_slice(&b[..n]);
        let text = String::from_utf8_lossy(&out).to_ascii_lowercase();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().expect("length"))
                .unwrap_or(0);
            if out.len() >= end + 4 + len {
                return out;
            }
        }
    }
}

/// The headers the provider received, from a `/headers` response.
fn received(response: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").expect("head end") + 4..];
    let v: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body}"));
    v.as_array()
        .expect("array")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                p[1].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// Every header that a framework folding case and `_` would read as one
/// of the identity headers.
fn identity_like(headers: &[(String, String)]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| {
            let n = n.replace('_', "-");
            n == "x-pv-role" || n == "x-pv-client"
        })
        .cloned()
        .collect()
}

async fn setup(dir: &Path, role: &str, options: &Options) -> (Provider, pv_e2e::Proxy) {
    let provider = Provider::start(dir);
    let proxy = rest::proxy_with(dir, &provider.path, CONSUMER, role, options).await;
    (provider, proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_spelling_of_the_identity_headers_reaches_the_provider() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, proxy) = setup(dir.path(), "viewer", &Options::default()).await;
    // Without the link, the provider does see the spoofed spellings: the
    // check below could fail.
    let direct = raw(
        &provider.path,
        b"GET /headers HTTP/1.1\r\nHost: a\r\nX_PV_Role: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(identity_like(&received(&direct)).len(), 1);

    let want = vec![
        ("x-pv-client".to_string(), CONSUMER.to_string()),
        ("x-pv-role".to_string(), "viewer".to_string()),
    ];
    for spoof in [
        &b"X_PV_Role: admin\r\n"[..],
        b"x-pv_role: admin\r\n",
        b"X-PV_Client: root\r\n",
        b"X_PV_CLIENT: root\r\n",
        b"x_pv_role:\tadmin\t\r\n",
        b"X_Pv_RoLe:   admin   \r\n",
        b"X-PV-Role: admin\r\nX_PV_Role: root\r\nx-pv_client: root\r\n",
    ] {
        let mut req = b"GET /headers HTTP/1.1\r\nHost: a\r\n".to_vec();
        req.extend_from_slice(spoof);
        req.extend_from_slice(b"Connection: close\r\n\r\n");
        let mut got = identity_like(&received(&raw(&proxy.path, &req).await));
        got.sort();
        assert_eq!(got, want, "{}", String::from_utf8_lossy(spoof));
    }
    // Whitespace before the colon and folded (obs-fold) lines: the head is
    // refused, nothing reaches the provider.
    let before = provider.requests();
    for bad in [
        &b"X_PV_Role : admin\r\n"[..],
        b"X_PV_Role\t: admin\r\n",
        b"X-Other: a\r\n X_PV_Role: admin\r\n",
        b"X-Other: a\r\n\tX-PV-Role: admin\r\n",
    ] {
        let mut req = b"GET /headers HTTP/1.1\r\nHost: a\r\n".to_vec();
        req.extend_from_slice(bad);
        req.extend_from_slice(b"\r\n");
        let out = raw(&proxy.path, &req).await;
        assert!(
            out.starts_with(b"HTTP/1.1 400"),
            "{}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(provider.requests(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_listed_identity_header_still_arrives_as_injected() {
    let dir = tempfile::tempdir().unwrap();
    let (_provider, proxy) = setup(dir.path(), "viewer", &Options::default()).await;
    // The issue's exact spelling, on a connection kept alive.
    let headers = received(
        &one_response(
            &proxy.path,
            b"GET /headers HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-PV-Role, X-PV-Client, X-Secret\r\n\
              X-PV-Role: admin\r\nX-Secret: s\r\nKeep-Alive: timeout=99\r\nTE: trailers\r\n\
              Proxy-Connection: keep-alive\r\n\r\n",
        )
        .await,
    );
    let mut id = identity_like(&headers);
    id.sort();
    assert_eq!(
        id,
        [
            ("x-pv-client".to_string(), CONSUMER.to_string()),
            ("x-pv-role".to_string(), "viewer".to_string())
        ]
    );
    for (n, v) in &headers {
        assert!(
            ![
                "connection",
                "keep-alive",
                "te",
                "proxy-connection",
                "x-secret"
            ]
            .contains(&n.as_str()),
            "{n}: {v} reached the provider"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_is_refused_while_websocket_works() {
    let dir = tempfile::tempdir().unwrap();
    let (provider, proxy) = setup(dir.path(), "", &Options::default()).await;
    // curl offers h2c on http:// with --http2: it gets HTTP/1.1.
    let out = tokio::process::Command::new(pv_testkit::require_tool("curl"))
        .args(["-sS", "-i", "--http2", "--unix-socket"])
        .arg(&proxy.path)
        .arg("http://localhost/headers")
        .output()
        .await
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let body = &text[text.find("\r\n\r\n").unwrap() + 4..];
    let headers: Value = serde_json::from_str(body).unwrap();
    let names: Vec<String> = headers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p[0].as_str().unwrap().to_ascii_lowercase())
        .collect();
    for n in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !names.contains(&n.to_string()),
            "{n} reached the provider: {names:?}"
        );
    }
    // A raw offer is never switched.
    let out = raw(
        &proxy.path,
        b"GET /upgrade HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
          HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        !out.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    // Prior knowledge: the HTTP/2 preface is not a request.
    let before = provider.requests();
    let out = raw(&proxy.path, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(
        !out.starts_with(b"HTTP/1.1 2"),
        "{}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(provider.requests(), before);

    // WebSocket, with a real server and client on each side.
    let py = Path::new("/usr/bin/python3");
    assert!(
        py.exists(),
        "this test needs Debian's python3 (ci/install-deps.sh)"
    );
    let ws_sock = dir.path().join("ws.sock");
    let mut server = tokio::process::Command::new(py)
        .args(["-c", WS_SERVER])
        .arg(&ws_sock)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3");
    let mut ready = [0u8; 6];
    tokio::time::timeout(T, server.stdout.as_mut().unwrap().read_exact(&mut ready))
        .await
        .expect("websocket server ready")
        .expect("python3 -c 'import websockets' failed: apt-get install python3-websockets");
    let ws_dir = tempfile::tempdir().unwrap();
    let ws_proxy = rest::proxy(ws_dir.path(), &ws_sock, CONSUMER, "viewer").await;
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new(py)
            .args(["-c", WS_CLIENT])
            .arg(&ws_proxy.path)
            .output(),
    )
    .await
    .expect("websocket client in time")
    .expect("python3");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The echo came back, and the handshake carried our identity only.
    assert!(text.contains("echo: ping through pv-xconnect"), "{text}");
    assert!(
        text.contains("role=viewer client=pv-example-rest-client"),
        "{text}"
    );
}

/// A WebSocket echo server on a Unix socket that first sends what the
/// handshake carried as identity.
const WS_SERVER: &str = r#"
import asyncio, sys, websockets
async def echo(ws, path=None):
    h = ws.request_headers
    await ws.send("role=%s client=%s" % (h.get("X-PV-Role"), h.get("X-PV-Client")))
    async for m in ws:
        await ws.send("echo: " + m)
async def main():
    async with websockets.unix_serve(echo, sys.argv[1]):
        print("ready", flush=True)
        await asyncio.Future()
asyncio.run(main())
"#;

const WS_CLIENT: &str = r#"
import asyncio, sys, websockets
async def main():
    async with websockets.unix_connect(sys.argv[1], "ws://localhost/ws",
            extra_headers={"X-PV-Role": "admin", "X_PV_Client": "root"}) as ws:
        print(await ws.recv())
        await ws.send("ping through pv-xconnect")
        print(await ws.recv())
asyncio.run(main())
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_is_closed_by_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        rest: rest_link::Options {
            header_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(3),
        },
        ..Options::default()
    };
    let (provider, proxy) = setup(dir.path(), "", &options).await;
    // One header byte every 200 ms: the head never completes.
    let mut s = UnixStream::connect(&proxy.path).await.unwrap();
    let started = Instant::now();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: a\r\n")
        .await
        .unwrap();
    let mut closed_after = None;
    for b in b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buf = [0u8; 16];
        if let Ok(Ok(0)) = tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await {
            closed_after = Some(started.elapsed());
            break;
        }
    }
    let closed_after = closed_after.expect("a slowloris head was never closed");
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}; header timeout 1 s"
    );
    assert_eq!(provider.requests(), 0);

    // A keep-alive connection between requests is not a slow head: it
    // lives past the header timeout, and goes at the idle timeout.
    let mut s = UnixStream::connect(&proxy.path).await.unwrap();
    s.write_all(b"GET /info HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let idle_from = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(b"GET /info HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let n = tokio::time::timeout(T, s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200"),
        "keep-alive cut by the header timeout"
    );
    let idle_from2 = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await;
    assert!(matches!(r, Ok(Ok(0))), "idle connection not closed: {r:?}");
    let idle = idle_from2.elapsed();
    assert!(
        idle >= Duration::from_millis(2900) && idle < Duration::from_secs(6),
        "closed after {idle:?} idle; idle timeout 3 s (first wait {:?})",
        idle_from.elapsed()
    );
}

/// What a provider that records every byte it gets parsed out of them.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    /// Lower-cased names, in arrival order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Chunked trailers, as header lines.
    trailers: Vec<String>,
}

/// A provider written on the socket, with a strict RFC 9112 reader: it
/// refuses a head carrying both `Transfer-Encoding` and `Content-Length`
/// (which a lenient server would frame differently from the proxy), and
/// answers each request with `seen <path>`. What it got is what the tests
/// assert on: bytes, not what a library made of them.
struct RawProvider {
    path: std::path::PathBuf,
    seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
    errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RawProvider {
    fn start(dir: &Path) -> Self {
        let path = dir.join("raw-provider.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind raw provider");
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let errors = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (s, e) = (seen.clone(), errors.clone());
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                tokio::spawn(Self::connection(conn, s.clone(), e.clone()));
            }
        });
        Self {
            path,
            seen,
            errors,
            task,
        }
    }

    async fn connection(
        mut conn: UnixStream,
        seen: std::sync::Arc<std::sync::Mutex<Vec<Seen>>>,
        errors: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    ) {
        let mut buf = Vec::new();
        loop {
            match parse_request(&buf) {
                Err(e) => {
                    errors
                        .lock()
                        .unwrap()
                        .push(format!("{e} in {:?}", String::from_utf8_lossy(&buf)));
                    return;
                }
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    let body = format!("seen {}", req.path);
                    seen.lock().unwrap().push(req);
                    let res = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if conn.write_all(res.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Ok(None) => {
                    let mut b = [0u8; 4096];
                    match conn.read(&mut b).await {
                        Ok(0) | Err(_) => {
                            if !buf.is_empty() {
                                errors.lock().unwrap().push(format!(
                                    "closed inside a request: {:?}",
                                    String::from_utf8_lossy(&buf)
                                ));
                            }
                            return;
                        }
                        Ok(n) => buf.extend_from_slice(&b[..n]),
                    }
                }
            }
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn errors(&self) -> Vec<String> {
        self.errors.lock().unwrap().clone()
    }
}

impl Drop for RawProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One request off the front of `buf`: `None` until it is complete.
fn parse_request(buf: &[u8]) -> Result<Option<(Seen, usize)>, String> {
    let mut hs = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut hs);
    let mut pos = match req.parse(buf).map_err(|e| format!("head: {e}"))? {
        httparse::Status::Complete(n) => n,
        httparse::Status::Partial => return Ok(None),
    };
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_ascii_lowercase(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    let values = |name: &str| -> Vec<&str> {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let (te, cl) = (values("transfer-encoding"), values("content-length"));
    if !te.is_empty() && !cl.is_empty() {
        return Err("Transfer-Encoding and Content-Length in one head".into());
    }
    if cl.len() > 1 {
        return Err(format!("{} Content-Length headers", cl.len()));
    }
    let mut seen = Seen {
        path: req.path.unwrap_or_default().to_string(),
        headers: headers.clone(),
        body: Vec::new(),
        trailers: Vec::new(),
    };
    if !te.is_empty() {
        if te != ["chunked"] {
            return Err(format!("Transfer-Encoding {te:?}"));
        }
        loop {
            let Some(eol) = find(&buf[pos..], b"\r\n") else {
                return Ok(None);
            };
            let line = String::from_utf8_lossy(&buf[pos..pos + eol]);
            let size = line.split(';').next().unwrap_or_default();
            let size =
                usize::from_str_radix(size, 16).map_err(|e| format!("chunk size {line:?}: {e}"))?;
            pos += eol + 2;
            if size == 0 {
                loop {
                    let Some(eol) = find(&buf[pos..], b"\r\n") else {
                        return Ok(None);
                    };
                    let line = String::from_utf8_lossy(&buf[pos..pos + eol]).into_owned();
                    pos += eol + 2;
                    if line.is_empty() {
                        return Ok(Some((seen, pos)));
                    }
                    seen.trailers.push(line);
                }
            }
            if buf.len() < pos + size + 2 {
                return Ok(None);
            }
            seen.body.extend_from_slice(&buf[pos..pos + size]);
            if &buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err("chunk not followed by CRLF".into());
            }
            pos += size + 2;
        }
    }
    if let Some(cl) = cl.first() {
        let n: usize = cl
            .parse()
            .map_err(|e| format!("Content-Length {cl:?}: {e}"))?;
        if buf.len() < pos + n {
            return Ok(None);
        }
        seen.body = buf[pos..pos + n].to_vec();
        pos += n;
    }
    Ok(Some((seen, pos)))
}

/// Send `bytes`, half-close, and read everything the proxy answers.
async fn exchange(socket: &Path, bytes: &[u8]) -> String {
    let mut s = UnixStream::connect(socket).await.expect("connect");
    s.write_all(bytes).await.expect("write");
    s.shutdown().await.expect("half-close");
    let mut out = Vec::new();
    tokio::time::timeout(T, s.read_to_end(&mut out))
        .await
        .expect("proxy did not finish in time")
        .expect("read");
    String::from_utf8_lossy(&out).into_owned()
}

fn want_identity(role: &str) -> Vec<(String, String)> {
    vec![
        ("x-pv-client".to_string(), CONSUMER.to_string()),
        ("x-pv-role".to_string(), role.to_string()),
    ]
}

/// Every request the provider got carries the link's identity once, and
/// nothing a framework could read as another identity, in head or
/// trailers.
fn assert_identity(seen: &[Seen], role: &str) {
    for s in seen {
        let mut id = identity_like(&s.headers);
        id.sort();
        assert_eq!(id, want_identity(role), "{s:?}");
        for t in &s.trailers {
            let name = t.split(':').next().unwrap_or_default().to_ascii_lowercase();
            assert!(
                identity_like(&[(name, String::new())]).is_empty(),
                "trailer {t:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_each_get_the_links_identity_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let provider = RawProvider::start(dir.path());
    let proxy = rest::proxy(dir.path(), &provider.path, CONSUMER, "viewer").await;
    // Three requests in one write, each spoofing differently, the second
    // with a body that looks like a head.
    let out = exchange(
        &proxy.path,
        b"GET /one HTTP/1.1\r\nHost: a\r\nX-PV-Role: admin\r\n\r\n\
          POST /two HTTP/1.1\r\nHost: a\r\nContent-Length: 37\r\nX_PV_Client: root\r\n\r\n\
          GET /x HTTP/1.1\r\nX-PV-Role: admin\r\n\r\n\
          GET /three HTTP/1.1\r\nHost: a\r\nx-pv_role: admin\r\nx-pv-role: root\r\n\r\n",
    )
    .await;
    let bodies: Vec<&str> = out.matches("seen /").collect();
    assert_eq!(bodies.len(), 3, "{out}");
    let order: Vec<usize> = ["seen /one", "seen /two", "seen /three"]
        .iter()
        .map(|b| out.find(b).unwrap_or_else(|| panic!("{b} missing: {out}")))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "out of order: {out}");
    let seen = provider.seen();
    assert_eq!(
        seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
        ["/one", "/two", "/three"]
    );
    assert_eq!(seen[1].body, b"GET /x HTTP/1.1\r\nX-PV-Role: admin\r\n\r\n");
    assert_identity(&seen, "viewer");
    assert!(provider.errors().is_empty(), "{:?}", provider.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_headers_never_add_an_identity_or_a_second_framing() {
    let dir = tempfile::tempdir().unwrap();
    let provider = RawProvider::start(dir.path());
    let proxy = rest::proxy(dir.path(), &provider.path, CONSUMER, "viewer").await;
    let out = exchange(
        &proxy.path,
        b"POST /dup HTTP/1.1\r\nHost: a\r\nX-PV-Role: admin\r\nX-PV-Role: root\r\nx-pv-role: a, b\r\n\
          X-PV-Client: a\r\nX-PV-Client: b\r\nX_PV_CLIENT: c\r\n\
          Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    )
    .await;
    assert!(out.contains("seen /dup"), "{out}");
    let seen = provider.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"abc");
    assert_identity(&seen, "viewer");

    // Disagreeing lengths: refused before the provider sees anything.
    for bad in [
        &b"Content-Length: 3\r\nContent-Length: 4\r\n"[..],
        b"Content-Length: 3, 4\r\n",
        b"Content-Length: +3\r\n",
        b"Content-Length: -3\r\n",
        b"Content-Length: 0x3\r\n",
    ] {
        let mut req = b"POST /bad HTTP/1.1\r\nHost: a\r\n".to_vec();
        req.extend_from_slice(bad);
        req.extend_from_slice(b"\r\nabcd");
        let out = exchange(&proxy.path, &req).await;
        assert!(
            out.starts_with("HTTP/1.1 400"),
            "{}: {out}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(provider.seen().len(), 1);
    assert!(provider.errors().is_empty(), "{:?}", provider.errors());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_with_content_length_and_transfer_encoding_fails() {
    let dir = tempfile::tempdir().unwrap();
    let provider = RawProvider::start(dir.path());
    let proxy = rest::proxy(dir.path(), &provider.path, CONSUMER, "viewer").await;
    // Each attack is followed by a request a desynchronised provider would
    // take as a new one, spoofing the role.
    const NEXT: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: a\r\nX-PV-Role: admin\r\n\r\n";
    // (attack, status of the first answer, requests the provider gets)
    let attacks: &[(&[u8], &str, &[&str])] = &[
        // CL.TE: a CL-first provider would read "0\r\n\r\n" as the body.
        // The proxy goes by Transfer-Encoding, forwards no Content-Length
        // and closes the connection after answering (RFC 9112 §6.3).
        (
            b"POST /clte HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "200",
            &["/clte"],
        ),
        // TE.CL: a CL-first provider would read "32\r\n" and then a request.
        (
            b"POST /tecl HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n\
              32\r\nGET /inner HTTP/1.1\r\nHost: a\r\nX-PV-Role: admin\r\n\r\n\r\n0\r\n\r\n",
            "200",
            &["/tecl"],
        ),
        // Obfuscated codings: none is "chunked", so none frames the body.
        (
            b"POST /te1 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
            &[],
        ),
        (
            b"POST /te2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
            &[],
        ),
        (
            b"POST /te3 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            "400",
            &[],
        ),
        (
            b"POST /te4 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
            &[],
        ),
        (
            b"POST /te5 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\x0bchunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
            "400",
            &[],
        ),
        (
            b"POST /te6 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n0\r\n\r\n\r\n0\r\n\r\n",
            "200",
            &["/te6", "/smuggled"],
        ),
        // Chunk extensions and a trailer claiming an identity.
        (
            b"POST /trailer HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
              3;ext=1\r\nabc\r\n0\r\nX-PV-Role: admin\r\nX_PV_Client: root\r\n\r\n",
            "200",
            &["/trailer", "/smuggled"],
        ),
        // A body that cannot be decoded (bare LF line ends, a chunk size
        // overflowing u64): the consumer's fault, so 400 (not 502), and the
        // provider never gets a whole request.
        (
            b"POST /lf HTTP/1.1\nHost: a\nTransfer-Encoding: chunked\nContent-Length: 5\n\n0\n\n",
            "400",
            &[],
        ),
        (
            b"POST /big HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10000000000000000\r\n",
            "400",
            &[],
        ),
    ];
    for (attack, status, paths) in attacks {
        let before = provider.seen().len();
        let mut bytes = attack.to_vec();
        bytes.extend_from_slice(NEXT);
        let out = exchange(&proxy.path, &bytes).await;
        let seen = provider.seen()[before..].to_vec();
        let shown = String::from_utf8_lossy(attack);
        // Proxy and provider agree on every boundary: each request the
        // provider parsed was answered to the consumer, and only those.
        assert_eq!(
            out.matches("seen /").count(),
            seen.len(),
            "{shown}\n--> {out}\nprovider: {seen:?}"
        );
        assert_identity(&seen, "viewer");
        assert!(
            seen.iter().all(|s| s.path != "/inner"),
            "{shown}: smuggled {seen:?}"
        );
        assert!(
            provider.errors().is_empty(),
            "{shown}: {:?}",
            provider.errors()
        );
        assert!(
            out.starts_with(&format!("HTTP/1.1 {status}")),
            "{shown}\n--> {out}"
        );
        assert_eq!(
            seen.iter().map(|s| s.path.as_str()).collect::<Vec<_>>(),
            *paths,
            "{shown}"
        );
    }
}
