//! `unix` mediation: a byte relay that keeps SCM_RIGHTS fds attached to the
//! bytes they were sent with, propagates half-close, and reclaims idle
//! half-open sessions.

use tokio::net::UnixStream;

use super::Session;

/// Relay one consumer connection to a fresh provider connection.
pub async fn serve(_consumer: UnixStream, _session: &Session) -> anyhow::Result<()> {
    todo!("core issue: unix relay with fd passing")
}
