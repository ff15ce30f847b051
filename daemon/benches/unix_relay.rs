//! Unix relay benchmark (run as root: `cargo bench -p pv-xconnect --bench
//! unix_relay`). Starts the real daemon binary with a graph file whose
//! consumer and provider are this process (host namespace), so the relay
//! path is exactly the daemon's: injected listener -> session -> provider
//! socket resolved inside the provider's root. Every figure is measured
//! against a direct connection to the provider socket in the same run.
//!
//! Prints: throughput of 64 KiB writes, 1-byte round-trip p50/p99, new
//! connections per second (connect, 1-byte echo, close), the daemon's idle
//! RSS and its RSS with 100 links, and the daemon binary's size.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 1 << 30;
const RTT_ITERS: usize = 20_000;
const CONNS: usize = 5_000;

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let me = std::process::id();
    let provider = dir.path().join("provider.sock");
    let graph = dir.path().join("graph.json");
    spawn_server(&provider);

    std::fs::write(&graph, "[]").unwrap();
    let mut daemon = Daemon::start(&graph, dir.path());
    std::thread::sleep(Duration::from_millis(1500));
    let idle_rss = daemon.rss_kib();

    // One link for the traffic figures.
    let target = dir.path().join("consumer/relay.sock");
    std::fs::write(&graph, graph_json(me, &[(&target, &provider)])).unwrap();
    assert!(wait_for(&target, Duration::from_secs(10)), "link injected");

    let direct_tp = throughput(&provider);
    let relay_tp = throughput(&target);
    let (d50, d99) = rtt(&provider);
    let (r50, r99) = rtt(&target);
    let direct_cps = conns_per_sec(&provider);
    let relay_cps = conns_per_sec(&target);

    // 100 links.
    let targets: Vec<PathBuf> = (0..100)
        .map(|i| dir.path().join(format!("consumer/l{i}.sock")))
        .collect();
    let pairs: Vec<(&PathBuf, &PathBuf)> = targets.iter().map(|t| (t, &provider)).collect();
    std::fs::write(&graph, graph_json(me, &pairs)).unwrap();
    for t in &targets {
        assert!(wait_for(t, Duration::from_secs(20)), "100 links injected");
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_100 = daemon.rss_kib();
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_pv-xconnect"))
        .map(|m| m.len())
        .unwrap_or(0);
    daemon.stop();

    println!("unix relay benchmark (daemon binary, same run, same machine)");
    println!(
        "throughput 64 KiB writes: direct {direct_tp:.0} MiB/s, relay {relay_tp:.0} MiB/s ({:.2}x)",
        relay_tp / direct_tp
    );
    println!(
        "1-byte RTT: direct p50 {d50:.1} us p99 {d99:.1} us; relay p50 {r50:.1} us p99 {r99:.1} us ({:.2}x p50)",
        r50 / d50
    );
    println!("new connections/s: direct {direct_cps:.0}, relay {relay_cps:.0}");
    println!(
        "daemon RSS: idle {:.2} MiB, 100 links {:.2} MiB",
        idle_rss as f64 / 1024.0,
        rss_100 as f64 / 1024.0
    );
    println!(
        "binary size: {:.2} MiB ({})",
        size as f64 / 1048576.0,
        env!("CARGO_BIN_EXE_pv-xconnect")
    );
}

struct Daemon(Child);

impl Daemon {
    fn start(graph: &Path, dir: &Path) -> Daemon {
        let child = Command::new(env!("CARGO_BIN_EXE_pv-xconnect"))
            .arg("--graph-file")
            .arg(graph)
            .args(["--interval-ms", "200"])
            .arg("--status-socket")
            .arg(dir.join("status.sock"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start pv-xconnect");
        Daemon(child)
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.0.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn graph_json(pid: u32, links: &[(&PathBuf, &PathBuf)]) -> String {
    let items: Vec<String> = links
        .iter()
        .enumerate()
        .map(|(i, (target, socket))| {
            format!(
                r#"{{"consumer":"bench","consumer_pid":{pid},"provider":"bench-srv","provider_pid":{pid},"name":"raw{i}","type":"unix","role":"any","interface":"unix","target":"{}","socket":"{}"}}"#,
                target.display(),
                socket.display()
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

fn wait_for(p: &Path, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if p.exists() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Provider: first byte selects the mode: `S` sink (count bytes, answer 8
/// bytes of count at EOF), anything else echo.
fn spawn_server(path: &Path) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || serve(s));
        }
    });
}

fn serve(mut s: UnixStream) {
    let mut buf = vec![0u8; 256 * 1024];
    let Ok(n) = s.read(&mut buf) else { return };
    if n == 0 {
        return;
    }
    if buf[0] == b'S' {
        let mut total = (n - 1) as u64;
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n as u64,
            }
        }
        let _ = s.write_all(&total.to_le_bytes());
    } else {
        if s.write_all(&buf[..n]).is_err() {
            return;
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

fn throughput(path: &Path) -> f64 {
    let mut s = UnixStream::connect(path).unwrap();
    let chunk = vec![0x5au8; CHUNK];
    s.write_all(b"S").unwrap();
    let t0 = Instant::now();
    let mut sent = 0;
    while sent < TOTAL {
        s.write_all(&chunk).unwrap();
        sent += CHUNK;
    }
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut count = [0u8; 8];
    s.read_exact(&mut count).unwrap();
    let secs = t0.elapsed().as_secs_f64();
    assert_eq!(u64::from_le_bytes(count), TOTAL as u64, "all bytes arrived");
    TOTAL as f64 / 1048576.0 / secs
}

fn rtt(path: &Path) -> (f64, f64) {
    let mut s = UnixStream::connect(path).unwrap();
    let mut b = [0u8; 1];
    let mut samples = Vec::with_capacity(RTT_ITERS);
    for i in 0..RTT_ITERS + 1000 {
        let t0 = Instant::now();
        s.write_all(b"p").unwrap();
        s.read_exact(&mut b).unwrap();
        if i >= 1000 {
            samples.push(t0.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    (
        samples[samples.len() / 2],
        samples[samples.len() * 99 / 100],
    )
}

fn conns_per_sec(path: &Path) -> f64 {
    let t0 = Instant::now();
    let mut b = [0u8; 1];
    for _ in 0..CONNS {
        let mut s = UnixStream::connect(path).unwrap();
        s.write_all(b"c").unwrap();
        s.read_exact(&mut b).unwrap();
    }
    CONNS as f64 / t0.elapsed().as_secs_f64()
}
