//! One running link: the injected listener (or device node), its sessions,
//! and its teardown. Per-type mediation lives in the submodules: [`unix`]
//! (byte relay with fds), [`rest`] (HTTP proxy stamping the identity),
//! [`dbus`] (D-Bus proxy with role uid and filter), [`wayland`]
//! (protocol-aware relay), [`drm`] and [`input`] (a device node, no
//! listener). With [`Options::unix_passthrough`], a `unix` link binds the
//! provider's socket itself at the target instead ([`passthrough`]: no
//! listener, no sessions; relayed where the kernel refuses the mount
//! API).
//!
//! [`start`] sets a link up in order: its pids are checked
//! ([`LinkPids::of`]) and pinned ([`Process::open_container`]: a stale pid
//! reused by another process is refused), its [`Mediation`] is prepared
//! once (per-type configuration: the rest identity, the dbus uid and
//! filter, the wayland filter), a listening socket is injected into the
//! consumer, and [`serve`] takes over that listener under a child of the
//! daemon's [`Shutdown`] token. [`drm`] and [`input`] links have no listener: a device
//! node is created instead. From then on the link watches its two
//! processes: when either exits, or when the provider's socket turns out
//! to be served from outside the provider, [`LinkHandle::take_end`] says
//! so ([`LinkEnd`]) and the reconciler stops the link at once.
//!
//! # The provider end must belong to the provider
//!
//! [`Provider`] resolves the provider's socket inside the provider's root
//! once (on a blocking thread, with a timeout) and connects to that inode
//! for every session; a refused connect re-resolves (the server restarted).
//! The first connection to each listener asks the kernel who listens
//! ([`ns::Listener`]): unless that process lives in the provider's mount
//! and pid namespaces, the link is refused (`provider socket is served
//! from outside container <name>`), which is what a bind mount of a host
//! socket into a container looks like. A socket that is one of the
//! daemon's own injected listeners is refused too. Later connections to
//! the same listener cost one `getsockopt`. Connects never block a worker:
//! a full backlog is retried asynchronously until [`ns::CONNECT_TIMEOUT`].
//!
//! # Bounds
//!
//! [`serve`] is the accept loop: every accepted connection becomes a
//! session task that dispatches on the link's type, up to
//! [`Limits::max_sessions`] at once; beyond that, connections are accepted
//! and closed at once, logged once per burst. Fds received from peers
//! count against the link's [`FdBudget`] ([`Limits::fds_in_flight`]). A
//! mediation's `serve` returns how its session ended ([`SessionError`])
//! and the accept loop logs it through the link's [`Throttle`]; a session
//! that panics is caught and logged, never taking the daemon down. `serve`
//! is public so tests and benchmarks run this very loop on a listener of
//! their own.
//!
//! Accept loops and sessions run on the session [`workers`] (one
//! current-thread runtime per core), not on the control runtime.
//!
//! [`LinkHandle::stop`] cancels the link's token, removes what was
//! injected if it is still ours, and waits for the accept loop (which
//! gives its sessions [`SESSION_DRAIN`] to end), then says what it did
//! ([`Removal`]).

pub mod dbus;
pub mod drm;
pub mod input;
pub mod passthrough;
pub mod rest;
pub mod unix;
pub mod wayland;
pub mod workers;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;
use tracing::Level;

use crate::fdpass::FdBudget;
use crate::graph::{LinkSpec, ServiceType};
use crate::logging::{link_event, Throttle};
use crate::ns::{self, Injected, Listener, NsError, ResolvedSocket};
use crate::process::{LinkPids, PidError, Process, ProcessError, ProviderPid};
use crate::shutdown::Shutdown;

/// Counters shown by `pv-xconnect status`.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub live_sessions: AtomicU64,
    pub total_sessions: AtomicU64,
    pub bytes_relayed: AtomicU64,
    /// Connections closed at once because the link had
    /// [`Limits::max_sessions`] sessions.
    pub refused_sessions: AtomicU64,
    /// The provider's socket is bound into the consumer ([`passthrough`]):
    /// nothing is relayed, so nothing is counted.
    pub passthrough: AtomicBool,
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

    pub fn refused(&self) -> u64 {
        self.refused_sessions.load(Ordering::Relaxed)
    }

    pub fn is_passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }
}

/// Per-link bounds, sized for an embedded device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Sessions served at once (`--max-sessions-per-link`).
    pub max_sessions: usize,
    /// Fds received from peers and not yet passed on, across the link's
    /// sessions.
    pub fds_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 256,
            fds_in_flight: 1024,
        }
    }
}

/// Daemon-wide settings of the links (the daemon's command-line flags);
/// every link gets the same.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    pub limits: Limits,
    pub rest: rest::Options,
    pub dbus: dbus::Options,
    /// `unix` links bind the provider's socket into the consumer instead
    /// of relaying (`--unix-passthrough`, see [`passthrough`]).
    pub unix_passthrough: bool,
}

/// How long resolving the provider's socket may take (a hung filesystem in
/// the provider must not hold a session, let alone the daemon).
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The provider end of a link: how to reach its socket, and who must be
/// serving it (see the module docs).
#[derive(Debug)]
pub struct Provider {
    /// The provider container's name (`_pv_` for the hosted bus).
    pub name: String,
    pub pid: ProviderPid,
    /// Socket path inside the provider's root.
    pub socket: PathBuf,
    /// The pinned provider process (`Ok(None)`: the host), or why it could
    /// not be pinned.
    process: Result<Option<Arc<Process>>, String>,
    /// The socket as last resolved, and its verified listener.
    cache: Mutex<Option<Arc<Resolved>>>,
    /// One resolution at a time.
    resolving: tokio::sync::Mutex<()>,
    /// A resolution that timed out, and when: sessions fail fast for a
    /// while instead of queueing on a hung filesystem.
    hung: Mutex<Option<Instant>>,
    /// Set when a connection showed that the socket is not the provider's.
    refused: watch::Sender<Option<String>>,
}

#[derive(Debug)]
struct Resolved {
    socket: Arc<ResolvedSocket>,
    /// The listener's pid once verified; 0 until then.
    listener: AtomicI32,
}

impl Provider {
    /// A provider end for `pid`: a container provider is pinned now with
    /// no policy (tests and tools; [`start`] pins with
    /// [`Process::open_container`]). If it cannot be pinned, every use
    /// fails with the reason.
    pub fn new(name: impl Into<String>, pid: ProviderPid, socket: impl Into<PathBuf>) -> Provider {
        let process = match pid {
            ProviderPid::Host => Ok(None),
            ProviderPid::Container(p) => Process::open(p.get(), "provider")
                .map(|p| Some(Arc::new(p)))
                .map_err(|e| e.to_string()),
        };
        Self::pinned(name.into(), pid, socket.into(), process)
    }

    fn pinned(
        name: String,
        pid: ProviderPid,
        socket: PathBuf,
        process: Result<Option<Arc<Process>>, String>,
    ) -> Provider {
        Provider {
            name,
            pid,
            socket,
            process,
            cache: Mutex::new(None),
            resolving: tokio::sync::Mutex::new(()),
            hung: Mutex::new(None),
            refused: watch::channel(None).0,
        }
    }

    fn process(&self) -> Result<Option<Arc<Process>>, NsError> {
        self.process.clone().map_err(NsError::Refused)
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

    /// Read a small regular file inside the provider's root (see
    /// [`ns::read_file_in`]).
    pub async fn read_file(&self, path: &Path, max_len: usize) -> Result<Vec<u8>, NsError> {
        ns::read_file_in(self.process()?, path, max_len).await
    }

    /// Resolves with the reason once a connection showed the provider's
    /// socket is not served by the provider.
    pub async fn refused(&self) -> String {
        let mut rx = self.refused.subscribe();
        loop {
            if let Some(why) = rx.borrow_and_update().clone() {
                return why;
            }
            if rx.changed().await.is_err() {
                // The sender lives in self: never closed while we wait.
                return std::future::pending().await;
            }
        }
    }

    async fn connect_with(&self, creds: Option<(u32, u32)>) -> Result<UnixStream, NsError> {
        // Already non-blocking: `ResolvedSocket::connect` opens it with
        // SOCK_NONBLOCK (one ioctl less per session).
        let (std, _) = self.connect_checked(creds).await?;
        Ok(UnixStream::from_std(std)?)
    }

    /// The provider's socket, resolved and checked to be served by the
    /// provider (by one connection, closed at once): what a passthrough
    /// link binds into the consumer.
    pub async fn checked_socket(&self) -> Result<Arc<ResolvedSocket>, NsError> {
        let (_probe, resolved) = self.connect_checked(None).await?;
        Ok(resolved.socket.clone())
    }

    /// (st_dev, st_ino) of the file the socket path leads to now, resolved
    /// afresh (the cache is left alone), within [`RESOLVE_TIMEOUT`].
    pub async fn current_node(&self) -> Result<(u64, u64), NsError> {
        let process = self.process()?;
        let path = self.socket.clone();
        let task =
            tokio::task::spawn_blocking(move || ResolvedSocket::resolve(process.as_deref(), &path));
        match tokio::time::timeout(RESOLVE_TIMEOUT, task).await {
            Ok(Ok(r)) => Ok(r?.node),
            Ok(Err(_)) => Err(NsError::Panicked("resolve task")),
            Err(_) => Err(NsError::TimedOut("resolving the provider socket")),
        }
    }

    /// Connect, verify who serves the connection, and say which resolution
    /// it went through.
    async fn connect_checked(
        &self,
        creds: Option<(u32, u32)>,
    ) -> Result<(std::os::unix::net::UnixStream, Arc<Resolved>), NsError> {
        let mut stale: Option<Arc<Resolved>> = None;
        loop {
            let cached = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let resolved = match cached {
                Some(r) if !matches!(&stale, Some(s) if Arc::ptr_eq(s, &r)) => r,
                _ => self.resolve(stale.as_ref()).await?,
            };
            let attempt = match creds {
                None => ns::connect_resolved(&resolved.socket).await,
                Some((uid, gid)) => resolved.socket.connect_as(uid, gid).await,
            };
            match attempt {
                Ok(std) => {
                    self.verify(&resolved, &std)?;
                    return Ok((std, resolved));
                }
                // Nobody listens on that inode anymore: the server
                // restarted (or left); resolve the path again, once.
                Err(NsError::Io(e))
                    if stale.is_none()
                        && matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::ENOENT)) =>
                {
                    stale = Some(resolved);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Resolve the socket path again (one caller at a time; others reuse
    /// its result), off the async workers and within [`RESOLVE_TIMEOUT`].
    async fn resolve(&self, stale: Option<&Arc<Resolved>>) -> Result<Arc<Resolved>, NsError> {
        let _one = self.resolving.lock().await;
        if let Some(r) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).clone() {
            if !matches!(stale, Some(s) if Arc::ptr_eq(s, &r)) {
                return Ok(r);
            }
        }
        if let Some(at) = *self.hung.lock().unwrap_or_else(|p| p.into_inner()) {
            if at.elapsed() < RESOLVE_TIMEOUT {
                return Err(NsError::TimedOut(
                    "resolving the provider socket (recently)",
                ));
            }
        }
        let process = self.process()?;
        let path = self.socket.clone();
        let task =
            tokio::task::spawn_blocking(move || ResolvedSocket::resolve(process.as_deref(), &path));
        let socket = match tokio::time::timeout(RESOLVE_TIMEOUT, task).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(NsError::Panicked("resolve task")),
            Err(_) => {
                *self.hung.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                return Err(NsError::TimedOut("resolving the provider socket"));
            }
        };
        if ns::is_injected_socket(socket.node) {
            // Checked before connecting: a connection to it would be one
            // more session of ours, connecting to itself again.
            let why = format!(
                "provider socket {} is one of pv-xconnect's own injected listeners (a container consuming its own export?)",
                self.socket.display()
            );
            self.refused.send_replace(Some(why.clone()));
            return Err(NsError::Refused(why));
        }
        let resolved = Arc::new(Resolved {
            socket: Arc::new(socket),
            listener: AtomicI32::new(0),
        });
        *self.cache.lock().unwrap_or_else(|p| p.into_inner()) = Some(resolved.clone());
        Ok(resolved)
    }

    /// Check who serves the connection (cheap once the listener of this
    /// inode was verified).
    fn verify(
        &self,
        resolved: &Resolved,
        stream: &std::os::unix::net::UnixStream,
    ) -> Result<(), NsError> {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let pid = getsockopt(stream, PeerCredentials)
            .map(|c| c.pid())
            .unwrap_or(0);
        if pid > 0 && pid == resolved.listener.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.judge(stream) {
            Ok(()) => {
                resolved.listener.store(pid, Ordering::Relaxed);
                Ok(())
            }
            // This session fails; the link stays (a later one asks again).
            Err(Verdict::Undecided(why)) => Err(NsError::Io(std::io::Error::other(format!(
                "cannot check who serves the provider socket now: {why}"
            )))),
            Err(Verdict::Refused(why)) => {
                self.refused.send_replace(Some(why.clone()));
                Err(NsError::Refused(why))
            }
        }
    }

    fn judge(&self, stream: &std::os::unix::net::UnixStream) -> Result<(), Verdict> {
        let path = self.socket.display();
        let Some(process) = self
            .process()
            .map_err(|e| Verdict::Refused(e.to_string()))?
        else {
            // The hosted bus: a host path Pantavisor chose, in our own root.
            return Ok(());
        };
        let outside = |detail: String| {
            Verdict::Refused(format!(
                "provider socket {path} is served from outside container {} ({detail})",
                crate::logging::Escaped(&self.name)
            ))
        };
        match Listener::of(stream) {
            Listener::Process(l)
                if l.mnt_ns() == process.mnt_ns() && l.pid_ns() == process.pid_ns() =>
            {
                Ok(())
            }
            Listener::Process(l) => Err(outside(format!(
                "listener pid {} is in other namespaces",
                l.pid()
            ))),
            Listener::Exited(pid) => Err(outside(format!(
                "listener pid {pid} has exited, so its container cannot be told; a server must not exit after listen()"
            ))),
            Listener::Unseen => Err(outside(
                "listener in a pid namespace pv-xconnect cannot see".into(),
            )),
            Listener::Unknown(why) => Err(Verdict::Undecided(why)),
        }
    }
}

/// Why [`Provider::judge`] did not accept a listener.
enum Verdict {
    /// Served from outside the provider: the link is refused.
    Refused(String),
    /// Could not be told now (out of fds): only this session fails.
    Undecided(String),
}

/// Everything a mediation needs to serve one accepted consumer connection.
#[derive(Debug, Clone)]
pub struct Session {
    pub spec: Arc<LinkSpec>,
    pub provider: Arc<Provider>,
    pub stats: Arc<LinkStats>,
    /// Fds the link's sessions may hold at once.
    pub fds: FdBudget,
    /// Rate limit of this link's per-session log lines.
    pub log: Arc<Throttle>,
    /// Cancelled when the link is torn down or the daemon stops.
    pub shutdown: Shutdown,
}

/// Why a link could not be set up (shown as `failed: <reason>` in status).
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{0}")]
    Pid(#[from] PidError),
    #[error("{0}")]
    Process(#[from] ProcessError),
    #[error("namespace: {0}")]
    Ns(#[from] NsError),
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    Other(#[from] anyhow::Error),
}

impl LinkError {
    /// The graph's pid no longer names the process it meant: the link
    /// waits for a new pid instead of retrying.
    pub fn is_gone(&self) -> bool {
        match self {
            LinkError::Process(e) => e.is_gone(),
            LinkError::Ns(e) => e.is_gone(),
            _ => false,
        }
    }
}

/// Why a running link ended on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEnd {
    /// The consumer or the provider exited: wait for a new pid.
    Exited(String),
    /// The provider's socket is not the provider's: refused.
    Refused(String),
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
    /// The accept loop (a passthrough link: the task following the
    /// provider's socket).
    accept: Option<JoinHandle<()>>,
    injected: Option<Injected>,
    /// A passthrough link's bind mount in the consumer.
    mounted: Option<ns::Mounted>,
    end: Option<EndWatch>,
}

impl LinkHandle {
    pub fn stats(&self) -> &Arc<LinkStats> {
        &self.stats
    }

    /// The link's own end (a process exited, the provider socket was
    /// refused), once; `None` if already taken.
    pub fn take_end(&mut self) -> Option<EndWatch> {
        self.end.take()
    }

    /// What was injected into the consumer.
    pub fn injected(&self) -> Option<&Injected> {
        self.injected.as_ref()
    }

    /// The provider's socket bound into the consumer (passthrough links).
    pub fn mounted(&self) -> Option<&ns::Mounted> {
        self.mounted.as_ref()
    }

    /// Stop the listener, close its sessions and remove the injected socket
    /// or node (or the passthrough mount) from the consumer if it is still
    /// ours.
    pub async fn stop(mut self) -> Removal {
        self.shutdown.cancel();
        let accept = self.accept.take();
        let injected = self.injected.take();
        let mounted = self.mounted.take();
        // Removal does not wait for the sessions to drain.
        let removal = async move {
            let removed = match (injected, mounted) {
                (Some(injected), _) => ns::remove_injected(&injected).await,
                (None, Some(mounted)) => ns::unmount_socket(mounted).await,
                (None, None) => return Removal::AlreadyGone,
            };
            match removed {
                Ok(true) => Removal::Removed,
                Ok(false) => Removal::AlreadyGone,
                Err(err) => Removal::Failed(err.to_string()),
            }
        };
        let drained = async move {
            if let Some(accept) = accept {
                // The loop owns the listener and drains the sessions.
                let _ = accept.await;
            }
        };
        tokio::join!(removal, drained).0
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
    limits: Limits,
}

#[derive(Debug)]
enum Kind {
    Unix,
    Rest(rest::Config),
    Dbus(dbus::Config),
    Wayland(wayland::Config),
}

impl Mediation {
    /// Compute the link's per-type configuration, with the provider pinned
    /// as [`Provider::new`] does (no container policy: for tests and
    /// benchmarks that serve a link on a listener of their own). `drm` and
    /// `input` (a device node, see [`drm::install`]) and unsupported types have no
    /// socket mediation. Default [`Options`].
    pub async fn prepare(spec: Arc<LinkSpec>) -> Result<Mediation, LinkError> {
        Self::prepare_with(spec, &Options::default()).await
    }

    /// [`Mediation::prepare`] with the daemon's [`Options`].
    pub async fn prepare_with(
        spec: Arc<LinkSpec>,
        options: &Options,
    ) -> Result<Mediation, LinkError> {
        let pid = ProviderPid::new(spec.provider_pid)?;
        let provider = Provider::new(spec.provider.clone(), pid, spec.socket.clone());
        Self::prepare_for(spec, provider, options).await
    }

    async fn prepare_for(
        spec: Arc<LinkSpec>,
        provider: Provider,
        options: &Options,
    ) -> Result<Mediation, LinkError> {
        let provider = Arc::new(provider);
        let kind = match &spec.kind {
            ServiceType::Unix => Kind::Unix,
            ServiceType::Rest => Kind::Rest(rest::Config::prepare(&spec, &options.rest)?),
            ServiceType::Dbus => {
                Kind::Dbus(dbus::Config::prepare(&spec, &provider, &options.dbus).await?)
            }
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
            limits: options.limits,
        })
    }

    pub fn provider(&self) -> &Arc<Provider> {
        &self.provider
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

/// Set up a link with default [`Options`]: see [`start_with`].
pub async fn start(spec: Arc<LinkSpec>, parent: &Shutdown) -> Result<LinkHandle, LinkError> {
    start_with(spec, parent, &Options::default()).await
}

/// Set up a link: check and pin its pids, prepare its mediation, inject
/// into the consumer and serve. `parent` is the daemon's shutdown token.
pub async fn start_with(
    spec: Arc<LinkSpec>,
    parent: &Shutdown,
    options: &Options,
) -> Result<LinkHandle, LinkError> {
    let pids = LinkPids::of(&spec)?;
    // procfs only: quick, and never waits on a container's filesystems.
    let consumer = Process::pin_container(pids.consumer, "consumer")?;
    let provider = match pids.provider {
        ProviderPid::Host => None,
        ProviderPid::Container(p) => Some(Process::pin_container(p, "provider")?),
    };
    let stats = Arc::new(LinkStats::default());
    let shutdown = parent.child_token();

    if matches!(spec.kind, ServiceType::Drm | ServiceType::Input) {
        let injected = if spec.kind == ServiceType::Drm {
            drm::install(&spec, pids, &consumer, provider.clone()).await?
        } else {
            input::install(&spec, pids, &consumer, provider.clone()).await?
        };
        let end = watch_ends(consumer, provider, None, shutdown.clone());
        return Ok(LinkHandle {
            stats,
            shutdown,
            accept: None,
            injected: Some(injected),
            mounted: None,
            end: Some(end),
        });
    }

    let pinned = Provider::pinned(
        spec.provider.clone(),
        pids.provider,
        spec.socket.clone(),
        Ok(provider.clone()),
    );
    let mediation = Mediation::prepare_for(spec.clone(), pinned, options).await?;
    if options.unix_passthrough && spec.kind == ServiceType::Unix {
        if let Some(provider) = &provider {
            match passthrough::bind(&spec, pids.consumer, &consumer, provider, &mediation).await {
                Ok(mounted) => {
                    stats.passthrough.store(true, Ordering::Relaxed);
                    let socket = mediation.provider.clone();
                    let end = watch_ends(
                        consumer,
                        Some(provider.clone()),
                        Some(socket.clone()),
                        shutdown.clone(),
                    );
                    let follow = tokio::spawn(passthrough::follow(
                        spec.clone(),
                        mounted.clone(),
                        provider.clone(),
                        socket,
                        shutdown.clone(),
                    ));
                    return Ok(LinkHandle {
                        stats,
                        shutdown,
                        accept: Some(follow),
                        injected: None,
                        mounted: Some(mounted),
                        end: Some(end),
                    });
                }
                Err(e) if e.is_mount_api() => link_event!(
                    Level::WARN,
                    spec,
                    reason = %e,
                    "unix passthrough unavailable: relaying this link"
                ),
                Err(e) => return Err(e.into()),
            }
        }
    }
    let (std_listener, injected) =
        ns::inject_socket(&consumer, pids.consumer, &spec.target).await?;
    // The accept loop (and the sessions it keeps) runs on a session
    // worker: the listener joins that worker's epoll.
    let home = workers::home();
    let listener = std_listener.set_nonblocking(true).and_then(|()| {
        let _in = home.enter();
        UnixListener::from_std(std_listener)
    });
    let listener = match listener {
        Ok(l) => l,
        Err(e) => {
            let _ = ns::remove_injected(&injected).await;
            return Err(NsError::Io(e).into());
        }
    };
    let end = watch_ends(
        consumer,
        provider,
        Some(mediation.provider.clone()),
        shutdown.clone(),
    );
    let accept = home.spawn(serve(listener, mediation, stats.clone(), shutdown.clone()));
    Ok(LinkHandle {
        stats,
        shutdown,
        accept: Some(accept),
        injected: Some(injected),
        mounted: None,
        end: Some(end),
    })
}

/// What ends a running link on its own, once awaited: `None` when the link
/// was stopped first. A future rather than a task of its own: whoever waits
/// for the end (the reconciler) polls it, so a link costs no extra task.
pub struct EndWatch(Pin<Box<dyn Future<Output = Option<LinkEnd>> + Send>>);

impl EndWatch {
    pub fn new(end: impl Future<Output = Option<LinkEnd>> + Send + 'static) -> Self {
        EndWatch(Box::pin(end))
    }
}

impl Future for EndWatch {
    type Output = Option<LinkEnd>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.0.as_mut().poll(cx)
    }
}

impl fmt::Debug for EndWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EndWatch")
    }
}

/// Watch what ends a link on its own: either process exiting, the
/// provider socket refused. Nothing is reported once `shutdown` fired.
fn watch_ends(
    consumer: Arc<Process>,
    provider: Option<Arc<Process>>,
    socket: Option<Arc<Provider>>,
    shutdown: Shutdown,
) -> EndWatch {
    EndWatch::new(async move {
        let provider_exit = async {
            match &provider {
                Some(p) => p.exited().await,
                None => std::future::pending().await,
            }
        };
        let refused = async {
            match &socket {
                Some(s) => s.refused().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => None,
            _ = consumer.exited() => Some(LinkEnd::Exited(format!("consumer exited (pid {})", consumer.pid()))),
            _ = provider_exit => Some(LinkEnd::Exited(format!(
                "provider exited (pid {})",
                provider.as_ref().map_or(0, |p| p.pid())
            ))),
            why = refused => Some(LinkEnd::Refused(why)),
        }
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
    let limits = mediation.limits;
    let base = Session {
        spec: mediation.spec.clone(),
        provider: mediation.provider.clone(),
        stats,
        fds: FdBudget::new(limits.fds_in_flight),
        log: Arc::new(Throttle::default()),
        shutdown: shutdown.clone(),
    };
    let sessions = TaskTracker::new();
    let mut exhausted = false;
    // Connections refused in the current burst over the session cap, and
    // whether that burst was logged (bursts are rate-limited too).
    let mut over_cap: u64 = 0;
    let mut cap_logged = false;
    let cap_log = Throttle::default();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, _)) => {
                exhausted = false;
                if base.stats.live() >= limits.max_sessions as u64 {
                    // Accept and close: the consumer learns at once, and
                    // the connection does not sit in the backlog.
                    drop(stream);
                    base.stats.refused_sessions.fetch_add(1, Ordering::Relaxed);
                    if over_cap == 0 {
                        cap_logged = match cap_log.admit() {
                            Some(suppressed) => {
                                link_event!(
                                    Level::WARN,
                                    base.spec,
                                    max_sessions = limits.max_sessions,
                                    suppressed,
                                    "session limit reached: refusing new connections"
                                );
                                true
                            }
                            None => false,
                        };
                    }
                    over_cap += 1;
                    continue;
                }
                if over_cap > 0 {
                    if cap_logged {
                        link_event!(
                            Level::INFO,
                            base.spec,
                            refused = over_cap,
                            "below the session limit again"
                        );
                    }
                    over_cap = 0;
                }
                // Counted here, not in the task: a burst of accepts must
                // see the sessions it already started, or it overshoots
                // the cap (and the fds it bounds) until they first run.
                let live = LiveGuard::new(base.stats.clone());
                let (session, mediation) = (base.clone(), mediation.clone());
                if let Err(err) = workers::spawn_session(&sessions, stream, |stream| {
                    run_session(live, stream, session, mediation)
                }) {
                    link_event!(Level::WARN, base.spec, reason = %err, "cannot hand the connection to a session worker");
                }
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
    let suppressed = base.log.take_suppressed();
    if suppressed > 0 {
        link_event!(
            Level::INFO,
            base.spec,
            suppressed,
            "session messages suppressed before stop"
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

/// `_live` is released last, after both of the session's sockets closed.
async fn run_session(
    _live: LiveGuard,
    stream: UnixStream,
    session: Session,
    mediation: Arc<Mediation>,
) {
    let shutdown = session.shutdown.clone();
    let served = CatchUnwind(Box::pin(mediation.serve(stream, &session)));
    let outcome = tokio::select! {
        // Dropping the mediation's future closes both of its sockets, even
        // if that mediation does not watch the token itself.
        _ = shutdown.cancelled() => return,
        r = served => r,
    };
    let spec = &session.spec;
    let admit = || session.log.admit();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(SessionError::Fault(err))) => {
            if let Some(suppressed) = admit() {
                link_event!(Level::WARN, spec, reason = %format_args!("{err:#}"), suppressed, "session failed")
            }
        }
        Ok(Err(SessionError::Gone(err))) => {
            link_event!(Level::DEBUG, spec, reason = %format_args!("{err:#}"), "session ended")
        }
        Err(panic) => {
            if let Some(suppressed) = admit() {
                link_event!(
                    Level::ERROR,
                    spec,
                    reason = %panic_message(&*panic),
                    suppressed,
                    "session panicked"
                )
            }
        }
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
