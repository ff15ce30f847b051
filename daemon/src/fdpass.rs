//! SCM_RIGHTS on tokio Unix streams, with a bound on what a peer can make
//! us hold.
//!
//! Stream sockets deliver ancillary data with the first byte of the
//! `sendmsg` that carried it, so a relay that reads with [`recv_with_fds`]
//! and writes what it read with [`send_all_with_fds`] keeps every fd attached to
//! the bytes it travelled with. Received fds are `O_CLOEXEC`.
//!
//! Every descriptor the kernel installs is owned at once, including when
//! the control data was truncated (`MSG_CTRUNC`): it is closed on every
//! error path. (nix's `RecvMsg::cmsgs` refuses to iterate truncated
//! control data, which would leak what was installed; the parsing here is
//! our own.)
//!
//! An [`FdBudget`] bounds the fds a link holds at once across all its
//! sessions: before each read the control buffer is sized to the budget's
//! room, so a peer sending more than that gets its surplus discarded by
//! the kernel (never installed) and its session ended; received fds are
//! [`HeldFd`]s that give their place back when closed.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The kernel's per-message limit (SCM_MAX_FD).
pub const MAX_FDS: usize = 253;

/// A control-data buffer big enough for [`MAX_FDS`] descriptors, for
/// [`recv_now_with`] (a relay allocates it once per direction, not per
/// read). Any byte buffer works: control data is parsed without assuming
/// alignment.
pub fn cmsg_buffer() -> Vec<u8> {
    vec![0u8; cmsg_space(MAX_FDS)]
}

fn cmsg_len(fds: usize) -> usize {
    if fds == 0 {
        return 0;
    }
    // SAFETY: a pure computation on an integer.
    unsafe { libc::CMSG_LEN((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

fn cmsg_space(fds: usize) -> usize {
    if fds == 0 {
        return 0;
    }
    // SAFETY: a pure computation on an integer.
    unsafe { libc::CMSG_SPACE((fds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// How many fds a link may hold at once (see the module docs). Cheap to
/// clone: clones share the count.
#[derive(Debug, Clone)]
pub struct FdBudget(Arc<Budget>);

#[derive(Debug)]
struct Budget {
    held: AtomicUsize,
    limit: usize,
}

impl FdBudget {
    pub fn new(limit: usize) -> Self {
        FdBudget(Arc::new(Budget {
            held: AtomicUsize::new(0),
            limit,
        }))
    }

    /// Fds held now.
    pub fn held(&self) -> usize {
        self.0.held.load(Ordering::Relaxed)
    }

    pub fn limit(&self) -> usize {
        self.0.limit
    }

    /// Reserve up to `want` places; returns how many were reserved.
    fn reserve(&self, want: usize) -> usize {
        let mut held = self.0.held.load(Ordering::Relaxed);
        loop {
            let n = want.min(self.0.limit.saturating_sub(held));
            if n == 0 {
                return 0;
            }
            match self.0.held.compare_exchange_weak(
                held,
                held + n,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return n,
                Err(now) => held = now,
            }
        }
    }

    fn release(&self, n: usize) {
        self.0.held.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A received fd that counts against its link's [`FdBudget`] until closed.
#[derive(Debug)]
pub struct HeldFd {
    fd: OwnedFd,
    budget: FdBudget,
}

impl AsFd for HeldFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for HeldFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for HeldFd {
    fn drop(&mut self) {
        self.budget.release(1);
    }
}

/// Read bytes into `buf`, appending any received fds to `fds`.
/// Returns 0 at end of stream. Truncated control data (more fds than
/// [`MAX_FDS`]) is reported as an error, the fds that did arrive closed.
pub async fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut cmsg = cmsg_buffer();
    sock.async_io(Interest::READABLE, || {
        recv_now_with(sock.as_raw_fd(), buf, &mut cmsg, fds)
    })
    .await
}

/// One non-blocking `recvmsg`; `WouldBlock` when nothing is queued.
pub fn recv_now(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cmsg = cmsg_buffer();
    recv_now_with(fd, buf, &mut cmsg, fds)
}

/// [`recv_now`] with a caller-owned control buffer from [`cmsg_buffer`].
pub fn recv_now_with(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let before = fds.len();
    let (n, truncated) = recvmsg_fds(fd, buf, cmsg, MAX_FDS, &mut |f| fds.push(f))?;
    if truncated {
        fds.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control data truncated: more fds than one message may carry",
        ));
    }
    Ok(n)
}

/// [`recv_now_with`] within `budget`: the control buffer holds only as
/// many fds as the budget has room for, checked before reading. A peer
/// that sends more gets an error (its surplus was never installed, what
/// was is closed).
pub fn recv_now_budget(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
    fds: &mut Vec<HeldFd>,
    budget: &FdBudget,
) -> io::Result<usize> {
    let room = budget.reserve(MAX_FDS);
    let before = fds.len();
    let got = recvmsg_fds(fd, buf, cmsg, room, &mut |f| {
        fds.push(HeldFd {
            fd: f,
            budget: budget.clone(),
        })
    });
    // Places reserved but not filled go back; each HeldFd returns its own.
    let got_fds = fds.len() - before;
    if got_fds <= room {
        budget.release(room - got_fds);
    } else {
        budget.0.held.fetch_add(got_fds - room, Ordering::Relaxed);
    }
    let (n, truncated) = got?;
    if truncated {
        fds.truncate(before);
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "fds refused: this link already holds {} of its {} in transit",
                budget.held(),
                budget.limit()
            ),
        ));
    }
    Ok(n)
}

/// `recvmsg` with room for `max_fds` descriptors; every SCM_RIGHTS fd the
/// kernel installed is handed to `out`, truncated or not. Returns (bytes,
/// control data truncated).
fn recvmsg_fds(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut [u8],
    max_fds: usize,
    out: &mut dyn FnMut(OwnedFd),
) -> io::Result<(usize, bool)> {
    // The kernel installs (controllen - sizeof(cmsghdr)) / sizeof(int)
    // fds: CMSG_LEN, not the padded CMSG_SPACE, makes that exactly max_fds.
    let space = cmsg_len(max_fds.min(MAX_FDS)).min(cmsg.len());
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if space > 0 {
        msg.msg_control = cmsg.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
    }
    // SAFETY: msg points at a live iovec over `buf` and at `space` bytes
    // of `cmsg`, both valid for the whole call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT) };
    if n < 0 {
        // Nothing is installed when recvmsg fails.
        return Err(io::Error::last_os_error());
    }
    let filled = (msg.msg_controllen as usize).min(space);
    for_each_fd(&cmsg[..filled], out);
    Ok((n as usize, msg.msg_flags & libc::MSG_CTRUNC != 0))
}

/// Hand every SCM_RIGHTS descriptor in `control` (control data as the
/// kernel wrote it, at any alignment) to `out`.
fn for_each_fd(control: &[u8], out: &mut dyn FnMut(OwnedFd)) {
    let align =
        |n: usize| (n + std::mem::size_of::<usize>() - 1) & !(std::mem::size_of::<usize>() - 1);
    let header = std::mem::size_of::<libc::cmsghdr>();
    let data_at = align(header);
    let mut at = 0;
    while at + header <= control.len() {
        // SAFETY: `header` bytes are in bounds; read_unaligned copes with
        // any alignment.
        let c: libc::cmsghdr = unsafe { std::ptr::read_unaligned(control[at..].as_ptr().cast()) };
        let len = c.cmsg_len as usize;
        if len < data_at || at + len > control.len() {
            break;
        }
        if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_RIGHTS {
            for raw in control[at + data_at..at + len].chunks_exact(std::mem::size_of::<RawFd>()) {
                let fd = RawFd::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
                // SAFETY: the kernel just installed this descriptor for
                // us; nothing else owns it.
                out(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
        at += align(len);
    }
}

/// Write (part of) `buf` with `fds` attached to its first byte.
/// Returns how many bytes were written; the fds went with them if > 0.
async fn send_with_fds(sock: &UnixStream, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    sock.async_io(Interest::WRITABLE, || send_now(sock.as_raw_fd(), buf, fds))
        .await
}

/// One non-blocking `sendmsg` (MSG_NOSIGNAL: a dead peer is an error, not a
/// signal).
pub fn send_now(fd: RawFd, buf: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<usize> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let iov = [IoSlice::new(buf)];
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cm: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
    sendmsg::<()>(
        fd,
        &iov,
        cm,
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map_err(io::Error::from)
}

/// Write all of `buf`; `fds` ride with the first chunk.
pub async fn send_all_with_fds(
    sock: &UnixStream,
    mut buf: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut fds = fds;
    while !buf.is_empty() || !fds.is_empty() {
        let n = send_with_fds(sock, buf, fds).await?;
        if n == 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "peer accepted no bytes",
            ));
        }
        fds = &[];
        buf = &buf[n..];
        if buf.is_empty() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, Write};

    #[tokio::test]
    async fn fd_travels_with_its_bytes() {
        let (a, b) = UnixStream::pair().unwrap();
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(b"payload").unwrap();
        send_all_with_fds(&a, b"hello", &[f.as_fd()]).await.unwrap();
        let mut buf = [0u8; 16];
        let mut fds = Vec::new();
        let n = recv_with_fds(&b, &mut buf, &mut fds).await.unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        let mut got = std::fs::File::from(fds.pop().unwrap());
        got.rewind().unwrap();
        let mut s = String::new();
        got.read_to_string(&mut s).unwrap();
        assert_eq!(s, "payload");
    }

    /// Sends `n` copies of one fd with one byte.
    fn send_copies(sock: &UnixStream, n: usize) {
        let f = tempfile::tempfile().unwrap();
        let copies: Vec<BorrowedFd<'_>> = (0..n).map(|_| f.as_fd()).collect();
        send_now(sock.as_raw_fd(), b"x", &copies).unwrap();
    }

    #[test]
    fn over_budget_fds_are_never_installed_and_installed_ones_are_closed() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (a, b) = UnixStream::pair().unwrap();
            let budget = FdBudget::new(10);
            let mut cmsg = cmsg_buffer();
            let mut held = Vec::new();
            let mut buf = [0u8; 8];

            // Within the budget: received and counted.
            send_copies(&a, 4);
            b.readable().await.unwrap();
            let n =
                recv_now_budget(b.as_raw_fd(), &mut buf, &mut cmsg, &mut held, &budget).unwrap();
            assert_eq!((n, held.len(), budget.held()), (1, 4, 4));

            // Over what is left (6): the kernel installs 6 and discards the
            // rest; we close the 6 and report the refusal.
            send_copies(&a, 9);
            b.readable().await.unwrap();
            let err = recv_now_budget(b.as_raw_fd(), &mut buf, &mut cmsg, &mut held, &budget)
                .unwrap_err();
            assert!(err.to_string().contains("fds refused"), "{err}");
            assert_eq!(held.len(), 4);
            assert_eq!(budget.held(), 4, "the refused fds hold no place");

            held.clear();
            assert_eq!(budget.held(), 0);
        });
    }

    #[test]
    fn truncated_control_data_closes_what_was_installed() {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        let copies: Vec<BorrowedFd<'_>> = (0..8).map(|_| f.as_fd()).collect();
        send_now(a.as_raw_fd(), b"x", &copies).unwrap();
        let mut cmsg = cmsg_buffer();
        let mut buf = [0u8; 8];
        let mut got = Vec::new();
        // Room for 3 only: truncated.
        let (n, truncated) =
            recvmsg_fds(b.as_raw_fd(), &mut buf, &mut cmsg, 3, &mut |f| got.push(f)).unwrap();
        assert_eq!(n, 1);
        assert!(truncated);
        // Every fd the kernel installed was handed over (so it is closed
        // with `got`), the surplus was never installed.
        assert_eq!(got.len(), 3);
        for f in &got {
            assert!(nix::sys::stat::fstat(f).is_ok());
        }
    }
}
