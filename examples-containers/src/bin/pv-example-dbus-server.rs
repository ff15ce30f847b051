//! `pv-example-dbus-server`: runs Debian's dbus-daemon as the container's
//! system bus (policy: root may own and call `org.pantavisor.Example`,
//! everyone may call it, default deny) and publishes the example service
//! on it. Exits when the bus does.

use std::process::Stdio;

use anyhow::{bail, Context};
use clap::Parser;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Parser)]
struct Args {
    /// Bus configuration (listens on /run/dbus/system_bus_socket).
    #[arg(long, default_value = "/etc/pv-example-dbus/bus.conf")]
    config: String,
    #[arg(long, default_value = "/usr/bin/dbus-daemon")]
    dbus_daemon: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    std::fs::create_dir_all("/run/dbus")?;
    let _ = std::fs::remove_file(pv_examples::dbus::SOCKET);
    ensure_machine_id();

    let mut bus = tokio::process::Command::new(&args.dbus_daemon)
        .args(["--nofork", "--nopidfile", "--print-address"])
        .arg(format!("--config-file={}", args.config))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", args.dbus_daemon))?;
    // dbus-daemon prints its address once it listens: our readiness signal.
    let stdout = bus.stdout.take().context("dbus-daemon stdout")?;
    let Some(address) = BufReader::new(stdout).lines().next_line().await? else {
        bail!("dbus-daemon exited before listening");
    };
    println!("dbus-example: bus listening on {address}");
    let _conn = pv_examples::dbus::serve(&address).await?;
    println!(
        "dbus-example: serving {} at {}",
        pv_examples::dbus::NAME,
        pv_examples::dbus::PATH
    );
    let status = bus.wait().await?;
    bail!("dbus-daemon exited: {status}");
}

/// dbus-daemon wants a machine id; a fresh rootfs has none.
fn ensure_machine_id() {
    for p in ["/etc/machine-id", "/var/lib/dbus/machine-id"] {
        if std::fs::metadata(p).is_ok_and(|m| m.len() >= 32) {
            return;
        }
    }
    if let Ok(uuid) = std::fs::read_to_string("/proc/sys/kernel/random/uuid") {
        let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
        let _ = std::fs::create_dir_all("/var/lib/dbus");
        let _ = std::fs::write("/var/lib/dbus/machine-id", format!("{id}\n"));
    }
}
