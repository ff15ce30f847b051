//! `pv-example-dbus-server`: runs Debian's dbus-daemon as the container's
//! system bus (policy: root may own and call `org.pantavisor.Example`,
//! everyone may call it, default deny) and publishes the example service
//! on it. Exits when the bus does. A stop signal is forwarded to the bus
//! (SIGTERM, then SIGKILL after 2 s), whose socket is removed before exit.

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

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
    // The bus's pid once spawned (0 before); `stopping` tells the main task
    // that the bus exiting is our doing.
    let bus_pid = Arc::new(AtomicI32::new(0));
    let stopping = Arc::new(AtomicBool::new(false));
    {
        let (bus_pid, stopping) = (bus_pid.clone(), stopping.clone());
        pv_examples::pid1::exit_on_stop("pv-example-dbus-server", move || {
            stopping.store(true, Ordering::SeqCst);
            stop_bus(bus_pid.load(Ordering::SeqCst));
            pv_examples::pid1::remove_paths(&[pv_examples::dbus::SOCKET]);
        })?;
    }
    let result = run(&args, &bus_pid).await;
    if stopping.load(Ordering::SeqCst) {
        // Whatever failed, the bus going away is our doing: the stop-signal
        // thread is finishing up and exits the process with 0.
        std::future::pending::<()>().await;
    }
    result
}

/// Runs the bus and the service until the bus exits (always an error).
async fn run(args: &Args, bus_pid: &AtomicI32) -> anyhow::Result<()> {
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
    if let Some(pid) = bus.id().and_then(|p| i32::try_from(p).ok()) {
        bus_pid.store(pid, Ordering::SeqCst);
    }
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

/// SIGTERM to the bus, SIGKILL if it is still there after 2 s.
fn stop_bus(pid: i32) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    if pid <= 0 {
        return;
    }
    let pid = Pid::from_raw(pid);
    if kill(pid, Signal::SIGTERM).is_err() {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    // Reaping it here races tokio's reaper; whoever loses sees ECHILD,
    // which also means "gone".
    while let Ok(WaitStatus::StillAlive) = waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        if Instant::now() > deadline {
            let _ = kill(pid, Signal::SIGKILL);
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
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
