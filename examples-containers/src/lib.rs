//! Shared helpers of the example containers (one binary per example under
//! `src/bin/`, manifests under `<example-name>/`).

pub mod drmcheck;
pub mod wayland_frame;

/// What `pv-example-unix-server` puts in the memfd it passes on `FD`, and
/// what `pv-example-unix-client` expects to read from it.
pub const UNIX_FD_PAYLOAD: &[u8] = b"pv-example-unix-server memfd payload v1\n";
