//! The daemon's stop signals: SIGTERM (Pantavisor stopping the daemon) and
//! SIGINT (a terminal), as one future.

use tokio::signal::unix::{signal, SignalKind};

/// Install the handlers now (so a signal arriving before the first poll of
/// the returned future is not lost) and resolve on the first of them.
pub fn terminated() -> std::io::Result<impl std::future::Future<Output = &'static str>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    })
}
