//! Writing (and reading back) pvrexports, the files `pvtx.d` installs.
//!
//! A pvrexport is a tar (usually gzipped) holding a partial Pantavisor state
//! in a file named `json` plus `objects/<sha256>` for every binary artifact
//! the state references by hash (PANTAVISOR.md §5). Per container pvr writes:
//!
//! - `<c>/run.json`: rendered from `args.json` the way pvr's builtin
//!   `lxc-docker` template does ([`render_run_json`]), including the
//!   `services: {required, optional}` block from `PV_SERVICES_REQUIRED` /
//!   `PV_SERVICES_OPTIONAL`;
//! - `<c>/src.json`: the arguments and the Docker config they came from;
//! - `<c>/services.json`: the provider manifest, copied verbatim;
//! - `<c>/lxc.container.conf` and `<c>/root.squashfs`: objects, by sha256.
//!
//! The tar holds FILE entries only: real `pvtx add` crashes on directory
//! entries. Entries carry fixed metadata so an export's bytes depend only on
//! its content.

pub mod lxcconf;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// The `#spec` of a state (and of a pvrexport's `json`).
pub const STATE_SPEC: &str = "pantavisor-service-system@1";

/// Errors reading or checking a pvrexport.
#[derive(Debug, Error)]
pub enum PvrexportError {
    #[error("reading pvrexport: {0}")]
    Io(#[from] std::io::Error),
    #[error("pvrexport `json` is not a JSON object: {0}")]
    Json(#[from] serde_json::Error),
    #[error("pvrexport has no `json` entry")]
    MissingJson,
    #[error("object {name}: content hashes to {actual}")]
    BadObject { name: String, actual: String },
    #[error("state key {key} references object {sha}, which the export lacks")]
    MissingObject { key: String, sha: String },
    #[error("unexpected tar entry {0:?} (only `json` and `objects/<sha256>` files belong)")]
    UnexpectedEntry(String),
}

/// The parts of a Docker image config pvr's template reads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerConfig {
    #[serde(default, deserialize_with = "words")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, deserialize_with = "words")]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub volumes: Option<BTreeMap<String, Value>>,
}

/// Docker allows `Cmd`/`Entrypoint` as one string; pvr prints it unquoted,
/// which is what a one-word list renders to as well.
fn words<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum W {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<W>::deserialize(d)? {
        None => None,
        Some(W::One(s)) => Some(vec![s]),
        Some(W::Many(v)) => Some(v),
    })
}

impl DockerConfig {
    /// A config for a static binary: `Cmd` = `cmd`, root working dir, the
    /// usual PATH.
    pub fn for_command(cmd: Vec<String>) -> Self {
        DockerConfig {
            entrypoint: None,
            cmd: Some(cmd),
            env: Some(vec![
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
            ]),
            working_dir: Some("/".into()),
            volumes: None,
        }
    }

    /// The `docker_config` object of `src.json`, with the fields Docker
    /// always reports (as in real exports).
    pub fn to_src_json(&self) -> Value {
        json!({
            "ArgsEscaped": true,
            "AttachStderr": false,
            "AttachStdin": false,
            "AttachStdout": false,
            "Cmd": self.cmd,
            "Domainname": "",
            "Entrypoint": self.entrypoint,
            "Env": self.env,
            "Hostname": "",
            "Image": "",
            "Labels": null,
            "OnBuild": null,
            "OpenStdin": false,
            "StdinOnce": false,
            "Tty": false,
            "User": "",
            "Volumes": self.volumes,
            "WorkingDir": self.working_dir.clone().unwrap_or_default(),
        })
    }
}

/// Docker volumes become permanent storage (pvr's `pvr_mergePersistentMaps`).
fn persistent_volumes(docker: &DockerConfig) -> BTreeMap<String, &'static str> {
    docker
        .volumes
        .iter()
        .flatten()
        .map(|(k, _)| (k.clone(), "permanent"))
        .collect()
}

/// `/var/lib/x/` → `docker--var-lib-x` (pvr's naming of volume dirs).
fn volume_dir(path: &str) -> String {
    format!("docker-{}", path.trim_end_matches('/').replace('/', "-"))
}

/// One container to package.
#[derive(Debug, Clone)]
pub struct ContainerSpec {
    pub name: String,
    /// `args.json` (`pvr app add --arg-json`).
    pub args: Map<String, Value>,
    pub docker: DockerConfig,
    /// The provider manifest, if the container exports services.
    pub services: Option<Value>,
}

/// `run.json` for `name`, as pvr renders it.
pub fn render_run_json(name: &str, docker: &DockerConfig, args: &Map<String, Value>) -> Value {
    let list = |k: &str| args.get(k).cloned().unwrap_or_else(|| json!([]));
    let mut run = Map::new();
    run.insert("#spec".into(), json!("service-manifest-run@1"));
    run.insert("config".into(), json!("lxc.container.conf"));
    run.insert(
        "drivers".into(),
        json!({
            "manual": list("PV_DRIVERS_MANUAL"),
            "optional": list("PV_DRIVERS_OPTIONAL"),
            "required": list("PV_DRIVERS_REQUIRED"),
        }),
    );
    for (arg, key) in [
        ("PV_GROUP", "group"),
        ("PV_RUNLEVEL", "runlevel"),
        ("PV_RESTART_POLICY", "restart_policy"),
        ("PV_STATUS_GOAL", "status_goal"),
    ] {
        if let Some(v) = args.get(arg).filter(|v| !v.is_null()) {
            run.insert(key.into(), v.clone());
        }
    }
    run.insert("name".into(), json!(name));
    if let Some(roles) = args.get("PV_ROLES") {
        run.insert("roles".into(), roles.clone());
    }
    run.insert("root-volume".into(), json!("root.squashfs"));
    let mut storage = Map::new();
    for (vol, persistence) in persistent_volumes(docker) {
        storage.insert(volume_dir(&vol), json!({ "persistence": persistence }));
    }
    storage.insert("lxc-overlay".into(), json!({"persistence": "boot"}));
    run.insert("storage".into(), Value::Object(storage));
    let mut services = Map::new();
    for (arg, key) in [
        ("PV_SERVICES_REQUIRED", "required"),
        ("PV_SERVICES_OPTIONAL", "optional"),
    ] {
        if let Some(v) = args.get(arg) {
            services.insert(key.into(), Value::Array(requirements(v)));
        }
    }
    if !services.is_empty() {
        run.insert("services".into(), Value::Object(services));
    }
    run.insert("type".into(), json!("lxc"));
    run.insert("volumes".into(), json!([]));
    Value::Object(run)
}

/// Requirement lists come as objects, or (older manifests) as a
/// comma-separated string of names.
fn requirements(v: &Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a
            .iter()
            .map(|r| match r {
                Value::String(n) => json!({ "name": n }),
                other => other.clone(),
            })
            .collect(),
        Value::String(s) => s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(|n| json!({ "name": n }))
            .collect(),
        _ => Vec::new(),
    }
}

/// `src.json` for a container.
pub fn render_src_json(docker: &DockerConfig, args: &Map<String, Value>) -> Value {
    json!({
        "#spec": "service-manifest-src@1",
        "args": args,
        "docker_config": docker.to_src_json(),
        "template": "builtin-lxc-docker",
    })
}

/// Lowercase hex sha256.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A pvrexport in memory: the partial state and its objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Pvrexport {
    pub state: Map<String, Value>,
    /// sha256 → content.
    pub objects: BTreeMap<String, Vec<u8>>,
}

impl Default for Pvrexport {
    fn default() -> Self {
        let mut state = Map::new();
        state.insert("#spec".into(), json!(STATE_SPEC));
        Pvrexport {
            state,
            objects: BTreeMap::new(),
        }
    }
}

impl Pvrexport {
    /// Stores `data` as an object referenced by state key `key`.
    pub fn add_object(&mut self, key: &str, data: Vec<u8>) -> String {
        let sha = sha256_hex(&data);
        self.state.insert(key.into(), json!(sha));
        self.objects.insert(sha.clone(), data);
        sha
    }

    /// Adds a container with its root filesystem (a squashfs image).
    pub fn add_container(&mut self, spec: &ContainerSpec, root_squashfs: Vec<u8>) {
        let n = &spec.name;
        let conf = lxcconf::render(n, &spec.docker, &spec.args);
        self.add_object(&format!("{n}/lxc.container.conf"), conf.into_bytes());
        self.add_object(&format!("{n}/root.squashfs"), root_squashfs);
        self.state.insert(
            format!("{n}/run.json"),
            render_run_json(n, &spec.docker, &spec.args),
        );
        self.state.insert(
            format!("{n}/src.json"),
            render_src_json(&spec.docker, &spec.args),
        );
        if let Some(s) = &spec.services {
            self.state.insert(format!("{n}/services.json"), s.clone());
        }
    }

    /// Container names (from their `run.json` keys).
    pub fn containers(&self) -> Vec<String> {
        self.state
            .keys()
            .filter_map(|k| k.strip_suffix("/run.json"))
            .map(str::to_string)
            .collect()
    }

    /// Checks that objects hash to their names and that every hash the
    /// state references is present (what an installer must verify).
    pub fn verify(&self) -> Result<(), PvrexportError> {
        for (name, data) in &self.objects {
            let actual = sha256_hex(data);
            if &actual != name {
                return Err(PvrexportError::BadObject {
                    name: name.clone(),
                    actual,
                });
            }
        }
        for (key, v) in &self.state {
            if let Value::String(sha) = v {
                if is_sha(sha)
                    && !key.ends_with(".docker-digest")
                    && !self.objects.contains_key(sha)
                {
                    return Err(PvrexportError::MissingObject {
                        key: key.clone(),
                        sha: sha.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The uncompressed tar: `json` first, then `objects/<sha>`, files only.
    pub fn to_tar(&self) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let json = serde_json::to_vec_pretty(&self.state).unwrap_or_default();
        append_file(&mut b, "json", &json);
        for (sha, data) in &self.objects {
            append_file(&mut b, &format!("objects/{sha}"), data);
        }
        // Writing into a Vec cannot fail.
        b.into_inner().unwrap_or_default()
    }

    /// The gzipped tar (`.pvrexport.tgz`). Level 1: squashfs is already xz.
    pub fn to_tgz(&self) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = gz.write_all(&self.to_tar());
        gz.finish().unwrap_or_default()
    }

    /// Writes a `.tgz` export.
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.to_tgz())
    }

    /// Parses a tar or tar.gz export (gzip detected by its magic). Does not
    /// verify; call [`Pvrexport::verify`].
    pub fn parse(bytes: &[u8]) -> Result<Self, PvrexportError> {
        let mut raw = Vec::new();
        if bytes.starts_with(&[0x1f, 0x8b]) {
            flate2::read::GzDecoder::new(bytes).read_to_end(&mut raw)?;
        } else {
            raw = bytes.to_vec();
        }
        let mut state = None;
        let mut objects = BTreeMap::new();
        let mut ar = tar::Archive::new(&raw[..]);
        for entry in ar.entries()? {
            let mut entry = entry?;
            let path = entry.path()?.to_string_lossy().into_owned();
            let path = path.trim_start_matches("./").to_string();
            if entry.header().entry_type().is_dir() {
                continue;
            }
            let mut data = Vec::new();
            entry.read_to_end(&mut data)?;
            if path == "json" {
                state = Some(serde_json::from_slice::<Map<String, Value>>(&data)?);
            } else if let Some(sha) = path.strip_prefix("objects/") {
                objects.insert(sha.to_string(), data);
            } else {
                return Err(PvrexportError::UnexpectedEntry(path));
            }
        }
        Ok(Pvrexport {
            state: state.ok_or(PvrexportError::MissingJson)?,
            objects,
        })
    }

    /// Reads an export file.
    pub fn read(path: &Path) -> Result<Self, PvrexportError> {
        Self::parse(&std::fs::read(path)?)
    }
}

fn is_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn append_file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    // Writing into a Vec cannot fail; names are short ASCII.
    let _ = b.append_data(&mut h, name, data);
}
