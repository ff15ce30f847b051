//! The few raw syscalls the daemon needs that nix does not wrap the way we
//! need them (per-thread credentials). All of the crate's FFI lives here and
//! in [`crate::fdpass`].
