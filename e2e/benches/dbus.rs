//! GetInfo calls per second through the filtering dbus proxy vs directly
//! on the provider's bus (one run, real dbus-daemon, zbus client).
//! `cargo bench -p pv-e2e --bench dbus [-- CALLS]`. Expectation:
//! through the proxy ≥ 0.7 × direct.

use std::time::Instant;

use pv_examples::dbus::{ExampleProxy, INFO};

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
        let proxy = bus.proxy("nobody", "org.pantavisor.Example").await;
        let direct = rate(&bus.address, calls).await;
        let proxied = rate(&proxy.address, calls).await;
        let ratio = proxied / direct;
        println!("dbus GetInfo, {calls} sequential calls on one connection:");
        println!("  direct:             {direct:>9.0} calls/s");
        println!("  via filtering proxy:{proxied:>9.0} calls/s");
        println!(
            "  ratio:              {ratio:>9.2} ({})",
            if ratio >= 0.7 {
                "ok, >= 0.7"
            } else {
                "BELOW 0.7"
            }
        );
    });
}
