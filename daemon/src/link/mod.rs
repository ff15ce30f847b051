//! One running link: the injected listener (or device node), its sessions,
//! and its teardown. Per-type mediation lives in the submodules; each offers
//! `Config::prepare` (computed once per link) and `serve` (one session).
//!
//! [`start`] injects a listening socket into the consumer and spawns an
//! accept loop holding a child of the daemon's [`Shutdown`] token; every
//! accepted connection becomes a session task that dispatches on the link's
//! type. A session that fails is logged with its consumer and link name; one
//! that panics is caught and logged, never taking the daemon down. [`drm`]
//! links have no listener: a device node is created instead.
//! [`LinkHandle::stop`] cancels the token, waits for the accept loop and the
//! sessions, then removes what was injected if it is still ours.

pub mod dbus;
pub mod drm;
pub mod rest;
pub mod unix;
pub mod wayland;

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

use crate::graph::{LinkSpec, ServiceType};
use crate::ns::{self, Injected, NsError};
use crate::shutdown::Shutdown;

/// Counters shown by `pv-xconnect status`.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub live_sessions: AtomicU64,
    pub total_sessions: AtomicU64,
    pub bytes_relayed: AtomicU64,
}

impl LinkStats {
    /// Count `n` bytes moved between consumer and provider (either way).
    /// Mediations call this for every chunk they forward.
    pub fn add_bytes(&self, n: u64) {
        self.bytes_relayed.fetch_add(n, Ordering::Relaxed);
    }

    pub fn live(&self) -> u64 {
        self.live_sessions.load(Ordering::Relaxed)
    }

    pub fn total(&self) -> u64 {
        self.total_sessions.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes_relayed.load(Ordering::Relaxed)
    }
}

/// How to reach the provider end of a link.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub provider: String,
    /// 0 means the host side (hosted system bus); >0 the provider's init pid.
    pub provider_pid: i32,
    /// Socket path inside the provider's root.
    pub socket: PathBuf,
}

impl Upstream {
    pub fn from_spec(spec: &LinkSpec) -> Self {
        Self {
            provider: spec.provider.clone(),
            provider_pid: spec.provider_pid,
            socket: spec.socket.clone(),
        }
    }

    /// Connect to the provider's socket, resolved inside the provider's root.
    pub async fn connect(&self) -> Result<UnixStream, NsError> {
        self.connect_with(None).await
    }

    /// Connect with the given (uid, gid) as the socket's kernel credential
    /// (SO_PEERCRED seen by the provider), e.g. for D-Bus role masquerade.
    pub async fn connect_as(&self, uid: u32, gid: u32) -> Result<UnixStream, NsError> {
        self.connect_with(Some((uid, gid))).await
    }

    async fn connect_with(&self, creds: Option<(u32, u32)>) -> Result<UnixStream, NsError> {
        let std = ns::connect_provider(self.provider_pid, &self.socket, creds).await?;
        std.set_nonblocking(true).map_err(NsError::Io)?;
        UnixStream::from_std(std).map_err(NsError::Io)
    }
}

/// Everything a mediation needs to serve one accepted consumer connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub spec: Arc<LinkSpec>,
    pub upstream: Arc<Upstream>,
    pub stats: Arc<LinkStats>,
    /// Cancelled when the link is torn down or the daemon stops.
    pub shutdown: Shutdown,
}

/// Why a link could not be set up (shown as `failed: <reason>` in status).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("namespace: {0}")]
    Ns(#[from] NsError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// How long [`LinkHandle::stop`] waits for sessions to notice cancellation.
const SESSION_DRAIN: Duration = Duration::from_secs(2);
/// Pause after an accept failure caused by resource exhaustion (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM): retrying at once would spin, since the pending
/// connection stays queued until an fd frees up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A running link. Dropping it without [`LinkHandle::stop`] still cancels
/// its tasks, but only `stop` removes what was injected.
#[derive(Debug)]
pub struct LinkHandle {
    spec: Arc<LinkSpec>,
    stats: Arc<LinkStats>,
    shutdown: Shutdown,
    accept: Option<JoinHandle<()>>,
    sessions: TaskTracker,
    injected: Option<Injected>,
}

impl LinkHandle {
    pub fn spec(&self) -> &Arc<LinkSpec> {
        &self.spec
    }

    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.stats
    }

    /// Stop the listener, close its sessions and remove the injected socket
    /// or node from the consumer if that namespace still exists.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(accept) = self.accept.take() {
            // The loop owns the listener: once it ends, new connects fail.
            let _ = accept.await;
        }
        self.sessions.close();
        if tokio::time::timeout(SESSION_DRAIN, self.sessions.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                consumer = %self.spec.consumer,
                name = %self.spec.name,
                live = self.stats.live(),
                "sessions still running after stop; abandoning them"
            );
        }
        if let Some(injected) = self.injected.take() {
            match ns::remove_injected(&injected).await {
                Ok(true) => tracing::info!(
                    consumer = %self.spec.consumer,
                    name = %self.spec.name,
                    consumer_pid = self.spec.consumer_pid,
                    target = %injected.path.display(),
                    "link removed from consumer"
                ),
                Ok(false) => tracing::info!(
                    consumer = %self.spec.consumer,
                    name = %self.spec.name,
                    consumer_pid = self.spec.consumer_pid,
                    target = %injected.path.display(),
                    "link stopped; consumer namespace or node already gone"
                ),
                Err(err) => tracing::warn!(
                    consumer = %self.spec.consumer,
                    name = %self.spec.name,
                    target = %injected.path.display(),
                    %err,
                    "link stopped but its node could not be removed"
                ),
            }
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Per-link mediation, prepared once when the link starts.
enum Mediation {
    Unix,
    Rest(rest::Config),
    Dbus(dbus::Config),
    Wayland(wayland::Config),
}

impl Mediation {
    async fn prepare(spec: &LinkSpec, upstream: &Upstream) -> Result<Self, LinkError> {
        Ok(match &spec.kind {
            ServiceType::Unix => Mediation::Unix,
            ServiceType::Rest => Mediation::Rest(rest::Config::prepare(spec, upstream).await?),
            ServiceType::Dbus => Mediation::Dbus(dbus::Config::prepare(spec, upstream).await?),
            ServiceType::Wayland => {
                Mediation::Wayland(wayland::Config::prepare(spec, upstream).await?)
            }
            other => {
                return Err(LinkError::Refused(format!(
                    "no socket mediation for type {other:?}"
                )))
            }
        })
    }

    async fn serve(&self, consumer: UnixStream, session: &Session) -> anyhow::Result<()> {
        match self {
            Mediation::Unix => unix::serve(consumer, session).await,
            Mediation::Rest(c) => rest::serve(c, consumer, session).await,
            Mediation::Dbus(c) => dbus::serve(c, consumer, session).await,
            Mediation::Wayland(c) => wayland::serve(c, consumer, session).await,
        }
    }
}

/// Set up a link: inject into the consumer (pid must be > 0) and start
/// mediating. `parent` is the daemon's shutdown token.
pub async fn start(spec: Arc<LinkSpec>, parent: &Shutdown) -> Result<LinkHandle, LinkError> {
    if spec.consumer_pid <= 0 {
        return Err(LinkError::Refused(format!(
            "consumer {} not running (pid {})",
            spec.consumer, spec.consumer_pid
        )));
    }
    if spec.provider_pid < 0 {
        return Err(LinkError::Refused(format!(
            "provider {} not running (pid {})",
            spec.provider, spec.provider_pid
        )));
    }
    let stats = Arc::new(LinkStats::default());
    let shutdown = parent.child_token();
    let sessions = TaskTracker::new();

    if spec.kind == ServiceType::Drm {
        let injected = drm::install(&spec).await?;
        log_started(&spec, "device node created in consumer");
        return Ok(LinkHandle {
            spec,
            stats,
            shutdown,
            accept: None,
            sessions,
            injected: Some(injected),
        });
    }

    let upstream = Arc::new(Upstream::from_spec(&spec));
    let mediation = Arc::new(Mediation::prepare(&spec, &upstream).await?);
    let (std_listener, injected) = ns::inject_socket(spec.consumer_pid, &spec.target).await?;
    let listener = std_listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(std_listener))
        .map_err(NsError::Io);
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = ns::remove_injected(&injected).await;
            return Err(e.into());
        }
    };
    let base = Session {
        spec: spec.clone(),
        upstream,
        stats: stats.clone(),
        shutdown: shutdown.clone(),
    };
    let accept = tokio::spawn(accept_loop(listener, base, mediation, sessions.clone()));
    log_started(&spec, "socket injected into consumer");
    Ok(LinkHandle {
        spec,
        stats,
        shutdown,
        accept: Some(accept),
        sessions,
        injected: Some(injected),
    })
}

fn log_started(spec: &LinkSpec, what: &str) {
    tracing::info!(
        consumer = %spec.consumer,
        consumer_pid = spec.consumer_pid,
        provider = %spec.provider,
        provider_pid = spec.provider_pid,
        name = %spec.name,
        kind = ?spec.kind,
        target = %spec.target.display(),
        socket = %spec.socket.display(),
        "{what}"
    );
}

async fn accept_loop(
    listener: UnixListener,
    base: Session,
    mediation: Arc<Mediation>,
    sessions: TaskTracker,
) {
    let shutdown = base.shutdown.clone();
    let mut exhausted = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                exhausted = false;
                let session = base.clone();
                let mediation = mediation.clone();
                sessions.spawn(run_session(stream, session, mediation));
            }
            Err(err) if is_exhaustion(&err) => {
                if !exhausted {
                    tracing::warn!(
                        consumer = %base.spec.consumer,
                        name = %base.spec.name,
                        %err,
                        "accept: out of resources, backing off"
                    );
                    exhausted = true;
                }
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
            Err(err) => {
                // ECONNABORTED and friends concern one connection only.
                tracing::debug!(consumer = %base.spec.consumer, name = %base.spec.name, %err, "accept");
            }
        }
    }
}

fn is_exhaustion(err: &std::io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Keeps `live_sessions` right even when the session panics.
struct LiveGuard(Arc<LinkStats>);

impl LiveGuard {
    fn new(stats: Arc<LinkStats>) -> Self {
        stats.live_sessions.fetch_add(1, Ordering::Relaxed);
        stats.total_sessions.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.live_sessions.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run_session(stream: UnixStream, session: Session, mediation: Arc<Mediation>) {
    let _live = LiveGuard::new(session.stats.clone());
    let shutdown = session.shutdown.clone();
    let served = CatchUnwind(Box::pin(mediation.serve(stream, &session)));
    let outcome = tokio::select! {
        // Dropping the mediation's future closes both of its sockets, even
        // if that mediation does not watch the token itself.
        _ = shutdown.cancelled() => return,
        r = served => r,
    };
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(
            consumer = %session.spec.consumer,
            name = %session.spec.name,
            provider = %session.spec.provider,
            "session closed: {err:#}"
        ),
        Err(panic) => tracing::error!(
            consumer = %session.spec.consumer,
            name = %session.spec.name,
            "session panicked: {}",
            panic_message(&*panic)
        ),
    }
}

fn panic_message(p: &(dyn Any + Send)) -> &str {
    p.downcast_ref::<&str>()
        .copied()
        .or_else(|| p.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-string panic)")
}

/// Turns a panic while polling the inner future into an `Err`, so one
/// session's bug only ends that session.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, Box<dyn Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_session_is_caught() {
        let r = CatchUnwind(Box::pin(async {
            tokio::task::yield_now().await;
            panic!("boom");
        }))
        .await;
        assert_eq!(panic_message(&*r.unwrap_err()), "boom");
        let ok = CatchUnwind(Box::pin(async { 7 })).await;
        assert_eq!(ok.unwrap(), 7);
    }
}
