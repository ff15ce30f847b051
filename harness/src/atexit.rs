//! Running a function when the process exits normally.
//!
//! libtest ends a test binary with `process::exit`, which runs no
//! destructors of statics: the C library's `atexit` is the one hook left
//! for removing appengines a filtered test run left behind. The harness's
//! only `unsafe` is here.
#![allow(unsafe_code)]

/// Registers `f` to run at normal process exit (C `atexit`; last
/// registered runs first). Returns false if the C library refused.
pub fn register(f: extern "C" fn()) -> bool {
    // SAFETY: `atexit` only stores the pointer; `f` is a plain function
    // with the C ABI, no arguments and no captured state, valid for the
    // whole life of the process.
    unsafe { libc::atexit(f) == 0 }
}
