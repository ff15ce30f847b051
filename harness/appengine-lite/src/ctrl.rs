//! pv-ctrl: Pantavisor's HTTP control API on a Unix socket.
//!
//! Routing and error shapes follow upstream's libevent server (ctrl/ctrl.c,
//! ctrl_util.c): plain endpoints match the exact path, `{}` endpoints match
//! by path segments; a wrong method gives 400 `Method not supported for this
//! endpoint`; anything else 400 `unknown endpoint: <uri>`; errors are
//! `{"Error":"<msg>"}` with `Content-Type: application/json`; success
//! without a body is an empty 200. A request whose `Host` is neither
//! absent, empty nor `localhost` gets no answer at all: upstream's header
//! callback fails it and libevent closes the connection without a reply.
//!
//! Not imitated: caller identity (SO_PEERCRED → cgroup → mgmt role). Every
//! caller is treated as mgmt, so the 403/500 caller answers never occur.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::UnixListener;

use crate::daemon::Daemon;
use crate::engine::Engine;

/// What pv-ctrl serves from.
pub struct Ctrl {
    pub engine: Arc<Engine>,
    pub daemons: Vec<Arc<Daemon>>,
}

type Resp = Response<Full<Bytes>>;

fn json(code: StatusCode, body: String) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

fn error(code: StatusCode, msg: &str) -> Resp {
    json(code, serde_json::json!({ "Error": msg }).to_string())
}

fn ok() -> Resp {
    Response::new(Full::new(Bytes::new()))
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
            let svc = service_fn(move |req| {
                let ctrl = ctrl.clone();
                async move { handle(&ctrl, req).await }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                // pvcurl sends with `nc -N` (shutdown(SHUT_WR) after the
                // request); without this hyper may drop the connection on
                // that EOF before answering.
                .half_close(true)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

async fn read_body(req: Request<Incoming>) -> Result<Bytes, Resp> {
    // Upstream caps PUT bodies at 1024 bytes with 507; reading a little
    // more than that is enough to tell.
    match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(_) => Err(error(
            StatusCode::INSUFFICIENT_STORAGE,
            "Data size exceeds the limit",
        )),
    }
}

/// A request refused before routing; hyper closes the connection without
/// writing a response.
#[derive(Debug, thiserror::Error)]
#[error("request with foreign Host header refused")]
pub struct ForeignHost;

/// Checks the Host header, then routes.
pub async fn handle(ctrl: &Ctrl, req: Request<Incoming>) -> Result<Resp, ForeignHost> {
    if let Some(host) = req.headers().get(http::header::HOST) {
        let h = host.as_bytes();
        if !h.is_empty() && h != b"localhost" {
            return Err(ForeignHost);
        }
    }
    Ok(route(ctrl, req).await)
}

/// Routes one request.
async fn route(ctrl: &Ctrl, req: Request<Incoming>) -> Resp {
    let uri = req.uri().to_string();
    let path = req.uri().path().to_owned();
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let method = req.method().clone();
    let wrong_method = || {
        error(
            StatusCode::BAD_REQUEST,
            "Method not supported for this endpoint",
        )
    };

    match path.as_str() {
        "/containers" => {
            return if method == Method::GET {
                json(StatusCode::OK, ctrl.engine.containers_json())
            } else {
                wrong_method()
            }
        }
        "/daemons" => {
            return if method == Method::GET {
                let list: Vec<_> = ctrl.daemons.iter().map(|d| d.json()).collect();
                json(StatusCode::OK, serde_json::Value::Array(list).to_string())
            } else {
                wrong_method()
            }
        }
        "/xconnect-graph" => {
            return if method == Method::GET {
                match ctrl.engine.graph_json() {
                    Ok(body) => json(StatusCode::OK, body),
                    Err((code, msg)) => error(code, &msg),
                }
            } else {
                wrong_method()
            }
        }
        "/device-meta" => {
            return if method == Method::GET {
                json(StatusCode::OK, ctrl.engine.devmeta_json())
            } else {
                wrong_method()
            }
        }
        _ => {}
    }

    match segs.as_slice() {
        ["containers", name] => {
            if method != Method::PUT {
                return wrong_method();
            }
            let name = name.to_string();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match ctrl.engine.put_container(&name, &body).await {
                Ok(()) => ok(),
                Err((code, msg)) => error(code, &msg),
            }
        }
        ["daemons", name] => {
            if method != Method::PUT {
                return wrong_method();
            }
            let Some(d) = ctrl.daemons.iter().find(|d| d.name() == *name).cloned() else {
                return error(StatusCode::NOT_FOUND, "Daemon not found");
            };
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            match d.put(&body) {
                Ok(()) => ok(),
                Err((code, msg)) => error(code, &msg),
            }
        }
        _ => error(StatusCode::BAD_REQUEST, &format!("unknown endpoint: {uri}")),
    }
}
