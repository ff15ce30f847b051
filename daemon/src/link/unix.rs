//! `unix` mediation: a byte relay that keeps SCM_RIGHTS fds attached to the
//! bytes they were sent with, propagates half-close, and reclaims idle
//! half-open sessions.
//!
//! Each direction reads with `recvmsg` into one buffer allocated per session
//! (grown once for bulk traffic) and one control buffer, then writes the same bytes with the received
//! fds attached to the first `sendmsg`. Stream sockets never merge data
//! carrying different fds into one read, so fds stay bound to their bytes.
//! End of stream in one direction becomes `shutdown(SHUT_WR)` on the other
//! socket; the remaining direction then lives only while it carries traffic
//! at least once per [`HALF_OPEN_LINGER`].
//!
//! Fds in transit count against the link's [`FdBudget`]: a direction holds
//! at most one read's worth while its write is pending, and never more
//! than the budget leaves room for (see [`crate::fdpass`]).

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::time::Instant;

use super::{LinkStats, Session, SessionError};
use crate::fdpass::{self, FdBudget, HeldFd};
use crate::shutdown::Shutdown;

/// Bytes read per `recvmsg`, per direction, once a session carries bulk
/// traffic.
pub const BUF_SIZE: usize = 128 * 1024;
/// A session's first buffer: most sessions are short or chatty, and a small
/// buffer keeps connection setup cheap (no 128 KiB zeroing) and idle
/// sessions light. It grows to [`BUF_SIZE`] the first time a read fills it.
const INITIAL_BUF: usize = 16 * 1024;

/// How long a half-closed session may stay idle before it is reclaimed.
pub const HALF_OPEN_LINGER: Duration = Duration::from_secs(30);

/// Relay one consumer connection to a fresh provider connection.
pub async fn serve(consumer: UnixStream, session: &Session) -> Result<(), SessionError> {
    let p = &session.provider;
    let provider = p.connect().await.with_context(|| {
        format!(
            "provider {} (pid {}) unreachable at {}",
            p.name,
            p.pid,
            p.socket.display()
        )
    })?;
    relay(
        &consumer,
        &provider,
        &session.stats,
        &session.fds,
        &session.shutdown,
        HALF_OPEN_LINGER,
    )
    .await?;
    Ok(())
}

/// Relay between `consumer` and `provider` until both directions ended,
/// one failed, the half-open linger expired, or `shutdown` fired.
pub async fn relay(
    consumer: &UnixStream,
    provider: &UnixStream,
    stats: &LinkStats,
    fds: &FdBudget,
    shutdown: &Shutdown,
    linger: Duration,
) -> anyhow::Result<()> {
    let activity = AtomicU64::new(0);
    let up = pump(consumer, provider, stats, fds, &activity);
    let down = pump(provider, consumer, stats, fds, &activity);
    tokio::pin!(up, down);
    let (mut up_done, mut down_done) = (false, false);
    let mut seen = 0;
    let far = Instant::now() + Duration::from_secs(86400 * 365);
    let deadline = tokio::time::sleep_until(far);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = &mut up, if !up_done => {
                r.context("consumer to provider")?;
                up_done = true;
                seen = activity.load(Ordering::Relaxed);
                deadline.as_mut().reset(Instant::now() + linger);
            }
            r = &mut down, if !down_done => {
                r.context("provider closed; relaying to consumer")?;
                down_done = true;
                seen = activity.load(Ordering::Relaxed);
                deadline.as_mut().reset(Instant::now() + linger);
            }
            _ = &mut deadline, if up_done != down_done => {
                let now = activity.load(Ordering::Relaxed);
                if now == seen {
                    tracing::debug!("half-open session idle for {linger:?}: reclaimed");
                    return Ok(());
                }
                seen = now;
                deadline.as_mut().reset(Instant::now() + linger);
            }
        }
        if up_done && down_done {
            return Ok(());
        }
    }
}

/// Copy `from` to `to` with fds until end of stream, then shut down the
/// write side of `to`.
async fn pump(
    from: &UnixStream,
    to: &UnixStream,
    stats: &LinkStats,
    budget: &FdBudget,
    activity: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; INITIAL_BUF];
    let mut cmsg = fdpass::cmsg_buffer();
    let mut fds: Vec<HeldFd> = Vec::new();
    let raw = from.as_raw_fd();
    loop {
        let n = from
            .async_io(Interest::READABLE, || {
                fdpass::recv_now_budget(raw, &mut buf, &mut cmsg, &mut fds, budget)
            })
            .await?;
        if n == 0 {
            // ENOTCONN when the peer is already fully gone: nothing to tell.
            let _ = nix::sys::socket::shutdown(to.as_raw_fd(), nix::sys::socket::Shutdown::Write);
            return Ok(());
        }
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        fdpass::send_all_with_fds(to, &buf[..n], &borrowed).await?;
        drop(borrowed);
        // Our copies close here; the peer holds its own now.
        fds.clear();
        stats.add_bytes(n as u64);
        activity.fetch_add(1, Ordering::Relaxed);
        if n == buf.len() && buf.len() < BUF_SIZE {
            buf.resize(BUF_SIZE, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn half_open_session_is_reclaimed_after_linger_but_not_while_busy() {
        let (consumer_app, consumer) = UnixStream::pair().unwrap();
        let (provider, mut provider_app) = UnixStream::pair().unwrap();
        let stats = LinkStats::default();
        let shutdown = Shutdown::new();
        let linger = Duration::from_millis(200);
        let budget = FdBudget::new(16);
        let relay = relay(&consumer, &provider, &stats, &budget, &shutdown, linger);
        let peers = async {
            let mut consumer_app = consumer_app;
            // Consumer half-closes: provider sees EOF ...
            consumer_app.shutdown().await.unwrap();
            let mut buf = [0u8; 8];
            assert_eq!(provider_app.read(&mut buf).await.unwrap(), 0);
            // ... but provider → consumer still flows, and keeps it alive
            // past the linger while it is active.
            for _ in 0..4 {
                provider_app.write_all(b"x").await.unwrap();
                consumer_app.read_exact(&mut buf[..1]).await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            std::time::Instant::now()
        };
        let start = std::time::Instant::now();
        let (r, busy_until) = tokio::join!(relay, peers);
        r.unwrap();
        let idle = start.elapsed() - busy_until.duration_since(start);
        assert!(busy_until.duration_since(start) >= Duration::from_millis(400));
        assert!(idle < Duration::from_millis(600), "reclaimed after ~linger");
        assert_eq!(stats.bytes(), 4);
    }
}
