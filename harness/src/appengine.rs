//! One appengine container in Docker, booted with a set of pvrexports, and
//! everything a test asks of it (pv-ctrl through `pvcontrol`, logs, waits).
//!
//! The container runs `sleep infinity` under Docker's init; `pv-appengine`
//! is started by `docker exec`, exactly as upstream's test plan does. It gets
//! the capability set that works on these hosts (ENVIRONMENT.md: cap-add
//! ALL, cap-drop SYS_RESOURCE, seccomp/apparmor/systempaths unconfined, all
//! device nodes allowed; `HARNESS_PRIVILEGED=1` uses `--privileged`), no
//! network, a tmpfs on `/volumes` (as upstream's runner; overlay upper dirs
//! cannot live on Docker's own overlay), named volumes for `pvtx.d` and the
//! storage, loop device nodes, and `/dev/dri`: the host's when it has DRM,
//! else placeholder nodes `card0` (226:0) and `renderD128` (226:128) so
//! injection is still checked.
//!
//! [`Appengine`] removes the container and its volumes when dropped, also
//! when a test panics. The API is synchronous (tests are plain `#[test]`s);
//! it drives bollard on one process-wide runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerCreateBody, DeviceMapping, HostConfig, VolumeCreateRequest};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveVolumeOptionsBuilder, UploadToContainerOptionsBuilder,
};
use bollard::Docker;
use futures_util::StreamExt;
use serde_json::Value;

use crate::examples::{self, Built};
use crate::image::{self, AppengineImage};
use crate::util::{self, Step};
use crate::{binaries, docker};

/// Label on everything the harness creates (containers, volumes).
pub const LABEL: &str = "pv-xconnect-harness";
const LABEL_PID: &str = "pv-xconnect-harness.pid";

pub const PVTX_DIR: &str = "/usr/lib/pantavisor/pvtx.d";
pub const STORAGE: &str = "/var/pantavisor/storage";
/// pv-appengine's own stdout/stderr (besides pantavisor.log).
pub const APPENGINE_OUT: &str = "/tmp/pv-appengine.out";

/// The process-wide runtime the synchronous API drives.
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

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Output of a command run in the appengine.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    pub code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// What to boot.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Short name used in the container name (`pvx-<group>-<pid>-<n>`).
    pub group: String,
    /// Examples to install; empty = every example.
    pub examples: Vec<String>,
    /// Extra pvrexport files to install (e.g. deliberately broken ones).
    pub extra_exports: Vec<PathBuf>,
    /// Wait for `pantavisor.status` READY (off for bad-input tests).
    pub wait_ready: bool,
    /// Fixed container name, kept after this process (`harness up`).
    pub persistent_name: Option<String>,
}

/// A booted (or booting) appengine container.
pub struct Appengine {
    docker: Docker,
    pub name: String,
    pub image: AppengineImage,
    volumes: Vec<String>,
    /// Examples installed.
    pub installed: Vec<String>,
    /// Whether the host gave us real DRM devices.
    pub host_drm: bool,
    /// Creating pid, or [`KEEP`] for a container outliving this process.
    owner: String,
}

/// Owner label of containers made to outlive the harness (`harness up`).
pub const KEEP: &str = "keep";

impl Appengine {
    /// Builds what is needed, creates the container, installs the exports,
    /// starts `pv-appengine` and (optionally) waits for READY.
    pub fn boot(opts: BootOptions) -> Result<Appengine> {
        let step = Step::start(format!("booting appengine for '{}'", opts.group));
        let docker = block_on(docker::connect())?;
        block_on(reap_orphans(&docker));
        // Tests of one binary boot in parallel, and CI may run several
        // harness processes: build images and exports under one lock.
        let build_lock = util::BuildLock::acquire()?;
        let image = block_on(image::ensure(&docker))?;
        let all = examples::discover()?;
        let chosen: Vec<_> = if opts.examples.is_empty() {
            all
        } else {
            let mut v = Vec::new();
            for n in &opts.examples {
                match all.iter().find(|e| &e.name == n) {
                    Some(e) => v.push(e.clone()),
                    None => bail!("example {n} has no manifests in examples-containers/{n}/"),
                }
            }
            v
        };
        let built: Vec<Built> = examples::build_exports(&chosen)?;
        drop(build_lock);
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let name = opts.persistent_name.clone().unwrap_or_else(|| {
            format!(
                "pvx-{}-{}-{}",
                opts.group,
                std::process::id(),
                SEQ.fetch_add(1, Ordering::SeqCst)
            )
        });
        let owner = match opts.persistent_name {
            Some(_) => KEEP.to_string(),
            None => std::process::id().to_string(),
        };
        let host_drm = Path::new("/dev/dri").is_dir();
        let mut ae = Appengine {
            docker,
            name,
            image,
            volumes: Vec::new(),
            installed: built.iter().map(|b| b.name.clone()).collect(),
            host_drm,
            owner,
        };
        let mut files: Vec<PathBuf> = built.iter().map(|b| b.path.clone()).collect();
        files.extend(opts.extra_exports.iter().cloned());
        block_on(ae.create_and_start(&files))?;
        ae.prepare_devices()?;
        ae.sh(&format!("pv-appengine >{APPENGINE_OUT} 2>&1 </dev/null &"))
            .context("starting pv-appengine")?;
        if opts.wait_ready || ae.image.real {
            let limit = if ae.image.real { 180 } else { 120 };
            if let Err(e) = ae.wait_ready(Duration::from_secs(limit)) {
                return Err(e.context(ae.diagnostics()));
            }
        }
        if ae.image.real {
            // The real image's own daemon is replaced by ours.
            ae.install_our_daemon()?;
        }
        step.done(&format!("container {}", ae.name));
        Ok(ae)
    }

    async fn create_and_start(&mut self, exports: &[PathBuf]) -> Result<()> {
        let labels: HashMap<String, String> = [
            (LABEL.to_string(), "1".to_string()),
            (LABEL_PID.to_string(), self.owner.clone()),
        ]
        .into();
        for suffix in ["pvtx", "storage"] {
            let v = format!("{}-{suffix}", self.name);
            self.docker
                .create_volume(VolumeCreateRequest {
                    name: Some(v.clone()),
                    labels: Some(labels.clone()),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("create volume {v}"))?;
            self.volumes.push(v);
        }
        let privileged = std::env::var("HARNESS_PRIVILEGED").as_deref() == Ok("1");
        let mut host = HostConfig {
            init: Some(true),
            network_mode: Some("none".into()),
            binds: Some(vec![
                format!("{}-pvtx:{PVTX_DIR}", self.name),
                format!("{}-storage:{STORAGE}", self.name),
            ]),
            tmpfs: Some([("/volumes".to_string(), "exec".to_string())].into()),
            ..Default::default()
        };
        if privileged {
            host.privileged = Some(true);
        } else {
            host.cap_add = Some(vec!["ALL".into()]);
            host.cap_drop = Some(vec!["SYS_RESOURCE".into()]);
            host.security_opt = Some(vec![
                "seccomp=unconfined".into(),
                "apparmor=unconfined".into(),
            ]);
            // The CLI's `--security-opt systempaths=unconfined`.
            host.masked_paths = Some(Vec::new());
            host.readonly_paths = Some(Vec::new());
            host.device_cgroup_rules = Some(vec!["a *:* rwm".into()]);
        }
        if self.host_drm {
            host.devices = Some(vec![DeviceMapping {
                path_on_host: Some("/dev/dri".into()),
                path_in_container: Some("/dev/dri".into()),
                cgroup_permissions: Some("rwm".into()),
            }]);
        }
        let body = ContainerCreateBody {
            image: Some(self.image.reference.clone()),
            entrypoint: Some(vec!["/bin/sh".into()]),
            cmd: Some(vec!["-c".into(), "exec sleep infinity".into()]),
            env: Some(vec!["PV_APPENGINE_LOGGER_STOP_MS=1000".into()]), // until the stops of issue 14 item 1 outlast pvcurl's 5 s
            labels: Some(labels),
            host_config: Some(host),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::default()
            .name(&self.name)
            .build();
        self.docker
            .create_container(Some(opts), body)
            .await
            .with_context(|| format!("create container {}", self.name))?;
        self.docker
            .start_container(&self.name, None)
            .await
            .with_context(|| format!("start container {}", self.name))?;
        let mut tar = tar::Builder::new(Vec::new());
        for f in exports {
            let data = std::fs::read(f).with_context(|| format!("read {f:?}"))?;
            let base = f
                .file_name()
                .and_then(|n| n.to_str())
                .context("export without file name")?;
            // `<name>-<hash>.pvrexport.tgz` → `<name>.pvrexport.tgz`
            let short = match base.split_once(".pvrexport") {
                Some((stem, rest)) => match stem.rsplit_once('-') {
                    Some((n, h)) if h.len() == 16 => format!("{n}.pvrexport{rest}"),
                    _ => base.to_string(),
                },
                None => base.to_string(),
            };
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            tar.append_data(&mut h, short, &data[..])?;
        }
        let tar = tar.into_inner()?;
        self.docker
            .upload_to_container(
                &self.name,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path(PVTX_DIR)
                        .build(),
                ),
                bollard::body_full(tar.into()),
            )
            .await
            .context("copy pvrexports into pvtx.d")?;
        Ok(())
    }

    /// Loop devices for squashfs mounts (Docker creates none) and DRM
    /// placeholders when the host has no DRM.
    fn prepare_devices(&self) -> Result<()> {
        let mut script = String::from(
            "set -e; [ -e /dev/loop-control ] || mknod /dev/loop-control c 10 237; \
             for i in $(seq 0 31); do [ -e /dev/loop$i ] || mknod /dev/loop$i b 7 $i; done; ",
        );
        if !self.host_drm {
            script.push_str(
                "mkdir -p /dev/dri; [ -e /dev/dri/card0 ] || mknod -m 666 /dev/dri/card0 c 226 0; \
                 [ -e /dev/dri/renderD128 ] || mknod -m 666 /dev/dri/renderD128 c 226 128; ",
            );
        } else {
            script.push_str(
                "mkdir -p /dev/dri; [ -e /dev/dri/renderD128 ] || mknod -m 666 /dev/dri/renderD128 c 226 128; ",
            );
        }
        self.sh(&script).context("creating device nodes")?;
        if !self.host_drm {
            util::note("host has no /dev/dri: using placeholder nodes card0 (226:0) and renderD128 (226:128)");
        }
        Ok(())
    }

    /// With a real image: stop its pv-xconnect, put ours in, start it.
    fn install_our_daemon(&self) -> Result<()> {
        let ours = binaries::find("pv-xconnect").context("pv-xconnect not built")?;
        self.pvcontrol(&["daemons", "stop", "pv-xconnect"])?;
        let data = std::fs::read(&ours)?;
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o755);
        tar.append_data(&mut h, "pv-xconnect", &data[..])?;
        let tar = tar.into_inner()?;
        block_on(
            self.docker.upload_to_container(
                &self.name,
                Some(
                    UploadToContainerOptionsBuilder::default()
                        .path("/usr/bin")
                        .build(),
                ),
                bollard::body_full(tar.into()),
            ),
        )
        .context("copy our pv-xconnect into the image")?;
        self.pvcontrol(&["daemons", "start", "pv-xconnect"])?;
        Ok(())
    }

    /// Runs a command in the appengine (30 s limit).
    pub fn exec(&self, cmd: &[&str]) -> Result<ExecOutput> {
        block_on(async {
            tokio::time::timeout(Duration::from_secs(30), self.exec_async(cmd))
                .await
                .map_err(|_| anyhow!("{cmd:?} in {} timed out after 30 s", self.name))?
        })
    }

    async fn exec_async(&self, cmd: &[&str]) -> Result<ExecOutput> {
        let e = self
            .docker
            .create_exec(
                &self.name,
                CreateExecOptions {
                    cmd: Some(cmd.to_vec()),
                    attach_stdout: Some(true),
                    attach_stderr: Some(true),
                    ..Default::default()
                },
            )
            .await
            .with_context(|| format!("docker exec {cmd:?}"))?;
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if let StartExecResults::Attached { mut output, .. } =
            self.docker.start_exec(&e.id, None).await?
        {
            while let Some(item) = output.next().await {
                match item? {
                    bollard::container::LogOutput::StdOut { message } => {
                        stdout.extend_from_slice(&message)
                    }
                    bollard::container::LogOutput::StdErr { message } => {
                        stderr.extend_from_slice(&message)
                    }
                    _ => {}
                }
            }
        }
        let code = self
            .docker
            .inspect_exec(&e.id)
            .await?
            .exit_code
            .unwrap_or(-1);
        Ok(ExecOutput {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        })
    }

    /// `sh -c script`; an error (with stderr) unless it exits 0.
    pub fn sh(&self, script: &str) -> Result<String> {
        let out = self.exec(&["sh", "-c", script])?;
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

    /// `pvcontrol <args>`; its stdout (the response body).
    pub fn pvcontrol(&self, args: &[&str]) -> Result<String> {
        let mut cmd = vec!["pvcontrol"];
        cmd.extend_from_slice(args);
        let out = self.exec(&cmd)?;
        if out.code != 0 {
            bail!(
                "pvcontrol {} exited {}: {}{}",
                args.join(" "),
                out.code,
                out.stderr.trim(),
                out.stdout.trim()
            );
        }
        Ok(out.stdout)
    }

    /// `pvcontrol <args>` parsed as JSON.
    pub fn pvcontrol_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.pvcontrol(args)?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("pvcontrol {} printed no JSON: {out:?}", args.join(" ")))
    }

    /// `GET /devmeta`.
    pub fn devmeta(&self) -> Result<Value> {
        self.pvcontrol_json(&["devmeta", "ls"])
    }

    /// `GET /containers`.
    pub fn containers(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["containers", "ls"])?)
    }

    /// `GET /xconnect-graph`.
    pub fn graph(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["graph", "ls"])?)
    }

    /// `GET /daemons`.
    pub fn daemons(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["daemons", "ls"])?)
    }

    /// Status of one container from `GET /containers`.
    pub fn container_status(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .containers()?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["status"].as_str().map(str::to_string)))
    }

    /// Polls `check` every 300 ms until it yields `Some` or `timeout`; the
    /// error says what was awaited and the last failure seen.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        loop {
            match check(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what} (last error: {last})");
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Waits for `pantavisor.status` = READY.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let step = Step::start(format!("waiting for {} to reach READY", self.name));
        self.wait_for("pantavisor.status READY", timeout, |ae| {
            let m = ae.devmeta()?;
            Ok((m["pantavisor.status"] == "READY").then_some(()))
        })?;
        step.done("");
        Ok(())
    }

    /// Waits until `consumer`'s link `name` has live pids and its target
    /// exists in the consumer's mount namespace; returns the graph entry.
    pub fn wait_link(&self, consumer: &str, name: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(
            &format!("link {consumer} -> {name} injected"),
            timeout,
            |ae| {
                let graph = ae.graph()?;
                let Some(link) = graph
                    .iter()
                    .find(|l| l["consumer"] == consumer && l["name"] == name)
                else {
                    bail!("no link {consumer}/{name} in the graph");
                };
                let pid = link["consumer_pid"].as_i64().unwrap_or(-1);
                if pid <= 0 || link["provider_pid"].as_i64().unwrap_or(-1) < 0 {
                    bail!("pids not live yet: {link}");
                }
                let target = ae.link_target(link);
                if ae.exists_in(pid, &target)? {
                    Ok(Some(link.clone()))
                } else {
                    bail!("{target} not present in {consumer} (pid {pid}) yet")
                }
            },
        )
    }

    /// Where a link lands in the consumer: its `target`, or pv-xconnect's
    /// default when null (`/run/pv/services/<name>.sock`; drm: the socket).
    pub fn link_target(&self, link: &Value) -> String {
        match link["target"].as_str() {
            Some(t) => t.to_string(),
            None if link["type"] == "drm" => link["socket"].as_str().unwrap_or("").to_string(),
            None => format!(
                "/run/pv/services/{}.sock",
                link["name"].as_str().unwrap_or("")
            ),
        }
    }

    /// Whether `path` exists in the mount namespace of `pid`.
    pub fn exists_in(&self, pid: i64, path: &str) -> Result<bool> {
        let out = self.exec(&["test", "-e", &format!("/proc/{pid}/root{path}")])?;
        Ok(out.code == 0)
    }

    /// A container's console log (empty if it has none yet).
    pub fn console_log(&self, container: &str) -> String {
        self.exec(&[
            "cat",
            &format!("{STORAGE}/logs/0/{container}/lxc/console.log"),
        ])
        .map(|o| o.stdout)
        .unwrap_or_default()
    }

    /// Waits until `container`'s console log contains `needle`.
    pub fn wait_console(&self, container: &str, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(
            &format!("{needle:?} in {container}'s console.log"),
            timeout,
            |ae| {
                let log = ae.console_log(container);
                Ok(log.contains(needle).then_some(log))
            },
        )
    }

    /// pantavisor.log.
    pub fn pantavisor_log(&self) -> String {
        self.exec(&[
            "cat",
            &format!("{STORAGE}/logs/0/pantavisor/pantavisor.log"),
        ])
        .map(|o| o.stdout)
        .unwrap_or_default()
    }

    /// What a person needs when something failed: pantavisor.log tail,
    /// console tails, the graph, `pv-xconnect status`.
    pub fn diagnostics(&self) -> String {
        let tail = |s: &str, n: usize| -> String {
            let lines: Vec<&str> = s.lines().collect();
            lines[lines.len().saturating_sub(n)..].join("\n")
        };
        let mut out = format!("==== diagnostics of appengine {} ====\n", self.name);
        out += &format!(
            "---- pantavisor.log (tail) ----\n{}\n",
            tail(&self.pantavisor_log(), 60)
        );
        let own = self
            .exec(&["cat", APPENGINE_OUT])
            .map(|o| o.stdout)
            .unwrap_or_default();
        out += &format!("---- {APPENGINE_OUT} (tail) ----\n{}\n", tail(&own, 20));
        for c in &self.installed {
            out += &format!(
                "---- {c} console.log (tail) ----\n{}\n",
                tail(&self.console_log(c), 15)
            );
        }
        for (title, args) in [
            ("pvcontrol ls", &["ls"][..]),
            ("pvcontrol graph ls", &["graph", "ls"][..]),
            ("pvcontrol daemons ls", &["daemons", "ls"][..]),
        ] {
            let r = self
                .pvcontrol(args)
                .unwrap_or_else(|e| format!("(failed: {e:#})"));
            out += &format!("---- {title} ----\n{}\n", r.trim());
        }
        let st = self
            .exec(&["pv-xconnect", "status"])
            .map(|o| format!("{}{}", o.stdout, o.stderr))
            .unwrap_or_else(|e| format!("(failed: {e:#})"));
        out += &format!("---- pv-xconnect status ----\n{}\n", st.trim());
        out
    }

    /// Leaves the container running after this handle is gone.
    pub fn detach(mut self) {
        self.name.clear();
    }

    /// Removes a container (and its volumes) by name, if it exists.
    pub fn remove_named(name: &str) -> Result<bool> {
        block_on(async {
            let docker = docker::connect().await?;
            let existed = docker
                .remove_container(
                    name,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await
                .is_ok();
            for suffix in ["pvtx", "storage"] {
                let _ = docker
                    .remove_volume(
                        &format!("{name}-{suffix}"),
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
            Ok(existed)
        })
    }

    /// Removes the container and its volumes now.
    pub fn remove(&mut self) {
        let name = std::mem::take(&mut self.name);
        if name.is_empty() {
            return;
        }
        let vols = std::mem::take(&mut self.volumes);
        let docker = self.docker.clone();
        let keep = std::env::var("HARNESS_KEEP").as_deref() == Ok("1");
        if keep {
            util::note(format!(
                "HARNESS_KEEP=1: leaving {name} running (docker rm -fv {name})"
            ));
            return;
        }
        let fut = async move {
            let _ = docker
                .remove_container(
                    &name,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await;
            for v in vols {
                let _ = docker
                    .remove_volume(
                        &v,
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
        };
        // Drop may run inside the runtime (never in our sync API) or outside.
        if tokio::runtime::Handle::try_current().is_ok() {
            std::thread::spawn(move || block_on(fut))
                .join()
                .unwrap_or(());
        } else {
            block_on(fut);
        }
    }
}

impl Drop for Appengine {
    fn drop(&mut self) {
        self.remove();
    }
}

fn as_array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("expected a JSON array, got {other}"),
    }
}

/// Removes harness containers and volumes whose creating process is gone
/// (a run killed before its guards ran). Others' are left alone.
async fn reap_orphans(docker: &Docker) {
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
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if alive {
            continue;
        }
        for n in c.names.iter().flatten() {
            let n = n.trim_start_matches('/');
            util::note(format!("removing leftover container {n}"));
            let _ = docker
                .remove_container(
                    n,
                    Some(
                        RemoveContainerOptionsBuilder::default()
                            .force(true)
                            .v(true)
                            .build(),
                    ),
                )
                .await;
            for suffix in ["pvtx", "storage"] {
                let _ = docker
                    .remove_volume(
                        &format!("{n}-{suffix}"),
                        Some(RemoveVolumeOptionsBuilder::default().force(true).build()),
                    )
                    .await;
            }
        }
    }
}
