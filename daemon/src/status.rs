//! The status socket and the `pv-xconnect status` client.
//!
//! Protocol (JSON over a Unix stream socket, one exchange per connection):
//! the client writes the line `status\n`; the daemon answers one line
//! `{"links":[LinkStatus, ...]}\n` and closes. Anything else is answered with
//! `{"error":"..."}`. Counters are read at request time, so they are live.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::error::PathError;
use crate::graph::ServiceType;
use crate::reconcile::StatusEntry;
use crate::shutdown::Shutdown;

/// Default path of the status socket. Not next to pv-ctrl: Pantavisor
/// bind-mounts `/run/pantavisor/pv` into containers, and the status shows
/// every link's host pids.
pub const DEFAULT_SOCKET: &str = "/run/pv-xconnect/status.sock";
/// The only request.
pub const REQUEST: &str = "status";
/// How long a client may take to send its request line.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(2);

/// One link as reported by the status socket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkStatus {
    pub consumer: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub target: String,
    pub provider: String,
    pub consumer_pid: i32,
    pub provider_pid: i32,
    /// `pending`, `injected`, `failed` or `unsupported`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Socket links once started: `relay`, or `passthrough` (the
    /// provider's socket is bound into the consumer; nothing is counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub live_sessions: u64,
    pub total_sessions: u64,
    pub bytes_relayed: u64,
}

impl LinkStatus {
    fn from_entry(e: &StatusEntry) -> Self {
        let load = |f: fn(&crate::link::LinkStats) -> &std::sync::atomic::AtomicU64| {
            e.stats
                .as_ref()
                .map(|s| f(s).load(Ordering::Relaxed))
                .unwrap_or(0)
        };
        Self {
            consumer: e.spec.consumer.clone(),
            name: e.spec.name.clone(),
            kind: e.spec.kind.to_string(),
            target: e.spec.target.display().to_string(),
            provider: e.spec.provider.clone(),
            consumer_pid: e.spec.consumer_pid,
            provider_pid: e.spec.provider_pid,
            state: e.state.label().to_string(),
            reason: e.state.reason().map(str::to_string),
            mode: match &e.stats {
                Some(s) if s.is_passthrough() => Some("passthrough".into()),
                Some(_)
                    if matches!(
                        e.spec.kind,
                        ServiceType::Unix
                            | ServiceType::Rest
                            | ServiceType::Dbus
                            | ServiceType::Wayland
                    ) =>
                {
                    Some("relay".into())
                }
                _ => None,
            },
            live_sessions: load(|s| &s.live_sessions),
            total_sessions: load(|s| &s.total_sessions),
            bytes_relayed: load(|s| &s.bytes_relayed),
        }
    }

    /// The line `pv-xconnect status` prints: `key=value` pairs, state last
    /// but the counters, so it is both readable and easy to grep. Names and
    /// paths come from containers: quoted and escaped unless plain words,
    /// so none can forge a field or reach the terminal raw.
    pub fn line(&self) -> String {
        let state = match &self.reason {
            Some(r) if self.state != "unsupported" => format!("{}: {r}", self.state),
            _ => self.state.clone(),
        };
        use crate::logging::Escaped;
        let mode = match &self.mode {
            Some(m) => format!(" mode={}", Escaped(m)),
            None => String::new(),
        };
        format!(
            "consumer={} name={} type={} target={} provider={} pids={}/{} state={:?}{mode} sessions={}/{} bytes={}",
            Escaped(&self.consumer),
            Escaped(&self.name),
            Escaped(&self.kind),
            Escaped(&self.target),
            Escaped(&self.provider),
            self.consumer_pid,
            self.provider_pid,
            state,
            self.live_sessions,
            self.total_sessions,
            self.bytes_relayed,
        )
    }
}

/// The daemon's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Why the status socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("{0} is in use by a running pv-xconnect")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; not removing it")]
    NotASocket(PathBuf),
    #[error(transparent)]
    Io(#[from] PathError),
}

/// Bind the status socket: create its directory, replace a stale socket
/// file, refuse to take over a live one or to delete a non-socket.
pub async fn bind(path: &Path) -> Result<UnixListener, StatusError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(PathError::at("create directory", dir))?;
    }
    match tokio::fs::symlink_metadata(path).await {
        Ok(meta) if meta.file_type().is_socket() => {
            if UnixStream::connect(path).await.is_ok() {
                return Err(StatusError::InUse(path.to_path_buf()));
            }
            debug!("removing stale status socket {}", path.display());
            tokio::fs::remove_file(path)
                .await
                .map_err(PathError::at("remove stale", path))?;
        }
        Ok(_) => return Err(StatusError::NotASocket(path.to_path_buf())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(PathError::at("stat", path)(e).into()),
    }
    Ok(UnixListener::bind(path).map_err(PathError::at("bind", path))?)
}

/// Answer status requests until `shutdown`, then remove the socket file.
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    status: watch::Receiver<Vec<StatusEntry>>,
    shutdown: Shutdown,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let status = status.clone();
                    tokio::spawn(async move {
                        if let Err(e) = answer(stream, status).await {
                            debug!("status client: {e}");
                        }
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!("status socket accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
    drop(listener);
    if let Err(e) = std::fs::remove_file(&path) {
        if e.kind() != io::ErrorKind::NotFound {
            warn!("removing status socket {}: {e}", path.display());
        }
    }
}

async fn answer(stream: UnixStream, status: watch::Receiver<Vec<StatusEntry>>) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = BufReader::new(read.take(1024));
    tokio::time::timeout(CLIENT_TIMEOUT, reader.read_line(&mut line))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no request"))??;
    let reply = if line.trim() == REQUEST {
        let links = status.borrow().iter().map(LinkStatus::from_entry).collect();
        Reply { links, error: None }
    } else {
        Reply {
            links: Vec::new(),
            error: Some(format!("unknown request {:?}", line.trim())),
        }
    };
    let mut out = serde_json::to_vec(&reply).map_err(io::Error::other)?;
    out.push(b'\n');
    write.write_all(&out).await?;
    write.shutdown().await
}

/// Ask a running daemon for its links.
pub async fn query(path: &Path) -> anyhow::Result<Vec<LinkStatus>> {
    use anyhow::Context;
    let mut stream = UnixStream::connect(path)
        .await
        .with_context(|| format!("connecting to {}", path.display()))?;
    stream.write_all(format!("{REQUEST}\n").as_bytes()).await?;
    let mut body = Vec::new();
    tokio::time::timeout(
        CLIENT_TIMEOUT,
        (&mut stream).take(64 * 1024 * 1024).read_to_end(&mut body),
    )
    .await
    .context("no answer from the daemon")??;
    let reply: Reply = serde_json::from_slice(&body).context("answer is not valid JSON")?;
    if let Some(e) = reply.error {
        anyhow::bail!("daemon answered: {e}");
    }
    Ok(reply.links)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(mode: Option<&str>) -> LinkStatus {
        LinkStatus {
            consumer: "c".into(),
            name: "raw".into(),
            kind: "unix".into(),
            target: "/run/pv/x.sock".into(),
            provider: "p".into(),
            consumer_pid: 10,
            provider_pid: 20,
            state: "injected".into(),
            reason: None,
            mode: mode.map(str::to_string),
            live_sessions: 0,
            total_sessions: 0,
            bytes_relayed: 0,
        }
    }

    #[test]
    fn the_mode_is_shown_when_known_and_older_answers_still_parse() {
        assert!(status(Some("passthrough"))
            .line()
            .contains(r#"state="injected" mode=passthrough sessions=0/0"#));
        assert!(status(None)
            .line()
            .contains(r#"state="injected" sessions=0/0"#));
        // A daemon without modes answers without the field.
        let old = r#"{"consumer":"c","name":"raw","type":"unix","target":"/t","provider":"p","consumer_pid":1,"provider_pid":2,"state":"injected","live_sessions":0,"total_sessions":0,"bytes_relayed":0}"#;
        let parsed: LinkStatus = serde_json::from_str(old).unwrap();
        assert_eq!(parsed.mode, None);
    }
}
