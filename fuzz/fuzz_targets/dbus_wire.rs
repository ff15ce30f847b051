//! D-Bus framing as the proxy applies it to both streams: the prologue
//! check, header parsing from the header alone, the body argument readers,
//! and the messages the proxy writes (which must parse back).
#![no_main]

use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::dbus::wire::{self, MessageType, MAX_MESSAGE, PROLOGUE};

fuzz_target!(|data: &[u8]| {
    if let Ok(Some(f)) = wire::frame(data) {
        assert!(f.header_len >= PROLOGUE && f.header_len % 8 == 0);
        assert!(f.header_len <= wire::MAX_HEADER && f.total() <= MAX_MESSAGE);
        assert_eq!(wire::check(data), Ok(Some(f.total())));
        if data.len() >= f.header_len {
            if let Ok(h) = wire::parse_header(&data[..f.header_len]) {
                assert_eq!((h.body_offset, h.body_len), (f.header_len, f.body_len));
                assert!(h.serial != 0 && h.reply_serial != Some(0));
                if h.kind == MessageType::MethodCall {
                    assert!(h.path.is_some() && h.member.is_some());
                }
                let body = &data[f.header_len..data.len().min(f.total())];
                let _ = wire::first_string_arg(body, &h);
                let _ = wire::string_args(body, &h);
                let _ = wire::string_array_arg(body, &h);
                if data.len() >= f.total() {
                    assert_eq!(wire::parse(&data[..f.total()]).as_ref(), Ok(&h));
                }
            }
        }
    }

    // What the proxy writes, from arbitrary strings, parses back.
    let text = String::from_utf8_lossy(data).replace('\0', "");
    let mut parts = text.split('|');
    let (a, b, c) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let serial = data.len() as u32 + 1;
    let m = wire::method_call(
        serial,
        0,
        "org.freedesktop.DBus",
        "/",
        "org.freedesktop.DBus",
        "GetNameOwner",
        &[a, b],
    );
    let h = wire::parse(&m).expect("own call parses");
    assert_eq!(
        wire::string_args(&m[h.body_offset..], &h),
        Some(vec![a.to_owned(), b.to_owned()])
    );
    let m = wire::error_reply(serial, serial, Some(c), "org.x.Error", a);
    let h = wire::parse(&m).expect("own error parses");
    assert_eq!(
        wire::first_string_arg(&m[h.body_offset..], &h).as_deref(),
        Some(a)
    );
    let names: Vec<&str> = text.split('|').collect();
    let body = wire::string_array_body(&names);
    let m = wire::method_return(serial, serial, None, "as", &body);
    let h = wire::parse(&m).expect("own return parses");
    assert_eq!(
        wire::string_array_arg(&m[h.body_offset..], &h),
        Some(names.iter().map(|s| s.to_string()).collect())
    );
});
