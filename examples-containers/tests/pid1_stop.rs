//! Every example stops like a good container init (run as root).
//!
//! Each example runs as PID 1 of a new pid namespace — where the kernel
//! drops any signal the process has no handler for — with a private mount
//! namespace whose `/run` is a fresh host directory, so its sockets land
//! where the test can see them. Once the example's handlers are installed
//! (`SigCgt` in /proc), the test sends a stop signal: SIGPWR (what
//! Pantavisor's lenient stop sends through LXC), SIGTERM (docker,
//! appengine-lite) or SIGINT. The example must exit 0 within 2 s and leave
//! none of its sockets behind.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long a stop may take.
const STOP_BOUND: Duration = Duration::from_secs(2);

/// `unshare` running `cmd` as PID 1 with `run` mounted on /run; killed
/// (with its namespace) on drop.
struct Init {
    unshare: Child,
    /// Host pid of the namespace's init.
    pid: i32,
}

impl Init {
    fn start(run: &Path, cmd: &[&str]) -> Init {
        let unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                r#"mount --bind "$0" /run && exec "$@""#,
            ])
            .arg(run)
            .args(cmd)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = child_of(unshare.id()) {
                break pid;
            }
            assert!(Instant::now() < deadline, "no init under unshare");
            std::thread::sleep(Duration::from_millis(5));
        };
        Init { unshare, pid }
    }

    /// Waits until the init has replaced the shell and catches `sigs`.
    fn wait_handlers(&self, exe: &Path, sigs: &[Signal]) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let is_exe =
                std::fs::read_link(format!("/proc/{}/exe", self.pid)).is_ok_and(|e| e == exe);
            if is_exe && sigs.iter().all(|s| caught(self.pid, *s)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} never installed handlers for {sigs:?}",
                exe.display()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Signals the init and waits up to `bound` for the namespace to end.
    fn stop(&mut self, sig: Signal, bound: Duration) -> Option<(ExitStatus, Duration)> {
        let t0 = Instant::now();
        kill(Pid::from_raw(self.pid), sig).expect("signal the init");
        while t0.elapsed() < bound {
            if let Ok(Some(status)) = self.unshare.try_wait() {
                return Some((status, t0.elapsed()));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }
}

impl Drop for Init {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.pid), Signal::SIGKILL);
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}

/// Whether `pid` has a handler for `sig` (bit in /proc/<pid>/status SigCgt).
fn caught(pid: i32, sig: Signal) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1u64 << (sig as i32 - 1)) != 0)
}

/// The first process whose parent is `ppid`.
fn child_of(ppid: u32) -> Option<i32> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let parent = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if parent == Some(ppid) {
            return Some(pid);
        }
    }
    None
}

fn bin(name: &str) -> PathBuf {
    // Cargo builds every binary of the package for its integration tests.
    let dir = Path::new(env!("CARGO_BIN_EXE_pv-example-unix-server"))
        .parent()
        .expect("target dir");
    dir.join(name)
}

/// One example: its arguments and the files it creates under /run.
struct Case {
    name: &'static str,
    args: Vec<String>,
    sockets: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let bus_conf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("pv-example-dbus-server/rootfs/etc/pv-example-dbus/bus.conf");
    let case = |name, args: &[&str], sockets| Case {
        name,
        args: args.iter().map(|a| a.to_string()).collect(),
        sockets,
    };
    vec![
        case("pv-example-unix-server", &[], &["example/raw.sock"]),
        case("pv-example-rest-server", &[], &["nm/api.sock"]),
        case(
            "pv-example-wayland-server",
            &[],
            &["wayland-0", "wayland-0.lock"],
        ),
        Case {
            name: "pv-example-dbus-server",
            args: vec![format!("--config={}", bus_conf.display())],
            sockets: &["dbus/system_bus_socket"],
        },
        // Consumers with no provider: they keep retrying, as they do in a
        // container started before its links exist.
        case("pv-example-unix-client", &[], &[]),
        case("pv-example-rest-client", &[], &[]),
        case("pv-example-dbus-client", &[], &[]),
        case("pv-example-dbus-client-nobody", &[], &[]),
        case("pv-example-dbus-attacker", &[], &[]),
        case("pv-example-wayland-client", &[], &[]),
        case("pv-example-drm-provider", &[], &[]),
        case("pv-example-drm-master", &[], &[]),
        case("pv-example-drm-render", &[], &[]),
    ]
}

/// The premise: a PID 1 without handlers ignores SIGTERM and SIGPWR, which
/// is why every stop of such a container is a forced one.
#[test]
fn an_init_without_handlers_ignores_stop_signals() {
    let run = tempfile::tempdir().expect("tempdir");
    let sleep = std::fs::canonicalize("/bin/sleep").expect("sleep");
    let mut init = Init::start(run.path(), &[sleep.to_str().expect("utf-8"), "1000"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while std::fs::read_link(format!("/proc/{}/exe", init.pid)).ok() != Some(sleep.clone()) {
        assert!(Instant::now() < deadline, "sleep did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    for sig in [Signal::SIGTERM, Signal::SIGPWR] {
        assert!(
            init.stop(sig, Duration::from_millis(500)).is_none(),
            "{sig} stopped an init that has no handler for it"
        );
    }
}

#[test]
fn every_example_exits_promptly_on_stop_signals_and_removes_its_sockets() {
    let signals = [Signal::SIGPWR, Signal::SIGTERM, Signal::SIGINT];
    let mut failures = Vec::new();
    for (i, case) in cases().into_iter().enumerate() {
        let run = tempfile::tempdir().expect("tempdir");
        let exe = bin(case.name);
        let mut cmd: Vec<&str> = vec![exe.to_str().expect("utf-8 path")];
        cmd.extend(case.args.iter().map(String::as_str));
        let mut init = Init::start(run.path(), &cmd);
        init.wait_handlers(&exe, &signals);
        let deadline = Instant::now() + Duration::from_secs(10);
        for s in case.sockets {
            while !run.path().join(s).exists() {
                assert!(Instant::now() < deadline, "{}: no /run/{s}", case.name);
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // Rotate through the signals so each is exercised on servers and
        // clients alike.
        let sig = signals[i % signals.len()];
        match init.stop(sig, STOP_BOUND) {
            None => failures.push(format!(
                "{}: still running {STOP_BOUND:?} after {sig}",
                case.name
            )),
            Some((status, took)) => {
                if status.code() != Some(0) {
                    failures.push(format!("{}: {sig} -> exit {status}", case.name));
                }
                let left: Vec<_> = case
                    .sockets
                    .iter()
                    .filter(|s| std::fs::symlink_metadata(run.path().join(s)).is_ok())
                    .collect();
                if !left.is_empty() {
                    failures.push(format!("{}: left {left:?} behind", case.name));
                }
                println!("{} stopped by {sig} in {took:?}", case.name);
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
