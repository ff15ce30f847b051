//! First-boot install of `/usr/lib/pantavisor/pvtx.d/*` into revision 0.
//!
//! Each file is a pvrexport (tar, optionally gzipped) holding `json` (a
//! partial state) and `objects/<sha256>`. Objects are stored under the
//! name the export gives them without checking it, as upstream's pvtx does
//! (Pantavisor checks them when it loads the revision, see
//! [`crate::launch`]); the partial states are merged key by key (later files win) into
//! `trails/0/.pvr/json`. Like upstream's layout, `trails/0/<key>` holds each
//! state entry as a file (JSON values written out, object references
//! hard-linked to `objects/<sha>`). The marker `.pvtx-done` makes this
//! happen once per storage volume; it is only written on success so a
//! failed install is retried on the next boot.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use thiserror::Error;

use crate::paths::Paths;

/// Install failures; every variant names the offending file.
#[derive(Debug, Error)]
pub enum InstallError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pvrexport '{file}': not a readable tar archive: {source}")]
    Tar {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("pvrexport '{file}': no 'json' entry")]
    NoJson { file: PathBuf },
    #[error("pvrexport '{file}': 'json' is not a JSON object: {reason}")]
    BadJson { file: PathBuf, reason: String },
    #[error("pvrexport '{file}': entry '{entry}' is not a valid object name")]
    BadObjectName { file: PathBuf, entry: String },
    #[error("state key '{key}' refers to object '{sha}' which no pvrexport provided")]
    MissingObject { key: String, sha: String },
    #[error("revision 0 state '{path}' unreadable: {reason}")]
    BadTrail { path: PathBuf, reason: String },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> InstallError + '_ {
    move |source| InstallError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What [`ensure_installed`] did.
#[derive(Debug)]
pub struct Installed {
    /// The merged revision-0 state.
    pub state: Value,
    /// Files installed now (empty when the marker was already present).
    pub files: Vec<PathBuf>,
}

/// Installs pvtx.d on first boot, then returns revision 0's state.
pub fn ensure_installed(paths: &Paths) -> Result<Installed, InstallError> {
    let marker = paths.install_marker();
    if marker.exists() {
        let state = read_trail(paths, "0")?;
        return Ok(Installed {
            state,
            files: Vec::new(),
        });
    }
    let files = list_exports(&paths.pvtx_d())?;
    let objects = paths.objects();
    fs::create_dir_all(&objects).map_err(io_err(&objects))?;
    let mut merged = Map::new();
    merged.insert(
        "#spec".to_owned(),
        Value::String("pantavisor-service-system@1".to_owned()),
    );
    for file in &files {
        let part = unpack(file, &objects)?;
        for (k, v) in part {
            merged.insert(k, v);
        }
    }
    for (key, v) in &merged {
        if let Some(sha) = object_ref(key, v) {
            if !objects.join(sha).is_file() {
                return Err(InstallError::MissingObject {
                    key: key.clone(),
                    sha: sha.to_owned(),
                });
            }
        }
    }
    write_trail(paths, "0", &merged)?;
    // What upstream records for the revision pvtx installs (GET /steps).
    let progress = paths.trail("0").join(".pv/progress");
    if let Some(d) = progress.parent() {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    fs::write(&progress, crate::ctrl::store::FACTORY_PROGRESS).map_err(io_err(&progress))?;
    fs::write(&marker, b"").map_err(io_err(&marker))?;
    Ok(Installed {
        state: Value::Object(merged),
        files,
    })
}

/// Regular files of pvtx.d in name order (a missing directory is empty).
fn list_exports(dir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut files = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io_err(dir))?;
        let p = entry.path();
        if p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// A state value that names an object: a 64-hex string on a non-JSON key.
pub fn object_ref<'a>(key: &str, v: &'a Value) -> Option<&'a str> {
    let s = v.as_str()?;
    if key == "#spec" || key.ends_with(".json") {
        return None;
    }
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

fn unpack(file: &Path, objects: &Path) -> Result<Map<String, Value>, InstallError> {
    let tar_err = |source| InstallError::Tar {
        file: file.to_owned(),
        source,
    };
    let mut f = File::open(file).map_err(io_err(file))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_err(file))?;
    drop(f);
    let f = File::open(file).map_err(io_err(file))?;
    let reader: Box<dyn Read> = if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(f))
    } else {
        Box::new(f)
    };
    let mut archive = tar::Archive::new(reader);
    let mut json: Option<Map<String, Value>> = None;
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry
            .path()
            .map_err(tar_err)?
            .to_string_lossy()
            .into_owned();
        let name = name.trim_start_matches("./");
        if name == "json" {
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf).map_err(tar_err)?;
            let v: Value = serde_json::from_slice(&buf).map_err(|e| InstallError::BadJson {
                file: file.to_owned(),
                reason: e.to_string(),
            })?;
            match v {
                Value::Object(m) => json = Some(m),
                _ => {
                    return Err(InstallError::BadJson {
                        file: file.to_owned(),
                        reason: "not an object".to_owned(),
                    })
                }
            }
        } else if let Some(sha) = name.strip_prefix("objects/") {
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(InstallError::BadObjectName {
                    file: file.to_owned(),
                    entry: name.to_owned(),
                });
            }
            store_object(file, sha, &mut entry, objects)?;
        }
    }
    json.ok_or_else(|| InstallError::NoJson {
        file: file.to_owned(),
    })
}

/// Streams an object into the store through a temp file, so it only
/// becomes visible under its name once complete.
fn store_object(
    file: &Path,
    sha: &str,
    src: &mut impl Read,
    objects: &Path,
) -> Result<(), InstallError> {
    let tmp = objects.join(format!(".tmp-{sha}"));
    let mut out = File::create(&tmp).map_err(io_err(&tmp))?;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = src.read(&mut buf).map_err(|source| InstallError::Tar {
            file: file.to_owned(),
            source,
        })?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n]).map_err(io_err(&tmp))?;
    }
    drop(out);
    let dst = objects.join(sha.to_ascii_lowercase());
    fs::rename(&tmp, &dst).map_err(io_err(&dst))
}

fn write_trail(paths: &Paths, rev: &str, state: &Map<String, Value>) -> Result<(), InstallError> {
    let trail = paths.trail(rev);
    let json_path = paths.trail_json(rev);
    if let Some(d) = json_path.parent() {
        fs::create_dir_all(d).map_err(io_err(d))?;
    }
    let text = serde_json::to_vec(state).unwrap_or_default();
    fs::write(&json_path, text).map_err(io_err(&json_path))?;
    for (key, v) in state {
        if key.starts_with('#') || key.contains("..") || key.starts_with('/') {
            continue;
        }
        let dst = trail.join(key);
        if let Some(d) = dst.parent() {
            fs::create_dir_all(d).map_err(io_err(d))?;
        }
        let _ = fs::remove_file(&dst);
        if let Some(sha) = object_ref(key, v) {
            let src = paths.objects().join(sha);
            if fs::hard_link(&src, &dst).is_err() {
                fs::copy(&src, &dst).map_err(io_err(&dst))?;
            }
        } else {
            let text = serde_json::to_vec_pretty(v).unwrap_or_default();
            fs::write(&dst, text).map_err(io_err(&dst))?;
        }
    }
    Ok(())
}

/// Reads an installed revision's state.
pub fn read_trail(paths: &Paths, rev: &str) -> Result<Value, InstallError> {
    let p = paths.trail_json(rev);
    let bytes = fs::read(&p).map_err(io_err(&p))?;
    serde_json::from_slice(&bytes).map_err(|e| InstallError::BadTrail {
        path: p,
        reason: e.to_string(),
    })
}
