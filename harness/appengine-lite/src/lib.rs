//! appengine-lite: a minimal Pantavisor-compatible appengine for tests.
//!
//! It is a test double for Pantavisor, not a re-implementation: it does what
//! pv-xconnect and the Docker harness can observe (pv-ctrl answers, log lines,
//! install layout, LXC containers, the managed `pv-xconnect` daemon) and
//! nothing else (no updates, no signatures, no rollback, no caller checks).
//!
//! # Layout
//!
//! - [`paths`]: every filesystem location, under a configurable root prefix
//!   so tests run outside Docker.
//! - [`pvlog`]: `pantavisor.log` writer with upstream-like line format.
//! - [`install`]: first-boot install of `pvtx.d/*` pvrexports into revision 0.
//! - [`state`]: the merged state JSON parsed into containers, exports and
//!   requirements; required-service validation.
//! - [`graph`]: `GET /xconnect-graph` generation with upstream's semantics.
//! - [`runtime`]: how a container is started (LXC, or a plain host process
//!   for tests) and watched.
//! - [`engine`]: container lifecycle (group order, restart policy, status,
//!   readiness).
//! - [`daemon`]: the managed `pv-xconnect` daemon (spawn, respawn, stop).
//! - [`ctrl`]: the pv-ctrl HTTP server on a Unix socket.
//! - [`pvrexport`]: a tiny pvrexport writer used by tests.

pub mod ctrl;
pub mod daemon;
pub mod engine;
pub mod graph;
pub mod install;
pub mod paths;
pub mod pvlog;
pub mod pvrexport;
pub mod runtime;
pub mod state;
