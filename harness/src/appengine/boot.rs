//! Booting an appengine: image, exports, container, `pv-appengine`.
//!
//! [`Appengine::boot`] builds what is needed under the build lock (static
//! binaries, the image, the chosen examples' pvrexports), removes leftovers
//! of killed runs, starts a container with the exports copied into
//! `pvtx.d` (and, for a real image, our pv-xconnect over the image's), makes
//! the device nodes, starts `pv-appengine` by `docker exec` as upstream's
//! test plan does, and waits for READY only when [`BootOptions::wait_ready`]
//! asks for it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::container::{Cgroupns, Container, ContainerOptions, CopyIn};
use super::{Appengine, APPENGINE_OUT, KEEP, PVTX_DIR};
use crate::config::Config;
use crate::examples::{self, Built};
use crate::image::{self, AppengineImage, ImageKind};
use crate::util::{self, Step};
use crate::{binaries, docker};

/// Commands run while booting (mknod, starting pv-appengine).
const BOOT_EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// Which examples to install.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Examples {
    /// Every example of `examples-containers/` but the hosted-bus ones
    /// ([`examples::HOSTED_BUS`]).
    All,
    /// These (an empty list installs none).
    Only(Vec<String>),
    /// None (the default).
    #[default]
    None,
}

impl Examples {
    /// The named examples.
    pub fn only(names: &[&str]) -> Examples {
        Examples::Only(names.iter().map(|s| s.to_string()).collect())
    }
}

/// What to boot.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Short name used in the container name (`pvx-<group>-<pid>-<n>`).
    pub group: String,
    /// Examples to install.
    pub examples: Examples,
    /// Extra pvrexport files to install (e.g. deliberately broken ones).
    pub extra_exports: Vec<PathBuf>,
    /// Wait for `pantavisor.status` READY before returning.
    pub wait_ready: bool,
    /// Fixed container name, kept after this process (`harness up`).
    pub persistent_name: Option<String>,
    /// Boot appengine-lite with the hosted D-Bus system bus
    /// (`PV_APPENGINE_HOSTED_BUS=1`). A real image hosts it or not as it
    /// was built (`pantavisor-appengine:real-src-hostbus` does).
    pub hosted_bus: bool,
}

impl Appengine {
    /// Builds what is needed, creates the container with the exports,
    /// starts `pv-appengine` and (if asked) waits for READY.
    pub fn boot(opts: BootOptions) -> Result<Appengine> {
        let config = Config::get()?;
        let step = Step::start(format!("booting appengine for '{}'", opts.group));
        let docker = docker::block_on(docker::connect())?;
        docker::block_on(super::container::reap_orphans(&docker));
        // Tests of one binary boot in parallel, and CI may run several
        // harness processes: build images and exports under one lock.
        let build_lock = util::BuildLock::acquire(&config.cache_dir)?;
        let image = docker::block_on(image::ensure(config, &docker))?;
        let chosen = choose(&opts.examples)?;
        let built: Vec<Built> = examples::build_exports(config, &chosen)?;
        drop(build_lock);
        let name = opts
            .persistent_name
            .clone()
            .unwrap_or_else(|| generated_name(&opts.group));
        let owner = match opts.persistent_name {
            Some(_) => KEEP.to_string(),
            None => std::process::id().to_string(),
        };
        let host_drm = Path::new("/dev/dri").is_dir();
        let mut files: Vec<PathBuf> = built.iter().map(|b| b.path.clone()).collect();
        files.extend(opts.extra_exports.iter().cloned());
        let mut copy_in = Vec::new();
        for f in &files {
            copy_in.push(CopyIn {
                source: f.clone(),
                target: format!("{PVTX_DIR}/{}", installed_name(f)?),
                mode: 0o644,
            });
        }
        if image.is_real() {
            // Our daemon in place of the image's from the first boot on.
            let ours = binaries::find(config, "pv-xconnect").context("pv-xconnect not built")?;
            copy_in.push(CopyIn {
                source: ours,
                target: "/usr/bin/pv-xconnect".into(),
                mode: 0o755,
            });
        }
        let container = docker::block_on(Container::start(
            &docker,
            ContainerOptions {
                name: name.clone(),
                image: image.reference.clone(),
                owner,
                privileged: config.privileged,
                cgroupns: cgroupns(&image),
                host_drm,
                keep: config.keep,
                copy_in,
            },
        ))?;
        let ae = Appengine {
            name,
            image,
            installed: built.iter().map(|b| b.name.clone()).collect(),
            host_drm,
            container,
        };
        docker::block_on(ae.container.make_device_nodes(host_drm, BOOT_EXEC_TIMEOUT))?;
        if !host_drm {
            util::note(
                "host has no /dev/dri: using placeholder nodes card0 (226:0) and renderD128 (226:128)",
            );
        }
        if opts.hosted_bus && ae.image.is_real() && !ae.pantavisor_hosts_bus()? {
            return Err(anyhow::Error::new(Unsupported(format!(
                "image {} has no hosted D-Bus system bus (its pantavisor was built without \
                 PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS; pantavisor-appengine:real-src-hostbus \
                 has it, appengine-lite always does)",
                ae.image.reference
            ))));
        }
        let env = if opts.hosted_bus {
            "PV_APPENGINE_HOSTED_BUS=true "
        } else {
            ""
        };
        ae.sh(&format!(
            "{env}pv-appengine >{APPENGINE_OUT} 2>&1 </dev/null &"
        ))
        .context("starting pv-appengine")?;
        if opts.wait_ready {
            let limit = match ae.image.kind {
                ImageKind::Lite => 120,
                ImageKind::Real => 180,
            };
            if let Err(e) = ae.wait_ready(Duration::from_secs(limit)) {
                return Err(e.context(ae.diagnostics()));
            }
        }
        step.done(&format!("container {}", ae.name));
        Ok(ae)
    }

    /// Leaves the container running after this handle is gone.
    pub fn detach(mut self) {
        self.container.detach();
    }

    /// Removes the container and its volumes now (also done on drop).
    pub fn remove(&mut self) {
        self.container.remove();
    }

    /// Removes a container (and its volumes) by name, if it exists.
    pub fn remove_named(name: &str) -> Result<bool> {
        super::container::remove_named(name)
    }
}

/// The appengine cannot run what was asked of it: its image lacks a
/// build option (a real image without the hosted D-Bus bus). Tests that
/// need it report NOT CHECKED with this reason instead of failing on a
/// boot that cannot succeed, and never pass as if they had checked.
#[derive(Debug)]
pub struct Unsupported(pub String);

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unsupported {}

impl Appengine {
    /// Whether the image's `pantavisor` was built with upstream's
    /// `PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS`: only then does its binary hold
    /// dbus_daemon.c's log text (the option compiles that file in).
    fn pantavisor_hosts_bus(&self) -> Result<bool> {
        let out = self
            .sh(
                "if grep -q -F 'hosted dbus system bus disabled via config' \
                 \"$(command -v pantavisor)\"; then echo yes; else echo no; fi",
            )
            .context("looking for the hosted bus in the image's pantavisor")?;
        Ok(out.trim() == "yes")
    }
}

/// The cgroup namespace an appengine of this image gets. Real pv-ctrl
/// tells callers apart by their cgroup: `0::/` is Pantavisor's management
/// side, `/lxc/<name>` a container, anything else gets 500. On cgroup-v1
/// hosts Docker's default is the host's namespace, where a `docker exec`
/// caller shows `0::/docker/<id>` and every pvcontrol call fails; in a
/// private one it shows `0::/`. appengine-lite does not identify callers,
/// so it keeps the engine's default (what its LXC runs were checked with).
fn cgroupns(image: &AppengineImage) -> Cgroupns {
    match image.kind {
        ImageKind::Real => Cgroupns::Private,
        ImageKind::Lite => Cgroupns::EngineDefault,
    }
}

/// `pvx-<group>-<pid>-<n>`: unique within and across test processes.
fn generated_name(group: &str) -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    format!(
        "pvx-{group}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

fn choose(which: &Examples) -> Result<Vec<examples::Example>> {
    let wanted = match which {
        Examples::None => return Ok(Vec::new()),
        Examples::All => {
            let mut all = examples::discover()?;
            all.retain(|e| !examples::HOSTED_BUS.contains(&e.name.as_str()));
            return Ok(all);
        }
        Examples::Only(names) => names,
    };
    let all = examples::discover()?;
    wanted
        .iter()
        .map(|n| match all.iter().find(|e| &e.name == n) {
            Some(e) => Ok(e.clone()),
            None => bail!("example {n} has no manifests in examples-containers/{n}/"),
        })
        .collect()
}

/// The name an export gets in `pvtx.d`: its upstream one, without the
/// cache's content hash (`<name>-<hash16>.pvrexport.tgz` →
/// `<name>.pvrexport.tgz`).
fn installed_name(path: &Path) -> Result<String> {
    let base = path
        .file_name()
        .and_then(|n| n.to_str())
        .with_context(|| format!("export {path:?} has no file name"))?;
    Ok(match base.split_once(".pvrexport") {
        Some((stem, rest)) => match stem.rsplit_once('-') {
            Some((n, h)) if h.len() == 16 => format!("{n}.pvrexport{rest}"),
            _ => base.to_string(),
        },
        None => base.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_exports_are_installed_under_their_upstream_names() {
        let n = |p: &str| installed_name(Path::new(p)).unwrap();
        assert_eq!(
            n("/c/exports/pv-example-unix-server-0123456789abcdef.pvrexport.tgz"),
            "pv-example-unix-server.pvrexport.tgz"
        );
        // Not a cache hash: kept as is.
        assert_eq!(
            n("/t/pvx-corrupt.pvrexport.tgz"),
            "pvx-corrupt.pvrexport.tgz"
        );
        assert_eq!(n("/t/odd-name.tgz"), "odd-name.tgz");
    }

    #[test]
    fn example_selection() {
        assert!(choose(&Examples::None).unwrap().is_empty());
        assert!(choose(&Examples::Only(vec![])).unwrap().is_empty());
        let all = choose(&Examples::All).unwrap();
        assert!(all.iter().any(|e| e.name == "pv-example-unix-server"));
        assert!(
            !all.iter().any(|e| e.name == "pv-example-dbus-host-client"),
            "hosted-bus examples only when asked for"
        );
        let one = choose(&Examples::only(&["pv-example-unix-client"])).unwrap();
        assert_eq!(one.len(), 1);
        let e = choose(&Examples::only(&["pv-example-nope"])).unwrap_err();
        assert!(format!("{e}").contains("pv-example-nope"), "{e}");
    }
}
