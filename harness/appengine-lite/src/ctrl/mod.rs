//! pv-ctrl: Pantavisor's HTTP control API on a Unix socket.
//!
//! Routing follows upstream's server (ctrl/ctrl.c): plain endpoints match
//! the path exactly, whatever the method (a wrong one gets 400 `Method not
//! supported for this endpoint`); `{}` endpoints match by `/`-separated
//! segments of the whole target (query included), tried in reverse
//! registration order, and a wrong method is the same 400; anything else is
//! 400 `unknown endpoint: <target>`. Errors are `{"Error":"<msg>"}`. The
//! wire format is in [`wire`].
//!
//! Endpoints (what `pvcontrol` uses, with upstream's answers):
//! containers, groups, daemons, xconnect-graph ([`crate::engine`],
//! [`crate::daemon`]); user-meta and device-meta ([`meta`]); objects,
//! steps and storage/gc ([`store`]); commands and signal ([`commands`]);
//! config, config2 and buildinfo ([`info`]).
//!
//! Not imitated: caller identity (SO_PEERCRED → cgroup → platform). Every
//! caller is Pantavisor itself (`_pv_`, mgmt), as a `docker exec` client is
//! on the real appengine: the 403 "Request not sent from mgmt platform"
//! answers never occur, and `POST /signal` always answers "Signal not
//! expected from this platform".

pub mod commands;
pub mod info;
pub mod meta;
pub mod store;
pub mod wire;

use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;

use crate::engine::Engine;
use crate::paths::Paths;
use crate::pvlog::PvLog;
use wire::{Request, Response};

/// What pv-ctrl serves from.
pub struct Ctrl {
    pub engine: Arc<Engine>,
    pub paths: Paths,
    pub log: Arc<PvLog>,
    pub meta: meta::Meta,
    pub commands: commands::Commands,
    pub info: info::Info,
}

impl Ctrl {
    /// A pv-ctrl for `engine` with fresh metadata and no pending command.
    pub fn new(engine: Arc<Engine>, paths: Paths, log: Arc<PvLog>, info: info::Info) -> Arc<Self> {
        Arc::new(Self {
            meta: meta::Meta::new(&paths),
            commands: commands::Commands::default(),
            engine,
            paths,
            log,
            info,
        })
    }
}

/// Binds the socket (replacing a stale one) with mode 0666 like upstream.
/// It is bound under a temporary name and renamed into place, so a client
/// that sees the path can connect at once (no bind-before-listen window).
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d)?;
    }
    let tmp = path.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))?;
    std::fs::rename(&tmp, path)?;
    Ok(l)
}

/// Accept loop; one task per connection.
pub async fn serve(listener: UnixListener, ctrl: Arc<Ctrl>) {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%e, "pv-ctrl accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let ctrl = ctrl.clone();
        tokio::spawn(async move {
            wire::serve(stream, |req| {
                let ctrl = ctrl.clone();
                async move { handle(&ctrl, req).await }
            })
            .await;
        });
    }
}

/// Checks the Host header, then routes; `None`: close without a reply.
pub async fn handle(ctrl: &Ctrl, req: Request) -> Option<Response> {
    if let Some(host) = req.header("host") {
        if !host.is_empty() && host != "localhost" {
            return None;
        }
    }
    Some(route(ctrl, req).await)
}

fn wrong_method() -> Response {
    Response::error(400, "Method not supported for this endpoint")
}

/// A plain endpoint's handler, when `path` is one.
async fn plain(ctrl: &Ctrl, req: &Request) -> Option<Response> {
    let m = req.method.as_str();
    let only = |want: &str, r: Response| if m == want { r } else { wrong_method() };
    let engine = &ctrl.engine;
    let result = |r: Result<String, crate::engine::CtrlError>| match r {
        Ok(body) => Response::json(200, body),
        Err((code, msg)) => Response::error(code.as_u16(), &msg),
    };
    Some(match req.path.as_str() {
        "/containers" => only("GET", result(engine.containers_json())),
        "/groups" => only("GET", result(engine.groups_json())),
        "/daemons" => only("GET", {
            let list: Vec<_> = engine.daemons().iter().map(|d| d.json()).collect();
            Response::json(200, serde_json::Value::Array(list).to_string())
        }),
        "/xconnect-graph" => only("GET", result(engine.graph_json())),
        "/signal" => {
            if m != "POST" {
                return Some(wrong_method());
            }
            commands::signal(ctrl, &req.body)
        }
        "/commands" => {
            if m != "POST" {
                return Some(wrong_method());
            }
            ctrl.commands.post(ctrl, &req.body)
        }
        "/user-meta" => only("GET", ctrl.meta.list_user()),
        "/device-meta" => only("GET", ctrl.meta.list_device(ctrl)),
        "/buildinfo" => only("GET", ctrl.info.buildinfo()),
        "/config" => only("GET", ctrl.info.config()),
        "/config2" => only("GET", ctrl.info.config2()),
        "/objects" => only("GET", store::list_objects(&ctrl.paths)),
        "/steps" => only("GET", store::list_steps(&ctrl.paths)),
        "/storage/gc" => {
            if m != "POST" {
                return Some(wrong_method());
            }
            store::gc(&ctrl.paths)
        }
        _ => return None,
    })
}

/// The `{}` endpoints as upstream registers them (method, pattern); they
/// are tried last-registered first.
const CUSTOM: &[(&str, &str)] = &[
    ("PUT", "/containers/{}"),
    ("PUT", "/objects/{}"),
    ("GET", "/objects/{}"),
    ("GET", "/steps/{}"),
    ("GET", "/steps/locals/{}"),
    ("PUT", "/steps/locals/{}"),
    ("GET", "/steps/{}/progress"),
    ("GET", "/steps/locals/{}/progress"),
    ("PUT", "/steps/{}/commitmsg"),
    ("PUT", "/steps/locals/{}/commitmsg"),
    ("PUT", "/user-meta/{}"),
    ("DELETE", "/user-meta/{}"),
    ("PUT", "/device-meta/{}"),
    ("DELETE", "/device-meta/{}"),
    ("PUT", "/daemons/{}"),
];

fn segments(s: &str) -> Vec<&str> {
    s.split('/').filter(|p| !p.is_empty()).collect()
}

fn matches(uri: &[&str], pattern: &str) -> bool {
    let p = segments(pattern);
    p.len() == uri.len() && p.iter().zip(uri).all(|(a, b)| a == b || *a == "{}")
}

/// Routes one request.
async fn route(ctrl: &Ctrl, req: Request) -> Response {
    if let Some(r) = plain(ctrl, &req).await {
        return r;
    }
    let segs = segments(&req.uri);
    let mut method_mismatch = false;
    for (method, pattern) in CUSTOM.iter().rev() {
        if !matches(&segs, pattern) {
            continue;
        }
        if *method != req.method {
            method_mismatch = true;
            continue;
        }
        return custom(ctrl, method, pattern, &segs, &req).await;
    }
    if method_mismatch {
        return wrong_method();
    }
    ctrl.log.warn(
        "ctrl",
        &format!("HTTP request received to an unknown endpoint: {}", req.uri),
    );
    Response::error(400, &format!("unknown endpoint: {}", req.uri))
}

async fn custom(
    ctrl: &Ctrl,
    method: &str,
    pattern: &str,
    segs: &[&str],
    req: &Request,
) -> Response {
    // The last segment of the target is the key, like upstream's strrchr.
    let last = req.uri.rsplit('/').next().unwrap_or("");
    match (method, pattern) {
        ("PUT", "/containers/{}") => match ctrl.engine.put_container(segs[1], &req.body).await {
            Ok(()) => Response::ok(),
            Err((code, msg)) => Response::error(code.as_u16(), &msg),
        },
        ("PUT", "/daemons/{}") => {
            let Some(d) = ctrl
                .engine
                .daemons()
                .into_iter()
                .find(|d| d.name() == segs[1])
            else {
                return Response::error(404, "Daemon not found");
            };
            match d.put(&req.body) {
                Ok(()) => Response::ok(),
                Err((code, msg)) => Response::error(code.as_u16(), &msg),
            }
        }
        ("PUT", "/user-meta/{}") => ctrl.meta.put_user(last, req),
        ("DELETE", "/user-meta/{}") => ctrl.meta.delete_user(last),
        ("PUT", "/device-meta/{}") => ctrl.meta.put_device(last, req),
        ("DELETE", "/device-meta/{}") => ctrl.meta.delete_device(last),
        ("GET", "/objects/{}") => store::get_object(&ctrl.paths, segs[1]),
        ("PUT", "/objects/{}") => store::put_object(&ctrl.paths, segs[1], &req.body),
        ("GET", "/steps/{}") | ("GET", "/steps/locals/{}") => {
            store::get_step(&ctrl.paths, &step_name(&req.uri))
        }
        ("PUT", "/steps/locals/{}") => {
            store::put_step(&ctrl.paths, &step_name(&req.uri), &req.body)
        }
        ("GET", "/steps/{}/progress") | ("GET", "/steps/locals/{}/progress") => {
            store::get_progress(&ctrl.paths, &step_name(&req.uri))
        }
        ("PUT", "/steps/{}/commitmsg") | ("PUT", "/steps/locals/{}/commitmsg") => {
            store::put_commitmsg(&ctrl.paths, &step_name(&req.uri), &req.body)
        }
        _ => Response::error(400, &format!("unknown endpoint: {}", req.uri)),
    }
}

/// The revision a `/steps/...` target names: everything after `/steps/`
/// up to `/progress` or `/commitmsg`.
fn step_name(uri: &str) -> String {
    let rest = uri.trim_start_matches('/');
    let rest = rest.strip_prefix("steps/").unwrap_or(rest);
    let end = rest
        .find("/progress")
        .or_else(|| rest.find("/commitmsg"))
        .unwrap_or(rest.len());
    rest[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_patterns_match_by_segments() {
        assert!(matches(&segments("/containers/x"), "/containers/{}"));
        assert!(!matches(&segments("/containers/"), "/containers/{}"));
        assert!(!matches(&segments("/containers/x/y"), "/containers/{}"));
        assert!(matches(&segments("/steps/locals/a"), "/steps/locals/{}"));
        assert!(matches(
            &segments("/steps/0/progress"),
            "/steps/{}/progress"
        ));
    }

    #[test]
    fn step_names() {
        assert_eq!(step_name("/steps/0"), "0");
        assert_eq!(step_name("/steps/locals/abc/progress"), "locals/abc");
        assert_eq!(step_name("/steps/locals/abc/commitmsg"), "locals/abc");
    }
}
