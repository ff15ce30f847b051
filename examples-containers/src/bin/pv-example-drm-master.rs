//! `pv-example-drm-master`: the consumer of the `drm-master` link.
//!
//! Opens the injected primary node (default `/dev/dri/card0`), prints the
//! driver and its KMS resources (`drm-master OK ...`), and where a connector
//! is connected (VKMS) shows a dumb buffer on it. Without a driver it prints
//! `drm-master UNAVAILABLE: <errno>`, without the node `drm-master MISSING`.
//! Polls every 5 s like upstream's example; `--once` exits with the verdict.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pv_examples::drmcheck::probe_master;

#[derive(Parser)]
#[command(about = "DRM master consumer example for pv-xconnect")]
struct Args {
    /// The injected primary node.
    #[arg(long, default_value = "/dev/dri/card0")]
    device: PathBuf,
    /// Probe once and exit 0 only if a driver answered (and a modeset, when
    /// attempted, succeeded).
    #[arg(long)]
    once: bool,
    /// Seconds between probes.
    #[arg(long, default_value_t = 5)]
    interval: u64,
    /// Only query; never set a mode.
    #[arg(long)]
    no_modeset: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-drm-master", || {})?;
    println!("drm-master starting (device {})", args.device.display());
    loop {
        let probe = probe_master(&args.device, !args.no_modeset);
        let lines = probe.lines("drm-master");
        for l in &lines {
            println!("{l}");
        }
        if args.once {
            let modeset_failed = lines.iter().any(|l| l.contains("MODESET FAIL"));
            std::process::exit(if probe.is_ok() && !modeset_failed {
                0
            } else {
                1
            });
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}
