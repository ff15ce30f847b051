//! The Wayland relay's view of both streams: header framing, the object
//! table and the argument walk, as `link::wayland` applies them.
//!
//! Input: a sequence of messages, each prefixed by one byte whose low bit
//! says the direction (0: client request, 1: server event), as a relay
//! sees them interleaved. Objects created by `new_id` arguments, destroyed
//! by destructors and freed by `wl_display.delete_id` are tracked, so the
//! fuzzer can reach deep into the protocol (registry binds, surfaces...).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::wayland::protocol::{self, Objects};
use pv_xconnect::link::wayland::wire::{self, HEADER_LEN};

fuzz_target!(|data: &[u8]| {
    let mut objects = Objects::default();
    let strict = data.first().is_some_and(|b| b & 2 != 0);
    let mut rest = data.get(1..).unwrap_or_default();
    while let Some((&dir, tail)) = rest.split_first() {
        let event = dir & 1 == 1;
        let h = match wire::header(tail) {
            Ok(Some(h)) => h,
            _ => return,
        };
        let Some(msg) = tail.get(..h.size) else {
            return;
        };
        rest = &tail[h.size..];
        assert!(h.size >= HEADER_LEN && h.size % 4 == 0);
        let Some(iface) = objects.get(h.object) else {
            continue;
        };
        let descs = if event { iface.events } else { iface.requests };
        let Some(desc) = descs.get(h.opcode as usize) else {
            continue;
        };
        let body = &msg[HEADER_LEN..];
        let Ok(args) = wire::walk(desc, body) else {
            continue;
        };
        if let Some(nid) = args.new_id {
            let created = match (desc.child_interface, nid.interface) {
                (Some(child), _) => Some(child),
                (None, Some(name)) => protocol::lookup(name),
                (None, None) => None,
            };
            let _ = objects.create(nid.id, created, strict);
        }
        if event && protocol::same(iface, &protocol::WL_DISPLAY_INTERFACE) && h.opcode == 1 {
            if let Some(id) = wire::u32_at(body, 0) {
                objects.delete(id);
            }
        }
        if desc.is_destructor {
            objects.destroyed(h.object);
        }
    }
});
