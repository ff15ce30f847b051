//! What the proxy knows about Wayland interfaces, and which object id is
//! which interface on one connection.
//!
//! The interface tables are the ones wayland-scanner generates for
//! wayland-client and wayland-protocols (core protocol plus the stable
//! extensions: xdg-shell, linux-dmabuf, viewporter, presentation-time,
//! tablet). Every interface reachable from a global through `new_id` or
//! object arguments is collected once into a name index.

use std::collections::HashMap;
use std::sync::OnceLock;

use wayland_backend::protocol::Interface;

use super::wire::WireError;

/// Ids the server allocates start here (wayland's `WL_SERVER_ID_START`).
pub const SERVER_ID_BASE: u32 = 0xff00_0000;

/// Upper bound of tracked objects per side and connection: ~8 MiB of table
/// at worst. libwayland clients allocate ids densely, so real clients stay
/// far below it.
const MAX_OBJECTS: usize = 1 << 20;

/// Gap tolerated between the highest known id and a new one when unknown
/// extensions may have created objects we could not see.
const UNKNOWN_GAP: usize = 4096;

pub use wayland_client::protocol::__interfaces::{
    WL_CALLBACK_INTERFACE, WL_DISPLAY_INTERFACE, WL_REGISTRY_INTERFACE,
};

/// Interfaces a global can be bound as; everything else is reached from these.
fn roots() -> Vec<&'static Interface> {
    use wayland_client::protocol::__interfaces as core;
    use wayland_protocols::wp::linux_dmabuf::zv1::client::__interfaces as dmabuf;
    use wayland_protocols::wp::presentation_time::client::__interfaces as presentation;
    use wayland_protocols::wp::tablet::zv2::client::__interfaces as tablet;
    use wayland_protocols::wp::viewporter::client::__interfaces as viewporter;
    use wayland_protocols::xdg::shell::client::__interfaces as xdg;
    vec![
        &core::WL_DISPLAY_INTERFACE,
        &core::WL_COMPOSITOR_INTERFACE,
        &core::WL_SUBCOMPOSITOR_INTERFACE,
        &core::WL_SHM_INTERFACE,
        &core::WL_SEAT_INTERFACE,
        &core::WL_OUTPUT_INTERFACE,
        &core::WL_DATA_DEVICE_MANAGER_INTERFACE,
        &core::WL_SHELL_INTERFACE,
        &xdg::XDG_WM_BASE_INTERFACE,
        &dmabuf::ZWP_LINUX_DMABUF_V1_INTERFACE,
        &viewporter::WP_VIEWPORTER_INTERFACE,
        &presentation::WP_PRESENTATION_INTERFACE,
        &tablet::ZWP_TABLET_MANAGER_V2_INTERFACE,
    ]
}

/// Name → interface for every interface the proxy understands.
pub fn known() -> &'static HashMap<&'static str, &'static Interface> {
    static TABLE: OnceLock<HashMap<&'static str, &'static Interface>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut map = HashMap::new();
        let mut todo = roots();
        while let Some(iface) = todo.pop() {
            if map.insert(iface.name, iface).is_some() {
                continue;
            }
            for msg in iface.requests.iter().chain(iface.events.iter()) {
                todo.extend(msg.child_interface);
                todo.extend(msg.arg_interfaces.iter().copied());
            }
        }
        map
    })
}

/// Look an interface up by its wire name.
pub fn lookup(name: &[u8]) -> Option<&'static Interface> {
    std::str::from_utf8(name)
        .ok()
        .and_then(|n| known().get(n).copied())
}

/// Same interface? The tables are statics, so identity is the address.
pub fn same(a: &'static Interface, b: &'static Interface) -> bool {
    std::ptr::eq(a, b)
}

/// Object id → interface for one connection. `None` marks an id that is
/// free or whose interface the proxy does not know.
#[derive(Debug)]
pub struct Objects {
    client: Vec<Option<&'static Interface>>,
    server: Vec<Option<&'static Interface>>,
}

impl Default for Objects {
    fn default() -> Self {
        // Id 0 is the null object; id 1 is always the display.
        Self {
            client: vec![None, Some(&WL_DISPLAY_INTERFACE)],
            server: Vec::new(),
        }
    }
}

impl Objects {
    pub fn get(&self, id: u32) -> Option<&'static Interface> {
        let (table, idx) = self.side(id);
        table.get(idx).copied().flatten()
    }

    fn side(&self, id: u32) -> (&Vec<Option<&'static Interface>>, usize) {
        if id >= SERVER_ID_BASE {
            (&self.server, (id - SERVER_ID_BASE) as usize)
        } else {
            (&self.client, id as usize)
        }
    }

    /// Record a freshly created object. `strict` (filtering on) demands the
    /// dense allocation libwayland performs; otherwise unknown extensions may
    /// have created ids in between, so a small gap is tolerated.
    pub fn create(
        &mut self,
        id: u32,
        iface: Option<&'static Interface>,
        strict: bool,
    ) -> Result<(), WireError> {
        if id == 0 || id == 1 {
            return Err(WireError::BadNewId(id));
        }
        let (table, idx) = if id >= SERVER_ID_BASE {
            (&mut self.server, (id - SERVER_ID_BASE) as usize)
        } else {
            (&mut self.client, id as usize)
        };
        let gap = if strict { 0 } else { UNKNOWN_GAP };
        if idx >= MAX_OBJECTS || idx > table.len() + gap {
            return Err(WireError::BadNewId(id));
        }
        if idx >= table.len() {
            table.resize(idx + 1, None);
        }
        table[idx] = iface;
        Ok(())
    }

    /// A destructor went through. Server-allocated ids are free at once
    /// (no delete_id follows) and may be reused for another interface;
    /// client ids stay until the server's delete_id.
    pub fn destroyed(&mut self, id: u32) {
        if id >= SERVER_ID_BASE {
            if let Some(slot) = self.server.get_mut((id - SERVER_ID_BASE) as usize) {
                *slot = None;
            }
        }
    }

    /// The server confirmed the client may reuse `id` (wl_display.delete_id).
    pub fn delete(&mut self, id: u32) {
        if id > 1 && id < SERVER_ID_BASE {
            if let Some(slot) = self.client.get_mut(id as usize) {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_reaches_children_of_globals() {
        for name in [
            "wl_display",
            "wl_registry",
            "wl_callback",
            "wl_shm_pool",
            "wl_buffer",
            "wl_keyboard",
            "xdg_toplevel",
            "zwp_linux_buffer_params_v1",
            "wp_viewport",
            "wp_presentation_feedback",
        ] {
            assert!(known().contains_key(name), "{name} missing");
        }
        assert!(lookup(b"weston_capture_v1").is_none());
    }

    #[test]
    fn ids_are_bounded_and_dense_when_strict() {
        let mut o = Objects::default();
        assert!(o.create(2, Some(&WL_REGISTRY_INTERFACE), true).is_ok());
        assert!(o.create(4, None, true).is_err());
        assert!(o.create(1000, None, false).is_ok());
        assert!(o.create(1_000_000, None, false).is_err());
        assert!(o.create(SERVER_ID_BASE, None, true).is_ok());
        assert!(same(o.get(2).unwrap(), &WL_REGISTRY_INTERFACE));
        o.delete(2);
        assert!(o.get(2).is_none());
        o.destroyed(SERVER_ID_BASE);
        assert!(o.get(SERVER_ID_BASE).is_none());
    }
}
