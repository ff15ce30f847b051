//! `GET /xconnect-graph`: one link per consumer requirement (required and
//! optional) per container exporting that name, keys in upstream's order.
//!
//! Semantics copied from Pantavisor's `pv_state_get_xconnect_graph_json`
//! (see PANTAVISOR.md §1): no running check, pids are `-1` before a
//! container's first start and stale after it stops, role defaults to
//! `any`, interface to the export's type, target is verbatim or `null`,
//! type comes from the export (`unknown` for anything not known). With the
//! hosted bus ([`crate::hostbus`]) a `system-bus` requirement links to
//! provider `_pv_` (pid 0) instead, with the bus's socket, interface
//! default `dbus` and the role's `uid`.

use serde::Serialize;

use crate::hostbus::HostBus;
use crate::state::{State, SYSTEM_BUS};

/// One link, serialised with upstream's key order.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub consumer: String,
    pub consumer_pid: i64,
    pub provider: String,
    pub provider_pid: i64,
    pub name: String,
    #[serde(rename = "type")]
    pub svc_type: String,
    pub role: String,
    pub interface: String,
    pub target: Option<String>,
    pub socket: Option<String>,
    /// Hosted-bus links only: the uid the consumer's role masquerades as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
}

/// Builds the graph; `pid_of(container)` gives the last init pid (-1 if
/// never started).
pub fn build(state: &State, pid_of: impl Fn(&str) -> i64, bus: Option<&HostBus>) -> Vec<Link> {
    let mut links = Vec::new();
    for consumer in &state.containers {
        for req in consumer.required.iter().chain(consumer.optional.iter()) {
            if let (Some(bus), SYSTEM_BUS) = (bus, req.name.as_str()) {
                links.push(Link {
                    consumer: consumer.name.clone(),
                    consumer_pid: pid_of(&consumer.name),
                    provider: "_pv_".into(),
                    provider_pid: 0,
                    name: req.name.clone(),
                    svc_type: "dbus".into(),
                    role: req.role.clone().unwrap_or_else(|| "any".to_owned()),
                    interface: req.interface.clone().unwrap_or_else(|| "dbus".to_owned()),
                    target: req.target.clone(),
                    socket: Some(bus.socket().to_string_lossy().into_owned()),
                    uid: Some(bus.link_uid(req.role.as_deref())),
                });
                continue;
            }
            for provider in &state.containers {
                for export in provider
                    .exports
                    .iter()
                    .filter(|e| e.name.as_ref() == Some(&req.name))
                {
                    let ty = export.type_str();
                    links.push(Link {
                        consumer: consumer.name.clone(),
                        consumer_pid: pid_of(&consumer.name),
                        provider: provider.name.clone(),
                        provider_pid: pid_of(&provider.name),
                        name: req.name.clone(),
                        svc_type: ty.to_owned(),
                        role: req.role.clone().unwrap_or_else(|| "any".to_owned()),
                        interface: req.interface.clone().unwrap_or_else(|| ty.to_owned()),
                        target: req.target.clone(),
                        socket: export.socket.clone(),
                        uid: None,
                    });
                }
            }
        }
    }
    links
}

/// The JSON body as pv-ctrl sends it.
pub fn to_json(links: &[Link]) -> String {
    serde_json::to_string(links).unwrap_or_else(|_| "[]".to_owned())
}
