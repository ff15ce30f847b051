//! Small shared pieces: the workspace root, progress lines, running
//! external tools with their output on failure, file hashes, the build
//! lock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// The workspace root (the harness crate sits in `<root>/harness`).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent().map(Path::to_path_buf).unwrap_or(here)
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
/// debootstrap or pack into the same cache entry at once. Released when
/// dropped (the file closes).
pub struct BuildLock {
    _file: std::fs::File,
}

impl BuildLock {
    pub fn acquire(cache_dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(cache_dir).with_context(|| format!("create {cache_dir:?}"))?;
        let path = cache_dir.join("build.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("open {path:?}"))?;
        // Blocks until granted: another test or harness process is building.
        f.lock().with_context(|| format!("flock {path:?}"))?;
        Ok(BuildLock { _file: f })
    }
}
