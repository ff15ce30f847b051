//! The Docker engine: the process-wide tokio runtime the synchronous API
//! drives, a bollard connection with the API version negotiated (Debian's
//! engine 20.10 speaks API 1.41, older than bollard's default) and a clear
//! error when no engine answers, and the two engine questions the harness
//! asks outside a container's lifetime (does an image exist, remove a
//! container by name).

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;

/// The process-wide runtime: tests are plain `#[test]`s and the harness's
/// API is synchronous; bollard and testcontainers run here.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start a tokio runtime: {e}"))
    })
}

/// Runs a future to completion on [`runtime`] (never call from inside it).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Connects (honouring `DOCKER_HOST`) and checks the engine answers.
pub async fn connect() -> Result<Docker> {
    let hint =
        "no Docker engine reachable: start dockerd (ci/install-deps.sh does) or set DOCKER_HOST";
    let docker = Docker::connect_with_defaults().map_err(|e| anyhow!("{hint} ({e})"))?;
    let docker = docker
        .negotiate_version()
        .await
        .map_err(|e| anyhow!("{hint} ({e})"))?;
    docker.ping().await.map_err(|e| anyhow!("{hint} ({e})"))?;
    Ok(docker)
}

/// Whether an image reference exists locally.
pub async fn image_exists(docker: &Docker, reference: &str) -> bool {
    docker.inspect_image(reference).await.is_ok()
}

/// Removes a container by name or id, with its anonymous volumes, running
/// or not (`docker rm -fv`). Returns whether it existed.
pub async fn remove_container(docker: &Docker, name: &str) -> bool {
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker.remove_container(name, Some(opts)).await.is_ok()
}
