//! The `network-manager` REST example: a mock provider API and a consumer
//! that checks the identity pv-xconnect injects.
//!
//! Both halves live in the library so the daemon's tests and benchmark can
//! run the very same server (in-process) as the provider of a `rest` link.
//!
//! Server endpoints:
//! - `GET /info`: `{"service":"network-manager-mock","status":"online",
//!   "role":<X-PV-Role>,"client":<X-PV-Client>}` (`"unknown"` when absent),
//!   as upstream's Python mock answers.
//! - `GET /headers`: every request header as `[[name, value], ...]`, so a
//!   test can see repeated or stray identity headers.
//! - `POST|PUT /echo`: reads the body as it streams (never whole in memory)
//!   and answers `{"length":N,"sha256":"..","body":<the body as text if it is
//!   at most 64 KiB of UTF-8, else null>}`.
//! - `GET /events?n=N&interval_ms=M`: server-sent events, one every M ms,
//!   written as they happen (for streaming and provider-death tests).
//! - `GET /upgrade` with `Connection: upgrade`, `Upgrade: pv-echo`: answers
//!   101, then echoes raw bytes until the peer half-closes.

use std::convert::Infallible;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::net::UnixListener;
use tokio::sync::mpsc;

/// Where the provider listens inside its container (upstream's path).
pub const SERVER_SOCKET: &str = "/run/nm/api.sock";
/// Where pv-xconnect injects the link inside the consumer.
pub const CLIENT_SOCKET: &str = "/run/pv/services/network-manager.sock";
/// Largest `/echo` body returned verbatim.
const ECHO_INLINE_MAX: usize = 64 * 1024;

/// Counters a test can read to prove what reached the provider.
#[derive(Debug, Default)]
pub struct ServerStats {
    pub connections: AtomicU64,
    pub requests: AtomicU64,
}

/// The `GET /info` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Info {
    pub service: String,
    pub status: String,
    pub role: String,
    pub client: String,
}

/// The `POST /echo` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    pub length: u64,
    pub sha256: String,
    pub body: Option<String>,
}

type ResBody = BoxBody<Bytes, Infallible>;

/// Bind `path` (removing a stale socket, creating its directory).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove stale {}", path.display())),
    }
    UnixListener::bind(path).with_context(|| format!("bind {}", path.display()))
}

/// Accept and serve connections until the task is dropped.
pub async fn serve(listener: UnixListener, stats: Arc<ServerStats>) -> anyhow::Result<()> {
    loop {
        let (stream, _) = listener.accept().await.context("accept")?;
        stats.connections.fetch_add(1, Ordering::Relaxed);
        let stats = stats.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| handle(req, stats.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .half_close(true)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            // A client going away mid-request is routine for a server.
            let _ = conn.await;
        });
    }
}

fn json(status: StatusCode, value: &impl Serialize) -> Response<ResBody> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(body)).boxed());
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

fn header_or_unknown(req: &Request<Incoming>, name: &str) -> String {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown")
        .to_string()
}

fn query_u64(req: &Request<Incoming>, key: &str, default: u64) -> u64 {
    req.uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(default)
}

async fn handle(
    mut req: Request<Incoming>,
    stats: Arc<ServerStats>,
) -> Result<Response<ResBody>, Infallible> {
    stats.requests.fetch_add(1, Ordering::Relaxed);
    let res = match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/info") => json(
            StatusCode::OK,
            &Info {
                service: "network-manager-mock".into(),
                status: "online".into(),
                role: header_or_unknown(&req, "x-pv-role"),
                client: header_or_unknown(&req, "x-pv-client"),
            },
        ),
        (Method::GET, "/headers") => {
            let pairs: Vec<(String, String)> = req
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            json(StatusCode::OK, &pairs)
        }
        (Method::POST | Method::PUT, "/echo") => match echo(req.into_body()).await {
            Ok(e) => json(StatusCode::OK, &e),
            Err(e) => json(
                StatusCode::BAD_REQUEST,
                &serde_json::json!({"error": e.to_string()}),
            ),
        },
        (Method::GET, "/events") => {
            let n = query_u64(&req, "n", 3);
            let interval = Duration::from_millis(query_u64(&req, "interval_ms", 100));
            let (tx, rx) = mpsc::channel(4);
            tokio::spawn(async move {
                for seq in 0..n {
                    let ev = format!("id: {seq}\ndata: {{\"seq\":{seq}}}\n\n");
                    if tx.send(Bytes::from(ev)).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(interval).await;
                }
            });
            let mut res = Response::new(ChannelBody(rx).boxed());
            res.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            );
            res
        }
        (Method::GET, "/upgrade") if wants_echo_upgrade(&req) => {
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let io = TokioIo::new(upgraded);
                    let (mut r, mut w) = tokio::io::split(io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                    let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
                }
            });
            let mut res = Response::new(Empty::new().boxed());
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            res.headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("pv-echo"));
            res
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": "not found"}),
        ),
    };
    Ok(res)
}

fn wants_echo_upgrade(req: &Request<Incoming>) -> bool {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("pv-echo"))
}

async fn echo(mut body: Incoming) -> anyhow::Result<Echo> {
    let mut hasher = Sha256::new();
    let mut length = 0u64;
    let mut inline = Vec::new();
    let mut overflow = false;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("read body")?;
        if let Some(data) = frame.data_ref() {
            hasher.update(data);
            length += data.len() as u64;
            if !overflow && inline.len() + data.len() <= ECHO_INLINE_MAX {
                inline.extend_from_slice(data);
            } else {
                overflow = true;
                inline = Vec::new();
            }
        }
    }
    Ok(Echo {
        length,
        sha256: hex::encode(hasher.finalize()),
        body: if overflow {
            None
        } else {
            String::from_utf8(inline).ok()
        },
    })
}

/// A response body fed by a channel: frames go out as soon as they are sent.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// What the consumer example observed in one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientReport {
    /// The plain `GET /info` answer.
    pub info: Info,
    /// The answer to a `GET /info` carrying `X-PV-Role: admin` and
    /// `X-PV-Client: intruder`.
    pub spoofed: Info,
}

impl ClientReport {
    /// True when the spoofed identity did not reach the server.
    pub fn spoof_refused(&self) -> bool {
        self.spoofed.role != "admin"
            && self.spoofed.client != "intruder"
            && self.spoofed.role == self.info.role
            && self.spoofed.client == self.info.client
    }
}

/// `GET /info` over `socket` with hyperlocal, plus extra headers.
pub async fn fetch_info(socket: &Path, extra: &[(&str, &str)]) -> anyhow::Result<Info> {
    use hyper_util::client::legacy::Client;
    use hyperlocal::{UnixClientExt, UnixConnector};

    let client: Client<UnixConnector, Empty<Bytes>> = Client::unix();
    let uri: http::Uri = hyperlocal::Uri::new(socket, "/info").into();
    let mut builder = Request::get(uri).header(header::HOST, "localhost");
    for (k, v) in extra {
        builder = builder.header(*k, *v);
    }
    let req = builder.body(Empty::new()).context("build request")?;
    let res = client
        .request(req)
        .await
        .with_context(|| format!("request to {}", socket.display()))?;
    let status = res.status();
    let body = res.into_body().collect().await.context("read body")?;
    let bytes = body.to_bytes();
    anyhow::ensure!(
        status.is_success(),
        "status {status}: {}",
        String::from_utf8_lossy(&bytes)
    );
    serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "not an /info answer: {}",
            String::from_utf8_lossy(&bytes).trim()
        )
    })
}

/// One round of the consumer example: a plain and a spoofed request.
pub async fn check(socket: &Path) -> anyhow::Result<ClientReport> {
    let info = fetch_info(socket, &[]).await?;
    let spoofed = fetch_info(
        socket,
        &[("X-PV-Role", "admin"), ("X-PV-Client", "intruder")],
    )
    .await?;
    Ok(ClientReport { info, spoofed })
}
