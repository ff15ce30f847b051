//! The managed daemon (`pv-xconnect`), as Pantavisor's init runs it:
//! spawned with no arguments, respawned ~5 s after it exits while respawn
//! is on, stopped (respawn off + SIGTERM) and started through
//! `PUT /daemons/{name}`. Its stdout and stderr are appended to
//! `pantavisor.log` line by line.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use http::StatusCode;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::Notify;

use crate::engine::{parse_action, CtrlError};
use crate::pvlog::PvLog;

#[derive(Debug, Clone, Serialize)]
struct DaemonJson {
    name: String,
    pid: i64,
    respawn: bool,
}

/// One managed daemon.
pub struct Daemon {
    name: String,
    bin: PathBuf,
    respawn_delay: Duration,
    log: Arc<PvLog>,
    env: Vec<(String, String)>,
    state: Mutex<DaemonJson>,
    wake: Notify,
}

impl Daemon {
    /// A daemon named after its binary's file name.
    pub fn new(bin: PathBuf, respawn_delay: Duration, log: Arc<PvLog>) -> Arc<Self> {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pv-xconnect".to_owned());
        Arc::new(Self {
            state: Mutex::new(DaemonJson {
                name: name.clone(),
                pid: 0,
                respawn: true,
            }),
            name,
            bin,
            respawn_delay,
            log,
            env: Vec::new(),
            wake: Notify::new(),
        })
    }

    /// Same, with extra environment for the child (used when running
    /// under a root prefix, so the daemon finds the prefixed pv-ctrl).
    pub fn with_env(
        bin: PathBuf,
        respawn_delay: Duration,
        log: Arc<PvLog>,
        env: Vec<(String, String)>,
    ) -> Arc<Self> {
        let mut d = Self::new(bin, respawn_delay, log);
        if let Some(d) = Arc::get_mut(&mut d) {
            d.env = env;
        }
        d
    }

    fn lock(&self) -> MutexGuard<'_, DaemonJson> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Name shown in `/daemons`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current pid (<= 0 when not running).
    pub fn pid(&self) -> i64 {
        self.lock().pid
    }

    /// `GET /daemons` entry.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.lock().clone()).unwrap_or_default()
    }

    /// `PUT /daemons/{name}`: unknown actions are accepted and ignored, as
    /// upstream does.
    pub fn put(&self, body: &[u8]) -> Result<(), CtrlError> {
        let action = match parse_action(body) {
            Ok(a) => Some(a),
            Err((StatusCode::BAD_REQUEST, m)) if m == "Missing 'action' field" => None,
            Err(e) => return Err(e),
        };
        match action.as_deref() {
            Some("stop") => {
                self.log.info(
                    "daemons-ep",
                    &format!("Stopping daemon {} via ctrl", self.name),
                );
                let pid = {
                    let mut s = self.lock();
                    s.respawn = false;
                    s.pid
                };
                if pid > 0 {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            Some("start") => {
                self.log.info(
                    "daemons-ep",
                    &format!("Starting daemon {} via ctrl", self.name),
                );
                let mut s = self.lock();
                s.respawn = true;
                if s.pid <= 0 {
                    s.pid = 0;
                    self.wake.notify_one();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Spawn/wait/respawn loop; runs for the life of the appengine.
    pub async fn run(self: Arc<Self>) {
        loop {
            if !self.lock().respawn {
                self.wake.notified().await;
                continue;
            }
            let mut cmd = Command::new(&self.bin);
            cmd.envs(self.env.iter().map(|(k, v)| (k, v)))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn() {
                Ok(mut child) => {
                    let pid = child.id().map_or(-1, i64::from);
                    self.lock().pid = pid;
                    self.log.info(
                        "init",
                        &format!("daemon {} started with pid {pid}", self.name),
                    );
                    let out = child.stdout.take().map(|o| self.pump(o));
                    let err = child.stderr.take().map(|e| self.pump(e));
                    let status = child.wait().await;
                    // Drain what the daemon printed before it died.
                    for t in [out, err].into_iter().flatten() {
                        let _ = t.await;
                    }
                    self.lock().pid = -1;
                    let how = match status {
                        Ok(s) => s.to_string(),
                        Err(e) => e.to_string(),
                    };
                    self.log
                        .warn("init", &format!("daemon {} exited ({how})", self.name));
                }
                Err(e) => {
                    self.lock().pid = -1;
                    self.log.error(
                        "init",
                        &format!("could not spawn {}: {e}", self.bin.display()),
                    );
                }
            }
            if self.lock().respawn {
                tokio::select! {
                    _ = tokio::time::sleep(self.respawn_delay) => {}
                    _ = self.wake.notified() => {}
                }
            }
        }
    }

    fn pump(
        self: &Arc<Self>,
        r: impl AsyncRead + Unpin + Send + 'static,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                me.log.raw(&line);
            }
        })
    }

    /// SIGTERM without respawn (appengine shutdown).
    pub fn terminate(&self) {
        let pid = {
            let mut s = self.lock();
            s.respawn = false;
            s.pid
        };
        if pid > 0 {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}
