//! Connecting to the Docker engine through bollard, with the API version
//! negotiated (Debian's engine 20.10 speaks API 1.41, older than bollard's
//! default) and a clear error when no engine answers.

use anyhow::{anyhow, Result};
use bollard::Docker;

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
