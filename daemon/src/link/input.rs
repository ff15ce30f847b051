//! `input` mediation (documented upstream, implemented by no C plugin):
//! validate the provider's evdev node (character device, input major 13,
//! resolved inside the provider's root) and mknod it into the consumer,
//! exactly as [`super::drm`] does for DRM nodes.
//!
//! The provider's path (graph `socket`, e.g. `/dev/input/event3`) is
//! resolved with every symlink scoped to the provider's root, so a
//! provider cannot make a consumer receive a host device by pointing a
//! symlink at it; whatever it resolves to must be a character device with
//! the input major (evdev, joydev, mousedev all live there), or the link is
//! refused. The consumer's node keeps the provider node's numbers, mode and
//! owner, and is removed when the link stops.

use std::sync::Arc;

use super::{drm, LinkError};
use crate::graph::LinkSpec;
use crate::ns::{DeviceNode, Injected};
use crate::process::{LinkPids, Process};

/// The input subsystem's character-device major number.
pub const INPUT_MAJOR: u64 = 13;

/// Why a provider's node is not acceptable, or `Ok` for an input char
/// device.
pub fn validate(node: &DeviceNode) -> Result<(), String> {
    drm::check_char_device(node, INPUT_MAJOR, "input")
}

/// Validate the provider's node and create it at the link's target in the
/// consumer (see [`drm::install`]).
pub async fn install(
    spec: &LinkSpec,
    pids: LinkPids,
    consumer: &Arc<Process>,
    provider: Option<Arc<Process>>,
) -> Result<Injected, LinkError> {
    drm::install_node(spec, pids, consumer, provider, validate).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: u32, major: u64, minor: u64) -> DeviceNode {
        DeviceNode {
            major,
            minor,
            mode: kind | 0o660,
            uid: 0,
            gid: 105,
        }
    }

    #[test]
    fn only_input_char_devices_pass() {
        assert!(validate(&node(libc::S_IFCHR, 13, 64)).is_ok());
        assert!(validate(&node(libc::S_IFCHR, 226, 0))
            .unwrap_err()
            .contains("major is not input (13)"));
        // /dev/uinput is a misc device (10:223), not an input node.
        assert!(validate(&node(libc::S_IFCHR, 10, 223))
            .unwrap_err()
            .contains("not input"));
        assert!(validate(&node(libc::S_IFBLK, 13, 64))
            .unwrap_err()
            .contains("block device"));
        assert!(validate(&node(libc::S_IFREG, 0, 0))
            .unwrap_err()
            .contains("not a character"));
    }
}
