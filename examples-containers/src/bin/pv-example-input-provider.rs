//! `pv-example-input-provider`: a uinput virtual keyboard typing KEY_A
//! every second, its evdev node exported as `input-keyboard` (see
//! `pv_examples::input`). Without `/dev/uinput` it says so and idles.

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "/dev/uinput")]
    uinput: PathBuf,
    /// Where the exported evdev node is created (services.json `socket`).
    #[arg(long, default_value = pv_examples::input::PROVIDER_NODE)]
    node: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-input-provider", || {})?;
    pv_examples::input::provider_main(&args.uinput, &args.node)
}
