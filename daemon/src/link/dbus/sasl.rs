//! The SASL exchange that opens every D-Bus connection, as a pure
//! line-by-line rewriter.
//!
//! The proxy runs the exchange in lock step: for each client line it either
//! forwards a (rewritten) line to the bus and relays the bus's single reply,
//! or answers the client itself. Every client command but `BEGIN` gets
//! exactly one reply, so pipelining clients (sd-bus sends everything at
//! once) work unchanged.
//!
//! - `AUTH EXTERNAL <hex>` (libdbus, zbus): the claimed identity is replaced
//!   by the link role's uid, whatever the client claimed.
//! - `AUTH EXTERNAL` without initial response, then `DATA [<hex>]` (GDBus,
//!   sd-bus): every `DATA` is rewritten to carry the role's uid, so both
//!   styles end with the same identity.
//! - Any other mechanism, or a bare `AUTH`: answered `REJECTED EXTERNAL`
//!   by the proxy; never forwarded (no `ANONYMOUS` through the proxy).
//! - `NEGOTIATE_UNIX_FD`, `CANCEL`, `ERROR`: forwarded as is.
//! - `BEGIN`: forwarded; the connection switches to message mode.
//! - Unknown commands: `ERROR` from the proxy.
//!
//! Lines must be printable ASCII; the whole exchange is capped at
//! [`MAX_AUTH_BYTES`] (xdg-dbus-proxy uses the same 16 KiB).

/// Cap on the bytes a client may send before `BEGIN`.
pub const MAX_AUTH_BYTES: usize = 16 * 1024;

/// Why the exchange was abandoned (the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("missing leading NUL byte")]
    NoNul,
    #[error("line is not printable ASCII")]
    NotAscii,
    #[error("authentication exceeds {MAX_AUTH_BYTES} bytes")]
    TooLong,
    #[error("unexpected reply from the bus: {0:?}")]
    BadServerLine(String),
}

/// What to do with one client line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this line (CRLF included) to the bus and relay its reply.
    Forward(Vec<u8>),
    /// Answer the client with this line; the bus never sees the request.
    Reply(&'static [u8]),
    /// Send `BEGIN\r\n` to the bus; message mode follows.
    Begin,
}

/// Position just past the first `\r\n` in `buf`, if any.
pub fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|p| p + 2)
}

/// The hex encoding EXTERNAL uses: hex of the decimal uid's ASCII digits.
fn hex_uid(uid: u32) -> String {
    uid.to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Decide what to do with one client line (`line` without its CRLF).
pub fn client_step(line: &[u8], uid: u32) -> Result<Step, SaslError> {
    if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err(SaslError::NotAscii);
    }
    // Printable ASCII is valid UTF-8.
    let line = std::str::from_utf8(line).map_err(|_| SaslError::NotAscii)?;
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let cmd = words.next().unwrap_or("");
    let step = match cmd {
        "AUTH" => match words.next() {
            Some("EXTERNAL") => match words.next() {
                Some(_) => Step::Forward(format!("AUTH EXTERNAL {}\r\n", hex_uid(uid)).into()),
                None => Step::Forward(b"AUTH EXTERNAL\r\n".to_vec()),
            },
            _ => Step::Reply(b"REJECTED EXTERNAL\r\n"),
        },
        "DATA" => Step::Forward(format!("DATA {}\r\n", hex_uid(uid)).into()),
        "BEGIN" => Step::Begin,
        "NEGOTIATE_UNIX_FD" => Step::Forward(b"NEGOTIATE_UNIX_FD\r\n".to_vec()),
        "CANCEL" => Step::Forward(b"CANCEL\r\n".to_vec()),
        "ERROR" => Step::Forward(format!("{line}\r\n").into()),
        _ => Step::Reply(b"ERROR \"unknown command\"\r\n"),
    };
    Ok(step)
}

/// Check one bus reply (`line` without CRLF) and return what the client
/// gets. `REJECTED` is narrowed to the one mechanism the proxy offers.
pub fn server_line(line: &[u8]) -> Result<Vec<u8>, SaslError> {
    let bad = || SaslError::BadServerLine(String::from_utf8_lossy(line).into_owned());
    if !line.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return Err(bad());
    }
    let cmd = line.split(|&b| b == b' ').next().unwrap_or_default();
    match cmd {
        b"REJECTED" => Ok(b"REJECTED EXTERNAL\r\n".to_vec()),
        b"OK" | b"DATA" | b"ERROR" | b"AGREE_UNIX_FD" => {
            let mut v = line.to_vec();
            v.extend_from_slice(b"\r\n");
            Ok(v)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn external_claim_is_rewritten() {
        // uid 0 claimed ("30" = "0"), role uid 65534.
        assert_eq!(
            client_step(b"AUTH EXTERNAL 30", 65534).unwrap(),
            Step::Forward(b"AUTH EXTERNAL 3635353334\r\n".to_vec())
        );
        assert_eq!(
            client_step(b"AUTH EXTERNAL", 1001).unwrap(),
            Step::Forward(b"AUTH EXTERNAL\r\n".to_vec())
        );
        assert_eq!(
            client_step(b"DATA", 1001).unwrap(),
            Step::Forward(b"DATA 31303031\r\n".to_vec())
        );
        assert_eq!(
            client_step(b"DATA 30", 1001).unwrap(),
            Step::Forward(b"DATA 31303031\r\n".to_vec())
        );
    }

    #[test]
    fn other_mechanisms_are_refused_locally() {
        for l in [
            &b"AUTH"[..],
            b"AUTH ANONYMOUS 7a627573",
            b"AUTH DBUS_COOKIE_SHA1 30",
        ] {
            assert_eq!(
                client_step(l, 0).unwrap(),
                Step::Reply(b"REJECTED EXTERNAL\r\n")
            );
        }
        assert_eq!(client_step(b"BEGIN", 0).unwrap(), Step::Begin);
        assert_eq!(client_step(b"AUTH \x01", 0), Err(SaslError::NotAscii));
    }

    #[test]
    fn server_lines_are_checked() {
        assert_eq!(
            server_line(b"REJECTED EXTERNAL ANONYMOUS").unwrap(),
            b"REJECTED EXTERNAL\r\n"
        );
        assert_eq!(server_line(b"OK 1234").unwrap(), b"OK 1234\r\n");
        assert!(server_line(b"HELLO").is_err());
    }

    proptest! {
        /// Whatever the client writes, the bus only ever sees the role's
        /// uid in an EXTERNAL identity.
        #[test]
        fn no_line_smuggles_another_identity(line in proptest::collection::vec(any::<u8>(), 0..200), uid in any::<u32>()) {
            if let Ok(Step::Forward(out)) = client_step(&line, uid) {
                let s = String::from_utf8(out).unwrap();
                prop_assert!(s.ends_with("\r\n"));
                prop_assert_eq!(s.matches("\r\n").count(), 1);
                if s.starts_with("AUTH EXTERNAL ") || s.starts_with("DATA ") {
                    let hex = s.trim_end().rsplit(' ').next().unwrap();
                    prop_assert_eq!(hex, hex_uid(uid));
                } else {
                    prop_assert!(!s.starts_with("AUTH ") || s == "AUTH EXTERNAL\r\n");
                }
            }
        }

        #[test]
        fn hex_uid_decodes(uid in any::<u32>()) {
            let h = hex_uid(uid);
            let bytes: Vec<u8> = (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i+2], 16).unwrap()).collect();
            prop_assert_eq!(String::from_utf8(bytes).unwrap(), uid.to_string());
        }
    }
}
