//! The few raw syscalls the daemon needs that nix does not wrap the way we
//! need them (per-thread credentials). All of the crate's FFI lives here and
//! in [`crate::fdpass`].

use std::io;

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
