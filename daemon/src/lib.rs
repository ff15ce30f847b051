//! `pv-xconnect`: Pantavisor's service-mesh daemon, in Rust.
//!
//! Pantavisor publishes an *xconnect graph* on its control socket (pv-ctrl):
//! one entry per consumer→provider link. For every link this daemon plants a
//! virtual resource inside the consumer container's mount namespace (a
//! listening socket, or a device node for `drm`) and mediates the traffic to
//! the provider according to the link's type.
//!
//! # Layout
//!
//! - [`graph`]: the serde model of `GET /xconnect-graph`, tolerant of what
//!   real Pantavisor emits, and its resolution into [`graph::LinkSpec`]s.
//! - [`ctrl`]: the pv-ctrl HTTP client (hyper over a Unix socket) and the
//!   graph-file source; both publish graphs on a `watch` channel.
//! - [`reconcile`]: diffs successive graphs by (consumer, name, target) and
//!   starts, restarts or tears down links.
//! - [`status`]: the status socket and the `pv-xconnect status` client.
//! - [`signal`]: SIGTERM/SIGINT as one future.
//! - [`sys`]: the few raw syscalls we need (per-thread credentials, setns).
//! - [`ns`]: namespace plumbing on dedicated OS threads: inject listeners and
//!   device nodes into a consumer, reach a provider's socket or device
//!   resolved inside the provider's root.
//! - [`fdpass`]: SCM_RIGHTS send/receive on tokio Unix streams.
//! - [`link`]: one running link (listener, sessions, teardown) and the
//!   per-type mediations: [`link::unix`], [`link::rest`], [`link::dbus`],
//!   [`link::drm`], [`link::wayland`].
//! - [`shutdown`]: the cancellation token every task holds.

#![deny(unsafe_code)]

pub mod ctrl;
#[allow(unsafe_code)]
pub mod fdpass;
pub mod graph;
pub mod link;
pub mod ns;
pub mod reconcile;
pub mod shutdown;
pub mod signal;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
