//! Shared helpers of the example containers (one binary per example under
//! `src/bin/`, manifests under `<example-name>/`).

pub mod rest;
