//! `rest` links without namespaces, shared by `tests/rest.rs` and
//! `benches/rest.rs`: the example REST server as the provider on a temp
//! socket, and rest links to it ([`proxy`]) on the host side (pid 0).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use pv_examples::rest::ServerStats;
use pv_xconnect::graph::ServiceType;
use pv_xconnect::test_util::LinkSpecBuilder;

use crate::Proxy;

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

/// A `rest` link from `consumer` with `role` to the provider at
/// `provider_socket` (a host path), served at `<dir>/consumer.sock`.
pub async fn proxy(dir: &Path, provider_socket: &Path, consumer: &str, role: &str) -> Proxy {
    let spec = LinkSpecBuilder::new(ServiceType::Rest)
        .consumer(consumer, 0)
        .provider("pv-example-rest-server", 0)
        .name("network-manager")
        .role(role)
        .target(dir.join("consumer.sock"))
        .socket(provider_socket)
        .arc();
    Proxy::start(spec).await
}
