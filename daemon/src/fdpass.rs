//! SCM_RIGHTS on tokio Unix streams.
//!
//! Stream sockets deliver ancillary data with the first byte of the
//! `sendmsg` that carried it, so a relay that reads with [`recv_with_fds`]
//! and writes what it read with [`send_all_with_fds`] keeps every fd attached to
//! the bytes it travelled with. Received fds are `O_CLOEXEC`.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use tokio::io::Interest;
use tokio::net::UnixStream;

/// The kernel's per-message limit (SCM_MAX_FD).
pub const MAX_FDS: usize = 253;

/// Read bytes into `buf`, appending any received fds to `fds`.
/// Returns 0 at end of stream. Truncated control data (more fds than
/// [`MAX_FDS`]) is reported as an error: fds would have been lost.
pub async fn recv_with_fds(
    sock: &UnixStream,
    buf: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    sock.async_io(Interest::READABLE, || recv_now(sock.as_raw_fd(), buf, fds))
        .await
}

/// One non-blocking `recvmsg`; `WouldBlock` when nothing is queued.
pub fn recv_now(fd: RawFd, buf: &mut [u8], fds: &mut Vec<OwnedFd>) -> io::Result<usize> {
    let mut cmsg = cmsg_buffer();
    recv_now_with(fd, buf, &mut cmsg, fds)
}

/// A control-data buffer big enough for [`MAX_FDS`] descriptors, for
/// [`recv_now_with`] (a relay allocates it once per direction, not per read).
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!([RawFd; MAX_FDS])
}

/// [`recv_now`] with a caller-owned control buffer from [`cmsg_buffer`].
pub fn recv_now_with(
    fd: RawFd,
    buf: &mut [u8],
    cmsg: &mut Vec<u8>,
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        fd,
        &mut iov,
        Some(cmsg.as_mut_slice()),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let n = msg.bytes;
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for c in msg.cmsgs().map_err(io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these descriptors in our
            // table for us; nothing else owns them.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "control data truncated: fds lost",
        ));
    }
    Ok(n)
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
    use std::os::fd::AsFd;

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
}
