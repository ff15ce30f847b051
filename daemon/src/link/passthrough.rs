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
//!   removal (only new connects fail), and a provider that restarts its
//!   server inside the same container leaves the consumer with a dead
//!   socket until the link is restarted (a new provider pid in the graph
//!   re-binds);
//! - if the kernel or the daemon's privileges refuse the mount API, the
//!   link is relayed instead, with a warning in the log.

use std::sync::Arc;

use super::Mediation;
use crate::graph::LinkSpec;
use crate::ns::{self, Mounted, NsError};
use crate::process::{Pid, Process};

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
