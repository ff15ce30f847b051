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

use crate::error::PathError;
use crate::process::{Pid, ProviderPid};

/// Errors of namespace operations; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// A step on a path failed.
    #[error(transparent)]
    Path(#[from] PathError),
    /// The file does not exist inside a root that does (e.g. a provider
    /// without `/etc/passwd`): not a vanished process, a permission
    /// problem or a race.
    #[error(transparent)]
    AbsentInRoot(PathError),
    /// The process is gone, and its root and namespaces with it.
    #[error(transparent)]
    ProcessGone(PathError),
    /// What is at a path is not what the link needs; nothing was touched.
    #[error("{0}")]
    Refused(String),
    /// A helper thread could not be started.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A helper thread or task died before answering.
    #[error("{0} panicked")]
    Panicked(&'static str),
}

impl NsError {
    /// `ProcessGone` when the path is missing (the process behind
    /// `/proc/<pid>/...` exited), `Path` otherwise.
    fn proc_path<'a, E: Into<std::io::Error>>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(E) -> NsError + 'a {
        move |e| {
            let e = PathError::at(action, path)(e);
            if e.kind() == ErrorKind::NotFound {
                NsError::ProcessGone(e)
            } else {
                NsError::Path(e)
            }
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
    pub consumer: Pid,
    pub path: PathBuf,
    pub kind: NodeKind,
    /// (st_dev, st_ino) of the consumer's `/proc/<pid>/ns/mnt` at injection.
    mnt_ns: (u64, u64),
    /// (st_dev, st_ino) of the node we created.
    node: (u64, u64),
}

/// Bind a listening socket at `target` inside the consumer: parents are
/// created (0755), an existing *socket* there is replaced, any other file
/// type is refused; the socket is made 0666 like upstream's.
pub async fn inject_socket(
    consumer: Pid,
    target: &Path,
) -> Result<(UnixListener, Injected), NsError> {
    let target = absolute_target(target)?;
    on_thread(move || {
        let mnt_ns = enter_consumer(consumer)?;
        let (parent, base) = prepare_target(&target, |ft| ft.is_socket(), "socket")?;
        std::env::set_current_dir(&parent).map_err(PathError::at("chdir", &parent))?;
        let listener = UnixListener::bind(&base).map_err(PathError::at("bind", &target))?;
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o666))
            .map_err(PathError::at("chmod", &target))?;
        let md = std::fs::symlink_metadata(&base).map_err(PathError::at("stat", &target))?;
        Ok((
            listener,
            Injected {
                consumer,
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
    consumer: Pid,
    target: &Path,
    node: DeviceNode,
) -> Result<Injected, NsError> {
    let target = absolute_target(target)?;
    on_thread(move || {
        let mnt_ns = enter_consumer(consumer)?;
        prepare_target(&target, |ft| ft.is_char_device(), "character device")?;
        let rdev = makedev(node.major, node.minor);
        let perm = node.mode & 0o7777;
        mknod(
            &target,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(perm as libc::mode_t),
            rdev,
        )
        .map_err(PathError::at("mknod", &target))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(perm))
            .map_err(PathError::at("chmod", &target))?;
        std::os::unix::fs::lchown(&target, Some(node.uid), Some(node.gid))
            .map_err(PathError::at("chown", &target))?;
        let md = std::fs::symlink_metadata(&target).map_err(PathError::at("stat", &target))?;
        Ok(Injected {
            consumer,
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
        let ns_path = PathBuf::from(format!("/proc/{}/ns/mnt", inj.consumer));
        match std::fs::metadata(&ns_path) {
            Ok(md) if (md.dev(), md.ino()) == inj.mnt_ns => {}
            // The consumer is gone (or its pid now names another process):
            // the namespace and our node went with it.
            Ok(_) => return Ok(false),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(PathError::at("stat", &ns_path)(e).into()),
        }
        enter_consumer(inj.consumer)?;
        let md = match std::fs::symlink_metadata(&inj.path) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(PathError::at("stat", &inj.path)(e).into()),
        };
        let same_kind = match inj.kind {
            NodeKind::Socket => md.file_type().is_socket(),
            NodeKind::CharDevice { rdev } => md.file_type().is_char_device() && md.rdev() == rdev,
        };
        if !same_kind || (md.dev(), md.ino()) != inj.node {
            return Ok(false);
        }
        std::fs::remove_file(&inj.path).map_err(PathError::at("unlink", &inj.path))?;
        Ok(true)
    })
    .await
}

/// Connect to `socket` resolved inside the provider's root. With `creds`,
/// the connecting thread carries that (uid, gid).
pub async fn connect_provider(
    provider: ProviderPid,
    socket: &Path,
    creds: Option<(u32, u32)>,
) -> Result<UnixStream, NsError> {
    let path = socket.to_path_buf();
    let work = move || {
        let target = ProviderSocket::resolve(provider, &path)?;
        if let Some((uid, gid)) = creds {
            crate::sys::set_thread_creds(uid, gid)
                .map_err(PathError::at("set credentials for", &path))?;
        }
        Ok(UnixStream::connect(target.via()).map_err(PathError::at("connect", &path))?)
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
            match connect_now(provider, socket) {
                Err(NsError::Path(e)) if e.kind() == ErrorKind::WouldBlock => {}
                done => return done,
            }
            tokio::task::spawn_blocking(work)
                .await
                .map_err(|_| NsError::Panicked("connect task"))?
        }
    }
}

/// A non-blocking connect to the provider's socket (resolved in its root);
/// `WouldBlock` when its listen backlog is full.
fn connect_now(provider: ProviderPid, path: &Path) -> Result<UnixStream, NsError> {
    use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
    let target = ProviderSocket::resolve(provider, path)?;
    let sock = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(PathError::at("socket for", path))?;
    let addr = UnixAddr::new(target.via()).map_err(PathError::at("address of", path))?;
    connect(sock.as_raw_fd(), &addr).map_err(PathError::at("connect", path))?;
    Ok(UnixStream::from(sock))
}

/// A provider's socket, found inside the provider's root and checked to be
/// a socket; [`ProviderSocket::via`] is a path that reaches it from here.
struct ProviderSocket {
    via: PathBuf,
    /// The O_PATH fd `via` goes through (none for the host: its paths are
    /// ours). `via` is valid as long as this is open.
    _fd: Option<OwnedFd>,
}

impl ProviderSocket {
    fn resolve(provider: ProviderPid, path: &Path) -> Result<ProviderSocket, NsError> {
        if provider == ProviderPid::Host {
            return Ok(ProviderSocket {
                via: path.to_path_buf(),
                _fd: None,
            });
        }
        let fd = open_in_root(provider, path, OFlag::O_PATH)?;
        let st = fstat(&fd).map_err(PathError::at("stat", path))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(NsError::Refused(format!(
                "provider path {} is not a socket",
                path.display()
            )));
        }
        // Through procfs the kernel connects to the very inode we checked,
        // whatever the path's length (sun_path holds 108 bytes).
        Ok(ProviderSocket {
            via: PathBuf::from(format!("/proc/thread-self/fd/{}", fd.as_raw_fd())),
            _fd: Some(fd),
        })
    }

    fn via(&self) -> &Path {
        &self.via
    }
}

/// Stat the provider's device node at `path`, resolved inside its root
/// (symlinks are followed, but never out of that root).
pub async fn stat_provider_device(
    provider: ProviderPid,
    path: &Path,
) -> Result<DeviceNode, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let fd = open_in_root(provider, &path, OFlag::O_PATH)?;
        let st = fstat(&fd).map_err(PathError::at("stat", &path))?;
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
    .map_err(|_| NsError::Panicked("stat task"))?
}

/// Read a small regular file inside the provider's root, at most `max_len`
/// bytes; larger files are refused rather than truncated.
pub async fn read_provider_file(
    provider: ProviderPid,
    path: &Path,
    max_len: usize,
) -> Result<Vec<u8>, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // O_NONBLOCK: a FIFO planted at the path must not hang us.
        let fd = open_in_root(
            provider,
            &path,
            OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        )?;
        let st = fstat(&fd).map_err(PathError::at("stat", &path))?;
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
            .map_err(PathError::at("read", &path))?;
        if out.len() > max_len {
            return Err(NsError::Refused(format!(
                "provider file {} is larger than {max_len} bytes",
                path.display()
            )));
        }
        Ok(out)
    })
    .await
    .map_err(|_| NsError::Panicked("read task"))?
}

/// Open `path` relative to the provider's root (the host's `/`, or
/// `/proc/<pid>/root`) with every symlink scoped to that root and magic
/// links refused.
fn open_in_root(provider: ProviderPid, path: &Path, flags: OFlag) -> Result<OwnedFd, NsError> {
    let root_path = match provider {
        ProviderPid::Host => PathBuf::from("/"),
        ProviderPid::Container(pid) => PathBuf::from(format!("/proc/{pid}/root")),
    };
    let root = File::open(&root_path).map_err(NsError::proc_path("open root", &root_path))?;
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
            Err(nix::errno::Errno::ENOENT) => {
                return Err(NsError::AbsentInRoot(PathError::at(
                    "resolve in provider root",
                    path,
                )(
                    nix::errno::Errno::ENOENT
                )))
            }
            r => return Ok(r.map_err(PathError::at("resolve in provider root", path))?),
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
fn enter_consumer(pid: Pid) -> Result<(u64, u64), NsError> {
    let ns_path = PathBuf::from(format!("/proc/{pid}/ns/mnt"));
    let root_path = PathBuf::from(format!("/proc/{pid}/root"));
    let ns = File::open(&ns_path).map_err(NsError::proc_path("open", &ns_path))?;
    let root = File::open(&root_path).map_err(NsError::proc_path("open", &root_path))?;
    let md = ns.metadata().map_err(PathError::at("stat", &ns_path))?;
    unshare(CloneFlags::CLONE_FS).map_err(PathError::at("unshare(CLONE_FS) for", &ns_path))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(PathError::at("setns", &ns_path))?;
    nix::unistd::fchdir(root.as_fd()).map_err(PathError::at("fchdir", &root_path))?;
    nix::unistd::chroot(".").map_err(PathError::at("chroot", &root_path))?;
    std::env::set_current_dir("/").map_err(PathError::at("chdir", Path::new("/")))?;
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
        .map_err(PathError::at("mkdir -p", &parent))?;
    match std::fs::symlink_metadata(target) {
        Ok(md) if replaceable(&md.file_type()) => {
            std::fs::remove_file(target).map_err(PathError::at("unlink stale", target))?;
        }
        Ok(md) => {
            return Err(NsError::Refused(format!(
                "{} exists in the consumer and is a {}, not a {what}: refusing to replace it",
                target.display(),
                describe(&md.file_type())
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(PathError::at("stat", target)(e).into()),
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
        .map_err(|_| NsError::Panicked("namespace thread"))?
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
}
