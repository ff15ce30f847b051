//! appengine-lite: a minimal Pantavisor-compatible appengine for tests.
//!
//! It is a test double for Pantavisor, not a re-implementation: it does what
//! pv-xconnect and the Docker harness can observe (pv-ctrl answers, log lines,
//! install layout, LXC containers, the managed daemons) and behaves there as
//! the real appengine does. Every behaviour below was checked against a build
//! of upstream's master in appengine mode (`pantavisor-appengine:real-src`,
//! the kit described in the README), and each has a test naming the upstream
//! behaviour it copies.
//!
//! # What still differs, and why
//!
//! - Caller identity: upstream maps the caller's pid (SO_PEERCRED) to its
//!   cgroup and platform, and refuses mgmt endpoints to non-mgmt containers
//!   (403) and unknown cgroups (500). Here every caller is Pantavisor itself,
//!   as `docker exec` is on the real appengine, so those answers never occur
//!   and `POST /signal` is always "Signal not expected from this platform".
//!   Identifying LXC payload cgroups inside Docker would need the Pantacor
//!   LXC fork's cgroup layout.
//! - Reboot and poweroff (a container failed without auto-recovery or
//!   past its retries, a refused factory revision, `cmd reboot|poweroff`)
//!   are copied from upstream's appengine mode — its log lines up to "will
//!   not actually perform '<reboot|poweroff>' as we are in appengine mode",
//!   pv-ctrl's listener closed with its socket file left, the daemons
//!   stopped, a new launch after the restart delay unless powered off —
//!   but one process plays both pantavisor and pv-appengine: it keeps the
//!   parsed state across launches (only a refused revision is read again),
//!   kills the containers where upstream first stops them leniently (the
//!   examples' SIGTERM cleanup does not run; and during upstream's stop,
//!   up to ~10 s, its pv-ctrl still accepts but answers nothing —
//!   pvcontrol exits 255 with no message — where here it is closed at
//!   once: exit 1, "got no response"), and logs upstream's
//!   lines but not its DEBUG chatter around them. Upstream serves pv-ctrl
//!   for the second or so a refused launch takes (with the state loaded,
//!   for a failed service validation); here only for the instant before
//!   the refusal.
//! - Loggers: upstream runs two logger processes per container; here there
//!   are none, but the 5 s it takes upstream to stop them before a
//!   container's halt signal is kept (`--logger-stop-ms`), since a client of
//!   `PUT /containers/<c>` sees it.
//! - Updates: `/steps` stores local revisions and `/commands` accepts
//!   `LOCAL_RUN` and friends, but only revision 0 ever runs; no rollback, no
//!   signatures, no Pantahub. `GET /steps/<rev>` answers the same JSON as
//!   upstream but not the same bytes: keys sorted and values re-serialized,
//!   where upstream keeps pvtx's text (export order, the export's own
//!   spacing); a client parsing it cannot tell.
//! - Commands wait 1 s for the state loop to take them; upstream's loop
//!   takes them at its next pass, up to 2 s later (`WAIT_INTERVAL`,
//!   sooner when a container event wakes it), so how many of a quick
//!   burst of `pvcontrol cmd` calls get 503 (exit 75) varies on both.
//! - `/config`, `/config2` serve the real appengine's answers as captured;
//!   `/buildinfo` names appengine-lite; device metadata has upstream's keys
//!   with this host's values.
//! - Not served: `/drivers`, `/wakelocks` (pvcontrol has no subcommand for
//!   them).
//! - LXC: Debian's LXC 5 instead of the Pantacor fork; no mount hooks (mdev),
//!   no `lxcbr0` bridge, containers keep the appengine's network namespace.
//!   Non-mgmt containers start here; on the kit's upstream LXC they cannot
//!   (the fork's `origin=mkdir` mount option).
//! - Extra for tests: `--root`, `--runtime process`, the timing knobs, and,
//!   under a non-`/` root, `PV_XCONNECT_CTRL_SOCKET` in the daemon's
//!   environment and prefixed hosted-bus paths in the graph.
//!
//! # Layout
//!
//! - [`paths`]: every filesystem location, under a configurable root prefix
//!   so tests run outside Docker.
//! - [`pvlog`]: `pantavisor.log` writer with upstream-like line format.
//! - [`install`]: first-boot install of `pvtx.d/*` pvrexports into revision 0.
//! - [`launch`]: one launch of revision 0 (install, parse, object
//!   checksums, validation) and how upstream refuses it.
//! - [`groups`]: container groups and their defaults.
//! - [`recovery`]: auto-recovery settings and retry delays.
//! - [`state`]: the merged state JSON parsed into groups, containers,
//!   exports and requirements; validation.
//! - [`graph`]: `GET /xconnect-graph` generation with upstream's semantics.
//! - [`hostbus`]: the hosted D-Bus system bus (option).
//! - [`runtime`]: how a container is started, halted and killed (LXC, or a
//!   plain host process for tests).
//! - [`engine`]: container lifecycle (group order, stops, auto-recovery,
//!   reboot, readiness).
//! - [`daemon`]: the managed daemons (spawn, placeholder respawn, stop).
//! - [`ctrl`]: the pv-ctrl HTTP server on a Unix socket.
//! - [`pvrexport`]: a tiny pvrexport writer used by tests.

pub mod ctrl;
pub mod daemon;
pub mod engine;
pub mod graph;
pub mod groups;
pub mod hostbus;
pub mod install;
pub mod launch;
pub mod paths;
pub mod pvlog;
pub mod pvrexport;
pub mod recovery;
pub mod runtime;
pub mod state;
