//! GetInfo calls per second through the filtering dbus proxy and directly
//! on the provider's bus with a zbus client; then the same with a plain
//! client (one call at a time, unpipelined authentication) next to the
//! peer a user would pick instead, Debian's xdg-dbus-proxy with the same
//! filter (0.1.4 cannot serve zbus: it predates pipelined authentication).
//! Rounds alternate; medians are printed.
//! `cargo bench -p pv-e2e --bench dbus [-- CALLS]`. Lines starting
//! `peer-table:` (figure | peer/direct | ours/direct | ours/peer) and
//! `idle-pss:` are what `ci/bench-peers.sh` collects.

use std::path::Path;
use std::time::Instant;

use pv_e2e::dbus::raw::{self, Raw};
use pv_examples::dbus::{ExampleProxy, INFO, NAME, PATH};

const ROUNDS: usize = 5;

async fn rate(address: &str, calls: u32) -> f64 {
    let c = zbus::connection::Builder::address(address)
        .expect("address")
        .build()
        .await
        .expect("connect");
    let p = ExampleProxy::new(&c).await.expect("proxy");
    for _ in 0..calls / 10 {
        assert_eq!(p.get_info().await.expect("warm-up call"), INFO);
    }
    let t = Instant::now();
    for _ in 0..calls {
        assert_eq!(p.get_info().await.expect("call"), INFO);
    }
    f64::from(calls) / t.elapsed().as_secs_f64()
}

/// The same calls from the hand-written client.
async fn rate_plain(path: &Path, calls: u32) -> f64 {
    async fn once(c: &mut Raw, serial: u32) {
        c.send(&raw::call(serial, NAME, PATH, NAME, "GetInfo", &[]))
            .await;
        assert_eq!(
            c.reply_to(serial).await.kind,
            2,
            "GetInfo: no method return"
        );
    }
    let mut c = Raw::connect(path).await;
    // Serial 1 was Hello.
    for serial in 2..2 + calls / 10 {
        once(&mut c, serial).await;
    }
    let t = Instant::now();
    for serial in 2 + calls / 10..2 + calls / 10 + calls {
        once(&mut c, serial).await;
    }
    f64::from(calls) / t.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let calls: u32 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let bus = pv_e2e::dbus::Bus::start().await;
        let proxy = bus.proxy("nobody", NAME).await;
        let xdg_path = bus.dir.path().join("xdg-dbus-proxy.sock");
        let xdg = tokio::process::Command::new("xdg-dbus-proxy")
            .arg(&bus.address)
            .arg(&xdg_path)
            .arg("--filter")
            .arg(format!("--talk={NAME}"))
            .kill_on_drop(true)
            .spawn()
            .ok();
        while xdg.is_some() && !Path::new(&xdg_path).exists() {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // Idle PSS of the peer with its socket up, before any client.
        let xdg_pss = xdg
            .as_ref()
            .and_then(|c| c.id())
            .map(|pid| pv_testkit::procstat::pss_kib(pid) as f64 / 1024.0);
        let (mut direct, mut ours) = (Vec::new(), Vec::new());
        let (mut p_direct, mut p_ours, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            direct.push(rate(&bus.address, calls).await);
            ours.push(rate(&proxy.address, calls).await);
            p_direct.push(rate_plain(&bus.path, calls).await);
            p_ours.push(rate_plain(&proxy.path, calls).await);
            if xdg.is_some() {
                peer.push(rate_plain(&xdg_path, calls).await);
            }
        }
        let (direct, ours) = (median(direct), median(ours));
        println!("dbus GetInfo, {calls} sequential calls on one connection, median of {ROUNDS} alternating rounds:");
        println!("  zbus client   direct:               {direct:>8.0} calls/s");
        println!("  zbus client   via pv-xconnect:      {ours:>8.0} calls/s  ({:.2}x direct)", ours / direct);
        let (p_direct, p_ours) = (median(p_direct), median(p_ours));
        println!("  plain client  direct:               {p_direct:>8.0} calls/s");
        println!("  plain client  via pv-xconnect:      {p_ours:>8.0} calls/s  ({:.2}x direct)", p_ours / p_direct);
        if peer.is_empty() {
            println!("  xdg-dbus-proxy not installed: no peer figure");
        } else {
            let peer = median(peer);
            println!(
                "  plain client  via xdg-dbus-proxy:   {peer:>8.0} calls/s  ({:.2}x direct; pv-xconnect / xdg-dbus-proxy = {:.2}x)",
                peer / p_direct,
                p_ours / peer
            );
            println!(
                "peer-table: D-Bus calls/s, filtering on | xdg-dbus-proxy {:.2} | {:.2} | {:.2}x xdg-dbus-proxy",
                peer / p_direct,
                p_ours / p_direct,
                p_ours / peer
            );
        }
        if let Some(pss) = xdg_pss {
            println!("idle-pss: xdg-dbus-proxy {pss:.2} MiB (1 bus)");
        }
    });
}
