//! Tests and benchmarks that need both the daemon and the examples: the
//! example programs through real links, the example servers as the
//! providers of the rest and dbus mediations. The daemon's own tests
//! (`daemon/tests`) and the examples' (`examples-containers/tests`) need
//! only their crate; this crate depends on both, so neither depends on
//! the other.
//!
//! # Layout
//!
//! - [`proxy`]: a link served on a host path by the daemon's own accept
//!   loop (`link::serve`), the fixture every mediation test drives.
//! - [`rest`]: the example REST server as a provider, and rest links to it.
//! - [`dbus`]: dbus-daemon with the example bus configuration and service,
//!   and dbus links to it.
//! - `src/bin/e2e-*`: the example programs these tests run (unix and
//!   wayland pairs), built from `pv_examples` so that cargo builds them for
//!   this crate's tests (`CARGO_BIN_EXE_e2e-*`).
//!
//! Tests: `tests/{unix_example,wayland,wayland_ns,rest,dbus}.rs` (root:
//! namespaces, dbus-daemon, weston). Benchmarks: `cargo bench -p pv-e2e
//! --bench rest` and `--bench dbus`.

pub mod dbus;
pub mod proxy;
pub mod rest;

pub use proxy::Proxy;
