//! Namespace plumbing.
//!
//! `setns(CLONE_NEWNS)` fails in a thread that shares its fs_struct with
//! others (every tokio worker), so each operation that must *act* inside a
//! consumer runs on a dedicated OS thread that first calls
//! `unshare(CLONE_FS)`, enters the consumer's mount namespace, chroots to the
//! consumer process's root, does its work and hands back only a file
//! descriptor or a value. The thread then exits, taking its altered
//! fs_struct (and, for [`connect_provider`] with credentials, its altered
//! uid/gid) with it.
//!
//! Paths a provider controls are never followed out of its own root: they
//! are resolved with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`
//! relative to `/proc/<pid>/root`, so an absolute symlink is re-rooted
//! inside the provider instead of leading to a host path. Sockets are then
//! reached through `/proc/thread-self/fd/N`, which also lifts the 108-byte
//! `sun_path` limit.
//!
//! Things injected into a consumer are recorded as an [`Injected`] (mount
//! namespace identity, node inode, node kind) so removal touches only the
//! node we created, and only in the namespace we created it in.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};

use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::stat::{fstat, makedev, mknod, umask, Mode, SFlag};

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

/// The operation named in errors of the final openat2 inside a root.
const RESOLVE_IN_ROOT_OP: &str = "resolve in provider root";

impl NsError {
    /// The file itself does not exist inside a root that does: not a
    /// vanished process, a permission problem or a race.
    pub fn is_absent_in_root(&self) -> bool {
        matches!(self, NsError::Path { op, source, .. }
            if *op == RESOLVE_IN_ROOT_OP && source.kind() == std::io::ErrorKind::NotFound)
    }

    fn path<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> NsError + 'a {
        move |source| NsError::Path {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    fn nix<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(nix::Error) -> NsError + 'a {
        move |e| NsError::Path {
            op,
            path: path.to_path_buf(),
            source: std::io::Error::from(e),
        }
    }

    /// True when the error means "the process or path no longer exists".
    pub fn is_not_found(&self) -> bool {
        match self {
            NsError::Io(e) | NsError::Path { source: e, .. } => e.kind() == ErrorKind::NotFound,
            NsError::Refused(_) => false,
        }
    }
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

impl DeviceNode {
    pub fn is_char_device(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFCHR
    }

    pub fn is_block_device(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFBLK
    }
}

/// What kind of node we created in a consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Socket,
    CharDevice { rdev: u64 },
}

/// Identity of a node injected into a consumer, so that removal touches it
/// only if it is still ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injected {
    pub consumer_pid: i32,
    pub path: PathBuf,
    pub kind: NodeKind,
    /// (st_dev, st_ino) of the consumer's `/proc/<pid>/ns/mnt` at injection.
    mnt_ns: (u64, u64),
    /// (st_dev, st_ino) of the node we created.
    node: (u64, u64),
}

/// Bind a listening socket at `target` inside the consumer's mount namespace.
pub async fn inject_listener(consumer_pid: i32, target: &Path) -> Result<UnixListener, NsError> {
    inject_socket(consumer_pid, target).await.map(|(l, _)| l)
}

/// Bind a listening socket at `target` inside the consumer: parents are
/// created (0755), an existing *socket* there is replaced, any other file
/// type is refused; the socket is made 0666 like upstream's.
pub async fn inject_socket(
    consumer_pid: i32,
    target: &Path,
) -> Result<(UnixListener, Injected), NsError> {
    let target = absolute_target(target)?;
    on_thread(move || {
        let mnt_ns = enter_consumer(consumer_pid)?;
        let (parent, base) = prepare_target(&target, |ft| ft.is_socket(), "socket")?;
        std::env::set_current_dir(&parent).map_err(NsError::path("chdir", &parent))?;
        let listener = UnixListener::bind(&base).map_err(NsError::path("bind", &target))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666))
            .map_err(NsError::path("chmod", &target))?;
        let md = std::fs::symlink_metadata(&base).map_err(NsError::path("stat", &target))?;
        Ok((
            listener,
            Injected {
                consumer_pid,
                path: target,
                kind: NodeKind::Socket,
                mnt_ns,
                node: (md.dev(), md.ino()),
            },
        ))
    })
    .await
}

/// Create the character device `node` at `target` inside the consumer, with
/// the node's permission bits, uid and gid. An existing character device
/// there is replaced; any other file type is refused.
pub async fn mknod_in_consumer(
    consumer_pid: i32,
    target: &Path,
    node: DeviceNode,
) -> Result<Injected, NsError> {
    let target = absolute_target(target)?;
    on_thread(move || {
        let mnt_ns = enter_consumer(consumer_pid)?;
        prepare_target(&target, |ft| ft.is_char_device(), "character device")?;
        let rdev = makedev(node.major, node.minor);
        let perm = node.mode & 0o7777;
        mknod(
            &target,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(perm as libc::mode_t),
            rdev,
        )
        .map_err(NsError::nix("mknod", &target))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(perm))
            .map_err(NsError::path("chmod", &target))?;
        std::os::unix::fs::lchown(&target, Some(node.uid), Some(node.gid))
            .map_err(NsError::path("chown", &target))?;
        let md = std::fs::symlink_metadata(&target).map_err(NsError::path("stat", &target))?;
        Ok(Injected {
            consumer_pid,
            path: target,
            kind: NodeKind::CharDevice { rdev: md.rdev() },
            mnt_ns,
            node: (md.dev(), md.ino()),
        })
    })
    .await
}

/// Remove an injected node if the consumer's mount namespace still exists
/// and the node at the path is still the one we created. Returns whether
/// something was removed.
pub async fn remove_injected(injected: &Injected) -> Result<bool, NsError> {
    let inj = injected.clone();
    on_thread(move || {
        let ns_path = PathBuf::from(format!("/proc/{}/ns/mnt", inj.consumer_pid));
        match std::fs::metadata(&ns_path) {
            Ok(md) if (md.dev(), md.ino()) == inj.mnt_ns => {}
            // The consumer is gone (or its pid now names another process):
            // the namespace and our node went with it.
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(NsError::path("stat", &ns_path)(e)),
        }
        enter_consumer(inj.consumer_pid)?;
        let md = match std::fs::symlink_metadata(&inj.path) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(NsError::path("stat", &inj.path)(e)),
        };
        let same_kind = match inj.kind {
            NodeKind::Socket => md.file_type().is_socket(),
            NodeKind::CharDevice { rdev } => md.file_type().is_char_device() && md.rdev() == rdev,
        };
        if !same_kind || (md.dev(), md.ino()) != inj.node {
            return Ok(false);
        }
        std::fs::remove_file(&inj.path).map_err(NsError::path("unlink", &inj.path))?;
        Ok(true)
    })
    .await
}

/// Connect to `socket` resolved inside the provider's root (pid 0: host).
/// With `creds`, the connecting thread carries that (uid, gid).
pub async fn connect_provider(
    provider_pid: i32,
    socket: &Path,
    creds: Option<(u32, u32)>,
) -> Result<UnixStream, NsError> {
    if provider_pid < 0 {
        return Err(NsError::Refused(format!(
            "provider not running (pid {provider_pid})"
        )));
    }
    let path = socket.to_path_buf();
    let work = move || {
        if provider_pid == 0 {
            // Host side: the path is ours, no scoping needed.
            if let Some((uid, gid)) = creds {
                crate::sys::set_thread_creds(uid, gid)
                    .map_err(NsError::path("set credentials for", &path))?;
            }
            return UnixStream::connect(&path).map_err(NsError::path("connect", &path));
        }
        let fd = open_in_root(provider_pid, &path, OFlag::O_PATH)?;
        let st = fstat(&fd).map_err(NsError::nix("stat", &path))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(NsError::Refused(format!(
                "provider path {} is not a socket",
                path.display()
            )));
        }
        if let Some((uid, gid)) = creds {
            crate::sys::set_thread_creds(uid, gid)
                .map_err(NsError::path("set credentials for", &path))?;
        }
        let via = format!("/proc/thread-self/fd/{}", fd.as_raw_fd());
        UnixStream::connect(via).map_err(NsError::path("connect", &path))
    };
    match creds {
        // Credentials change the thread for good: a disposable thread.
        Some(_) => on_thread(work).await,
        None => {
            // Fast path, on the calling task: resolution walks procfs and
            // the provider's (local) filesystems and a non-blocking connect
            // never waits, so a thread handoff per connection (which halves
            // the connection rate) is not needed. Only a full listen backlog
            // sends us to the blocking pool, to wait there.
            match connect_now(provider_pid, socket) {
                Err(NsError::Path { source, .. }) if source.kind() == ErrorKind::WouldBlock => {}
                done => return done,
            }
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|_| NsError::Refused("connect task panicked".into()))?
        }
    }
}

/// A non-blocking connect to the provider's socket (resolved in its root);
/// `WouldBlock` when its listen backlog is full.
fn connect_now(provider_pid: i32, path: &Path) -> Result<UnixStream, NsError> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let resolved;
    let via = if provider_pid == 0 {
        path.to_path_buf()
    } else {
        resolved = open_in_root(provider_pid, path, OFlag::O_PATH)?;
        let st = fstat(&resolved).map_err(NsError::nix("stat", path))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(NsError::Refused(format!(
                "provider path {} is not a socket",
                path.display()
            )));
        }
        PathBuf::from(format!("/proc/thread-self/fd/{}", resolved.as_raw_fd()))
    };
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(NsError::nix("socket for", path))?;
    let addr = UnixAddr::new(&via).map_err(NsError::nix("address of", path))?;
    connect(sock.as_raw_fd(), &addr).map_err(NsError::nix("connect", path))?;
    Ok(UnixStream::from(sock))
}

/// Stat the provider's device node at `path`, resolved inside its root
/// (symlinks are followed, but never out of that root).
pub async fn stat_provider_device(provider_pid: i32, path: &Path) -> Result<DeviceNode, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let fd = open_in_root(provider_pid, &path, OFlag::O_PATH)?;
        let st = fstat(&fd).map_err(NsError::nix("stat", &path))?;
        let rdev = st.st_rdev;
        Ok(DeviceNode {
            major: nix::sys::stat::major(rdev),
            minor: nix::sys::stat::minor(rdev),
            mode: st.st_mode,
            uid: st.st_uid,
            gid: st.st_gid,
        })
    })
    .await
    .map_err(|_| NsError::Refused("stat task panicked".into()))?
}

/// Read a small regular file inside the provider's root (pid 0: host), at
/// most `max_len` bytes; larger files are refused rather than truncated.
pub async fn read_provider_file(
    provider_pid: i32,
    path: &Path,
    max_len: usize,
) -> Result<Vec<u8>, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // O_NONBLOCK: a FIFO planted at the path must not hang us.
        let fd = open_in_root(
            provider_pid,
            &path,
            OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        )?;
        let st = fstat(&fd).map_err(NsError::nix("stat", &path))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(NsError::Refused(format!(
                "provider path {} is not a regular file",
                path.display()
            )));
        }
        let mut out = Vec::new();
        File::from(fd)
            .take(max_len as u64 + 1)
            .read_to_end(&mut out)
            .map_err(NsError::path("read", &path))?;
        if out.len() > max_len {
            return Err(NsError::Refused(format!(
                "provider file {} is larger than {max_len} bytes",
                path.display()
            )));
        }
        Ok(out)
    })
    .await
    .map_err(|_| NsError::Refused("read task panicked".into()))?
}

/// Open `path` relative to the root of process `pid` (0: the host's `/`)
/// with every symlink scoped to that root and magic links refused.
fn open_in_root(pid: i32, path: &Path, flags: OFlag) -> Result<OwnedFd, NsError> {
    let root_path = if pid == 0 {
        PathBuf::from("/")
    } else {
        PathBuf::from(format!("/proc/{pid}/root"))
    };
    let root = File::open(&root_path).map_err(NsError::path("open root", &root_path))?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // Scoped lookups fail with EAGAIN when any mount or rename happened on
    // the system mid-walk (containers starting do both); openat2(2) says
    // to retry.
    let mut tries = 0;
    loop {
        match openat2(root.as_fd(), path, how) {
            Err(nix::errno::Errno::EAGAIN) if tries < 16 => tries += 1,
            r => return r.map_err(NsError::nix(RESOLVE_IN_ROOT_OP, path)),
        }
    }
}

/// Targets are absolute paths inside the consumer with a final file name;
/// `..` is refused so a graph cannot aim outside the intended directory.
fn absolute_target(target: &Path) -> Result<PathBuf, NsError> {
    let ok = target.is_absolute()
        && target.file_name().is_some()
        && !target.components().any(|c| c == Component::ParentDir);
    if ok {
        Ok(target.to_path_buf())
    } else {
        Err(NsError::Refused(format!(
            "target {} must be an absolute path without '..'",
            target.display()
        )))
    }
}

/// On the current (dedicated) thread: leave the shared fs_struct, enter the
/// consumer's mount namespace and chroot to its process root (which is what
/// the consumer sees as `/`, even if it chrooted itself). Returns the mount
/// namespace's identity.
fn enter_consumer(pid: i32) -> Result<(u64, u64), NsError> {
    if pid <= 0 {
        return Err(NsError::Refused(format!(
            "consumer not running (pid {pid}): nothing is ever created on the host side"
        )));
    }
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let root_path = PathBuf::from(format!("/proc/{pid}/root"));
    let ns = File::open(&ns_path).map_err(NsError::path("open", &ns_path))?;
    let root = File::open(&root_path).map_err(NsError::path("open", &root_path))?;
    let md = ns.metadata().map_err(NsError::path("stat", &ns_path))?;
    unshare(CloneFlags::CLONE_FS).map_err(NsError::nix("unshare(CLONE_FS) for", &ns_path))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(NsError::nix("setns", &ns_path))?;
    nix::unistd::fchdir(root.as_fd()).map_err(NsError::nix("fchdir", &root_path))?;
    nix::unistd::chroot(".").map_err(NsError::nix("chroot", &root_path))?;
    std::env::set_current_dir("/").map_err(NsError::path("chdir", Path::new("/")))?;
    // umask lives in the fs_struct we just unshared: modes are exact.
    umask(Mode::empty());
    Ok((md.dev(), md.ino()))
}

/// Create the parents of `target` and clear the way for a new node: an
/// existing node accepted by `replaceable` is removed, anything else
/// refused. Returns (parent, file name).
fn prepare_target(
    target: &Path,
    replaceable: impl Fn(&std::fs::FileType) -> bool,
    what: &str,
) -> Result<(PathBuf, PathBuf), NsError> {
    let parent = target.parent().unwrap_or(Path::new("/")).to_path_buf();
    let base = PathBuf::from(target.file_name().unwrap_or(OsStr::new(".")));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&parent)
        .map_err(NsError::path("mkdir -p", &parent))?;
    match std::fs::symlink_metadata(target) {
        Ok(md) if replaceable(&md.file_type()) => {
            std::fs::remove_file(target).map_err(NsError::path("unlink stale", target))?;
        }
        Ok(md) => {
            return Err(NsError::Refused(format!(
                "{} exists in the consumer and is a {}, not a {what}: refusing to replace it",
                target.display(),
                describe(&md.file_type())
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(NsError::path("stat", target)(e)),
    }
    Ok((parent, base))
}

fn describe(ft: &std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_file() {
        "regular file"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_char_device() {
        "character device"
    } else if ft.is_block_device() {
        "block device"
    } else if ft.is_fifo() {
        "fifo"
    } else {
        "special file"
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_must_be_absolute_without_dotdot() {
        assert!(absolute_target(Path::new("/run/pv/x.sock")).is_ok());
        assert!(absolute_target(Path::new("run/x.sock")).is_err());
        assert!(absolute_target(Path::new("/run/../etc/passwd")).is_err());
        assert!(absolute_target(Path::new("/")).is_err());
    }

    #[tokio::test]
    async fn negative_pids_are_refused_without_touching_anything() {
        let err = inject_socket(-1, Path::new("/tmp/pvx-never.sock"))
            .await
            .unwrap_err();
        assert!(matches!(err, NsError::Refused(_)), "{err}");
        assert!(!Path::new("/tmp/pvx-never.sock").exists());
        let err = connect_provider(-1, Path::new("/x"), None)
            .await
            .unwrap_err();
        assert!(matches!(err, NsError::Refused(_)), "{err}");
    }
}
