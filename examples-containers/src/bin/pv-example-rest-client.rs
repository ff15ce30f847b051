//! `pv-example-rest-client`: the `network-manager` consumer. Every 5 s it
//! asks `GET /info` through the injected socket, prints the answer and the
//! identity the provider saw, then repeats the request with a spoofed
//! `X-PV-Role: admin` / `X-PV-Client: intruder` and reports whether the
//! provider still saw the true identity (it must, through pv-xconnect).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pv_examples::rest;

#[derive(Parser)]
#[command(about = "Query the network-manager REST service through pv-xconnect")]
struct Args {
    /// The socket pv-xconnect injected.
    #[arg(long, default_value = rest::CLIENT_SOCKET)]
    socket: PathBuf,
    /// One round, then exit 0 only if the identity was injected and a
    /// spoofed identity was refused.
    #[arg(long)]
    once: bool,
    /// Seconds between rounds.
    #[arg(long, default_value_t = 5)]
    interval: u64,
}

async fn round(args: &Args) -> bool {
    println!(
        "--- Requesting info from network-manager service via {} ---",
        args.socket.display()
    );
    match rest::check(&args.socket).await {
        Ok(report) => {
            println!(
                "{}",
                serde_json::to_string(&report.info).unwrap_or_default()
            );
            println!(
                "rest OK client={} role={}",
                report.info.client, report.info.role
            );
            let refused = report.spoof_refused();
            println!(
                "rest spoof {} role={} client={}",
                if refused { "REFUSED" } else { "ACCEPTED" },
                report.spoofed.role,
                report.spoofed.client
            );
            refused && report.info.client != "unknown"
        }
        Err(e) => {
            println!("rest FAIL: {e:#}");
            false
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = pv_examples::pid1::exit_on_stop("pv-example-rest-client", || {}) {
        println!("rest FAIL: stop signals: {e}");
        return ExitCode::FAILURE;
    }
    loop {
        let ok = round(&args).await;
        if args.once {
            return if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        tokio::time::sleep(Duration::from_secs(args.interval)).await;
    }
}
