//! The test harness: builds the example containers into real pvrexports,
//! builds the appengine-lite Docker image (or takes a real Pantavisor
//! appengine image), boots an appengine in Docker with those exports and
//! checks the mesh end to end.
//!
//! # Layout
//!
//! - [`config`]: every environment variable the harness reads, read once
//!   into a [`config::Config`].
//! - [`appengine`]: one appengine container and everything a test asks of
//!   it (boot, container lifecycle on testcontainers, pv-ctrl client, waits,
//!   logs, diagnostics).
//! - [`group`]: tests of one file sharing one booted appengine.
//! - [`image`]: the appengine image: appengine-lite built without a
//!   registry, or a real one loaded.
//! - [`examples`]: the example containers, discovered and packaged into
//!   pvrexports.
//! - [`pvrexport`]: the pvrexport format (writer and reader), with pvr's
//!   `run.json` / `src.json` / `lxc.container.conf` rendering.
//! - [`binaries`]: the one static build of every binary that goes into a
//!   container or the image.
//! - [`debian`]: cached debootstrap minbase trees.
//! - [`docker`]: the runtime the synchronous API drives and the bollard
//!   connection.
//! - [`util`]: workspace root, progress lines, running tools, hashes, the
//!   build lock.
//! - [`atexit`]: the process-exit hook (the crate's only `unsafe`).
pub mod appengine;
pub mod atexit;
pub mod binaries;
pub mod config;
pub mod debian;
pub mod docker;
pub mod examples;
pub mod group;
pub mod image;
pub mod pvrexport;
pub mod util;
