//! Everything the daemon does inside a container's filesystem.
//!
//! Each container end of a link is a pinned [`Process`]; its root is
//! opened through that pin ([`Process::root`]), never through a pid, and
//! every path below it is walked relative to that root descriptor. Mounts
//! are crossed by the walk itself, so no thread needs to enter the
//! container's mount namespace, and nothing is ever resolved in the
//! daemon's own root except the hosted bus's host paths.
//!
//! # Consumer side (creating)
//!
//! Parents of a target are opened one component at a time with
//! `openat2(RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_BENEATH)`
//! and created with `mkdirat` (0755) where missing: a symlink anywhere on
//! the way refuses the link rather than being followed, so a consumer that
//! swaps a directory for a symlink cannot redirect what we create or chmod.
//! The node is then made *in* the final directory descriptor: a socket is
//! bound by its bare name from a thread whose working directory is that
//! descriptor and whose umask gives it its mode (0666) at creation; a
//! device node is made with `mknodat` under umask 0 and chowned through an
//! `O_PATH` descriptor of the node itself, after checking it is the node
//! we made. Nothing is chmod'ed or chowned by path.
//!
//! An existing node at the target is replaced only when it is dead: a
//! socket nobody accepts on (a live one is `target occupied`), or a
//! character device with the same device number. Anything else is refused.
//!
//! What was created is recorded as an [`Injected`]: the directory
//! descriptor it lives in, its name and its inode. Removal unlinks that
//! name in that directory only if the inode there is still ours.
//!
//! # Provider side (reaching)
//!
//! Paths a provider controls are resolved with `openat2(RESOLVE_IN_ROOT |
//! RESOLVE_NO_MAGICLINKS)` below its root, so an absolute symlink is
//! re-rooted inside the provider instead of leading to a host path. Sockets
//! are then reached through `/proc/self/fd/N` of the resolved inode
//! ([`ResolvedSocket`]), which also lifts the 108-byte `sun_path` limit.
//! A symlink cannot escape that way, a bind mount of a host socket can:
//! [`Listener::of`] tells who really serves a connected socket, for the
//! caller to compare with the provider ([`crate::link`] does, once per
//! listener).
//!
//! # Passthrough (binding the provider's socket into the consumer)
//!
//! [`mount_socket`] makes the provider's socket itself appear at the
//! target. The target is prepared as for a listener (same walk, same
//! refusals) and a dead socket is bound there as the mount point. On a
//! disposable thread (`unshare(CLONE_FS)` first: `setns` into a mount
//! namespace is refused to a thread sharing its fs_struct), the thread
//! enters the provider's mount namespace, clones a mount of the resolved
//! socket inode with `open_tree(OPEN_TREE_CLONE)` on its descriptor (no
//! path is looked up again), enters the consumer's mount namespace and
//! `move_mount`s it onto the descriptor of the placeholder. Unmounting
//! ([`unmount_socket`]) goes through the descriptor of that very mount
//! (`/proc/self/fd/N` of the daemon's own procfs, reached from a directory
//! descriptor opened before entering the consumer), never through the
//! consumer's path, then removes the placeholder if it is still ours.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::socket::{connect, socket, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::stat::{fstat, fstatat, makedev, mkdirat, mknodat, umask, FileStat, Mode, SFlag};
use nix::unistd::{fchownat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::error::PathError;
use crate::process::{Pid, Process, ProcessError, ProviderPid};

/// How long a connect may wait for room in a provider's listen backlog.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long removing a node may take (a hung filesystem must not stall a
/// link's teardown).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

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
    /// The process is gone or no longer the one the link was made for.
    #[error(transparent)]
    Process(#[from] ProcessError),
    /// What is at a path is not what the link needs; nothing was touched.
    #[error("{0}")]
    Refused(String),
    /// A helper thread could not be started, or a socket call failed.
    #[error("io: {0}")]
    Io(#[from] io::Error),
    /// A helper thread or task died before answering.
    #[error("{0} panicked")]
    Panicked(&'static str),
    /// A step did not finish in time (a hung filesystem or peer).
    #[error("{0} timed out")]
    TimedOut(&'static str),
    /// A step of binding a socket into a consumer (entering a mount
    /// namespace, `open_tree`, `move_mount`) failed: the kernel or the
    /// daemon's privileges do not allow passthrough here.
    #[error("passthrough: {step}: {source}")]
    Mount {
        step: &'static str,
        source: io::Error,
    },
}

impl NsError {
    /// Whether the process behind the link is gone (or replaced): only a
    /// new pid in the graph can help.
    pub fn is_gone(&self) -> bool {
        matches!(self, NsError::Process(e) if e.is_gone())
    }

    /// Whether the mount API itself failed (see [`NsError::Mount`]), so
    /// relaying is the way left.
    pub fn is_mount_api(&self) -> bool {
        matches!(self, NsError::Mount { .. })
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

/// A node injected into a consumer, so that removal touches it only if it
/// is still ours, and only where we made it.
#[derive(Debug, Clone)]
pub struct Injected {
    pub consumer: Pid,
    pub path: PathBuf,
    pub kind: NodeKind,
    /// The directory the node was created in (O_PATH; shared by the nodes
    /// of one directory).
    dir: Arc<OwnedFd>,
    name: OsString,
    /// (st_dev, st_ino) of the node we created.
    node: (u64, u64),
}

impl Injected {
    /// (st_dev, st_ino) of the node.
    pub fn node(&self) -> (u64, u64) {
        self.node
    }
}

/// The sockets this daemon injected and has not removed: a provider
/// socket that is one of them is the daemon talking to itself.
fn injected_sockets() -> &'static Mutex<HashSet<(u64, u64)>> {
    static SET: std::sync::OnceLock<Mutex<HashSet<(u64, u64)>>> = std::sync::OnceLock::new();
    SET.get_or_init(Default::default)
}

/// One descriptor per directory holding injected nodes: links whose
/// targets share a directory (a consumer's `/run/pv/services/`) share its
/// handle instead of holding one each. A directory is its (dev, ino),
/// whichever mount or path it was opened through.
fn shared_dir(dir: OwnedFd, target: &Path) -> Result<Arc<OwnedFd>, NsError> {
    type Dirs = Mutex<HashMap<(u64, u64), std::sync::Weak<OwnedFd>>>;
    static DIRS: std::sync::OnceLock<Dirs> = std::sync::OnceLock::new();
    let st = fstat(&dir).map_err(PathError::at("stat the directory of", target))?;
    let key = (st.st_dev, st.st_ino);
    let mut dirs = DIRS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(held) = dirs.get(&key).and_then(std::sync::Weak::upgrade) {
        return Ok(held);
    }
    dirs.retain(|_, d| d.strong_count() > 0);
    let dir = Arc::new(dir);
    dirs.insert(key, Arc::downgrade(&dir));
    Ok(dir)
}

/// Whether (dev, ino) is one of our own injected listeners.
pub fn is_injected_socket(node: (u64, u64)) -> bool {
    injected_sockets()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(&node)
}

/// Bind a listening socket at `target` inside the consumer (see the module
/// docs): mode 0666 from creation, parents created without following
/// symlinks, a dead socket replaced, a live one or any other file refused.
pub async fn inject_socket(
    consumer: &Arc<Process>,
    pid: Pid,
    target: &Path,
) -> Result<(UnixListener, Injected), NsError> {
    let target = absolute_target(target)?;
    let consumer = consumer.clone();
    on_thread(move || {
        // A thread of our own: its working directory and umask are private.
        unshare_fs(&target)?;
        let (dir, name) = prepare_target(&consumer, &target, Want::Socket)?;
        nix::unistd::fchdir(&dir).map_err(PathError::at("enter the directory of", &target))?;
        umask(Mode::from_bits_truncate(0o111));
        let listener =
            UnixListener::bind(Path::new(&name)).map_err(PathError::at("bind", &target))?;
        let st = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(PathError::at("stat", &target))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(NsError::Refused(format!(
                "{} was replaced right after bind: refusing it",
                target.display()
            )));
        }
        let node = (st.st_dev, st.st_ino);
        injected_sockets()
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node);
        consumer.check()?;
        let dir = shared_dir(dir, &target)?;
        Ok((
            listener,
            Injected {
                consumer: pid,
                path: target,
                kind: NodeKind::Socket,
                dir,
                name,
                node,
            },
        ))
    })
    .await
}

/// Create the character device `node` at `target` inside the consumer, with
/// the node's permission bits, uid and gid (see the module docs).
pub async fn mknod_in_consumer(
    consumer: &Arc<Process>,
    pid: Pid,
    target: &Path,
    node: DeviceNode,
) -> Result<Injected, NsError> {
    let target = absolute_target(target)?;
    let consumer = consumer.clone();
    on_thread(move || {
        unshare_fs(&target)?;
        // umask lives in the fs_struct we just unshared: modes are exact.
        umask(Mode::empty());
        let rdev = makedev(node.major, node.minor);
        let (dir, name) = prepare_target(&consumer, &target, Want::CharDevice(rdev))?;
        let perm = Mode::from_bits_truncate((node.mode & 0o7777) as libc::mode_t);
        mknodat(&dir, name.as_os_str(), SFlag::S_IFCHR, perm, rdev)
            .map_err(PathError::at("mknod", &target))?;
        // Chown what we made, through a descriptor of it: never a path.
        let fd = openat(
            &dir,
            name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(PathError::at("open", &target))?;
        let st = fstat(&fd).map_err(PathError::at("stat", &target))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFCHR || st.st_rdev != rdev {
            return Err(NsError::Refused(format!(
                "{} was replaced right after mknod: refusing it",
                target.display()
            )));
        }
        fchownat(
            &fd,
            "",
            Some(Uid::from_raw(node.uid)),
            Some(Gid::from_raw(node.gid)),
            AtFlags::AT_EMPTY_PATH,
        )
        .map_err(PathError::at("chown", &target))?;
        consumer.check()?;
        let dir = shared_dir(dir, &target)?;
        Ok(Injected {
            consumer: pid,
            path: target,
            kind: NodeKind::CharDevice { rdev: st.st_rdev },
            dir,
            name,
            node: (st.st_dev, st.st_ino),
        })
    })
    .await
}

/// Remove an injected node if the node in its directory is still the one
/// we created. Returns whether something was removed.
pub async fn remove_injected(injected: &Injected) -> Result<bool, NsError> {
    let inj = injected.clone();
    injected_sockets()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&inj.node);
    let work = tokio::task::spawn_blocking(move || remove_node(&inj));
    match tokio::time::timeout(REMOVE_TIMEOUT, work).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(NsError::Panicked("remove task")),
        Err(_) => Err(NsError::TimedOut("removing the node")),
    }
}

/// Unlink `inj` if the node in its directory is still the one we created
/// (blocking).
fn remove_node(inj: &Injected) -> Result<bool, NsError> {
    let st = match fstatat(
        &*inj.dir,
        inj.name.as_os_str(),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok(false),
        Err(e) => return Err(PathError::at("stat", &inj.path)(e).into()),
    };
    let same_kind = match inj.kind {
        NodeKind::Socket => st.st_mode & libc::S_IFMT == libc::S_IFSOCK,
        NodeKind::CharDevice { rdev } => {
            st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == rdev
        }
    };
    if !same_kind || (st.st_dev, st.st_ino) != inj.node {
        return Ok(false);
    }
    unlinkat(&*inj.dir, inj.name.as_os_str(), UnlinkatFlags::NoRemoveDir)
        .map_err(PathError::at("unlink", &inj.path))?;
    Ok(true)
}

/// The provider's socket bound at a consumer's target by [`mount_socket`]
/// (clones share it: the link and the task following the provider).
#[derive(Debug, Clone)]
pub struct Mounted(Arc<MountShared>);

#[derive(Debug)]
struct MountShared {
    consumer: Pid,
    path: PathBuf,
    /// The consumer, pinned: its mount namespace is entered to unmount.
    process: Arc<Process>,
    /// The dead socket under the mount.
    placeholder: Injected,
    state: Mutex<MountState>,
}

#[derive(Debug)]
struct MountState {
    /// The mount itself (from `open_tree`): unmounting goes through it.
    tree: OwnedFd,
    /// (st_dev, st_ino) of the provider's socket it shows.
    node: (u64, u64),
    /// Unmounted for good: no rebinding after that.
    removed: bool,
}

impl Mounted {
    pub fn consumer(&self) -> Pid {
        self.0.consumer
    }

    pub fn path(&self) -> &Path {
        &self.0.path
    }

    /// (st_dev, st_ino) of the provider socket bound now.
    pub fn node(&self) -> (u64, u64) {
        self.0.state().node
    }
}

impl MountShared {
    fn state(&self) -> std::sync::MutexGuard<'_, MountState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The placeholder, opened `O_PATH` without following anything and
    /// checked to be ours: what the mount goes onto.
    fn spot(&self) -> Result<OwnedFd, NsError> {
        let (ph, target) = (&self.placeholder, &self.path);
        let spot = openat(
            &*ph.dir,
            ph.name.as_os_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(PathError::at("open", target))?;
        let st = fstat(&spot).map_err(PathError::at("stat", target))?;
        if (st.st_dev, st.st_ino) != ph.node {
            return Err(NsError::Refused(format!(
                "{} was replaced under pv-xconnect: refusing it",
                target.display()
            )));
        }
        Ok(spot)
    }
}

/// Bind the provider's socket `socket` (resolved in the provider's root,
/// its listener already checked by the caller) at `target` inside the
/// consumer (see the module docs). The target is prepared as
/// [`inject_socket`] does; [`NsError::Mount`] means the kernel refused
/// the mount API and nothing is left behind.
pub async fn mount_socket(
    consumer: &Arc<Process>,
    pid: Pid,
    target: &Path,
    provider: &Arc<Process>,
    socket: &Arc<ResolvedSocket>,
) -> Result<Mounted, NsError> {
    let target = absolute_target(target)?;
    let (consumer, provider, socket) = (consumer.clone(), provider.clone(), socket.clone());
    on_thread(move || {
        unshare_fs(&target)?;
        // Before entering the consumer: our own procfs, to unmount by fd.
        let proc = proc_dir()?;
        unmount_leftover(&consumer, &target, socket.node, &proc)?;
        let (dir, name) = prepare_target(&consumer, &target, Want::Socket)?;
        let placeholder = dead_socket(&consumer, pid, dir, name, &target)?;
        let tree = match clone_mount_for(&provider, &consumer, &socket) {
            Ok(tree) => tree,
            Err(e) => {
                let _ = remove_node(&placeholder);
                return Err(e);
            }
        };
        let shared = MountShared {
            consumer: pid,
            path: target,
            process: consumer,
            placeholder,
            state: Mutex::new(MountState {
                tree,
                node: socket.node,
                removed: false,
            }),
        };
        let attached = (|| {
            let spot = shared.spot()?;
            crate::sys::move_mount_onto(shared.state().tree.as_fd(), spot.as_fd()).map_err(
                |e| NsError::Mount {
                    step: "move_mount",
                    source: e,
                },
            )?;
            if let Err(e) = shared.process.check() {
                let _ = detach(&shared.state().tree, &proc);
                return Err(e.into());
            }
            Ok(())
        })();
        match attached {
            Ok(()) => Ok(Mounted(Arc::new(shared))),
            Err(e) => {
                let _ = remove_node(&shared.placeholder);
                Err(e)
            }
        }
    })
    .await
}

/// A daemon killed before it could unmount leaves the provider's socket
/// bound at the target, live: when what is at `target` is a mount of the
/// very socket about to be bound (same inode, and the root of a mount),
/// unmount it, so the target can be prepared as usual. Anything else is
/// left to [`prepare_target`] to judge. Leaves the thread in the
/// consumer's mount namespace when it unmounts.
fn unmount_leftover(
    consumer: &Process,
    target: &Path,
    node: (u64, u64),
    proc: &OwnedFd,
) -> Result<(), NsError> {
    let root = consumer.root()?;
    let parent = target.parent().unwrap_or(Path::new("/"));
    let Some(name) = target.file_name() else {
        return Ok(());
    };
    let dir = open_dirs(&root, parent, target)?;
    let Ok(fd) = openat(
        &dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(());
    };
    match fstat(&fd) {
        Ok(st) if (st.st_dev, st.st_ino) == node => {}
        _ => return Ok(()),
    }
    let ns = consumer.mnt_ns_file()?;
    setns_mnt(&ns, "enter the consumer's mount namespace")?;
    // EINVAL (not the root of a mount: a hard link) is not ours to touch.
    detach(&fd, proc)?;
    Ok(())
}

/// Bind another socket of the provider (its server made a new one) in
/// place of the one `mounted` shows: same target, same placeholder.
pub async fn rebind_socket(
    mounted: &Mounted,
    provider: &Arc<Process>,
    socket: &Arc<ResolvedSocket>,
) -> Result<(), NsError> {
    let (m, provider, socket) = (mounted.0.clone(), provider.clone(), socket.clone());
    on_thread(move || {
        unshare_fs(&m.path)?;
        let proc = proc_dir()?;
        let tree = clone_mount_for(&provider, &m.process, &socket)?;
        let mut state = m.state();
        if state.removed {
            return Err(NsError::Refused("the link was removed meanwhile".into()));
        }
        detach(&state.tree, &proc)?;
        // From here on the old mount is gone: record that before trying.
        state.node = (0, 0);
        let spot = m.spot()?;
        crate::sys::move_mount_onto(tree.as_fd(), spot.as_fd()).map_err(|e| NsError::Mount {
            step: "move_mount",
            source: e,
        })?;
        state.tree = tree;
        state.node = socket.node;
        Ok(())
    })
    .await
}

/// On a thread of its own (fs_struct unshared), enter the provider's
/// mount namespace, clone a mount of `socket`'s inode, and enter the
/// consumer's: the thread is left there, ready to attach it.
fn clone_mount_for(
    provider: &Process,
    consumer: &Process,
    socket: &ResolvedSocket,
) -> Result<OwnedFd, NsError> {
    let (provider_ns, consumer_ns) = (provider.mnt_ns_file()?, consumer.mnt_ns_file()?);
    setns_mnt(&provider_ns, "enter the provider's mount namespace")?;
    let tree = crate::sys::clone_mount(socket.fd()).map_err(|source| NsError::Mount {
        step: "open_tree",
        source,
    })?;
    setns_mnt(&consumer_ns, "enter the consumer's mount namespace")?;
    Ok(tree)
}

/// Unmount what [`mount_socket`] bound (if it is still mounted in the
/// consumer) and remove the placeholder under it. Returns whether the
/// mount was still there.
pub async fn unmount_socket(mounted: Mounted) -> Result<bool, NsError> {
    let m = mounted.0;
    let work = on_thread(move || {
        unshare_fs(&m.path)?;
        let proc = proc_dir()?;
        let mut state = m.state();
        state.removed = true;
        let detached = match m.process.mnt_ns_file() {
            Ok(ns) => {
                setns_mnt(&ns, "enter the consumer's mount namespace")?;
                detach(&state.tree, &proc)?
            }
            // Its namespace went with it, and the mount with that.
            Err(e) if e.is_gone() => false,
            Err(e) => return Err(e.into()),
        };
        remove_node(&m.placeholder)?;
        Ok(detached)
    });
    match tokio::time::timeout(REMOVE_TIMEOUT, work).await {
        Ok(r) => r,
        Err(_) => Err(NsError::TimedOut("unmounting the socket")),
    }
}

/// Enter the mount namespace `ns` (this thread's fs_struct must be its
/// own: see [`unshare_fs`]).
fn setns_mnt(ns: &OwnedFd, step: &'static str) -> Result<(), NsError> {
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNS).map_err(|e| NsError::Mount {
        step,
        source: e.into(),
    })
}

/// Give this (disposable) thread its own fs_struct: cwd, root and umask
/// changes, and `setns` into a mount namespace, then touch only it.
fn unshare_fs(target: &Path) -> Result<(), NsError> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS)
        .map_err(PathError::at("unshare(CLONE_FS) for", target))?;
    Ok(())
}

/// The daemon's own `/proc`, opened before a thread enters a container's
/// mount namespace (whose `/proc` the container controls).
fn proc_dir() -> Result<OwnedFd, NsError> {
    let proc = Path::new("/proc");
    Ok(nix::fcntl::open(
        proc,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(PathError::at("open", proc))?)
}

/// Lazily unmount the mount `tree` refers to, from a thread in the mount
/// namespace it is attached in: through `self/fd/N` of our own procfs, so
/// the kernel acts on exactly that mount. `false`: it was no longer
/// mounted.
fn detach(tree: &OwnedFd, proc: &OwnedFd) -> Result<bool, NsError> {
    let via = PathBuf::from(format!("self/fd/{}", tree.as_raw_fd()));
    nix::unistd::fchdir(proc).map_err(PathError::at("enter", Path::new("/proc")))?;
    match nix::mount::umount2(&via, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) => Ok(true),
        Err(Errno::EINVAL) => Ok(false),
        Err(e) => Err(NsError::Mount {
            step: "umount",
            source: e.into(),
        }),
    }
}

/// Bind a socket at `name` in `dir` and close it at once: a dead socket,
/// the mount point of a passthrough link. Needs a thread of its own (it
/// changes the working directory).
fn dead_socket(
    consumer: &Process,
    pid: Pid,
    dir: OwnedFd,
    name: OsString,
    target: &Path,
) -> Result<Injected, NsError> {
    nix::unistd::fchdir(&dir).map_err(PathError::at("enter the directory of", target))?;
    // Hidden by the mount; only the provider's own mode shows.
    umask(Mode::from_bits_truncate(0o177));
    drop(UnixListener::bind(Path::new(&name)).map_err(PathError::at("bind", target))?);
    let st = fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(PathError::at("stat", target))?;
    if st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err(NsError::Refused(format!(
            "{} was replaced right after bind: refusing it",
            target.display()
        )));
    }
    consumer.check()?;
    Ok(Injected {
        consumer: pid,
        path: target.to_path_buf(),
        kind: NodeKind::Socket,
        dir: shared_dir(dir, target)?,
        name,
        node: (st.st_dev, st.st_ino),
    })
}

/// What may be replaced at a target.
#[derive(Clone, Copy)]
enum Want {
    Socket,
    CharDevice(u64),
}

/// Open the directory of `target` inside the consumer's root (creating
/// missing parents, never following a symlink) and clear the way for a
/// new node: a dead node of the wanted kind is removed, anything else
/// refused. Returns (directory, file name).
fn prepare_target(
    consumer: &Process,
    target: &Path,
    want: Want,
) -> Result<(OwnedFd, OsString), NsError> {
    let root = consumer.root()?;
    let parent = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map(OsStr::to_os_string)
        .ok_or_else(|| NsError::Refused(format!("target {} has no file name", target.display())))?;
    let dir = open_dirs(&root, parent, target)?;
    let existing = match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::ENOENT) => return Ok((dir, name)),
        Err(e) => return Err(PathError::at("stat", target)(e).into()),
    };
    let kind = existing.st_mode & libc::S_IFMT;
    match want {
        Want::Socket if kind == libc::S_IFSOCK => {
            if socket_is_live(&dir, &name, &existing) {
                return Err(NsError::Refused(format!(
                    "target occupied: a live socket pv-xconnect did not create is at {}",
                    target.display()
                )));
            }
        }
        Want::CharDevice(rdev) if kind == libc::S_IFCHR && existing.st_rdev == rdev => {}
        Want::CharDevice(_) if kind == libc::S_IFCHR => {
            return Err(NsError::Refused(format!(
                "{} exists in the consumer and is another character device ({}:{}): refusing to replace it",
                target.display(),
                nix::sys::stat::major(existing.st_rdev),
                nix::sys::stat::minor(existing.st_rdev)
            )))
        }
        Want::Socket => {
            return Err(NsError::Refused(format!(
                "{} exists in the consumer and is a {}, not a socket: refusing to replace it",
                target.display(),
                describe(kind)
            )))
        }
        Want::CharDevice(_) => {
            return Err(NsError::Refused(format!(
                "{} exists in the consumer and is a {}, not a character device: refusing to replace it",
                target.display(),
                describe(kind)
            )))
        }
    }
    // Still the node we looked at? Then it goes.
    match fstatat(&dir, name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if (st.st_dev, st.st_ino) == (existing.st_dev, existing.st_ino) => {
            unlinkat(&dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir)
                .map_err(PathError::at("unlink stale", target))?;
        }
        Err(Errno::ENOENT) => {}
        _ => {
            return Err(NsError::Refused(format!(
                "{} changed while being checked: refusing it",
                target.display()
            )))
        }
    }
    Ok((dir, name))
}

/// Does something accept on the socket `name` in `dir`? A full backlog
/// counts as live; only a refused connect means dead.
fn socket_is_live(dir: &OwnedFd, name: &OsStr, seen: &FileStat) -> bool {
    let Ok(fd) = openat(
        dir,
        name,
        OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    match fstat(&fd) {
        Ok(st) if (st.st_dev, st.st_ino) == (seen.st_dev, seen.st_ino) => {}
        _ => return true, // changed under us: do not touch it
    }
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    let Ok(addr) = UnixAddr::new(via.as_str()) else {
        return true;
    };
    let Ok(sock) = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    ) else {
        return true;
    };
    !matches!(connect(sock.as_raw_fd(), &addr), Err(Errno::ECONNREFUSED))
}

/// Open `dir` (absolute, inside the consumer) below `root`, one component
/// at a time, creating missing directories (0755) and refusing symlinks.
fn open_dirs(root: &OwnedFd, dir: &Path, target: &Path) -> Result<OwnedFd, NsError> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(
            // A symlink, even as the last component, fails with ELOOP.
            ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS
                | ResolveFlag::RESOLVE_BENEATH,
        );
    let mut cur = root
        .try_clone()
        .map_err(PathError::at("dup root for", target))?;
    let mut walked = PathBuf::from("/");
    for comp in dir.components() {
        let name = match comp {
            Component::Normal(n) => n,
            Component::RootDir | Component::CurDir => continue,
            Component::ParentDir | Component::Prefix(_) => {
                return Err(NsError::Refused(format!(
                    "target {} must be an absolute path without '..'",
                    target.display()
                )))
            }
        };
        walked.push(name);
        let mut created = false;
        let mut tries = 0;
        cur = loop {
            match openat2(&cur, name, how) {
                Ok(fd) => break fd,
                Err(Errno::EAGAIN) if tries < 16 => tries += 1,
                Err(Errno::ENOENT) if !created => {
                    match mkdirat(&cur, name, Mode::from_bits_truncate(0o755)) {
                        Ok(()) | Err(Errno::EEXIST) => created = true,
                        Err(e) => return Err(PathError::at("mkdir", &walked)(e).into()),
                    }
                }
                Err(Errno::ELOOP) | Err(Errno::EXDEV) => {
                    return Err(NsError::Refused(format!(
                        "{} is a symlink in the consumer: refusing to follow it for {}",
                        walked.display(),
                        target.display()
                    )))
                }
                Err(Errno::ENOTDIR) => {
                    return Err(NsError::Refused(format!(
                        "{} is not a directory in the consumer: refusing {}",
                        walked.display(),
                        target.display()
                    )))
                }
                Err(e) => return Err(PathError::at("open", &walked)(e).into()),
            }
        };
    }
    Ok(cur)
}

/// A provider's socket, found inside the provider's root and checked to be
/// a socket; connections go to that very inode.
#[derive(Debug)]
pub struct ResolvedSocket {
    /// The O_PATH descriptor `addr` goes through.
    fd: OwnedFd,
    addr: UnixAddr,
    /// (st_dev, st_ino) of the socket file.
    pub node: (u64, u64),
}

impl ResolvedSocket {
    /// Resolve `path` below the provider's root (`None`: the host's).
    /// Blocking: it walks the provider's filesystems.
    pub fn resolve(provider: Option<&Process>, path: &Path) -> Result<ResolvedSocket, NsError> {
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
        let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
        let addr = UnixAddr::new(via.as_str()).map_err(PathError::at("address of", path))?;
        Ok(ResolvedSocket {
            fd,
            addr,
            node: (st.st_dev, st.st_ino),
        })
    }

    /// The `O_PATH` descriptor of the socket inode.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// One non-blocking connect: `WouldBlock` when the listen backlog is
    /// full, `ConnectionRefused` when nobody listens on the inode anymore.
    pub fn connect(&self) -> io::Result<UnixStream> {
        let sock = socket(
            AddressFamily::Unix,
            SockType::Stream,
            SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
            None,
        )?;
        connect(sock.as_raw_fd(), &self.addr)?;
        Ok(UnixStream::from(sock))
    }

    /// Connect from a disposable thread carrying (uid, gid), retrying a
    /// full backlog until [`CONNECT_TIMEOUT`].
    pub async fn connect_as(self: &Arc<Self>, uid: u32, gid: u32) -> Result<UnixStream, NsError> {
        let me = self.clone();
        on_thread(move || {
            crate::sys::set_thread_creds(uid, gid)?;
            let deadline = Instant::now() + CONNECT_TIMEOUT;
            let mut pause = Duration::from_millis(1);
            loop {
                match me.connect() {
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if Instant::now() >= deadline {
                            return Err(NsError::TimedOut("connect (provider backlog full)"));
                        }
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(Duration::from_millis(50));
                    }
                    r => return Ok(r?),
                }
            }
        })
        .await
    }
}

/// Connect now, or wait (asynchronously, never on a blocking thread) for
/// room in a full listen backlog until [`CONNECT_TIMEOUT`].
pub async fn connect_resolved(socket: &ResolvedSocket) -> Result<UnixStream, NsError> {
    let deadline = tokio::time::Instant::now() + CONNECT_TIMEOUT;
    let mut pause = Duration::from_millis(1);
    loop {
        match socket.connect() {
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(NsError::TimedOut("connect (provider backlog full)"));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            r => return Ok(r?),
        }
    }
}

/// Who serves a connected Unix socket: the process that called `listen()`
/// on the peer.
#[derive(Debug)]
pub enum Listener {
    /// That process, pinned.
    Process(Process),
    /// It has exited (pid as last known): nobody can tell where it lived.
    Exited(i32),
    /// It lives in a pid namespace the daemon cannot see into.
    Unseen,
    /// It could not be looked at just now (the daemon is out of fds or
    /// memory): no verdict either way; ask again on a later connection.
    Unknown(String),
}

impl Listener {
    /// `SO_PEERCRED` (and `SO_PEERPIDFD` where the kernel has it, so a
    /// reused pid is never mistaken for the listener).
    pub fn of(sock: &impl AsFd) -> Listener {
        use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
        let pid = match getsockopt(sock, PeerCredentials) {
            Ok(c) => c.pid(),
            Err(_) => return Listener::Unseen,
        };
        if pid <= 0 {
            return Listener::Unseen;
        }
        let pidfd = match crate::sys::peer_pidfd(sock.as_fd()) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Listener::Exited(pid),
            Err(_) => None,
        };
        let process = match Process::open(pid, "listener") {
            Ok(p) => p,
            Err(e) if e.is_gone() => return Listener::Exited(pid),
            Err(e) => return Listener::Unknown(e.to_string()),
        };
        if let Some(fd) = pidfd {
            // Alive now means the number was still the listener's when
            // `process` was opened.
            let mut pfd = [nix::poll::PollFd::new(
                fd.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            if matches!(nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0) {
                return Listener::Exited(pid);
            }
        }
        Listener::Process(process)
    }
}

/// Connect to `socket` resolved inside the provider's root (with `creds`,
/// from a thread carrying that uid/gid), checking that a container
/// provider's socket is served from inside it. For tests and tools; links
/// use [`crate::link::Provider`], which caches the resolution.
pub async fn connect_provider(
    provider: ProviderPid,
    socket: &Path,
    creds: Option<(u32, u32)>,
) -> Result<UnixStream, NsError> {
    let path = socket.to_path_buf();
    let (process, resolved) = tokio::task::spawn_blocking(move || {
        let process = match provider {
            ProviderPid::Host => None,
            ProviderPid::Container(pid) => Some(Process::open(pid.get(), "provider")?),
        };
        let resolved = ResolvedSocket::resolve(process.as_ref(), &path)?;
        Ok::<_, NsError>((process, Arc::new(resolved)))
    })
    .await
    .map_err(|_| NsError::Panicked("resolve task"))??;
    let stream = match creds {
        Some((uid, gid)) => resolved.connect_as(uid, gid).await?,
        None => connect_resolved(&resolved).await?,
    };
    if let Some(process) = &process {
        match Listener::of(&stream) {
            Listener::Process(l)
                if l.mnt_ns() == process.mnt_ns() && l.pid_ns() == process.pid_ns() => {}
            _ => {
                return Err(NsError::Refused(format!(
                    "provider socket {} is served from outside the provider (pid {})",
                    socket.display(),
                    process.pid()
                )))
            }
        }
    }
    Ok(stream)
}

/// Stat the provider's device node at `path`, resolved inside its root
/// (symlinks are followed, but never out of that root).
pub async fn stat_provider_device(
    provider: Option<Arc<Process>>,
    path: &Path,
) -> Result<DeviceNode, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let fd = open_in_root(provider.as_deref(), &path, OFlag::O_PATH)?;
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
/// bytes; larger files are refused rather than truncated. `provider` is
/// pinned first (a provider link reads through its own pin, see
/// [`read_file_in`]).
pub async fn read_provider_file(
    provider: ProviderPid,
    path: &Path,
    max_len: usize,
) -> Result<Vec<u8>, NsError> {
    let process = match provider {
        ProviderPid::Host => None,
        ProviderPid::Container(pid) => {
            let raw = pid.get();
            Some(Arc::new(
                tokio::task::spawn_blocking(move || Process::open(raw, "provider"))
                    .await
                    .map_err(|_| NsError::Panicked("open task"))??,
            ))
        }
    };
    read_file_in(process, path, max_len).await
}

/// [`read_provider_file`] through an already pinned provider.
pub async fn read_file_in(
    provider: Option<Arc<Process>>,
    path: &Path,
    max_len: usize,
) -> Result<Vec<u8>, NsError> {
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        // O_NONBLOCK: a FIFO planted at the path must not hang us.
        let fd = open_in_root(
            provider.as_deref(),
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

/// Open `path` relative to the provider's root (the host's `/`, or the
/// pinned process's root) with every symlink scoped to that root and magic
/// links refused.
fn open_in_root(provider: Option<&Process>, path: &Path, flags: OFlag) -> Result<OwnedFd, NsError> {
    let root: OwnedFd = match provider {
        None => File::open("/")
            .map_err(PathError::at("open root", Path::new("/")))?
            .into(),
        Some(p) => p.root()?,
    };
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // Scoped lookups fail with EAGAIN when any mount or rename happened on
    // the system mid-walk (containers starting do both); openat2(2) says
    // to retry.
    let mut tries = 0;
    loop {
        match openat2(root.as_fd(), path, how) {
            Err(Errno::EAGAIN) if tries < 16 => tries += 1,
            Err(Errno::ENOENT) => {
                return Err(NsError::AbsentInRoot(PathError::at(
                    "resolve in provider root",
                    path,
                )(Errno::ENOENT)))
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
        && !target.components().any(|c| c == Component::ParentDir)
        && !target.as_os_str().as_bytes().contains(&0);
    if ok {
        Ok(target.to_path_buf())
    } else {
        Err(NsError::Refused(format!(
            "target {} must be an absolute path without '..'",
            target.display()
        )))
    }
}

fn describe(kind: libc::mode_t) -> &'static str {
    match kind {
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        libc::S_IFREG => "regular file",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFIFO => "fifo",
        _ => "special file",
    }
}

/// Run `f` on a fresh OS thread (never a tokio worker: it may change
/// per-thread state such as credentials, cwd or umask) and await its
/// result.
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

    #[test]
    fn parents_are_created_and_symlinks_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root: OwnedFd = File::open(dir.path()).unwrap().into();
        let target = Path::new("/a/b/c.sock");
        open_dirs(&root, Path::new("/a/b"), target).expect("created");
        assert!(dir.path().join("a/b").is_dir());
        std::os::unix::fs::symlink("/etc", dir.path().join("a/link")).unwrap();
        let err = open_dirs(&root, Path::new("/a/link/x"), target).unwrap_err();
        assert!(err.to_string().contains("is a symlink"), "{err}");
        assert!(!Path::new("/etc/x").exists());
        std::fs::write(dir.path().join("a/file"), b"").unwrap();
        let err = open_dirs(&root, Path::new("/a/file/x"), target).unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    /// Sessions hand provider connections to tokio as they come: a
    /// blocking one would stall a whole session worker on its first read.
    #[test]
    fn provider_connections_are_non_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.sock");
        let _listener = UnixListener::bind(&path).unwrap();
        let resolved = ResolvedSocket::resolve(None, &path).expect("host socket");
        let stream = resolved.connect().expect("connected");
        let flags = nix::fcntl::fcntl(&stream, nix::fcntl::FcntlArg::F_GETFL).unwrap();
        assert!(OFlag::from_bits_truncate(flags).contains(OFlag::O_NONBLOCK));
    }
}
