//! `pv-example-drm-render`: the consumer of the `drm-render` link.
//!
//! Opens the injected render node (default `/dev/dri/renderD128`) and asks
//! the driver for its version (`drm-render OK driver=...`); prints
//! `drm-render UNAVAILABLE: <errno>` when no driver answers and
//! `drm-render MISSING` when the node is absent. Polls every 5 s; `--once`
//! exits with the verdict.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use pv_examples::drmcheck::probe_render;

#[derive(Parser)]
#[command(about = "DRM render-node consumer example for pv-xconnect")]
struct Args {
    /// The injected render node.
    #[arg(long, default_value = "/dev/dri/renderD128")]
    device: PathBuf,
    /// Probe once and exit 0 only if a driver answered.
    #[arg(long)]
    once: bool,
    /// Seconds between probes.
    #[arg(long, default_value_t = 5)]
    interval: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-drm-render", || {})?;
    println!("drm-render starting (device {})", args.device.display());
    loop {
        let probe = probe_render(&args.device);
        for l in probe.lines("drm-render") {
            println!("{l}");
        }
        if args.once {
            std::process::exit(if probe.is_ok() { 0 } else { 1 });
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}
