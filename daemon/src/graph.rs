//! The xconnect graph as Pantavisor publishes it (`GET /xconnect-graph`).
//!
//! The wire model ([`RawLink`]) accepts everything real Pantavisor emits
//! (null `target`/`socket`, pids -1/0/>0 printed with `%.17G` so possibly as
//! `1234.0`, unknown types, optional `uid`, extra fields); [`resolve`] turns
//! it into [`LinkSpec`]s the reconciler acts on.
//!
//! One malformed entry does not reject the graph: [`parse`] keeps the others
//! and reports the bad one in [`ParsedGraph::rejected`]. A body that is not
//! JSON, or not an array, is a [`GraphError`] and the caller keeps its last
//! good graph.
//!
//! Defaults when `target` is null (or empty): `/run/pv/services/<name>.sock`
//! for socket types, the provider's device path (`socket`) for `drm` and
//! `input`. A link
//! whose `socket` is null cannot be mediated and is reported as invalid.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Where consumers get their socket when the requirement names no target.
pub const DEFAULT_SERVICES_DIR: &str = "/run/pv/services";

/// The mediation a link needs, from the EXPORT's `type` string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceType {
    Unix,
    Rest,
    Dbus,
    Drm,
    Wayland,
    /// An evdev node (upstream documents it but has no plugin).
    Input,
    /// Anything else; logged once and skipped.
    Unknown(String),
}

impl ServiceType {
    /// Map the export's `type` string (case-sensitive, as Pantavisor does).
    pub fn parse(s: &str) -> Self {
        match s {
            "unix" => Self::Unix,
            "rest" => Self::Rest,
            "dbus" => Self::Dbus,
            "drm" => Self::Drm,
            "wayland" => Self::Wayland,
            "input" => Self::Input,
            other => Self::Unknown(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Unix => "unix",
            Self::Rest => "rest",
            Self::Dbus => "dbus",
            Self::Drm => "drm",
            Self::Wayland => "wayland",
            Self::Input => "input",
            Self::Unknown(s) => s,
        }
    }

    /// Whether this daemon can mediate the type at all.
    pub fn is_supported(&self) -> bool {
        !matches!(self, Self::Unknown(_))
    }
}

impl fmt::Display for ServiceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A pid as Pantavisor reports it: -1 not started yet, 0 host side, >0 a
/// container's init pid. Checked by [`crate::process`] before any use.
pub type RawPid = i32;

/// One resolved link, ready for the reconciler.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkSpec {
    pub consumer: String,
    pub consumer_pid: RawPid,
    pub provider: String,
    pub provider_pid: RawPid,
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

impl fmt::Display for LinkKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{} -> {}",
            self.consumer,
            self.name,
            self.target.display()
        )
    }
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

/// One graph entry exactly as Pantavisor prints it. Unknown fields are
/// ignored; everything Pantavisor may leave out or null has a default.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RawLink {
    pub consumer: String,
    #[serde(default = "not_started", deserialize_with = "de_pid")]
    pub consumer_pid: RawPid,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub provider: Option<String>,
    #[serde(default = "not_started", deserialize_with = "de_pid")]
    pub provider_pid: RawPid,
    pub name: String,
    /// The export's type; absent or null reads as `"unknown"`.
    #[serde(default, rename = "type", deserialize_with = "de_opt_string")]
    pub kind: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub role: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub interface: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub target: Option<String>,
    #[serde(default, deserialize_with = "de_opt_string")]
    pub socket: Option<String>,
    #[serde(default, deserialize_with = "de_opt_uid")]
    pub uid: Option<u32>,
}

fn not_started() -> RawPid {
    -1
}

/// An integral JSON number, also when printed as `1234.0` or `1.234E3`.
fn integral(v: &Value) -> Option<i64> {
    if let Some(i) = v.as_i64() {
        return Some(i);
    }
    let f = v.as_f64()?;
    // The bounds keep the cast exact; anything beyond is not a pid or uid.
    (f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

fn de_pid<'de, D: Deserializer<'de>>(d: D) -> Result<RawPid, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(-1);
    }
    let n = integral(&v)
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or_else(|| serde::de::Error::custom(format!("pid is not an integer: {v}")))?;
    RawPid::try_from(n).map_err(|_| serde::de::Error::custom(format!("pid out of range: {n}")))
}

fn de_opt_uid<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    let n = integral(&v)
        .ok_or_else(|| serde::de::Error::custom(format!("uid is not an integer: {v}")))?;
    u32::try_from(n)
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("uid out of range: {n}")))
}

fn de_opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)
}

/// Why a whole graph body was rejected (the caller keeps its last good one).
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("graph is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("graph is not a JSON array (got {0})")]
    NotArray(&'static str),
}

/// One graph entry that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    /// Position in the graph array.
    pub index: usize,
    /// `consumer/name` when the entry got that far, for the log line.
    pub link: Option<String>,
    pub reason: String,
}

impl fmt::Display for EntryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.link {
            Some(l) => write!(f, "graph entry {} ({l}): {}", self.index, self.reason),
            None => write!(f, "graph entry {}: {}", self.index, self.reason),
        }
    }
}

/// A parsed graph body: the entries that parsed, and those that did not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedGraph {
    pub links: Vec<(usize, RawLink)>,
    pub rejected: Vec<EntryError>,
}

/// Parse a `GET /xconnect-graph` body.
pub fn parse(body: &[u8]) -> Result<ParsedGraph, GraphError> {
    let value: Value = serde_json::from_slice(body)?;
    let entries = match value {
        Value::Array(a) => a,
        Value::Null => return Err(GraphError::NotArray("null")),
        Value::Bool(_) => return Err(GraphError::NotArray("a boolean")),
        Value::Number(_) => return Err(GraphError::NotArray("a number")),
        Value::String(_) => return Err(GraphError::NotArray("a string")),
        Value::Object(_) => return Err(GraphError::NotArray("an object")),
    };
    let mut out = ParsedGraph::default();
    for (index, entry) in entries.into_iter().enumerate() {
        let link = entry_label(&entry);
        match RawLink::deserialize(entry) {
            Ok(raw) => out.links.push((index, raw)),
            Err(e) => out.rejected.push(EntryError {
                index,
                link,
                reason: e.to_string(),
            }),
        }
    }
    Ok(out)
}

fn entry_label(v: &Value) -> Option<String> {
    let c = v.get("consumer")?.as_str()?;
    let n = v.get("name").and_then(Value::as_str).unwrap_or("?");
    Some(format!("{c}/{n}"))
}

/// Resolved links plus the entries that cannot become links.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub links: Vec<LinkSpec>,
    pub invalid: Vec<EntryError>,
}

/// Parse and resolve in one step.
pub fn parse_and_resolve(body: &[u8]) -> Result<Resolved, GraphError> {
    let parsed = parse(body)?;
    let mut resolved = resolve(&parsed.links);
    let mut invalid = parsed.rejected;
    invalid.append(&mut resolved.invalid);
    invalid.sort_by_key(|e| e.index);
    resolved.invalid = invalid;
    Ok(resolved)
}

/// Apply defaults and validate every parsed entry.
pub fn resolve(raw: &[(usize, RawLink)]) -> Resolved {
    let mut out = Resolved::default();
    for (index, link) in raw {
        match link.resolve() {
            Ok(spec) => out.links.push(spec),
            Err(reason) => out.invalid.push(EntryError {
                index: *index,
                link: Some(format!("{}/{}", link.consumer, link.name)),
                reason,
            }),
        }
    }
    out
}

fn non_empty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// Absolute, no NUL, no `..`: anything else would be resolved somewhere
/// the graph's author did not mean.
fn check_path(what: &str, p: &str) -> Result<PathBuf, String> {
    if p.contains('\0') {
        return Err(format!("{what} contains a NUL byte"));
    }
    let path = Path::new(p);
    if !path.is_absolute() {
        return Err(format!("{what} {p:?} is not an absolute path"));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{what} {p:?} contains '..'"));
    }
    Ok(path.to_path_buf())
}

impl RawLink {
    /// Apply the defaults of the module docs; `Err` says why the entry
    /// cannot be a link.
    pub fn resolve(&self) -> Result<LinkSpec, String> {
        if self.consumer.is_empty() {
            return Err("empty consumer".into());
        }
        if self.name.is_empty() {
            return Err("empty name".into());
        }
        let type_str = non_empty(&self.kind).unwrap_or("unknown");
        let kind = ServiceType::parse(type_str);
        let socket = match non_empty(&self.socket) {
            Some(s) => check_path("socket", s)?,
            None => return Err("provider socket is null".into()),
        };
        let target = match non_empty(&self.target) {
            Some(t) => check_path("target", t)?,
            None if matches!(kind, ServiceType::Drm | ServiceType::Input) => socket.clone(),
            None => {
                if self.name.contains('/') || self.name == "." || self.name == ".." {
                    return Err(format!(
                        "name {:?} cannot make a default target path",
                        self.name
                    ));
                }
                check_path(
                    "default target",
                    &format!("{DEFAULT_SERVICES_DIR}/{}.sock", self.name),
                )?
            }
        };
        Ok(LinkSpec {
            consumer: self.consumer.clone(),
            consumer_pid: self.consumer_pid,
            provider: self.provider.clone().unwrap_or_default(),
            provider_pid: self.provider_pid,
            name: self.name.clone(),
            role: non_empty(&self.role).unwrap_or("any").to_string(),
            interface: non_empty(&self.interface).unwrap_or(type_str).to_string(),
            kind,
            target,
            socket,
            uid: self.uid,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of PANTAVISOR.md §1, verbatim.
    const SECTION1: &str = r#"[{"consumer":"pv-example-unix-client","consumer_pid":1234,
  "provider":"pv-example-unix-server","provider_pid":5678,
  "name":"raw-unix","type":"unix","role":"any","interface":"unix",
  "target":"/run/pv/services/raw-unix.sock","socket":"/run/example/raw.sock"},
 {"consumer":"app","consumer_pid":-1,"provider":"_pv_","provider_pid":0,
  "name":"system-bus","type":"dbus","role":"operator","interface":"dbus",
  "target":null,"socket":"/run/pv/dbus/system_bus_socket","uid":90000}]"#;

    #[test]
    fn section1_example_resolves() {
        let r = parse_and_resolve(SECTION1.as_bytes()).expect("parses");
        assert!(r.invalid.is_empty(), "{:?}", r.invalid);
        assert_eq!(r.links.len(), 2);
        let unix = &r.links[0];
        assert_eq!(unix.consumer, "pv-example-unix-client");
        assert_eq!(unix.consumer_pid, 1234);
        assert_eq!(unix.provider_pid, 5678);
        assert_eq!(unix.kind, ServiceType::Unix);
        assert_eq!(unix.target, Path::new("/run/pv/services/raw-unix.sock"));
        assert_eq!(unix.socket, Path::new("/run/example/raw.sock"));
        assert_eq!(unix.uid, None);
        let bus = &r.links[1];
        assert_eq!(bus.consumer_pid, -1);
        assert_eq!(bus.provider, "_pv_");
        assert_eq!(bus.provider_pid, 0);
        assert_eq!(bus.kind, ServiceType::Dbus);
        assert_eq!(bus.role, "operator");
        assert_eq!(bus.uid, Some(90000));
        // null target on a socket type: the documented default.
        assert_eq!(bus.target, Path::new("/run/pv/services/system-bus.sock"));
    }

    #[test]
    fn empty_graph() {
        let r = parse_and_resolve(b"[]").expect("parses");
        assert_eq!(r, Resolved::default());
        let r = parse_and_resolve(b" [ ]\n").expect("parses");
        assert!(r.links.is_empty());
    }

    #[test]
    fn float_pids_and_uid_as_printed_by_percent_g() {
        let body = br#"[{"consumer":"c","consumer_pid":1234.0,"provider":"p",
            "provider_pid":5.678E3,"name":"n","type":"unix","socket":"/s","uid":90001.0}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links[0].consumer_pid, 1234);
        assert_eq!(r.links[0].provider_pid, 5678);
        assert_eq!(r.links[0].uid, Some(90001));
    }

    #[test]
    fn fractional_pid_rejects_only_that_entry() {
        let body =
            br#"[{"consumer":"c","consumer_pid":12.5,"name":"n","type":"unix","socket":"/s"},
                        {"consumer":"d","consumer_pid":7,"name":"n","type":"unix","socket":"/s"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].consumer, "d");
        assert_eq!(r.invalid.len(), 1);
        assert_eq!(r.invalid[0].index, 0);
        assert_eq!(r.invalid[0].link.as_deref(), Some("c/n"));
        assert!(r.invalid[0].reason.contains("pid"), "{}", r.invalid[0]);
    }

    #[test]
    fn drm_null_target_defaults_to_device_path() {
        let body = br#"[{"consumer":"m","consumer_pid":10,"provider":"p","provider_pid":11,
            "name":"drm-master","type":"drm","role":"any","interface":"drm",
            "target":null,"socket":"/dev/dri/card0"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links[0].kind, ServiceType::Drm);
        assert_eq!(r.links[0].target, Path::new("/dev/dri/card0"));
    }

    #[test]
    fn null_socket_is_invalid_but_others_survive() {
        let body = br#"[{"consumer":"a","consumer_pid":1,"provider":"p","provider_pid":2,
            "name":"x","type":"unix","target":"/t","socket":null},
            {"consumer":"b","consumer_pid":1,"provider":"p","provider_pid":2,
            "name":"y","type":"rest","target":"/t","socket":"/s"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].name, "y");
        assert_eq!(r.invalid.len(), 1);
        assert!(r.invalid[0].reason.contains("socket is null"));
        assert!(r.invalid[0].to_string().contains("a/x"));
    }

    #[test]
    fn input_unknown_and_missing_types_are_kept_for_the_reconciler() {
        let body = br#"[{"consumer":"a","consumer_pid":1,"name":"i","type":"input","socket":"/dev/input/event0"},
            {"consumer":"a","consumer_pid":1,"name":"u","type":"unknown","socket":"/s"},
            {"consumer":"a","consumer_pid":1,"name":"v","type":"vsock","socket":"/s"},
            {"consumer":"a","consumer_pid":1,"name":"w","socket":"/s"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        let kinds: Vec<_> = r.links.iter().map(|l| l.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                ServiceType::Input,
                ServiceType::Unknown("unknown".into()),
                ServiceType::Unknown("vsock".into()),
                ServiceType::Unknown("unknown".into()),
            ]
        );
        assert!(kinds[0].is_supported());
        assert!(!kinds[1].is_supported());
        // A null target lands where the provider has its node, as drm.
        assert_eq!(r.links[0].target, PathBuf::from("/dev/input/event0"));
        // interface defaults to the export's type string.
        assert_eq!(r.links[2].interface, "vsock");
    }

    #[test]
    fn extra_fields_missing_optionals_and_defaults() {
        let body = br#"[{"consumer":"a","name":"n","type":"wayland","socket":"/run/wayland-0",
            "extra":{"nested":[1,2]},"future_field":true}]"#;
        let r = parse_and_resolve(body).expect("parses");
        let l = &r.links[0];
        assert_eq!(l.consumer_pid, -1, "absent pid reads as not started");
        assert_eq!(l.provider_pid, -1);
        assert_eq!(l.provider, "");
        assert_eq!(l.role, "any");
        assert_eq!(l.interface, "wayland");
        assert_eq!(l.target, Path::new("/run/pv/services/n.sock"));
    }

    #[test]
    fn hostile_paths_and_names_are_invalid() {
        for (entry, why) in [
            (
                r#"{"consumer":"a","name":"n","type":"unix","socket":"rel/sock"}"#,
                "absolute",
            ),
            (
                r#"{"consumer":"a","name":"n","type":"unix","socket":"/s","target":"/run/../etc/x"}"#,
                "..",
            ),
            (
                r#"{"consumer":"a","name":"../../etc/x","type":"unix","socket":"/s"}"#,
                "default target",
            ),
            (
                r#"{"consumer":"a","name":"n","type":"unix","socket":"/s\u0000x"}"#,
                "NUL",
            ),
            (
                r#"{"consumer":"","name":"n","type":"unix","socket":"/s"}"#,
                "empty consumer",
            ),
        ] {
            let body = format!("[{entry}]");
            let r = parse_and_resolve(body.as_bytes()).expect("parses");
            assert!(r.links.is_empty(), "{entry} must be rejected");
            assert!(
                r.invalid[0].reason.contains(why),
                "{entry}: {}",
                r.invalid[0]
            );
        }
    }

    #[test]
    fn malformed_entries_do_not_reject_the_graph() {
        let body = br#"[42, "x", null, {"name":"no-consumer"}, {"consumer":"a","name":"n","consumer_pid":"oops","socket":"/s"},
            {"consumer":"ok","consumer_pid":3,"name":"n","type":"unix","socket":"/s","uid":-5},
            {"consumer":"ok","consumer_pid":3,"name":"m","type":"unix","socket":"/s"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links.len(), 1);
        assert_eq!(r.links[0].name, "m");
        let bad: Vec<usize> = r.invalid.iter().map(|e| e.index).collect();
        assert_eq!(bad, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn string_pid_is_tolerated() {
        let body =
            br#"[{"consumer":"a","consumer_pid":"42","name":"n","type":"unix","socket":"/s"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links[0].consumer_pid, 42);
    }

    #[test]
    fn non_json_and_non_array_are_errors() {
        assert!(matches!(parse(b"<html>"), Err(GraphError::Json(_))));
        assert!(matches!(parse(b""), Err(GraphError::Json(_))));
        assert!(matches!(
            parse(b"[{\"consumer\":"),
            Err(GraphError::Json(_))
        ));
        assert!(matches!(
            parse(br#"{"Error":"State not loaded yet"}"#),
            Err(GraphError::NotArray("an object"))
        ));
        assert!(matches!(parse(b"null"), Err(GraphError::NotArray("null"))));
    }

    #[test]
    fn several_providers_for_one_name_share_a_key() {
        let body = br#"[{"consumer":"c","consumer_pid":1,"provider":"p1","provider_pid":2,"name":"n","type":"unix","target":null,"socket":"/a"},
            {"consumer":"c","consumer_pid":1,"provider":"p2","provider_pid":3,"name":"n","type":"unix","target":null,"socket":"/b"}]"#;
        let r = parse_and_resolve(body).expect("parses");
        assert_eq!(r.links[0].key(), r.links[1].key());
        assert_eq!(
            r.links[0].key().to_string(),
            "c/n -> /run/pv/services/n.sock"
        );
    }
}
