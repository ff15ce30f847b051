//! `pv-xconnect`: Pantavisor's service-mesh daemon, in Rust.
//!
//! Pantavisor publishes an *xconnect graph* on its control socket (pv-ctrl):
//! one entry per consumer→provider link. For every link this daemon plants a
//! virtual resource inside the consumer container's mount namespace (a
//! listening socket, or a device node for `drm` and `input`) and mediates the traffic to
//! the provider according to the link's type.
//!
//! # Layout
//!
//! - [`graph`]: the serde model of `GET /xconnect-graph`, tolerant of what
//!   real Pantavisor emits, and its resolution into [`graph::LinkSpec`]s.
//! - [`ctrl`]: the pv-ctrl HTTP client (hyper over a Unix socket) and the
//!   graph-file source; both publish graphs on a `watch` channel.
//! - [`reconcile`]: diffs successive graphs by (consumer, name, target) and
//!   starts, restarts or tears down links through a [`reconcile::Backend`];
//!   the one place that logs link events.
//! - [`status`]: the status socket and the `pv-xconnect status` client.
//! - [`process`]: the one pid check, turning a link's pids from the graph
//!   into checked types (a consumer is never the host).
//! - [`link`]: one running link (mediation, accept loop, sessions,
//!   teardown) and the per-type mediations: [`link::unix`], [`link::rest`],
//!   [`link::dbus`], [`link::drm`], [`link::input`], [`link::wayland`];
//!   [`link::workers`] are the threads (one current-thread runtime each)
//!   its sessions run on; [`link::passthrough`] binds a `unix` link's
//!   provider socket into the consumer instead of relaying
//!   (`--unix-passthrough`).
//! - [`ns`]: namespace plumbing on dedicated OS threads: inject listeners and
//!   device nodes into a consumer, reach a provider's socket or device
//!   resolved inside the provider's root, bind-mount that socket into a
//!   consumer.
//! - [`fdpass`]: SCM_RIGHTS send/receive on tokio Unix streams.
//! - [`sys`]: the few raw syscalls we need (per-thread credentials,
//!   pidfds, `open_tree`/`move_mount`).
//! - [`error`]: the I/O error with action and path that modules share.
//! - [`logging`]: the fields every line about a link carries, and the
//!   daemon's subscriber.
//! - [`signal`]: SIGTERM/SIGINT as one future.
//! - [`shutdown`]: the cancellation token every task holds.
//! - `test_util` (feature `test-util`, and this crate's own tests): a
//!   [`graph::LinkSpec`] builder for tests and benchmarks.
//!
//! Unsafe code is denied workspace-wide; [`fdpass`] and [`sys`] allow it
//! for their FFI, each block with a `SAFETY:` comment.

pub mod ctrl;
pub mod error;
#[allow(unsafe_code)]
pub mod fdpass;
pub mod graph;
pub mod link;
pub mod logging;
pub mod ns;
pub mod process;
pub mod reconcile;
pub mod shutdown;
pub mod signal;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
#[cfg(any(test, feature = "test-util"))]
pub mod test_util;
