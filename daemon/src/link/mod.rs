//! One running link: the injected listener (or device node), its sessions,
//! and its teardown. Per-type mediation lives in the submodules; each offers
//! `Config::prepare` (computed once per link) and `serve` (one session).

pub mod dbus;
pub mod drm;
pub mod rest;
pub mod unix;
pub mod wayland;

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::net::UnixStream;

use crate::graph::LinkSpec;
use crate::ns::{self, NsError};
use crate::shutdown::Shutdown;

/// Counters shown by `pv-xconnect status`.
#[derive(Debug, Default)]
pub struct LinkStats {
    pub live_sessions: AtomicU64,
    pub total_sessions: AtomicU64,
    pub bytes_relayed: AtomicU64,
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

/// A running link. Dropping it without [`LinkHandle::stop`] still cancels
/// its tasks, but only `stop` removes what was injected.
#[derive(Debug)]
pub struct LinkHandle {
    spec: Arc<LinkSpec>,
    stats: Arc<LinkStats>,
    shutdown: Shutdown,
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
    pub async fn stop(self) {
        self.shutdown.cancel();
        todo!("core issue: remove injected path")
    }
}

/// Set up a link: inject into the consumer (pid must be > 0) and start
/// mediating. `parent` is the daemon's shutdown token.
pub async fn start(_spec: Arc<LinkSpec>, _parent: &Shutdown) -> Result<LinkHandle, LinkError> {
    todo!("core issue")
}
