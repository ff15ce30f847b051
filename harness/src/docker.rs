//! The Docker engine: the process-wide tokio runtime the synchronous API
//! drives, a bollard connection with the API version negotiated (Debian's
//! engine 20.10 speaks API 1.41, older than bollard's default) and a clear
//! error when no engine answers, and the two engine questions the harness
//! asks outside a container's lifetime (does an image exist, remove a
//! container by name, release its loop devices first).

use std::sync::OnceLock;

use anyhow::{anyhow, Result};
use std::time::Duration;

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::query_parameters::RemoveContainerOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;

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

/// Detaches the loop devices mounted in a running appengine container.
///
/// Loop devices belong to the host kernel, not to the container. Real
/// Pantavisor attaches its squashfs images with `LOOP_SET_FD` and no
/// autoclear flag, so killing its container leaves every one attached to a
/// deleted file, for good; after a few dozen runs the host runs out of free
/// loop devices and every appengine on it fails to mount (exactly how a CI
/// run broke). `losetup -d` on a device still mounted makes the kernel
/// detach it when its last user goes (`LO_FLAGS_AUTOCLEAR`), which is the
/// removal that follows. Only devices mounted in this container's processes
/// are touched; best effort, bounded in time.
pub const RELEASE_LOOP_DEVICES: &str = "for f in /proc/[0-9]*/mounts; do \
     while read -r dev _; do case \"$dev\" in /dev/loop[0-9]*) echo \"$dev\";; esac; done < \"$f\"; \
     done 2>/dev/null | sort -u | while read -r d; do losetup -d \"$d\" 2>/dev/null; done; true";

/// Runs [`RELEASE_LOOP_DEVICES`] in a container by name (if it runs).
pub async fn release_loop_devices(docker: &Docker, name: &str) {
    let run = async {
        let exec = docker
            .create_exec(
                name,
                CreateExecOptions {
                    cmd: Some(vec!["sh", "-c", RELEASE_LOOP_DEVICES]),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .ok()?;
        if let Ok(StartExecResults::Attached { mut output, .. }) =
            docker.start_exec(&exec.id, None).await
        {
            while output.next().await.is_some() {}
        }
        Some(())
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}

/// Removes a container by name or id, with its anonymous volumes, running
/// or not (`docker rm -fv`), after releasing its loop devices. Returns
/// whether it existed.
pub async fn remove_container(docker: &Docker, name: &str) -> bool {
    release_loop_devices(docker, name).await;
    let opts = RemoveContainerOptionsBuilder::default()
        .force(true)
        .v(true)
        .build();
    docker.remove_container(name, Some(opts)).await.is_ok()
}
