//! Namespace plumbing.
//!
//! `setns(CLONE_NEWNS)` fails in a thread that shares its fs_struct with
//! others (every tokio worker), so each operation runs on a dedicated OS
//! thread that first calls `unshare(CLONE_FS)`, then enters the target mount
//! namespace, does its work and hands back only a file descriptor or a value.
//!
//! Paths a container controls are never followed out of its own root: they
//! are resolved inside `/proc/<pid>/root` with symlinks scoped to that root.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

/// Errors of namespace operations; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("{op} {path}: {source}")]
    Path {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

/// A character device as found in the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceNode {
    pub major: u64,
    pub minor: u64,
    /// Permission bits (and file type bits) of the source node.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Bind a listening socket at `target` inside the consumer's mount namespace.
pub async fn inject_listener(_consumer_pid: i32, _target: &Path) -> Result<UnixListener, NsError> {
    todo!("core issue")
}

/// Connect to `socket` resolved inside the provider's root (pid 0: host).
/// With `creds`, the connecting thread carries that (uid, gid).
pub async fn connect_provider(
    provider_pid: i32,
    socket: &Path,
    creds: Option<(u32, u32)>,
) -> Result<UnixStream, NsError> {
    if provider_pid == 0 {
        let path = socket.to_path_buf();
        return on_thread(move || {
            if let Some((uid, gid)) = creds {
                crate::sys::set_thread_creds(uid, gid).map_err(|source| NsError::Path {
                    op: "set credentials for",
                    path: path.clone(),
                    source,
                })?;
            }
            UnixStream::connect(&path).map_err(|source| NsError::Path {
                op: "connect",
                path,
                source,
            })
        })
        .await;
    }
    todo!("core issue")
}

/// Run `f` on a fresh OS thread (never a tokio worker: it may change
/// per-thread state such as credentials or namespaces) and await its result.
async fn on_thread<T, F>(f: F) -> Result<T, NsError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, NsError> + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("pvx-ns".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .map_err(NsError::Io)?;
    rx.await
        .map_err(|_| NsError::Refused("namespace thread panicked".into()))?
}
