//! The identity headers a `rest` link stamps on every request.
//!
//! Values are computed once per link ([`Identity::new`]); [`Identity::apply`]
//! then removes every consumer-sent `X-PV-Client` / `X-PV-Role` (header names
//! are case-insensitive in [`HeaderMap`], and `remove` drops all repeats)
//! before inserting ours, so a consumer can never choose its identity.
//! Names with whitespace before the colon never get this far: the parser
//! rejects such a head with 400.

use http::header::{HeaderMap, HeaderName, HeaderValue, InvalidHeaderValue};

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

    /// Remove every identity header (used on request trailers, which must
    /// not carry an identity either).
    pub fn strip(headers: &mut HeaderMap) {
        headers.remove(&CLIENT);
        headers.remove(&ROLE);
    }
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
}
