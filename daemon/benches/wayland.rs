//! Wayland relay cost: `wl_display.sync` round-trip latency direct vs
//! through a wayland link (the daemon's accept loop and `link::wayland`),
//! and pipelined message throughput.
//!
//! The compositor is a minimal raw one that answers `wl_display.sync` with
//! `wl_callback.done` and `wl_display.delete_id` (what every compositor
//! does), so the figures measure the relay, not a renderer.
//! Run: `cargo bench -p pv-xconnect --bench wayland`.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pv_xconnect::graph::ServiceType;
use pv_xconnect::link::{self, LinkStats, Mediation};
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;

fn msg(out: &mut Vec<u8>, object: u32, opcode: u16, args: &[u32]) {
    let size = 8 + 4 * args.len() as u32;
    out.extend_from_slice(&object.to_ne_bytes());
    out.extend_from_slice(&((size << 16) | u32::from(opcode)).to_ne_bytes());
    for a in args {
        out.extend_from_slice(&a.to_ne_bytes());
    }
}

/// Raw compositor: every connection gets a thread answering syncs.
fn compositor(path: &Path) {
    let listener = StdListener::bind(path).expect("bind compositor");
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 64 * 1024];
                let mut have = 0usize;
                let mut out = Vec::with_capacity(64 * 1024);
                let mut serial = 0u32;
                loop {
                    let n = match conn.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    have += n;
                    let mut off = 0;
                    out.clear();
                    while have - off >= 8 {
                        let w = u32::from_ne_bytes(buf[off + 4..off + 8].try_into().unwrap());
                        let size = (w >> 16) as usize;
                        if have - off < size {
                            break;
                        }
                        let obj = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap());
                        if obj == 1 && w & 0xffff == 0 {
                            let id = u32::from_ne_bytes(buf[off + 8..off + 12].try_into().unwrap());
                            serial = serial.wrapping_add(1);
                            msg(&mut out, id, 0, &[serial]);
                            msg(&mut out, 1, 1, &[id]);
                        }
                        off += size;
                    }
                    buf.copy_within(off..have, 0);
                    have -= off;
                    if conn.write_all(&out).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

/// A wayland link at `at` to the compositor at `upstream`, served by the
/// daemon's accept loop on `rt`.
fn proxy(rt: &tokio::runtime::Runtime, at: PathBuf, upstream: &Path) -> Arc<LinkStats> {
    let spec = LinkSpecBuilder::new(ServiceType::Wayland)
        .consumer("bench", 0)
        .provider("raw", 0)
        .name("wayland-0")
        .target(&at)
        .socket(upstream)
        .arc();
    let stats = Arc::new(LinkStats::default());
    let served = stats.clone();
    rt.block_on(async move {
        let mediation = Mediation::prepare(spec).await.expect("prepare");
        let listener = tokio::net::UnixListener::bind(at).expect("bind proxy");
        tokio::spawn(link::serve(listener, mediation, served, Shutdown::new()));
    });
    stats
}

/// Read events until `want` delete_ids arrived; returns the ids freed.
fn read_deletes(conn: &mut StdStream, buf: &mut [u8], have: &mut usize, want: usize) -> Vec<u32> {
    let mut freed = Vec::with_capacity(want);
    while freed.len() < want {
        let n = conn.read(&mut buf[*have..]).expect("read events");
        assert!(n > 0, "compositor closed");
        *have += n;
        let mut off = 0;
        while *have - off >= 8 {
            let w = u32::from_ne_bytes(buf[off + 4..off + 8].try_into().unwrap());
            let size = (w >> 16) as usize;
            if *have - off < size {
                break;
            }
            let obj = u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap());
            if obj == 1 && w & 0xffff == 1 {
                freed.push(u32::from_ne_bytes(
                    buf[off + 8..off + 12].try_into().unwrap(),
                ));
            }
            off += size;
        }
        buf.copy_within(off..*have, 0);
        *have -= off;
    }
    freed
}

/// Sequential sync round trips: returns sorted latencies.
fn latency(path: &Path, n: usize) -> Vec<Duration> {
    let mut conn = StdStream::connect(path).expect("connect");
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let mut out = Vec::new();
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 200 {
        out.clear();
        msg(&mut out, 1, 0, &[2]);
        let t = Instant::now();
        conn.write_all(&out).expect("write");
        read_deletes(&mut conn, &mut buf, &mut have, 1);
        if i >= 200 {
            lat.push(t.elapsed());
        }
    }
    lat.sort_unstable();
    lat
}

/// Pipelined syncs with `window` outstanding; returns messages/s (requests
/// plus events) over `total` syncs.
fn throughput(path: &Path, total: usize, window: u32) -> f64 {
    let mut conn = StdStream::connect(path).expect("connect");
    let mut buf = vec![0u8; 256 * 1024];
    let mut have = 0;
    let mut out = Vec::new();
    for id in 2..2 + window {
        msg(&mut out, 1, 0, &[id]);
    }
    let t = Instant::now();
    conn.write_all(&out).expect("write");
    let mut sent = window as usize;
    let mut done = 0;
    while done < total {
        let freed = read_deletes(&mut conn, &mut buf, &mut have, 1);
        done += freed.len();
        out.clear();
        for id in freed {
            if sent < total {
                msg(&mut out, 1, 0, &[id]);
                sent += 1;
            }
        }
        if !out.is_empty() {
            conn.write_all(&out).expect("write");
        }
    }
    (total * 3) as f64 / t.elapsed().as_secs_f64()
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e6
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let direct = dir.path().join("compositor");
    let proxied = dir.path().join("proxy");
    compositor(&direct);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let stats = proxy(&rt, proxied.clone(), &direct);
    while !proxied.exists() {
        std::thread::sleep(Duration::from_millis(5));
    }

    let n = 20_000;
    let d = latency(&direct, n);
    let p = latency(&proxied, n);
    println!("wl_display.sync round trip ({n} sequential):");
    println!(
        "  direct  p50 {:7.1} us  p99 {:7.1} us",
        pct(&d, 0.5),
        pct(&d, 0.99)
    );
    println!(
        "  proxied p50 {:7.1} us  p99 {:7.1} us",
        pct(&p, 0.5),
        pct(&p, 0.99)
    );
    println!("  added   p50 {:7.1} us", pct(&p, 0.5) - pct(&d, 0.5));

    let total = 500_000;
    let td = throughput(&direct, total, 256);
    let tp = throughput(&proxied, total, 256);
    println!("pipelined syncs ({total}, 256 in flight; requests + events):");
    println!("  direct  {:>12.0} msg/s", td);
    println!("  proxied {:>12.0} msg/s", tp);
    println!(
        "  bytes relayed by the proxy: {}",
        stats
            .bytes_relayed
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}
