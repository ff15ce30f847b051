//! A consumer's request head as the rest link sees it: parsed the way
//! hyper parses it (httparse into an `http::HeaderMap`), then sanitized.
//! Whatever the consumer wrote, the provider must get exactly one
//! `X-PV-Client` and one `X-PV-Role`, ours, no other spelling of them, no
//! hop-by-hop header except the `Connection: upgrade` the proxy writes,
//! and never an `h2c` upgrade.
#![no_main]

use http::header::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::rest::headers::{self, Identity, CLIENT, ROLE};

fuzz_target!(|data: &[u8]| {
    let mut storage = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut storage);
    let Ok(httparse::Status::Complete(_)) = req.parse(data) else {
        return;
    };
    let mut map = HeaderMap::new();
    for h in req.headers.iter() {
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return; // hyper answers 400
        };
        map.append(n, v);
    }
    let id = Identity::new("consumer", "role").expect("identity");
    let up = headers::sanitize_request(&mut map, &id);

    assert_eq!(
        map.get_all(&CLIENT).iter().collect::<Vec<_>>(),
        ["consumer"]
    );
    assert_eq!(map.get_all(&ROLE).iter().collect::<Vec<_>>(), ["role"]);
    let spoofed = map
        .keys()
        .filter(|n| headers::is_identity(n.as_str()))
        .count();
    assert_eq!(spoofed, 2);
    for hop in [
        "proxy-connection",
        "keep-alive",
        "te",
        "transfer-encoding",
        "http2-settings",
    ] {
        if hop == "http2-settings" && !up.h2c_refused {
            continue;
        }
        assert!(!map.contains_key(hop), "{hop} forwarded");
    }
    match &up.offered {
        Some(p) => {
            assert_eq!(
                map.get_all("connection").iter().collect::<Vec<_>>(),
                ["upgrade"]
            );
            assert_eq!(map.get("upgrade"), Some(p));
            let p = p.to_str().expect("ascii").to_ascii_lowercase();
            assert!(
                !p.split(',')
                    .any(|x| x.trim().split('/').next() == Some("h2c")),
                "{p}"
            );
        }
        None => assert!(!map.contains_key("connection") && !map.contains_key("upgrade")),
    }
    // Trailers get the same identity stripping.
    let mut trailers = map.clone();
    Identity::strip(&mut trailers);
    assert!(!trailers.keys().any(|n| headers::is_identity(n.as_str())));
});
