//! `dbus` mediation. Until its own issue lands it relays bytes and fds like
//! `unix` (as upstream does), so links of this type work from the start.

use tokio::net::UnixStream;

use super::Session;
use crate::graph::LinkSpec;

/// Per-link configuration, computed once when the link starts.
#[derive(Debug, Clone, Default)]
pub struct Config {}

impl Config {
    pub async fn prepare(_spec: &LinkSpec, _upstream: &super::Upstream) -> anyhow::Result<Self> {
        Ok(Self {})
    }
}

/// Serve one consumer connection until either side closes.
pub async fn serve(
    _config: &Config,
    consumer: UnixStream,
    session: &Session,
) -> anyhow::Result<()> {
    super::unix::serve(consumer, session).await
}
