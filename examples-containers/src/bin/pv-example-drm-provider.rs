//! `pv-example-drm-provider`: the provider of the `drm-master` and
//! `drm-render` services.
//!
//! A DRM provider has nothing to serve: pv-xconnect reads the device nodes
//! its `services.json` names (resolved inside this container's root) and
//! recreates them in each consumer. This container only has to be running;
//! it reports what it exports — each node's presence and major:minor — at
//! start and whenever that changes, so its console explains a refused link
//! (e.g. no `/dev/dri/renderD128` under VKMS). `--once` reports and exits
//! 0 when every node is a DRM character device (major 226).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// The DRM character-device major.
const DRM_MAJOR: u64 = 226;

#[derive(Parser)]
#[command(about = "DRM provider example for pv-xconnect (exports device nodes)")]
struct Args {
    /// Exported nodes as NAME=PATH (default: upstream's two services).
    #[arg(long = "export", value_name = "NAME=PATH")]
    exports: Vec<String>,
    /// Report once and exit.
    #[arg(long)]
    once: bool,
    /// Seconds between checks.
    #[arg(long, default_value_t = 5)]
    interval: u64,
}

/// One line per export; `true` when the node is a DRM char device.
fn describe(name: &str, path: &PathBuf) -> (String, bool) {
    match std::fs::metadata(path) {
        Err(e) => (
            format!("drm-provider {name} {} MISSING ({e})", path.display()),
            false,
        ),
        Ok(m) if !m.file_type().is_char_device() => (
            format!("drm-provider {name} {} NOT A CHAR DEVICE", path.display()),
            false,
        ),
        Ok(m) => {
            let (maj, min) = (
                nix::sys::stat::major(m.rdev()),
                nix::sys::stat::minor(m.rdev()),
            );
            let ok = maj == DRM_MAJOR;
            let verdict = if ok { "EXPORTED" } else { "NOT DRM" };
            (
                format!(
                    "drm-provider {name} {} {verdict} {maj}:{min} mode={:o}",
                    path.display(),
                    m.mode() & 0o7777
                ),
                ok,
            )
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-drm-provider", || {})?;
    let exports: Vec<(String, PathBuf)> = if args.exports.is_empty() {
        vec![
            ("drm-master".into(), "/dev/dri/card0".into()),
            ("drm-render".into(), "/dev/dri/renderD128".into()),
        ]
    } else {
        let mut v = Vec::new();
        for e in &args.exports {
            match e.split_once('=') {
                Some((n, p)) => v.push((n.to_string(), PathBuf::from(p))),
                None => {
                    eprintln!("drm-provider: --export wants NAME=PATH, got {e:?}");
                    std::process::exit(2);
                }
            }
        }
        v
    };
    println!("drm-provider starting ({} exports)", exports.len());
    let mut last: Vec<String> = Vec::new();
    loop {
        let report: Vec<(String, bool)> = exports.iter().map(|(n, p)| describe(n, p)).collect();
        let lines: Vec<String> = report.iter().map(|(l, _)| l.clone()).collect();
        if lines != last {
            for l in &lines {
                println!("{l}");
            }
            last = lines;
        }
        if args.once {
            std::process::exit(if report.iter().all(|(_, ok)| *ok) {
                0
            } else {
                1
            });
        }
        std::thread::sleep(Duration::from_secs(args.interval.max(1)));
    }
}
