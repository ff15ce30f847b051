//! Reconciler: applies each new graph by diffing links keyed on
//! (consumer, name, target).
//!
//! Rules, in the order they are applied to every graph (each is a unit
//! test in `reconcile/tests.rs`, against a recording fake [`Backend`]):
//!
//! - A key that disappeared from the graph is torn down (its listener
//!   stopped, its sessions closed, what was injected removed).
//! - Several entries with one key (several providers export the name): the
//!   first by (provider, socket, type, …) wins, so the choice is the same on
//!   every poll whatever the graph's order; a warning is logged once per
//!   distinct set of providers.
//! - Several keys with one (consumer, target) would fight over one path:
//!   the first by name wins, the others are refused with the reason.
//! - Unknown types are logged once and never started.
//! - Consumer pid -1 (not started) or provider pid -1: the link is
//!   *pending* and nothing is started. Consumer pid 0, and provider pid 0
//!   for anything but the hosted bus, are refused (the check is
//!   [`LinkPids::of`]), so nothing is ever bound in the daemon's own
//!   namespace.
//! - Any change of the chosen entry (a pid after a container restart, the
//!   provider, its socket…) stops the running link and starts it again.
//! - Starts run concurrently, each in its own task with [`START_TIMEOUT`],
//!   at most [`START_BURST`] of them at once; a start still running after
//!   [`START_SLOT`] gives its place up, so a stuck start delays the others
//!   by that much at most. A start whose result comes back
//!   for a link that changed or left meanwhile is stopped at once.
//! - A running link that ends on its own ([`LinkEnd`]): when its consumer
//!   or provider exited it is stopped at once (its node removed) and waits
//!   as *pending* until the graph shows another pid — Pantavisor keeps
//!   stale pids, and a pid is never reused for the link; when its provider
//!   socket was refused it is stopped and fails.
//! - A start that found a pid gone (or not a container) waits likewise.
//! - A link whose start failed is retried with exponential backoff (from
//!   the retry period, doubling up to [`MAX_BACKOFF`]); a new graph or a
//!   reload (SIGHUP) retries at once and resets the backoff. Its error is
//!   logged only when it changes, its recovery once.
//!
//! Every link event (injected, recovered, pending, failed, skipped,
//! changed, removed, stopped, several providers) is logged here and only
//! here, one line each, with the fields of [`crate::logging`].
//!
//! [`LinkBackend`] is the real backend, calling [`crate::link`].

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, Level};

use crate::graph::{LinkKey, LinkSpec};
use crate::link::{self, EndWatch, LinkEnd, LinkError, LinkHandle, LinkStats, Options, Removal};
use crate::logging::link_event;
use crate::process::LinkPids;
use crate::shutdown::Shutdown;

#[cfg(test)]
mod tests;

/// A link start that takes longer than this is reported as failed.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest pause between two retries of a failing link.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How many starts may run at once. Each start spawns namespace threads;
/// the 100 starts of a new graph all at once left their peak (malloc arenas,
/// heap high-water) in the daemon's RSS for good: with this bound, heap and
/// stacks at 100 links measured 1.23-1.34 MiB instead of 1.43 (unix_relay
/// bench).
pub const START_BURST: usize = 4;
/// A start still running after this gives its place in the burst up (and
/// goes on, up to [`START_TIMEOUT`]): a provider that never answers holds
/// the others back by this much at most, not by the timeout.
pub const START_SLOT: Duration = Duration::from_millis(250);
/// At shutdown, how long starts still in flight are waited for (so what
/// they injected is removed too).
const SHUTDOWN_STARTS: Duration = Duration::from_secs(3);

/// Run a start in one of the burst's places (waiting for one first), with
/// [`START_TIMEOUT`]; the place is given up when the start finishes or after
/// [`START_SLOT`], whichever comes first.
async fn in_slot<T>(
    slots: &Semaphore,
    start: impl Future<Output = Result<T, StartError>>,
) -> Result<T, StartError> {
    // Never closed; if it were, the start would just run unslotted.
    let place = slots.acquire().await.ok();
    let start = async {
        tokio::pin!(start);
        tokio::select! {
            result = &mut start => return result,
            () = tokio::time::sleep(START_SLOT) => {}
        }
        drop(place);
        start.await
    };
    match tokio::time::timeout(START_TIMEOUT, start).await {
        Ok(result) => result,
        Err(_) => Err(StartError::Failed(format!(
            "link setup timed out after {}s",
            START_TIMEOUT.as_secs()
        ))),
    }
}

/// Why a start did not give a running link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// Retried with backoff.
    Failed(String),
    /// A pid no longer names the process the graph meant: the link waits
    /// for a new pid.
    Gone(String),
}

/// What actually starts and stops links.
pub trait Backend: Clone + Send + Sync + 'static {
    type Handle: Send + 'static;

    /// Inject and start mediating.
    fn start(
        &self,
        spec: Arc<LinkSpec>,
    ) -> impl Future<Output = Result<Self::Handle, StartError>> + Send;

    /// Stop and remove what was injected; say what became of it.
    fn stop(&self, handle: Self::Handle) -> impl Future<Output = Removal> + Send;

    /// Live counters of a running link, if the backend keeps any.
    fn stats(&self, handle: &Self::Handle) -> Option<Arc<LinkStats>>;

    /// What will say that the running link ended on its own, if anything.
    fn take_end(&self, handle: &mut Self::Handle) -> Option<EndWatch>;
}

/// The real backend: [`link::start_with`] under the daemon's shutdown
/// token.
///
/// Start and stop run in their own task so a panic in one link's setup is
/// reported as that link's failure instead of ending the reconciler. A
/// start abandoned before it finished (timed out) still has what it
/// injected removed once it does finish.
#[derive(Debug, Clone)]
pub struct LinkBackend {
    shutdown: Shutdown,
    options: Options,
}

impl LinkBackend {
    pub fn new(shutdown: Shutdown) -> Self {
        Self::with_options(shutdown, Options::default())
    }

    /// Every link started with the daemon's [`Options`].
    pub fn with_options(shutdown: Shutdown, options: Options) -> Self {
        Self { shutdown, options }
    }
}

/// A start task; if dropped before it finished, whatever it starts is
/// stopped when it does.
struct Reap(Option<JoinHandle<Result<LinkHandle, LinkError>>>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Ok(Ok(handle)) = task.await {
                        let _ = handle.stop().await;
                    }
                });
            }
        }
    }
}

impl Backend for LinkBackend {
    type Handle = LinkHandle;

    async fn start(&self, spec: Arc<LinkSpec>) -> Result<LinkHandle, StartError> {
        let parent = self.shutdown.clone();
        let options = self.options;
        let mut reap = Reap(Some(tokio::spawn(async move {
            link::start_with(spec, &parent, &options).await
        })));
        let Some(task) = reap.0.as_mut() else {
            return Err(StartError::Failed("link setup lost".into()));
        };
        let joined = task.await;
        reap.0 = None;
        match joined {
            Ok(Ok(handle)) => Ok(handle),
            Ok(Err(e)) if e.is_gone() => Err(StartError::Gone(e.to_string())),
            Ok(Err(e)) => Err(StartError::Failed(e.to_string())),
            Err(join) if join.is_panic() => Err(StartError::Failed("link setup panicked".into())),
            Err(join) => Err(StartError::Failed(format!("link setup aborted: {join}"))),
        }
    }

    async fn stop(&self, handle: LinkHandle) -> Removal {
        match tokio::spawn(handle.stop()).await {
            Ok(removal) => removal,
            Err(e) => Removal::Failed(format!("teardown did not complete: {e}")),
        }
    }

    fn stats(&self, handle: &LinkHandle) -> Option<Arc<LinkStats>> {
        Some(handle.stats().clone())
    }

    fn take_end(&self, handle: &mut LinkHandle) -> Option<EndWatch> {
        handle.take_end()
    }
}

/// A link's state as `pv-xconnect status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for a container to start, a new pid, or its start to finish.
    Pending(String),
    /// Injected into the consumer and mediating.
    Injected,
    /// The last start attempt failed (retried with backoff), or the graph
    /// asks for something refused.
    Failed(String),
    /// Unknown type: never started.
    Unsupported,
}

impl LinkState {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Pending(_) => "pending",
            Self::Injected => "injected",
            Self::Failed(_) => "failed",
            Self::Unsupported => "unsupported",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Self::Pending(r) | Self::Failed(r) => Some(r),
            Self::Injected => None,
            Self::Unsupported => Some("type not supported"),
        }
    }
}

/// One row of the status table: the chosen spec, its state and counters.
#[derive(Debug, Clone)]
pub struct StatusEntry {
    pub spec: Arc<LinkSpec>,
    pub state: LinkState,
    pub stats: Option<Arc<LinkStats>>,
}

enum Slot<H> {
    /// Not startable yet (pid -1).
    Pending(String),
    Starting {
        gen: u64,
        /// The failure this start retries, if any.
        was: Option<String>,
        attempts: u32,
    },
    Running {
        handle: H,
        gen: u64,
    },
    Failed {
        reason: String,
        attempts: u32,
        retry_at: Instant,
    },
    /// A pid exited or is not the process meant: only a new spec helps.
    Waiting(String),
    /// Never allowed as the graph stands (pid 0, a taken target).
    Refused(String),
    Unsupported,
}

struct Entry<H> {
    spec: Arc<LinkSpec>,
    slot: Slot<H>,
    /// Providers competing for this key when last warned about.
    contenders: Vec<String>,
}

/// The total order that picks one entry among several with one key.
fn preference(s: &LinkSpec) -> impl Ord + '_ {
    (
        &s.provider,
        &s.socket,
        &s.kind,
        &s.role,
        &s.interface,
        s.uid,
        s.provider_pid,
        s.consumer_pid,
    )
}

/// What happened to a link: each is one log line, written by [`log`].
enum Event<'a> {
    Injected,
    Recovered {
        from: &'a str,
    },
    Pending(&'a str),
    Failed(&'a str),
    StillFailing(&'a str),
    Skipped,
    Changed {
        was: &'a str,
        removal: Option<&'a Removal>,
    },
    /// Gone from the graph; what became of its node if it was running.
    Removed(Option<&'a Removal>),
    Stopped(&'a Removal),
    /// It ended on its own and was stopped.
    Ended(&'a LinkEnd, &'a Removal),
    SeveralProviders(&'a [String]),
}

fn log(spec: &LinkSpec, event: Event<'_>) {
    let failed_removal = |r: Option<&Removal>| matches!(r, Some(Removal::Failed(_)));
    match event {
        Event::Injected => link_event!(Level::INFO, spec, "link injected"),
        Event::Recovered { from } => {
            link_event!(Level::INFO, spec, reason = %format_args!("was failing: {from}"), "link recovered")
        }
        Event::Pending(why) => link_event!(Level::INFO, spec, reason = %why, "link pending"),
        Event::Failed(why) => link_event!(Level::WARN, spec, reason = %why, "link failed"),
        Event::StillFailing(why) => {
            link_event!(Level::DEBUG, spec, reason = %why, "link still failing")
        }
        Event::Skipped => link_event!(
            Level::INFO,
            spec,
            reason = "type not supported",
            "link skipped"
        ),
        Event::Changed { was, removal } => {
            let reason = match removal {
                Some(r) => format!("was {was}; stopped, {r}"),
                None => format!("was {was}"),
            };
            if failed_removal(removal) {
                link_event!(Level::WARN, spec, reason = %reason, "link changed")
            } else {
                link_event!(Level::INFO, spec, reason = %reason, "link changed")
            }
        }
        Event::Removed(r) => {
            let reason = match r {
                Some(r) => format!("gone from the graph; {r}"),
                None => "gone from the graph".to_string(),
            };
            if failed_removal(r) {
                link_event!(Level::WARN, spec, reason = %reason, "link removed")
            } else {
                link_event!(Level::INFO, spec, reason = %reason, "link removed")
            }
        }
        Event::Stopped(r) => {
            let reason = format!("daemon shutdown; {r}");
            if failed_removal(Some(r)) {
                link_event!(Level::WARN, spec, reason = %reason, "link stopped")
            } else {
                link_event!(Level::INFO, spec, reason = %reason, "link stopped")
            }
        }
        Event::Ended(LinkEnd::Exited(why), r) => {
            let reason = format!("{why}; {r}; waiting for a new pid in the graph");
            link_event!(Level::INFO, spec, reason = %reason, "link pending")
        }
        Event::Ended(LinkEnd::Refused(why), r) => {
            let reason = format!("{why}; {r}");
            link_event!(Level::WARN, spec, reason = %reason, "link failed")
        }
        Event::SeveralProviders(candidates) => link_event!(
            Level::WARN,
            spec,
            reason = %format_args!("candidates {candidates:?}; using the first"),
            "link has several providers"
        ),
    }
}

/// What the start tasks and the links' watchers tell the reconciler.
enum Msg<H> {
    Started {
        key: LinkKey,
        gen: u64,
        spec: Arc<LinkSpec>,
        result: Result<H, StartError>,
    },
    Ended {
        key: LinkKey,
        gen: u64,
        end: LinkEnd,
    },
}

/// Why a running link is being stopped (for its log line).
enum Why {
    Removed,
    Changed(String),
    Refused,
    Superseded,
}

/// Keeps the running links in step with the graph.
pub struct Reconciler<B: Backend> {
    backend: B,
    links: BTreeMap<LinkKey, Entry<B::Handle>>,
    /// The first retry delay of a failing link.
    retry: Duration,
    next_gen: u64,
    /// Start tasks not reported yet.
    in_flight: usize,
    /// The [`START_BURST`] places starts run in.
    slots: Arc<Semaphore>,
    tx: mpsc::UnboundedSender<Msg<B::Handle>>,
    rx: mpsc::UnboundedReceiver<Msg<B::Handle>>,
}

impl<B: Backend> Reconciler<B> {
    /// A reconciler whose failing links are first retried after `retry`.
    pub fn new(backend: B, retry: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            backend,
            links: BTreeMap::new(),
            retry,
            next_gen: 0,
            in_flight: 0,
            slots: Arc::new(Semaphore::new(START_BURST)),
            tx,
            rx,
        }
    }

    /// Bring the links in line with a new graph: stop what left or changed,
    /// start what is new or due, retrying failed links at once.
    pub async fn apply(&mut self, graph: &[LinkSpec]) {
        self.apply_with(graph, true).await
    }

    /// [`Reconciler::apply`] for a retry tick: failed links are retried
    /// only when their backoff expired.
    pub async fn retry_due(&mut self, graph: &[LinkSpec]) {
        self.apply_with(graph, false).await
    }

    async fn apply_with(&mut self, graph: &[LinkSpec], fresh: bool) {
        let mut wanted: BTreeMap<LinkKey, Vec<&LinkSpec>> = BTreeMap::new();
        for spec in graph {
            wanted.entry(spec.key()).or_default().push(spec);
        }

        let mut stops: Vec<(Arc<LinkSpec>, B::Handle, Why)> = Vec::new();
        let gone: Vec<LinkKey> = self
            .links
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(entry) = self.links.remove(&key) {
                match entry.slot {
                    Slot::Running { handle, .. } => stops.push((entry.spec, handle, Why::Removed)),
                    // Its result is stopped when it arrives.
                    Slot::Starting { .. } => log(&entry.spec, Event::Removed(None)),
                    _ => log(&entry.spec, Event::Removed(None)),
                }
            }
        }

        // One chosen spec per key, then one key per (consumer, target).
        let mut chosen: Vec<(LinkKey, &LinkSpec, Vec<String>)> = Vec::new();
        for (key, mut candidates) in wanted {
            candidates.sort_by(|a, b| preference(a).cmp(&preference(b)));
            candidates.dedup();
            let contenders: Vec<String> = if candidates.len() > 1 {
                candidates.iter().map(|c| c.provider.clone()).collect()
            } else {
                Vec::new()
            };
            chosen.push((key, candidates[0], contenders));
        }
        let mut holder: BTreeMap<(&str, &PathBuf), &str> = BTreeMap::new();
        let mut plan = Vec::new();
        for (key, spec, contenders) in &chosen {
            // Keys are sorted: the first by name holds the target (types
            // never started hold nothing).
            let place = (spec.consumer.as_str(), &spec.target);
            let conflict = match holder.get(&place).filter(|_| spec.kind.is_supported()) {
                Some(winner) => Some(format!(
                    "target {} is also the target of link {} of this consumer, which has it (first by name)",
                    spec.target.display(),
                    crate::logging::Escaped(winner)
                )),
                None => {
                    if spec.kind.is_supported() {
                        holder.insert(place, spec.name.as_str());
                    }
                    None
                }
            };
            plan.push((key.clone(), (*spec).clone(), contenders.clone(), conflict));
        }

        let mut to_settle = Vec::new();
        for (key, spec, contenders, conflict) in plan {
            if let Some(k) = self.apply_one(key, spec, contenders, conflict, fresh, &mut stops) {
                to_settle.push(k);
            }
        }
        self.stop_many(stops).await;
        for key in to_settle {
            self.settle(&key, fresh);
        }
    }

    /// Update one key's entry; returns the key if it needs settling (a
    /// start, a retry, a pending check) once the stops are done.
    fn apply_one(
        &mut self,
        key: LinkKey,
        chosen: LinkSpec,
        contenders: Vec<String>,
        conflict: Option<String>,
        fresh: bool,
        stops: &mut Vec<(Arc<LinkSpec>, B::Handle, Why)>,
    ) -> Option<LinkKey> {
        let mut entry = match self.links.remove(&key) {
            Some(entry) => entry,
            None => Entry {
                spec: Arc::new(chosen.clone()),
                slot: Slot::Pending(String::new()),
                contenders: Vec::new(),
            },
        };
        let changed = *entry.spec != chosen;
        if changed {
            let was = format!(
                "provider={} pids={}/{} socket={}",
                entry.spec.provider,
                entry.spec.consumer_pid,
                entry.spec.provider_pid,
                entry.spec.socket.display()
            );
            entry.slot = match entry.slot {
                Slot::Running { handle, .. } => {
                    stops.push((Arc::new(chosen.clone()), handle, Why::Changed(was)));
                    Slot::Pending(String::new())
                }
                other => {
                    log(
                        &chosen,
                        Event::Changed {
                            was: &was,
                            removal: None,
                        },
                    );
                    match other {
                        // A spec change ends waiting and refusals; a start
                        // in flight is judged when it reports.
                        Slot::Waiting(_) | Slot::Refused(_) => Slot::Pending(String::new()),
                        Slot::Failed { reason, .. } => Slot::Failed {
                            reason,
                            attempts: 0,
                            retry_at: Instant::now(),
                        },
                        s => s,
                    }
                }
            };
            entry.spec = Arc::new(chosen);
        }

        if !contenders.is_empty() && entry.contenders != contenders {
            log(&entry.spec, Event::SeveralProviders(&contenders));
        }
        entry.contenders = contenders;

        if let Some(why) = conflict {
            if !matches!(&entry.slot, Slot::Refused(r) if *r == why) {
                log(&entry.spec, Event::Failed(&why));
            }
            if let Slot::Running { handle, .. } =
                std::mem::replace(&mut entry.slot, Slot::Refused(why))
            {
                stops.push((entry.spec.clone(), handle, Why::Refused));
            }
            self.links.insert(key, entry);
            return None;
        }
        let settle = match &entry.slot {
            Slot::Running { .. } | Slot::Starting { .. } | Slot::Waiting(_) | Slot::Unsupported => {
                false
            }
            Slot::Failed { retry_at, .. } => fresh || *retry_at <= Instant::now(),
            // A refusal is looked at again: its conflict may be gone.
            Slot::Pending(_) | Slot::Refused(_) => true,
        };
        self.links.insert(key.clone(), entry);
        settle.then_some(key)
    }

    /// Decide and act for a link that is not running: skip, wait, refuse
    /// or start (in a task of its own).
    fn settle(&mut self, key: &LinkKey, fresh: bool) {
        let Some(entry) = self.links.get_mut(key) else {
            return;
        };
        let spec = entry.spec.clone();
        if !spec.kind.is_supported() {
            if !matches!(entry.slot, Slot::Unsupported) {
                log(&spec, Event::Skipped);
            }
            entry.slot = Slot::Unsupported;
            return;
        }
        if let Err(why) = LinkPids::of(&spec) {
            let reason = why.to_string();
            if why.is_refusal() {
                if !matches!(&entry.slot, Slot::Refused(r) if *r == reason) {
                    log(&spec, Event::Failed(&reason));
                }
                entry.slot = Slot::Refused(reason);
            } else {
                if !matches!(&entry.slot, Slot::Pending(r) if *r == reason) {
                    log(&spec, Event::Pending(&reason));
                }
                entry.slot = Slot::Pending(reason);
            }
            return;
        }
        let (was, attempts) = match &entry.slot {
            Slot::Failed {
                reason, attempts, ..
            } => (Some(reason.clone()), if fresh { 0 } else { *attempts }),
            _ => (None, 0),
        };
        self.next_gen += 1;
        let gen = self.next_gen;
        entry.slot = Slot::Starting { gen, was, attempts };
        self.in_flight += 1;
        let backend = self.backend.clone();
        let slots = self.slots.clone();
        let tx = self.tx.clone();
        let key = key.clone();
        tokio::spawn(async move {
            let result = in_slot(&slots, backend.start(spec.clone())).await;
            let _ = tx.send(Msg::Started {
                key,
                gen,
                spec,
                result,
            });
        });
    }

    /// Act on what a start task or a link's watcher reported.
    async fn handle(&mut self, msg: Msg<B::Handle>) {
        match msg {
            Msg::Started {
                key,
                gen,
                spec,
                result,
            } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let current = self.links.get_mut(&key).and_then(|e| match &e.slot {
                    Slot::Starting { gen: g, .. } if *g == gen => Some(e),
                    _ => None,
                });
                let Some(entry) = current else {
                    // The link left (or was restarted) meanwhile.
                    if let Ok(handle) = result {
                        self.stop_many(vec![(spec, handle, Why::Superseded)]).await;
                    }
                    return;
                };
                let Slot::Starting { was, attempts, .. } =
                    std::mem::replace(&mut entry.slot, Slot::Pending(String::new()))
                else {
                    return;
                };
                if *entry.spec != *spec {
                    // Changed while starting (logged then): stop this one,
                    // start the new.
                    if let Ok(handle) = result {
                        self.stop_many(vec![(spec, handle, Why::Superseded)]).await;
                    }
                    self.settle(&key, true);
                    return;
                }
                match result {
                    Ok(mut handle) => {
                        match &was {
                            Some(from) => log(&spec, Event::Recovered { from }),
                            None => log(&spec, Event::Injected),
                        }
                        if let Some(end) = self.backend.take_end(&mut handle) {
                            let tx = self.tx.clone();
                            let key = key.clone();
                            tokio::spawn(async move {
                                if let Some(end) = end.await {
                                    let _ = tx.send(Msg::Ended { key, gen, end });
                                }
                            });
                        }
                        entry.slot = Slot::Running { handle, gen };
                    }
                    Err(StartError::Failed(reason)) => {
                        if was.as_deref() == Some(reason.as_str()) {
                            log(&spec, Event::StillFailing(&reason));
                        } else {
                            log(&spec, Event::Failed(&reason));
                        }
                        let attempts = attempts + 1;
                        entry.slot = Slot::Failed {
                            reason,
                            attempts,
                            retry_at: Instant::now() + backoff(self.retry, attempts),
                        };
                    }
                    Err(StartError::Gone(reason)) => {
                        log(&spec, Event::Pending(&reason));
                        entry.slot = Slot::Waiting(reason);
                    }
                }
            }
            Msg::Ended { key, gen, end } => {
                let Some(entry) = self.links.get_mut(&key) else {
                    return;
                };
                if !matches!(entry.slot, Slot::Running { gen: g, .. } if g == gen) {
                    return;
                }
                let Slot::Running { handle, .. } =
                    std::mem::replace(&mut entry.slot, Slot::Pending(String::new()))
                else {
                    return;
                };
                let spec = entry.spec.clone();
                let removal = self.backend.stop(handle).await;
                log(&spec, Event::Ended(&end, &removal));
                let backoff = backoff(self.retry, 1);
                if let Some(entry) = self.links.get_mut(&key) {
                    entry.slot = match end {
                        LinkEnd::Exited(why) => {
                            Slot::Waiting(format!("{why}; waiting for a new pid in the graph"))
                        }
                        LinkEnd::Refused(reason) => Slot::Failed {
                            reason,
                            attempts: 1,
                            retry_at: Instant::now() + backoff,
                        },
                    };
                }
            }
        }
    }

    /// Stop links concurrently, logging each in order once all are done.
    async fn stop_many(&mut self, stops: Vec<(Arc<LinkSpec>, B::Handle, Why)>) {
        let tasks: Vec<_> = stops
            .into_iter()
            .map(|(spec, handle, why)| {
                let backend = self.backend.clone();
                (
                    spec,
                    why,
                    tokio::spawn(async move { backend.stop(handle).await }),
                )
            })
            .collect();
        for (spec, why, task) in tasks {
            let removal = task
                .await
                .unwrap_or_else(|e| Removal::Failed(format!("teardown did not complete: {e}")));
            match why {
                Why::Removed => log(&spec, Event::Removed(Some(&removal))),
                Why::Superseded => debug!("stopped a start that finished too late: {removal}"),
                Why::Changed(was) => log(
                    &spec,
                    Event::Changed {
                        was: &was,
                        removal: Some(&removal),
                    },
                ),
                Why::Refused => debug!("stopped a link that lost its target: {removal}"),
            }
        }
    }

    /// When the next failing link is due for a retry.
    fn next_retry(&self) -> Option<Instant> {
        self.links
            .values()
            .filter_map(|e| match &e.slot {
                Slot::Failed { retry_at, .. } => Some(*retry_at),
                _ => None,
            })
            .min()
    }

    /// Whether some link waits for a retry.
    pub fn has_failed(&self) -> bool {
        self.next_retry().is_some()
    }

    /// Wait until no start is in flight, acting on every report (for
    /// tests, and at shutdown).
    pub async fn settle_starts(&mut self) {
        while self.in_flight > 0 {
            match self.rx.recv().await {
                Some(msg) => self.handle(msg).await,
                None => return,
            }
        }
    }

    /// Every link, in key order.
    pub fn status(&self) -> Vec<StatusEntry> {
        self.links
            .values()
            .map(|e| StatusEntry {
                spec: e.spec.clone(),
                state: match &e.slot {
                    Slot::Pending(r) | Slot::Waiting(r) => LinkState::Pending(r.clone()),
                    Slot::Starting { .. } => LinkState::Pending("starting".into()),
                    Slot::Running { .. } => LinkState::Injected,
                    Slot::Failed { reason, .. } | Slot::Refused(reason) => {
                        LinkState::Failed(reason.clone())
                    }
                    Slot::Unsupported => LinkState::Unsupported,
                },
                stats: match &e.slot {
                    Slot::Running { handle, .. } => self.backend.stats(handle),
                    _ => None,
                },
            })
            .collect()
    }

    /// Tear every link down (daemon shutdown): starts in flight are waited
    /// for a while so what they inject is removed too; running links are
    /// stopped concurrently.
    async fn stop_all(&mut self) {
        let _ = tokio::time::timeout(SHUTDOWN_STARTS, self.settle_starts()).await;
        let links = std::mem::take(&mut self.links);
        let tasks: Vec<_> = links
            .into_values()
            .filter_map(|entry| match entry.slot {
                Slot::Running { handle, .. } => {
                    let backend = self.backend.clone();
                    Some((
                        entry.spec,
                        tokio::spawn(async move { backend.stop(handle).await }),
                    ))
                }
                _ => None,
            })
            .collect();
        for (spec, task) in tasks {
            let removal = task
                .await
                .unwrap_or_else(|e| Removal::Failed(format!("teardown did not complete: {e}")));
            log(&spec, Event::Stopped(&removal));
        }
    }
}

/// The delay before retry number `attempts` (1-based): `retry`, doubling,
/// at most [`MAX_BACKOFF`].
fn backoff(retry: Duration, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(16);
    retry.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The graphs the reconciler follows: `None` until the first good graph.
pub type GraphRx = watch::Receiver<Option<Arc<Vec<LinkSpec>>>>;

/// Follow `graphs` until `shutdown`: apply each new graph, act on starts
/// and link ends as they come, retry failed links when due, and apply
/// again on every `reload` (SIGHUP); publish the status table after every
/// step; stop every link at the end.
pub async fn run<B: Backend>(
    mut reconciler: Reconciler<B>,
    mut graphs: GraphRx,
    mut reload: watch::Receiver<u64>,
    status: watch::Sender<Vec<StatusEntry>>,
    shutdown: Shutdown,
) {
    let mut source_open = true;
    let mut reload_open = true;
    loop {
        let due = reconciler.next_retry();
        let fresh = tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = graphs.changed(), if source_open => {
                if changed.is_err() {
                    debug!("graph source ended; keeping the current links");
                    source_open = false;
                    continue;
                }
                Some(true)
            }
            changed = reload.changed(), if reload_open => {
                if changed.is_err() {
                    reload_open = false;
                    continue;
                }
                Some(true)
            }
            Some(msg) = reconciler.rx.recv() => {
                reconciler.handle(msg).await;
                None
            }
            _ = tokio::time::sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => Some(false),
        };
        if let Some(fresh) = fresh {
            let graph = graphs.borrow_and_update().clone();
            if let Some(graph) = graph {
                reconciler.apply_with(&graph, fresh).await;
            }
        }
        status.send_replace(reconciler.status());
    }
    reconciler.stop_all().await;
    status.send_replace(reconciler.status());
}
