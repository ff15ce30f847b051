//! Helpers for tests, benchmarks and fuzz targets (feature `test-util`): a
//! builder for hand-made [`LinkSpec`]s, and D-Bus messages ([`dbus`]) for
//! the policy's tests and its fuzz target.
//!
//! Links built here start from harmless defaults: a consumer and a provider
//! named `test-consumer` and `test-provider`, both with pid 0 (the host),
//! which is what tests that drive [`crate::link::serve`] on host paths
//! want; tests that go through namespaces set real pids.

use std::path::PathBuf;
use std::sync::Arc;

use crate::graph::{LinkSpec, ServiceType};

/// Builds a [`LinkSpec`]: `LinkSpecBuilder::new(ServiceType::Rest)
/// .socket(&provider_path).target(&consumer_path).role("operator").arc()`.
#[derive(Debug, Clone)]
pub struct LinkSpecBuilder(LinkSpec);

impl LinkSpecBuilder {
    /// Defaults: name `test`, role `any`, interface the type's name,
    /// target `/run/pv/services/test.sock`, socket `/run/test.sock`.
    pub fn new(kind: ServiceType) -> Self {
        Self(LinkSpec {
            consumer: "test-consumer".into(),
            consumer_pid: 0,
            provider: "test-provider".into(),
            provider_pid: 0,
            name: "test".into(),
            interface: kind.as_str().to_string(),
            kind,
            role: "any".into(),
            target: PathBuf::from("/run/pv/services/test.sock"),
            socket: PathBuf::from("/run/test.sock"),
            uid: None,
        })
    }

    pub fn consumer(mut self, name: &str, pid: i32) -> Self {
        self.0.consumer = name.into();
        self.0.consumer_pid = pid;
        self
    }

    pub fn provider(mut self, name: &str, pid: i32) -> Self {
        self.0.provider = name.into();
        self.0.provider_pid = pid;
        self
    }

    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.into();
        self
    }

    pub fn role(mut self, role: &str) -> Self {
        self.0.role = role.into();
        self
    }

    pub fn interface(mut self, interface: &str) -> Self {
        self.0.interface = interface.into();
        self
    }

    /// Where the consumer gets the link.
    pub fn target(mut self, target: impl Into<PathBuf>) -> Self {
        self.0.target = target.into();
        self
    }

    /// The provider's socket (or device), inside its root.
    pub fn socket(mut self, socket: impl Into<PathBuf>) -> Self {
        self.0.socket = socket.into();
        self
    }

    pub fn uid(mut self, uid: Option<u32>) -> Self {
        self.0.uid = uid;
        self
    }

    pub fn build(self) -> LinkSpec {
        self.0
    }

    pub fn arc(self) -> Arc<LinkSpec> {
        Arc::new(self.0)
    }
}

/// D-Bus messages as the policy sees them: a parsed [`Header`] and a body.
///
/// [`Header`]: crate::link::dbus::wire::Header
pub mod dbus {
    use crate::link::dbus::wire::{self, Header, MessageType};

    /// A message header built field by field, as a peer could send it:
    /// path `/`, interface `org.x.Y`, member `M`, no body (serial 0 is
    /// invalid on the wire and becomes 1).
    pub fn header(kind: MessageType, sender: &str, dest: Option<&str>, serial: u32) -> Header {
        Header {
            big_endian: false,
            kind,
            flags: 0,
            serial: serial.max(1),
            body_offset: 0,
            body_len: 0,
            path: Some("/".into()),
            interface: Some("org.x.Y".into()),
            member: Some("M".into()),
            error_name: (kind == MessageType::Error).then(|| "org.x.Error".into()),
            reply_serial: None,
            destination: dest.map(Into::into),
            sender: Some(sender.into()),
            signature: None,
            unix_fds: 0,
        }
    }

    /// A whole message (one the proxy or [`wire`] built) as its parsed
    /// header and its body.
    pub fn split(msg: &[u8]) -> (Header, Vec<u8>) {
        let h = wire::parse(msg).expect("a well-formed message");
        let body = msg[h.body_offset..].to_vec();
        (h, body)
    }
}
