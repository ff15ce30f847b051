//! The example containers' programs and the code they share. Each example
//! is one binary under `src/bin/` (manifests under `<example-name>/`);
//! its logic lives here, so the programs can also be built by crates that
//! test them through the daemon (`e2e`).
//!
//! # Layout
//!
//! - [`unix_server`], [`unix_client`]: the `raw-unix` pair (echo, and a
//!   memfd passed with SCM_RIGHTS).
//! - [`wayland_server`], [`wayland_client`]: a minimal compositor and a
//!   client drawing one checked frame through it.
//! - [`wayland_frame`]: the pattern and checksum shared by the wayland pair.
//! - [`dbus`]: the `org.pantavisor.Example` service and its clients.
//! - [`dbus_host`]: the same service and a client on the bus Pantavisor
//!   hosts (`system-bus` from provider `_pv_`).
//! - [`rest`]: the network-manager mock and its client.
//! - [`drmcheck`]: the DRM probes of the drm examples.
//! - [`input`]: the uinput keyboard of the input provider and the evdev
//!   reader of its consumer.
//! - [`pid1`]: stop signals, so every example exits promptly as a container init.
//!
//! Unsafe code is denied workspace-wide; [`unix_client`] (taking received
//! fds), [`wayland_server`] (mapping shm pools) and [`input`] (uinput and
//! evdev ioctls) allow it, each block with a `SAFETY:` comment.

pub mod dbus;
pub mod dbus_host;
pub mod drmcheck;
#[allow(unsafe_code)]
pub mod input;
pub mod pid1;
pub mod rest;
#[allow(unsafe_code)]
pub mod unix_client;
pub mod unix_server;
pub mod wayland_client;
pub mod wayland_frame;
#[allow(unsafe_code)]
pub mod wayland_server;

/// What `pv-example-unix-server` puts in the memfd it passes on `FD`, and
/// what `pv-example-unix-client` expects to read from it.
pub const UNIX_FD_PAYLOAD: &[u8] = b"pv-example-unix-server memfd payload v1\n";
