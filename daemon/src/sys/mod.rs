//! The few raw syscalls the daemon needs that nix does not wrap the way we
//! need them: per-thread credentials, pidfds, the listener's pidfd of a
//! connected socket, the file-descriptor limit, glibc's malloc arenas, and
//! the new mount API
//! (`open_tree`, `move_mount`) for passthrough links. All of the crate's FFI
//! lives here and in [`crate::fdpass`].

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// From <linux/mount.h>; libc has them for Android only.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x04;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// Change the calling thread's real/effective/saved gid and uid, and only
/// that thread's: glibc's `setresuid` broadcasts to every thread of the
/// process, the raw syscall does not. Groups are cleared first so the
/// thread carries no supplementary group of root's.
///
/// Call only on a dedicated, disposable thread: once uid 0 is dropped the
/// thread cannot get it back.
pub fn set_thread_creds(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: plain syscalls with integer arguments; they affect only the
    // calling thread's credentials.
    unsafe {
        if libc::syscall(libc::SYS_setgroups, 0usize, std::ptr::null::<libc::gid_t>()) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setresgid, gid, gid, gid) != 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::syscall(libc::SYS_setresuid, uid, uid, uid) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `pidfd_open(pid, 0)`: a descriptor of the process itself, not of its
/// number. `ENOSYS` on kernels before 5.3.
pub fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: integer arguments; on success the kernel returns a new
    // descriptor that nothing else owns.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above; fd is a fresh, valid descriptor (O_CLOEXEC is
    // implied for pidfds).
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// `SO_PEERPIDFD` of a connected Unix socket: a pidfd of the process that
/// called `listen()` (or `connect()`) on the peer, whatever its pid number
/// has become since. `ENOPROTOOPT` before Linux 6.5; `ESRCH` when that
/// process has exited.
pub fn peer_pidfd(sock: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `fd`, an int.
    let r = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERPIDFD,
            (&mut fd as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    if fd < 0 {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    // SAFETY: the kernel installed a new pidfd for us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Raise the soft `RLIMIT_NOFILE` to the hard limit. Returns (old soft,
/// new soft).
pub fn raise_nofile_limit() -> io::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(io::Error::from)?;
    }
    Ok((soft, hard))
}

/// Cap glibc's malloc arenas at `max` unless `MALLOC_ARENA_MAX` is set.
/// glibc gives every thread that meets a locked arena a new one (up to 8
/// per core), and link starts run on short-lived threads, many at once:
/// each arena keeps the pages its freed chunks sit on. With 100 links
/// starting together the default left the daemon 0.2-0.3 MiB larger than a
/// cap of 2 (unix_relay bench, RSS at 100 links); the per-thread caches in
/// front of the arenas keep the hot path off their locks. Returns whether
/// the cap was set (never on other C libraries).
pub fn limit_malloc_arenas(max: i32) -> bool {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return false;
    }
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only changes allocator tuning; called before the
        // daemon starts its threads.
        unsafe { libc::mallopt(libc::M_ARENA_MAX, max) == 1 }
    }
    #[cfg(not(target_env = "gnu"))]
    {
        let _ = max;
        false
    }
}

/// Register `fd` with tokio's reactor for readability (e.g. a pidfd, which
/// turns readable when its process exits).
pub fn async_readable(fd: OwnedFd) -> io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    // SAFETY: an OwnedFd keeps its descriptor open, and its as_raw_fd
    // returns that same descriptor, for as long as the AsyncFd owns it.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            .map_err(io::Error::from)
    }
}

/// `open_tree(fd, "", OPEN_TREE_CLONE | AT_EMPTY_PATH)`: a detached bind
/// mount of exactly the file `fd` refers to (an `O_PATH` descriptor will
/// do). The caller must be in the mount namespace that file is mounted in.
/// `ENOSYS` before Linux 5.2.
pub fn clone_mount(fd: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags =
        OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | libc::AT_EMPTY_PATH as libc::c_uint;
    // SAFETY: a valid descriptor, a NUL-terminated empty path and integer
    // flags; on success the kernel returns a new descriptor nothing else
    // owns.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, fd.as_raw_fd(), c"".as_ptr(), flags) };
    if tree < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: see above.
    Ok(unsafe { OwnedFd::from_raw_fd(tree as i32) })
}

/// `move_mount(tree, "", onto, "", F_EMPTY_PATH | T_EMPTY_PATH)`: attach
/// the detached mount `tree` on exactly the file `onto` refers to, never
/// resolving a path. The caller must be in the mount namespace `onto` is
/// mounted in.
pub fn move_mount_onto(tree: BorrowedFd<'_>, onto: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: two valid descriptors, NUL-terminated empty paths and
    // integer flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            onto.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
