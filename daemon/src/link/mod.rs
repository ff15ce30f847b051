//! One running link: the injected listener (or device node), its sessions,
//! and its teardown. Per-type mediation lives in the submodules: [`unix`]
//! (byte relay with fds), [`rest`] (HTTP proxy stamping the identity),
//! [`dbus`] (D-Bus proxy with role uid and filter), [`wayland`]
//! (protocol-aware relay), [`drm`] (a device node, no listener).
//!
//! [`start`] sets a link up in order: its pids are checked
//! ([`LinkPids::of`]), its [`Mediation`] is prepared once (per-type
//! configuration: the rest identity, the dbus uid and filter, the wayland
//! filter), a listening socket is injected into the consumer, and [`serve`]
//! takes over that listener under a child of the daemon's [`Shutdown`]
//! token. [`drm`] links have no listener: a device node is created instead.
//!
//! [`serve`] is the accept loop: every accepted connection becomes a
//! session task that dispatches on the link's type. A mediation's `serve`
//! returns how its session ended ([`SessionError`]) and the accept loop
//! logs it, once; a session that panics is caught and logged, never taking
//! the daemon down. It is public so tests and benchmarks run this very
//! loop on a listener of their own.
//!
//! [`LinkHandle::stop`] cancels the link's token, waits for the accept loop
//! (which gives its sessions [`SESSION_DRAIN`] to end), then removes what
//! was injected if it is still ours, and says what it did ([`Removal`]).

pub mod dbus;
pub mod drm;
pub mod rest;
pub mod unix;
pub mod wayland;

use std::any::Any;
use std::fmt;
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
use tracing::Level;

use crate::graph::{LinkSpec, ServiceType};
use crate::logging::link_event;
use crate::ns::{self, Injected, NsError};
use crate::process::{LinkPids, PidError, ProviderPid};
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

/// The provider end of a link: how to reach its socket.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The provider container's name (`_pv_` for the hosted bus).
    pub name: String,
    pub pid: ProviderPid,
    /// Socket path inside the provider's root.
    pub socket: PathBuf,
}

impl Provider {
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
        let std = ns::connect_provider(self.pid, &self.socket, creds).await?;
        std.set_nonblocking(true)?;
        Ok(UnixStream::from_std(std)?)
    }
}

/// Everything a mediation needs to serve one accepted consumer connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub spec: Arc<LinkSpec>,
    pub provider: Arc<Provider>,
    pub stats: Arc<LinkStats>,
    /// Cancelled when the link is torn down or the daemon stops.
    pub shutdown: Shutdown,
}

/// Why a link could not be set up (shown as `failed: <reason>` in status).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Pid(#[from] PidError),
    #[error("namespace: {0}")]
    Ns(#[from] NsError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

/// How a session ended, when not cleanly. Every mediation's `serve`
/// returns it; the accept loop logs it, once.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// Something an operator should hear about: the provider cannot be
    /// reached, a peer broke the protocol. Logged as a warning.
    #[error("{0:#}")]
    Fault(anyhow::Error),
    /// A peer left mid-exchange, which peers may do. Logged at debug level.
    #[error("{0:#}")]
    Gone(anyhow::Error),
}

impl From<anyhow::Error> for SessionError {
    fn from(e: anyhow::Error) -> Self {
        SessionError::Fault(e)
    }
}

/// How long sessions get to notice cancellation when a link stops.
pub const SESSION_DRAIN: Duration = Duration::from_secs(2);
/// Pause after an accept failure caused by resource exhaustion (EMFILE,
/// ENFILE, ENOBUFS, ENOMEM): retrying at once would spin, since the pending
/// connection stays queued until an fd frees up.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What [`LinkHandle::stop`] did with the node it had injected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Removed from the consumer.
    Removed,
    /// The consumer's namespace, or our node in it, was already gone.
    AlreadyGone,
    /// It could not be removed (why).
    Failed(String),
}

impl fmt::Display for Removal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removal::Removed => f.write_str("node removed from the consumer"),
            Removal::AlreadyGone => f.write_str("consumer namespace or node already gone"),
            Removal::Failed(e) => write!(f, "node not removed: {e}"),
        }
    }
}

/// A running link. Dropping it without [`LinkHandle::stop`] still cancels
/// its tasks, but only `stop` removes what was injected.
#[derive(Debug)]
pub struct LinkHandle {
    stats: Arc<LinkStats>,
    shutdown: Shutdown,
    accept: Option<JoinHandle<()>>,
    injected: Option<Injected>,
}

impl LinkHandle {
    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.stats
    }

    /// Stop the listener, close its sessions and remove the injected socket
    /// or node from the consumer if that namespace still exists.
    pub async fn stop(mut self) -> Removal {
        self.shutdown.cancel();
        if let Some(accept) = self.accept.take() {
            // The loop owns the listener and drains the sessions: once it
            // ended, new connects fail and the sessions are done.
            let _ = accept.await;
        }
        match self.injected.take() {
            None => Removal::AlreadyGone,
            Some(injected) => match ns::remove_injected(&injected).await {
                Ok(true) => Removal::Removed,
                Ok(false) => Removal::AlreadyGone,
                Err(err) => Removal::Failed(err.to_string()),
            },
        }
    }
}

impl Drop for LinkHandle {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A link's mediation, prepared once when the link starts: the link, its
/// provider and the per-type configuration its sessions share.
#[derive(Debug)]
pub struct Mediation {
    spec: Arc<LinkSpec>,
    provider: Arc<Provider>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Unix,
    Rest(rest::Config),
    Dbus(dbus::Config),
    Wayland(wayland::Config),
}

impl Mediation {
    /// Check the provider's pid and compute the link's per-type
    /// configuration. `drm` (a device node, see [`drm::install`]) and
    /// unsupported types have no socket mediation.
    pub async fn prepare(spec: Arc<LinkSpec>) -> Result<Mediation, LinkError> {
        let provider = Arc::new(Provider {
            name: spec.provider.clone(),
            pid: ProviderPid::new(spec.provider_pid)?,
            socket: spec.socket.clone(),
        });
        let kind = match &spec.kind {
            ServiceType::Unix => Kind::Unix,
            ServiceType::Rest => Kind::Rest(rest::Config::prepare(&spec)?),
            ServiceType::Dbus => Kind::Dbus(dbus::Config::prepare(&spec, &provider).await?),
            ServiceType::Wayland => Kind::Wayland(wayland::Config::prepare(&spec)),
            other => {
                return Err(LinkError::Refused(format!(
                    "no socket mediation for type {other:?}"
                )))
            }
        };
        Ok(Mediation {
            spec,
            provider,
            kind,
        })
    }

    async fn serve(&self, consumer: UnixStream, session: &Session) -> Result<(), SessionError> {
        match &self.kind {
            Kind::Unix => unix::serve(consumer, session).await,
            Kind::Rest(c) => rest::serve(c, consumer, session).await,
            Kind::Dbus(c) => dbus::serve(c, consumer, session).await,
            Kind::Wayland(c) => wayland::serve(c, consumer, session).await,
        }
    }
}

/// Set up a link: check its pids, prepare its mediation, inject into the
/// consumer and serve. `parent` is the daemon's shutdown token.
pub async fn start(spec: Arc<LinkSpec>, parent: &Shutdown) -> Result<LinkHandle, LinkError> {
    let pids = LinkPids::of(&spec)?;
    let stats = Arc::new(LinkStats::default());
    let shutdown = parent.child_token();

    if spec.kind == ServiceType::Drm {
        let injected = drm::install(&spec, pids).await?;
        return Ok(LinkHandle {
            stats,
            shutdown,
            accept: None,
            injected: Some(injected),
        });
    }

    let mediation = Mediation::prepare(spec.clone()).await?;
    let (std_listener, injected) = ns::inject_socket(pids.consumer, &spec.target).await?;
    let listener = std_listener
        .set_nonblocking(true)
        .and_then(|()| UnixListener::from_std(std_listener));
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = ns::remove_injected(&injected).await;
            return Err(NsError::Io(e).into());
        }
    };
    let accept = tokio::spawn(serve(listener, mediation, stats.clone(), shutdown.clone()));
    Ok(LinkHandle {
        stats,
        shutdown,
        accept: Some(accept),
        injected: Some(injected),
    })
}

/// The accept loop: serve consumer connections accepted on `listener`,
/// each one a session of `mediation` counted in `stats`, until `shutdown`
/// is cancelled; then close the listener and give the sessions
/// [`SESSION_DRAIN`] to end.
pub async fn serve(
    listener: UnixListener,
    mediation: Mediation,
    stats: Arc<LinkStats>,
    shutdown: Shutdown,
) {
    let mediation = Arc::new(mediation);
    let base = Session {
        spec: mediation.spec.clone(),
        provider: mediation.provider.clone(),
        stats,
        shutdown: shutdown.clone(),
    };
    let sessions = TaskTracker::new();
    let mut exhausted = false;
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                exhausted = false;
                sessions.spawn(run_session(stream, base.clone(), mediation.clone()));
            }
            Err(err) if is_exhaustion(&err) => {
                if !exhausted {
                    link_event!(
                        Level::WARN,
                        base.spec,
                        reason = %err,
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
                link_event!(Level::DEBUG, base.spec, reason = %err, "accept");
            }
        }
    }
    drop(listener);
    sessions.close();
    if tokio::time::timeout(SESSION_DRAIN, sessions.wait())
        .await
        .is_err()
    {
        link_event!(
            Level::WARN,
            base.spec,
            live = base.stats.live(),
            "sessions still running after stop; abandoning them"
        );
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
    let spec = &session.spec;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(SessionError::Fault(err))) => {
            link_event!(Level::WARN, spec, reason = %format_args!("{err:#}"), "session failed")
        }
        Ok(Err(SessionError::Gone(err))) => {
            link_event!(Level::DEBUG, spec, reason = %format_args!("{err:#}"), "session ended")
        }
        Err(panic) => link_event!(
            Level::ERROR,
            spec,
            reason = %panic_message(&*panic),
            "session panicked"
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
