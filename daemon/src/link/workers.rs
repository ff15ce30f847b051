//! Session workers: the threads that run links' accept loops and sessions.
//!
//! On tokio's multi-thread runtime a session's wakeups (consumer readable,
//! provider readable) land on whichever worker polls the I/O driver, and a
//! woken task makes idle workers wake up to steal: on one REST connection
//! that cost 5.4 context switches per request against nginx's 2.5. Here,
//! as with nginx's worker processes, each worker is a current-thread
//! runtime on a thread of its own: a session lives on one worker for its
//! whole life with its sockets in that worker's epoll, so one request wakes
//! one thread, once per direction.
//!
//! Each link's accept loop is placed on a worker (round robin over links).
//! A new session stays on the accept loop's worker unless another worker
//! serves fewer sessions: then its socket is moved there (deregistered and
//! registered again, once per connection), so concurrent connections of
//! one link still use every core. With [`start`] never called (tests,
//! benchmarks), everything runs on the caller's runtime as before.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::net::UnixStream;
use tokio::runtime::Handle;
use tokio::task::JoinHandle;
use tokio_util::task::TaskTracker;

static WORKERS: OnceLock<Workers> = OnceLock::new();

thread_local! {
    /// The index of the worker this thread is, if it is one.
    static CURRENT: Cell<Option<usize>> = const { Cell::new(None) };
}

struct Workers {
    workers: Vec<Worker>,
    /// Round robin for accept loops.
    next: AtomicUsize,
}

struct Worker {
    handle: Handle,
    /// Sessions running on this worker.
    live: Arc<AtomicUsize>,
}

/// Start `count` session workers (threads named `pv-xconnect-wN`), once per
/// process. Links started afterwards run on them.
pub fn start(count: usize) -> io::Result<()> {
    let count = count.max(1);
    let mut workers = Vec::with_capacity(count);
    for index in 0..count {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name(format!("pv-xconnect-w{index}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                CURRENT.with(|c| c.set(Some(index)));
                let _ = tx.send(Ok(rt.handle().clone()));
                // Runs the tasks spawned through the handle for as long as
                // the process lives.
                rt.block_on(std::future::pending::<()>());
            })?;
        let handle = rx
            .recv()
            .map_err(|_| io::Error::other("session worker died at start"))??;
        workers.push(Worker {
            handle,
            live: Arc::new(AtomicUsize::new(0)),
        });
    }
    WORKERS
        .set(Workers {
            workers,
            next: AtomicUsize::new(0),
        })
        .map_err(|_| io::Error::other("session workers already started"))
}

/// Number of session workers (0: links run on the caller's runtime).
pub fn count() -> usize {
    WORKERS.get().map_or(0, |w| w.workers.len())
}

/// Sessions running on each worker (empty without workers).
pub fn loads() -> Vec<usize> {
    WORKERS.get().map_or_else(Vec::new, |w| {
        w.workers
            .iter()
            .map(|w| w.live.load(Ordering::Relaxed))
            .collect()
    })
}

/// Where a link's accept loop runs: the next worker in turn, or the
/// caller's runtime when there are no workers.
pub(crate) fn home() -> Handle {
    match WORKERS.get() {
        Some(w) => {
            let i = w.next.fetch_add(1, Ordering::Relaxed) % w.workers.len();
            w.workers[i].handle.clone()
        }
        None => Handle::current(),
    }
}

/// Spawn a session for `stream` (accepted on the current thread's
/// runtime) on the worker serving the fewest sessions, preferring the
/// current one (no move, no cross-thread wakeup) on a tie.
pub(crate) fn spawn_session<F, Fut>(
    tracker: &TaskTracker,
    stream: UnixStream,
    session: F,
) -> io::Result<JoinHandle<()>>
where
    F: FnOnce(UnixStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(workers) = WORKERS.get() else {
        return Ok(tracker.spawn(session(stream)));
    };
    let here = CURRENT.with(Cell::get);
    let load = |i: usize| workers.workers[i].live.load(Ordering::Relaxed);
    let mut best = here.unwrap_or(0);
    for i in 0..workers.workers.len() {
        if load(i) < load(best) {
            best = i;
        }
    }
    let worker = &workers.workers[best];
    let live = Live::new(worker.live.clone());
    if here == Some(best) {
        let fut = session(stream);
        return Ok(tracker.spawn(async move {
            let _live = live;
            fut.await
        }));
    }
    // Move the socket to the other worker's epoll.
    let std = stream.into_std()?;
    let stream = {
        let _in = worker.handle.enter();
        UnixStream::from_std(std)?
    };
    let fut = session(stream);
    Ok(tracker.spawn_on(
        async move {
            let _live = live;
            fut.await
        },
        &worker.handle,
    ))
}

/// Counts a session on its worker while it lives (panics included).
struct Live(Arc<AtomicUsize>);

impl Live {
    fn new(live: Arc<AtomicUsize>) -> Self {
        live.fetch_add(1, Ordering::Relaxed);
        Live(live)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
