//! `pv-example-input-consumer`: waits for the injected evdev node, prints
//! its device numbers and name, and reads key events from it (see
//! `pv_examples::input`).

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = pv_examples::input::CONSUMER_NODE)]
    node: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-input-consumer", || {})?;
    pv_examples::input::consumer_main(&args.node)
}
