//! A fresh pid namespace (with its own /proc, in a mount namespace of its
//! own) to run a daemon and containers in, where pid numbers can be forced
//! (`ns_last_pid`) without disturbing the machine: how a test makes a
//! stale pid from the graph name a new process.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running pid namespace; everything in it is killed on drop.
pub struct PidSandbox {
    /// Host pid of its init (pid 1 inside).
    pub pid: i32,
    unshare: Child,
}

impl PidSandbox {
    pub fn start() -> PidSandbox {
        crate::require_root();
        crate::require_tool("unshare");
        crate::require_tool("nsenter");
        let mut unshare = Command::new("unshare")
            .args([
                "--pid",
                "--fork",
                "--kill-child",
                "--mount",
                "--propagation",
                "private",
                "--mount-proc",
                "sleep",
                "infinity",
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Ok(Some(st)) = unshare.try_wait() {
                panic!("sandbox exited during setup: {st}");
            }
            assert!(Instant::now() < deadline, "sandbox did not start");
            let kids = crate::container::children_of(unshare.id() as i32);
            if let Some(pid) = kids.first().copied() {
                // Ready once its /proc is the namespace's own.
                if std::fs::read_link(format!("/proc/{pid}/root/proc/1/exe"))
                    .is_ok_and(|exe| exe.ends_with("sleep"))
                {
                    break pid;
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        PidSandbox { pid, unshare }
    }

    /// `program` run inside the sandbox (its pid and mount namespaces);
    /// add arguments to it.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("nsenter");
        c.args(["-t", &self.pid.to_string(), "-p", "-m", "--"])
            .arg(program);
        c
    }

    /// The pid inside the sandbox of host pid `host` (None: not in it).
    pub fn pid_of(&self, host: i32) -> Option<i32> {
        let status = std::fs::read_to_string(format!("/proc/{host}/status")).ok()?;
        let ours = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let level = |s: &str| {
            s.lines()
                .find_map(|l| l.strip_prefix("NSpid:"))
                .map(|v| v.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        };
        // The sandbox's init is 1 at depth d; a process in it has its
        // sandbox pid at the same depth.
        let depth = level(&ours)?.len() - 1;
        level(&status)?.get(depth)?.parse().ok()
    }

    /// Like [`PidSandbox::command`], but the first process `program`
    /// creates gets sandbox pid `pid` if it is free and nothing else in the
    /// sandbox forks in between (`ns_last_pid` is set from inside, where
    /// the kernel applies it; `program` is exec'ed, not forked). Check the
    /// pid you got.
    pub fn command_forcing_pid(&self, pid: i32, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = self.command("sh");
        c.args([
            "-c",
            r#"echo "$0" > /proc/sys/kernel/ns_last_pid && exec "$@""#,
            &(pid - 1).to_string(),
        ])
        .arg(program);
        c
    }
}

impl Drop for PidSandbox {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
    }
}
