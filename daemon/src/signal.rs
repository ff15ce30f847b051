//! The daemon's signals: SIGTERM (Pantavisor stopping the daemon) and
//! SIGINT (a terminal) as one stop future; SIGHUP as "look again now"
//! (re-read the graph, retry failed links), never a reason to die.

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

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

/// Install the SIGHUP handler now; the returned channel's value counts the
/// SIGHUPs received (each one is a change its receivers see).
pub fn reloads() -> std::io::Result<watch::Receiver<u64>> {
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = watch::channel(0u64);
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: re-reading the graph and retrying failed links now");
            tx.send_modify(|n| *n += 1);
            if tx.is_closed() {
                return;
            }
        }
    });
    Ok(rx)
}
