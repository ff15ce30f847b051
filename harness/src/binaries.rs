//! The static binaries that go into containers and into the appengine
//! image: one `cargo build` for the daemon, the examples and appengine-lite
//! (`crt-static`, `container` profile), run at most once per process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::util::{self, Step};

/// The only target this machine has; naming it keeps RUSTFLAGS away from
/// build scripts and the host-side build cache.
pub const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Directory holding the static binaries after [`build`].
pub fn dir(config: &Config) -> PathBuf {
    config.target_dir.join(TARGET).join("container")
}

/// Builds (or checks up to date) every static binary, once per process.
/// `HARNESS_SKIP_BUILD=1` uses what is already in [`dir`].
pub fn build(config: &Config) -> Result<PathBuf> {
    static DONE: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let r = DONE.get_or_init(|| build_now(config).map_err(|e| format!("{e:#}")));
    match r {
        Ok(p) => Ok(p.clone()),
        Err(e) => bail!("{e}"),
    }
}

fn build_now(config: &Config) -> Result<PathBuf> {
    if config.skip_build {
        util::note("HARNESS_SKIP_BUILD=1: using the static binaries already built");
        return Ok(dir(config));
    }
    let step = Step::start("building static binaries (pv-xconnect, examples, appengine-lite)");
    let status = Command::new(&config.cargo)
        .current_dir(util::workspace_root())
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .args(["build", "--profile", "container", "--target", TARGET])
        .args([
            "-p",
            "pv-examples",
            "-p",
            "pv-xconnect",
            "-p",
            "appengine-lite",
        ])
        .status()
        .with_context(|| format!("cannot run {:?}", config.cargo))?;
    if !status.success() {
        bail!("static build failed ({status}); see the cargo output above");
    }
    step.done("");
    Ok(dir(config))
}

/// Path of static binary `name`, if it was built.
pub fn find(config: &Config, name: &str) -> Option<PathBuf> {
    let p = dir(config).join(name);
    is_file(&p).then_some(p)
}

fn is_file(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}
