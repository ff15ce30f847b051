//! `harness up|down|image`: the main job. `up` builds everything, boots
//! appengine-lite (or a real image) with every example and prints the mesh.
use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Boot Pantavisor's appengine with the pv-xconnect examples")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the appengine image only.
    Image,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let start = std::time::Instant::now();
    match cli.cmd {
        Cmd::Image => {
            let d = harness::docker::connect().await?;
            let img = harness::image::ensure(&d).await?;
            println!("{}", img.reference);
        }
    }
    harness::util::note(format!("total {:.1} s", start.elapsed().as_secs_f64()));
    Ok(())
}
