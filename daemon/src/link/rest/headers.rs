//! What a `rest` link does to every request head before it reaches the
//! provider, and to every response head before it reaches the consumer.
//!
//! Identity ([`Identity`]): values computed once per link; every
//! consumer-sent header whose name, compared case-insensitively with `_`
//! and `-` as equal, is `X-PV-Client` or `X-PV-Role` is removed (CGI, WSGI
//! and many frameworks read `X_PV_Role` as `X-PV-Role`), then ours are
//! inserted. Names with whitespace before the colon and folded lines never
//! get this far: the parser rejects such a head with 400.
//!
//! Hop-by-hop ([`sanitize_request`], [`sanitize_response`]): as RFC 9110
//! §7.6.1 asks of a proxy, `Connection` and every header it names are
//! removed, with `Proxy-Connection`, `Keep-Alive`, `TE`,
//! `Transfer-Encoding` (hyper re-frames bodies itself) and `Upgrade`. A
//! `Connection` naming an identity header can therefore never reach the
//! provider, and the identity we inserted stays. Upgrades are re-created
//! for the provider (`Connection: upgrade`) with every protocol but `h2c`:
//! cleartext HTTP/2 would carry headers this proxy never sees, so that
//! offer is dropped (RFC 9110 §7.8 lets a server ignore it) while
//! WebSocket and other upgrades go through.

use http::header::{self, HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};

/// The consumer container's name.
pub static CLIENT: HeaderName = HeaderName::from_static("x-pv-client");
/// The link's role (`any` unless the requirement names one).
pub static ROLE: HeaderName = HeaderName::from_static("x-pv-role");

/// Role used when the requirement names none (as Pantavisor does).
pub const DEFAULT_ROLE: &str = "any";

/// Why a link's identity cannot be expressed as header values.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("consumer name {0:?} is not a valid header value")]
    Client(String, #[source] InvalidHeaderValue),
    #[error("role {0:?} is not a valid header value")]
    Role(String, #[source] InvalidHeaderValue),
}

/// Precomputed identity header values of one link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    client: HeaderValue,
    role: HeaderValue,
}

impl Identity {
    pub fn new(consumer: &str, role: &str) -> Result<Self, IdentityError> {
        let role = match role.trim() {
            "" => DEFAULT_ROLE,
            r => r,
        };
        Ok(Self {
            client: HeaderValue::from_str(consumer)
                .map_err(|e| IdentityError::Client(consumer.to_string(), e))?,
            role: HeaderValue::from_str(role)
                .map_err(|e| IdentityError::Role(role.to_string(), e))?,
        })
    }

    /// Replace whatever identity the consumer claimed with the link's.
    pub fn apply(&self, headers: &mut HeaderMap) {
        Self::strip(headers);
        headers.insert(CLIENT.clone(), self.client.clone());
        headers.insert(ROLE.clone(), self.role.clone());
    }

    /// Remove every identity header in any spelling (also used on request
    /// trailers, which must not carry an identity either).
    pub fn strip(headers: &mut HeaderMap) {
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|n| is_identity(n.as_str()))
            .cloned()
            .collect();
        for n in spoofed {
            headers.remove(n);
        }
    }
}

/// Whether `name` reads as `X-PV-Client` or `X-PV-Role` to a framework
/// that folds case and treats `_` as `-`.
pub fn is_identity(name: &str) -> bool {
    let norm = |want: &str| {
        name.len() == want.len()
            && name
                .bytes()
                .zip(want.bytes())
                .all(|(a, b)| a.to_ascii_lowercase() == b || (a == b'_' && b == b'-'))
    };
    norm("x-pv-client") || norm("x-pv-role")
}

/// Headers that concern one connection only (RFC 9110 §7.6.1, plus the
/// widespread `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
];

/// What [`sanitize_request`] did about an upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Upgrade {
    /// The protocols offered to the provider, if any remain.
    pub offered: Option<HeaderValue>,
    /// The consumer offered `h2c`, which was dropped.
    pub h2c_refused: bool,
}

/// The tokens of every `Connection` header, lower-cased.
fn connection_tokens(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect()
}

/// Remove `Connection`, what it names and the other hop-by-hop headers.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        // Two framings at once is a smuggling vector; hyper decoded the
        // body by Transfer-Encoding, so Content-Length is the lie.
        headers.remove(header::CONTENT_LENGTH);
    }
    for token in connection_tokens(headers) {
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            headers.remove(name);
        }
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Make a consumer's request head fit for the provider: hop-by-hop
/// headers out, identity replaced, an upgrade re-offered without `h2c`.
pub fn sanitize_request(headers: &mut HeaderMap, identity: &Identity) -> Upgrade {
    let wants_upgrade = connection_tokens(headers).iter().any(|t| t == "upgrade");
    let mut upgrade = Upgrade::default();
    if wants_upgrade {
        let protocols: Vec<String> = headers
            .get_all(header::UPGRADE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        let (h2c, kept): (Vec<String>, Vec<String>) = protocols.into_iter().partition(|p| {
            p.split('/')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case("h2c"))
        });
        upgrade.h2c_refused = !h2c.is_empty();
        if !kept.is_empty() {
            upgrade.offered = HeaderValue::from_str(&kept.join(", ")).ok();
        }
    }
    strip_hop_by_hop(headers);
    if upgrade.h2c_refused {
        // Its settings only mean something with the h2c offer.
        headers.remove("http2-settings");
    }
    identity.apply(headers);
    if let Some(protocols) = &upgrade.offered {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocols.clone());
    }
    upgrade
}

/// Make a provider's response head fit for the consumer. A `101
/// Switching Protocols` keeps its `Connection` and `Upgrade`.
pub fn sanitize_response(headers: &mut HeaderMap, switching: bool) {
    if switching {
        return;
    }
    strip_hop_by_hop(headers);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(raw: &[u8]) -> HeaderMap {
        let mut storage = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut storage);
        assert!(req.parse(raw).expect("parse").is_complete());
        let mut map = HeaderMap::new();
        for h in req.headers.iter() {
            map.append(
                HeaderName::from_bytes(h.name.as_bytes()).expect("name"),
                HeaderValue::from_bytes(h.value).expect("value"),
            );
        }
        map
    }

    #[test]
    fn spoofed_spellings_are_replaced() {
        let id = Identity::new("app", "operator").expect("identity");
        let mut map = parsed(
            b"GET / HTTP/1.1\r\nx-pv-role: admin\r\nX-PV-ROLE:admin\r\nX-Pv-Role: \t admin \t\r\n\
              X-PV-Client: root\r\nx-pv-client:root\r\nHost: x\r\n\r\n",
        );
        id.apply(&mut map);
        let roles: Vec<_> = map.get_all(&ROLE).iter().collect();
        let clients: Vec<_> = map.get_all(&CLIENT).iter().collect();
        assert_eq!(roles, [HeaderValue::from_static("operator")]);
        assert_eq!(clients, [HeaderValue::from_static("app")]);
        assert_eq!(map.get("host").map(|v| v.as_bytes()), Some(&b"x"[..]));
    }

    #[test]
    fn whitespace_before_colon_is_a_parse_error() {
        let mut storage = [httparse::EMPTY_HEADER; 4];
        let mut req = httparse::Request::new(&mut storage);
        assert!(req
            .parse(b"GET / HTTP/1.1\r\nX-PV-Role : admin\r\n\r\n")
            .is_err());
    }

    #[test]
    fn empty_role_defaults_to_any() {
        let id = Identity::new("app", "").expect("identity");
        let mut headers = HeaderMap::new();
        id.apply(&mut headers);
        assert_eq!(headers[&ROLE], "any");
    }

    #[test]
    fn control_characters_are_refused() {
        assert!(matches!(
            Identity::new("a\r\nX-PV-Role: admin", "any"),
            Err(IdentityError::Client(..))
        ));
        assert!(matches!(
            Identity::new("app", "any\r\nX-PV-Client: root"),
            Err(IdentityError::Role(..))
        ));
    }

    #[test]
    fn every_identity_spelling_is_removed() {
        let id = Identity::new("app", "viewer").expect("identity");
        let mut map = parsed(
            b"GET / HTTP/1.1\r\nX_PV_Role: admin\r\nx-pv_role: admin\r\nX-PV_Client: root\r\n\
              x_pv_client: root\r\nX_Pv-RoLe: admin\r\nX-PV-Roles: kept\r\nHost: x\r\n\r\n",
        );
        sanitize_request(&mut map, &id);
        let names: Vec<&str> = map.keys().map(|n| n.as_str()).collect();
        assert_eq!(
            names.iter().filter(|n| is_identity(n)).count(),
            2,
            "{names:?}"
        );
        assert_eq!(map[&ROLE], "viewer");
        assert_eq!(map[&CLIENT], "app");
        assert_eq!(map["x-pv-roles"], "kept");
        assert!(!is_identity("x-pv-rol") && !is_identity("xx-pv-role"));
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_are_removed() {
        let id = Identity::new("app", "viewer").expect("identity");
        let mut map = parsed(
            b"GET / HTTP/1.1\r\nConnection: keep-alive, X-PV-Role, X-PV-Client, X-Secret\r\n\
              Keep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Connection: keep-alive\r\n\
              X-Secret: s\r\nX-Other: o\r\nTrailer: X-Sum\r\nHost: x\r\n\r\n",
        );
        let up = sanitize_request(&mut map, &id);
        assert_eq!(up, Upgrade::default());
        for gone in [
            "connection",
            "keep-alive",
            "te",
            "proxy-connection",
            "x-secret",
        ] {
            assert!(!map.contains_key(gone), "{gone} forwarded");
        }
        assert_eq!(map[&ROLE], "viewer");
        assert_eq!(map[&CLIENT], "app");
        assert_eq!(map["x-other"], "o");
        assert_eq!(map["trailer"], "X-Sum");
        // Transfer-Encoding wins over Content-Length, then both framings
        // are left to hyper.
        let mut map =
            parsed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n");
        sanitize_request(&mut map, &id);
        assert!(!map.contains_key("content-length") && !map.contains_key("transfer-encoding"));
    }

    #[test]
    fn h2c_is_refused_websocket_kept() {
        let id = Identity::new("app", "viewer").expect("identity");
        let mut map = parsed(
            b"GET / HTTP/1.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n\
              HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
        );
        let up = sanitize_request(&mut map, &id);
        assert!(up.h2c_refused && up.offered.is_none());
        for gone in ["connection", "upgrade", "http2-settings"] {
            assert!(!map.contains_key(gone), "{gone} forwarded");
        }
        let mut map = parsed(
            b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        );
        let up = sanitize_request(&mut map, &id);
        assert_eq!(
            up.offered.as_ref().map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(map["connection"], "upgrade");
        assert_eq!(map["upgrade"], "websocket");
        assert!(map.contains_key("sec-websocket-key"));
        // Both offered: only h2c goes. Without `Connection: upgrade`,
        // `Upgrade` means nothing and is dropped.
        let mut map =
            parsed(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: h2c, websocket\r\n\r\n");
        let up = sanitize_request(&mut map, &id);
        assert!(up.h2c_refused);
        assert_eq!(map["upgrade"], "websocket");
        let mut map = parsed(b"GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n");
        assert_eq!(sanitize_request(&mut map, &id), Upgrade::default());
        assert!(!map.contains_key("upgrade"));
    }

    #[test]
    fn responses_lose_hop_by_hop_headers_unless_switching() {
        let mut map = parsed(b"GET / HTTP/1.1\r\nConnection: close, X-Internal\r\nX-Internal: 1\r\nX-Kept: 2\r\n\r\n");
        let mut switching = map.clone();
        sanitize_response(&mut map, false);
        assert!(!map.contains_key("connection") && !map.contains_key("x-internal"));
        assert_eq!(map["x-kept"], "2");
        sanitize_response(&mut switching, true);
        assert!(switching.contains_key("connection"));
    }
}
