//! The xconnect graph as Pantavisor publishes it (`GET /xconnect-graph`).
//!
//! The wire model ([`RawLink`]) accepts everything real Pantavisor emits
//! (null `target`/`socket`, pids -1/0/>0, unknown types, extra fields);
//! [`resolve`] turns it into [`LinkSpec`]s the reconciler acts on.
//!
//! Defaults when `target` is null: `/run/pv/services/<name>.sock` for socket
//! types, the provider's device path (`socket`) for `drm`.

use std::path::PathBuf;

/// The mediation a link needs, from the EXPORT's `type` string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ServiceType {
    Unix,
    Rest,
    Dbus,
    Drm,
    Wayland,
    /// Parsed but not mediated (upstream has no plugin either).
    Input,
    /// Anything else; logged once and skipped.
    Unknown(String),
}

/// Pid as Pantavisor reports it: -1 not started yet, 0 host side, >0 init pid.
pub type Pid = i32;

/// One resolved link, ready for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSpec {
    pub consumer: String,
    pub consumer_pid: Pid,
    pub provider: String,
    pub provider_pid: Pid,
    pub name: String,
    pub kind: ServiceType,
    /// Requirement role, `"any"` by default.
    pub role: String,
    /// Requirement interface; defaults to the export's type string.
    pub interface: String,
    /// Path inside the consumer (defaults applied, see module docs).
    pub target: PathBuf,
    /// Provider's socket or device path, inside the provider's root.
    pub socket: PathBuf,
    /// Hosted-bus links only: the uid Pantavisor allocated for the role.
    pub uid: Option<u32>,
}

/// Identity of a link across graph generations.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkKey {
    pub consumer: String,
    pub name: String,
    pub target: PathBuf,
}

impl LinkSpec {
    pub fn key(&self) -> LinkKey {
        LinkKey {
            consumer: self.consumer.clone(),
            name: self.name.clone(),
            target: self.target.clone(),
        }
    }
}
