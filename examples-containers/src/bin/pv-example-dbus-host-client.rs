//! `pv-example-dbus-host-client`: calls `org.pantavisor.Example` on the
//! system bus Pantavisor hosts (role `operator`), prints the reply, the uid
//! the bus sees, and the refusals the generated policy and pv-xconnect
//! must give (see `pv_examples::dbus_host`).

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
    pv_examples::pid1::exit_on_stop("pv-example-dbus-host-client", || {})?;
    pv_examples::dbus_host::client_main(&args.socket, args.once).await
}
