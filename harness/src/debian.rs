//! Debian root filesystems without a registry: `debootstrap
//! --variant=minbase` with extra packages, packed as a tarball and cached
//! by the inputs that determine it (suite, mirror, package set), with the
//! tarball's own sha256 kept beside it so images built from it can be
//! tagged by content.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::util::{self, Step};

pub const SUITE: &str = "bookworm";

/// A cached minbase rootfs tarball with `packages`.
#[derive(Debug, Clone)]
pub struct Tarball {
    pub path: PathBuf,
    /// sha256 of the tarball's bytes.
    pub sha256: String,
}

/// Returns the cached tarball for `packages`, running debootstrap (about a
/// minute) only when no tarball for these inputs exists yet.
pub fn minbase(config: &Config, packages: &[&str]) -> Result<Tarball> {
    let mirror = &config.debian_mirror;
    let mut pkgs: Vec<&str> = packages.to_vec();
    pkgs.sort_unstable();
    pkgs.dedup();
    let key = hex::encode(Sha256::digest(
        format!("{SUITE}|minbase|{mirror}|{}", pkgs.join(",")).as_bytes(),
    ));
    let dir = config.cache_dir.join("debootstrap");
    std::fs::create_dir_all(&dir).with_context(|| format!("create {dir:?}"))?;
    let path = dir.join(format!("{}.tar", &key[..16]));
    let sha_path = dir.join(format!("{}.tar.sha256", &key[..16]));
    if let (true, Ok(sha)) = (path.is_file(), std::fs::read_to_string(&sha_path)) {
        return Ok(Tarball {
            path,
            sha256: sha.trim().to_string(),
        });
    }
    let step = Step::start(format!(
        "debootstrap {SUITE} minbase + {} (cached afterwards)",
        pkgs.join(" ")
    ));
    let root = dir.join(format!("{}.root", &key[..16]));
    let _ = std::fs::remove_dir_all(&root);
    let mut cmd = Command::new("debootstrap");
    cmd.arg("--variant=minbase");
    if !pkgs.is_empty() {
        cmd.arg(format!("--include={}", pkgs.join(",")));
    }
    cmd.arg(SUITE).arg(&root).arg(mirror);
    let res = util::run(&mut cmd).and_then(|_| pack(&root, &path));
    let _ = std::fs::remove_dir_all(&root);
    res?;
    let sha256 = util::sha256_file(&path)?;
    std::fs::write(&sha_path, &sha256)?;
    step.done(&format!("{:?}", path));
    Ok(Tarball { path, sha256 })
}

/// Drops apt's caches (not needed at run time) and tars the tree.
fn pack(root: &Path, out: &Path) -> Result<()> {
    for d in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let p = root.join(d);
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    let tmp = out.with_extension("tar.tmp");
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(root)
            .args(["--numeric-owner", "-cf"])
            .arg(&tmp)
            .arg("."),
    )?;
    std::fs::rename(&tmp, out)?;
    Ok(())
}

/// Unpacks a tarball into `dest` (keeps owners and modes; we run as root).
pub fn unpack(t: &Tarball, dest: &Path) -> Result<()> {
    std::fs::create_dir_all(dest)?;
    util::run(
        Command::new("tar")
            .arg("-C")
            .arg(dest)
            .args(["--numeric-owner", "-xf"])
            .arg(&t.path),
    )?;
    Ok(())
}
