//! Test support shared by the workspace's tests and benchmarks. It depends
//! on neither the daemon nor the examples, so any of them can use it.
//!
//! # Layout
//!
//! - [`container`]: real "containers" for namespace tests (mount, pid and
//!   uts namespaces, an own root), from util-linux `unshare`/`nsenter`.
//! - [`listen`]: listening sockets created inside a container (the
//!   process that calls `listen()` lives there, as pv-xconnect checks),
//!   served by the test; [`Container::listen`] is the usual way in.
//! - [`pvctrl`]: a fake pv-ctrl serving `GET /xconnect-graph`.
//! - [`sandbox`]: a fresh pid namespace to run a daemon and containers
//!   in, where the next pid can be chosen (`ns_last_pid`).
//! - [`logs`]: capture this thread's tracing output to assert on log lines.
//! - [`procstat`]: context switches and CPU time of a process (benchmarks).
//! - [`require`]: [`require_root`] and [`require_tool`], which fail a test
//!   with a clear message when the machine lacks what it needs (CI
//!   installs everything: nothing is skipped).
//! - [`eventually`]: [`assert_eventually!`] and the patience it uses
//!   (`RUST_TEST_PATIENCE_MS`).
//!
//! Binaries a test runs are found the one way cargo offers without
//! building anything at test time: `env!("CARGO_BIN_EXE_<name>")`, set for
//! the tests of the package that owns the binary. The daemon's tests run
//! `pv-xconnect`, the examples' tests the example binaries; the `e2e`
//! crate, which tests examples through the daemon, owns thin copies of
//! the example programs it needs.
//!
//! Unsafe code is denied workspace-wide; [`listen`] allows it: its helper
//! forks and, in the child, may only make async-signal-safe calls (raw
//! libc: setns, chroot, bind, sendmsg of the listener fd, _exit).

pub mod container;
pub mod eventually;
pub mod listen;
pub mod logs;
pub mod procstat;
pub mod pvctrl;
pub mod require;
pub mod sandbox;

pub use container::Container;
pub use logs::Logs;
pub use require::{require_root, require_tool};
