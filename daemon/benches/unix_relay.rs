//! Unix relay benchmark (run as root: `cargo bench -p pv-xconnect --bench
//! unix_relay`). Starts the real daemon binary with a graph file whose
//! consumer and provider are two containers (testkit's: own mount, pid and
//! uts namespaces and root); this process serves the provider's socket
//! (created inside the provider container, as the daemon checks) and is
//! the consumer's client through `/proc/<pid>/root`. So the relay path is
//! exactly the daemon's: injected listener -> session -> provider socket
//! resolved inside the provider's root, listener verified. Every figure is
//! measured against a direct connection to the provider socket (also
//! through `/proc/<pid>/root`) in the same run.
//!
//! `PVX_BENCH_DAEMON=<path>` benchmarks another build of the daemon (e.g.
//! the previous commit's, for before/after ratios on a noisy machine).
//!
//! A second daemon, started with `--unix-passthrough`, binds the same
//! provider socket at another target of the same consumer: its figures
//! (nothing relays; the consumer's connect lands on the provider's socket
//! through the bind mount) are measured in the same interleaved rounds.
//!
//! socat (`UNIX-LISTEN:<sock>,fork UNIX-CONNECT:<provider>`, the relay a
//! user would pick instead), when on PATH, relays the same provider to the
//! same client in the same rounds; without it the socat column is left out
//! and says so.
//!
//! Prints: throughput of 64 KiB writes, 1-byte round-trip p50/p99 (and the
//! daemon's context switches per round trip), new
//! connections per second (connect, 1-byte echo, close), the daemon's idle
//! RSS, its RSS with 1 and 100 links (the latter split into heap and stacks
//! vs binary and files: code paged in by a link's first start counts too),
//! its open fds and threads (idle, 1 link,
//! 100 links), and the daemon binary's size. Traffic
//! figures are medians of alternating direct/relay/socat rounds. Lines
//! starting `peer-table:` (figure | peer/direct | ours/direct | ours/peer)
//! and `idle-pss:` are what `ci/bench-peers.sh` collects.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use pv_testkit::Container;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHUNK: usize = 64 * 1024;
const TOTAL: usize = 1 << 30;
const RTT_ITERS: usize = 20_000;
const CONNS: usize = 5_000;
const ROUNDS: usize = 5;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

const PROVIDER_SOCK: &str = "/run/bench/provider.sock";

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("graph.json");
    let consumer = Container::start("bench-consumer", "sleep infinity");
    let server = Container::start("bench-provider", "sleep infinity");
    let (listener, _holder) = server.listen_std(PROVIDER_SOCK, 128);
    spawn_server(listener);
    let provider = server.path(PROVIDER_SOCK);
    let pids = (consumer.pid, server.pid);

    std::fs::write(&graph, "[]").unwrap();
    let mut daemon = Daemon::start(&graph, dir.path());
    std::thread::sleep(Duration::from_millis(1500));
    let idle_rss = daemon.rss_kib();
    let idle_res = daemon.resources();

    // One link for the traffic figures.
    let inside = PathBuf::from("/run/pv/relay.sock");
    let target = consumer.path(&inside);
    std::fs::write(&graph, graph_json(pids, &[&inside])).unwrap();
    assert!(
        pv_testkit::procstat::wait_for_path(&target, Duration::from_secs(10)),
        "link injected"
    );
    std::thread::sleep(Duration::from_millis(500));
    let one_res = daemon.resources();
    let one_rss = daemon.rss_kib();

    // The passthrough daemon, on a graph of its own (when the binary under
    // test has the flag).
    let pt_inside = PathBuf::from("/run/pv/passthrough.sock");
    let pt_target = consumer.path(&pt_inside);
    let mut pt_daemon = has_passthrough().then(|| {
        let pt_graph = dir.path().join("passthrough.json");
        std::fs::write(&pt_graph, graph_json(pids, &[&pt_inside])).unwrap();
        let pt_dir = dir.path().join("passthrough");
        std::fs::create_dir(&pt_dir).unwrap();
        let d = Daemon::start_with(&pt_graph, &pt_dir, &["--unix-passthrough"]);
        assert!(
            pv_testkit::procstat::wait_for_path(&pt_target, Duration::from_secs(10)),
            "passthrough link bound"
        );
        d
    });

    // The peer, started after the daemons' idle figures: its idle PSS with
    // its listener up, as the daemon's with its one link.
    let socat = Socat::start(&provider, dir.path());
    std::thread::sleep(Duration::from_millis(300));
    let daemon_pss = pv_testkit::procstat::pss_kib(daemon.0.id());
    let socat_pss = socat
        .as_ref()
        .map(|s| pv_testkit::procstat::pss_kib(s.child.id()));

    // On a 2-core machine client, relay and server compete for CPU and one
    // run can differ from the next by 2x: alternate direct and relay rounds
    // and report medians, with the spread.
    let (mut dt, mut rt, mut dcps, mut rcps) = (vec![], vec![], vec![], vec![]);
    let (mut d50s, mut d99s, mut r50s, mut r99s) = (vec![], vec![], vec![], vec![]);
    let mut rctxt = vec![];
    let (mut pt, mut p50s, mut p99s, mut pcps) = (vec![], vec![], vec![], vec![]);
    let (mut pt_ratios, mut p50_ratios, mut pcps_ratios) = (vec![], vec![], vec![]);
    let (mut st, mut s50s, mut scps) = (vec![], vec![], vec![]);
    let socat_path = socat.as_ref().map(|s| s.socket.clone());
    for _ in 0..ROUNDS {
        dt.push(throughput(&provider));
        rt.push(throughput(&target));
        if let Some(p) = &socat_path {
            st.push(throughput(p));
        }
        if pt_daemon.is_some() {
            pt.push(throughput(&pt_target));
        }
        let (a, b) = rtt(&provider);
        d50s.push(a);
        d99s.push(b);
        let before = daemon.ctxt();
        let (a, b) = rtt(&target);
        rctxt.push((daemon.ctxt() - before) as f64 / (RTT_ITERS + 1000) as f64);
        r50s.push(a);
        r99s.push(b);
        if pt_daemon.is_some() {
            let (a, b) = rtt(&pt_target);
            p50s.push(a);
            p99s.push(b);
        }
        if let Some(p) = &socat_path {
            s50s.push(rtt(p).0);
        }
        dcps.push(conns_per_sec(&provider));
        rcps.push(conns_per_sec(&target));
        if let Some(p) = &socat_path {
            scps.push(conns_per_sec(p));
        }
        if pt_daemon.is_some() {
            pcps.push(conns_per_sec(&pt_target));
            let last = |v: &Vec<f64>| v[v.len() - 1];
            pt_ratios.push(last(&pt) / last(&dt));
            p50_ratios.push(last(&p50s) / last(&d50s));
            pcps_ratios.push(last(&pcps) / last(&dcps));
        }
    }
    if let Some(d) = pt_daemon.as_mut() {
        d.stop();
    }
    drop(socat);
    let ratios: Vec<f64> = rt.iter().zip(&dt).map(|(r, d)| r / d).collect();
    let (direct_tp, relay_tp) = (median(&mut dt), median(&mut rt));
    let (d50, d99, r50, r99) = (
        median(&mut d50s),
        median(&mut d99s),
        median(&mut r50s),
        median(&mut r99s),
    );
    let (direct_cps, relay_cps) = (median(&mut dcps), median(&mut rcps));

    // 100 links.
    let targets: Vec<PathBuf> = (0..100)
        .map(|i| PathBuf::from(format!("/run/pv/l{i}.sock")))
        .collect();
    let all: Vec<&PathBuf> = targets.iter().collect();
    std::fs::write(&graph, graph_json(pids, &all)).unwrap();
    for t in &targets {
        assert!(
            pv_testkit::procstat::wait_for_path(&consumer.path(t), Duration::from_secs(20)),
            "100 links injected"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let rss_100 = daemon.rss_kib();
    let (anon_100, file_100) = (daemon.status_kib("RssAnon:"), daemon.status_kib("RssFile:"));
    let res_100 = daemon.resources();
    let size = std::fs::metadata(daemon_binary())
        .map(|m| m.len())
        .unwrap_or(0);
    daemon.stop();

    println!(
        "unix relay benchmark (daemon binary, same run, same machine; medians of {ROUNDS} alternating rounds)"
    );
    println!(
        "throughput 64 KiB writes: direct {direct_tp:.0} MiB/s, relay {relay_tp:.0} MiB/s ({:.2}x; per-round ratios {})",
        relay_tp / direct_tp,
        ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(" ")
    );
    println!(
        "1-byte RTT: direct p50 {d50:.1} us p99 {d99:.1} us; relay p50 {r50:.1} us p99 {r99:.1} us ({:.2}x p50)",
        r50 / d50
    );
    println!(
        "daemon context switches per relayed round trip: {:.2}",
        median(&mut rctxt)
    );
    println!("new connections/s: direct {direct_cps:.0}, relay {relay_cps:.0}");
    let list = |v: &[f64]| {
        v.iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    if pt.is_empty() {
        println!("passthrough: not measured (the daemon binary has no --unix-passthrough)");
    } else {
        let (pt_tp, p50, p99, pt_cps) = (
            median(&mut pt),
            median(&mut p50s),
            median(&mut p99s),
            median(&mut pcps),
        );
        println!(
        "passthrough (--unix-passthrough): throughput {pt_tp:.0} MiB/s ({:.2}x direct; per-round {}), \
         1-byte RTT p50 {p50:.1} us p99 {p99:.1} us ({:.2}x direct p50; per-round {}), \
         new connections/s {pt_cps:.0} ({:.2}x direct; per-round {})",
        pt_tp / direct_tp,
        list(&pt_ratios),
        p50 / d50,
        list(&p50_ratios),
        pt_cps / direct_cps,
        list(&pcps_ratios),
    );
    }
    if st.is_empty() {
        println!("socat not on PATH (or did not start): no socat column (apt-get install socat)");
    } else {
        let (s_tp, s50, s_cps) = (median(&mut st), median(&mut s50s), median(&mut scps));
        println!(
            "socat (UNIX-LISTEN,fork -> UNIX-CONNECT): throughput {s_tp:.0} MiB/s ({:.2}x direct), \
             1-byte RTT p50 {s50:.1} us ({:.2}x direct), new connections/s {s_cps:.0} ({:.2}x direct)",
            s_tp / direct_tp,
            s50 / d50,
            s_cps / direct_cps
        );
        // Throughput and connections/s: higher is better, the ratio is
        // ours/socat; round trip: lower is better, the ratio is how many
        // socat round trips fit in ours (< 1 means ours is faster).
        println!(
            "peer-table: unix bulk 64 KiB writes | socat {:.2} | {:.2} | {:.2}x socat",
            s_tp / direct_tp,
            relay_tp / direct_tp,
            relay_tp / s_tp
        );
        println!(
            "peer-table: unix 1-byte RTT p50 (lower is better) | socat {:.2}x | {:.2}x | {:.2}x socat's",
            s50 / d50,
            r50 / d50,
            r50 / s50
        );
        println!(
            "peer-table: unix new connections/s | socat {:.2} | {:.2} | {:.2}x socat",
            s_cps / direct_cps,
            relay_cps / direct_cps,
            relay_cps / s_cps
        );
    }
    println!(
        "idle-pss: pv-xconnect {:.2} MiB (daemon with 1 unix link)",
        daemon_pss as f64 / 1024.0
    );
    if let Some(kib) = socat_pss {
        println!(
            "idle-pss: socat {:.2} MiB (listening, 1 relay)",
            kib as f64 / 1024.0
        );
    }
    println!(
        "daemon RSS: idle {:.2} MiB, 1 link {:.2} MiB, 100 links {:.2} MiB (heap and stacks {:.2}, binary and files {:.2})",
        idle_rss as f64 / 1024.0,
        one_rss as f64 / 1024.0,
        rss_100 as f64 / 1024.0,
        anon_100 as f64 / 1024.0,
        file_100 as f64 / 1024.0
    );
    println!(
        "daemon fds/threads: idle {}/{}, 1 link {}/{}, 100 links {}/{}",
        idle_res.0, idle_res.1, one_res.0, one_res.1, res_100.0, res_100.1
    );
    println!(
        "binary size: {:.2} MiB ({})",
        size as f64 / 1048576.0,
        daemon_binary().display()
    );
}

/// The daemon under test: this build's, or `PVX_BENCH_DAEMON`.
fn daemon_binary() -> PathBuf {
    std::env::var_os("PVX_BENCH_DAEMON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pv-xconnect")))
}

/// Whether the daemon under test has `--unix-passthrough`.
fn has_passthrough() -> bool {
    Command::new(daemon_binary())
        .arg("--help")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("--unix-passthrough"))
}

struct Daemon(Child);

impl Daemon {
    fn start(graph: &Path, dir: &Path) -> Daemon {
        Self::start_with(graph, dir, &[])
    }

    fn start_with(graph: &Path, dir: &Path, args: &[&str]) -> Daemon {
        let child = Command::new(daemon_binary())
            .arg("--graph-file")
            .arg(graph)
            .args(["--interval-ms", "200"])
            .arg("--status-socket")
            .arg(dir.join("status.sock"))
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start pv-xconnect");
        Daemon(child)
    }

    fn rss_kib(&self) -> u64 {
        self.status_kib("VmRSS:")
    }

    /// A `kB` figure of `/proc/<pid>/status` (`VmRSS:`, `RssAnon:`, ...).
    fn status_kib(&self, key: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.0.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// Open file descriptors and threads of the daemon.
    fn resources(&self) -> (usize, usize) {
        let count = |d: &str| {
            std::fs::read_dir(format!("/proc/{}/{d}", self.0.id()))
                .map(|r| r.count())
                .unwrap_or(0)
        };
        (count("fd"), count("task"))
    }

    /// Context switches of every thread of the daemon so far.
    fn ctxt(&self) -> u64 {
        pv_testkit::procstat::ctxt_switches(self.0.id())
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

/// socat relaying a listener of its own to the provider, forking a child per
/// connection (the usual way to relay a unix socket with it).
struct Socat {
    child: Child,
    socket: PathBuf,
}

impl Socat {
    /// `None` (and why) when socat is not installed or does not start.
    fn start(provider: &Path, dir: &Path) -> Option<Socat> {
        let socket = dir.join("socat.sock");
        let child = Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", socket.display()))
            .arg(format!("UNIX-CONNECT:{}", provider.display()))
            .stdout(Stdio::null())
            .spawn();
        let child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => {
                println!("socat: cannot start: {e}");
                return None;
            }
        };
        let s = Socat { child, socket };
        if !pv_testkit::procstat::wait_for_path(&s.socket, Duration::from_secs(10)) {
            println!("socat did not create {}", s.socket.display());
            return None;
        }
        Some(s)
    }
}

impl Drop for Socat {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn graph_json((consumer, provider): (i32, i32), targets: &[&PathBuf]) -> String {
    let items: Vec<String> = targets
        .iter()
        .enumerate()
        .map(|(i, target)| {
            format!(
                r#"{{"consumer":"bench","consumer_pid":{consumer},"provider":"bench-srv","provider_pid":{provider},"name":"raw{i}","type":"unix","role":"any","interface":"unix","target":"{}","socket":"{PROVIDER_SOCK}"}}"#,
                target.display(),
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Provider: first byte selects the mode: `S` sink (count bytes, answer 8
/// bytes of count at EOF), anything else echo.
fn spawn_server(l: UnixListener) {
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            // `c`: a one-byte echo served inline, so the connection-rate
            // figure measures connections, not this server's thread spawns.
            let mut first = [0u8; 1];
            match s.read(&mut first) {
                Ok(1) if first[0] == b'c' => {
                    let _ = s.write_all(b"c");
                }
                Ok(1) => {
                    std::thread::spawn(move || serve(s, first[0]));
                }
                _ => {}
            }
        }
    });
}

fn serve(mut s: UnixStream, first: u8) {
    let mut buf = vec![0u8; 256 * 1024];
    buf[0] = first;
    let n = 1;
    if first == b'S' {
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
