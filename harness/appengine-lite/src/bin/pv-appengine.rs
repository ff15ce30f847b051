//! `pv-appengine`: installs pvtx.d on first boot, serves pv-ctrl, runs the
//! revision's containers with LXC and manages `pv-xconnect` (and, with
//! `--hosted-bus`, the `pv-dbus` system bus).
//!
//! Every path sits under `--root` (default `/`) so tests can run it in a
//! temporary directory with `--runtime process`.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, ValueEnum};

use appengine_lite::ctrl::{self, Ctrl};
use appengine_lite::daemon::{Daemon, DaemonSpec};
use appengine_lite::engine::{Engine, EngineConfig, Launch};
use appengine_lite::hostbus::HostBus;
use appengine_lite::launch;
use appengine_lite::paths::Paths;
use appengine_lite::pvlog::PvLog;
use appengine_lite::runtime::{self, LxcRuntime, ProcessRuntime, Runtime};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum RuntimeKind {
    /// Debian's LXC (the real thing).
    Lxc,
    /// `lxc.init.cmd` as a plain host process (tests without LXC).
    Process,
}

#[derive(Debug, Parser)]
#[command(about = "Minimal Pantavisor-compatible appengine (test double)")]
struct Args {
    /// Prefix for every path (storage, pvtx.d, run dir, /volumes, /dev).
    #[arg(long, env = "PV_APPENGINE_ROOT", default_value = "/")]
    root: PathBuf,
    /// The managed daemon, spawned with no arguments.
    #[arg(
        long,
        env = "PV_APPENGINE_XCONNECT",
        default_value = "/usr/bin/pv-xconnect"
    )]
    xconnect: PathBuf,
    /// Delay before respawning the daemon after it exits.
    #[arg(long, env = "PV_APPENGINE_RESPAWN_MS", default_value_t = 5000)]
    respawn_ms: u64,
    /// Length of one second of auto-recovery time (retry delays, backoff,
    /// stable and group timeouts); tests shorten it.
    #[arg(long, env = "PV_APPENGINE_RECOVERY_UNIT_MS", default_value_t = 1000)]
    recovery_unit_ms: u64,
    /// Time upstream takes to stop a container's loggers before its halt
    /// signal (a `PUT /containers` stop or restart answers after it).
    #[arg(long, env = "PV_APPENGINE_LOGGER_STOP_MS", default_value_t = 5000)]
    logger_stop_ms: u64,
    /// Grace between a container's halt signal and its forced stop.
    #[arg(long, env = "PV_APPENGINE_STOP_TIMEOUT_MS", default_value_t = 5000)]
    stop_timeout_ms: u64,
    /// Pause of a reboot between teardown and the new boot.
    #[arg(long, env = "PV_APPENGINE_REBOOT_MS", default_value_t = 5000)]
    reboot_ms: u64,
    /// Host the D-Bus system bus (upstream's PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS):
    /// a managed `pv-dbus` daemon and the builtin `system-bus` export.
    #[arg(long, env = "PV_APPENGINE_HOSTED_BUS")]
    hosted_bus: bool,
    /// The dbus-daemon the hosted bus runs.
    #[arg(
        long,
        env = "PV_APPENGINE_DBUS_DAEMON",
        default_value = "/usr/bin/dbus-daemon"
    )]
    dbus_daemon: PathBuf,
    /// Container runtime.
    #[arg(long, env = "PV_APPENGINE_RUNTIME", value_enum, default_value = "lxc")]
    runtime: RuntimeKind,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?
        .block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let paths = Paths::new(&args.root);
    let log = Arc::new(
        PvLog::open(&paths.pantavisor_log())
            .with_context(|| format!("opening {}", paths.pantavisor_log().display()))?,
    );
    log.info("pantavisor", "appengine-lite starting");
    std::fs::create_dir_all(paths.run_dir())?;
    if let Err(e) = runtime::link_run_logs(&paths) {
        log.warn("pantavisor", &format!("could not link run logs: {e}"));
    }

    let rt: Arc<dyn Runtime> = match args.runtime {
        RuntimeKind::Lxc => Arc::new(LxcRuntime {
            paths: paths.clone(),
        }),
        RuntimeKind::Process => Arc::new(ProcessRuntime {
            paths: paths.clone(),
        }),
    };
    let engine = Engine::new(
        log.clone(),
        rt,
        EngineConfig {
            recovery_unit: Duration::from_millis(args.recovery_unit_ms),
            logger_stop: Duration::from_millis(args.logger_stop_ms),
            stop_timeout: Duration::from_millis(args.stop_timeout_ms),
            reboot_delay: Duration::from_millis(args.reboot_ms),
            ..EngineConfig::default()
        },
    );
    // Upstream passes nothing; under a test root the daemon must still
    // find pv-ctrl, which our pv-xconnect reads from this variable.
    let env = if paths.is_real_root() {
        Vec::new()
    } else {
        vec![(
            "PV_XCONNECT_CTRL_SOCKET".to_owned(),
            paths.ctrl_socket().to_string_lossy().into_owned(),
        )]
    };
    let respawn = Duration::from_millis(args.respawn_ms);
    let xconnect = Daemon::new(
        DaemonSpec {
            env,
            ..DaemonSpec::binary(args.xconnect.clone())
        },
        respawn,
        log.clone(),
    );
    let mut daemons = vec![
        Daemon::new(DaemonSpec::hwrngd(), respawn, log.clone()),
        xconnect,
    ];
    let hostbus = args
        .hosted_bus
        .then(|| Arc::new(HostBus::new(&paths, args.dbus_daemon.clone())));
    if let Some(bus) = &hostbus {
        bus.prepare()
            .with_context(|| format!("preparing the hosted bus in {}", bus.socket().display()))?;
        log.info(
            "dbus-daemon",
            &format!(
                "hosted dbus system bus enabled, socket {}",
                bus.socket().display()
            ),
        );
        daemons.push(Daemon::new(bus.daemon_spec(), respawn, log.clone()));
        engine.set_hostbus(bus.clone());
    }
    engine.set_daemons(daemons.clone());

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    // Upstream spawns the daemons at init, before it looks at the state.
    for d in &daemons {
        tokio::spawn(d.clone().run());
    }
    let (mut server, mut sock_ino);
    loop {
        (server, sock_ino) = serve_ctrl(&paths, &engine, &log)?;
        let refusal = match launch::load(&paths, &log, hostbus.as_deref()) {
            Ok(state) => {
                engine.load(state);
                tokio::spawn(engine.clone().run());
                break;
            }
            Err(r) => r,
        };
        // STATE_REBOOT in appengine mode (see appengine_lite::launch):
        // pv-ctrl's listener closes (the socket file stays), the daemons
        // are stopped, pantavisor "exits", pv-appengine launches it again.
        engine.fail(refusal.error.clone());
        refusal.log(&log);
        close_ctrl(server, &log).await;
        for d in &daemons {
            d.suspend();
        }
        exited(args.reboot_ms);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(args.reboot_ms)) => {}
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
        pvtest("INFO", "launching pantavisor rev=0");
        for d in &daemons {
            d.resume();
        }
    }

    // A reboot or poweroff of the running revision (engine::Launch).
    let mut server = Some(server);
    let mut launches = engine.launches();
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            changed = launches.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = *launches.borrow_and_update();
                match (now, server.take()) {
                    (Launch::Running, None) => {
                        pvtest("INFO", "launching pantavisor rev=0");
                        for d in &daemons {
                            d.resume();
                        }
                        let (s, ino) = serve_ctrl(&paths, &engine, &log)?;
                        server = Some(s);
                        sock_ino = ino;
                    }
                    (Launch::Rebooting, Some(s)) => {
                        close_ctrl(s, &log).await;
                        for d in &daemons {
                            d.suspend();
                        }
                        exited(args.reboot_ms);
                    }
                    (Launch::PoweredOff, Some(s)) => {
                        close_ctrl(s, &log).await;
                        for d in &daemons {
                            d.suspend();
                        }
                        pvtest("DEBUG", "pantavisor exited");
                        pvtest("INFO", "Pantavisor stopped");
                    }
                    (_, s) => server = s,
                }
            }
        }
    }
    log.info("pantavisor", "shutting down");
    for d in &daemons {
        d.terminate();
    }
    engine.shutdown().await;
    // Only remove the socket if a newer instance has not replaced it.
    if std::fs::metadata(paths.ctrl_socket()).map(|m| m.ino()).ok() == sock_ino {
        let _ = std::fs::remove_file(paths.ctrl_socket());
    }
    Ok(())
}

/// Binds pv-ctrl and serves it; returns the server task and the socket's
/// inode (so shutdown only removes its own socket).
fn serve_ctrl(
    paths: &Paths,
    engine: &Arc<Engine>,
    log: &Arc<PvLog>,
) -> Result<(tokio::task::JoinHandle<()>, Option<u64>)> {
    let listener = ctrl::bind(&paths.ctrl_socket())
        .with_context(|| format!("binding {}", paths.ctrl_socket().display()))?;
    let ino = std::fs::metadata(paths.ctrl_socket()).map(|m| m.ino()).ok();
    let ctrl = Ctrl::new(
        engine.clone(),
        paths.clone(),
        log.clone(),
        Default::default(),
    );
    let server = tokio::spawn(ctrl::serve(listener, ctrl));
    log.info(
        "ctrl",
        &format!("pv-ctrl listening on {}", paths.ctrl_socket().display()),
    );
    Ok((server, ino))
}

/// Upstream's `pv_ctrl_stop`: the listener closes, the socket file stays
/// (a client connecting to it is refused). Connections already accepted
/// finish.
async fn close_ctrl(server: tokio::task::JoinHandle<()>, log: &PvLog) {
    server.abort();
    let _ = server.await;
    log.debug("ctrl", "server stopped");
}

/// pv-appengine's lines after a pantavisor that shut down for a reboot
/// exited (upstream's own last line, "shutdown complete...", comes after
/// its log is unmounted and never reaches pantavisor.log).
fn exited(reboot_ms: u64) {
    pvtest("DEBUG", "pantavisor exited");
    pvtest(
        "DEBUG",
        &format!("restarting in {} seconds...", reboot_ms / 1000),
    );
}

/// A line of pv-appengine's own (its `pvtest_log`), on stdout.
fn pvtest(level: &str, msg: &str) {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!("[pvtest] {secs} {level} -- [pv-appengine]: {msg}");
}
