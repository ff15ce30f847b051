//! Graph sources: the pv-ctrl HTTP client and the `--graph-file` watcher.
//!
//! Both poll every interval and publish the resolved links on a `watch`
//! channel (`None` until the first good graph). A body identical to the last
//! good one is neither re-parsed nor re-published, which is also what makes
//! per-entry problems (a null socket, a malformed entry) logged once per
//! graph change rather than once per poll.
//!
//! When the source fails (pv-ctrl missing, refusing, answering 500 or
//! garbage; graph file missing or invalid) the last good graph stays
//! published. A change of condition is logged once, recovery once. Until the
//! first graph arrives the source is retried faster than the interval, so
//! links come up as soon as pv-ctrl answers. A reload (SIGHUP) fetches at
//! once.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use hyperlocal::UnixConnector;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::error::PathError;
use crate::graph::{self, LinkSpec};
use crate::shutdown::Shutdown;

/// pv-ctrl's endpoint for the graph.
pub const GRAPH_PATH: &str = "/xconnect-graph";
/// A graph bigger than this is refused (pv-ctrl's are a few KiB).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Upper bound for one request, so a hung pv-ctrl cannot stall the poller.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Retry period before the first graph arrived (if below the interval).
const FIRST_GRAPH_RETRY: Duration = Duration::from_millis(200);

/// The channel both sources publish on.
pub type GraphTx = watch::Sender<Option<Arc<Vec<LinkSpec>>>>;

/// Why one fetch produced no graph.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} does not exist")]
    Missing(PathBuf),
    #[error("connection to {0} refused")]
    Refused(PathBuf),
    #[error(transparent)]
    Io(PathError),
    #[error("HTTP: {0}")]
    Http(String),
    #[error("HTTP status {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("no answer within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout,
    #[error(transparent)]
    Graph(#[from] graph::GraphError),
}

impl FetchError {
    /// The condition, without details that vary from poll to poll: a change
    /// of condition is logged, the same condition again is not.
    fn condition(&self) -> String {
        match self {
            Self::Missing(_) => "missing".into(),
            Self::Refused(_) => "refused".into(),
            Self::Io(e) => format!("{}: {:?}", e.action, e.kind()),
            Self::Http(_) => "http".into(),
            Self::Status { status, .. } => format!("status {status}"),
            Self::Timeout => "timeout".into(),
            Self::Graph(_) => "invalid graph".into(),
        }
    }
}

fn io_error(what: &'static str, path: &Path, e: io::Error) -> FetchError {
    match e.kind() {
        io::ErrorKind::NotFound => FetchError::Missing(path.to_path_buf()),
        io::ErrorKind::ConnectionRefused => FetchError::Refused(path.to_path_buf()),
        _ => FetchError::Io(PathError::at(what, path)(e)),
    }
}

/// Where the graph comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// `GET /xconnect-graph` on pv-ctrl's Unix socket.
    Ctrl(PathBuf),
    /// A file holding the same JSON (`--graph-file`).
    File(PathBuf),
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Self::Ctrl(p) => format!("pv-ctrl {}", p.display()),
            Self::File(p) => format!("graph file {}", p.display()),
        }
    }
}

/// A pv-ctrl client: a fresh connection per request, like the reference
/// daemon, since pv-ctrl (evhttp) may answer HTTP/1.0 and close.
#[derive(Clone)]
pub struct CtrlClient {
    socket: PathBuf,
    client: Client<UnixConnector, Empty<Bytes>>,
}

impl CtrlClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            // The hyperlocal authority is a hex-encoded path; pv-ctrl wants
            // `Host` absent, empty or `localhost`, so it is set by hand.
            .set_host(false)
            .build(UnixConnector);
        Self {
            socket: socket.into(),
            client,
        }
    }

    /// `GET path` and return the whole body of a 200 answer.
    pub async fn get(&self, path: &str) -> Result<Bytes, FetchError> {
        tokio::time::timeout(REQUEST_TIMEOUT, self.get_inner(path))
            .await
            .map_err(|_| FetchError::Timeout)?
    }

    async fn get_inner(&self, path: &str) -> Result<Bytes, FetchError> {
        let uri: http::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let req = Request::get(uri)
            .header(header::HOST, "localhost")
            .body(Empty::<Bytes>::new())
            .map_err(|e| FetchError::Http(e.to_string()))?;
        let resp = self
            .client
            .request(req)
            .await
            .map_err(|e| self.classify(e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|e| FetchError::Http(format!("reading body: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            return Err(FetchError::Status {
                status,
                message: error_message(&body),
            });
        }
        Ok(body)
    }

    /// Turn a client error into "missing"/"refused" where the connect
    /// failed for those reasons, so the log says what an operator can fix.
    fn classify(&self, e: hyper_util::client::legacy::Error) -> FetchError {
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if let Some(io) = s.downcast_ref::<io::Error>() {
                return io_error(
                    "connect to",
                    &self.socket,
                    io::Error::new(io.kind(), io.to_string()),
                );
            }
            source = s.source();
        }
        FetchError::Http(format!("{e}: {}", error_chain(&e)))
    }

    /// The current graph, parsed and resolved.
    pub async fn graph(&self) -> Result<graph::Resolved, FetchError> {
        let body = self.get(GRAPH_PATH).await?;
        Ok(graph::parse_and_resolve(&body)?)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// pv-ctrl's `{"Error":"..."}`, or the start of whatever the body was.
fn error_message(body: &[u8]) -> String {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        if let Some(msg) = v.get("Error").and_then(|m| m.as_str()) {
            return msg.to_string();
        }
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_string()
}

async fn fetch_body(source: &Source, client: Option<&CtrlClient>) -> Result<Bytes, FetchError> {
    match (source, client) {
        (Source::Ctrl(_), Some(client)) => client.get(GRAPH_PATH).await,
        (Source::Ctrl(p), None) => CtrlClient::new(p.clone()).get(GRAPH_PATH).await,
        (Source::File(path), _) => tokio::fs::read(path)
            .await
            .map(Bytes::from)
            .map_err(|e| io_error("read", path, e)),
    }
}

/// Poll `source` every `interval` (and at once on every `reload`) until
/// `shutdown`, publishing on `tx`.
pub async fn run(
    source: Source,
    interval: Duration,
    tx: GraphTx,
    mut reload: watch::Receiver<u64>,
    shutdown: Shutdown,
) {
    let mut reload_open = true;
    let client = match &source {
        Source::Ctrl(p) => Some(CtrlClient::new(p.clone())),
        Source::File(_) => None,
    };
    let what = source.describe();
    let mut last_body: Option<Bytes> = None;
    // The condition last logged: None = healthy (or nothing logged yet).
    let mut failing: Option<String> = None;
    loop {
        match fetch_body(&source, client.as_ref()).await {
            Ok(body) if last_body.as_ref() == Some(&body) => recovered(&what, &mut failing),
            Ok(body) => match graph::parse_and_resolve(&body) {
                Ok(resolved) => {
                    recovered(&what, &mut failing);
                    for bad in &resolved.invalid {
                        warn!("skipping {bad}");
                    }
                    let first = tx.borrow().is_none();
                    let links = resolved.links;
                    if first {
                        info!("first graph from {what}: {} links", links.len());
                    }
                    tx.send_if_modified(|current| {
                        if current.as_deref() == Some(&links) {
                            return false;
                        }
                        *current = Some(Arc::new(links));
                        true
                    });
                    last_body = Some(body);
                }
                Err(e) => failed(&what, FetchError::Graph(e), &tx, &mut failing),
            },
            Err(e) => failed(&what, e, &tx, &mut failing),
        }
        let wait = if tx.borrow().is_none() {
            interval.min(FIRST_GRAPH_RETRY)
        } else {
            interval
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
            changed = reload.changed(), if reload_open => reload_open = changed.is_ok(),
        }
    }
}

fn recovered(what: &str, failing: &mut Option<String>) {
    if failing.take().is_some() {
        info!("{what} is answering again");
    }
}

fn failed(what: &str, e: FetchError, tx: &GraphTx, failing: &mut Option<String>) {
    let condition = e.condition();
    if failing.as_deref() == Some(condition.as_str()) {
        return;
    }
    let kept = match tx.borrow().as_deref() {
        Some(links) => format!("keeping the last good graph ({} links)", links.len()),
        None => "no graph yet".to_string(),
    };
    warn!("{what}: {e}; {kept}; retrying");
    *failing = Some(condition);
}
