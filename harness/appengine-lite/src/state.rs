//! The merged revision state (`trails/0/.pvr/json`) parsed into what the
//! appengine needs: containers with their group, restart policy, exported
//! services (`<c>/services.json`) and required/optional services
//! (`<c>/run.json` `services`).
//!
//! Unknown fields are ignored like upstream's parser does; missing optional
//! fields take upstream's defaults.

use serde_json::{Map, Value};
use thiserror::Error;

/// Errors loading or validating a state.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("state json is not an object")]
    NotAnObject,
    #[error("'{key}' is not a valid run.json: {reason}")]
    BadRunJson { key: String, reason: String },
    /// Upstream's exact text (parser_system1.c).
    #[error("required service '{service}' for platform '{platform}' not found")]
    MissingService { service: String, platform: String },
}

/// One exported service (`services.json` entry).
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    pub name: String,
    /// Raw type string as written by the provider (may be absent).
    pub svc_type: Option<String>,
    /// Socket path (or device path for drm); may be absent.
    pub socket: Option<String>,
}

impl Export {
    /// The type as upstream prints it: one of the known names or `unknown`.
    pub fn type_str(&self) -> &'static str {
        match self.svc_type.as_deref() {
            Some("unix") => "unix",
            Some("rest") => "rest",
            Some("dbus") => "dbus",
            Some("drm") => "drm",
            Some("wayland") => "wayland",
            Some("input") => "input",
            _ => "unknown",
        }
    }
}

/// One required or optional service of a consumer (`run.json`).
#[derive(Debug, Clone, PartialEq)]
pub struct Requirement {
    pub name: String,
    pub role: Option<String>,
    pub interface: Option<String>,
    pub target: Option<String>,
}

/// A container ("platform") of the state.
#[derive(Debug, Clone)]
pub struct Container {
    pub name: String,
    pub group: String,
    /// `container` or `system`.
    pub restart_policy: String,
    pub roles: Vec<String>,
    /// File name of the LXC config inside `<c>/`.
    pub config: String,
    /// File name of the root volume inside `<c>/`, if any.
    pub root_volume: Option<String>,
    /// `(volume name, persistence)` from run.json `storage`.
    pub storage: Vec<(String, String)>,
    pub exports: Vec<Export>,
    pub required: Vec<Requirement>,
    pub optional: Vec<Requirement>,
}

impl Container {
    /// Whether this container exports any `drm` service.
    pub fn exports_drm(&self) -> bool {
        self.exports.iter().any(|e| e.type_str() == "drm")
    }
}

/// Group start order; unknown groups start last, in name order.
pub const GROUP_ORDER: [&str; 4] = ["data", "root", "platform", "app"];

/// A parsed revision.
#[derive(Debug, Clone)]
pub struct State {
    pub rev: String,
    pub json: Map<String, Value>,
    /// Containers in state order (key order of the JSON, i.e. by name).
    pub containers: Vec<Container>,
}

impl State {
    /// Parses a state JSON (`#spec` pantavisor-service-system@1).
    pub fn parse(rev: &str, json: &Value) -> Result<Self, StateError> {
        let map = json.as_object().ok_or(StateError::NotAnObject)?.clone();
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        let mut containers = Vec::new();
        for key in keys {
            let Some(name) = key.strip_suffix("/run.json") else {
                continue;
            };
            if name.contains('/') || name.starts_with('_') {
                continue;
            }
            let run = &map[key];
            let bad = |reason: &str| StateError::BadRunJson {
                key: key.clone(),
                reason: reason.to_owned(),
            };
            let run = run.as_object().ok_or_else(|| bad("not an object"))?;
            let group = str_field(run, "group").unwrap_or_else(|| "platform".to_owned());
            // Upstream's per-group default: only the app group is
            // container-restartable unless run.json says otherwise.
            let restart_policy = str_field(run, "restart_policy").unwrap_or_else(|| {
                if group == "app" {
                    "container".to_owned()
                } else {
                    "system".to_owned()
                }
            });
            let roles = run
                .get("roles")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        // Upstream knows one role; others are not listed.
                        .filter(|r| *r == "mgmt")
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let storage = run
                .get("storage")
                .and_then(Value::as_object)
                .map(|s| {
                    s.iter()
                        .map(|(k, v)| {
                            let p = v
                                .get("persistence")
                                .and_then(Value::as_str)
                                .unwrap_or("permanent");
                            (k.clone(), p.to_owned())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let services = run.get("services");
            let reqs = |kind: &str| -> Vec<Requirement> {
                services
                    .and_then(|s| s.get(kind))
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(parse_requirement).collect())
                    .unwrap_or_default()
            };
            let exports = map
                .get(&format!("{name}/services.json"))
                .map(parse_exports)
                .unwrap_or_default();
            containers.push(Container {
                name: str_field(run, "name").unwrap_or_else(|| name.to_owned()),
                group,
                restart_policy,
                roles,
                config: str_field(run, "config").unwrap_or_else(|| "lxc.container.conf".to_owned()),
                root_volume: str_field(run, "root-volume"),
                storage,
                exports,
                required: reqs("required"),
                optional: reqs("optional"),
            });
        }
        Ok(Self {
            rev: rev.to_owned(),
            json: map,
            containers,
        })
    }

    /// Every required service must be exported by some container (the
    /// consumer's own exports count). First failure wins, like upstream.
    pub fn validate(&self) -> Result<(), StateError> {
        for c in &self.containers {
            for r in &c.required {
                let found = self
                    .containers
                    .iter()
                    .any(|p| p.exports.iter().any(|e| e.name == r.name));
                if !found {
                    return Err(StateError::MissingService {
                        service: r.name.clone(),
                        platform: c.name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Container by name.
    pub fn container(&self, name: &str) -> Option<&Container> {
        self.containers.iter().find(|c| c.name == name)
    }

    /// Containers in start order: by group (root → platform → app), then
    /// state order.
    pub fn start_order(&self) -> Vec<Vec<&Container>> {
        let mut groups: Vec<&str> = GROUP_ORDER.to_vec();
        let mut extra: Vec<&str> = self
            .containers
            .iter()
            .map(|c| c.group.as_str())
            .filter(|g| !GROUP_ORDER.contains(g))
            .collect();
        extra.sort();
        extra.dedup();
        groups.extend(extra);
        groups
            .into_iter()
            .map(|g| self.containers.iter().filter(|c| c.group == g).collect())
            .filter(|v: &Vec<&Container>| !v.is_empty())
            .collect()
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn parse_requirement(v: &Value) -> Option<Requirement> {
    let o = v.as_object()?;
    Some(Requirement {
        name: str_field(o, "name")?,
        role: str_field(o, "role"),
        interface: str_field(o, "interface"),
        target: str_field(o, "target"),
    })
}

/// Both shapes: `{"services":[...]}` and the legacy bare array.
pub fn parse_exports(v: &Value) -> Vec<Export> {
    let list = match v {
        Value::Array(a) => Some(a),
        Value::Object(o) => o.get("services").and_then(Value::as_array),
        _ => None,
    };
    list.map(|a| {
        a.iter()
            .filter_map(|e| {
                let o = e.as_object()?;
                Some(Export {
                    name: str_field(o, "name")?,
                    svc_type: str_field(o, "type"),
                    socket: str_field(o, "socket"),
                })
            })
            .collect()
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_services_json_shapes() {
        let a = parse_exports(
            &json!({"#spec":"x","services":[{"name":"a","type":"unix","socket":"/s"}]}),
        );
        let b = parse_exports(&json!([{"name":"a","type":"unix","socket":"/s"}]));
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn missing_required_service_text() {
        let s = State::parse(
            "0",
            &json!({"cli/run.json":{"name":"cli","services":{"required":[{"name":"nope"}],"optional":[{"name":"opt"}]}}}),
        )
        .expect("parse");
        let err = s.validate().expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "required service 'nope' for platform 'cli' not found"
        );
    }

    #[test]
    fn optional_missing_is_fine_and_defaults() {
        let s = State::parse(
            "0",
            &json!({"c/run.json":{"name":"c","services":{"optional":[{"name":"opt"}]}}}),
        )
        .expect("parse");
        s.validate().expect("optional may be missing");
        let c = &s.containers[0];
        assert_eq!(c.group, "platform");
        assert_eq!(c.restart_policy, "system");
        assert_eq!(c.config, "lxc.container.conf");
    }

    #[test]
    fn only_mgmt_role_is_listed() {
        let s =
            State::parse("0", &json!({"c/run.json":{"roles":["mgmt","bogus"]}})).expect("parse");
        assert_eq!(s.containers[0].roles, ["mgmt"]);
    }

    #[test]
    fn start_order_root_platform_app() {
        let s = State::parse(
            "0",
            &json!({
                "a/run.json":{"group":"app"},
                "b/run.json":{"group":"root"},
                "c/run.json":{"group":"platform"},
                "d/run.json":{"group":"weird"}
            }),
        )
        .expect("parse");
        let order: Vec<Vec<&str>> = s
            .start_order()
            .iter()
            .map(|g| g.iter().map(|c| c.name.as_str()).collect())
            .collect();
        assert_eq!(order, vec![vec!["b"], vec!["c"], vec!["a"], vec!["d"]]);
    }
}
