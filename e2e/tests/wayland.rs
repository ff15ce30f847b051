//! `wayland` mediation against real peers: our example compositor and
//! client, weston (headless) with wayland-info and weston-simple-shm from
//! Debian, raw wire clients for filtering and malformed input, and a plain
//! byte splice as the control that shows fd passing is what makes shm work.
//!
//! Links are served on host paths by the daemon's accept loop ([`Proxy`]):
//! the provider is reached with `provider_pid` 0, the consumer side is a
//! temp listener.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream as StdStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pv_e2e::Proxy;
use pv_testkit::require_tool;
use pv_xconnect::graph::ServiceType;
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;
use tokio::net::UnixListener;
use tokio::sync::{Mutex, MutexGuard};

/// Tests share the process fd table (the churn test counts it): one at a time.
async fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::const_new(());
    LOCK.lock().await
}

/// A wayland link served at `at`, relaying to the compositor at `upstream`.
async fn proxy(at: &Path, upstream: &Path, interface: &str) -> Proxy {
    let spec = LinkSpecBuilder::new(ServiceType::Wayland)
        .consumer("test-client", 0)
        .provider("test-compositor", 0)
        .name("wayland-0")
        .interface(interface)
        .target(at)
        .socket(upstream)
        .arc();
    Proxy::start(spec).await
}

/// The control: a byte splice that drops ancillary data, like upstream's C relay.
async fn plain_splice(at: &Path, upstream: PathBuf) -> Shutdown {
    let listener = UnixListener::bind(at).expect("bind splice");
    let stop = Shutdown::new();
    let s = stop.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = s.cancelled() => break,
                r = listener.accept() => {
                    let Ok((mut a, _)) = r else { break };
                    let up = upstream.clone();
                    tokio::spawn(async move {
                        if let Ok(mut b) = tokio::net::UnixStream::connect(up).await {
                            let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
                        }
                    });
                }
            }
        }
    });
    stop
}

fn wait_for_path(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Kills the child on drop so a failing test leaves no compositor behind.
struct Reaper(Child);
impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Our compositor on `sock`; its stdout lines arrive on the channel.
fn our_compositor(sock: &Path) -> (Reaper, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_e2e-wayland-server"))
        .arg("--socket")
        .arg(sock)
        .stdout(Stdio::piped())
        .spawn()
        .expect("start compositor");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_for_path(sock);
    (Reaper(child), rx)
}

/// Weston 10, headless, socket `<runtime>/wl-test`.
fn weston(runtime: &Path) -> (Reaper, PathBuf) {
    let weston = require_tool("weston");
    std::fs::create_dir_all(runtime).expect("runtime dir");
    let mut perms = std::fs::metadata(runtime).expect("meta").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o700);
    std::fs::set_permissions(runtime, perms).expect("chmod runtime");
    let child = Command::new(weston)
        .args([
            "--backend=headless-backend.so",
            "--socket=wl-test",
            "--idle-time=0",
            "--no-config",
        ])
        .env("XDG_RUNTIME_DIR", runtime)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start weston");
    let sock = runtime.join("wl-test");
    wait_for_path(&sock);
    (Reaper(child), sock)
}

async fn run_client(display: &Path) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-wayland-client"))
        .args(["--once", "--timeout", "5"])
        .env("WAYLAND_DISPLAY", display)
        .output()
        .await
        .expect("run client")
}

fn frame_of(out: &std::process::Output) -> Option<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("wayland OK frame=").map(str::to_owned))
}

fn expect_commit(rx: &std::sync::mpsc::Receiver<String>, sum: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("compositor never logged checksum {sum}"));
        if line.contains("commit buffer") {
            assert!(
                line.ends_with(&format!("checksum={sum}")),
                "compositor saw different pixels: {line} (client drew {sum})"
            );
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_client_frame_reaches_our_compositor_intact() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (_comp, log) = our_compositor(&dir.path().join("w0"));
    let s = proxy(&dir.path().join("proxy"), &dir.path().join("w0"), "wayland").await;
    let out = run_client(&dir.path().join("proxy")).await;
    assert!(out.status.success(), "client failed: {out:?}");
    let sum = frame_of(&out).expect("client printed its frame");
    expect_commit(&log, &sum);
    assert!(s.stats.bytes() > 100);
    s.stop();
}

/// Run weston-simple-shm against `display` for a second with protocol
/// logging; returns (still running at the end, frames presented, stderr).
async fn simple_shm(display: &Path) -> (bool, usize, String) {
    let mut child = tokio::process::Command::new(require_tool("weston-simple-shm"))
        .env("WAYLAND_DISPLAY", display)
        .env("WAYLAND_DEBUG", "client")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("weston-simple-shm");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = tokio::spawn(async move {
        let mut s = String::new();
        let _ = tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s).await;
        s
    });
    let exited = tokio::time::timeout(Duration::from_millis(1500), child.wait()).await;
    let running = exited.is_err();
    let _ = child.kill().await;
    let log = reader.await.unwrap_or_default();
    // A frame callback firing is the compositor presenting a frame (sync
    // callbacks are wl_callbacks too, so only those created by
    // wl_surface.frame count).
    let mut pending = std::collections::HashSet::new();
    let mut frames = 0;
    for line in log.lines() {
        if let Some(rest) = line.split("frame(new id wl_callback@").nth(1) {
            pending.insert(rest.trim_end_matches(')').to_owned());
        } else if let Some(rest) = line.split("] wl_callback@").nth(1) {
            if let Some((id, _)) = rest.split_once(".done(") {
                if pending.remove(id) {
                    frames += 1;
                }
            }
        }
    }
    (running, frames, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weston_clients_work_through_proxy_but_not_through_a_byte_splice() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (_weston, sock) = weston(&dir.path().join("xdg"));
    let s = proxy(&dir.path().join("proxy"), &sock, "").await;

    let info = tokio::process::Command::new(require_tool("wayland-info"))
        .env("WAYLAND_DISPLAY", dir.path().join("proxy"))
        .output()
        .await
        .expect("wayland-info");
    let text = String::from_utf8_lossy(&info.stdout);
    let err = String::from_utf8_lossy(&info.stderr);
    assert!(info.status.success(), "wayland-info failed: {err}");
    assert!(!err.contains("error"), "wayland-info: {err}");
    for global in [
        "wl_compositor",
        "wl_shm",
        "xdg_wm_base",
        "wl_output",
        "weston_desktop_shell",
    ] {
        assert!(
            text.contains(&format!("'{global}'")),
            "{global} missing:\n{text}"
        );
    }
    // wl_output's details come from events on a bound object.
    assert!(text.contains("x: 0, y: 0"), "no output details:\n{text}");

    let (running, frames, log) = simple_shm(&dir.path().join("proxy")).await;
    assert!(
        running,
        "weston-simple-shm died through the proxy:\n{}",
        tail(&log)
    );
    assert!(
        !log.contains("wl_display@1.error"),
        "protocol error:\n{}",
        tail(&log)
    );
    assert!(
        frames >= 5,
        "only {frames} frames presented through the proxy"
    );
    eprintln!("proxy: weston-simple-shm presented {frames} frames in 1.5 s");

    // Control: the same client through a splice that drops fds.
    let stop = plain_splice(&dir.path().join("splice"), sock.clone()).await;
    let (running, frames, log) = simple_shm(&dir.path().join("splice")).await;
    eprintln!("splice: running={running} frames={frames}");
    assert!(
        !running && frames == 0 && log.contains("wl_display@1.error"),
        "weston-simple-shm should fail without fd passing (running={running}, frames={frames}):\n{}",
        tail(&log)
    );
    stop.cancel();

    // Filtering against weston: wayland-info sees (and binds) only the
    // listed globals, at versions the proxy understands.
    let f = proxy(
        &dir.path().join("filtered"),
        &sock,
        "wl_compositor,wl_shm,wl_output,xdg_wm_base",
    )
    .await;
    let info = tokio::process::Command::new(require_tool("wayland-info"))
        .env("WAYLAND_DISPLAY", dir.path().join("filtered"))
        .output()
        .await
        .expect("wayland-info");
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let shown: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("interface: '"))
        .filter_map(|l| l.split('\'').next())
        .collect();
    let mut sorted = shown.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        ["wl_compositor", "wl_output", "wl_shm", "xdg_wm_base"]
    );
    assert!(
        text.contains("x: 0, y: 0"),
        "bound wl_output works:\n{text}"
    );
    f.stop();
    s.stop();
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Minimal raw Wayland client for what a library would refuse to send.
struct Raw {
    sock: StdStream,
}

impl Raw {
    fn connect(p: &Path) -> Self {
        let sock = StdStream::connect(p).expect("connect raw");
        sock.set_read_timeout(Some(Duration::from_secs(5))).ok();
        Self { sock }
    }

    fn send(&mut self, object: u32, opcode: u16, args: &[u8]) -> std::io::Result<()> {
        let size = (8 + args.len()) as u32;
        let mut m = Vec::new();
        m.extend_from_slice(&object.to_ne_bytes());
        m.extend_from_slice(&((size << 16) | u32::from(opcode)).to_ne_bytes());
        m.extend_from_slice(args);
        self.sock.write_all(&m)
    }

    /// Next event as (object, opcode, body); None at EOF.
    fn event(&mut self) -> Option<(u32, u16, Vec<u8>)> {
        let mut h = [0u8; 8];
        self.sock.read_exact(&mut h).ok()?;
        let obj = u32::from_ne_bytes([h[0], h[1], h[2], h[3]]);
        let w = u32::from_ne_bytes([h[4], h[5], h[6], h[7]]);
        let mut body = vec![0u8; (w >> 16) as usize - 8];
        self.sock.read_exact(&mut body).ok()?;
        Some((obj, (w & 0xffff) as u16, body))
    }

    /// get_registry as id 2, sync as id 3; returns the advertised globals.
    fn globals(&mut self) -> Vec<(u32, String, u32)> {
        self.send(1, 1, &2u32.to_ne_bytes()).unwrap();
        self.send(1, 0, &3u32.to_ne_bytes()).unwrap();
        let mut out = Vec::new();
        while let Some((obj, op, body)) = self.event() {
            if obj == 2 && op == 0 {
                let name = u32::from_ne_bytes(body[0..4].try_into().unwrap());
                let len = u32::from_ne_bytes(body[4..8].try_into().unwrap()) as usize;
                let iface = String::from_utf8_lossy(&body[8..8 + len - 1]).into_owned();
                let vpos = 8 + ((len + 3) & !3);
                let ver = u32::from_ne_bytes(body[vpos..vpos + 4].try_into().unwrap());
                out.push((name, iface, ver));
            }
            if obj == 3 {
                break;
            }
        }
        out
    }

    fn bind(&mut self, name: u32, iface: &str, version: u32, id: u32) {
        let mut a = Vec::new();
        a.extend_from_slice(&name.to_ne_bytes());
        a.extend_from_slice(&((iface.len() + 1) as u32).to_ne_bytes());
        a.extend_from_slice(iface.as_bytes());
        a.resize(a.len() + 4 - iface.len() % 4, 0);
        a.extend_from_slice(&version.to_ne_bytes());
        a.extend_from_slice(&id.to_ne_bytes());
        self.send(2, 0, &a).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filter_hides_globals_and_refuses_binding_them() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (_comp, _log) = our_compositor(&dir.path().join("w0"));
    let s = proxy(
        &dir.path().join("proxy"),
        &dir.path().join("w0"),
        "wl_compositor, wl_shm",
    )
    .await;
    let (proxy_path, direct_path) = (dir.path().join("proxy"), dir.path().join("w0"));
    let (seen, direct) = tokio::task::spawn_blocking(move || {
        let seen = Raw::connect(&proxy_path).globals();
        let direct = Raw::connect(&direct_path).globals();
        (seen, direct)
    })
    .await
    .unwrap();
    let names: Vec<&str> = seen.iter().map(|g| g.1.as_str()).collect();
    assert_eq!(names, ["wl_compositor", "wl_shm"], "filtered registry");
    let hidden = direct
        .iter()
        .find(|g| g.1 == "xdg_wm_base")
        .expect("compositor offers xdg_wm_base")
        .clone();

    // Binding the hidden global by its real name: protocol error, closed.
    let p = dir.path().join("proxy");
    let (err, eof) = tokio::task::spawn_blocking(move || {
        let mut raw = Raw::connect(&p);
        raw.globals();
        raw.bind(hidden.0, &hidden.1, 1, 4);
        // Skip the sync callback's delete_id.
        let err = std::iter::from_fn(|| raw.event()).find(|e| (e.0, e.1) != (1, 1));
        let eof = raw.event().is_none();
        (err, eof)
    })
    .await
    .unwrap();
    let (obj, op, body) = err.expect("an error event before close");
    assert_eq!((obj, op), (1, 0), "wl_display.error expected");
    assert!(String::from_utf8_lossy(&body).contains("invalid global xdg_wm_base"));
    assert!(eof, "connection closed after the error");

    // Our client needs xdg_wm_base, so it fails cleanly; the compositor is fine.
    let out = run_client(&dir.path().join("proxy")).await;
    assert!(!out.status.success());
    let direct = run_client(&dir.path().join("w0")).await;
    assert!(direct.status.success(), "compositor unaffected");
    s.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_client_is_cut_off_alone() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (_comp, log) = our_compositor(&dir.path().join("w0"));
    let s = proxy(&dir.path().join("proxy"), &dir.path().join("w0"), "wayland").await;
    let p = dir.path().join("proxy");
    let closed = tokio::task::spawn_blocking(move || {
        let mut bad = Raw::connect(&p);
        // Size 4 is smaller than a header: unparseable.
        bad.sock.write_all(&[1, 0, 0, 0, 0, 0, 4, 0]).unwrap();
        let err = bad.event();
        (err, bad.event().is_none())
    })
    .await
    .unwrap();
    let (err, closed) = closed;
    let (obj, op, body) = err.expect("a protocol error first");
    assert_eq!((obj, op), (1, 0));
    assert!(String::from_utf8_lossy(&body).contains("malformed"));
    assert!(closed, "malformed client must be disconnected");
    let out = run_client(&dir.path().join("proxy")).await;
    let sum = frame_of(&out).expect("a well-behaved client still works");
    expect_commit(&log, &sum);
    s.stop();
}

/// Connect, read the registry, pass an fd with a half-written message, and
/// disappear without a goodbye.
fn vanish(p: &Path) {
    let mut raw = Raw::connect(p);
    raw.globals();
    let f = tempfile::tempfile().unwrap();
    let _ = nix::sys::socket::sendmsg::<()>(
        std::os::fd::AsRawFd::as_raw_fd(&raw.sock),
        &[std::io::IoSlice::new(&[1, 0, 0, 0])],
        &[nix::sys::socket::ControlMessage::ScmRights(&[
            std::os::fd::AsRawFd::as_raw_fd(&f),
        ])],
        nix::sys::socket::MsgFlags::empty(),
        None,
    );
}

fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_vanishing_clients_leave_no_fds_behind() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let (_comp, log) = our_compositor(&dir.path().join("w0"));
    let s = proxy(&dir.path().join("proxy"), &dir.path().join("w0"), "wayland").await;
    // Warm up (lazy tables, runtime threads) before the baseline.
    let out = run_client(&dir.path().join("proxy")).await;
    assert!(out.status.success());
    let baseline = fd_count();
    // Five waves of 20 clients at once, each vanishing mid-session while
    // a well-behaved client keeps working.
    for _wave in 0..5 {
        let p = dir.path().join("proxy");
        let churn = tokio::task::spawn_blocking(move || {
            let threads: Vec<_> = (0..20)
                .map(|_| {
                    let p = p.clone();
                    std::thread::spawn(move || vanish(&p))
                })
                .collect();
            threads.into_iter().all(|t| t.join().is_ok())
        });
        let out = run_client(&dir.path().join("proxy")).await;
        let sum = frame_of(&out).expect("client works during churn");
        expect_commit(&log, &sum);
        assert!(churn.await.unwrap(), "a churn client panicked");
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while fd_count() > baseline && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        fd_count() <= baseline,
        "fds leaked: {} now, {baseline} before",
        fd_count()
    );
    s.stop();
}

/// One recvmsg: (offset of its first byte in the stream, length, inodes of
/// the fds that came with it).
type Chunk = (usize, usize, Vec<u64>);

// Received fds arrive as raw numbers: taking ownership needs `unsafe`.
#[allow(unsafe_code)]
fn recv_chunks(sock: &StdStream, total: usize) -> Vec<Chunk> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let mut chunks = Vec::new();
    let mut got = 0;
    let mut buf = vec![0u8; 4096];
    while got < total {
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 32]);
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let mut inodes = Vec::new();
        for c in msg.cmsgs().expect("cmsgs") {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for fd in fds {
                    // SAFETY: just received, owned by nobody else.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    inodes.push(nix::sys::stat::fstat(&fd).expect("fstat").st_ino);
                }
            }
        }
        assert!(msg.bytes > 0, "peer closed early");
        chunks.push((got, msg.bytes, inodes));
        got += msg.bytes;
    }
    chunks
}

fn send_with(sock: &StdStream, bytes: &[u8], fds: &[&std::fs::File]) {
    use std::os::fd::AsRawFd;
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let n = nix::sys::socket::sendmsg::<()>(
        sock.as_raw_fd(),
        &[std::io::IoSlice::new(bytes)],
        &[nix::sys::socket::ControlMessage::ScmRights(&raw)],
        nix::sys::socket::MsgFlags::empty(),
        None,
    )
    .expect("sendmsg");
    assert_eq!(n, bytes.len());
}

fn ino(f: &std::fs::File) -> u64 {
    std::os::unix::fs::MetadataExt::ino(&f.metadata().unwrap())
}

/// The chunk that carried fd `inode` starts at or before `msg_at`, contains
/// it, and ends at `next` (where the next fd-carrying message begins).
fn assert_rides_with(chunks: &[Chunk], inode: u64, msg_at: usize, next: usize) {
    let (start, len, _) = chunks
        .iter()
        .find(|c| c.2.contains(&inode))
        .unwrap_or_else(|| panic!("fd never arrived: {chunks:?}"));
    assert!(
        *start <= msg_at && msg_at < start + len && start + len == next,
        "fd for the message at {msg_at} came with bytes {start}..{} ({chunks:?})",
        start + len
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fd_rides_with_its_own_message_both_ways() {
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let comp_path = dir.path().join("raw-compositor");
    let listener = std::os::unix::net::UnixListener::bind(&comp_path).unwrap();
    let s = proxy(&dir.path().join("proxy"), &comp_path, "wayland").await;
    let p = dir.path().join("proxy");
    tokio::task::spawn_blocking(move || {
        let client = StdStream::connect(&p).unwrap();
        let (server, _) = listener.accept().unwrap();
        client.set_read_timeout(Some(Duration::from_secs(5))).ok();
        server.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let w = |v: &[u32]| v.iter().flat_map(|x| x.to_ne_bytes()).collect::<Vec<u8>>();
        let hdr = |obj: u32, op: u32, body: usize| w(&[obj, (((8 + body) as u32) << 16) | op]);
        let bind = |name: u32, iface: &str, id: u32| {
            let mut b = w(&[name, iface.len() as u32 + 1]);
            b.extend_from_slice(iface.as_bytes());
            b.resize(b.len() + 4 - iface.len() % 4, 0);
            b.extend_from_slice(&w(&[1, id]));
            let mut m = hdr(2, 0, b.len());
            m.extend_from_slice(&b);
            m
        };
        // Requests, all in one sendmsg with three fds.
        let mut req = hdr(1, 1, 4);
        req.extend_from_slice(&w(&[2])); // get_registry -> 2
        req.extend_from_slice(&bind(1, "wl_shm", 3));
        req.extend_from_slice(&bind(2, "wl_seat", 6));
        req.extend_from_slice(&hdr(6, 1, 4));
        req.extend_from_slice(&w(&[7])); // wl_seat.get_keyboard -> 7
        let pool1 = req.len();
        req.extend_from_slice(&hdr(3, 0, 8));
        req.extend_from_slice(&w(&[4, 100])); // create_pool(4, fd A, 100)
        let pool2 = req.len();
        req.extend_from_slice(&hdr(3, 0, 8));
        req.extend_from_slice(&w(&[5, 200])); // create_pool(5, fd B, 200)
        req.extend_from_slice(&hdr(1, 0, 4));
        req.extend_from_slice(&w(&[8])); // sync: no fds
        let unknown = req.len();
        req.extend_from_slice(&hdr(77, 3, 0)); // object the proxy never saw
        let end = req.len();
        let (a, b, c) = (
            tempfile::tempfile().unwrap(),
            tempfile::tempfile().unwrap(),
            tempfile::tempfile().unwrap(),
        );
        send_with(&client, &req, &[&a, &b, &c]);
        let chunks = recv_chunks(&server, end);
        assert_rides_with(&chunks, ino(&a), pool1, pool2);
        assert_rides_with(&chunks, ino(&b), pool2, unknown);
        // Unknown message: every fd still queued goes with it.
        assert_rides_with(&chunks, ino(&c), unknown, end);

        // Events: two wl_keyboard.keymap(format, fd, size), one sendmsg.
        let mut ev = hdr(7, 0, 8);
        ev.extend_from_slice(&w(&[1, 10]));
        let second = ev.len();
        ev.extend_from_slice(&hdr(7, 0, 8));
        ev.extend_from_slice(&w(&[1, 20]));
        let end = ev.len();
        let (d, e) = (tempfile::tempfile().unwrap(), tempfile::tempfile().unwrap());
        send_with(&server, &ev, &[&d, &e]);
        let chunks = recv_chunks(&client, end);
        assert_rides_with(&chunks, ino(&d), 0, second);
        assert_rides_with(&chunks, ino(&e), second, end);
    })
    .await
    .unwrap();
    s.stop();
}
