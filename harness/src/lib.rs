//! The test harness: builds the example containers into real pvrexports,
//! builds the appengine-lite Docker image, boots an appengine in Docker with
//! those exports and checks the mesh end to end.
//!
//! # Layout
//!
//! - [`config`]: every environment variable the harness reads, read once.
//! - [`pvrexport`]: the pvrexport format (writer and reader), with pvr's
//!   `run.json` / `src.json` / `lxc.container.conf` rendering.
pub mod appengine;
pub mod binaries;
pub mod config;
pub mod debian;
pub mod docker;
pub mod examples;
pub mod group;
pub mod image;
pub mod pvrexport;
pub mod util;
