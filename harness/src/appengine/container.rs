//! The appengine container's lifecycle, on testcontainers.
//!
//! [`Container::start`] creates and starts it from a locally built or
//! loaded image with the capability set that works on these hosts
//! (ENVIRONMENT.md: cap-add ALL, cap-drop SYS_RESOURCE, seccomp and
//! apparmor unconfined, no masked or read-only system paths, every device
//! allowed by the device cgroup; `HARNESS_PRIVILEGED=1` uses `--privileged`),
//! no network, Docker's init, a tmpfs on `/volumes` (as upstream's runner:
//! overlay upper dirs cannot live on Docker's own overlay), anonymous
//! volumes on `pvtx.d` and the storage, and the host's `/dev/dri` when it
//! has one. Files (the pvrexports, our pv-xconnect for a real image) are
//! copied in before the container starts. Dropping a [`Container`] removes
//! it with its volumes (`rm -fv`), also when a test panics.
//!
//! testcontainers does the create/copy/start, exec and removal on drop.
//! What it does not do stays here, on bollard: device nodes (made by an
//! exec after start, since Docker creates no loop devices and a host
//! without DRM needs placeholders), the host-config fields it has no
//! builder for (set through its host-config modifier: masked and read-only
//! paths, device-cgroup rules, devices, init, network mode, a tmpfs with
//! `exec`, anonymous volume mounts), removing leftovers of runs killed
//! before their handles dropped ([`reap_orphans`]: testcontainers only
//! cleans up on drop and on signals with its optional watchdog), and
//! removing a container by name for `harness down` ([`remove_named`]).
//! It never pulls: [`Container::start`] refuses an image the engine does
//! not hold before testcontainers could try, and no reaper container is
//! involved (testcontainers-rs has none).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{DeviceMapping, HostConfig, Mount, MountType};
use bollard::query_parameters::ListContainersOptionsBuilder;
use bollard::Docker;
use testcontainers::core::client::ClientError;
use testcontainers::core::{CgroupnsMode, ExecCommand};
use testcontainers::{
    ContainerAsync, CopyDataSource, CopyTargetOptions, GenericImage, ImageExt, TestcontainersError,
};

use super::{KEEP, LABEL, LABEL_PID, PVTX_DIR, STORAGE};
use crate::docker;
use crate::util;

/// How long creating, copying in and starting may take.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

/// The container's cgroup namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Cgroupns {
    /// Whatever the engine defaults to (host on cgroup v1, private on v2).
    #[default]
    EngineDefault,
    /// The host's: a `docker exec` caller shows `0::/docker/<id>`.
    Host,
    /// Its own: a `docker exec` caller shows `0::/`, which real pv-ctrl
    /// takes for Pantavisor itself (PANTAVISOR.md §3).
    Private,
}

/// A file copied into the container before it starts.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub source: PathBuf,
    /// Absolute path in the container.
    pub target: String,
    pub mode: u32,
}

/// Everything that decides how the container is created.
#[derive(Debug, Clone)]
pub struct ContainerOptions {
    pub name: String,
    /// A local image reference (`name:tag`).
    pub image: String,
    /// Value of [`LABEL_PID`]: the creating pid, or [`KEEP`].
    pub owner: String,
    /// `--privileged` instead of the capability set.
    pub privileged: bool,
    pub cgroupns: Cgroupns,
    /// Pass the host's `/dev/dri` through.
    pub host_drm: bool,
    /// Leave the container behind when dropped (`HARNESS_KEEP=1`).
    pub keep: bool,
    pub copy_in: Vec<CopyIn>,
}

/// Output of a command run in the container.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// A started container; removed with its volumes when dropped.
pub struct Container {
    name: String,
    inner: Option<ContainerAsync<GenericImage>>,
    keep: bool,
}

impl Container {
    /// Creates the container, copies the files in, starts it.
    pub async fn start(docker: &Docker, opts: ContainerOptions) -> Result<Container> {
        if !docker::image_exists(docker, &opts.image).await {
            bail!(
                "image {} is not in the engine; the harness never pulls (no registry is \
                 reachable): build or `docker load` it first",
                opts.image
            );
        }
        let (repo, tag) = split_reference(&opts.image);
        let privileged = opts.privileged;
        let host_drm = opts.host_drm;
        let mut req = GenericImage::new(repo, tag)
            .with_entrypoint("/bin/sh")
            .with_cmd(["-c", "exec sleep infinity"])
            .with_container_name(&opts.name)
            .with_label(LABEL, "1")
            .with_label(LABEL_PID, &opts.owner)
            .with_startup_timeout(STARTUP_TIMEOUT)
            .with_host_config_modifier(move |h| host_config(h, privileged, host_drm));
        req = if privileged {
            req.with_privileged(true)
        } else {
            req.with_cap_add("ALL")
                .with_cap_drop("SYS_RESOURCE")
                .with_security_opt("seccomp=unconfined")
                .with_security_opt("apparmor=unconfined")
        };
        req = match opts.cgroupns {
            Cgroupns::EngineDefault => req,
            Cgroupns::Host => req.with_cgroupns_mode(CgroupnsMode::Host),
            Cgroupns::Private => req.with_cgroupns_mode(CgroupnsMode::Private),
        };
        for f in &opts.copy_in {
            req = req.with_copy_to(
                CopyTargetOptions::new(f.target.clone()).with_mode(f.mode),
                CopyDataSource::File(f.source.clone()),
            );
        }
        let inner = match testcontainers::runners::AsyncRunner::start(req).await {
            Ok(c) => c,
            Err(e) => {
                // Created but then failed (copy-in, start): testcontainers
                // hands back no handle, so remove it by name, unless nothing
                // was created (the name may be someone else's).
                if !matches!(
                    e,
                    TestcontainersError::Client(
                        ClientError::CreateContainer(_) | ClientError::PullImage { .. }
                    )
                ) {
                    docker::remove_container(docker, &opts.name).await;
                }
                return Err(e).with_context(|| format!("create and start container {}", opts.name));
            }
        };
        Ok(Container {
            name: opts.name,
            inner: Some(inner),
            keep: opts.keep,
        })
    }

    /// Runs a command; gives up after `timeout` (the command may go on).
    pub async fn exec(&self, cmd: &[&str], timeout: Duration) -> Result<ExecOutput> {
        let c = self
            .inner
            .as_ref()
            .with_context(|| format!("container {} was already removed", self.name))?;
        let run = async {
            let mut r = c
                .exec(ExecCommand::new(cmd.iter().copied()))
                .await
                .with_context(|| format!("docker exec {cmd:?}"))?;
            let stdout = r.stdout_to_vec().await?;
            let stderr = r.stderr_to_vec().await?;
            // The streams end a moment before the engine records the code.
            let code = loop {
                if let Some(code) = r.exit_code().await? {
                    break code;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            anyhow::Ok(ExecOutput {
                code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| anyhow!("{cmd:?} in {} timed out after {timeout:?}", self.name))?
    }

    /// `sh -c script`; an error (with its output) unless it exits 0.
    pub async fn sh(&self, script: &str, timeout: Duration) -> Result<String> {
        let out = self.exec(&["sh", "-c", script], timeout).await?;
        if out.code != 0 {
            bail!(
                "`{script}` exited {}: {}{}",
                out.code,
                out.stderr.trim(),
                out.stdout.trim()
            );
        }
        Ok(out.stdout)
    }

    /// Loop devices for squashfs mounts (Docker creates none) and the DRM
    /// nodes: placeholders `card0` (226:0) and `renderD128` (226:128) when
    /// the host has no DRM, so injection is still checked.
    pub async fn make_device_nodes(&self, host_drm: bool, timeout: Duration) -> Result<()> {
        let mut script = String::from(
            "set -e; [ -e /dev/loop-control ] || mknod /dev/loop-control c 10 237; \
             for i in $(seq 0 31); do [ -e /dev/loop$i ] || mknod /dev/loop$i b 7 $i; done; \
             mkdir -p /dev/dri; \
             [ -e /dev/dri/renderD128 ] || mknod -m 666 /dev/dri/renderD128 c 226 128; ",
        );
        if !host_drm {
            script.push_str("[ -e /dev/dri/card0 ] || mknod -m 666 /dev/dri/card0 c 226 0; ");
        }
        self.sh(&script, timeout)
            .await
            .context("creating device nodes")?;
        Ok(())
    }

    /// Leaves the container running after this handle is gone.
    pub fn detach(&mut self) {
        if let Some(c) = self.inner.take() {
            // testcontainers removes a container when its handle drops;
            // forgetting the handle (a few hundred bytes) keeps it.
            std::mem::forget(c);
        }
    }

    /// Removes the container and its volumes now (unless `HARNESS_KEEP=1`).
    pub fn remove(&mut self) {
        if self.inner.is_none() {
            return;
        }
        if self.keep {
            util::note(format!(
                "HARNESS_KEEP=1: leaving {0} running (docker rm -fv {0})",
                self.name
            ));
            self.detach();
            return;
        }
        // Before the kill: see docker::RELEASE_LOOP_DEVICES. (Never
        // dropped inside the runtime today; if it were, skip, not panic.)
        if tokio::runtime::Handle::try_current().is_err() {
            let _ = docker::block_on(self.exec(
                &["sh", "-c", docker::RELEASE_LOOP_DEVICES],
                Duration::from_secs(10),
            ));
        }
        // testcontainers' drop blocks on the removal in the current runtime.
        let _rt = docker::runtime().enter();
        drop(self.inner.take());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The host-config fields testcontainers has no builder for.
fn host_config(h: &mut HostConfig, privileged: bool, host_drm: bool) {
    h.init = Some(true);
    h.network_mode = Some("none".into());
    h.publish_all_ports = Some(false);
    // `--tmpfs /volumes:exec`: a tmpfs mount of the mounts API cannot drop
    // `noexec` on API 1.41.
    h.tmpfs = Some(HashMap::from([(
        "/volumes".to_string(),
        "exec".to_string(),
    )]));
    // Anonymous volumes: `rm -v` (what testcontainers runs) removes them.
    h.mounts = Some(
        [PVTX_DIR, STORAGE]
            .iter()
            .map(|target| Mount {
                target: Some(target.to_string()),
                typ: Some(MountType::VOLUME),
                ..Default::default()
            })
            .collect(),
    );
    if !privileged {
        // The CLI's `--security-opt systempaths=unconfined`.
        h.masked_paths = Some(Vec::new());
        h.readonly_paths = Some(Vec::new());
        h.device_cgroup_rules = Some(vec!["a *:* rwm".into()]);
    }
    if host_drm {
        h.devices = Some(vec![DeviceMapping {
            path_on_host: Some("/dev/dri".into()),
            path_in_container: Some("/dev/dri".into()),
            cgroup_permissions: Some("rwm".into()),
        }]);
    }
}

/// `repo[:tag]` → (repo, tag); a registry port is not a tag.
fn split_reference(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (reference, "latest"),
    }
}

/// Removes harness containers whose creating process is gone (a run killed
/// before its handles dropped). Others' are left alone.
pub async fn reap_orphans(docker: &Docker) {
    let opts = ListContainersOptionsBuilder::default()
        .all(true)
        .filters(&HashMap::from([("label", vec![LABEL])]))
        .build();
    let Ok(list) = docker.list_containers(Some(opts)).await else {
        return;
    };
    for c in list {
        let owner = c.labels.as_ref().and_then(|l| l.get(LABEL_PID)).cloned();
        if owner.as_deref() == Some(KEEP) {
            continue;
        }
        let pid: Option<u32> = owner.and_then(|p| p.parse().ok());
        if pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists()) {
            continue;
        }
        for n in c.names.iter().flatten() {
            let n = n.trim_start_matches('/');
            util::note(format!("removing leftover container {n}"));
            docker::remove_container(docker, n).await;
        }
    }
}

/// Removes a container (and its volumes) by name, if it exists.
pub fn remove_named(name: &str) -> Result<bool> {
    docker::block_on(async {
        let docker = docker::connect().await?;
        Ok(docker::remove_container(&docker, name).await)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag_only() {
        assert_eq!(
            split_reference("pv-appengine-lite:0123"),
            ("pv-appengine-lite", "0123")
        );
        assert_eq!(
            split_reference("pantavisor-appengine"),
            ("pantavisor-appengine", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/pantavisor-appengine"),
            ("localhost:5000/pantavisor-appengine", "latest")
        );
        assert_eq!(
            split_reference("localhost:5000/pantavisor-appengine:1.0"),
            ("localhost:5000/pantavisor-appengine", "1.0")
        );
    }

    #[test]
    fn capability_set_unless_privileged() {
        let mut h = HostConfig::default();
        host_config(&mut h, false, false);
        assert_eq!(h.network_mode.as_deref(), Some("none"));
        assert_eq!(h.init, Some(true));
        assert_eq!(h.masked_paths, Some(vec![]));
        assert_eq!(h.readonly_paths, Some(vec![]));
        assert_eq!(h.device_cgroup_rules, Some(vec!["a *:* rwm".to_string()]));
        assert_eq!(
            h.tmpfs
                .as_ref()
                .and_then(|t| t.get("/volumes"))
                .map(String::as_str),
            Some("exec")
        );
        let targets: Vec<_> = h
            .mounts
            .iter()
            .flatten()
            .map(|m| (m.target.as_deref(), m.source.as_deref(), m.typ))
            .collect();
        assert_eq!(
            targets,
            vec![
                (Some(PVTX_DIR), None, Some(MountType::VOLUME)),
                (Some(STORAGE), None, Some(MountType::VOLUME)),
            ]
        );
        assert_eq!(h.devices, None);
        let mut p = HostConfig::default();
        host_config(&mut p, true, true);
        assert_eq!(p.masked_paths, None);
        assert_eq!(p.device_cgroup_rules, None);
        assert_eq!(p.devices.map(|d| d.len()), Some(1));
    }
}
