//! A tiny fake pv-ctrl for tests: serves `GET /xconnect-graph` on a Unix
//! socket with a settable answer, like Pantavisor's evhttp server would.
//!
//! It runs on the calling test's tokio runtime. Besides a normal HTTP/1.1 answer it can
//! answer HTTP/1.0 without Content-Length and close (the body split over
//! several writes, so a client that parses only its first read fails), an
//! error status with pv-ctrl's `{"Error":..}` body, non-HTTP garbage, or
//! nothing at all. Like pv-ctrl it refuses a `Host` other than empty or
//! `localhost`, and unknown paths with 400.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::task::JoinHandle;

/// What the fake answers to the next requests.
#[derive(Debug, Clone)]
pub enum Reply {
    /// `HTTP/1.1 200` with Content-Length and this body.
    Graph(String),
    /// `HTTP/1.0 200`, no Content-Length, body in several writes, close.
    Http10(String),
    /// This status with `{"Error":"<msg>"}`, HTTP/1.1.
    Error(u16, String),
    /// These bytes as the whole answer (not HTTP), then close.
    Garbage(Vec<u8>),
    /// `HTTP/1.1 200` whose body is not JSON.
    NotJson(String),
    /// Read the request and never answer.
    Hang,
}

struct Inner {
    reply: Reply,
    requests: Vec<String>,
}

/// A running fake pv-ctrl.
pub struct FakePvCtrl {
    path: PathBuf,
    inner: Arc<Mutex<Inner>>,
    task: JoinHandle<()>,
}

impl FakePvCtrl {
    /// Bind `path` (removing a stale file) and serve `reply`.
    pub fn start(path: &Path, reply: Reply) -> Self {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path).expect("bind fake pv-ctrl");
        let inner = Arc::new(Mutex::new(Inner {
            reply,
            requests: Vec::new(),
        }));
        let state = inner.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                tokio::spawn(async move {
                    let _ = serve(stream, state).await;
                });
            }
        });
        Self {
            path: path.to_path_buf(),
            inner,
            task,
        }
    }

    /// Convenience: serve `graph` as a normal HTTP/1.1 answer.
    pub fn with_graph(path: &Path, graph: &str) -> Self {
        Self::start(path, Reply::Graph(graph.to_string()))
    }

    pub fn set(&self, reply: Reply) {
        self.inner.lock().expect("fake state").reply = reply;
    }

    pub fn set_graph(&self, graph: &str) {
        self.set(Reply::Graph(graph.to_string()));
    }

    /// The request heads received so far (request line and headers).
    pub fn requests(&self) -> Vec<String> {
        self.inner.lock().expect("fake state").requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.inner.lock().expect("fake state").requests.len()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stop accepting and remove the socket file (pv-ctrl gone).
    pub fn shutdown(self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for FakePvCtrl {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: UnixStream, state: Arc<Mutex<Inner>>) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 64 * 1024 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let reply = {
        let mut s = state.lock().expect("fake state");
        s.requests.push(head.clone());
        s.reply.clone()
    };
    let request_line = head.lines().next().unwrap_or("");
    let host = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("host"))
        .map(|(_, v)| v.trim().to_string());
    if let Some(h) = host.filter(|h| !h.is_empty() && h != "localhost") {
        return respond(&mut stream, 400, &format!("{{\"Error\":\"bad host {h}\"}}")).await;
    }
    let uri = request_line.split(' ').nth(1).unwrap_or("");
    if !request_line.starts_with("GET ") || uri != "/xconnect-graph" {
        return respond(
            &mut stream,
            400,
            &format!("{{\"Error\":\"unknown endpoint: {uri}\"}}"),
        )
        .await;
    }
    match reply {
        Reply::Graph(body) => respond(&mut stream, 200, &body).await,
        Reply::NotJson(body) => respond(&mut stream, 200, &body).await,
        Reply::Error(code, msg) => {
            respond(&mut stream, code, &format!("{{\"Error\":\"{msg}\"}}")).await
        }
        Reply::Http10(body) => {
            stream
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n")
                .await?;
            let bytes = body.as_bytes();
            let third = bytes.len() / 3;
            for chunk in [
                &bytes[..third],
                &bytes[third..2 * third],
                &bytes[2 * third..],
            ] {
                stream.write_all(chunk).await?;
                stream.flush().await?;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            stream.shutdown().await
        }
        Reply::Garbage(bytes) => {
            stream.write_all(&bytes).await?;
            stream.shutdown().await
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            Ok(())
        }
    }
}

async fn respond(stream: &mut UnixStream, code: u16, body: &str) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Status",
    };
    let head = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
