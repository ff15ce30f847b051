//! A dbus link never holds a whole message: four consumers each announce
//! a 100 MiB message and stream all of it but its last MiB, then stop
//! (two to the allowed service, whose bytes stream on to the bus; two to
//! the hidden one, whose bytes are discarded as they arrive). The process
//! serving the link (`e2e-dbus-link`: the daemon's accept loop on the
//! daemon's runtime shape, alone in its process) must grow by less than
//! 16 MiB at its peak (VmHWM against the resident size before).

use std::process::Stdio;
use std::time::Duration;

use pv_e2e::dbus::raw::{self, Raw};
use pv_e2e::dbus::{Bus, HIDDEN};
use pv_examples::dbus::NAME;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const MIB: usize = 1 << 20;
const ANNOUNCED: usize = 100 * MIB;

/// `VmRSS` or `VmHWM` of `pid`, in bytes.
fn status_kib(pid: u32, field: &str) -> usize {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_unfinished_100_mib_messages_grow_the_proxy_by_less_than_16_mib() {
    let bus = Bus::start().await;
    let listen = bus.dir.path().join("memory-link.sock");
    let mut link = tokio::process::Command::new(env!("CARGO_BIN_EXE_e2e-dbus-link"))
        .arg(&bus.path)
        .arg(&listen)
        .arg(NAME)
        .arg("nobody")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("e2e-dbus-link");
    let pid = link.id().expect("pid");
    let mut lines = BufReader::new(link.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("link ready in time")
        .expect("read");
    assert_eq!(ready.as_deref(), Some("ready"));

    // Warm up: a full session through the link, then the baseline.
    let mut warm = Raw::connect(&listen).await;
    warm.send(&raw::call(
        2,
        NAME,
        "/org/pantavisor/Example",
        NAME,
        "GetInfo",
        &[],
    ))
    .await;
    assert_eq!(warm.reply_to(2).await.kind, 2);
    drop(warm);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = status_kib(pid, "VmRSS:");

    let chunk = vec![0xa5u8; MIB];
    let mut writers = Vec::new();
    for i in 0..4 {
        let mut c = Raw::connect(&listen).await;
        let dest = if i % 2 == 0 { NAME } else { HIDDEN };
        let chunk = chunk.clone();
        writers.push(tokio::spawn(async move {
            // An `ay` body: its length, then bytes.
            let len = (ANNOUNCED - 4) as u32;
            c.send(&raw::big_call(
                10,
                dest,
                ANNOUNCED as u32,
                &len.to_le_bytes(),
            ))
            .await;
            for _ in 0..(ANNOUNCED / MIB - 1) {
                c.stream.write_all(&chunk).await.expect("stream the body");
            }
            c
        }));
    }
    let mut held = Vec::new();
    for w in writers {
        held.push(
            tokio::time::timeout(Duration::from_secs(120), w)
                .await
                .expect("99 MiB written in time (the proxy must keep reading)")
                .expect("writer"),
        );
    }
    // Everything written was read by the proxy but what the kernel
    // buffers; let it settle.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peak = status_kib(pid, "VmHWM:");
    let now = status_kib(pid, "VmRSS:");
    let growth = peak.saturating_sub(baseline);
    println!(
        "e2e-dbus-link RSS: {} KiB before, {} KiB now, peak {} KiB: growth {} KiB for 4 x 99 MiB",
        baseline / 1024,
        now / 1024,
        peak / 1024,
        growth / 1024
    );
    assert!(
        growth < 16 * MIB,
        "the proxy grew by {} MiB while 4 unfinished 100 MiB messages streamed",
        growth / MIB
    );
    // The consumers are still connected: nothing was refused for size.
    for c in &mut held {
        let mut b = [0u8; 4096];
        let r = c.stream.try_read(&mut b);
        assert!(!matches!(r, Ok(0)), "a consumer was disconnected");
    }
    drop(link.stdin.take());
    let _ = link.wait().await;
}
