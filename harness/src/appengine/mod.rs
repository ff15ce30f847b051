//! One appengine container in Docker, booted with a set of pvrexports, and
//! everything a test asks of it.
//!
//! The container runs `sleep infinity` under Docker's init; `pv-appengine`
//! is started by `docker exec`, exactly as upstream's test plan does, and
//! every question to it is a command run the same way
//! ([`Appengine::exec`], [`Appengine::sh`]). The API is synchronous (tests are plain `#[test]`s); it drives bollard and
//! testcontainers on [`crate::docker::runtime`]. [`Appengine`] removes the
//! container (and its volumes) when dropped, also when a test panics.
//!
//! # Layout
//!
//! - [`boot`]: [`BootOptions`] and [`Appengine::boot`]: builds the image and
//!   the exports, names the container, starts it, starts `pv-appengine`,
//!   waits for READY when asked.
//! - [`container`]: the container's lifecycle on testcontainers (capability
//!   set, devices, tmpfs, volumes, copy-in, exec, removal on drop), plus
//!   what testcontainers does not do: removing leftovers of killed runs and
//!   containers by name (`harness down`).
//! - [`ctrl`]: the pv-ctrl client (`pvcontrol` in the container): graph,
//!   containers, daemons, device metadata, container actions.
//! - [`wait`]: polling waits with an error that says what was awaited
//!   (READY, a link injected, a line in a console).
//! - [`logs`]: reading pantavisor.log, consoles and pv-appengine's own
//!   output, and picking a client's last result out of its console.
//! - [`diagnostics`]: what a person needs when something failed.

pub mod boot;
pub mod container;
pub mod ctrl;
pub mod diagnostics;
pub mod logs;
pub mod wait;

pub use boot::{BootOptions, Examples, Unsupported};
pub use container::ExecOutput;
pub use ctrl::ContainerAction;

use std::time::Duration;

use anyhow::Result;

use container::Container;

use crate::docker;
use crate::image::AppengineImage;

/// Label on everything the harness creates.
pub const LABEL: &str = "pv-xconnect-harness";
/// The process that created a container, or [`KEEP`].
pub const LABEL_PID: &str = "pv-xconnect-harness.pid";
/// Owner label of containers made to outlive the harness (`harness up`).
pub const KEEP: &str = "keep";

pub const PVTX_DIR: &str = "/usr/lib/pantavisor/pvtx.d";
pub const STORAGE: &str = "/var/pantavisor/storage";
/// pv-appengine's own stdout/stderr (besides pantavisor.log).
pub const APPENGINE_OUT: &str = "/tmp/pv-appengine.out";

/// How long a command run in the appengine may take by default.
pub const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// A booted (or booting) appengine container.
pub struct Appengine {
    pub name: String,
    pub image: AppengineImage,
    /// Examples installed.
    pub installed: Vec<String>,
    /// Whether the host gave us real DRM devices.
    pub host_drm: bool,
    container: Container,
}

impl Appengine {
    /// Runs a command in the appengine ([`EXEC_TIMEOUT`] limit).
    pub fn exec(&self, cmd: &[&str]) -> Result<ExecOutput> {
        self.exec_with_timeout(cmd, EXEC_TIMEOUT)
    }

    /// Runs a command in the appengine with its own time limit (the
    /// command may go on after it).
    pub fn exec_with_timeout(&self, cmd: &[&str], timeout: Duration) -> Result<ExecOutput> {
        docker::block_on(self.container.exec(cmd, timeout))
    }

    /// `sh -c script`; an error (with its output) unless it exits 0.
    pub fn sh(&self, script: &str) -> Result<String> {
        docker::block_on(self.container.sh(script, EXEC_TIMEOUT))
    }
}
