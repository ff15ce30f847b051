//! Passthrough `unix` links (`--unix-passthrough`, off by default): the
//! provider's socket itself is bind-mounted at the consumer's target, and
//! the daemon steps out of the data path.
//!
//! What the relayed link guarantees still holds at bind time: the socket
//! is resolved inside the provider's root, never through a path the
//! consumer controls; one connection (closed at once) checks that the
//! process listening on it lives in the provider's mount and pid
//! namespaces, so a host socket bind-mounted into the provider, or one of
//! the daemon's own listeners, fails the link as it would a relayed one;
//! the target is prepared without following symlinks and a live socket
//! there is never replaced. The mount itself is made on exactly the
//! checked inode ([`ns::mount_socket`]).
//!
//! What changes for users:
//! - consumers talk to the provider directly: full speed, SCM_RIGHTS and
//!   half-close as the kernel does them, no session cap, no byte or
//!   session counts in `pv-xconnect status` (its `mode=passthrough`);
//! - the provider sees the consumer's own credentials (SO_PEERCRED: the
//!   consumer's pid, uid and gid), not the daemon's, and the socket file's
//!   owner and mode are the provider's, not 0666;
//! - connections established through the mount survive the link's
//!   removal (only new connects fail);
//! - a provider server that re-creates its socket inside the same
//!   container is followed within [`FOLLOW_PERIOD`] ([`follow`] resolves
//!   the path again and, when it leads to another socket, checks its
//!   listener like the first and binds it in place of the old one); a
//!   restarted provider container (new pid in the graph) restarts the
//!   link, which binds afresh;
//! - if the kernel or the daemon's privileges refuse the mount API, the
//!   link is relayed instead, with a warning in the log;
//! - the mount propagates like any other: into the peers of the mount
//!   holding the target, if the consumer's mounts are shared (LXC and
//!   testkit containers make theirs private or slave).

use std::sync::Arc;
use std::time::Duration;

use tracing::Level;

use super::{Mediation, Provider};
use crate::graph::LinkSpec;
use crate::logging::link_event;
use crate::ns::{self, Mounted, NsError};
use crate::process::{Pid, Process};
use crate::shutdown::Shutdown;

/// How often a passthrough link looks where the provider's socket path
/// leads (one path walk in the provider's root; a connection only when it
/// leads somewhere new).
pub const FOLLOW_PERIOD: Duration = Duration::from_secs(2);

/// Check the provider's socket and bind it at the link's target in the
/// consumer. [`NsError::is_mount_api`] errors mean the caller should relay.
pub(super) async fn bind(
    spec: &LinkSpec,
    consumer_pid: Pid,
    consumer: &Arc<Process>,
    provider: &Arc<Process>,
    mediation: &Mediation,
) -> Result<Mounted, NsError> {
    let socket = mediation.provider.checked_socket().await?;
    ns::mount_socket(consumer, consumer_pid, &spec.target, provider, &socket).await
}

/// Until `shutdown`: every [`FOLLOW_PERIOD`], bind the provider's socket
/// again if its path now leads to another one (the server restarted
/// inside its container). A new socket served from outside the provider
/// is refused by the check, which ends the link (see [`Provider::refused`]).
pub(super) async fn follow(
    spec: Arc<LinkSpec>,
    mounted: Mounted,
    provider_pin: Arc<Process>,
    provider: Arc<Provider>,
    shutdown: Shutdown,
) {
    // A path that led to a socket other than the live one checked: not
    // probed again until it changes (its server may still be starting).
    let mut passed: Option<(u64, u64)> = None;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(FOLLOW_PERIOD) => {}
        }
        // Missing or unreadable: the server is down; nothing to bind yet.
        let Ok(now) = provider.current_node().await else {
            continue;
        };
        if now == mounted.node() || Some(now) == passed {
            continue;
        }
        let socket = match provider.checked_socket().await {
            Ok(s) => s,
            Err(e) => {
                link_event!(Level::DEBUG, spec, reason = %e, "provider socket changed but cannot be checked yet");
                continue;
            }
        };
        if socket.node == mounted.node() {
            // The bound socket still answers: keep it.
            passed = Some(now);
            continue;
        }
        if shutdown.is_cancelled() {
            return;
        }
        match ns::rebind_socket(&mounted, &provider_pin, &socket).await {
            Ok(()) => link_event!(
                Level::INFO,
                spec,
                "provider socket re-created: bound into the consumer again"
            ),
            Err(e) => link_event!(
                Level::WARN,
                spec,
                reason = %e,
                "cannot bind the provider's new socket"
            ),
        }
    }
}
