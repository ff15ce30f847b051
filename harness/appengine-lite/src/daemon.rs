//! Managed daemons, as Pantavisor's init runs them (daemons.c; checked on
//! the real appengine):
//!
//! - `/daemons` lists every daemon of the build: `hwrngd` (not run in the
//!   appengine: pid 0), `pv-xconnect`, and `pv-dbus` with the hosted bus.
//! - A daemon is spawned with its fixed command line and its output is
//!   appended to `pantavisor.log` line by line.
//! - Every spawn after the first is preceded by a placeholder
//!   `sleep <delay>` whose pid `/daemons` shows meanwhile: a daemon that
//!   exits comes back after ~5 s, and so does one started through pv-ctrl.
//! - `PUT /daemons/{name}` `stop`: respawn off and SIGTERM (the pid becomes
//!   -1 once it exited); `start`: respawn on, spawned if not running;
//!   anything else is accepted and ignored.
//! - `pv-dbus` runs in a private mount namespace with its own passwd bound
//!   over `/etc/passwd` (upstream's passwd jail).

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

/// How to run one daemon.
#[derive(Debug, Clone)]
pub struct DaemonSpec {
    /// Name in `/daemons`.
    pub name: String,
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Whether this init mode runs it at all (`hwrngd` is listed but never
    /// run in the appengine).
    pub enabled: bool,
    /// A passwd file bound over `/etc/passwd` for the daemon only.
    pub jail_passwd: Option<PathBuf>,
}

impl DaemonSpec {
    /// A daemon named after its binary, run without arguments.
    pub fn binary(bin: PathBuf) -> Self {
        let name = bin
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "pv-xconnect".to_owned());
        Self {
            name,
            argv: vec![bin.to_string_lossy().into_owned()],
            env: Vec::new(),
            enabled: true,
            jail_passwd: None,
        }
    }

    /// `hwrngd`: listed, never run in the appengine.
    pub fn hwrngd() -> Self {
        Self {
            name: "hwrngd".into(),
            argv: vec!["/usr/bin/rngd".into(), "-f".into()],
            env: Vec::new(),
            enabled: false,
            jail_passwd: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
struct DaemonJson {
    name: String,
    pid: i64,
    respawn: bool,
}

struct Run {
    json: DaemonJson,
    /// The next spawn is the placeholder (set after each real spawn).
    respawning: bool,
}

/// One managed daemon.
pub struct Daemon {
    spec: DaemonSpec,
    respawn_delay: Duration,
    log: Arc<PvLog>,
    state: Mutex<Run>,
    wake: Notify,
}

impl Daemon {
    /// A daemon that starts as soon as [`Daemon::run`] runs.
    pub fn new(spec: DaemonSpec, respawn_delay: Duration, log: Arc<PvLog>) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(Run {
                json: DaemonJson {
                    name: spec.name.clone(),
                    pid: 0,
                    respawn: true,
                },
                respawning: false,
            }),
            spec,
            respawn_delay,
            log,
            wake: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Run> {
        match self.state.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Name shown in `/daemons`.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// Current pid (the placeholder's while a respawn is pending; <= 0
    /// when nothing runs).
    pub fn pid(&self) -> i64 {
        self.lock().json.pid
    }

    /// `GET /daemons` entry.
    pub fn json(&self) -> serde_json::Value {
        serde_json::to_value(self.lock().json.clone()).unwrap_or_default()
    }

    /// `PUT /daemons/{name}`.
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
                    &format!("Stopping daemon {} via ctrl", self.spec.name),
                );
                self.terminate();
            }
            Some("start") => {
                self.log.info(
                    "daemons-ep",
                    &format!("Starting daemon {} via ctrl", self.spec.name),
                );
                let mut s = self.lock();
                s.json.respawn = true;
                if s.json.pid <= 0 {
                    s.json.pid = 0;
                    self.wake.notify_one();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Respawn off and SIGTERM (pv-ctrl stop, appengine shutdown).
    pub fn terminate(&self) {
        let pid = {
            let mut s = self.lock();
            s.json.respawn = false;
            s.json.pid
        };
        if let Ok(pid) = i32::try_from(pid) {
            if pid > 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
        }
    }

    /// Stops it for a reboot (upstream's `pv_init_stop_daemons`).
    pub fn suspend(&self) {
        let pid = self.pid();
        if pid > 0 {
            self.log.info(
                "daemons",
                &format!("Stopping daemon {} (pid {pid})", self.spec.name),
            );
        }
        self.terminate();
    }

    /// Starts it afresh after a reboot: no placeholder, as at boot.
    pub fn resume(&self) {
        let mut s = self.lock();
        s.json.respawn = true;
        s.respawning = false;
        self.wake.notify_one();
    }

    /// Spawn/wait/respawn loop; runs for the life of the appengine.
    pub async fn run(self: Arc<Self>) {
        loop {
            let (respawn, placeholder) = {
                let mut s = self.lock();
                let go = s.json.respawn && self.spec.enabled && s.json.pid <= 0;
                let placeholder = s.respawning;
                if go {
                    s.respawning = !placeholder;
                }
                (go, placeholder)
            };
            if !respawn {
                self.wake.notified().await;
                continue;
            }
            let mut cmd = if placeholder {
                let mut c = Command::new("sleep");
                c.arg(format!("{:.3}", self.respawn_delay.as_secs_f64()));
                c
            } else {
                self.command()
            };
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            match cmd.spawn() {
                Ok(mut child) => {
                    let pid = child.id().map_or(-1, i64::from);
                    self.lock().json.pid = pid;
                    if placeholder {
                        self.log.info(
                            "init",
                            &format!(
                                "Spawning {} daemon. ... deferring respawn by {:?}",
                                self.spec.name, self.respawn_delay
                            ),
                        );
                    } else {
                        self.log
                            .info("init", &format!("spawned daemon {}: {pid}", self.spec.name));
                    }
                    let out = child.stdout.take().map(|o| self.pump(o));
                    let err = child.stderr.take().map(|e| self.pump(e));
                    let status = child.wait().await;
                    // Drain what the daemon printed before it died.
                    for t in [out, err].into_iter().flatten() {
                        let _ = t.await;
                    }
                    let mut s = self.lock();
                    s.json.pid = if s.json.respawn { 0 } else { -1 };
                    if !placeholder {
                        let how = match status {
                            Ok(st) => st.to_string(),
                            Err(e) => e.to_string(),
                        };
                        self.log
                            .warn("init", &format!("daemon {} exited ({how})", self.spec.name));
                    }
                }
                Err(e) => {
                    // Upstream checks the binary before spawning: "daemon
                    // not found ...: disabling respawn", pid 0.
                    let mut s = self.lock();
                    s.json.pid = 0;
                    s.json.respawn = false;
                    self.log.error(
                        "init",
                        &format!(
                            "daemon not found {} ({}: {e}): disabling respawn",
                            self.spec.name,
                            self.spec.argv.join(" ")
                        ),
                    );
                }
            }
        }
    }

    /// The daemon's command, inside its passwd jail when it has one.
    fn command(&self) -> Command {
        let mut cmd = match &self.spec.jail_passwd {
            Some(passwd) => {
                // unshare(1) without --fork execs in place: the pid stays
                // the daemon's.
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "sh", "-c"])
                    .arg(r#"mount --bind "$0" /etc/passwd && exec "$@""#)
                    .arg(passwd)
                    .args(&self.spec.argv);
                c
            }
            None => {
                let mut c = Command::new(&self.spec.argv[0]);
                c.args(&self.spec.argv[1..]);
                c
            }
        };
        cmd.envs(self.spec.env.iter().map(|(k, v)| (k, v)));
        cmd
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
}
