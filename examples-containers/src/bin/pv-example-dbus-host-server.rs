//! `pv-example-dbus-host-server`: owns and serves `org.pantavisor.Example`
//! on the system bus Pantavisor hosts, reached through the injected
//! `/run/dbus/system_bus_socket` (role `example-service`; see
//! `pv_examples::dbus_host`). No dbus-daemon of its own.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = pv_examples::dbus::SOCKET)]
    socket: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-dbus-host-server", || {})?;
    pv_examples::dbus_host::serve_forever(&args.socket).await
}
