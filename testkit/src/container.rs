//! Real "containers" for namespace tests: processes in new mount, pid and
//! uts namespaces, chrooted into their own root (a private tmpfs holding
//! read-only binds of the host's /usr and /etc, symlinks for the merged-usr
//! directories, its own /proc, a tmpfs /run, /tmp and /dev with just null,
//! zero and urandom bound in). Because each has its own root, an absolute
//! symlink inside it means something different from the same path on the
//! host, exactly like an LXC container.
//!
//! Built from util-linux `unshare` and `nsenter`; needs root (checked:
//! a test without it fails, it does not skip).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A running container; killed (its whole pid namespace) on drop.
pub struct Container {
    pub name: String,
    /// Host pid of the container's init (pid 1 inside).
    pub pid: i32,
    unshare: Child,
    _dir: tempfile::TempDir,
}

const SETUP: &str = r#"
set -e
R="$PVX_ROOT"
mount -t tmpfs -o mode=0755 pvx-root "$R"
mkdir -p "$R/usr" "$R/etc" "$R/proc" "$R/run" "$R/tmp" "$R/dev" "$R/root"
mount --bind /usr "$R/usr"; mount -o remount,bind,ro "$R/usr"
mount --bind /etc "$R/etc"; mount -o remount,bind,ro "$R/etc"
for d in bin sbin lib lib32 lib64 libx32; do
  if [ -L "/$d" ]; then ln -s "$(readlink "/$d")" "$R/$d";
  elif [ -d "/$d" ]; then mkdir -p "$R/$d"; mount --bind "/$d" "$R/$d"; fi
done
mount -t proc proc "$R/proc"
mount -t tmpfs -o mode=0755 run "$R/run"
mount -t tmpfs -o mode=1777 tmp "$R/tmp"
mount -t tmpfs -o mode=0755 dev "$R/dev"
for n in null zero urandom random; do touch "$R/dev/$n"; mount --bind "/dev/$n" "$R/dev/$n"; done
for b in $PVX_BINDS; do mkdir -p "$R$b"; mount --bind "$b" "$R$b"; mount -o remount,bind,ro "$R$b"; done
hostname "$PVX_NAME"
cd "$R"
exec chroot "$R" /bin/sh -c "cd /; exec $PVX_CMD"
"#;

impl Container {
    /// Start a container running `cmd` (a shell command line) as its init.
    pub fn start(name: &str, cmd: &str) -> Container {
        Self::start_with_binds(name, cmd, &[])
    }

    /// Like [`Container::start`], with host directories bound read-only at
    /// the same path inside (e.g. cargo's target directory for binaries).
    pub fn start_with_binds(name: &str, cmd: &str, binds: &[&Path]) -> Container {
        Self::start_opts(name, cmd, binds, None)
    }

    /// Like [`Container::start`], inside `sandbox`'s pid namespace (its
    /// pids there: [`PidSandbox::pid_of`](crate::sandbox::PidSandbox::pid_of)).
    /// With `pid`, the container's init asks for that sandbox pid (see
    /// [`PidSandbox::command_forcing_pid`](crate::sandbox::PidSandbox::command_forcing_pid)).
    pub fn start_in(
        sandbox: &crate::sandbox::PidSandbox,
        name: &str,
        cmd: &str,
        pid: Option<i32>,
    ) -> Container {
        Self::start_opts(name, cmd, &[], Some((sandbox, pid)))
    }

    fn start_opts(
        name: &str,
        cmd: &str,
        binds: &[&Path],
        sandbox: Option<(&crate::sandbox::PidSandbox, Option<i32>)>,
    ) -> Container {
        crate::require_root();
        crate::require_tool("unshare");
        crate::require_tool("nsenter");
        let dir = tempfile::Builder::new()
            .prefix("pvx-ct-")
            .tempdir()
            .expect("tempdir");
        let root = dir.path().join("root");
        std::fs::create_dir(&root).expect("mkdir root");
        let binds: Vec<String> = binds.iter().map(|b| b.display().to_string()).collect();
        // In a sandbox, nsenter runs unshare inside its pid namespace.
        let command = match sandbox {
            Some((s, None)) => s.command("unshare"),
            // unshare is exec'ed; its --fork makes the init: the next pid.
            Some((s, Some(pid))) => s.command_forcing_pid(pid, "unshare"),
            None => Command::new("unshare"),
        };
        let mut command = command;
        let mut child = command
            .args([
                "--mount",
                "--pid",
                "--uts",
                "--fork",
                "--kill-child",
                "--propagation",
                "private",
                "sh",
                "-c",
                SETUP,
            ])
            .env("PVX_ROOT", &root)
            .env("PVX_NAME", name)
            .env("PVX_CMD", cmd)
            .env("PVX_BINDS", binds.join(" "))
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn unshare (util-linux)");
        let upid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        // The forked child of unshare is the container's init; it is ready
        // once it has chrooted (its root is no longer the host's).
        let pid = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("container {name} exited during setup: {status}");
            }
            assert!(Instant::now() < deadline, "container {name} did not start");
            // The first descendant (unshare's child, or nsenter's
            // grandchild in a sandbox) that has chrooted.
            let mut parents = vec![upid as i32];
            let mut found = None;
            for _ in 0..3 {
                let kids: Vec<i32> = parents.iter().flat_map(|p| children_of(*p)).collect();
                found = kids.iter().copied().find(|pid| {
                    std::fs::read_link(format!("/proc/{pid}/root"))
                        .is_ok_and(|r| r != Path::new("/"))
                });
                if found.is_some() {
                    break;
                }
                parents = kids;
            }
            if let Some(pid) = found {
                break pid;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Container {
            name: name.to_string(),
            pid,
            unshare: child,
            _dir: dir,
        }
    }

    /// A path inside this container, as reachable from the host.
    pub fn path(&self, inside: impl AsRef<Path>) -> PathBuf {
        let inside = inside.as_ref();
        let rel = inside.strip_prefix("/").unwrap_or(inside);
        PathBuf::from(format!("/proc/{}/root", self.pid)).join(rel)
    }

    /// A listening socket at `inside`, created by a process in this
    /// container's mount and pid namespaces (as a server in it would be),
    /// to be served by the test. Parents are created; a stale file is
    /// removed. Keep the [`Holder`](crate::listen::Holder) while the socket
    /// is used. Needs a tokio runtime.
    pub fn listen(&self, inside: &str) -> (tokio::net::UnixListener, crate::listen::Holder) {
        let (l, holder) = self.listen_std(inside, 128);
        l.set_nonblocking(true).expect("nonblocking listener");
        let l = tokio::net::UnixListener::from_std(l).expect("register listener");
        (l, holder)
    }

    /// [`Container::listen`] as a blocking std listener with `backlog`.
    pub fn listen_std(
        &self,
        inside: &str,
        backlog: i32,
    ) -> (std::os::unix::net::UnixListener, crate::listen::Holder) {
        let host = self.path(inside);
        if let Some(dir) = host.parent() {
            std::fs::create_dir_all(dir).expect("create the socket's directory");
        }
        let _ = std::fs::remove_file(&host);
        crate::listen::listen_in(self.pid, Path::new(inside), backlog)
            .unwrap_or_else(|e| panic!("listen in container {}: {e}", self.name))
    }

    /// A command that runs `sh -c script` inside the container (all of its
    /// namespaces, its root, cwd `/`).
    pub fn command(&self, script: &str) -> Command {
        let mut c = Command::new("nsenter");
        c.args([
            "-t",
            &self.pid.to_string(),
            "-m",
            "-u",
            "-p",
            "-r",
            "-w",
            "--",
        ])
        .args(["/bin/sh", "-c", script]);
        c
    }

    /// Run `script` inside the container and collect its output.
    pub fn exec(&self, script: &str) -> Output {
        self.command(script).output().expect("run nsenter")
    }

    /// Run `script` inside the container; panics with its stderr unless it
    /// succeeds.
    pub fn sh(&self, script: &str) {
        let out = self.exec(script);
        assert!(
            out.status.success(),
            "{script}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Wait until `inside` exists in the container.
    pub fn wait_for(&self, inside: impl AsRef<Path>, within: Duration) -> bool {
        let p = self.path(inside);
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if std::fs::symlink_metadata(&p).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    /// Whether the container's init still runs.
    pub fn alive(&mut self) -> bool {
        matches!(self.unshare.try_wait(), Ok(None))
    }

    /// Kill the whole container and wait for it.
    pub fn kill(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // SIGKILL to a pid namespace's init kills every process in it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.unshare.kill();
        let _ = self.unshare.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Path::new(&format!("/proc/{}/ns/mnt", self.pid)).exists() && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The child processes of `ppid` (scanning /proc: this kernel has no
/// `/proc/<pid>/task/<tid>/children`).
pub fn children_of(ppid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the parenthesised command: state, ppid, ...
        let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
            continue;
        };
        if rest.split_whitespace().nth(1) == Some(&ppid.to_string()) {
            out.push(pid);
        }
    }
    out
}

/// Read everything a child printed (helper for spawned commands).
pub fn read_all(mut r: impl Read) -> String {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    s
}
