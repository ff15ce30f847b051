//! Container lifecycle, as Pantavisor's state loop runs it (state.c
//! `pv_state_run`, platforms.c; every rule below was checked on the real
//! appengine):
//!
//! - Boot: a container starts once every earlier group has reached its
//!   goal (or timed out); until then it is BLOCKED. `data` members are only
//!   MOUNTED. READY once all have reached their goal.
//! - Stop (`PUT /containers/<c>` stop or restart, and shutdown): Pantavisor
//!   first stops the container's loggers, which takes it 5 s (it polls them
//!   once a second and SIGKILLs them); only then does it send the halt
//!   signal (`lxc.signal.halt`, SIGPWR by default) and answer — the
//!   container is STOPPING. Its init then has 5 s to exit before it is
//!   SIGKILLed; on STOPPED a stop marks it `user_stopped`, a restart makes
//!   it INSTALLED again, which starts it.
//! - An init that exits on its own: auto-recovery ([`crate::recovery`])
//!   retries it from RECOVERING; without auto-recovery, or after the last
//!   retry with backoff `reboot`, Pantavisor reboots, which in appengine
//!   mode means it shuts down and exits ("will not actually perform
//!   'reboot' as we are in appengine mode"): every container and daemon
//!   is stopped, pv-ctrl closes, and pv-appengine launches it again after
//!   5 s ([`Launch`]). A stop
//!   requested while a retry is pending does not prevent the retry (the
//!   restart resets `user_stopped`).
//!
//! A supervisor task ticks every 250 ms. It and the pv-ctrl PUT handlers
//! serialise on one async lock (`ops`), as upstream's single loop does;
//! GET handlers only take the short `inner` lock.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use crate::daemon::Daemon;
use crate::graph;
use crate::hostbus::HostBus;
use crate::pvlog::PvLog;
use crate::recovery::{AutoRecovery, Backoff};
use crate::runtime::{Running, Runtime};
use crate::state::{Container, RestartPolicy, State, Status};

/// What to do when a stop requested through pv-ctrl completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnStopped {
    UserStop,
    Restart,
}

/// How far a container is from its status goal (platforms.c
/// `pv_platform_check_goal`), ordered as upstream compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Goal {
    /// Past its goal (stopping, stopped, recovering).
    Beyond,
    Achieved,
    Unachieved,
    TimedOut,
}

struct Plat {
    spec: Container,
    status: Status,
    /// Last init pid; -1 before the first start, never reset afterwards
    /// (until a reboot).
    pid: i64,
    handle: Option<Box<dyn Running>>,
    /// Effective auto-recovery: the container's own, or its group's from
    /// the first start on.
    recovery: Option<AutoRecovery>,
    retries: u32,
    retry_at: Option<Instant>,
    last_start: Option<Instant>,
    /// When the goal was reached (stability is counted from there).
    goal_reached: Option<Instant>,
    goal_deadline: Option<Instant>,
    is_stable: bool,
    recovery_failed: bool,
    user_stopped: bool,
    on_stopped: Option<OnStopped>,
    stop_deadline: Option<Instant>,
    /// Whether its loggers run (they do from a start to the next stop).
    loggers: bool,
}

impl Plat {
    fn new(spec: Container) -> Self {
        Self {
            recovery: spec.auto_recovery.clone(),
            spec,
            status: Status::Installed,
            pid: -1,
            handle: None,
            retries: 0,
            retry_at: None,
            last_start: None,
            goal_reached: None,
            goal_deadline: None,
            is_stable: false,
            recovery_failed: false,
            user_stopped: false,
            on_stopped: None,
            stop_deadline: None,
            loggers: false,
        }
    }

    fn goal(&self, now: Instant) -> Goal {
        let goal = self.spec.status_goal;
        if self.status == goal {
            Goal::Achieved
        } else if self.status < Status::Starting {
            Goal::Unachieved
        } else if self.status >= goal {
            Goal::Beyond
        } else if self.goal_deadline.is_some_and(|d| now >= d) {
            Goal::TimedOut
        } else {
            Goal::Unachieved
        }
    }
}

#[derive(Default)]
struct Inner {
    state: Option<Arc<State>>,
    error: Option<String>,
    plats: Vec<Plat>,
    ready: bool,
    /// Set while a reboot is under way: nothing is started before it.
    reboot_at: Option<Instant>,
    /// After a poweroff: nothing ever starts again.
    halted: bool,
}

/// The system transitions upstream's shutdown performs
/// (`pv_system_transition_t`); in appengine mode neither happens, and
/// pantavisor exits instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// pv-appengine launches pantavisor again after its restart delay.
    Reboot,
    /// pantavisor exits 3 and pv-appengine stops for good.
    Poweroff,
}

impl Transition {
    fn as_str(self) -> &'static str {
        match self {
            Transition::Reboot => "reboot",
            Transition::Poweroff => "poweroff",
        }
    }
}

/// Whether the imitated pantavisor process is running (and serving
/// pv-ctrl), as pv-appengine sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launch {
    Running,
    /// Shut down for a reboot: launched again after the reboot delay.
    Rebooting,
    /// Shut down for a poweroff: never launched again.
    PoweredOff,
}

/// Timing knobs (upstream's values by default; tests shorten them).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub tick: Duration,
    /// How long stopping a started container's loggers takes before its
    /// init gets the halt signal (upstream: 5 polls, 1 s apart).
    pub logger_stop: Duration,
    /// Grace between the halt signal and the forced stop.
    pub stop_timeout: Duration,
    /// Length of one second of auto-recovery time (retry delays, backoff
    /// durations, stable timeouts, group timeouts).
    pub recovery_unit: Duration,
    /// Pause between tearing down and booting again on a reboot
    /// (pv-appengine's restart delay).
    pub reboot_delay: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            tick: Duration::from_millis(250),
            logger_stop: Duration::from_secs(5),
            stop_timeout: Duration::from_secs(5),
            recovery_unit: Duration::from_secs(1),
            reboot_delay: Duration::from_secs(5),
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
    daemons: Mutex<Vec<Arc<Daemon>>>,
    hostbus: Mutex<Option<Arc<HostBus>>>,
    launch: tokio::sync::watch::Sender<Launch>,
}

#[derive(Serialize)]
struct RecoveryJson {
    policy: &'static str,
    max_retries: u32,
    current_retries: u32,
    stable_timeout: u64,
    is_stable: &'static str,
    backoff_policy: String,
}

#[derive(Serialize)]
struct ContainerJson<'a> {
    name: &'a str,
    group: &'a str,
    status: &'static str,
    status_goal: &'static str,
    restart_policy: &'static str,
    roles: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    auto_recovery: Option<RecoveryJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_stopped: Option<&'static str>,
}

/// A pv-ctrl error: status code and `Error` message.
pub type CtrlError = (StatusCode, String);

fn bad(msg: &str) -> CtrlError {
    (StatusCode::BAD_REQUEST, msg.to_owned())
}

fn tf(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
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
            daemons: Mutex::new(Vec::new()),
            hostbus: Mutex::new(None),
            launch: tokio::sync::watch::Sender::new(Launch::Running),
        })
    }

    /// Follows the imitated pantavisor's launches: pv-appengine closes
    /// pv-ctrl while it is not [`Launch::Running`].
    pub fn launches(&self) -> tokio::sync::watch::Receiver<Launch> {
        self.launch.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The managed daemons, stopped and restarted on a reboot.
    pub fn set_daemons(&self, daemons: Vec<Arc<Daemon>>) {
        *self.daemons.lock().unwrap_or_else(|p| p.into_inner()) = daemons;
    }

    /// The managed daemons.
    pub fn daemons(&self) -> Vec<Arc<Daemon>> {
        self.daemons
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The hosted system bus, when enabled (its `_pv_` links and uids).
    pub fn set_hostbus(&self, bus: Arc<HostBus>) {
        *self.hostbus.lock().unwrap_or_else(|p| p.into_inner()) = Some(bus);
    }

    fn hostbus(&self) -> Option<Arc<HostBus>> {
        self.hostbus
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Loads a validated state; its containers become INSTALLED.
    pub fn load(&self, state: State) {
        let mut inner = self.lock();
        inner.plats = state.containers.iter().cloned().map(Plat::new).collect();
        inner.state = Some(Arc::new(state));
    }

    /// Records why no state could be loaded (what pv-ctrl answers until
    /// the refused launch closes it).
    pub fn fail(&self, error: String) {
        self.lock().error = Some(error);
    }

    /// The loaded state, if any.
    pub fn state(&self) -> Option<Arc<State>> {
        self.lock().state.clone()
    }

    /// Whether the revision reached READY.
    pub fn is_ready(&self) -> bool {
        self.lock().ready
    }

    /// Status of a container.
    pub fn status_of(&self, name: &str) -> Option<Status> {
        self.lock()
            .plats
            .iter()
            .find(|p| p.spec.name == name)
            .map(|p| p.status)
    }

    /// `GET /containers` body (500 when no state is loaded).
    pub fn containers_json(&self) -> Result<String, CtrlError> {
        let inner = self.lock();
        if inner.state.is_none() {
            return Err(not_loaded());
        }
        let list: Vec<ContainerJson<'_>> = inner
            .plats
            .iter()
            .map(|p| ContainerJson {
                name: &p.spec.name,
                group: &p.spec.group,
                status: p.status.as_str(),
                status_goal: p.spec.status_goal.as_str(),
                restart_policy: p.spec.restart_policy.as_str(),
                roles: &p.spec.roles,
                auto_recovery: p.recovery.as_ref().map(|a| RecoveryJson {
                    policy: a.policy.as_str(),
                    max_retries: a.max_retries,
                    current_retries: p.retries,
                    stable_timeout: a.stable_timeout,
                    is_stable: tf(p.is_stable),
                    backoff_policy: a.backoff.render(),
                }),
                user_stopped: (p.spec.restart_policy == RestartPolicy::Container)
                    .then(|| tf(p.user_stopped)),
            })
            .collect();
        Ok(serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()))
    }

    /// `GET /groups` body (500 when no state is loaded).
    pub fn groups_json(&self) -> Result<String, CtrlError> {
        let inner = self.lock();
        let Some(state) = inner.state.as_ref() else {
            return Err(not_loaded());
        };
        let now = Instant::now();
        let list: Vec<_> = state
            .groups
            .iter()
            .map(|g| {
                // Upstream's pv_group_eval_status: the lowest status of the
                // members not at their goal, READY when all are.
                let status = inner
                    .plats
                    .iter()
                    .filter(|p| p.spec.group == g.name && p.goal(now) != Goal::Achieved)
                    .map(|p| p.status)
                    .min()
                    .unwrap_or(Status::Ready)
                    .min(Status::Ready);
                g.json(status)
            })
            .collect();
        Ok(serde_json::to_string(&list).unwrap_or_else(|_| "[]".to_owned()))
    }

    /// `GET /xconnect-graph` body, or upstream's error when no state.
    pub fn graph_json(&self) -> Result<String, CtrlError> {
        let inner = self.lock();
        let Some(state) = inner.state.as_ref() else {
            return Err(not_loaded());
        };
        let pid_of = |name: &str| {
            inner
                .plats
                .iter()
                .find(|p| p.spec.name == name)
                .map_or(-1, |p| p.pid)
        };
        let bus = self.hostbus();
        Ok(graph::to_json(&graph::build(state, pid_of, bus.as_deref())))
    }

    /// The revision's status as `pantavisor.status` shows it: READY once
    /// reached, before that the lowest status of the containers still on
    /// their way (INSTALLED before anything started).
    pub fn revision_status(&self) -> &'static str {
        let inner = self.lock();
        if inner.ready {
            return "READY";
        }
        if inner.error.is_some() {
            return "ERROR";
        }
        let now = Instant::now();
        inner
            .plats
            .iter()
            .filter(|p| p.goal(now) != Goal::Achieved)
            .map(|p| p.status)
            .min()
            .unwrap_or(Status::Installed)
            .as_str()
    }

    fn set_status(&self, p: &mut Plat, s: Status) {
        if p.status != s {
            p.status = s;
            self.log.info(
                "platforms",
                &format!("platform '{}' status is now {}", p.spec.name, s.as_str()),
            );
            if s == p.spec.status_goal {
                p.goal_reached = Some(Instant::now());
            }
        }
    }

    fn units(&self, secs: u64) -> Duration {
        self.cfg.recovery_unit.saturating_mul(secs as u32)
    }

    /// Starts one container (ops lock held by the caller).
    async fn start_one(&self, name: &str) {
        let (state, spec) = {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(state) = inner.state.clone() else {
                return;
            };
            let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
                return;
            };
            let timeout = state.group(&p.spec.group).map_or(30, |g| g.timeout);
            p.goal_deadline = Some(Instant::now() + self.units(timeout));
            if p.spec.status_goal == Status::Mounted {
                self.set_status(p, Status::Mounted);
                return;
            }
            (state, p.spec.clone())
        };
        let rt = self.runtime.clone();
        let spec2 = spec.clone();
        let res = tokio::task::spawn_blocking(move || rt.start(&state, &spec2)).await;
        let mut guard = self.lock();
        let inner = &mut *guard;
        let group_recovery = inner
            .state
            .as_ref()
            .and_then(|s| s.group(&spec.group))
            .and_then(|g| g.auto_recovery.clone());
        let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
            return;
        };
        match res {
            Ok(Ok(handle)) => {
                p.pid = handle.pid();
                p.handle = Some(handle);
                p.loggers = true;
                p.last_start = Some(Instant::now());
                if p.recovery.is_none() {
                    p.recovery = group_recovery;
                }
                // A (re)start resets stability and the lifecycle flags.
                p.is_stable = false;
                p.goal_reached = None;
                p.recovery_failed = false;
                p.user_stopped = false;
                p.on_stopped = None;
                self.set_status(p, Status::Starting);
            }
            Ok(Err(e)) => {
                self.log.warn(
                    "platforms",
                    &format!("could not start platform '{name}': {e:#}"),
                );
                self.set_status(p, Status::Stopped);
            }
            Err(e) => self
                .log
                .error("platforms", &format!("start task of '{name}' failed: {e}")),
        }
    }

    /// Sends the halt signal: STOPPING with a deadline. A container never
    /// started has nothing to stop (upstream's pv_platform_stop returns).
    fn lenient_stop(&self, p: &mut Plat) {
        if p.pid <= 0 {
            return;
        }
        self.log.info(
            "platforms",
            &format!("leniently stopping platform '{}'", p.spec.name),
        );
        if let Some(h) = p.handle.as_mut() {
            h.halt();
        }
        p.stop_deadline = Some(Instant::now() + self.cfg.stop_timeout);
        self.set_status(p, Status::Stopping);
    }

    /// Upstream's pv_platform_stop for a started container: stop the
    /// loggers (slow), then the lenient stop. Ops lock held by the caller.
    async fn stop_with(&self, name: &str, cb: OnStopped) {
        let loggers = {
            let mut inner = self.lock();
            let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) else {
                return;
            };
            p.on_stopped = Some(cb);
            std::mem::take(&mut p.loggers)
        };
        if loggers {
            tokio::time::sleep(self.cfg.logger_stop).await;
        }
        let mut inner = self.lock();
        if let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) {
            self.lenient_stop(p);
        }
    }

    fn force_stop(&self, p: &mut Plat) {
        if let Some(mut h) = p.handle.take() {
            h.kill();
        }
        p.stop_deadline = None;
        self.set_status(p, Status::Stopped);
    }

    /// Upstream's pv_state_check_auto_recovery: `true` when the exit is
    /// handled (retry scheduled, or left stopped), `false` when it means a
    /// reboot.
    fn check_recovery(&self, p: &mut Plat, now: Instant) -> bool {
        let Some(ar) = p.recovery.clone().filter(AutoRecovery::enabled) else {
            return false;
        };
        let name = p.spec.name.clone();
        if ar.reset_window > 0
            && p.last_start
                .is_some_and(|t| now.duration_since(t) > self.units(ar.reset_window))
        {
            p.retries = 0;
        }
        if ar.max_retries > 0 && p.retries >= ar.max_retries {
            self.log.warn(
                "state",
                &format!(
                    "platform '{name}' reached max retries ({}).",
                    ar.max_retries
                ),
            );
            return match ar.backoff {
                Backoff::Reboot => {
                    self.log
                        .warn("state", "backoff_policy=reboot — triggering reboot");
                    false
                }
                Backoff::Never => {
                    self.log.warn(
                        "state",
                        &format!("backoff_policy=never — leaving '{name}' stopped"),
                    );
                    p.recovery_failed = true;
                    true
                }
                Backoff::After(secs) => {
                    self.log.warn(
                        "state",
                        &format!("backoff_policy={secs}s — scheduling retry cycle reset"),
                    );
                    p.retries = 0;
                    p.retry_at = Some(now + self.units(secs));
                    self.set_status(p, Status::Recovering);
                    true
                }
            };
        }
        p.retries += 1;
        let delay = ar.delay_before(p.retries);
        self.log.info(
            "state",
            &format!(
                "platform '{name}' crashed. Attempting auto-recovery (attempt {}/{}) in {delay} seconds...",
                p.retries, ar.max_retries
            ),
        );
        if delay > 0 {
            p.retry_at = Some(now + self.units(delay));
            self.set_status(p, Status::Recovering);
        } else {
            self.set_status(p, Status::Installed);
        }
        true
    }

    /// Whether the groups before `group` let a container of it start
    /// (state.c pv_state_check_goal_prev_group): the group just before
    /// counts, unless an earlier one is still on its way. A group's state
    /// is the worst of its members', never better than achieved (a member
    /// past its goal, e.g. stopped, does not hold the next group back).
    fn prev_groups(inner: &Inner, state: &State, group: &str, now: Instant) -> bool {
        let mut last = Goal::Achieved;
        for g in &state.groups {
            if g.name == group {
                break;
            }
            last = inner
                .plats
                .iter()
                .filter(|p| p.spec.group == g.name)
                .map(|p| p.goal(now))
                .fold(Goal::Achieved, Goal::max);
            if last == Goal::Unachieved {
                break;
            }
        }
        last != Goal::Unachieved
    }

    /// One step of the state loop.
    pub async fn tick(&self) {
        let _ops = self.ops.lock().await;
        let now = Instant::now();
        let mut to_start: Vec<String> = Vec::new();
        let mut reboot = false;
        {
            let mut guard = self.lock();
            let inner = &mut *guard;
            let Some(state) = inner.state.clone() else {
                return;
            };
            if inner.halted {
                return;
            }
            if let Some(at) = inner.reboot_at {
                if now < at {
                    return;
                }
                inner.reboot_at = None;
                self.launch.send_replace(Launch::Running);
                self.log
                    .info("pantavisor", "booting again after the reboot");
            }
            for i in 0..inner.plats.len() {
                let gate = Self::prev_groups(inner, &state, &inner.plats[i].spec.group, now);
                let p = &mut inner.plats[i];
                let alive = p.handle.as_mut().is_some_and(|h| h.alive());
                match p.status {
                    Status::Installed | Status::Blocked => {
                        if gate {
                            to_start.push(p.spec.name.clone());
                        } else {
                            self.set_status(p, Status::Blocked);
                        }
                    }
                    Status::Starting => {
                        if alive {
                            self.set_status(p, Status::Started);
                        } else {
                            p.handle = None;
                            self.set_status(p, Status::Stopped);
                        }
                    }
                    Status::Started | Status::Ready => {
                        if alive {
                            let stable_after = p.recovery.as_ref().map_or(0, |a| a.stable_timeout);
                            if !p.is_stable
                                && stable_after > 0
                                && p.goal_reached.is_some_and(|t| {
                                    now.duration_since(t) >= self.units(stable_after)
                                })
                            {
                                p.is_stable = true;
                                self.log.info(
                                    "platforms",
                                    &format!(
                                        "platform '{}' is now STABLE (survived {stable_after} seconds)",
                                        p.spec.name
                                    ),
                                );
                            }
                        } else {
                            p.handle = None;
                            p.loggers = false;
                            self.set_status(p, Status::Stopped);
                            if !self.check_recovery(p, now) {
                                self.log.error(
                                    "state",
                                    &format!("platform '{}' suddenly stopped", p.spec.name),
                                );
                                reboot = true;
                                break;
                            }
                        }
                    }
                    Status::Stopping => {
                        if !alive {
                            p.handle = None;
                            p.stop_deadline = None;
                            self.set_status(p, Status::Stopped);
                        } else if p.stop_deadline.is_some_and(|d| now >= d) {
                            self.log.warn(
                                "state",
                                &format!(
                                    "platform '{}' did not exit after lenient stop, force stopping",
                                    p.spec.name
                                ),
                            );
                            self.force_stop(p);
                        }
                    }
                    Status::Recovering => {
                        if p.retry_at.is_some_and(|t| now >= t) {
                            p.retry_at = None;
                            self.log.info(
                                "state",
                                &format!(
                                    "recovery timer finished for platform '{}'. Restarting...",
                                    p.spec.name
                                ),
                            );
                            self.set_status(p, Status::Installed);
                        }
                    }
                    Status::Stopped => {
                        if let Some(cb) = p.on_stopped.take() {
                            match cb {
                                OnStopped::UserStop => p.user_stopped = true,
                                OnStopped::Restart => {
                                    p.retries = 0;
                                    p.recovery_failed = false;
                                    p.user_stopped = false;
                                    self.set_status(p, Status::Installed);
                                }
                            }
                        } else if !p.user_stopped
                            && !p.recovery_failed
                            && !self.check_recovery(p, now)
                        {
                            self.log.error(
                                "state",
                                &format!("platform '{}' is not running", p.spec.name),
                            );
                            reboot = true;
                            break;
                        }
                    }
                    Status::None | Status::Mounted => {}
                }
            }
            let all_there = !inner.plats.is_empty()
                && inner.plats.iter().all(|p| p.goal(now) == Goal::Achieved);
            if !reboot && !inner.ready && all_there {
                inner.ready = true;
                self.log.info(
                    "state",
                    &format!("state revision '{}' status is now READY", state.rev),
                );
            }
        }
        if reboot {
            self.log.error(
                "controller",
                "a platform did not work as expected. Tearing down...",
            );
            self.shut_down(Transition::Reboot);
            return;
        }
        for name in to_start {
            self.start_one(&name).await;
        }
    }

    /// `REBOOT_DEVICE` / `POWEROFF_DEVICE`: see [`Engine::shut_down`].
    pub async fn transition_now(&self, t: Transition) {
        let _ops = self.ops.lock().await;
        self.shut_down(t);
    }

    /// Upstream's shutdown in appengine mode (pantavisor.c pv_shutdown):
    /// every container stops, and pantavisor exits, closing pv-ctrl and
    /// stopping its daemons (pv-appengine's side, see [`Launch`]); on a reboot
    /// pv-appengine launches it again after `reboot_delay`, where the
    /// revision boots from scratch (pids back to -1); after a poweroff it
    /// stays down.
    fn shut_down(&self, t: Transition) {
        self.log
            .info("controller", &format!("preparing '{}'...", t.as_str()));
        self.log.info(
            "controller",
            &format!(
                "will not actually perform '{}' as we are in appengine mode",
                t.as_str()
            ),
        );
        let mut inner = self.lock();
        for p in inner.plats.iter_mut() {
            if let Some(mut h) = p.handle.take() {
                h.kill();
            }
        }
        inner.plats = inner.plats.drain(..).map(|p| Plat::new(p.spec)).collect();
        inner.ready = false;
        match t {
            Transition::Reboot => {
                inner.reboot_at = Some(Instant::now() + self.cfg.reboot_delay);
                self.launch.send_replace(Launch::Rebooting);
            }
            Transition::Poweroff => {
                inner.halted = true;
                self.launch.send_replace(Launch::PoweredOff);
            }
        }
    }

    /// Runs the supervisor until the process ends.
    pub async fn run(self: Arc<Self>) {
        loop {
            self.tick().await;
            tokio::time::sleep(self.cfg.tick).await;
        }
    }

    /// Stops every container: halt signal, then a forced stop of whatever
    /// is still running after the grace period (appengine shutdown).
    pub async fn shutdown(&self) {
        let _ops = self.ops.lock().await;
        {
            let mut inner = self.lock();
            for i in 0..inner.plats.len() {
                let p = &mut inner.plats[i];
                if p.status.running() {
                    self.lenient_stop(p);
                }
            }
        }
        let deadline = Instant::now() + self.cfg.stop_timeout;
        loop {
            let left = {
                let mut inner = self.lock();
                inner
                    .plats
                    .iter_mut()
                    .filter_map(|p| p.handle.as_mut())
                    .map(|h| h.alive())
                    .filter(|alive| *alive)
                    .count()
            };
            if left == 0 || Instant::now() >= deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut inner = self.lock();
        for i in 0..inner.plats.len() {
            let p = &mut inner.plats[i];
            if p.handle.is_some() {
                self.force_stop(p);
            }
        }
    }

    /// `PUT /containers/{name}` with upstream's checks, order, messages and
    /// timing (ctrl_containers_ep.c).
    pub async fn put_container(&self, name: &str, body: &[u8]) -> Result<(), CtrlError> {
        let _ops = self.ops.lock().await;
        let status = {
            let inner = self.lock();
            if inner.state.is_none() {
                return Err(not_loaded());
            }
            let Some(p) = inner.plats.iter().find(|p| p.spec.name == name) else {
                return Err((StatusCode::NOT_FOUND, "Container not found".to_owned()));
            };
            if p.spec.restart_policy != RestartPolicy::Container {
                return Err((
                    StatusCode::FORBIDDEN,
                    "Container has restart_policy 'system' and cannot be controlled via API"
                        .to_owned(),
                ));
            }
            p.status
        };
        let action = parse_action(body)?;
        let reset = |p: &mut Plat| {
            p.user_stopped = false;
            p.retries = 0;
            p.recovery_failed = false;
        };
        match action.as_str() {
            "stop" => match status {
                Status::Stopped | Status::Recovering => {
                    self.with_plat(name, |p| p.user_stopped = true)
                }
                Status::Stopping => {
                    self.with_plat(name, |p| p.on_stopped = Some(OnStopped::UserStop))
                }
                _ => self.stop_with(name, OnStopped::UserStop).await,
            },
            "start" => match status {
                Status::Starting | Status::Started | Status::Ready => {}
                Status::Stopped | Status::Recovering => self.with_plat(name, |p| {
                    reset(p);
                    self.set_status(p, Status::Installed);
                }),
                Status::Stopping => {
                    self.with_plat(name, |p| p.on_stopped = Some(OnStopped::Restart))
                }
                _ => {
                    return Err(bad(
                        "Container must be in STOPPED, STOPPING, or RECOVERING state to start",
                    ))
                }
            },
            "restart" => match status {
                Status::Stopped | Status::Recovering => self.with_plat(name, |p| {
                    reset(p);
                    self.set_status(p, Status::Installed);
                }),
                Status::Starting | Status::Started | Status::Ready => {
                    self.stop_with(name, OnStopped::Restart).await
                }
                Status::Stopping => {
                    self.with_plat(name, |p| p.on_stopped = Some(OnStopped::Restart))
                }
                _ => return Err(bad("Container state does not allow restart")),
            },
            _ => return Err(bad("Invalid action. Use 'start', 'stop', or 'restart'")),
        }
        Ok(())
    }

    fn with_plat(&self, name: &str, f: impl FnOnce(&mut Plat)) {
        let mut inner = self.lock();
        if let Some(p) = inner.plats.iter_mut().find(|p| p.spec.name == name) {
            f(p);
        }
    }
}

fn not_loaded() -> CtrlError {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        "State not loaded yet".to_owned(),
    )
}

/// Body handling shared by PUT endpoints (upstream: 1024-byte cap, jsmn).
pub fn parse_action(body: &[u8]) -> Result<String, CtrlError> {
    if body.len() > 1024 {
        return Err((
            StatusCode::INSUFFICIENT_STORAGE,
            "Not enough disk space available".to_owned(),
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
