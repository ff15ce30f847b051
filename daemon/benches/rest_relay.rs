//! REST relay benchmark with the real daemon binary (run as root: `cargo
//! bench -p pv-xconnect --bench rest_relay`), against a direct connection
//! and, when `nginx` is on PATH, against nginx configured as the peer an
//! integrator would pick instead (a Unix-socket reverse proxy setting the
//! two identity headers, keep-alive upstream, 2 workers).
//!
//! Set-up as in `unix_relay`: consumer and provider are testkit containers,
//! the provider's socket is created inside the provider (a minimal
//! keep-alive HTTP/1.1 server answering every request with a small JSON
//! body), the daemon follows a graph file with one `rest` link, and the
//! client reaches the injected socket through `/proc/<pid>/root`. The
//! client is the same raw blocking HTTP/1.1 client for every path, one
//! thread per connection.
//!
//! Prints, as medians of alternating rounds: keep-alive requests/s at 1
//! and at 4 connections, p50 latency at 1 connection, and per request the
//! proxy's context switches (every thread of every process of the proxy,
//! voluntary and not) and CPU time. `PVX_BENCH_DAEMON=<path>` benchmarks
//! another build of the daemon; `REST_BENCH_REQUESTS` sets the requests per
//! connection and round (default 20000). Lines starting `peer-table:`
//! (figure | peer/direct | ours/direct | ours/peer) and `idle-pss:` are what
//! `ci/bench-peers.sh` collects.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pv_testkit::Container;

const ROUNDS: usize = 5;
const PROVIDER_SOCK: &str = "/run/bench/rest.sock";
const BODY: &[u8] = br#"{"service":"bench","ok":true}"#;

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn requests() -> usize {
    std::env::var("REST_BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let graph = dir.path().join("graph.json");
    let consumer = Container::start("rbench-consumer", "sleep infinity");
    let server = Container::start("rbench-provider", "sleep infinity");
    let (listener, _holder) = server.listen_std(PROVIDER_SOCK, 128);
    spawn_provider(listener);
    let provider = server.path(PROVIDER_SOCK);

    let inside = "/run/pv/rest.sock";
    std::fs::write(
        &graph,
        format!(
            r#"[{{"consumer":"bench","consumer_pid":{},"provider":"bench-srv","provider_pid":{},"name":"api","type":"rest","role":"any","interface":"rest","target":"{inside}","socket":"{PROVIDER_SOCK}"}}]"#,
            consumer.pid, server.pid
        ),
    )
    .unwrap();
    let daemon = Proxy::daemon(&graph, dir.path());
    let target = consumer.path(inside);
    assert!(
        pv_testkit::procstat::wait_for_path(&target, Duration::from_secs(10)),
        "link injected"
    );
    let nginx = Proxy::nginx(&provider, dir.path());
    // Idle PSS before any traffic (nginx: master and workers together).
    std::thread::sleep(Duration::from_millis(300));
    let idle_pss = |p: &Proxy| {
        p.pids()
            .into_iter()
            .map(pv_testkit::procstat::pss_kib)
            .sum::<u64>() as f64
            / 1024.0
    };
    let pss = (idle_pss(&daemon), nginx.as_ref().map(idle_pss));

    let mut paths: Vec<(&str, PathBuf, Option<&Proxy>)> = vec![
        ("direct", provider.clone(), None),
        ("pv-xconnect", target.clone(), Some(&daemon)),
    ];
    match &nginx {
        Some(n) => paths.push(("nginx", n.socket.clone(), Some(n))),
        None => println!("nginx not on PATH: no nginx column (apt-get install nginx-light)"),
    }
    // Warm-up: connections established, caches and upstream pools filled.
    for (_, path, _) in &paths {
        run(path, 1, 2000);
    }

    let n = requests();
    let mut figures: Vec<Figures> = paths.iter().map(|_| Figures::default()).collect();
    for _ in 0..ROUNDS {
        for ((_, path, proxy), f) in paths.iter().zip(&mut figures) {
            let before = proxy.map(|p| p.usage());
            let (rps, p50) = run(path, 1, n);
            if let (Some(p), Some(b)) = (proxy, before) {
                let after = p.usage();
                f.ctxt.push((after.0 - b.0) as f64 / n as f64);
                f.cpu_us
                    .push((after.1 - b.1) as f64 * 1e6 / ticks_per_sec() / n as f64);
            }
            f.rps1.push(rps);
            f.p50.push(p50);
            f.rps4.push(run(path, 4, n / 2).0);
        }
    }

    println!(
        "rest relay benchmark (daemon binary; same run, same machine; medians of {ROUNDS} alternating rounds, {n} requests per round)"
    );
    let direct = (median(&mut figures[0].rps1), median(&mut figures[0].rps4));
    let mut rows = Vec::new();
    for ((name, _, proxy), f) in paths.iter().zip(&mut figures) {
        let (r1, r4, p50) = (median(&mut f.rps1), median(&mut f.rps4), median(&mut f.p50));
        let per_req = if proxy.is_some() {
            format!(
                ", {:.2} context switches and {:.1} us CPU per request",
                median(&mut f.ctxt),
                median(&mut f.cpu_us)
            )
        } else {
            String::new()
        };
        println!(
            "{name:>12}: 1 conn {r1:.0} req/s ({:.2}x direct), p50 {p50:.1} us; 4 conns {r4:.0} req/s ({:.2}x direct){per_req}",
            r1 / direct.0,
            r4 / direct.1
        );
        rows.push((*name, r1, r4));
    }
    if let (Some(ours), Some(peer)) = (
        rows.iter().find(|r| r.0 == "pv-xconnect"),
        rows.iter().find(|r| r.0 == "nginx"),
    ) {
        println!(
            "pv-xconnect / nginx: 1 conn {:.2}x, 4 conns {:.2}x",
            ours.1 / peer.1,
            ours.2 / peer.2
        );
        for (conns, i) in [(1, 1), (4, 2)] {
            let pick = |r: &(&str, f64, f64)| if i == 1 { r.1 } else { r.2 };
            let direct = if i == 1 { direct.0 } else { direct.1 };
            println!(
                "peer-table: REST keep-alive req/s, {conns} connection{} | nginx {:.2} | {:.2} | {:.2}x nginx",
                if conns == 1 { "" } else { "s" },
                pick(peer) / direct,
                pick(ours) / direct,
                pick(ours) / pick(peer)
            );
        }
    }
    println!(
        "idle-pss: pv-xconnect {:.2} MiB (daemon with 1 rest link)",
        pss.0
    );
    if let Some(n) = pss.1 {
        println!("idle-pss: nginx {n:.2} MiB (master and 2 workers)");
    }
}

#[derive(Default)]
struct Figures {
    rps1: Vec<f64>,
    rps4: Vec<f64>,
    p50: Vec<f64>,
    ctxt: Vec<f64>,
    cpu_us: Vec<f64>,
}

/// `conns` keep-alive connections (one thread each) sending `n` sequential
/// `GET`s each: total requests/s and the p50 latency in microseconds.
fn run(path: &Path, conns: usize, n: usize) -> (f64, f64) {
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let path = path.to_path_buf();
            std::thread::spawn(move || client(&path, n))
        })
        .collect();
    let mut lat: Vec<f64> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    let total = lat.len();
    (total as f64 / secs, median(&mut lat))
}

fn client(path: &Path, n: usize) -> Vec<f64> {
    let stream =
        UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut lat = Vec::with_capacity(n);
    let mut line = String::new();
    let mut body = vec![0u8; BODY.len()];
    for _ in 0..n {
        let t0 = Instant::now();
        writer
            .write_all(b"GET /info HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap_or_else(|e| panic!("{}: sending: {e}", path.display()));
        let mut length = None;
        let mut first = true;
        loop {
            line.clear();
            reader
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("{}: reading the answer: {e}", path.display()));
            if first {
                assert!(line.starts_with("HTTP/1.1 200"), "answer: {line:?}");
                first = false;
            }
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    length = v.trim().parse::<usize>().ok();
                }
            }
        }
        assert_eq!(length, Some(BODY.len()), "content-length");
        reader.read_exact(&mut body).unwrap();
        lat.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    assert_eq!(body, BODY);
    lat
}

/// A minimal keep-alive HTTP/1.1 provider: every request (a head without
/// body) gets the same 200 with a JSON body; one thread per connection.
fn spawn_provider(l: UnixListener) {
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut writer = s.try_clone().unwrap();
                let mut reader = BufReader::new(s);
                let mut line = String::new();
                let answer = [
                    format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        BODY.len()
                    )
                    .as_bytes(),
                    BODY,
                ]
                .concat();
                loop {
                    // Read one head.
                    loop {
                        line.clear();
                        match reader.read_line(&mut line) {
                            Ok(0) | Err(_) => return,
                            Ok(_) if line == "\r\n" => break,
                            Ok(_) => {}
                        }
                    }
                    if writer.write_all(&answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A proxy under test: its processes (for context switches and CPU time)
/// and where clients connect.
struct Proxy {
    child: Child,
    socket: PathBuf,
}

impl Proxy {
    fn daemon(graph: &Path, dir: &Path) -> Proxy {
        let bin = std::env::var_os("PVX_BENCH_DAEMON")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_pv-xconnect")));
        let child = Command::new(bin)
            .arg("--graph-file")
            .arg(graph)
            .args(["--interval-ms", "200"])
            .arg("--status-socket")
            .arg(dir.join("status.sock"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start pv-xconnect");
        Proxy {
            child,
            socket: graph.to_path_buf(),
        }
    }

    /// nginx as a Unix-socket reverse proxy, or `None` if not installed.
    fn nginx(provider: &Path, dir: &Path) -> Option<Proxy> {
        let bin = std::env::var_os("PATH")?
            .to_str()?
            .split(':')
            .map(|d| Path::new(d).join("nginx"))
            .chain([PathBuf::from("/usr/sbin/nginx")])
            .find(|p| p.is_file())?;
        let ngx = dir.join("nginx");
        std::fs::create_dir_all(&ngx).unwrap();
        let socket = ngx.join("nginx.sock");
        let d = ngx.display();
        let conf = format!(
            "daemon off; master_process on; worker_processes 2; user root;\n\
             pid {d}/nginx.pid; error_log {d}/error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
               access_log off; keepalive_requests 100000000; keepalive_timeout 600s;\n\
               client_body_temp_path {d}/cb; proxy_temp_path {d}/px; fastcgi_temp_path {d}/fc;\n\
               uwsgi_temp_path {d}/uw; scgi_temp_path {d}/sc;\n\
               upstream provider {{ server unix:{}; keepalive 16; keepalive_requests 100000000; }}\n\
               server {{\n\
                 listen unix:{};\n\
                 location / {{\n\
                   proxy_pass http://provider;\n\
                   proxy_http_version 1.1;\n\
                   proxy_set_header Connection \"\";\n\
                   proxy_set_header X-PV-Client bench;\n\
                   proxy_set_header X-PV-Role any;\n\
                 }}\n\
               }}\n\
             }}\n",
            provider.display(),
            socket.display()
        );
        let conf_path = ngx.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new(bin)
            .arg("-p")
            .arg(&ngx)
            .arg("-c")
            .arg(&conf_path)
            .stdout(Stdio::null())
            .spawn()
            .ok()?;
        if !pv_testkit::procstat::wait_for_path(&socket, Duration::from_secs(10)) {
            println!(
                "nginx did not start: see {}",
                ngx.join("error.log").display()
            );
            return None;
        }
        Some(Proxy { child, socket })
    }

    /// The process and its children (nginx's workers).
    fn pids(&self) -> Vec<u32> {
        let me = self.child.id();
        let mut pids = vec![me];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                let ppid = stat
                    .rsplit_once(") ")
                    .and_then(|(_, r)| r.split_whitespace().nth(1))
                    .and_then(|p| p.parse::<u32>().ok());
                if ppid == Some(me) {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// Context switches (all threads) and CPU ticks (utime + stime) so far.
    fn usage(&self) -> (u64, u64) {
        self.pids().into_iter().fold((0, 0), |(c, t), pid| {
            (
                c + pv_testkit::procstat::ctxt_switches(pid),
                t + pv_testkit::procstat::cpu_ticks(pid),
            )
        })
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // SIGTERM: nginx's master takes its workers down with it.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
    }
}

fn ticks_per_sec() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}
