//! `pv-example-dbus-client`: calls `org.pantavisor.Example` through the injected system
//! bus socket, prints the reply and `dbus OK uid=<n>` (the uid the bus
//! sees: the link's role). The role comes from the manifest, not the code.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = pv_examples::dbus::SOCKET)]
    socket: String,
    /// One round, exit status tells the result (tests).
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-dbus-client", || {})?;
    pv_examples::dbus::client_main(&args.socket, args.once).await
}
