//! The two clocks of a rest consumer connection ([`super::Options`]):
//!
//! - **header**: once the first byte of a request head arrives on an
//!   otherwise idle connection, the whole head must follow within
//!   `header_timeout` (a slowloris client trickling header bytes is closed);
//! - **idle**: a connection with no request in progress and no byte moving
//!   for `idle_timeout` is closed (keep-alive connections do not pile up).
//!
//! A request counts as in progress from its complete head until its
//! response body is done ([`InFlight`]); neither clock runs meanwhile, so a
//! slow upload, a long poll or an event stream is never cut. hyper's own
//! `header_read_timeout` cannot tell the two apart (it also runs while a
//! keep-alive connection waits for its next request), hence this.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const NONE: u64 = u64::MAX;

/// What the clocks look at, shared by the connection's IO, its service
/// and the watchdog.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds since `start`.
    last_io: AtomicU64,
    head_since: AtomicU64,
}

impl Activity {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_io: AtomicU64::new(0),
            head_since: AtomicU64::new(NONE),
        })
    }

    fn now(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let now = self.now();
        self.last_io.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            let _ =
                self.head_since
                    .compare_exchange(NONE, now, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// A request head is complete: it is in progress until the guard
    /// (moved into its response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.head_since.store(NONE, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// Resolves with the reason once a clock runs out.
    pub async fn expired(&self, header: Duration, idle: Duration) -> &'static str {
        let (h, i) = (header.as_millis() as u64, idle.as_millis() as u64);
        let tick = (header.min(idle) / 4).max(Duration::from_millis(10));
        loop {
            tokio::time::sleep(tick).await;
            if self.in_flight.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let now = self.now();
            let head = self.head_since.load(Ordering::Relaxed);
            if head != NONE && now.saturating_sub(head) >= h {
                return "request head not complete in time";
            }
            if now.saturating_sub(self.last_io.load(Ordering::Relaxed)) >= i {
                return "idle";
            }
        }
    }
}

/// A request in progress; its drop starts the idle clock again.
#[derive(Debug)]
pub struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        a.last_io.store(a.now(), Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The consumer stream, reporting what it reads to [`Activity`].
pub struct Watched<T> {
    inner: T,
    activity: Arc<Activity>,
}

impl<T> Watched<T> {
    pub fn new(inner: T, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if r.is_ready() {
            self.activity.read(buf.filled().len() - before);
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn clocks() {
        let a = Activity::new();
        let (h, i) = (Duration::from_secs(10), Duration::from_secs(60));
        // Idle from the start.
        let t = Instant::now();
        assert_eq!(a.expired(h, i).await, "idle");
        assert!(t.elapsed() >= i);
        // A head started and never finished.
        let a = Activity::new();
        a.read(5);
        assert_eq!(a.expired(h, i).await, "request head not complete in time");
        // In progress: neither clock runs.
        let a = Activity::new();
        a.read(5);
        let guard = a.begin();
        let r = tokio::time::timeout(Duration::from_secs(600), a.expired(h, i)).await;
        assert!(r.is_err());
        drop(guard);
        assert_eq!(a.expired(h, i).await, "idle");
    }
}
