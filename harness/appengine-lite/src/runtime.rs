//! How a container is started and watched.
//!
//! [`LxcRuntime`] is the real one: loop-mount `root.squashfs` at
//! `/volumes/<c>/root.squashfs`, put `/volumes/<c>/lxc-overlay` on a tmpfs
//! (an overlay upper dir on Docker's overlay root fails with EINVAL), write
//! an LXC 5 config translated from the pvr-generated `lxc.container.conf`,
//! `lxc-start -d` with `lxc.init.cmd` split as the Pantacor LXC fork splits
//! it ([`split_init_cmd`]), and read the init pid with `lxc-info -p -H`.
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
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::paths::Paths;
use crate::state::{Container, State};

/// A started container.
pub trait Running: Send {
    /// Init pid as seen from the appengine.
    fn pid(&self) -> i64;
    /// Whether init still runs.
    fn alive(&mut self) -> bool;
    /// Sends the halt signal (LXC's shutdown: `lxc.signal.halt`, SIGPWR by
    /// default); the lenient stop.
    fn halt(&mut self);
    /// Kills it (upstream's force stop is a SIGKILL of init).
    fn kill(&mut self);
}

/// The signal LXC's shutdown sends: the config's `lxc.signal.halt` (a name
/// like `SIGTERM`/`TERM` or a number), SIGPWR when absent or unreadable.
pub fn halt_signal(conf: &str) -> Signal {
    let Some(v) = conf_value(conf, "lxc.signal.halt") else {
        return Signal::SIGPWR;
    };
    if let Ok(n) = v.parse::<i32>() {
        return Signal::try_from(n).unwrap_or(Signal::SIGPWR);
    }
    let name = if v.starts_with("SIG") {
        v.to_ascii_uppercase()
    } else {
        format!("SIG{}", v.to_ascii_uppercase())
    };
    name.parse().unwrap_or(Signal::SIGPWR)
}

fn signal(pid: i64, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        if pid > 0 {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), sig);
        }
    }
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
    halt: Signal,
}

impl Running for ProcessRunning {
    fn pid(&self) -> i64 {
        i64::from(self.child.id())
    }
    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
    fn halt(&mut self) {
        signal(self.pid(), self.halt);
    }
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ProcessRunning {
    fn drop(&mut self) {
        if self.alive() {
            self.kill();
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
        Ok(Box::new(ProcessRunning {
            child,
            halt: halt_signal(&conf),
        }))
    }
}

/// Splits `lxc.init.cmd` into argv as the Pantacor LXC fork does
/// (`split_init_cmd` in its lxccontainer.c), which is what runs
/// containers on a real Pantavisor: words are separated by spaces (only
/// spaces); a double-quoted string is one word, in which `\"` and `\\`
/// stand for `"` and `\` and any other backslash is kept; a quote right
/// after a word's characters ends that word; single quotes are ordinary
/// characters; an unterminated string keeps its opening quote.
///
/// pvr quotes every `Cmd` word but the first (`/bin/sh "-c" "exit 0"`);
/// Debian's LXC 5 splits on spaces only and would pass those words with
/// their quotes, so appengine-lite hands LXC this argv itself.
pub fn split_init_cmd(cmd: &str) -> Vec<String> {
    #[derive(Clone, Copy)]
    enum S {
        Space,
        Arg,
        Str,
        StrEsc,
    }
    let mut argv = Vec::new();
    let mut word = String::new();
    let mut s = S::Space;
    for c in cmd.chars() {
        s = match s {
            S::Space if c == '"' => S::Str,
            S::Space if c == ' ' => S::Space,
            S::Space => {
                word.push(c);
                S::Arg
            }
            S::Arg if c == '"' => {
                argv.push(std::mem::take(&mut word));
                S::Str
            }
            S::Arg if c == ' ' => {
                argv.push(std::mem::take(&mut word));
                S::Space
            }
            S::Str if c == '"' => {
                argv.push(std::mem::take(&mut word));
                S::Space
            }
            S::Str if c == '\\' => S::StrEsc,
            S::Arg | S::Str => {
                word.push(c);
                s
            }
            S::StrEsc => {
                if c != '"' && c != '\\' {
                    word.push('\\');
                }
                word.push(c);
                S::Str
            }
        };
    }
    match s {
        S::Space => {}
        S::Arg => argv.push(word),
        S::Str => argv.push(format!("\"{word}")),
        // The fork keeps the opening quote only when the string itself is
        // unterminated, not when it ends on a lone backslash.
        S::StrEsc => argv.push(format!("{word}\\")),
    }
    argv
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
    halt: Signal,
}

impl Running for LxcRunning {
    fn pid(&self) -> i64 {
        self.pid
    }
    fn alive(&mut self) -> bool {
        pid_alive(self.pid)
    }
    fn halt(&mut self) {
        signal(self.pid, self.halt);
    }
    fn kill(&mut self) {
        signal(self.pid, Signal::SIGKILL);
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
/// LXC plugin adds at start: console log and pv-ctrl under `/pantavisor`.
///
/// No device is added: like Pantavisor, a container sees only the nodes
/// its own config brings in (a drm provider binds `/dev/dri` with an
/// `lxc.mount.entry` of its `PV_LXC_EXTRA_CONF`), which are kept as
/// written.
pub fn translate_conf(conf: &str, paths: &Paths, c: &Container) -> String {
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
        let translated = translate_conf(&conf, &self.paths, c);
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
        let conf_text =
            fs::read_to_string(&conf).with_context(|| format!("reading {}", conf.display()))?;
        let mut start = Command::new("lxc-start");
        start
            .arg("-P")
            .arg(&lxc_path)
            .args(["-n", &c.name, "-f"])
            .arg(&conf)
            .arg("-d")
            .args(["-l", "INFO", "-o"])
            .arg(self.paths.lxc_log(&c.name));
        // The fork's argv, given after `--`, replaces LXC 5's own split of
        // `lxc.init.cmd` (none: LXC's `/sbin/init`, as upstream).
        let argv = conf_value(&conf_text, "lxc.init.cmd")
            .map(|cmd| split_init_cmd(&cmd))
            .unwrap_or_default();
        if !argv.is_empty() {
            start.arg("--").args(&argv);
        }
        run(&mut start).with_context(|| {
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
                        halt: halt_signal(&conf_text),
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

    /// pvr's rendering of a real container (copied from a real export).
    const WATCHDOG_CONF: &str =
        include_str!("../../tests/fixtures/pvrexport/watchdog_pinger.lxc.container.conf");

    fn drm_provider() -> Container {
        Container {
            name: "pv-example-drm-provider".into(),
            exports: vec![crate::state::Export::named(
                "drm-master",
                "drm",
                "/dev/dri/card0",
            )],
            ..Container::named("pv-example-drm-provider")
        }
    }

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
        assert!(
            WATCHDOG_CONF.contains("lxc.cgroup.devices.allow"),
            "fixture changed"
        );
        let c = Container::named("watchdog_pinger");
        let t = translate_conf(WATCHDOG_CONF, &Paths::default(), &c);
        assert!(
            !t.lines().any(|l| l.starts_with("lxc.cgroup.devices.allow")),
            "{t}"
        );
        assert!(t.contains(
            "lxc.console.logfile = /var/pantavisor/storage/logs/0/watchdog_pinger/lxc/console.log"
        ));
        assert!(t.contains("lxc.init.cmd = /app/watchdog_pinger"));
        assert!(t.contains(
            "lxc.mount.entry = /volumes/watchdog_pinger/docker--tmp tmp none bind,rw,create=dir 0 0"
        ));
    }

    /// Upstream's pv_lxc plugin adds no device to a container, drm provider
    /// or not: the nodes come from the container's own config.
    #[test]
    fn a_drm_provider_gets_only_the_devices_its_config_binds() {
        let plain = "lxc.init.cmd = /usr/bin/pv-example-drm-provider\n";
        let t = translate_conf(plain, &Paths::default(), &drm_provider());
        assert!(!t.contains("dri"), "nothing added:\n{t}");
        let with_bind = format!(
            "{plain}lxc.mount.entry = /dev/dri dev/dri none bind,optional,create=dir 0 0\n"
        );
        let t = translate_conf(&with_bind, &Paths::default(), &drm_provider());
        assert_eq!(
            t.lines().filter(|l| l.contains("dri")).collect::<Vec<_>>(),
            ["lxc.mount.entry = /dev/dri dev/dri none bind,optional,create=dir 0 0"],
            "the config's own bind, kept once:\n{t}"
        );
    }

    /// LXC's shutdown sends `lxc.signal.halt`, SIGPWR by default (what the
    /// examples' PID-1 handlers see on the real appengine).
    #[test]
    fn halt_signal_is_sigpwr_unless_configured() {
        assert_eq!(halt_signal(WATCHDOG_CONF), Signal::SIGPWR);
        assert_eq!(halt_signal("lxc.signal.halt = SIGTERM\n"), Signal::SIGTERM);
        assert_eq!(halt_signal("lxc.signal.halt = TERM\n"), Signal::SIGTERM);
        assert_eq!(halt_signal("lxc.signal.halt = 10\n"), Signal::SIGUSR1);
        assert_eq!(halt_signal("lxc.signal.halt = nonsense\n"), Signal::SIGPWR);
    }

    /// The Pantacor LXC fork's split of `lxc.init.cmd`, one case per turn
    /// of its state machine (SPACE, ARG, STR, STR_ESC).
    #[test]
    fn init_cmd_is_split_like_the_pantacor_lxc_fork() {
        // pvr's rendering of Cmd ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1"].
        assert_eq!(
            split_init_cmd(r#"/bin/sh "-c" "trap 'exit 0' TERM; sleep 1""#),
            ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 1"]
        );
        assert_eq!(
            split_init_cmd("/app/watchdog_pinger"),
            ["/app/watchdog_pinger"]
        );
        assert_eq!(split_init_cmd("  a   b  "), ["a", "b"]);
        assert_eq!(split_init_cmd("a\tb"), ["a\tb"], "only spaces separate");
        assert_eq!(split_init_cmd(r#"a "" b"#), ["a", "", "b"]);
        assert_eq!(split_init_cmd(r#"ab"c d"e"#), ["ab", "c d", "e"]);
        assert_eq!(
            split_init_cmd(r#""say \"hi\" \\ \n""#),
            [r#"say "hi" \ \n"#]
        );
        assert_eq!(
            split_init_cmd("'a b'"),
            ["'a", "b'"],
            "single quotes are plain"
        );
        assert_eq!(split_init_cmd(r#"a "b c"#), ["a", r#""b c"#]);
        assert_eq!(split_init_cmd(r#""b\"#), [r#"b\"#]);
        assert!(split_init_cmd("   ").is_empty());
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
