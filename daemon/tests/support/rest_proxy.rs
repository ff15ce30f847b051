//! Test fixture for `rest` links without namespaces: the example REST server
//! as provider on a temp socket, and a temp listener whose accepted streams
//! go to `link::rest::serve`, with an `Upstream` on the host side (pid 0).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pv_examples::rest::ServerStats;
use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link::{rest, LinkStats, Session, Upstream};
use pv_xconnect::shutdown::Shutdown;
use tokio::net::UnixListener;

/// The example server on its own runtime, so [`Provider::kill`] can make it
/// vanish at once, every connection included, as a killed process would.
pub struct Provider {
    pub path: PathBuf,
    pub stats: Arc<ServerStats>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Provider {
    pub fn start(dir: &Path) -> Self {
        let path = dir.join("provider/api.sock");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("provider runtime");
        let stats = Arc::new(ServerStats::default());
        let listener = {
            let _enter = rt.enter();
            pv_examples::rest::bind(&path).expect("bind provider")
        };
        rt.spawn(pv_examples::rest::serve(listener, stats.clone()));
        Self {
            path,
            stats,
            rt: Some(rt),
        }
    }

    pub fn requests(&self) -> u64 {
        self.stats.requests.load(Ordering::SeqCst)
    }

    pub fn connections(&self) -> u64 {
        self.stats.connections.load(Ordering::SeqCst)
    }

    /// Drop every task and socket of the provider immediately.
    pub fn kill(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `rest` link's consumer end on a temp path, served by `rest::serve`.
pub struct Proxy {
    pub path: PathBuf,
    pub stats: Arc<LinkStats>,
    /// Consumer connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    shutdown: Shutdown,
}

impl Proxy {
    pub async fn start(dir: &Path, provider_socket: &Path, consumer: &str, role: &str) -> Self {
        let spec = Arc::new(LinkSpec {
            consumer: consumer.into(),
            consumer_pid: 0,
            provider: "pv-example-rest-server".into(),
            provider_pid: 0,
            name: "network-manager".into(),
            kind: ServiceType::Rest,
            role: role.into(),
            interface: "rest".into(),
            target: dir.join("consumer.sock"),
            socket: provider_socket.to_path_buf(),
            uid: None,
        });
        let upstream = Arc::new(Upstream::from_spec(&spec));
        let config = Arc::new(
            rest::Config::prepare(&spec, &upstream)
                .await
                .expect("prepare"),
        );
        let stats = Arc::new(LinkStats::default());
        let shutdown = Shutdown::new();
        let session = Session {
            spec: spec.clone(),
            upstream,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let path = spec.target.clone();
        let listener = UnixListener::bind(&path).expect("bind consumer socket");
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = listener.accept() => {
                        let Ok((stream, _)) = r else { return };
                        counter.fetch_add(1, Ordering::SeqCst);
                        let (config, session) = (config.clone(), session.clone());
                        tokio::spawn(async move {
                            if let Err(e) = rest::serve(&config, stream, &session).await {
                                eprintln!("serve: {e:#}");
                            }
                        });
                    }
                    () = session.shutdown.cancelled() => return,
                }
            }
        });
        Self {
            path,
            stats,
            accepted,
            shutdown,
        }
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
