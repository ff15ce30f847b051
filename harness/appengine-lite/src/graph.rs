//! `GET /xconnect-graph`: one link per consumer requirement (required and
//! optional) per container exporting that name, keys in upstream's order.
//!
//! Semantics copied from Pantavisor's `pv_state_get_xconnect_graph_json`
//! (see PANTAVISOR.md §1): no running check, pids are `-1` before a
//! container's first start and stale after it stops, role defaults to
//! `any`, interface to the export's type, target is verbatim or `null`,
//! type comes from the export (`unknown` for anything not known).
//! Hosted-bus links (provider `_pv_`, `uid`) are not produced: appengine-lite
//! hosts no system bus.

use serde::Serialize;

use crate::state::State;

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
}

/// Builds the graph; `pid_of(container)` gives the last init pid (-1 if
/// never started).
pub fn build(state: &State, pid_of: impl Fn(&str) -> i64) -> Vec<Link> {
    let mut links = Vec::new();
    for consumer in &state.containers {
        for req in consumer.required.iter().chain(consumer.optional.iter()) {
            for provider in &state.containers {
                for export in provider.exports.iter().filter(|e| e.name == req.name) {
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
