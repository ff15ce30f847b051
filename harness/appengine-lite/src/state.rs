//! The merged revision state (`trails/0/.pvr/json`) parsed into what the
//! appengine needs: groups, and containers with their group, restart
//! policy, roles, auto-recovery, exported services (`<c>/services.json`)
//! and required/optional services (`<c>/run.json` `services`).
//!
//! Defaults are upstream's (parser_system1.c, state.c; checked on the real
//! appengine): roles `["mgmt"]` unless `roles` is given (only `mgmt` is
//! listed; a `roles` object fails the state); a container without group
//! goes, when the state has no `groups.json`, to `root` if it is the first
//! such container (state order) and no container is in `root`, else to
//! `platform` — with a `groups.json`, to its last group; restart policy and
//! status goal come from the group. Unknown fields are ignored.

use serde_json::{Map, Value};
use thiserror::Error;

use crate::groups::Group;
use crate::recovery::AutoRecovery;

/// Errors loading or validating a state.
#[derive(Debug, Error)]
pub enum StateError {
    #[error("state json is not an object")]
    NotAnObject,
    #[error("'{key}' is not a valid run.json: {reason}")]
    BadRunJson { key: String, reason: String },
    #[error("groups.json: {0}")]
    BadGroups(String),
    #[error("platform '{platform}' refers to unknown group '{group}'")]
    UnknownGroup { platform: String, group: String },
    /// Upstream's exact text (state.c).
    #[error("required service '{service}' for platform '{platform}' not found")]
    MissingService { service: String, platform: String },
    /// Upstream's text (dbus_daemon.c) when the hosted bus is on.
    #[error("platform '{platform}' exports reserved service name 'system-bus' while the hosted system bus is enabled")]
    ReservedSystemBus { platform: String },
    /// Upstream's text (dbus_daemon.c) when the hosted bus is on.
    #[error("well-known name '{name}' on bus '{bus}' is owned by more than one app")]
    DoubleOwner { name: String, bus: String },
}

/// Upstream's platform statuses, in upstream's order (a status "below"
/// another is earlier in a start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    None,
    Installed,
    Mounted,
    Blocked,
    Starting,
    Started,
    Ready,
    Recovering,
    Stopping,
    Stopped,
}

impl Status {
    /// Upstream's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "NONE",
            Status::Installed => "INSTALLED",
            Status::Mounted => "MOUNTED",
            Status::Blocked => "BLOCKED",
            Status::Starting => "STARTING",
            Status::Started => "STARTED",
            Status::Ready => "READY",
            Status::Recovering => "RECOVERING",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }

    /// A `status_goal` value (upstream accepts MOUNTED, STARTED, READY).
    pub fn parse_goal(s: &str) -> Option<Status> {
        match s {
            "MOUNTED" => Some(Status::Mounted),
            "STARTED" => Some(Status::Started),
            "READY" => Some(Status::Ready),
            _ => None,
        }
    }

    /// Starting, started or ready.
    pub fn running(self) -> bool {
        matches!(self, Status::Starting | Status::Started | Status::Ready)
    }
}

/// `restart_policy` of a container or group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Pantavisor handles an exit (auto-recovery or reboot); pv-ctrl may
    /// not stop or start it.
    System,
    /// Controllable through `PUT /containers/<name>`.
    Container,
}

impl RestartPolicy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "system" => Some(RestartPolicy::System),
            "container" => Some(RestartPolicy::Container),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::System => "system",
            RestartPolicy::Container => "container",
        }
    }
}

/// One `services.json` entry: a named export, or a hosted-bus name
/// declaration (`owns`, `bus`, `role`, `allow`), which has no name.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Export {
    pub name: Option<String>,
    /// Raw type string as written by the provider (may be absent).
    pub svc_type: Option<String>,
    /// Socket path (or device path for drm); may be absent.
    pub socket: Option<String>,
    /// Hosted bus: the well-known name this container owns.
    pub owns: Option<String>,
    /// Hosted bus: which bus (`system-bus` when absent).
    pub bus: Option<String>,
    /// Hosted bus: the owner's role (the owned name when absent).
    pub role: Option<String>,
    /// Hosted bus: roles allowed to call the owned name.
    pub allow: Vec<String>,
}

impl Export {
    /// A plain named export.
    pub fn named(name: &str, svc_type: &str, socket: &str) -> Self {
        Self {
            name: Some(name.into()),
            svc_type: Some(svc_type.into()),
            socket: Some(socket.into()),
            ..Self::default()
        }
    }

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
    /// Resolved group name (see the module docs).
    pub group: String,
    /// Resolved restart policy.
    pub restart_policy: RestartPolicy,
    /// Resolved status goal.
    pub status_goal: Status,
    pub roles: Vec<String>,
    /// The container's own `auto_recovery`; the group's applies from the
    /// first start when this is `None`.
    pub auto_recovery: Option<AutoRecovery>,
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
    /// A container with upstream's defaults for an `app`-group member (for
    /// tests and builders).
    pub fn named(name: &str) -> Self {
        Self {
            name: name.into(),
            group: "app".into(),
            restart_policy: RestartPolicy::Container,
            status_goal: Status::Started,
            roles: vec!["mgmt".into()],
            auto_recovery: None,
            config: "lxc.container.conf".into(),
            root_volume: Some("root.squashfs".into()),
            storage: Vec::new(),
            exports: Vec::new(),
            required: Vec::new(),
            optional: Vec::new(),
        }
    }

    /// Whether the role list holds `mgmt` (may use the mgmt endpoints).
    pub fn is_mgmt(&self) -> bool {
        self.roles.iter().any(|r| r == "mgmt")
    }
}

/// The name of the hosted system bus's builtin export.
pub const SYSTEM_BUS: &str = "system-bus";

/// A parsed revision.
#[derive(Debug, Clone)]
pub struct State {
    pub rev: String,
    pub json: Map<String, Value>,
    /// Groups in start order.
    pub groups: Vec<Group>,
    /// Containers in state order (key order of the JSON, i.e. by name).
    pub containers: Vec<Container>,
}

/// A container's run.json fields before group defaults are applied.
struct Parsed {
    c: Container,
    group: Option<String>,
    restart_policy: Option<RestartPolicy>,
    status_goal: Option<Status>,
}

impl State {
    /// Parses a state JSON (`#spec` pantavisor-service-system@1).
    pub fn parse(rev: &str, json: &Value) -> Result<Self, StateError> {
        let map = json.as_object().ok_or(StateError::NotAnObject)?.clone();
        let (groups, runlevels) = match map.get("groups.json") {
            Some(v) => (Group::parse_list(v).map_err(StateError::BadGroups)?, false),
            None => (Group::defaults(), true),
        };
        let mut keys: Vec<&String> = map.keys().collect();
        keys.sort();
        let mut parsed = Vec::new();
        for key in keys {
            let Some(name) = key.strip_suffix("/run.json") else {
                continue;
            };
            if name.contains('/') || name.starts_with('_') {
                continue;
            }
            parsed.push(parse_container(&map, key, name)?);
        }
        let containers = resolve_groups(parsed, &groups, runlevels)?;
        Ok(Self {
            rev: rev.to_owned(),
            json: map,
            groups,
            containers,
        })
    }

    /// Every required service must be exported by some container (the
    /// consumer's own exports count); with the hosted bus on, `system-bus`
    /// is builtin, may not be exported by a container, and a well-known
    /// name may have one owner per bus. First failure wins, like upstream.
    pub fn validate(&self, hosted_bus: bool) -> Result<(), StateError> {
        for c in &self.containers {
            for r in &c.required {
                if hosted_bus && r.name == SYSTEM_BUS {
                    continue;
                }
                let found = self
                    .containers
                    .iter()
                    .any(|p| p.exports.iter().any(|e| e.name.as_ref() == Some(&r.name)));
                if !found {
                    return Err(StateError::MissingService {
                        service: r.name.clone(),
                        platform: c.name.clone(),
                    });
                }
            }
        }
        if hosted_bus {
            self.validate_hosted_bus()?;
        }
        Ok(())
    }

    fn validate_hosted_bus(&self) -> Result<(), StateError> {
        let owned = || {
            self.containers
                .iter()
                .flat_map(|c| c.exports.iter())
                .filter_map(|e| {
                    let owns = e.owns.as_deref()?;
                    Some((e, owns, e.bus.as_deref().unwrap_or(SYSTEM_BUS)))
                })
        };
        for c in &self.containers {
            for e in &c.exports {
                if e.name.as_deref() == Some(SYSTEM_BUS) {
                    return Err(StateError::ReservedSystemBus {
                        platform: c.name.clone(),
                    });
                }
                let Some(owns) = e.owns.as_deref() else {
                    continue;
                };
                let bus = e.bus.as_deref().unwrap_or(SYSTEM_BUS);
                if owned().any(|(e2, o2, b2)| !std::ptr::eq(e, e2) && o2 == owns && b2 == bus) {
                    return Err(StateError::DoubleOwner {
                        name: owns.into(),
                        bus: bus.into(),
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

    /// Group by name.
    pub fn group(&self, name: &str) -> Option<&Group> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// Index of a group in start order.
    pub fn group_index(&self, name: &str) -> Option<usize> {
        self.groups.iter().position(|g| g.name == name)
    }
}

fn str_field(m: &Map<String, Value>, key: &str) -> Option<String> {
    m.get(key).and_then(Value::as_str).map(str::to_owned)
}

fn parse_container(map: &Map<String, Value>, key: &str, name: &str) -> Result<Parsed, StateError> {
    let bad = |reason: &str| StateError::BadRunJson {
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let run = map[key].as_object().ok_or_else(|| bad("not an object"))?;
    // `group`, else the deprecated `runlevel` when it names a group.
    let group = str_field(run, "group").or_else(|| {
        str_field(run, "runlevel")
            .filter(|r| ["data", "root", "platform", "app"].contains(&r.as_str()))
    });
    let restart_policy = match str_field(run, "restart_policy") {
        None => None,
        Some(s) => Some(RestartPolicy::parse(&s).ok_or_else(|| bad("bad restart_policy"))?),
    };
    let status_goal = match str_field(run, "status_goal") {
        None => None,
        Some(s) => Some(Status::parse_goal(&s).ok_or_else(|| bad("bad status_goal"))?),
    };
    let roles = match run.get("roles") {
        None => vec!["mgmt".to_owned()],
        // Upstream's parser fails the whole state on a roles object.
        Some(Value::Object(_)) => return Err(bad("roles must be an array")),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            // Upstream knows one role; "nobody" and others are not listed.
            .filter(|r| *r == "mgmt")
            .map(str::to_owned)
            .collect(),
        Some(_) => Vec::new(),
    };
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
    let c = Container {
        name: str_field(run, "name").unwrap_or_else(|| name.to_owned()),
        group: String::new(),
        restart_policy: RestartPolicy::System,
        status_goal: Status::Started,
        roles,
        auto_recovery: run
            .get("auto_recovery")
            .and_then(Value::as_object)
            .map(AutoRecovery::parse)
            .filter(AutoRecovery::enabled),
        config: str_field(run, "config").unwrap_or_else(|| "lxc.container.conf".to_owned()),
        root_volume: str_field(run, "root-volume"),
        storage,
        exports,
        required: reqs("required"),
        optional: reqs("optional"),
    };
    Ok(Parsed {
        c,
        group,
        restart_policy,
        status_goal,
    })
}

/// Applies group membership and the group's defaults.
fn resolve_groups(
    parsed: Vec<Parsed>,
    groups: &[Group],
    runlevels: bool,
) -> Result<Vec<Container>, StateError> {
    let root_taken = parsed.iter().any(|p| p.group.as_deref() == Some("root"));
    let mut first_free = !root_taken;
    let fallback = groups.last().map(|g| g.name.clone()).unwrap_or_default();
    let mut out = Vec::new();
    for p in parsed {
        let group_name = match p.group {
            Some(g) => g,
            None if runlevels && first_free => {
                first_free = false;
                "root".to_owned()
            }
            None if runlevels => "platform".to_owned(),
            None => fallback.clone(),
        };
        let group = groups
            .iter()
            .find(|g| g.name == group_name)
            .ok_or_else(|| StateError::UnknownGroup {
                platform: p.c.name.clone(),
                group: group_name.clone(),
            })?;
        out.push(Container {
            restart_policy: p.restart_policy.unwrap_or(group.restart_policy),
            status_goal: p.status_goal.unwrap_or(group.status_goal),
            group: group_name,
            ..p.c
        });
    }
    Ok(out)
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
                let owns = str_field(o, "owns");
                Some(Export {
                    // A name declaration (`owns`) has no name, even if one
                    // is written: upstream reads one shape or the other.
                    name: if owns.is_some() {
                        None
                    } else {
                        str_field(o, "name")
                    },
                    svc_type: str_field(o, "type"),
                    socket: if owns.is_some() {
                        None
                    } else {
                        str_field(o, "socket")
                    },
                    bus: str_field(o, "bus"),
                    role: owns.as_ref().and(str_field(o, "role")),
                    allow: o
                        .get("allow")
                        .and_then(Value::as_array)
                        .map(|a| {
                            a.iter()
                                .filter_map(Value::as_str)
                                .map(str::to_owned)
                                .collect()
                        })
                        .unwrap_or_default(),
                    owns,
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

    fn parse(v: Value) -> State {
        State::parse("0", &v).expect("parse")
    }

    #[test]
    fn both_services_json_shapes() {
        let a = parse_exports(
            &json!({"#spec":"x","services":[{"name":"a","type":"unix","socket":"/s"}]}),
        );
        let b = parse_exports(&json!([{"name":"a","type":"unix","socket":"/s"}]));
        assert_eq!(a, b);
        assert_eq!(a, [Export::named("a", "unix", "/s")]);
    }

    #[test]
    fn missing_required_service_text() {
        let s = parse(
            json!({"cli/run.json":{"name":"cli","services":{"required":[{"name":"nope"}],"optional":[{"name":"opt"}]}}}),
        );
        let err = s.validate(false).expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "required service 'nope' for platform 'cli' not found"
        );
    }

    /// Upstream (checked on the real appengine): run.json without `roles`
    /// lists `["mgmt"]`; `[]` and `["nobody"]` list `[]`.
    #[test]
    fn roles_default_to_mgmt_and_only_mgmt_is_listed() {
        let s = parse(json!({
            "a/run.json":{},
            "b/run.json":{"roles":[]},
            "c/run.json":{"roles":["nobody"]},
            "d/run.json":{"roles":["mgmt","bogus"]}
        }));
        let roles: Vec<_> = s.containers.iter().map(|c| c.roles.clone()).collect();
        assert_eq!(roles, [vec!["mgmt"], vec![], vec![], vec!["mgmt"]]);
    }

    /// Upstream's parser fails a state whose run.json has a `roles`
    /// object ("cannot parse objects" on the real appengine).
    #[test]
    fn a_roles_object_fails_the_state() {
        assert!(State::parse("0", &json!({"a/run.json":{"roles":{}}})).is_err());
    }

    /// Upstream (checked on the real appengine): without groups.json the
    /// first group-less container (state order) goes to `root` and gets
    /// its `system` policy, the others to `platform`.
    #[test]
    fn first_group_less_container_goes_to_root() {
        let s = parse(json!({
            "aa/run.json":{},
            "ab/run.json":{},
            "app/run.json":{"group":"app"},
            "cont/run.json":{"group":"platform","restart_policy":"container"}
        }));
        let got: Vec<_> = s
            .containers
            .iter()
            .map(|c| (c.name.as_str(), c.group.as_str(), c.restart_policy.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("aa", "root", "system"),
                ("ab", "platform", "system"),
                ("app", "app", "container"),
                ("cont", "platform", "container"),
            ]
        );
        // Someone already in root: nobody else is moved there.
        let s = parse(json!({"a/run.json":{}, "z/run.json":{"group":"root"}}));
        assert_eq!(s.containers[0].group, "platform");
    }

    #[test]
    fn with_groups_json_group_less_containers_join_the_last_group() {
        let s = parse(json!({
            "groups.json":[{"name":"first"},{"name":"last","restart_policy":"system"}],
            "a/run.json":{}
        }));
        assert_eq!(s.containers[0].group, "last");
        assert_eq!(s.containers[0].restart_policy, RestartPolicy::System);
        assert!(State::parse(
            "0",
            &json!({"a/run.json":{"group":"app"},"groups.json":[{"name":"x"}]})
        )
        .is_err());
    }

    #[test]
    fn hosted_bus_declarations_have_no_name() {
        let e = parse_exports(&json!({"services":[{"type":"dbus","bus":"system-bus",
            "owns":"org.pantavisor.Example","role":"example-service","allow":["operator","monitor"]}]}));
        assert_eq!(e[0].name, None);
        assert_eq!(e[0].owns.as_deref(), Some("org.pantavisor.Example"));
        assert_eq!(e[0].role.as_deref(), Some("example-service"));
        assert_eq!(e[0].allow, ["operator", "monitor"]);
    }

    /// Upstream's dbus_daemon.c checks (hosted bus on): a container may not
    /// export `system-bus`; a name has one owner per bus; a requirement of
    /// `system-bus` needs no exporter.
    #[test]
    fn hosted_bus_validation() {
        let shadow = parse(json!({
            "p/run.json":{},
            "p/services.json":[{"name":"system-bus","type":"dbus","socket":"/run/dbus/s"}]
        }));
        shadow.validate(false).expect("fine without the hosted bus");
        assert_eq!(
            shadow.validate(true).expect_err("reserved").to_string(),
            "platform 'p' exports reserved service name 'system-bus' while the hosted system bus is enabled"
        );
        let owns = |c: &str| json!([{"type":"dbus","owns":"org.x.Foo"}]).to_string() + c;
        let twice = parse(json!({
            "a/run.json":{}, "a/services.json": serde_json::from_str::<Value>(&owns("")).expect("json"),
            "b/run.json":{}, "b/services.json": serde_json::from_str::<Value>(&owns("")).expect("json")
        }));
        assert_eq!(
            twice.validate(true).expect_err("double").to_string(),
            "well-known name 'org.x.Foo' on bus 'system-bus' is owned by more than one app"
        );
        let client = parse(
            json!({"c/run.json":{"services":{"required":[{"name":"system-bus","role":"operator"}]}}}),
        );
        client.validate(true).expect("builtin export");
        assert!(client.validate(false).is_err());
    }
}
