//! A link's consumer end on a host path, served by the daemon's own accept
//! loop ([`link::serve`]): what the daemon runs for a link, minus the
//! injection into a consumer's namespace. The provider is reached as the
//! link says (pid 0: a host path; a container's pid: inside its root).

use std::path::PathBuf;
use std::sync::Arc;

use pv_xconnect::graph::LinkSpec;
use pv_xconnect::link::{self, LinkStats, Mediation};
use pv_xconnect::shutdown::Shutdown;
use tokio::net::UnixListener;

/// A served link; stops (its listener and sessions) when dropped.
pub struct Proxy {
    /// Where consumers connect: the spec's `target`, on the host.
    pub path: PathBuf,
    /// `unix:path=<path>`, for D-Bus clients.
    pub address: String,
    pub stats: Arc<LinkStats>,
    shutdown: Shutdown,
}

impl Proxy {
    /// Prepare `spec`'s mediation and serve it at `spec.target` (a host
    /// path) on the current runtime.
    pub async fn start(spec: Arc<LinkSpec>) -> Proxy {
        let path = spec.target.clone();
        let mediation = Mediation::prepare(spec).await.expect("prepare the link");
        let listener =
            UnixListener::bind(&path).unwrap_or_else(|e| panic!("bind {}: {e}", path.display()));
        let stats = Arc::new(LinkStats::default());
        let shutdown = Shutdown::new();
        tokio::spawn(link::serve(
            listener,
            mediation,
            stats.clone(),
            shutdown.clone(),
        ));
        Proxy {
            address: format!("unix:path={}", path.display()),
            path,
            stats,
            shutdown,
        }
    }

    pub fn socket(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// Consumer connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.stats.total()
    }

    /// Stop the link now: its listener closes, its sessions end.
    pub fn stop(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
