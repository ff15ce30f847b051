//! `e2e-dbus-link BUS_SOCKET LISTEN_PATH INTERFACE ROLE`: serve one dbus
//! link from `LISTEN_PATH` to the bus at `BUS_SOCKET` with the daemon's
//! accept loop, on a runtime shaped like the daemon's (two workers), in a
//! process of its own so a test can read its memory use. Prints `ready`
//! once listening; exits when its standard input closes.

use pv_xconnect::graph::ServiceType;
use pv_xconnect::test_util::LinkSpecBuilder;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bus, listen, interface, role] = &args[..] else {
        anyhow::bail!("usage: e2e-dbus-link BUS_SOCKET LISTEN_PATH INTERFACE ROLE");
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let spec = LinkSpecBuilder::new(ServiceType::Dbus)
            .provider("test-provider", 0)
            .name("system-bus")
            .role(role)
            .interface(interface)
            .target(listen)
            .socket(bus)
            .arc();
        let _proxy = pv_e2e::Proxy::start(spec).await;
        println!("ready");
        let _ = tokio::task::spawn_blocking(|| {
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new())
        })
        .await;
        anyhow::Ok(())
    })
}
