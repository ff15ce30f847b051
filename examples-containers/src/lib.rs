//! Shared helpers of the example containers (one binary per example under
//! `src/bin/`, manifests under `<example-name>/`).
//!
//! # Layout
//!
//! - [`dbus`]: the `org.pantavisor.Example` service and its clients.
//! - [`rest`]: the network-manager mock and its client.
//! - [`drmcheck`]: the DRM probes of the drm examples.
//! - [`pid1`]: stop signals, so every example exits promptly as a container init.
//! - [`wayland_frame`]: the pattern and checksum shared by the wayland examples.

pub mod dbus;
pub mod drmcheck;
pub mod pid1;
pub mod rest;
pub mod wayland_frame;

/// What `pv-example-unix-server` puts in the memfd it passes on `FD`, and
/// what `pv-example-unix-client` expects to read from it.
pub const UNIX_FD_PAYLOAD: &[u8] = b"pv-example-unix-server memfd payload v1\n";
