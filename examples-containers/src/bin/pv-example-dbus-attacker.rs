//! `pv-example-dbus-attacker` (role `nobody`, interface
//! `org.pantavisor.Example`): tries to take over `org.pantavisor.Example`,
//! to call `org.freedesktop.systemd1` and to claim uid 0. Prints one
//! `attacker REFUSED <what>` (or `attacker ALLOWED <what>`) line per attempt.
//! With `--once` it exits 0 only if every attempt was refused; otherwise it
//! prints the verdict and stays up, like a container should.

use clap::Parser;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = pv_examples::dbus::SOCKET)]
    socket: String,
    #[arg(long)]
    once: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    pv_examples::pid1::exit_on_stop("pv-example-dbus-attacker", || {})?;
    let results = pv_examples::dbus::attack(&args.socket).await?;
    let mut all = true;
    for (what, refused, detail) in &results {
        let verdict = if *refused { "REFUSED" } else { "ALLOWED" };
        println!("attacker {verdict} {what} ({detail})");
        all &= refused;
    }
    println!(
        "attacker RESULT {}",
        if all { "all refused" } else { "BREACH" }
    );
    if args.once {
        std::process::exit(if all { 0 } else { 1 });
    }
    std::future::pending::<()>().await;
    Ok(())
}
