//! The Wayland wire format: framing and the few argument walks the proxy
//! needs. Pure functions over byte slices; nothing here allocates.
//!
//! A message is an 8-byte header (object id; `size << 16 | opcode`, native
//! endian) followed by 32-bit aligned arguments. Fds travel out of band
//! (SCM_RIGHTS), so how many a message consumes is only known from its
//! signature.

use wayland_backend::protocol::{ArgumentType, MessageDesc};

pub const HEADER_LEN: usize = 8;

/// Why a message was rejected; the connection that sent it is closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message size {0} invalid")]
    BadSize(usize),
    #[error("message to object 0")]
    NullObject,
    #[error("arguments overrun the message")]
    Truncated,
    #[error("string argument not NUL-terminated")]
    BadString,
    #[error("invalid new object id {0:#x}")]
    BadNewId(u32),
    #[error("message needs {need} fds, {have} received")]
    MissingFds { need: usize, have: usize },
    #[error("message to object {0} whose interface is unknown (filtering on)")]
    UnknownObject(u32),
    #[error("unknown opcode {opcode} on {interface}")]
    UnknownOpcode {
        interface: &'static str,
        opcode: u16,
    },
    #[error("too many fds queued without messages")]
    FdFlood,
}

/// A message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub object: u32,
    pub opcode: u16,
    /// Whole message length, header included.
    pub size: usize,
}

#[inline]
pub fn u32_at(buf: &[u8], off: usize) -> Option<u32> {
    let b = buf.get(off..off + 4)?;
    Some(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
}

/// Parse a header from the start of `buf`; `Ok(None)` when fewer than 8
/// bytes are buffered.
#[inline]
pub fn header(buf: &[u8]) -> Result<Option<Header>, WireError> {
    let (Some(object), Some(word)) = (u32_at(buf, 0), u32_at(buf, 4)) else {
        return Ok(None);
    };
    let size = (word >> 16) as usize;
    if size < HEADER_LEN || size % 4 != 0 {
        return Err(WireError::BadSize(size));
    }
    if object == 0 {
        return Err(WireError::NullObject);
    }
    Ok(Some(Header {
        object,
        opcode: (word & 0xffff) as u16,
        size,
    }))
}

/// A `new_id` argument found in a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewId<'a> {
    pub id: u32,
    /// Interface name for untyped new_ids (`wl_registry.bind` style); the
    /// typed ones take `MessageDesc::child_interface`.
    pub interface: Option<&'a [u8]>,
    pub version: u32,
}

/// What the proxy needs from one message's arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Args<'a> {
    pub fds: usize,
    pub new_id: Option<NewId<'a>>,
}

/// Length of a string/array argument at `off` (padded), validated.
#[inline]
fn blob(body: &[u8], off: usize) -> Result<(usize, &[u8]), WireError> {
    let len = u32_at(body, off).ok_or(WireError::Truncated)? as usize;
    let start = off + 4;
    let padded = len.checked_add(3).ok_or(WireError::Truncated)? & !3;
    let data = body.get(start..start + len).ok_or(WireError::Truncated)?;
    if start + padded > body.len() {
        return Err(WireError::Truncated);
    }
    Ok((4 + padded, data))
}

/// Walk `desc`'s signature over `body` (the message without header):
/// count fds, find the new_id, check every length stays inside the message.
pub fn walk<'a>(desc: &MessageDesc, body: &'a [u8]) -> Result<Args<'a>, WireError> {
    let mut off = 0usize;
    let mut args = Args::default();
    // Untyped new_id expands to (string interface, uint version, new_id).
    let mut last_str: Option<&'a [u8]> = None;
    let mut last_uint = 0u32;
    for arg in desc.signature {
        match arg {
            ArgumentType::Fd => args.fds += 1,
            ArgumentType::Int | ArgumentType::Fixed | ArgumentType::Object(_) => {
                u32_at(body, off).ok_or(WireError::Truncated)?;
                off += 4;
            }
            ArgumentType::Uint => {
                last_uint = u32_at(body, off).ok_or(WireError::Truncated)?;
                off += 4;
            }
            ArgumentType::NewId => {
                let id = u32_at(body, off).ok_or(WireError::Truncated)?;
                off += 4;
                let interface = if desc.child_interface.is_none() {
                    last_str
                } else {
                    None
                };
                args.new_id = Some(NewId {
                    id,
                    interface,
                    version: last_uint,
                });
            }
            ArgumentType::Str(null) => {
                let (adv, data) = blob(body, off)?;
                if data.is_empty() {
                    // Length 0 is the null string.
                    if matches!(null, wayland_backend::protocol::AllowNull::No) {
                        return Err(WireError::BadString);
                    }
                    last_str = None;
                } else {
                    let (nul, text) = data.split_last().ok_or(WireError::BadString)?;
                    if *nul != 0 || text.contains(&0) {
                        return Err(WireError::BadString);
                    }
                    last_str = Some(text);
                }
                off += adv;
            }
            ArgumentType::Array => {
                let (adv, _) = blob(body, off)?;
                off += adv;
            }
        }
    }
    if off != body.len() {
        return Err(WireError::Truncated);
    }
    Ok(args)
}

/// Encode `wl_display.error(object, code, message)` into `out`.
pub fn encode_display_error(out: &mut Vec<u8>, object: u32, code: u32, message: &str) {
    let slen = message.len() + 1;
    let padded = (slen + 3) & !3;
    let size = HEADER_LEN + 12 + padded;
    out.extend_from_slice(&1u32.to_ne_bytes());
    out.extend_from_slice(&((size as u32) << 16).to_ne_bytes());
    out.extend_from_slice(&object.to_ne_bytes());
    out.extend_from_slice(&code.to_ne_bytes());
    out.extend_from_slice(&(slen as u32).to_ne_bytes());
    out.extend_from_slice(message.as_bytes());
    out.resize(out.len() + padded - message.len(), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::wayland::protocol::WL_REGISTRY_INTERFACE;

    fn words(w: &[u32]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_ne_bytes()).collect()
    }

    #[test]
    fn header_rejects_bad_sizes() {
        assert_eq!(header(&words(&[3])), Ok(None));
        assert!(header(&words(&[3, 4 << 16])).is_err());
        assert!(header(&words(&[3, 10 << 16])).is_err());
        assert!(header(&words(&[0, 8 << 16])).is_err());
        let h = header(&words(&[3, (12 << 16) | 2])).unwrap().unwrap();
        assert_eq!((h.object, h.opcode, h.size), (3, 2, 12));
    }

    #[test]
    fn bind_yields_untyped_new_id() {
        // wl_registry.bind(name 7, "wl_shm", version 1, id 5)
        let mut body = words(&[7, 7]);
        body.extend_from_slice(b"wl_shm\0\0");
        body.extend_from_slice(&words(&[1, 5]));
        let args = walk(&WL_REGISTRY_INTERFACE.requests[0], &body).unwrap();
        let nid = args.new_id.unwrap();
        assert_eq!(
            (nid.id, nid.interface, nid.version),
            (5, Some(&b"wl_shm"[..]), 1)
        );
        // Lengths that overrun or strings without NUL are rejected.
        let mut bad = words(&[7, 200]);
        bad.extend_from_slice(b"wl_shm\0\0");
        assert!(walk(&WL_REGISTRY_INTERFACE.requests[0], &bad).is_err());
        let mut bad = words(&[7, 4]);
        bad.extend_from_slice(b"abcd");
        bad.extend_from_slice(&words(&[1, 5]));
        assert_eq!(
            walk(&WL_REGISTRY_INTERFACE.requests[0], &bad),
            Err(WireError::BadString)
        );
    }

    #[test]
    fn error_event_encodes() {
        let mut out = Vec::new();
        encode_display_error(&mut out, 2, 0, "nope");
        assert_eq!(out.len(), 8 + 12 + 8);
        let h = header(&out).unwrap().unwrap();
        assert_eq!((h.object, h.opcode, h.size), (1, 0, 28));
        let args = walk(
            &crate::link::wayland::protocol::WL_DISPLAY_INTERFACE.events[0],
            &out[8..],
        )
        .unwrap();
        assert_eq!(args.fds, 0);
    }

    proptest::proptest! {
        /// Arbitrary bodies against every known message never panic and
        /// never report more than the message could hold.
        #[test]
        fn walk_never_panics(body in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            for iface in crate::link::wayland::protocol::known().values() {
                for desc in iface.requests.iter().chain(iface.events.iter()) {
                    if let Ok(args) = walk(desc, &body) {
                        proptest::prop_assert!(args.fds <= desc.signature.len());
                    }
                }
            }
            let _ = header(&body);
        }
    }
}
