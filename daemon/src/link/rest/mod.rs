//! `rest` mediation: an HTTP/1.x proxy that stamps the link's identity on
//! every request.
//!
//! Towards the consumer we are a hyper HTTP/1 server; towards the provider a
//! hyper HTTP/1 client on one provider connection per consumer connection
//! (opened at the first request, re-opened when the provider closes it). So:
//!
//! - every request of a connection, keep-alive or pipelined, goes through
//!   [`headers::sanitize_request`]: every spelling of `X-PV-Client` /
//!   `X-PV-Role` removed and ours inserted, hop-by-hop headers and those
//!   `Connection` names removed, an `h2c` upgrade offer dropped (identity
//!   headers in chunked trailers are dropped too); responses lose their
//!   hop-by-hop headers ([`headers::sanitize_response`]);
//! - a request head must arrive within the header timeout once it started,
//!   and a connection with no request in progress is closed after the idle
//!   timeout ([`timeouts`], [`Options`]);
//! - bodies stream frame by frame in both directions with backpressure
//!   (memory per connection is bounded by the read buffers, see
//!   [`MAX_BUF`]); `Expect: 100-continue` is answered when the provider
//!   starts pulling the body; responses (SSE, long polls) go out as the
//!   provider writes them;
//! - a malformed head gets 400 and a head over [`MAX_HEAD`] gets 431 from
//!   hyper's parser before anything is sent to the provider, a request body
//!   that cannot be decoded (chunk framing) gets 400 too; an unreachable
//!   provider gives 502 `{"error":".."}`; a provider dying mid-response
//!   makes hyper abort the consumer connection (no false end of message);
//! - after a provider's `101 Switching Protocols` both upgraded streams are
//!   spliced raw, half-close included;
//! - half-closed consumers (`shutdown(SHUT_WR)` after the request) still get
//!   their full response (`half_close(true)`).
//!
//! Bytes relayed (bodies and upgraded streams) are counted in
//! [`LinkStats::bytes_relayed`](super::LinkStats).
//!
//! [`headers`] holds the header rules, [`timeouts`] the two clocks; this
//! module the proxy around them. The per-link connection cap is the
//! accept loop's (shared with every link type).

pub mod headers;
pub mod timeouts;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tokio::sync::Mutex;
use tokio_util::task::TaskTracker;

use super::{LinkStats, Provider, Session, SessionError};
use crate::graph::LinkSpec;
use crate::logging::link_event;
use crate::shutdown::Shutdown;
use headers::Identity;
use timeouts::{Activity, InFlight, Watched};

/// Largest request head (request line and headers) accepted; larger → 431.
pub const MAX_HEAD: usize = 64 * 1024;
/// Read/write buffer cap per side of a connection.
pub const MAX_BUF: usize = 128 * 1024;

/// Default for [`Options::header_timeout`].
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default for [`Options::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Daemon-wide settings of rest links (command-line flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a request head may take from its first byte to its end.
    pub header_timeout: Duration,
    /// How long a connection may sit with no request in progress and no
    /// byte arriving before it is closed.
    pub idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// Per-link configuration, computed once when the link starts.
#[derive(Debug, Clone)]
pub struct Config {
    identity: Identity,
    options: Options,
}

impl Config {
    /// Header values: `X-PV-Client` = consumer name, `X-PV-Role` = role
    /// (`any` when empty).
    pub fn prepare(spec: &LinkSpec, options: &Options) -> anyhow::Result<Self> {
        let identity = Identity::new(&spec.consumer, &spec.role)
            .with_context(|| format!("rest link {}/{}", spec.consumer, spec.name))?;
        Ok(Self {
            identity,
            options: *options,
        })
    }
}

type ProviderBody = Counted<Incoming>;
type ConsumerBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Serve one consumer connection until it closes, the provider ends an
/// upgraded stream, or the session is shut down.
pub async fn serve(
    config: &Config,
    consumer: UnixStream,
    session: &Session,
) -> Result<(), SessionError> {
    let relays = TaskTracker::new();
    let drivers = Arc::new(Drivers::default());
    let proxy = Arc::new(Proxy {
        spec: session.spec.clone(),
        identity: config.identity.clone(),
        provider: session.provider.clone(),
        stats: session.stats.clone(),
        connection: Mutex::new(None),
        drivers: drivers.clone(),
        relays: relays.clone(),
        shutdown: session.shutdown.clone(),
    });
    let activity = Activity::new();
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req| {
            let proxy = proxy.clone();
            let in_flight = activity.begin();
            async move { Ok::<_, Infallible>(proxy.forward(req, in_flight).await) }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
        .half_close(true)
        .max_header_size(MAX_HEAD)
        .max_buf_size(MAX_BUF)
        .serve_connection(
            TokioIo::new(Watched::new(consumer, activity.clone())),
            service,
        )
        .with_upgrades();
    let Options {
        header_timeout,
        idle_timeout,
    } = config.options;
    let result = tokio::select! {
        r = conn => r.map_err(anyhow::Error::from),
        () = drivers.drive() => Ok(()),
        () = session.shutdown.cancelled() => Ok(()),
        why = activity.expired(header_timeout, idle_timeout) => {
            if why == "idle" {
                Ok(())
            } else {
                return Err(SessionError::Fault(anyhow::anyhow!(
                    "rest: consumer closed: {why} ({header_timeout:?})"
                )));
            }
        }
    };
    // Only upgraded streams may still be running; a provider connection that
    // is handing its stream over to one needs driving until it has.
    relays.close();
    tokio::select! {
        () = relays.wait() => {}
        () = drivers.drive() => {}
        () = session.shutdown.cancelled() => {}
    }
    // A consumer vanishing mid-message is its own business, not an error of
    // the link: logged quietly. (A provider that fails a request already
    // got the consumer a 502.)
    result.map_err(SessionError::Gone)
}

type Driver = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Provider connection futures, polled by the session's own task rather
/// than spawned: a request then crosses no task (or thread) boundary inside
/// the daemon, and dropping the session drops its provider connections.
#[derive(Default)]
struct Drivers(std::sync::Mutex<Vec<Driver>>);

impl Drivers {
    fn add(&self, driver: Driver) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(driver);
    }

    /// Poll every driver, dropping finished ones; never completes.
    async fn drive(&self) {
        std::future::poll_fn(|cx| {
            let mut drivers = self.0.lock().unwrap_or_else(|p| p.into_inner());
            drivers.retain_mut(|d| d.as_mut().poll(cx).is_pending());
            Poll::<()>::Pending
        })
        .await
    }
}

struct Proxy {
    spec: Arc<LinkSpec>,
    identity: Identity,
    provider: Arc<Provider>,
    stats: Arc<LinkStats>,
    /// The provider connection of this consumer connection.
    connection: Mutex<Option<SendRequest<ProviderBody>>>,
    drivers: Arc<Drivers>,
    relays: TaskTracker,
    shutdown: Shutdown,
}

/// Why a request got no answer from the provider.
#[derive(Debug, thiserror::Error)]
enum ProviderError {
    #[error("provider unreachable: {0}")]
    Connect(String),
    #[error("provider handshake: {0}")]
    Handshake(#[source] hyper::Error),
    #[error("provider: {0}")]
    Request(#[source] hyper::Error),
    #[error("provider switched protocols unasked")]
    UnaskedUpgrade,
}

impl ProviderError {
    /// Whether the request failed because the consumer's body stream did:
    /// hyper then reports the body's own error (a [`hyper::Error`] from
    /// [`Incoming`]) as the source of the client error.
    fn consumer_body_failed(&self) -> bool {
        match self {
            Self::Request(e) => std::error::Error::source(e)
                .is_some_and(|s| s.downcast_ref::<hyper::Error>().is_some()),
            _ => false,
        }
    }
}

impl Proxy {
    async fn forward(
        &self,
        mut req: Request<Incoming>,
        in_flight: InFlight,
    ) -> Response<ConsumerBody> {
        let upgrade = headers::sanitize_request(req.headers_mut(), &self.identity);
        if upgrade.h2c_refused {
            link_event!(
                tracing::Level::DEBUG,
                self.spec,
                "rest: Upgrade: h2c dropped (HTTP/2 would bypass the proxy)"
            );
        }
        let consumer_upgrade = upgrade
            .offered
            .is_some()
            .then(|| hyper::upgrade::on(&mut req));
        let req = req.map(|body| Counted::new(body, self.stats.clone(), true));

        let mut res = match self.send(req).await {
            Ok(res) => res,
            Err(e) if e.consumer_body_failed() => return self.bad_request(&e, in_flight),
            Err(e) => return self.bad_gateway(&e, in_flight),
        };
        let switching = res.status() == StatusCode::SWITCHING_PROTOCOLS;
        headers::sanitize_response(res.headers_mut(), switching && consumer_upgrade.is_some());
        if res.status() == StatusCode::SWITCHING_PROTOCOLS {
            let Some(consumer_upgrade) = consumer_upgrade else {
                return self.bad_gateway(&ProviderError::UnaskedUpgrade, in_flight);
            };
            let provider_upgrade = hyper::upgrade::on(&mut res);
            let stats = self.stats.clone();
            let shutdown = self.shutdown.clone();
            self.relays.spawn(async move {
                let relay = async {
                    let (c, p) = tokio::join!(consumer_upgrade, provider_upgrade);
                    let (Ok(c), Ok(p)) = (c, p) else {
                        return;
                    };
                    let (mut c, mut p) = (TokioIo::new(c), TokioIo::new(p));
                    if let Ok((up, down)) = tokio::io::copy_bidirectional(&mut c, &mut p).await {
                        stats.bytes_relayed.fetch_add(up + down, Ordering::Relaxed);
                    }
                };
                tokio::select! {
                    () = relay => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
        res.map(|body| {
            let mut body = Counted::new(body, self.stats.clone(), false);
            body.in_flight = Some(in_flight);
            body.boxed_unsync()
        })
    }

    /// Send on the current provider connection, (re)connecting when there
    /// is none or it was closed; a request the connection refused before
    /// writing anything is retried once on a fresh connection.
    async fn send(&self, req: Request<ProviderBody>) -> Result<Response<Incoming>, ProviderError> {
        let mut connection = self.connection.lock().await;
        let mut req = req;
        let mut retried = false;
        loop {
            let mut sender = match connection.take() {
                Some(s) if !s.is_closed() => s,
                _ => self.connect().await?,
            };
            if sender.ready().await.is_err() {
                if retried {
                    return Err(ProviderError::Connect("connection closed".into()));
                }
                retried = true;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(res) => {
                    *connection = Some(sender);
                    return Ok(res);
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        retried = true;
                        req = unsent;
                    }
                    _ => return Err(ProviderError::Request(e.into_error())),
                },
            }
        }
    }

    /// The consumer's answer when its own request body could not be read
    /// (bad chunk framing, an overflowing chunk size): its fault, not the
    /// provider's, so 400 and a consumer-side reason in the log.
    fn bad_request(&self, err: &ProviderError, in_flight: InFlight) -> Response<ConsumerBody> {
        link_event!(
            tracing::Level::INFO,
            self.spec,
            reason = %err,
            "rest: consumer sent an undecodable request body"
        );
        drop(in_flight);
        error_response(StatusCode::BAD_REQUEST, err)
    }

    /// The consumer's answer when the provider gave none.
    fn bad_gateway(&self, err: &ProviderError, in_flight: InFlight) -> Response<ConsumerBody> {
        link_event!(tracing::Level::WARN, self.spec, reason = %err, "rest: request failed");
        // The request ends with this answer: the idle clock restarts.
        drop(in_flight);
        error_response(StatusCode::BAD_GATEWAY, err)
    }

    async fn connect(&self) -> Result<SendRequest<ProviderBody>, ProviderError> {
        let stream = self
            .provider
            .connect()
            .await
            .map_err(|e| ProviderError::Connect(e.to_string()))?;
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .max_buf_size(MAX_BUF)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ProviderError::Handshake)?;
        self.drivers.add(Box::pin(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("rest provider connection: {e}");
            }
        }));
        // The session task polled the drivers before this one existed: make
        // it poll again so the new connection gets driven.
        std::future::poll_fn(|cx| {
            cx.waker().wake_by_ref();
            Poll::Ready(())
        })
        .await;
        Ok(sender)
    }
}

fn error_response(status: StatusCode, err: &ProviderError) -> Response<ConsumerBody> {
    let body = serde_json::to_vec(&serde_json::json!({ "error": err.to_string() }))
        .unwrap_or_else(|_| b"{}".to_vec());
    let mut res = Response::new(
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// A body passed through unchanged except that its data is counted and,
/// on requests, identity headers are dropped from trailers.
struct Counted<B> {
    inner: B,
    stats: Arc<LinkStats>,
    strip_trailers: bool,
    /// On responses: the request stays in progress until its body is done.
    in_flight: Option<InFlight>,
}

impl<B> Counted<B> {
    fn new(inner: B, stats: Arc<LinkStats>, strip_trailers: bool) -> Self {
        Self {
            inner,
            stats,
            strip_trailers,
            in_flight: None,
        }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &mut polled {
            if let Some(data) = frame.data_ref() {
                self.stats
                    .bytes_relayed
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            } else if self.strip_trailers {
                if let Some(trailers) = frame.trailers_mut() {
                    Identity::strip(trailers);
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
