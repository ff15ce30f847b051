//! Cooperative shutdown: every long-lived task holds a clone of one token.
//!
//! A link's token is a child of the daemon's, so tearing down one link
//! cancels its listener and sessions without touching the others.

pub use tokio_util::sync::CancellationToken as Shutdown;
