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
//! - `input` and unknown types are logged once and never started.
//! - Consumer pid -1 (not started), 0 (host side: not supported for a
//!   consumer) or provider pid < 0: the link is *pending* and nothing is
//!   started, so nothing is ever bound in the daemon's own namespace (the
//!   check is [`LinkPids::of`]).
//! - Any change of the chosen entry (a pid after a container restart, the
//!   provider, its socket…) stops the running link and starts it again.
//!   A consumer that exited (its pid now -1) thus loses the link: it is
//!   stopped, what it injected removed, and it waits as pending.
//! - A link whose start failed is retried on every later call (the run loop
//!   calls at each retry tick); its error is logged only when it changes,
//!   its recovery once.
//!
//! Every link event (injected, recovered, pending, failed, skipped,
//! changed, removed, stopped, several providers) is logged here and only
//! here, one line each, with the fields of [`crate::logging`].
//!
//! [`LinkBackend`] is the real backend, calling [`crate::link`].

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, Level};

use crate::graph::{LinkKey, LinkSpec};
use crate::link::{self, LinkHandle, LinkStats, Removal};
use crate::logging::link_event;
use crate::process::LinkPids;
use crate::shutdown::Shutdown;

#[cfg(test)]
mod tests;

/// A link start that takes longer than this is reported as failed, so one
/// stuck namespace cannot stall every other link.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What actually starts and stops links.
pub trait Backend: Send {
    type Handle: Send;

    /// Inject and start mediating. The error is shown as `failed: <reason>`.
    fn start(
        &self,
        spec: Arc<LinkSpec>,
    ) -> impl Future<Output = Result<Self::Handle, String>> + Send;

    /// Stop and remove what was injected; say what became of it.
    fn stop(&self, handle: Self::Handle) -> impl Future<Output = Removal> + Send;

    /// Live counters of a running link, if the backend keeps any.
    fn stats(&self, handle: &Self::Handle) -> Option<Arc<LinkStats>>;
}

/// The real backend: [`link::start`] under the daemon's shutdown token.
///
/// Start and stop run in their own task so a panic in one link's setup is
/// reported as that link's failure instead of ending the reconciler.
#[derive(Debug, Clone)]
pub struct LinkBackend {
    shutdown: Shutdown,
}

impl LinkBackend {
    pub fn new(shutdown: Shutdown) -> Self {
        Self { shutdown }
    }
}

impl Backend for LinkBackend {
    type Handle = LinkHandle;

    async fn start(&self, spec: Arc<LinkSpec>) -> Result<LinkHandle, String> {
        let parent = self.shutdown.clone();
        let task = tokio::spawn(async move { link::start(spec, &parent).await });
        match tokio::time::timeout(START_TIMEOUT, task).await {
            Ok(Ok(Ok(handle))) => Ok(handle),
            Ok(Ok(Err(e))) => Err(e.to_string()),
            Ok(Err(join)) if join.is_panic() => Err("link setup panicked".into()),
            Ok(Err(join)) => Err(format!("link setup aborted: {join}")),
            Err(_) => Err(format!(
                "link setup timed out after {}s",
                START_TIMEOUT.as_secs()
            )),
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
}

/// A link's state as `pv-xconnect status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkState {
    /// Waiting for a container to start (or not startable yet).
    Pending(String),
    /// Injected into the consumer and mediating.
    Injected,
    /// The last start attempt failed; retried at the next tick.
    Failed(String),
    /// `input` or unknown type: never started.
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
    Pending(String),
    Running(H),
    Failed(String),
    Unsupported,
}

impl<H> Slot<H> {
    fn pending_reason(&self) -> Option<&str> {
        match self {
            Slot::Pending(r) => Some(r),
            _ => None,
        }
    }
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
        Event::SeveralProviders(candidates) => link_event!(
            Level::WARN,
            spec,
            reason = %format_args!("candidates {candidates:?}; using the first"),
            "link has several providers"
        ),
    }
}

/// Keeps the running links in step with the graph.
pub struct Reconciler<B: Backend> {
    backend: B,
    links: BTreeMap<LinkKey, Entry<B::Handle>>,
}

impl<B: Backend> Reconciler<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            links: BTreeMap::new(),
        }
    }

    /// Bring the running links in line with `graph`.
    pub async fn apply(&mut self, graph: &[LinkSpec]) {
        let mut wanted: BTreeMap<LinkKey, Vec<&LinkSpec>> = BTreeMap::new();
        for spec in graph {
            wanted.entry(spec.key()).or_default().push(spec);
        }

        let gone: Vec<LinkKey> = self
            .links
            .keys()
            .filter(|k| !wanted.contains_key(*k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(entry) = self.links.remove(&key) {
                let removal = match entry.slot {
                    Slot::Running(handle) => Some(self.backend.stop(handle).await),
                    _ => None,
                };
                log(&entry.spec, Event::Removed(removal.as_ref()));
            }
        }

        for (key, mut candidates) in wanted {
            candidates.sort_by(|a, b| preference(a).cmp(&preference(b)));
            candidates.dedup();
            let chosen = candidates[0];
            let contenders: Vec<String> = if candidates.len() > 1 {
                candidates.iter().map(|c| c.provider.clone()).collect()
            } else {
                Vec::new()
            };
            self.apply_one(key, chosen, contenders).await;
        }
    }

    async fn apply_one(&mut self, key: LinkKey, chosen: &LinkSpec, contenders: Vec<String>) {
        let previous = match self.links.remove(&key) {
            Some(entry) if *entry.spec == *chosen => Some(entry),
            Some(entry) => {
                let was = format!(
                    "provider={} pids={}/{} socket={}",
                    entry.spec.provider,
                    entry.spec.consumer_pid,
                    entry.spec.provider_pid,
                    entry.spec.socket.display()
                );
                let slot = match entry.slot {
                    Slot::Running(handle) => {
                        let removal = self.backend.stop(handle).await;
                        log(
                            chosen,
                            Event::Changed {
                                was: &was,
                                removal: Some(&removal),
                            },
                        );
                        // A fresh start logs on its own; nothing to compare.
                        Slot::Pending(String::new())
                    }
                    other => {
                        log(
                            chosen,
                            Event::Changed {
                                was: &was,
                                removal: None,
                            },
                        );
                        other
                    }
                };
                Some(Entry {
                    spec: entry.spec,
                    slot,
                    contenders: entry.contenders,
                })
            }
            None => None,
        };

        let unchanged = previous.as_ref().is_some_and(|e| *e.spec == *chosen);
        let spec = match &previous {
            Some(e) if unchanged => e.spec.clone(),
            _ => Arc::new(chosen.clone()),
        };

        let warned = previous.as_ref().map(|e| &e.contenders);
        if !contenders.is_empty() && warned != Some(&contenders) {
            log(&spec, Event::SeveralProviders(&contenders));
        }

        let slot = match previous.map(|e| e.slot) {
            Some(Slot::Running(handle)) => Slot::Running(handle),
            Some(Slot::Unsupported) if !spec.kind.is_supported() => Slot::Unsupported,
            prev => self.settle(&spec, prev).await,
        };
        self.links.insert(
            key,
            Entry {
                spec,
                slot,
                contenders,
            },
        );
    }

    /// Decide and act for a link that is not running: skip, wait or start.
    async fn settle(
        &mut self,
        spec: &Arc<LinkSpec>,
        prev: Option<Slot<B::Handle>>,
    ) -> Slot<B::Handle> {
        if !spec.kind.is_supported() {
            log(spec, Event::Skipped);
            return Slot::Unsupported;
        }
        if let Err(why) = LinkPids::of(spec) {
            let reason = why.to_string();
            if prev.as_ref().and_then(Slot::pending_reason) != Some(reason.as_str()) {
                log(spec, Event::Pending(&reason));
            }
            return Slot::Pending(reason);
        }
        match self.backend.start(spec.clone()).await {
            Ok(handle) => {
                match &prev {
                    Some(Slot::Failed(from)) => log(spec, Event::Recovered { from }),
                    _ => log(spec, Event::Injected),
                }
                Slot::Running(handle)
            }
            Err(error) => {
                match &prev {
                    Some(Slot::Failed(old)) if *old == error => {
                        log(spec, Event::StillFailing(&error))
                    }
                    _ => log(spec, Event::Failed(&error)),
                }
                Slot::Failed(error)
            }
        }
    }

    /// Whether some link waits for a retry.
    fn has_failed(&self) -> bool {
        self.links
            .values()
            .any(|e| matches!(e.slot, Slot::Failed(_)))
    }

    /// Every link, in key order.
    pub fn status(&self) -> Vec<StatusEntry> {
        self.links
            .values()
            .map(|e| StatusEntry {
                spec: e.spec.clone(),
                state: match &e.slot {
                    Slot::Pending(r) => LinkState::Pending(r.clone()),
                    Slot::Running(_) => LinkState::Injected,
                    Slot::Failed(r) => LinkState::Failed(r.clone()),
                    Slot::Unsupported => LinkState::Unsupported,
                },
                stats: match &e.slot {
                    Slot::Running(h) => self.backend.stats(h),
                    _ => None,
                },
            })
            .collect()
    }

    /// Tear every link down (daemon shutdown).
    async fn stop_all(&mut self) {
        let links = std::mem::take(&mut self.links);
        for (_, entry) in links {
            if let Slot::Running(handle) = entry.slot {
                let removal = self.backend.stop(handle).await;
                log(&entry.spec, Event::Stopped(&removal));
            }
        }
    }
}

/// The graphs the reconciler follows: `None` until the first good graph.
pub type GraphRx = watch::Receiver<Option<Arc<Vec<LinkSpec>>>>;

/// Follow `graphs` until `shutdown`, retrying failed links every `retry`;
/// publish the status table after every pass; stop every link at the end.
pub async fn run<B: Backend>(
    mut reconciler: Reconciler<B>,
    mut graphs: GraphRx,
    retry: Duration,
    status: watch::Sender<Vec<StatusEntry>>,
    shutdown: Shutdown,
) {
    let mut tick = tokio::time::interval(retry);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut source_open = true;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            changed = graphs.changed(), if source_open => {
                if changed.is_err() {
                    debug!("graph source ended; keeping the current links");
                    source_open = false;
                    continue;
                }
            }
            _ = tick.tick() => {
                if !reconciler.has_failed() {
                    continue;
                }
            }
        }
        let graph = graphs.borrow_and_update().clone();
        if let Some(graph) = graph {
            reconciler.apply(&graph).await;
            status.send_replace(reconciler.status());
        }
    }
    reconciler.stop_all().await;
    status.send_replace(reconciler.status());
}
