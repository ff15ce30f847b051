//! GetInfo calls per second through the filtering dbus proxy, directly on
//! the provider's bus, and through the peer a user would pick instead
//! (Debian's xdg-dbus-proxy with the same filter), on a real dbus-daemon
//! with a zbus client. Rounds alternate the three; medians are printed.
//! `cargo bench -p pv-e2e --bench dbus [-- CALLS]`.

use std::path::Path;
use std::time::Instant;

use pv_examples::dbus::{ExampleProxy, INFO, NAME};

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
        let xdg_address = format!("unix:path={}", xdg_path.display());
        let (mut direct, mut ours, mut peer) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            direct.push(rate(&bus.address, calls).await);
            ours.push(rate(&proxy.address, calls).await);
            if xdg.is_some() {
                peer.push(rate(&xdg_address, calls).await);
            }
        }
        let (direct, ours) = (median(direct), median(ours));
        println!("dbus GetInfo, {calls} sequential calls on one connection, median of {ROUNDS} alternating rounds:");
        println!("  direct:                    {direct:>9.0} calls/s");
        println!("  via pv-xconnect (filtered): {ours:>8.0} calls/s  ({:.2}x direct)", ours / direct);
        if peer.is_empty() {
            println!("  xdg-dbus-proxy not installed: no peer figure");
        } else {
            let peer = median(peer);
            println!(
                "  via xdg-dbus-proxy --filter: {peer:>7.0} calls/s  ({:.2}x direct; pv-xconnect/xdg-dbus-proxy = {:.2}x)",
                peer / direct,
                ours / peer
            );
        }
    });
}
