//! Stop signals for an example running as its container's init (PID 1).
//!
//! The kernel drops every signal a PID namespace's init has no handler for
//! (SIGKILL aside), so an example that leaves them at their default turns
//! each lenient stop into a forced one: Pantavisor stops a container with
//! LXC's shutdown, which sends the container's halt signal
//! (`lxc.signal.halt`, SIGPWR unless the config says otherwise), waits 5 s
//! and then SIGKILLs it — and pv-ctrl answers `PUT /containers/<c>` only
//! after that. `docker stop`, appengine-lite and a shell send SIGTERM or
//! SIGINT.
//!
//! [`exit_on_stop`] catches all three on a thread of its own, prints
//! `<example>: <SIGNAL> received, stopping`, runs the example's cleanup
//! (remove its sockets, stop a child) and exits 0. It works the same
//! whether the example is PID 1 or a plain process, and whatever threads or
//! runtimes the example starts later, because the handlers are
//! process-wide.

use std::io::Write;
use std::path::Path;

use tokio::signal::unix::{signal, Signal, SignalKind};

/// The signals that mean "stop": LXC's default halt signal, `docker stop`'s
/// and Ctrl-C's.
pub const STOP_SIGNALS: [(&str, libc::c_int); 3] = [
    ("SIGPWR", libc::SIGPWR),
    ("SIGTERM", libc::SIGTERM),
    ("SIGINT", libc::SIGINT),
];

/// Makes the process exit 0 on the first stop signal, after `cleanup`.
///
/// Returns once the handlers are installed, so a signal sent after this
/// call is never lost. `name` prefixes the line printed on stop.
pub fn exit_on_stop<F>(name: &'static str, cleanup: F) -> std::io::Result<()>
where
    F: FnOnce() + Send + 'static,
{
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            rt.block_on(async move {
                let mut streams = match listen() {
                    Ok(s) => s,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                let [pwr, term, int] = &mut streams;
                let which = tokio::select! {
                    _ = pwr.recv() => STOP_SIGNALS[0].0,
                    _ = term.recv() => STOP_SIGNALS[1].0,
                    _ = int.recv() => STOP_SIGNALS[2].0,
                };
                println!("{name}: {which} received, stopping");
                cleanup();
                let _ = std::io::stdout().flush();
                std::process::exit(0);
            });
        })?;
    ready_rx
        .recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("stop-signal thread died")))
}

/// Handlers for [`STOP_SIGNALS`], in that order.
fn listen() -> std::io::Result<[Signal; 3]> {
    Ok([
        signal(SignalKind::from_raw(STOP_SIGNALS[0].1))?,
        signal(SignalKind::from_raw(STOP_SIGNALS[1].1))?,
        signal(SignalKind::from_raw(STOP_SIGNALS[2].1))?,
    ])
}

/// Removes each path that exists (sockets, lock files); a missing one is
/// fine, anything else is reported on stdout (the console log).
pub fn remove_paths<P: AsRef<Path>>(paths: &[P]) {
    for p in paths {
        let p = p.as_ref();
        match std::fs::remove_file(p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => println!("could not remove {}: {e}", p.display()),
        }
    }
}
