//! `pv-example-rest-server`: the `network-manager` provider. Serves the mock
//! API of [`pv_examples::rest`] on `/run/nm/api.sock`.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use pv_examples::rest;

#[derive(Parser)]
#[command(about = "Mock network-manager REST API on a Unix socket")]
struct Args {
    /// Socket to listen on.
    #[arg(long, default_value = rest::SERVER_SOCKET)]
    socket: PathBuf,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = args.socket.clone();
    pv_examples::pid1::exit_on_stop("pv-example-rest-server", move || {
        pv_examples::pid1::remove_paths(&[socket])
    })?;
    let listener = rest::bind(&args.socket)?;
    println!("Starting mock REST server on {}...", args.socket.display());
    rest::serve(listener, Arc::default()).await
}
