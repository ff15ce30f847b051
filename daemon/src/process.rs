//! The processes a link is made for, checked in one place.
//!
//! Pantavisor names each end of a link by its container's init pid: -1
//! before the container first started, 0 for the host side (only the
//! hosted system bus, as a provider), > 0 for a running container.
//! [`LinkPids::of`] turns the two raw pids of a [`LinkSpec`] into checked
//! types, or says why the link must wait ([`PidError`], shown as the
//! link's `pending` reason). Everything past that point ([`crate::ns`],
//! [`crate::link`]) takes the checked types, so no code path can be handed
//! the host as a consumer or a container that has not started.

use std::fmt;

use crate::graph::LinkSpec;

/// A container's init process as the graph names it: a pid > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(i32);

impl Pid {
    /// `None` unless `raw` > 0.
    pub fn new(raw: i32) -> Option<Pid> {
        (raw > 0).then_some(Pid(raw))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a provider's socket or device lives: the host's own root (pid 0),
/// or a container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderPid {
    Host,
    Container(Pid),
}

impl ProviderPid {
    /// Check a provider pid from the graph.
    pub fn new(raw: i32) -> Result<ProviderPid, PidError> {
        match raw {
            0 => Ok(ProviderPid::Host),
            -1 => Err(PidError::ProviderNotStarted),
            p => Pid::new(p)
                .map(ProviderPid::Container)
                .ok_or(PidError::ProviderInvalid(p)),
        }
    }

    /// The pid as the graph has it (0 for the host).
    pub fn raw(self) -> i32 {
        match self {
            ProviderPid::Host => 0,
            ProviderPid::Container(p) => p.get(),
        }
    }
}

impl fmt::Display for ProviderPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw().fmt(f)
    }
}

/// Why a link cannot start with the pids the graph gave (its `pending`
/// reason in `pv-xconnect status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    #[error("consumer not started (pid -1)")]
    ConsumerNotStarted,
    #[error("consumer pid 0 (host side) is not supported")]
    ConsumerIsHost,
    #[error("consumer pid {0} is invalid")]
    ConsumerInvalid(i32),
    #[error("provider not started (pid -1)")]
    ProviderNotStarted,
    #[error("provider pid {0} is invalid")]
    ProviderInvalid(i32),
}

/// Check a consumer pid from the graph: nothing is ever created on the
/// host side, so 0 is refused like -1.
pub fn consumer_pid(raw: i32) -> Result<Pid, PidError> {
    match raw {
        -1 => Err(PidError::ConsumerNotStarted),
        0 => Err(PidError::ConsumerIsHost),
        p => Pid::new(p).ok_or(PidError::ConsumerInvalid(p)),
    }
}

/// Both ends of a link, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPids {
    pub consumer: Pid,
    pub provider: ProviderPid,
}

impl LinkPids {
    /// The one pid check: a link may start only when this succeeds.
    pub fn of(spec: &LinkSpec) -> Result<LinkPids, PidError> {
        Ok(LinkPids {
            consumer: consumer_pid(spec.consumer_pid)?,
            provider: ProviderPid::new(spec.provider_pid)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_must_be_running_containers() {
        assert_eq!(consumer_pid(1234).map(Pid::get), Ok(1234));
        assert_eq!(consumer_pid(-1), Err(PidError::ConsumerNotStarted));
        assert_eq!(consumer_pid(0), Err(PidError::ConsumerIsHost));
        assert_eq!(consumer_pid(-7), Err(PidError::ConsumerInvalid(-7)));
        assert_eq!(Pid::new(0), None);
        assert_eq!(Pid::new(-1), None);
    }

    #[test]
    fn providers_may_be_the_host() {
        assert_eq!(ProviderPid::new(0), Ok(ProviderPid::Host));
        assert_eq!(ProviderPid::new(42).map(ProviderPid::raw), Ok(42));
        assert_eq!(ProviderPid::new(-1), Err(PidError::ProviderNotStarted));
        assert_eq!(ProviderPid::new(-3), Err(PidError::ProviderInvalid(-3)));
    }

    #[test]
    fn the_reasons_read_as_status_shows_them() {
        assert_eq!(
            PidError::ConsumerNotStarted.to_string(),
            "consumer not started (pid -1)"
        );
        assert_eq!(
            PidError::ConsumerIsHost.to_string(),
            "consumer pid 0 (host side) is not supported"
        );
        assert_eq!(
            PidError::ProviderNotStarted.to_string(),
            "provider not started (pid -1)"
        );
    }
}
