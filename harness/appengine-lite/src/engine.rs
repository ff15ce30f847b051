//! Container lifecycle: start in group order (root → platform → app), watch
//! init, restart containers with restart policy `container` whose init
//! exits (unless stopped through pv-ctrl), track status and readiness.
//!
//! A single supervisor task ticks every few hundred milliseconds; it and
//! the pv-ctrl PUT handlers serialise on one async lock (`ops`) so a
//! container is never started or stopped twice at once. Readers (GET
//! handlers) only take the short `inner` lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::graph;
use crate::pvlog::PvLog;
use crate::runtime::{Running, Runtime};
use crate::state::{Container, State};

/// Upstream's platform statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    None,
    Installed,
    Mounted,
    Blocked,
    Starting,
    Started,
    Ready,
    Recovering,
    Stopping,
    Stopped,
}

impl Status {
    /// Upstream's string.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::None => "NONE",
            Status::Installed => "INSTALLED",
            Status::Mounted => "MOUNTED",
            Status::Blocked => "BLOCKED",
            Status::Starting => "STARTING",
            Status::Started => "STARTED",
            Status::Ready => "READY",
            Status::Recovering => "RECOVERING",
            Status::Stopping => "STOPPING",
            Status::Stopped => "STOPPED",
        }
    }
    fn running(self) -> bool {
        matches!(self, Status::Starting | Status::Started | Status::Ready)
    }
}

struct Plat {
    spec: Container,
    status: Status,
    goal: Status,
    /// Last init pid; -1 before the first start, never reset afterwards.
    pid: i64,
    user_stopped: bool,
    handle: Option<Box<dyn Running>>,
    restart_at: Option<Instant>,
}

#[derive(Default)]
struct Inner {
    state: Option<Arc<State>>,
    error: Option<String>,
    plats: Vec<Plat>,
    /// Index into the state's start order of the last group started.
    boot_group: Option<usize>,
    ready: bool,
}

/// Timing knobs (tests shorten them).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub tick: Duration,
    pub restart_delay: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            restart_delay: Duration::from_secs(1),
        }
    }
}

/// The containers of revision 0 and their lifecycle.
pub struct Engine {
    log: Arc<PvLog>,
    runtime: Arc<dyn Runtime>,
    cfg: EngineConfig,
    inner: Mutex<Inner>,
    ops: tokio::sync::Mutex<()>,
}

#[derive(Serialize)]
struct ContainerJson<'a> {
    name: &'a str,
    group: &'a str,
    status: &'a str,
    status_goal: &'a str,
    restart_policy: &'a str,
    roles: &'a [String],
    user_stopped: &'a str,
}

/// A pv-ctrl error: status code and `Error` message.
pub type CtrlError = (StatusCode, String);

fn bad(msg: &str) -> CtrlError {
    (StatusCode::BAD_REQUEST, msg.to_owned())
}

impl Engine {
    /// A new engine with no state loaded.
    pub fn new(log: Arc<PvLog>, runtime: Arc<dyn Runtime>, cfg: EngineConfig) -> Arc<Self> {
        Arc::new(Self {
            log,
            runtime,
            cfg,
            inner: Mutex::new(Inner::default()),
            ops: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// Loads a validated state; its containers become INSTALLED.
    pub fn load(&self, state: State) {
        let mut inner = self.lock();
        inner.plats = state
            .containers
            .iter()
            .map(|c| Plat {
                spec: c.clone(),
                status: Status::Installed,
                goal: Status::Started,
                pid: -1,
                user_stopped: false,
                handle: None,
                restart_at: None,
            })
            .collect();
        inner.state = Some(Arc::new(state));
    }

    /// Records why no state could be loaded (pv-ctrl keeps answering).
    pub fn fail(&self, error: String) {
        self.lock().error = Some(error);
    }

    /// Whether the revision reached READY.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// `GET /containers` body.
    pub fn containers_json(&self) -> String {
        let inner = self.lock();
        let list: Vec<ContainerJson<'_>> = inner
            .plats
            .iter()
            .map(|p| ContainerJson {
                name: &p.spec.name,
                group: &p.spec.group,
                status: p.status.as_str(),
                status_goal: p.goal.as_str(),
                restart_policy: &p.spec.restart_policy,
                roles: &p.spec.roles,
                user_stopped: if p.user_stopped { "true" } else { "false" },
            })
            .collect();
        serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned())
    }

    /// `GET /xconnect-graph` body, or upstream's error when no state.
    pub fn graph_json(&self) -> Result<String, CtrlError> {
        let inner = self.lock();
        let Some(state) = inner.state.as_ref() else {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                "State not loaded yet".to_owned(),
            ));
        };
        let pid_of = |name: &str| {
            inner
                .plats
                .iter()
                .find(|p| p.spec.name == name)
                .map_or(-1, |p| p.pid)
        };
        Ok(graph::to_json(&graph::build(state, pid_of)))
    }

    /// `GET /device-meta` body.
    pub fn devmeta_json(&self) -> String {
        let inner = self.lock();
        let status = if inner.ready {
            "READY"
        } else if inner.error.is_some() {
            "ERROR"
        } else {
            "TESTING"
        };
        let mut m = serde_json::Map::new();
        let mut put = |k: &str, v: &str| {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        };
        put("pantavisor.arch", std::env::consts::ARCH);
        put("pantavisor.mode", "local");
        put("pantavisor.revision", "0");
        put("pantavisor.status", status);
        put(
            "pantavisor.version",
            concat!("appengine-lite-", env!("CARGO_PKG_VERSION")),
        );
        Value::Object(m).to_string()
    }

    fn set_status(&self, p: &mut Plat, s: Status) {
        if p.status != s {
            p.status = s;
            self.log.info(
                "platforms",
                &format!("platform '{}' status is now {}", p.spec.name, s.as_str()),
            );
        }
    }

    /// Starts one container (ops lock held by the caller).
    async fn start_one(&self, name: &str) {
        let (state, spec) = {
            let mut inner = self.lock();
            let Some(state) = inner.state.clone() else {
                return;
            };
            let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
                return;
            };
            p.restart_at = None;
            p.goal = Status::Started;
            (state, p.spec.clone())
        };
        self.log
            .info("platforms", &format!("starting platform '{name}'"));
        let rt = self.runtime.clone();
        let spec2 = spec.clone();
        let res = tokio::task::spawn_blocking(move || rt.start(&state, &spec2)).await;
        let mut inner = self.lock();
        let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
            return;
        };
        match res {
            Ok(Ok(handle)) => {
                p.pid = handle.pid();
                p.handle = Some(handle);
                self.set_status(p, Status::Starting);
            }
            Ok(Err(e)) => {
                self.log.error(
                    "platforms",
                    &format!("error starting platform: '{name}': {e:#}"),
                );
                self.set_status(p, Status::Stopped);
                if spec.restart_policy == "container" {
                    p.restart_at = Some(Instant::now() + self.cfg.restart_delay);
                }
            }
            Err(e) => self
                .log
                .error("platforms", &format!("start task of '{name}' failed: {e}")),
        }
    }

    /// Stops one container (ops lock held by the caller).
    async fn stop_one(&self, name: &str) {
        let handle = {
            let mut inner = self.lock();
            let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
                return;
            };
            p.restart_at = None;
            p.handle.take()
        };
        if let Some(mut h) = handle {
            let _ = tokio::task::spawn_blocking(move || h.stop()).await;
        }
        let mut inner = self.lock();
        if let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) {
            self.set_status(p, Status::Stopped);
        }
    }

    /// One supervisor step: notice exits, restart, boot next group, READY.
    pub async fn tick(&self) {
        let _ops = self.ops.lock().await;
        let mut to_start: Vec<String> = Vec::new();
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(state) = inner.state.clone() else {
                return;
            };
            let now = Instant::now();
            for p in inner.plats.iter_mut() {
                if let Some(h) = p.handle.as_mut() {
                    if h.alive() {
                        if p.status == Status::Starting {
                            self.set_status(p, Status::Started);
                        }
                    } else {
                        p.handle = None;
                        self.set_status(p, Status::Stopped);
                        if !p.user_stopped && p.spec.restart_policy == "container" {
                            self.log.warn(
                                "platforms",
                                &format!(
                                    "platform '{}' init exited; restart policy 'container': restarting",
                                    p.spec.name
                                ),
                            );
                            p.restart_at = Some(now + self.cfg.restart_delay);
                        } else if !p.user_stopped {
                            self.log.warn(
                                "platforms",
                                &format!(
                                    "platform '{}' init exited; restart policy 'system' (real Pantavisor would reboot)",
                                    p.spec.name
                                ),
                            );
                        }
                    }
                }
                if p.handle.is_none() && !p.user_stopped && p.restart_at.is_some_and(|t| t <= now) {
                    p.restart_at = None;
                    to_start.push(p.spec.name.clone());
                }
            }
            let order = state.start_order();
            let settled = |names: &[&Container], plats: &[Plat]| {
                names.iter().all(|c| {
                    plats.iter().any(|p| {
                        p.spec.name == c.name
                            && matches!(p.status, Status::Started | Status::Ready | Status::Stopped)
                    })
                })
            };
            let next = match inner.boot_group {
                None => Some(0),
                Some(i) if i + 1 < order.len() && settled(&order[i], &inner.plats) => Some(i + 1),
                _ => None,
            };
            if let Some(i) = next {
                if let Some(group) = order.get(i) {
                    inner.boot_group = Some(i);
                    to_start.extend(group.iter().map(|c| c.name.clone()));
                }
            }
            let booted = inner.boot_group.is_some_and(|i| i + 1 >= order.len());
            if booted
                && !inner.ready
                && !inner.plats.is_empty()
                && inner.plats.iter().all(|p| p.status == Status::Started)
            {
                inner.ready = true;
                self.log.info(
                    "state",
                    &format!("state revision '{}' status is now READY", state.rev),
                );
            }
        }
        for name in to_start {
            self.start_one(&name).await;
        }
    }

    /// Runs the supervisor until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.tick().await;
            tokio::time::sleep(self.cfg.tick).await;
        }
    }

    /// Stops every container (appengine shutdown).
    pub async fn shutdown(&self) {
        let _ops = self.ops.lock().await;
        let names: Vec<String> = {
            let mut inner = self.lock();
            for p in inner.plats.iter_mut() {
                p.user_stopped = true;
            }
            inner.plats.iter().map(|p| p.spec.name.clone()).collect()
        };
        for n in names {
            self.stop_one(&n).await;
        }
    }

    /// `PUT /containers/{name}` with upstream's checks, order and messages.
    pub async fn put_container(&self, name: &str, body: &[u8]) -> Result<(), CtrlError> {
        let _ops = self.ops.lock().await;
        let status = {
            let inner = self.lock();
            let Some(p) = inner.plats.iter().find(|p| p.spec.name == name) else {
                return Err((StatusCode::NOT_FOUND, "Container not found".to_owned()));
            };
            if p.spec.restart_policy != "container" {
                return Err(bad("Container has restart_policy 'system' and cannot be stopped/started via API. Only containers with restart_policy 'container' can be controlled."));
            }
            p.status
        };
        let action = parse_action(body)?;
        match action.as_str() {
            "stop" => {
                self.log.info(
                    "containers-ep",
                    &format!("Stopping container {name} via ctrl"),
                );
                if status != Status::Stopped {
                    self.mark_user_stopped(name, true);
                    self.stop_one(name).await;
                }
            }
            "start" => {
                self.log.info(
                    "containers-ep",
                    &format!("Starting container {name} via ctrl"),
                );
                if status.running() {
                } else if status == Status::Stopped {
                    self.mark_user_stopped(name, false);
                    self.start_one(name).await;
                } else {
                    return Err(bad("Container must be in STOPPED state to start. Current state does not allow start."));
                }
            }
            "restart" => {
                self.log.info(
                    "containers-ep",
                    &format!("Restarting container {name} via ctrl"),
                );
                if status == Status::Stopped || status.running() {
                    if status.running() {
                        self.mark_user_stopped(name, true);
                        self.stop_one(name).await;
                    }
                    self.mark_user_stopped(name, false);
                    self.start_one(name).await;
                } else {
                    return Err(bad("Container state does not allow restart."));
                }
            }
            _ => return Err(bad("Invalid action. Use 'start', 'stop', or 'restart'")),
        }
        Ok(())
    }

    fn mark_user_stopped(&self, name: &str, stopped: bool) {
        let mut inner = self.lock();
        if let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) {
            p.user_stopped = stopped;
            if stopped {
                p.goal = Status::Stopped;
            }
        }
    }
}

/// Body handling shared by PUT endpoints (upstream: 1024-byte cap, jsmn).
pub fn parse_action(body: &[u8]) -> Result<String, CtrlError> {
    if body.len() > 1024 {
        return Err((
            StatusCode::INSUFFICIENT_STORAGE,
            "Data size exceeds the limit".to_owned(),
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("Missing 'action' field"));
    }
    let v: Value = serde_json::from_slice(body).map_err(|_| bad("Invalid JSON"))?;
    match v.get("action") {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Ok(other.to_string()),
        None => Err(bad("Missing 'action' field")),
    }
}
