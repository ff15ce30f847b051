//! How a container is started and watched.
//!
//! [`LxcRuntime`] is the real one: loop-mount `root.squashfs` at
//! `/volumes/<c>/root.squashfs`, put `/volumes/<c>/lxc-overlay` on a tmpfs
//! (an overlay upper dir on Docker's overlay root fails with EINVAL), write
//! an LXC 5 config translated from the pvr-generated `lxc.container.conf`,
//! `lxc-start -d`, and read the init pid with `lxc-info -p -H`.
//!
//! [`ProcessRuntime`] runs the config's `lxc.init.cmd` as a plain host
//! process (no namespaces) with its output in console.log. It exists so the
//! lifecycle and pv-ctrl can be tested on a machine without LXC; the pids it
//! reports are real processes.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use crate::paths::Paths;
use crate::state::{Container, State};

/// A started container.
pub trait Running: Send {
    /// Init pid as seen from the appengine.
    fn pid(&self) -> i64;
    /// Whether init still runs.
    fn alive(&mut self) -> bool;
    /// Kills it (upstream's force stop is a SIGKILL of init).
    fn stop(&mut self);
}

/// Starts containers.
pub trait Runtime: Send + Sync {
    /// Blocking: prepares volumes and starts `c` of `state`.
    fn start(&self, state: &State, c: &Container) -> Result<Box<dyn Running>>;
}

/// Reads `<c>/<file>` of revision 0 from the trail.
fn trail_file(paths: &Paths, state: &State, c: &Container, file: &str) -> PathBuf {
    paths.trail(&state.rev).join(&c.name).join(file)
}

fn console_file(paths: &Paths, c: &Container) -> Result<File> {
    let p = paths.console_log(&c.name);
    if let Some(d) = p.parent() {
        fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))
}

/// Whether `pid` exists and is not a zombie.
fn pid_alive(pid: i64) -> bool {
    if pid <= 0 {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // Field 3 (after the parenthesised comm) is the state letter.
        Ok(s) => s
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- process

/// Test runtime: `sh -c <lxc.init.cmd>` on the host.
#[derive(Debug)]
pub struct ProcessRuntime {
    pub paths: Paths,
}

struct ProcessRunning {
    child: Child,
}

impl Running for ProcessRunning {
    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessRunning {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
    }
}

impl Runtime for ProcessRuntime {
    fn start(&self, state: &State, c: &Container) -> Result<Box<dyn Running>> {
        let conf_path = trail_file(&self.paths, state, c, &c.config);
        let conf = fs::read_to_string(&conf_path)
            .with_context(|| format!("reading {}", conf_path.display()))?;
        let cmd = conf_value(&conf, "lxc.init.cmd")
            .ok_or_else(|| anyhow!("{}: no lxc.init.cmd", conf_path.display()))?;
        let out = console_file(&self.paths, c)?;
        let err = out.try_clone()?;
        let child = Command::new("/bin/sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("spawning /bin/sh")?;
        Ok(Box::new(ProcessRunning { child }))
    }
}

/// Last value of `key` in an LXC config.
pub fn conf_value(conf: &str, key: &str) -> Option<String> {
    conf.lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim().to_owned())
        .next_back()
}

// -------------------------------------------------------------------- lxc

/// Real runtime: Debian's LXC 5.
#[derive(Debug)]
pub struct LxcRuntime {
    pub paths: Paths,
}

struct LxcRunning {
    lxc_path: PathBuf,
    name: String,
    pid: i64,
}

impl Running for LxcRunning {
    fn pid(&self) -> i64 {
        self.pid
    }
    fn alive(&mut self) -> bool {
        pid_alive(self.pid)
    }
    fn stop(&mut self) {
        if self.pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        // Let the monitor notice and clean up; -k makes it immediate.
        let _ = Command::new("lxc-stop")
            .arg("-P")
            .arg(&self.lxc_path)
            .args(["-n", &self.name, "-k"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Config keys Debian's LXC 5 in a Docker container cannot apply: the
/// devices cgroup is not writable there (and the Docker container's own
/// device rule already allows everything).
const DROPPED_KEYS: [&str; 4] = [
    "lxc.cgroup.devices.allow",
    "lxc.cgroup.devices.deny",
    "lxc.cgroup2.devices.allow",
    "lxc.cgroup2.devices.deny",
];

/// Translates a pvr-generated config for LXC 5 and adds what Pantavisor's
/// LXC plugin adds at start: console log, pv-ctrl under `/pantavisor`, and
/// `/dev/dri` for drm providers.
pub fn translate_conf(conf: &str, paths: &Paths, c: &Container, has_dri: bool) -> String {
    let mut out = String::new();
    let vols = paths.volumes();
    for line in conf.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim()).unwrap_or("");
        if DROPPED_KEYS.contains(&key) {
            out.push_str("# dropped by appengine-lite: ");
        }
        if paths.is_real_root() {
            out.push_str(line);
        } else {
            out.push_str(&line.replace("/volumes/", &format!("{}/", vols.display())));
        }
        out.push('\n');
    }
    out.push_str("\n# added by appengine-lite\n");
    out.push_str(&format!(
        "lxc.console.logfile = {}\n",
        paths.console_log(&c.name).display()
    ));
    out.push_str(&format!(
        "lxc.mount.entry = {} pantavisor none bind,create=dir 0 0\n",
        paths.run_dir().display()
    ));
    if c.exports_drm() && has_dri {
        out.push_str(&format!(
            "lxc.mount.entry = {}/dri dev/dri none bind,optional,create=dir 0 0\n",
            paths.dev().display()
        ));
    }
    out
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn is_mountpoint(p: &Path) -> bool {
    let Ok(canon) = fs::canonicalize(p) else {
        return false;
    };
    let Ok(info) = fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    let want = canon.to_string_lossy();
    info.lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .any(|mp| mp == want)
}

/// Docker gives no loop devices; `mount -o loop` needs them.
///
/// Loop devices are the host's: the free ones may be numbered far past any
/// fixed range when other users (or earlier runs) hold the low ones, so the
/// node made is the one the kernel hands out next (`losetup -f` asks
/// loop-control), plus a few after it for concurrent appengines racing for
/// the same number.
fn ensure_loop_devices(dev: &Path) -> Result<()> {
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let ctl = dev.join("loop-control");
    if !ctl.exists() {
        mknod(
            &ctl,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o660),
            makedev(10, 237),
        )
        .with_context(|| format!("mknod {}", ctl.display()))?;
    }
    let free = run(Command::new("losetup").arg("-f"))?;
    let first = parse_loop_device(&free)
        .with_context(|| format!("`losetup -f` printed {:?}, not /dev/loopN", free.trim()))?;
    for n in first..first + 8 {
        let p = dev.join(format!("loop{n}"));
        if !p.exists() {
            mknod(
                &p,
                SFlag::S_IFBLK,
                Mode::from_bits_truncate(0o660),
                makedev(7, n),
            )
            .with_context(|| format!("mknod {}", p.display()))?;
        }
    }
    Ok(())
}

/// `/dev/loopN` → N.
fn parse_loop_device(s: &str) -> Option<u64> {
    s.trim().strip_prefix("/dev/loop")?.parse().ok()
}

impl LxcRuntime {
    fn prepare(&self, state: &State, c: &Container) -> Result<PathBuf> {
        let vol = self.paths.volumes().join(&c.name);
        if let Some(root) = &c.root_volume {
            let src = trail_file(&self.paths, state, c, root);
            let dst = vol.join(root);
            fs::create_dir_all(&dst)?;
            if !is_mountpoint(&dst) {
                // `mount -o loop` always uses the real /dev.
                ensure_loop_devices(Path::new("/dev"))?;
                run(Command::new("mount")
                    .args(["-t", "squashfs", "-o", "loop,ro"])
                    .arg(&src)
                    .arg(&dst))?;
            }
        }
        for (name, persistence) in &c.storage {
            let dst = vol.join(name);
            fs::create_dir_all(&dst)?;
            if is_mountpoint(&dst) {
                continue;
            }
            if name == "lxc-overlay" || persistence == "boot" {
                run(Command::new("mount")
                    .args(["-t", "tmpfs", "-o", "mode=0755", "tmpfs"])
                    .arg(&dst))?;
            } else {
                let kind = if persistence == "revision" {
                    "rev/0"
                } else {
                    "perm"
                };
                let src = self
                    .paths
                    .storage()
                    .join("disks")
                    .join(kind)
                    .join(&c.name)
                    .join(name);
                fs::create_dir_all(&src)?;
                run(Command::new("mount").arg("--bind").arg(&src).arg(&dst))?;
            }
        }
        fs::create_dir_all(vol.join("lxc-overlay/upper"))?;
        let conf_src = trail_file(&self.paths, state, c, &c.config);
        let conf = fs::read_to_string(&conf_src)
            .with_context(|| format!("reading {}", conf_src.display()))?;
        let has_dri = self.paths.dev().join("dri").is_dir();
        let translated = translate_conf(&conf, &self.paths, c, has_dri);
        let dir = self.paths.lxc_path().join(&c.name);
        fs::create_dir_all(&dir)?;
        let conf_dst = dir.join("config");
        fs::write(&conf_dst, translated)?;
        if let Some(d) = self.paths.console_log(&c.name).parent() {
            fs::create_dir_all(d)?;
        }
        Ok(conf_dst)
    }
}

impl Runtime for LxcRuntime {
    fn start(&self, state: &State, c: &Container) -> Result<Box<dyn Running>> {
        let conf = self.prepare(state, c)?;
        let lxc_path = self.paths.lxc_path();
        // A previous instance may linger after a crash of its init.
        let _ = Command::new("lxc-stop")
            .arg("-P")
            .arg(&lxc_path)
            .args(["-n", &c.name, "-k"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        run(Command::new("lxc-start")
            .arg("-P")
            .arg(&lxc_path)
            .args(["-n", &c.name, "-f"])
            .arg(&conf)
            .arg("-d")
            .args(["-l", "INFO", "-o"])
            .arg(self.paths.lxc_log(&c.name)))
        .with_context(|| {
            format!(
                "lxc-start of '{}' (see {})",
                c.name,
                self.paths.lxc_log(&c.name).display()
            )
        })?;
        // `lxc-start -d` returns once the container runs, so its pid is
        // normally there at once; an init that died right away leaves the
        // container STOPPED and is reported as a start error.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let out = Command::new("lxc-info")
                .arg("-P")
                .arg(&lxc_path)
                .args(["-n", &c.name, "-s", "-p", "-H"])
                .output();
            if let Ok(o) = out {
                let text = String::from_utf8_lossy(&o.stdout).into_owned();
                // LXC 5 keeps the labels ("State:  RUNNING", "PID:  12")
                // when several fields are asked for, even with -H.
                let mut values = text
                    .lines()
                    .filter_map(|l| l.split_whitespace().next_back());
                let state = values.next().unwrap_or("");
                let pid = values.next().and_then(|p| p.parse::<i64>().ok());
                if let Some(pid) = pid.filter(|p| *p > 0) {
                    return Ok(Box::new(LxcRunning {
                        lxc_path,
                        name: c.name.clone(),
                        pid,
                    }));
                }
                if state == "STOPPED" {
                    bail!(
                        "container '{}' stopped right after start (see {})",
                        c.name,
                        self.paths.lxc_log(&c.name).display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("lxc-info gave no pid for '{}' within 3 s", c.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Makes `/run/pantavisor/pv/logs` show the storage logs, as upstream's
/// run directory does.
pub fn link_run_logs(paths: &Paths) -> io::Result<()> {
    let link = paths.run_dir().join("logs");
    if link.exists() || fs::symlink_metadata(&link).is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(paths.logs(), link)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loop_device_numbers_come_from_losetup_output() {
        assert_eq!(parse_loop_device("/dev/loop0\n"), Some(0));
        assert_eq!(parse_loop_device("/dev/loop187"), Some(187));
        assert_eq!(
            parse_loop_device("losetup: cannot find an unused loop device"),
            None
        );
        assert_eq!(parse_loop_device("/dev/loopX"), None);
    }

    #[test]
    fn translate_drops_device_cgroup_and_adds_console() {
        // Real pvr output, shared with the harness's tests.
        let conf =
            include_str!("../../tests/fixtures/pvrexport/watchdog_pinger.lxc.container.conf");
        let c = Container {
            name: "watchdog_pinger".into(),
            group: "platform".into(),
            restart_policy: "container".into(),
            roles: vec![],
            config: "lxc.container.conf".into(),
            root_volume: Some("root.squashfs".into()),
            storage: vec![],
            exports: vec![crate::state::Export {
                name: "drm-master".into(),
                svc_type: Some("drm".into()),
                socket: Some("/dev/dri/card0".into()),
            }],
            required: vec![],
            optional: vec![],
        };
        assert!(conf.contains("lxc.cgroup.devices.allow"), "fixture changed");
        let t = translate_conf(conf, &Paths::default(), &c, true);
        assert!(
            !t.lines().any(|l| l.starts_with("lxc.cgroup.devices.allow")),
            "{t}"
        );
        assert!(t.contains(
            "lxc.console.logfile = /var/pantavisor/storage/logs/0/watchdog_pinger/lxc/console.log"
        ));
        assert!(t.contains("lxc.mount.entry = /dev/dri dev/dri none bind"));
        assert!(t.contains("lxc.init.cmd = /app/"));
        let no_dri = translate_conf(conf, &Paths::default(), &c, false);
        assert!(!no_dri.contains("dev/dri"));
    }

    #[test]
    fn conf_value_last_wins() {
        assert_eq!(
            conf_value(
                "a = 1\nlxc.init.cmd = x y\nlxc.init.cmd = z\n",
                "lxc.init.cmd"
            )
            .as_deref(),
            Some("z")
        );
    }
}
