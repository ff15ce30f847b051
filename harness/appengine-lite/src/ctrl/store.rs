//! Objects, steps (revisions) and the storage garbage collector, with
//! upstream's answers (ctrl_objects_ep.c, ctrl_steps_ep.c,
//! ctrl_storage_ep.c; checked on the real appengine):
//!
//! - `GET /objects`: `[{"sha256":"…","size":"<bytes>"}]`; `GET
//!   /objects/<sha>` streams it (`application/octet-stream`); a name that
//!   is not 64 characters, or no such object: 400 `Request has bad object
//!   name`. `PUT /objects/<sha>` stores the body, 422 `Object has bad
//!   checksum` when it does not hash to its name; an object already there
//!   and valid is accepted without being rewritten.
//! - `GET /steps`: `[{"name":"0", "date":"…", "commitmsg":"",
//!   "progress":{…}}]` (upstream's spacing); `GET /steps/<rev>` the state
//!   JSON (`current` is revision 0), `GET /steps/<rev>/progress` its
//!   progress; a missing one: 404 `Resource does not exist`. `PUT
//!   /steps/locals/<name>` stores a state JSON (422 `Parser: State JSON has
//!   bad format` and nothing kept unless it is a
//!   `pantavisor-service-system@1` object); `PUT /steps/<rev>/commitmsg`
//!   its message. Only revision 0 ever runs here.
//! - `POST /storage/gc`: removes objects no revision refers to and answers
//!   `{"reclaimed": <bytes>}`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::wire::Response;
use crate::install::object_ref;
use crate::paths::Paths;

/// Progress of the factory revision, as upstream writes it.
pub const FACTORY_PROGRESS: &str =
    r#"{"status":"DONE","status-msg":"Factory revision","progress":100,"retries":0}"#;

fn bad_object() -> Response {
    Response::error(400, "Request has bad object name")
}

fn valid_name(sha: &str) -> bool {
    sha.len() == 64 && sha.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `GET /objects`.
pub fn list_objects(paths: &Paths) -> Response {
    let mut list: Vec<(String, u64)> = std::fs::read_dir(paths.objects())
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    let meta = e.metadata().ok()?;
                    (meta.is_file() && valid_name(&name)).then_some((name, meta.len()))
                })
                .collect()
        })
        .unwrap_or_default();
    list.sort();
    let items: Vec<String> = list
        .iter()
        .map(|(n, s)| format!(r#"{{"sha256":"{n}","size":"{s}"}}"#))
        .collect();
    Response::json(200, format!("[{}]", items.join(",")))
}

/// `GET /objects/<sha>`.
pub fn get_object(paths: &Paths, sha: &str) -> Response {
    if sha.len() != 64 {
        return bad_object();
    }
    match std::fs::read(paths.objects().join(sha)) {
        Ok(data) => Response {
            content_type: "application/octet-stream",
            ..Response::json(200, data)
        },
        Err(_) => bad_object(),
    }
}

/// `PUT /objects/<sha>`.
pub fn put_object(paths: &Paths, sha: &str, body: &[u8]) -> Response {
    if !valid_name(sha) {
        return bad_object();
    }
    let dst = paths.objects().join(sha);
    if std::fs::read(&dst)
        .is_ok_and(|d| hex::encode(Sha256::digest(&d)) == sha.to_ascii_lowercase())
    {
        return Response::ok();
    }
    if hex::encode(Sha256::digest(body)) != sha.to_ascii_lowercase() {
        return Response::error(422, "Object has bad checksum");
    }
    let tmp = paths.objects().join(format!(".tmp-{sha}"));
    let stored = std::fs::create_dir_all(paths.objects())
        .and_then(|_| std::fs::write(&tmp, body))
        .and_then(|_| std::fs::rename(&tmp, &dst));
    match stored {
        Ok(()) => Response::ok(),
        Err(_) => Response::error(507, "Not enough disk space available"),
    }
}

/// Revision directories: `0` and `locals/<name>`.
fn revisions(paths: &Paths) -> Vec<String> {
    let trails = paths.storage().join("trails");
    let mut revs = Vec::new();
    if let Ok(rd) = std::fs::read_dir(&trails) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n == "locals" {
                if let Ok(l) = std::fs::read_dir(e.path()) {
                    revs.extend(
                        l.flatten()
                            .map(|x| format!("locals/{}", x.file_name().to_string_lossy())),
                    );
                }
            } else if e.path().join(".pvr/json").is_file() {
                revs.push(n);
            }
        }
    }
    revs.sort();
    revs
}

/// A revision's directory, if the name is one (never outside `trails`).
fn trail(paths: &Paths, rev: &str) -> Option<PathBuf> {
    let rev = if rev == "current" { "0" } else { rev };
    let ok = !rev.is_empty()
        && rev
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && !p.contains('\0'));
    ok.then(|| paths.storage().join("trails").join(rev))
}

fn iso_date(p: &Path) -> String {
    let secs = std::fs::metadata(p)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs() as i64);
    let (y, m, d, hh, mm, ss) = crate::pvlog::civil(secs);
    format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z")
}

fn progress_of(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(".pv/progress")).ok()
}

/// `GET /steps`.
pub fn list_steps(paths: &Paths) -> Response {
    let items: Vec<String> = revisions(paths)
        .iter()
        .filter_map(|rev| {
            let dir = trail(paths, rev)?;
            let msg = std::fs::read_to_string(dir.join(".pv/commitmsg")).unwrap_or_default();
            let progress = progress_of(&dir).unwrap_or_else(|| "{}".into());
            Some(format!(
                r#"{{"name":{}, "date":"{}", "commitmsg":{}, "progress":{}}}"#,
                Value::String(rev.clone()),
                iso_date(&dir),
                Value::String(msg),
                progress.trim()
            ))
        })
        .collect();
    Response::json(200, format!("[{}]", items.join(",")))
}

fn missing() -> Response {
    Response::error(404, "Resource does not exist")
}

/// `GET /steps/<rev>`.
pub fn get_step(paths: &Paths, rev: &str) -> Response {
    match trail(paths, rev).and_then(|d| std::fs::read(d.join(".pvr/json")).ok()) {
        Some(body) => Response::json(200, body),
        None => missing(),
    }
}

/// `GET /steps/<rev>/progress`.
pub fn get_progress(paths: &Paths, rev: &str) -> Response {
    match trail(paths, rev).and_then(|d| progress_of(&d)) {
        Some(body) => Response::json(200, body),
        None => missing(),
    }
}

/// `PUT /steps/locals/<name>`.
pub fn put_step(paths: &Paths, rev: &str, body: &[u8]) -> Response {
    let Some(dir) = trail(paths, rev) else {
        return Response::error(400, "Request has bad step name");
    };
    let state: Option<Value> = serde_json::from_slice(body).ok();
    let spec = state
        .as_ref()
        .and_then(|s| s.get("#spec"))
        .and_then(Value::as_str);
    if spec != Some("pantavisor-service-system@1") {
        return Response::error(422, "Parser: State JSON has bad format");
    }
    let stored = std::fs::create_dir_all(dir.join(".pvr"))
        .and_then(|_| std::fs::write(dir.join(".pvr/json"), body));
    match stored {
        Ok(()) => Response::ok(),
        Err(_) => Response::error(507, "Not enough disk space available"),
    }
}

/// `PUT /steps/<rev>/commitmsg`.
pub fn put_commitmsg(paths: &Paths, rev: &str, body: &[u8]) -> Response {
    if body.is_empty() {
        return Response::error(400, "No commit message");
    }
    if body.len() > 256 {
        return Response::error(507, "Not enough disk space available");
    }
    let Some(dir) = trail(paths, rev) else {
        return Response::error(400, "Request has bad step name");
    };
    match std::fs::create_dir_all(dir.join(".pv"))
        .and_then(|_| std::fs::write(dir.join(".pv/commitmsg"), body))
    {
        Ok(()) => Response::ok(),
        Err(_) => Response::error(500, "Cannot write message"),
    }
}

/// `POST /storage/gc`.
pub fn gc(paths: &Paths) -> Response {
    let mut used = BTreeSet::new();
    for rev in revisions(paths) {
        let Some(dir) = trail(paths, &rev) else {
            continue;
        };
        let Some(Value::Object(state)) = std::fs::read(dir.join(".pvr/json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        else {
            continue;
        };
        for (k, v) in &state {
            if let Some(sha) = object_ref(k, v) {
                used.insert(sha.to_ascii_lowercase());
            }
        }
    }
    let mut reclaimed: u64 = 0;
    if let Ok(rd) = std::fs::read_dir(paths.objects()) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if valid_name(&name) && !used.contains(&name.to_ascii_lowercase()) {
                let size = e.metadata().map_or(0, |m| m.len());
                if std::fs::remove_file(e.path()).is_ok() {
                    reclaimed += size;
                }
            }
        }
    }
    Response::json(200, format!("{{\"reclaimed\": {reclaimed}}}"))
}
