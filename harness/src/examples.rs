//! The example containers: discovered from `examples-containers/<name>/`
//! (`args.json`, `services.json`, as upstream keeps them), assembled into a
//! root filesystem, squashed and packaged as `<name>.pvrexport.tgz`.
//!
//! Rootfs: the example's static binary at `/usr/bin/<name>`, busybox-static
//! with its applets in `/bin`, `/etc/passwd`/`group` (root, nobody), empty
//! `/run /tmp /dev /proc /sys`. Per-example extras, all optional:
//!
//! - `examples-containers/<name>/rootfs/`: copied over the tree as is;
//! - `examples-containers/<name>/harness.json`:
//!   `{"binary": "...", "cmd": [...], "env": [...], "binaries": [...],
//!   "host_files": [...], "debian_packages": [...]}` — the workspace binary
//!   to run (default: the example's name), the container's command (default
//!   `["/usr/bin/<binary>"]`), extra environment, more workspace binaries,
//!   host files copied with the shared libraries they need, or a Debian
//!   minbase rootfs with these packages as the base instead of an empty
//!   tree (e.g. `dbus` for a dbus-daemon).
//!
//! An example whose binary was not built is an error, never a skip.
//! Exports are cached under `.harness-cache/exports/` by a hash of all
//! their inputs.

use std::collections::BTreeSet;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::pvrexport::{ContainerSpec, DockerConfig, Pvrexport};
use crate::util::{self, Step};
use crate::{binaries, debian};

/// Upstream's example names, in boot-group order (providers first).
pub const KNOWN: &[&str] = &[
    "pv-example-unix-server",
    "pv-example-unix-client",
    "pv-example-rest-server",
    "pv-example-rest-client",
    "pv-example-dbus-server",
    "pv-example-dbus-client",
    "pv-example-dbus-client-nobody",
    "pv-example-dbus-client-attacker",
    "pv-example-dbus-host-server",
    "pv-example-dbus-host-client",
    "pv-example-drm-provider",
    "pv-example-drm-master",
    "pv-example-drm-render",
    "pv-example-wayland-server",
    "pv-example-wayland-client",
    "pv-example-input-provider",
    "pv-example-input-consumer",
];

/// Examples that consume the system bus Pantavisor hosts (`system-bus`
/// from provider `_pv_`): they only run on an appengine booted with
/// [`crate::appengine::BootOptions::hosted_bus`], so "every example" leaves
/// them out (beside `pv-example-dbus-server` they would reach its bus
/// instead; with the hosted bus on, that server's export is refused).
pub const HOSTED_BUS: &[&str] = &["pv-example-dbus-host-server", "pv-example-dbus-host-client"];

/// Providers whose export exists only where the appengine has
/// `/dev/uinput` (the input provider makes its evdev node with it).
pub const NEEDS_UINPUT: &[&str] = &["pv-example-input-provider"];

/// `harness.json`: per-example rootfs extras.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Extras {
    /// Workspace binary to run, when not named like the example (several
    /// examples can share one program).
    #[serde(default)]
    pub binary: Option<String>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub binaries: Vec<String>,
    #[serde(default)]
    pub host_files: Vec<String>,
    #[serde(default)]
    pub debian_packages: Vec<String>,
}

/// One example container's manifests.
#[derive(Debug, Clone)]
pub struct Example {
    pub name: String,
    pub dir: PathBuf,
    pub args: Map<String, Value>,
    pub services: Option<Value>,
    pub extras: Extras,
}

fn read_json(p: &Path) -> Result<Option<Value>> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(
            serde_json::from_slice(&b).with_context(|| format!("{p:?} is not valid JSON"))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {p:?}")),
    }
}

/// `PVR_APP_ADD_GROUP` of the example's recipe in the meta-layer, if any.
fn recipe_group(name: &str) -> Result<Option<String>> {
    let recipe = util::workspace_root()
        .join("meta-layer/recipes-containers/pv-examples-rs")
        .join(format!("{name}_1.0.bb"));
    let text = match std::fs::read_to_string(&recipe) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {recipe:?}")),
    };
    Ok(text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        (k.trim() == "PVR_APP_ADD_GROUP").then(|| v.trim().trim_matches('"').to_string())
    }))
}

impl Example {
    /// Loads `examples-containers/<name>/`.
    pub fn load(dir: &Path) -> Result<Self> {
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .context("example dir has no name")?
            .to_string();
        let mut args = match read_json(&dir.join("args.json"))? {
            Some(Value::Object(m)) => m,
            Some(_) => bail!("{dir:?}/args.json is not a JSON object"),
            None => Map::new(),
        };
        // The group is not in the manifests: the Yocto recipe passes it to
        // `pvr app add --group`. Read it from there so harness and image
        // agree (it decides the restart policy the API honours).
        if !args.contains_key("PV_GROUP") {
            if let Some(group) = recipe_group(&name)? {
                args.insert("PV_GROUP".into(), Value::String(group));
            }
        }
        let services = read_json(&dir.join("services.json"))?;
        let extras = match read_json(&dir.join("harness.json"))? {
            Some(v) => serde_json::from_value(v)
                .with_context(|| format!("{dir:?}/harness.json: bad fields"))?,
            None => Extras::default(),
        };
        Ok(Example {
            name,
            dir: dir.to_path_buf(),
            args,
            services,
            extras,
        })
    }

    /// The container spec pvr would see.
    pub fn spec(&self) -> ContainerSpec {
        let cmd = self
            .extras
            .cmd
            .clone()
            .unwrap_or_else(|| vec![format!("/usr/bin/{}", self.binary())]);
        let mut docker = DockerConfig::for_command(cmd);
        if let Some(env) = docker.env.as_mut() {
            env.extend(self.extras.env.iter().cloned());
        }
        ContainerSpec {
            name: self.name.clone(),
            args: self.args.clone(),
            docker,
            services: self.services.clone(),
        }
    }

    /// Names of the services this example exports.
    pub fn exports(&self) -> Vec<String> {
        let list = match &self.services {
            Some(Value::Array(a)) => a.clone(),
            Some(v) => v["services"].as_array().cloned().unwrap_or_default(),
            None => Vec::new(),
        };
        list.iter()
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect()
    }

    /// Names of the services this example requires (not the optional ones).
    pub fn required(&self) -> Vec<String> {
        match self.args.get("PV_SERVICES_REQUIRED") {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|r| match r {
                    Value::String(s) => Some(s.clone()),
                    other => other["name"].as_str().map(str::to_string),
                })
                .collect(),
            Some(Value::String(s)) => s.split(',').map(|n| n.trim().to_string()).collect(),
            _ => Vec::new(),
        }
    }

    /// The workspace binary the container runs.
    pub fn binary(&self) -> &str {
        self.extras.binary.as_deref().unwrap_or(&self.name)
    }

    /// Workspace binaries this example needs (its own first).
    pub fn needed_binaries(&self) -> Vec<String> {
        let mut v = vec![self.binary().to_string()];
        v.extend(self.extras.binaries.iter().cloned());
        v
    }
}

/// Every example directory (one with `args.json` or `services.json`),
/// upstream's order first, then the rest by name.
pub fn discover() -> Result<Vec<Example>> {
    let root = util::workspace_root().join("examples-containers");
    let mut found = Vec::new();
    for e in std::fs::read_dir(&root).with_context(|| format!("read {root:?}"))? {
        let p = e?.path();
        if p.is_dir() && (p.join("args.json").is_file() || p.join("services.json").is_file()) {
            found.push(Example::load(&p)?);
        }
    }
    let rank = |n: &str| KNOWN.iter().position(|k| *k == n).unwrap_or(KNOWN.len());
    found.sort_by(|a, b| (rank(&a.name), &a.name).cmp(&(rank(&b.name), &b.name)));
    Ok(found)
}

/// A built export.
#[derive(Debug, Clone)]
pub struct Built {
    pub name: String,
    pub path: PathBuf,
}

/// Builds the exports of `examples`. Every example's program is part of
/// the static build, so one that is missing is an error, never a skip.
pub fn build_exports(config: &Config, examples: &[Example]) -> Result<Vec<Built>> {
    examples
        .iter()
        .map(|ex| {
            let missing: Vec<String> = ex
                .needed_binaries()
                .into_iter()
                .filter(|b| binaries::find(config, b).is_none())
                .collect();
            if !missing.is_empty() {
                bail!(
                    "{}: static binary {} missing from {:?}",
                    ex.name,
                    missing.join(", "),
                    binaries::dir(config)
                );
            }
            build_export(config, ex)
        })
        .collect()
}

/// Builds one export (or reuses the cached one for identical inputs).
///
/// `HARNESS_PVREXPORTS=<dir>` takes `<dir>/<name>.pvrexport.tgz` instead:
/// the meta-layer's output (`DEPLOY_DIR_IMAGE`), so the same tests run
/// against the containers bitbake built.
pub fn build_export(config: &Config, ex: &Example) -> Result<Built> {
    if let Some(dir) = &config.pvrexports {
        let path = dir.join(format!("{}.pvrexport.tgz", ex.name));
        if !path.is_file() {
            bail!(
                "HARNESS_PVREXPORTS is set but {path:?} does not exist \
                 (build it with `kas build ... --target {}`)",
                ex.name
            );
        }
        util::note(format!("using {} from {path:?}", ex.name));
        return Ok(Built {
            name: ex.name.clone(),
            path,
        });
    }
    let key = input_hash(config, ex)?;
    let dir = config.cache_dir.join("exports");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{}-{}.pvrexport.tgz", ex.name, &key[..16]));
    if path.is_file() {
        return Ok(Built {
            name: ex.name.clone(),
            path,
        });
    }
    let step = Step::start(format!("packaging {}", ex.name));
    let work = config.cache_dir.join("rootfs").join(&ex.name);
    let _ = std::fs::remove_dir_all(&work);
    let root = work.join("root");
    assemble_rootfs(config, ex, &root)?;
    let squash = work.join("root.squashfs");
    // A Debian base has real owners (messagebus, ...); a bare tree is ours.
    mksquashfs(&root, &squash, ex.extras.debian_packages.is_empty())?;
    let mut export = Pvrexport::default();
    export.add_container(&ex.spec(), std::fs::read(&squash)?);
    let tmp = path.with_extension("tmp");
    export.write(&tmp)?;
    std::fs::rename(&tmp, &path)?;
    let _ = std::fs::remove_dir_all(&work);
    step.done(&format!(
        "{} KiB",
        path.metadata().map(|m| m.len() / 1024).unwrap_or(0)
    ));
    Ok(Built {
        name: ex.name.clone(),
        path,
    })
}

/// Everything that determines an export's bytes.
fn input_hash(config: &Config, ex: &Example) -> Result<String> {
    let mut h = Sha256::new();
    h.update(b"v1");
    h.update(serde_json::to_vec(&Value::Object(ex.args.clone()))?);
    h.update(serde_json::to_vec(&ex.services)?);
    h.update(format!("{:?}", ex.extras).as_bytes());
    for b in ex.needed_binaries() {
        if let Some(p) = binaries::find(config, &b) {
            h.update(util::sha256_file(&p)?.as_bytes());
        }
    }
    for f in &ex.extras.host_files {
        h.update(f.as_bytes());
        h.update(util::sha256_file(Path::new(f))?.as_bytes());
    }
    h.update(util::sha256_file(Path::new(BUSYBOX))?.as_bytes());
    let overlay = ex.dir.join("rootfs");
    if overlay.is_dir() {
        let mut files = Vec::new();
        walk(&overlay, &mut files)?;
        files.sort();
        for f in files {
            h.update(
                f.strip_prefix(&overlay)
                    .unwrap_or(&f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            if f.is_file() {
                h.update(util::sha256_file(&f)?.as_bytes());
            }
        }
    }
    Ok(hex::encode(h.finalize()))
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        out.push(p.clone());
        if p.is_dir() && !p.is_symlink() {
            walk(&p, out)?;
        }
    }
    Ok(())
}

/// busybox-static from Debian (`busybox-static` package).
pub const BUSYBOX: &str = "/bin/busybox";

/// Lays out the example's root filesystem in `root`.
pub fn assemble_rootfs(config: &Config, ex: &Example, root: &Path) -> Result<()> {
    if !ex.extras.debian_packages.is_empty() {
        let pkgs: Vec<&str> = ex
            .extras
            .debian_packages
            .iter()
            .map(String::as_str)
            .collect();
        let t = debian::minbase(config, &pkgs)?;
        debian::unpack(&t, root)?;
    }
    for d in [
        "bin", "dev", "etc", "proc", "run", "sys", "tmp", "usr/bin", "var", "root",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::set_permissions(root.join("tmp"), std::fs::Permissions::from_mode(0o1777))?;
    // busybox and its applets, unless the Debian base already has the tool.
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).context("copy busybox (busybox-static)")?;
    let list = util::run(Command::new(BUSYBOX).arg("--list"))?;
    for applet in list.lines().map(str::trim).filter(|a| !a.is_empty()) {
        if applet == "busybox" || applet.contains('/') {
            continue;
        }
        let link = root.join("bin").join(applet);
        let in_usr = root.join("usr/bin").join(applet);
        if link.symlink_metadata().is_err() && in_usr.symlink_metadata().is_err() {
            symlink("busybox", &link)?;
        }
    }
    write_if_absent(&root.join("etc/passwd"), PASSWD)?;
    write_if_absent(&root.join("etc/group"), GROUP)?;
    write_if_absent(&root.join("etc/resolv.conf"), "")?;
    for b in ex.needed_binaries() {
        let src = binaries::find(config, &b).with_context(|| format!("binary {b} not built"))?;
        let dst = root.join("usr/bin").join(&b);
        std::fs::copy(&src, &dst).with_context(|| format!("copy {src:?}"))?;
    }
    let mut libs = BTreeSet::new();
    for f in &ex.extras.host_files {
        copy_host_file(Path::new(f), root)?;
        libs.extend(shared_libs(Path::new(f))?);
    }
    for l in libs {
        copy_host_file(&l, root)?;
    }
    let overlay = ex.dir.join("rootfs");
    if overlay.is_dir() {
        util::run(
            Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", overlay.display()))
                .arg(root),
        )?;
    }
    Ok(())
}

const PASSWD: &str =
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\n";

fn write_if_absent(p: &Path, content: &str) -> Result<()> {
    if p.symlink_metadata().is_err() {
        std::fs::write(p, content)?;
    }
    Ok(())
}

/// Copies a host file to the same path under `root`, following symlinks.
fn copy_host_file(src: &Path, root: &Path) -> Result<()> {
    let rel = src.strip_prefix("/").unwrap_or(src);
    let dst = root.join(rel);
    if let Some(parent) = dst.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if dst.exists() {
        return Ok(());
    }
    std::fs::copy(src, &dst).with_context(|| format!("copy host file {src:?}"))?;
    Ok(())
}

/// The shared libraries (and loader) `ldd` lists for an ELF file.
fn shared_libs(f: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(f).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            let path = match l.split_once("=>") {
                Some((_, rhs)) => rhs.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// `mksquashfs` with xz and reproducible timestamps (root-owned files if
/// `all_root`).
pub fn mksquashfs(dir: &Path, out: &Path, all_root: bool) -> Result<()> {
    let mut cmd = Command::new("mksquashfs");
    cmd.arg(dir)
        .arg(out)
        .args(["-comp", "xz", "-noappend", "-no-xattrs"])
        .args([
            "-mkfs-time",
            "0",
            "-all-time",
            "0",
            "-quiet",
            "-no-progress",
        ]);
    if all_root {
        cmd.arg("-all-root");
    }
    util::run(&mut cmd)?;
    Ok(())
}

/// A pvrexport of a container that only has busybox (for tests that need
/// a container but no example program, e.g. deliberately broken input).
pub fn busybox_export(spec: &ContainerSpec) -> Result<Pvrexport> {
    let work = tempfile::tempdir()?;
    let root = work.path().join("root");
    for d in ["bin", "dev", "etc", "proc", "run", "sys", "tmp", "usr/bin"] {
        std::fs::create_dir_all(root.join(d))?;
    }
    std::fs::copy(BUSYBOX, root.join("bin/busybox")).context("copy busybox (busybox-static)")?;
    for applet in ["sh", "sleep", "echo", "cat", "ls"] {
        symlink("busybox", root.join("bin").join(applet))?;
    }
    write_if_absent(&root.join("etc/passwd"), PASSWD)?;
    write_if_absent(&root.join("etc/group"), GROUP)?;
    let squash = work.path().join("root.squashfs");
    mksquashfs(&root, &squash, true)?;
    let mut export = Pvrexport::default();
    export.add_container(spec, std::fs::read(&squash)?);
    Ok(export)
}
