//! What the whole-daemon tests share: the real `pv-xconnect` binary under
//! test ([`Daemon`]), and the small client/server helpers they all use.
//! Each test file includes it with `mod common;` and uses what it needs.

#![allow(dead_code)]

use std::io::Read;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pv_testkit::sandbox::PidSandbox;
use pv_testkit::{assert_eventually, Container};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

pub const PROVIDER_SOCK: &str = "/run/example/raw.sock";

/// The daemon binary, running; killed on drop.
pub struct Daemon {
    pub child: Child,
    log: PathBuf,
    status: PathBuf,
    /// Started inside a sandbox: `child` is nsenter, the daemon its child.
    sandboxed: bool,
    _dir: tempfile::TempDir,
}

/// Where the daemon under test reads its graph.
pub enum GraphFrom<'a> {
    Ctrl(&'a Path),
    File(&'a Path),
}

/// How to run it.
#[derive(Default)]
pub struct Opts<'a> {
    /// Run under this RLIMIT_NOFILE (soft and hard, prlimit).
    pub nofile: Option<u32>,
    /// Extra command-line arguments.
    pub args: Vec<String>,
    /// Run inside this pid namespace.
    pub sandbox: Option<&'a PidSandbox>,
    /// `--interval-ms` (default 200).
    pub interval_ms: Option<u64>,
}

impl Daemon {
    pub fn start(ctrl: &Path) -> Daemon {
        Self::spawn(GraphFrom::Ctrl(ctrl), None)
    }

    /// With `nofile`, the daemon runs under that RLIMIT_NOFILE (prlimit).
    pub fn start_limited(ctrl: &Path, nofile: Option<u32>) -> Daemon {
        Self::spawn(GraphFrom::Ctrl(ctrl), nofile)
    }

    pub fn spawn(source: GraphFrom<'_>, nofile: Option<u32>) -> Daemon {
        Self::spawn_with(
            source,
            Opts {
                nofile,
                ..Opts::default()
            },
        )
    }

    pub fn spawn_with(source: GraphFrom<'_>, opts: Opts<'_>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("daemon.log");
        let status = dir.path().join("status.sock");
        let bin = env!("CARGO_BIN_EXE_pv-xconnect");
        let mut cmd = match (opts.nofile, opts.sandbox) {
            (Some(n), None) => {
                let mut c = Command::new(pv_testkit::require_tool("prlimit"));
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(bin);
                c
            }
            (None, Some(s)) => s.command(bin),
            (None, None) => Command::new(bin),
            (Some(_), Some(_)) => panic!("nofile and sandbox together are not supported"),
        };
        match source {
            GraphFrom::Ctrl(path) => cmd.arg("--ctrl-socket").arg(path),
            GraphFrom::File(path) => cmd.arg("--graph-file").arg(path),
        };
        let child = cmd
            .arg("--interval-ms")
            .arg(opts.interval_ms.unwrap_or(200).to_string())
            .arg("--status-socket")
            .arg(&status)
            .args(&opts.args)
            .env("RUST_LOG", "info")
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start pv-xconnect");
        Daemon {
            child,
            log,
            status,
            sandboxed: opts.sandbox.is_some(),
            _dir: dir,
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The daemon's own (host) pid.
    pub fn pid(&self) -> i32 {
        if !self.sandboxed {
            return self.child.id() as i32;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(p) = pv_testkit::container::children_of(self.child.id() as i32).first() {
                return *p;
            }
            assert!(Instant::now() < deadline, "daemon not found in the sandbox");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Descriptors the daemon has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    pub fn status(&self) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_pv-xconnect"))
            .arg("--status-socket")
            .arg(&self.status)
            .arg("status")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// The status line of link `name`.
    pub fn status_of(&self, name: &str) -> String {
        self.status()
            .lines()
            .find(|l| l.contains(&format!(" name={name} ")))
            .unwrap_or("")
            .to_string()
    }

    /// SIGTERM and wait; returns whether it exited successfully.
    pub fn terminate(mut self) -> bool {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.sandboxed {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(self.pid()),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A host listener counting the connections and bytes that reach it.
pub fn host_listener(dir: &Path) -> (PathBuf, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let host_sock = dir.join("host.sock");
    let host = std::os::unix::net::UnixListener::bind(&host_sock).unwrap();
    let (accepted, bytes) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    {
        let (accepted, bytes) = (accepted.clone(), bytes.clone());
        std::thread::spawn(move || {
            for mut s in host.incoming().flatten() {
                accepted.fetch_add(1, Ordering::SeqCst);
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got);
                bytes.fetch_add(got.len(), Ordering::SeqCst);
            }
        });
    }
    (host_sock, accepted, bytes)
}

/// Wait for link `name`'s status line to contain `needle`.
pub async fn wait_status(d: &Daemon, name: &str, needle: &str) {
    assert_eventually!(
        d.status_of(name).contains(needle),
        "status of {name} never said {needle:?}: {}\nlogs:\n{}",
        d.status(),
        d.logs()
    );
}

/// A graph file a daemon follows (`--graph-file`).
pub struct Graph {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Graph {
    pub fn new(links: &[serde_json::Value]) -> Graph {
        let dir = tempfile::tempdir().unwrap();
        let g = Graph {
            path: dir.path().join("graph.json"),
            _dir: dir,
        };
        g.set(links);
        g
    }

    pub fn set(&self, links: &[serde_json::Value]) {
        // Write then rename: the daemon never reads half a file.
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::Value::from(links.to_vec()).to_string()).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }

    /// A daemon following this file.
    pub fn daemon(&self, opts: Opts<'_>) -> Daemon {
        Daemon::spawn_with(GraphFrom::File(&self.path), opts)
    }
}

/// One unix link from `c` to `p`'s [`PROVIDER_SOCK`] (or `socket`) at
/// `target`, as a graph entry; pids as given (the graph's view).
pub fn entry(
    name: &str,
    (c, cpid): (&str, i32),
    (p, ppid): (&str, i32),
    target: &str,
    socket: &str,
) -> serde_json::Value {
    serde_json::json!({
        "consumer": c, "consumer_pid": cpid, "provider": p, "provider_pid": ppid,
        "name": name, "type": "unix", "role": "any", "interface": "unix",
        "target": target, "socket": socket,
    })
}

/// An echo server on a listener created inside `p` at `inside`.
pub fn echo_provider_at(p: &Container, inside: &str) {
    let (l, holder) = p.listen(inside);
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
}

pub fn echo_provider(p: &Container) {
    echo_provider_at(p, PROVIDER_SOCK)
}

pub async fn wait_until(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

pub fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

/// A round trip through an echo link.
pub async fn echo_ok(path: &Path) -> bool {
    let Ok(mut s) = UnixStream::connect(path).await else {
        return false;
    };
    if s.write_all(b"ping\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut buf)).await,
        Ok(Ok(_))
    ) && &buf == b"ping\n"
}

/// A device-node link (`drm`, `input`): the provider's `device` becomes
/// `target` in the consumer.
pub fn node_spec(
    kind: pv_xconnect::graph::ServiceType,
    name: &str,
    (c, p): (&Container, &Container),
    target: &str,
    device: &str,
) -> Arc<pv_xconnect::graph::LinkSpec> {
    pv_xconnect::test_util::LinkSpecBuilder::new(kind)
        .name(name)
        .consumer(&c.name, c.pid)
        .provider(&p.name, p.pid)
        .target(target)
        .socket(device)
        .arc()
}

/// `path` (not followed) is a character device `major:minor` with `mode`
/// and owner `(uid, gid)`.
pub fn assert_char_node(path: &Path, (major, minor): (u64, u64), mode: u32, owner: (u32, u32)) {
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        md.file_type().is_char_device(),
        "{}: not a char device",
        path.display()
    );
    let rdev = md.rdev();
    assert_eq!(
        (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev)),
        (major, minor),
        "{}: device number",
        path.display()
    );
    assert_eq!(
        md.mode() & 0o7777,
        mode,
        "{}: the provider's mode",
        path.display()
    );
    assert_eq!(
        (md.uid(), md.gid()),
        owner,
        "{}: the provider's owner",
        path.display()
    );
}
