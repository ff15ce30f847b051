//! Both halves of the SASL exchange: the proxy as server facing the
//! consumer (every input line), and as client facing the bus (every reply
//! line). Input: lines separated by CRLF; a first byte with its low bit
//! set sends them to the client half instead.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::dbus::sasl::{Client, SaslError, Server, Step};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let lines = rest
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    if mode & 1 == 0 {
        let mut s = Server::new("0123456789abcdef0123456789abcdef");
        let mut ok_seen = false;
        for line in lines {
            match s.step(line) {
                Ok(Step::Reply(r)) => {
                    let t = std::str::from_utf8(&r).expect("ascii reply");
                    assert!(
                        t.ends_with("\r\n") && t.matches("\r\n").count() == 1,
                        "{t:?}"
                    );
                    assert!(!t.bytes().any(|b| b < 0x20 && b != b'\r' && b != b'\n'));
                    ok_seen |= t.starts_with("OK ");
                }
                // BEGIN ends the exchange, and only after OK.
                Ok(Step::Begin) => {
                    assert!(ok_seen);
                    break;
                }
                Err(SaslError::EarlyBegin) => {
                    assert!(line.starts_with(b"BEGIN"));
                    break;
                }
                Err(_) => break,
            }
        }
    } else {
        let mut c = Client::new(mode & 2 != 0);
        let req = c.request(u32::from_le_bytes([mode, 0, 0, 0]));
        assert!(req.starts_with(b"\0AUTH EXTERNAL ") && req.ends_with(b"BEGIN\r\n"));
        for line in lines {
            match c.reply(line) {
                Ok(true) | Err(_) => break,
                Ok(false) => {}
            }
        }
    }
});
