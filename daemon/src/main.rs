//! `pv-xconnect`: the daemon Pantavisor starts (with no arguments) and the
//! `pv-xconnect status` client.
//!
//! Task layout: one graph source (pv-ctrl poller or `--graph-file` watcher)
//! publishes on a `watch`; the reconciler follows it and publishes a status
//! table on another `watch`, which the status socket serves. On SIGTERM or
//! SIGINT the source and the reconciler stop first, the reconciler tears
//! every link down (removing what it injected), then the process exits 0.
//! SIGHUP makes the source fetch and the reconciler retry at once.
//!
//! At start the soft `RLIMIT_NOFILE` is raised to the hard limit: the
//! daemon holds two descriptors per session, bounded per link by
//! `--max-sessions-per-link`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing::{debug, error, info, warn};

use pv_xconnect::ctrl::{self, Source};
use pv_xconnect::link::{self, dbus, rest, Limits};
use pv_xconnect::reconcile::{self, LinkBackend, Reconciler};
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::status::{self, StatusError};

/// How long tearing every link down may take at exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// glibc malloc arenas (see `sys::limit_malloc_arenas`): 2 keeps nearly
/// all of what 1 saves at 100 links without one lock for every thread.
const MALLOC_ARENAS: i32 = 2;

/// Pantavisor xconnect service-mesh daemon.
///
/// Without a subcommand, runs the daemon: follows the xconnect graph
/// published by pv-ctrl (or a graph file) and plants each link's socket or
/// device node in the consumer container.
#[derive(Debug, Parser)]
#[command(name = "pv-xconnect", version)]
struct Cli {
    /// pv-ctrl's Unix socket, polled with `GET /xconnect-graph`.
    #[arg(
        long,
        value_name = "PATH",
        env = "PV_XCONNECT_CTRL_SOCKET",
        default_value = "/run/pantavisor/pv/pv-ctrl"
    )]
    ctrl_socket: PathBuf,

    /// Poll period in milliseconds (also the first retry delay of a failed
    /// link; later retries back off exponentially up to 30 s).
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    interval_ms: u64,

    /// Read the graph from this JSON file instead of pv-ctrl; re-read when
    /// it changes.
    #[arg(long, value_name = "PATH")]
    graph_file: Option<PathBuf>,

    /// rest links: once a request head started arriving, it must be
    /// complete within this many milliseconds (slow clients are closed).
    #[arg(long, value_name = "MS", default_value_t = duration_ms(rest::DEFAULT_HEADER_TIMEOUT),
          value_parser = clap::value_parser!(u64).range(1..))]
    rest_header_timeout_ms: u64,

    /// rest links: a consumer connection with no request in progress is
    /// closed after this many milliseconds without traffic.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(rest::DEFAULT_IDLE_TIMEOUT),
          value_parser = clap::value_parser!(u64).range(1..))]
    rest_idle_timeout_ms: u64,

    /// dbus links: a consumer must finish authenticating within this many
    /// milliseconds; the provider's bus is contacted only afterwards.
    #[arg(long, value_name = "MS", default_value_t = duration_ms(dbus::DEFAULT_AUTH_TIMEOUT),
          value_parser = clap::value_parser!(u64).range(1..))]
    dbus_auth_timeout_ms: u64,

    /// Sessions one link serves at once; further connections are accepted
    /// and closed at once (logged once per burst).
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_sessions as u32,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_sessions_per_link: u32,

    /// unix links: bind the provider's socket into the consumer instead of
    /// relaying (zero copy; no byte counts, connections survive the link's
    /// removal, the provider sees the consumer's own credentials). Falls
    /// back to relaying where the kernel refuses the mount API.
    #[arg(long)]
    unix_passthrough: bool,

    /// Threads serving the links' connections (each a single-threaded
    /// event loop a connection stays on); 0: one per CPU, at most 4.
    #[arg(long, value_name = "N", default_value_t = 0)]
    session_workers: usize,

    /// The daemon's status socket (served by the daemon, read by `status`).
    /// Its directory is one Pantavisor does not mount into containers.
    #[arg(long, value_name = "PATH", global = true, default_value = status::DEFAULT_SOCKET)]
    status_socket: PathBuf,

    #[command(subcommand)]
    command: Option<Command>,
}

impl Cli {
    /// The mediations' settings from the flags.
    fn link_options(&self) -> link::Options {
        link::Options {
            limits: Limits {
                max_sessions: self.max_sessions_per_link as usize,
                ..Limits::default()
            },
            rest: rest::Options {
                header_timeout: Duration::from_millis(self.rest_header_timeout_ms),
                idle_timeout: Duration::from_millis(self.rest_idle_timeout_ms),
            },
            dbus: dbus::Options {
                auth_timeout: Duration::from_millis(self.dbus_auth_timeout_ms),
            },
            unix_passthrough: self.unix_passthrough,
        }
    }
}

fn duration_ms(d: Duration) -> u64 {
    d.as_millis() as u64
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print every link of the running daemon: consumer, name, type, target,
    /// provider, pids, state (pending / injected / failed: reason), mode
    /// (relay / passthrough, socket links), sessions (live/total) and bytes
    /// relayed.
    Status,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Status) => run_status(&cli),
        None => run_daemon(cli),
    }
}

fn run_status(cli: &Cli) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pv-xconnect status: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(status::query(&cli.status_socket)) {
        Ok(links) => {
            if links.is_empty() {
                eprintln!("no links");
            }
            for link in links {
                println!("{}", link.line());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pv-xconnect status: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_daemon(cli: Cli) -> ExitCode {
    // Before any thread exists (the logger's included).
    let arenas_capped = pv_xconnect::sys::limit_malloc_arenas(MALLOC_ARENAS);
    pv_xconnect::logging::init();
    if arenas_capped {
        debug!("malloc arenas capped at {MALLOC_ARENAS}");
    }
    match pv_xconnect::sys::raise_nofile_limit() {
        Ok((old, new)) if old != new => info!("open files limit raised from {old} to {new}"),
        Ok(_) => {}
        Err(e) => warn!("cannot raise the open files limit: {e}"),
    }
    let workers = match cli.session_workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        n => n,
    };
    if let Err(e) = link::workers::start(workers) {
        error!("cannot start the session workers: {e}");
        return ExitCode::FAILURE;
    }
    // The control plane (graph, reconcile, status): one worker is plenty;
    // namespace work runs on its own short-lived threads, and the links'
    // traffic on the session workers.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("pv-xconnect")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(daemon(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn daemon(cli: Cli) -> anyhow::Result<()> {
    let terminated = pv_xconnect::signal::terminated().context("installing signal handlers")?;
    let reloads = pv_xconnect::signal::reloads().context("installing the SIGHUP handler")?;
    let interval = Duration::from_millis(cli.interval_ms);
    let source = match &cli.graph_file {
        Some(path) => Source::File(path.clone()),
        None => Source::Ctrl(cli.ctrl_socket.clone()),
    };
    info!(
        version = env!("CARGO_PKG_VERSION"),
        source = ?source,
        interval_ms = cli.interval_ms,
        max_sessions_per_link = cli.max_sessions_per_link,
        unix_passthrough = cli.unix_passthrough,
        status_socket = %cli.status_socket.display(),
        "pv-xconnect starting"
    );

    // Two tokens so teardown is ordered: `control` stops the source, the
    // status socket and the reconciler loop (which then stops every link
    // properly); `links` is the links' parent, cancelled last as a net.
    let control = Shutdown::new();
    let links = Shutdown::new();

    let (graph_tx, graph_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(Vec::new());

    let status_task = match status::bind(&cli.status_socket).await {
        Ok(listener) => Some(tokio::spawn(status::serve(
            listener,
            cli.status_socket.clone(),
            status_rx,
            control.clone(),
        ))),
        Err(e @ StatusError::InUse(_)) => return Err(e.into()),
        Err(e) => {
            warn!("status socket disabled: {e}");
            None
        }
    };

    let source_task = tokio::spawn(ctrl::run(
        source,
        interval,
        graph_tx,
        reloads.clone(),
        control.clone(),
    ));
    let reconciler = Reconciler::new(
        LinkBackend::with_options(links.clone(), cli.link_options()),
        interval,
    );
    let mut reconcile_task = tokio::spawn(reconcile::run(
        reconciler,
        graph_rx,
        reloads,
        status_tx,
        control.clone(),
    ));

    let outcome = tokio::select! {
        sig = terminated => {
            info!("{sig} received: stopping all links");
            Ok(())
        }
        ended = &mut reconcile_task => {
            Err(anyhow::anyhow!("reconciler ended unexpectedly: {ended:?}"))
        }
    };

    control.cancel();
    if outcome.is_ok()
        && tokio::time::timeout(STOP_TIMEOUT, &mut reconcile_task)
            .await
            .is_err()
    {
        warn!("links did not stop within {}s", STOP_TIMEOUT.as_secs());
    }
    links.cancel();
    let _ = source_task.await;
    if let Some(task) = status_task {
        let _ = task.await;
    }
    if outcome.is_ok() {
        info!("pv-xconnect stopped");
    }
    outcome
}
