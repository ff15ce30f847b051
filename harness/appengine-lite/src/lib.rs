//! appengine-lite: a minimal Pantavisor-compatible appengine for tests.
//!
//! It is a test double for Pantavisor, not a re-implementation: it does what
//! pv-xconnect and the Docker harness can observe (pv-ctrl answers, log lines,
//! install layout, LXC containers, the managed `pv-xconnect` daemon) and
//! nothing else (no updates, no signatures, no rollback, no caller checks).
//!
//! # Differences from Pantavisor (deliberate, documented)
//!
//! - pv-ctrl does not identify callers (SO_PEERCRED → cgroup → mgmt role):
//!   everyone is mgmt, so upstream's 403 "Request not sent from mgmt
//!   platform" and 500 "Internal Error" (cgroup-v1 `docker exec`) never
//!   happen.
//! - Upstream answers 400 (not 403) to `PUT /containers/{name}` for a
//!   container whose restart policy is not `container`; we copy that.
//! - Device metadata is served at upstream's path `/device-meta` (what
//!   `pvcontrol devmeta ls` calls); `/devmeta` is an unknown endpoint there
//!   and here.
//! - No hosted system bus: no `_pv_` provider links and no `uid` field.
//! - A failed install or validation is logged and nothing starts; there is
//!   no rollback or reboot loop. A `system` restart-policy container whose
//!   init exits stays STOPPED (upstream would reboot the device).
//! - Only `pvcontrol ls|containers|daemons|graph|devmeta|conf` exist.
//! - Extra for tests: `--root`, `--runtime process`, and, under a non-`/`
//!   root, `PV_XCONNECT_CTRL_SOCKET` in the daemon's environment.
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
