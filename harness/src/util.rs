//! Small shared pieces: workspace paths, the cache directory, progress
//! lines, running external tools with their output on failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The workspace root (the harness crate sits in `<root>/harness`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join("target"),
    }
}

/// Where built artifacts are cached between runs (`.harness-cache`,
/// git-ignored; `HARNESS_CACHE` overrides).
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("HARNESS_CACHE") {
        Some(d) => PathBuf::from(d),
        None => workspace_root().join(".harness-cache"),
    }
}

/// Prints `[harness] <what> ...` now and `[harness] <what>: done in N s`
/// when finished, so long steps are never silent.
pub struct Step {
    what: String,
    start: Instant,
}

impl Step {
    pub fn start(what: impl Into<String>) -> Self {
        let what = what.into();
        note(format!("{what} ..."));
        Step {
            what,
            start: Instant::now(),
        }
    }

    pub fn done(self, detail: &str) {
        let sep = if detail.is_empty() { "" } else { ", " };
        note(format!(
            "{}: done in {:.1} s{sep}{detail}",
            self.what,
            self.start.elapsed().as_secs_f64()
        ));
    }
}

/// A one-off progress line.
/// Written to the process's stderr directly, not through `eprintln!`, so
/// libtest's capture does not hide it: progress and "not checked here"
/// lines must show in a plain `cargo test` run.
pub fn note(msg: impl AsRef<str>) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "[harness] {}", msg.as_ref());
}

/// Runs a command; on failure the error carries its stderr tail.
pub fn run(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {shown} (is it installed? see ci/install-deps.sh)"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        bail!("{shown} failed ({}):\n{}", out.status, tail.join("\n"));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// sha256 (hex) of a file's content.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut f = std::fs::File::open(path).with_context(|| format!("open {path:?}"))?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("read {path:?}"))?;
    Ok(hex::encode(h.finalize()))
}

/// An exclusive `flock` on `<cache>/build.lock`, held while images and
/// exports are built so concurrent tests (threads or processes) never
/// debootstrap or pack into the same cache entry at once.
pub struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    pub fn acquire() -> anyhow::Result<Self> {
        use std::os::fd::AsRawFd;
        let dir = cache_dir();
        std::fs::create_dir_all(&dir).map_err(|e| anyhow::anyhow!("create {dir:?}: {e}"))?;
        let path = dir.join("build.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| anyhow::anyhow!("open {path:?}: {e}"))?;
        // SAFETY: flock on a descriptor we own; blocks until granted.
        #[allow(unsafe_code)]
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
        if rc != 0 {
            anyhow::bail!("flock {path:?}: {}", std::io::Error::last_os_error());
        }
        Ok(BuildLock { _file: f })
    }
}
