//! The SASL exchange that opens every D-Bus connection, as two pure state
//! machines.
//!
//! The proxy finishes the consumer's exchange on its own ([`Server`])
//! before it opens any connection to the bus: a consumer that never
//! authenticates costs the bus nothing (no connection, none of the role's
//! per-uid quota) and is dropped after the link's authentication timeout.
//! Only after the consumer's `BEGIN` does the proxy connect, with the
//! role's uid as kernel credential, and replay the exchange to the bus
//! ([`Client`]): `AUTH EXTERNAL <role uid>`, `NEGOTIATE_UNIX_FD` if the
//! consumer negotiated fd passing, `BEGIN`, pipelined (dbus-daemon and
//! dbus-broker accept that, as sd-bus relies on it).
//!
//! Towards the consumer ([`Server`], the states of the specification's
//! server diagram):
//!
//! - `AUTH EXTERNAL [<hex>]`: accepted (`OK <guid>`, or `DATA` first when
//!   there is no initial response, as GDBus and sd-bus expect). Whatever
//!   identity the consumer claims is ignored: the bus only ever hears the
//!   role's uid.
//! - Any other mechanism, a bare `AUTH`, `CANCEL`, `ERROR`: `REJECTED
//!   EXTERNAL` (no `ANONYMOUS` through the proxy).
//! - `NEGOTIATE_UNIX_FD` after `OK`: `AGREE_UNIX_FD` (the bus connection is
//!   a Unix socket too; if the bus disagrees the connection is closed).
//! - `BEGIN` after `OK`: message mode; `BEGIN` before: the exchange fails.
//! - Unknown commands, or commands out of place: `ERROR`.
//!
//! Lines must be printable ASCII starting with an upper-case letter (as
//! xdg-dbus-proxy checks); the whole exchange is capped at
//! [`MAX_AUTH_BYTES`] (xdg-dbus-proxy and dbus-daemon use 16 KiB).

/// Cap on the bytes a client may send before `BEGIN`.
pub const MAX_AUTH_BYTES: usize = 16 * 1024;

/// Why the exchange was abandoned (the connection is closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("missing leading NUL byte")]
    NoNul,
    #[error("line is not printable ASCII starting with a command")]
    NotAscii,
    #[error("authentication exceeds {MAX_AUTH_BYTES} bytes")]
    TooLong,
    #[error("BEGIN before authentication succeeded")]
    EarlyBegin,
    #[error("unexpected reply from the bus: {0:?}")]
    BadServerLine(String),
    #[error("the bus rejected the role's uid: {0:?}")]
    Rejected(String),
    #[error("the bus refused fd passing: {0:?}")]
    NoUnixFd(String),
}

/// Position just past the first `\r\n` in `buf`, if any.
pub fn line_end(buf: &[u8]) -> Option<usize> {
    buf.windows(2).position(|w| w == b"\r\n").map(|p| p + 2)
}

/// The hex encoding EXTERNAL uses: hex of the decimal uid's ASCII digits.
pub fn hex_uid(uid: u32) -> String {
    uid.to_string()
        .bytes()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A line as xdg-dbus-proxy's `auth_line_is_valid` accepts it.
fn valid_line(line: &[u8]) -> Result<&str, SaslError> {
    let ok = line.first().is_some_and(u8::is_ascii_uppercase)
        && line.iter().all(|&b| (0x20..0x7f).contains(&b));
    if !ok {
        return Err(SaslError::NotAscii);
    }
    std::str::from_utf8(line).map_err(|_| SaslError::NotAscii)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The server states of the specification (WaitingForAuth, WaitingForData,
/// WaitingForBegin).
enum State {
    Auth,
    Data,
    Begin,
}

/// What to do after one consumer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Answer the consumer with this line (CRLF included).
    Reply(Vec<u8>),
    /// Authentication is complete: message mode follows.
    Begin,
}

/// The proxy's side of the consumer's exchange (the proxy is the server).
#[derive(Debug, Clone)]
pub struct Server {
    state: State,
    unix_fd: bool,
    guid: String,
}

impl Server {
    /// `guid`: the server GUID the proxy announces (32 hex digits).
    pub fn new(guid: &str) -> Self {
        Self {
            state: State::Auth,
            unix_fd: false,
            guid: guid.to_owned(),
        }
    }

    /// Whether the consumer negotiated fd passing.
    pub fn unix_fd(&self) -> bool {
        self.unix_fd
    }

    /// Decide what to do with one consumer line (without its CRLF).
    pub fn step(&mut self, line: &[u8]) -> Result<Step, SaslError> {
        let line = valid_line(line)?;
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let cmd = words.next().unwrap_or("");
        let ok = || Step::Reply(format!("OK {}\r\n", self.guid).into_bytes());
        let rejected = || Step::Reply(b"REJECTED EXTERNAL\r\n".to_vec());
        let error = |why: &str| Step::Reply(format!("ERROR \"{why}\"\r\n").into_bytes());
        let (next, step) = match (self.state, cmd) {
            (State::Auth, "AUTH") => match (words.next(), words.next()) {
                (Some("EXTERNAL"), Some(_)) => (State::Begin, ok()),
                (Some("EXTERNAL"), None) => (State::Data, Step::Reply(b"DATA\r\n".to_vec())),
                _ => (State::Auth, rejected()),
            },
            (State::Data, "DATA") => (State::Begin, ok()),
            (State::Begin, "BEGIN") => return Ok(Step::Begin),
            (_, "BEGIN") => return Err(SaslError::EarlyBegin),
            (State::Begin, "NEGOTIATE_UNIX_FD") => {
                self.unix_fd = true;
                (State::Begin, Step::Reply(b"AGREE_UNIX_FD\r\n".to_vec()))
            }
            (_, "CANCEL" | "ERROR") => (State::Auth, rejected()),
            (state, "AUTH" | "DATA" | "NEGOTIATE_UNIX_FD") => {
                (state, error("command out of place"))
            }
            (state, _) => (state, error("unknown command")),
        };
        self.state = next;
        Ok(step)
    }
}

/// The replay towards the bus (the proxy is the client): what to send and
/// how to judge the bus's replies.
#[derive(Debug, Clone)]
pub struct Client {
    unix_fd: bool,
    replies: usize,
}

impl Client {
    pub fn new(unix_fd: bool) -> Self {
        Self {
            unix_fd,
            replies: 0,
        }
    }

    /// Everything to send to the bus, the leading NUL included.
    pub fn request(&self, uid: u32) -> Vec<u8> {
        let mut out = format!("\0AUTH EXTERNAL {}\r\n", hex_uid(uid));
        if self.unix_fd {
            out.push_str("NEGOTIATE_UNIX_FD\r\n");
        }
        out.push_str("BEGIN\r\n");
        out.into_bytes()
    }

    /// Judge one reply line (without CRLF); `Ok(true)` once the last
    /// expected reply arrived.
    pub fn reply(&mut self, line: &[u8]) -> Result<bool, SaslError> {
        let text = String::from_utf8_lossy(line).into_owned();
        if valid_line(line).is_err() {
            return Err(SaslError::BadServerLine(text));
        }
        let cmd = text.split(' ').next().unwrap_or_default();
        match (self.replies, cmd) {
            (0, "OK") => {}
            (0, "REJECTED") => return Err(SaslError::Rejected(text)),
            (1, "AGREE_UNIX_FD") if self.unix_fd => {}
            (1, "ERROR") if self.unix_fd => return Err(SaslError::NoUnixFd(text)),
            _ => return Err(SaslError::BadServerLine(text)),
        }
        self.replies += 1;
        Ok(self.replies == 1 + usize::from(self.unix_fd))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GUID: &str = "0123456789abcdef0123456789abcdef";

    fn replies(lines: &[&[u8]]) -> Vec<Result<Step, SaslError>> {
        let mut s = Server::new(GUID);
        lines.iter().map(|l| s.step(l)).collect()
    }

    fn reply(s: &str) -> Result<Step, SaslError> {
        Ok(Step::Reply(s.as_bytes().to_vec()))
    }

    #[test]
    fn libdbus_and_zbus_style() {
        // libdbus claims its uid in the initial response ("30" = "0").
        let r = replies(&[b"AUTH EXTERNAL 30", b"NEGOTIATE_UNIX_FD", b"BEGIN"]);
        assert_eq!(r[0], reply(&format!("OK {GUID}\r\n")));
        assert_eq!(r[1], reply("AGREE_UNIX_FD\r\n"));
        assert_eq!(r[2], Ok(Step::Begin));
    }

    #[test]
    fn gdbus_and_sd_bus_style() {
        let mut s = Server::new(GUID);
        assert_eq!(s.step(b"AUTH EXTERNAL"), reply("DATA\r\n"));
        assert_eq!(s.step(b"DATA"), reply(&format!("OK {GUID}\r\n")));
        assert!(!s.unix_fd());
        assert_eq!(s.step(b"NEGOTIATE_UNIX_FD"), reply("AGREE_UNIX_FD\r\n"));
        assert!(s.unix_fd());
        assert_eq!(s.step(b"BEGIN"), Ok(Step::Begin));
    }

    #[test]
    fn other_mechanisms_and_misplaced_commands() {
        for l in [
            &b"AUTH"[..],
            b"AUTH ANONYMOUS 7a627573",
            b"AUTH DBUS_COOKIE_SHA1 30",
        ] {
            assert_eq!(replies(&[l])[0], reply("REJECTED EXTERNAL\r\n"));
        }
        assert_eq!(replies(&[b"BEGIN"])[0], Err(SaslError::EarlyBegin));
        assert_eq!(
            replies(&[b"AUTH EXTERNAL", b"BEGIN"])[1],
            Err(SaslError::EarlyBegin)
        );
        assert_eq!(
            replies(&[b"NEGOTIATE_UNIX_FD"])[0],
            reply("ERROR \"command out of place\"\r\n")
        );
        assert_eq!(
            replies(&[b"HELLO"])[0],
            reply("ERROR \"unknown command\"\r\n")
        );
        // CANCEL goes back to the start.
        let r = replies(&[b"AUTH EXTERNAL 30", b"CANCEL", b"BEGIN"]);
        assert_eq!(r[1], reply("REJECTED EXTERNAL\r\n"));
        assert_eq!(r[2], Err(SaslError::EarlyBegin));
        for bad in [&b"AUTH \x01"[..], b"auth EXTERNAL", b" AUTH", b""] {
            assert_eq!(replies(&[bad])[0], Err(SaslError::NotAscii));
        }
    }

    #[test]
    fn the_bus_hears_the_role() {
        let c = Client::new(true);
        assert_eq!(
            c.request(65534),
            b"\0AUTH EXTERNAL 3635353334\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n"
        );
        assert_eq!(
            Client::new(false).request(0),
            b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n"
        );
    }

    #[test]
    fn bus_replies_are_checked() {
        let mut c = Client::new(true);
        assert_eq!(c.reply(b"OK 1234"), Ok(false));
        assert_eq!(c.reply(b"AGREE_UNIX_FD"), Ok(true));
        let mut c = Client::new(false);
        assert_eq!(c.reply(b"OK 1234"), Ok(true));
        assert!(matches!(
            Client::new(false).reply(b"REJECTED EXTERNAL"),
            Err(SaslError::Rejected(_))
        ));
        let mut c = Client::new(true);
        c.reply(b"OK 1").unwrap();
        assert!(matches!(
            c.reply(b"ERROR nope"),
            Err(SaslError::NoUnixFd(_))
        ));
        assert!(Client::new(false).reply(b"DATA").is_err());
    }

    proptest! {
        /// Whatever the consumer writes, the proxy answers with one
        /// well-formed line or ends the exchange; it never echoes input.
        #[test]
        fn every_line_gets_one_clean_answer(lines in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8)) {
            let mut s = Server::new(GUID);
            for l in &lines {
                match s.step(l) {
                    Ok(Step::Reply(r)) => {
                        let t = String::from_utf8(r).unwrap();
                        prop_assert!(t.ends_with("\r\n") && t.matches("\r\n").count() == 1);
                        prop_assert!(["OK ", "DATA", "REJECTED", "AGREE", "ERROR"].iter().any(|p| t.starts_with(p)));
                    }
                    Ok(Step::Begin) | Err(_) => break,
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
