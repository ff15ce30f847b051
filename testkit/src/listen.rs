//! Listening sockets served from *inside* a container, as a real server in
//! it would create them.
//!
//! pv-xconnect checks who listens on a provider's socket (the process that
//! called `listen()` must live in the provider's mount and pid namespaces),
//! so a test that plays the provider cannot simply bind through
//! `/proc/<pid>/root` from the host. [`listen_in`] forks a helper that
//! enters the container's mount and pid namespaces (a second fork puts it
//! in the pid namespace), takes the container's root, binds and listens,
//! and hands the listening socket back over a socketpair; the test then
//! accepts and serves on it. The helper stays alive, doing nothing, until
//! the returned [`Holder`] is dropped (or the container dies), so the
//! kernel keeps naming a live process of the container as the listener.
//!
//! Between `fork()` and `_exit()` the children of this multi-threaded test
//! process only make raw syscalls on data prepared before the fork, and
//! first close every descriptor they inherited but the four they need, so
//! no other test's socket is kept open by them.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Keeps the helper that created a listener alive; dropping it lets the
/// helper exit (and reaps it).
#[derive(Debug)]
pub struct Holder {
    ctl: Option<OwnedFd>,
    child: libc::pid_t,
}

impl Drop for Holder {
    fn drop(&mut self) {
        // EOF on its control socket ends the helper.
        self.ctl.take();
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe {
            libc::waitpid(self.child, &mut status, 0);
        }
    }
}

/// Bind and listen on `inside` (an absolute path in the container of
/// `pid`; parents must exist) from a process in that container's mount and
/// pid namespaces and root; return the listener.
pub fn listen_in(pid: i32, inside: &Path, backlog: i32) -> io::Result<(UnixListener, Holder)> {
    let dir = inside.parent().unwrap_or(Path::new("/"));
    let base = inside
        .file_name()
        .ok_or_else(|| io::Error::other("listen path has no file name"))?;
    let dir = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let name = base.as_bytes();
    if name.len() >= addr.sun_path.len() {
        return Err(io::Error::other("socket file name longer than sun_path"));
    }
    for (d, s) in addr.sun_path.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    let addr_len = (std::mem::size_of::<libc::sa_family_t>() + name.len() + 1) as libc::socklen_t;

    let mnt = File::open(format!("/proc/{pid}/ns/mnt"))?;
    let pidns = File::open(format!("/proc/{pid}/ns/pid"))?;
    let root = File::open(format!("/proc/{pid}/root"))?;
    let mut pair = [0; 2];
    // SAFETY: socketpair writes two descriptors into `pair`.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            pair.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both are fresh descriptors we own.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
    let fds = Fds {
        ctl: theirs.as_raw_fd(),
        mnt: mnt.as_raw_fd(),
        pidns: pidns.as_raw_fd(),
        root: root.as_raw_fd(),
    };
    // SAFETY: the child only runs `helper`, which makes raw syscalls on
    // the values above and never returns.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: we are the forked child; see `helper`.
        unsafe { helper(fds, &dir, &addr, addr_len, backlog) }
    }
    drop((theirs, mnt, pidns, root));
    let holder = Holder {
        ctl: Some(ours),
        child,
    };
    let ctl = holder.ctl.as_ref().map_or(-1, AsRawFd::as_raw_fd);
    let fd = receive_fd(ctl).map_err(|e| {
        io::Error::other(format!(
            "listening at {} inside pid {pid}: helper failed ({e})",
            inside.display()
        ))
    })?;
    // SAFETY: the helper sent us a listening socket; it is ours now.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    Ok((listener, holder))
}

#[derive(Clone, Copy)]
struct Fds {
    ctl: RawFd,
    mnt: RawFd,
    pidns: RawFd,
    root: RawFd,
}

/// Wait (10 s at most) for the one fd the helper sends.
fn receive_fd(ctl: RawFd) -> io::Result<RawFd> {
    let mut pfd = libc::pollfd {
        fd: ctl,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    if unsafe { libc::poll(&mut pfd, 1, 10_000) } <= 0 {
        return Err(io::Error::other("no answer within 10 s"));
    }
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut cmsg = [0u64; 4];
    // SAFETY: zeroed msghdr pointing at live buffers for the call.
    let n = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&cmsg) as _;
        let n = libc::recvmsg(ctl, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n <= 0 {
            -1
        } else {
            let c = libc::CMSG_FIRSTHDR(&msg);
            if c.is_null() || (*c).cmsg_type != libc::SCM_RIGHTS {
                -1
            } else {
                libc::CMSG_DATA(c).cast::<RawFd>().read_unaligned()
            }
        }
    };
    if n < 0 {
        return Err(io::Error::other("it exited without sending a socket"));
    }
    Ok(n)
}

/// The forked child: enter the namespaces, fork once more (the grandchild
/// lands in the pid namespace), wait for it, exit.
///
/// # Safety
/// Only in a freshly forked child; never returns.
unsafe fn helper(
    fds: Fds,
    dir: &CString,
    addr: &libc::sockaddr_un,
    addr_len: libc::socklen_t,
    backlog: i32,
) -> ! {
    close_all_but(&[fds.ctl, fds.mnt, fds.pidns, fds.root]);
    if libc::setns(fds.mnt, libc::CLONE_NEWNS) != 0
        || libc::setns(fds.pidns, libc::CLONE_NEWPID) != 0
    {
        libc::_exit(10);
    }
    let g = libc::fork();
    if g < 0 {
        libc::_exit(11);
    }
    if g == 0 {
        serve(fds, dir, addr, addr_len, backlog);
    }
    let mut status = 0;
    while libc::waitpid(g, &mut status, 0) < 0 && *libc::__errno_location() == libc::EINTR {}
    libc::_exit(0)
}

/// The grandchild, inside the container: listen, send the socket, then
/// wait for the test to let go.
unsafe fn serve(
    fds: Fds,
    dir: &CString,
    addr: &libc::sockaddr_un,
    addr_len: libc::socklen_t,
    backlog: i32,
) -> ! {
    if libc::fchdir(fds.root) != 0
        || libc::chroot(c".".as_ptr()) != 0
        || libc::chdir(dir.as_ptr()) != 0
    {
        libc::_exit(20);
    }
    let s = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
    if s < 0
        || libc::bind(s, (addr as *const libc::sockaddr_un).cast(), addr_len) != 0
        || libc::listen(s, backlog) != 0
    {
        libc::_exit(21);
    }
    let mut byte = 0u8;
    let mut iov = libc::iovec {
        iov_base: (&mut byte as *mut u8).cast(),
        iov_len: 1,
    };
    let mut cmsg = [0u64; 4];
    let mut msg: libc::msghdr = std::mem::zeroed();
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cmsg.as_mut_ptr().cast();
    msg.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
    let c = libc::CMSG_FIRSTHDR(&msg);
    (*c).cmsg_level = libc::SOL_SOCKET;
    (*c).cmsg_type = libc::SCM_RIGHTS;
    (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
    libc::CMSG_DATA(c).cast::<RawFd>().write_unaligned(s);
    if libc::sendmsg(fds.ctl, &msg, 0) != 1 {
        libc::_exit(22);
    }
    libc::close(s);
    libc::close(fds.mnt);
    libc::close(fds.pidns);
    libc::close(fds.root);
    loop {
        let r = libc::read(fds.ctl, (&mut byte as *mut u8).cast(), 1);
        if r == 0 || (r < 0 && *libc::__errno_location() != libc::EINTR) {
            libc::_exit(0);
        }
    }
}

/// Close every descriptor but `keep` (and stdio).
unsafe fn close_all_but(keep: &[RawFd; 4]) {
    let mut sorted = *keep;
    sorted.sort_unstable();
    let mut from: u32 = 3;
    for fd in sorted {
        let fd = fd as u32;
        if fd > from {
            libc::syscall(libc::SYS_close_range, from, fd - 1, 0);
        }
        from = from.max(fd + 1);
    }
    libc::syscall(libc::SYS_close_range, from, u32::MAX, 0);
}
