//! `drm` mediation: validate the provider's node (char device, major 226,
//! resolved inside the provider's root) and mknod it into the consumer.
//!
//! The provider's path is resolved with every symlink scoped to the
//! provider's root ([`crate::ns::stat_provider_device`]), so a provider
//! whose "device" is a symlink to `/dev/sda` gets its *own* `/dev/sda` (if
//! any), never the host's; whatever it resolves to must then be a character
//! device with the DRM major, or the link is refused.

use std::sync::Arc;

use super::LinkError;
use crate::graph::LinkSpec;
use crate::ns::{self, DeviceNode, Injected};
use crate::process::{LinkPids, Process};

/// The DRM subsystem's character-device major number.
pub const DRM_MAJOR: u64 = 226;

/// Why a provider's node is not acceptable, or `Ok` for a DRM char device.
pub fn validate(node: &DeviceNode) -> Result<(), String> {
    check_char_device(node, DRM_MAJOR, "DRM")
}

/// Why `node` is not a character device of `major` (the subsystem `what`),
/// or `Ok`. Shared with [`super::input`].
pub(super) fn check_char_device(node: &DeviceNode, major: u64, what: &str) -> Result<(), String> {
    if node.is_block_device() {
        return Err(format!(
            "is a block device ({}:{}), not a {what} character device",
            node.major, node.minor
        ));
    }
    if !node.is_char_device() {
        return Err(format!(
            "is not a character device (mode {:o})",
            node.mode & libc::S_IFMT
        ));
    }
    if node.major != major {
        return Err(format!(
            "is a character device {}:{} whose major is not {what} ({major})",
            node.major, node.minor
        ));
    }
    Ok(())
}

/// Validate the provider's node and create it at the link's target in the
/// consumer with the provider node's mode, uid and gid. `provider` is the
/// pinned provider (`None`: the host).
pub async fn install(
    spec: &LinkSpec,
    pids: LinkPids,
    consumer: &Arc<Process>,
    provider: Option<Arc<Process>>,
) -> Result<Injected, LinkError> {
    install_node(spec, pids, consumer, provider, validate).await
}

/// [`install`] with the node check of a device link type (`drm`,
/// `input`).
pub(super) async fn install_node(
    spec: &LinkSpec,
    pids: LinkPids,
    consumer: &Arc<Process>,
    provider: Option<Arc<Process>>,
    validate: fn(&DeviceNode) -> Result<(), String>,
) -> Result<Injected, LinkError> {
    let refuse = |why: String| {
        LinkError::Refused(format!("provider device {} {why}", spec.socket.display()))
    };
    let node = match ns::stat_provider_device(provider, &spec.socket).await {
        Ok(node) => node,
        Err(e) if e.is_gone() => return Err(e.into()),
        Err(e) => {
            return Err(refuse(format!(
                "cannot be resolved inside the provider's root: {e}"
            )))
        }
    };
    validate(&node).map_err(refuse)?;
    Ok(ns::mknod_in_consumer(consumer, pids.consumer, &spec.target, node).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: u32, major: u64) -> DeviceNode {
        DeviceNode {
            major,
            minor: 0,
            mode: kind | 0o660,
            uid: 0,
            gid: 44,
        }
    }

    #[test]
    fn only_drm_char_devices_pass() {
        assert!(validate(&node(libc::S_IFCHR, 226)).is_ok());
        assert!(validate(&node(libc::S_IFCHR, 1))
            .unwrap_err()
            .contains("not DRM"));
        assert!(validate(&node(libc::S_IFBLK, 226))
            .unwrap_err()
            .contains("block device"));
        assert!(validate(&node(libc::S_IFREG, 0))
            .unwrap_err()
            .contains("not a character"));
    }
}
