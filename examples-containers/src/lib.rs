//! Shared helpers of the example containers (one binary per example under
//! `src/bin/`, manifests under `<example-name>/`).
//!
//! # Layout
//!
//! - [`dbus`]: the `org.pantavisor.Example` service and its clients.

pub mod dbus;
