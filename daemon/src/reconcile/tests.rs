//! The reconciler's rules (see the module docs), one test each, against a
//! recording fake [`Backend`] on tokio's paused clock: no namespaces, no
//! root, no real time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pv_testkit::Logs;
use tokio::sync::watch;

use super::*;
use crate::graph::ServiceType;
use crate::test_util::LinkSpecBuilder;

/// One thing the reconciler asked of the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    /// Link name, provider, (consumer pid, provider pid).
    Start(String, String, (i32, i32)),
    Stop(String, (i32, i32)),
}

fn start(name: &str, provider: &str, pids: (i32, i32)) -> Call {
    Call::Start(name.into(), provider.into(), pids)
}

fn stop(name: &str, pids: (i32, i32)) -> Call {
    Call::Stop(name.into(), pids)
}

/// Records every call; a link whose name is in `failing` fails to start
/// with that error.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    failing: HashMap<String, String>,
}

impl Fake {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().expect("fake backend")
    }

    /// The calls since the last `take`.
    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut self.state().calls)
    }

    fn fail(&self, name: &str, error: &str) {
        self.state().failing.insert(name.into(), error.into());
    }

    fn heal(&self, name: &str) {
        self.state().failing.remove(name);
    }
}

struct FakeLink(Arc<LinkSpec>);

fn pids(spec: &LinkSpec) -> (i32, i32) {
    (spec.consumer_pid, spec.provider_pid)
}

impl Backend for Fake {
    type Handle = FakeLink;

    async fn start(&self, spec: Arc<LinkSpec>) -> Result<FakeLink, String> {
        let mut st = self.state();
        st.calls
            .push(start(&spec.name, &spec.provider, pids(&spec)));
        match st.failing.get(&spec.name) {
            Some(error) => Err(error.clone()),
            None => Ok(FakeLink(spec)),
        }
    }

    async fn stop(&self, handle: FakeLink) -> Removal {
        self.state()
            .calls
            .push(stop(&handle.0.name, pids(&handle.0)));
        Removal::Removed
    }

    fn stats(&self, _: &FakeLink) -> Option<Arc<LinkStats>> {
        None
    }
}

/// A unix link `name` from consumer `c` to provider `p`.
fn link(name: &str, consumer_pid: i32, provider: &str, provider_pid: i32) -> LinkSpec {
    LinkSpecBuilder::new(ServiceType::Unix)
        .name(name)
        .consumer("c", consumer_pid)
        .provider(provider, provider_pid)
        .socket(format!("/run/{provider}.sock"))
        .build()
}

/// Lines at INFO or above with this message about link `name`.
fn lines(logs: &Logs, message: &str, name: &str) -> usize {
    logs.count(&[&format!(" {message} "), &format!(" name={name} ")])
}

fn states(r: &Reconciler<Fake>) -> Vec<(String, LinkState)> {
    r.status()
        .into_iter()
        .map(|e| (e.spec.name.clone(), e.state))
        .collect()
}

fn setup() -> (Fake, Reconciler<Fake>) {
    let fake = Fake::default();
    (fake.clone(), Reconciler::new(fake))
}

#[tokio::test(start_paused = true)]
async fn a_new_link_is_started_once() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let graph = [link("alpha", 10, "p", 20)];
    r.apply(&graph).await;
    r.apply(&graph).await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
    assert_eq!(states(&r), [("alpha".into(), LinkState::Injected)]);
    assert_eq!(lines(&logs, "link injected", "alpha"), 1, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_link_gone_from_the_graph_is_stopped_and_removed() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    r.apply(&[link("alpha", 10, "p", 20)]).await;
    fake.take();
    r.apply(&[]).await;
    r.apply(&[]).await;
    assert_eq!(fake.take(), [stop("alpha", (10, 20))]);
    assert!(r.status().is_empty());
    assert_eq!(lines(&logs, "link removed", "alpha"), 1, "{}", logs.text());
    assert_eq!(
        logs.count(&[
            "link removed",
            "gone from the graph; node removed from the consumer"
        ]),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn a_pid_change_re_establishes_the_link() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    r.apply(&[link("alpha", 10, "p", 20)]).await;
    // The consumer restarted.
    r.apply(&[link("alpha", 11, "p", 20)]).await;
    // Then the provider did.
    r.apply(&[link("alpha", 11, "p", 21)]).await;
    assert_eq!(
        fake.take(),
        [
            start("alpha", "p", (10, 20)),
            stop("alpha", (10, 20)),
            start("alpha", "p", (11, 20)),
            stop("alpha", (11, 20)),
            start("alpha", "p", (11, 21)),
        ]
    );
    assert_eq!(lines(&logs, "link changed", "alpha"), 2, "{}", logs.text());
    assert_eq!(
        logs.count(&["link changed", "was provider=p pids=10/20"]),
        1
    );
    assert_eq!(lines(&logs, "link injected", "alpha"), 3);
}

#[tokio::test(start_paused = true)]
async fn pid_minus_one_is_pending_and_nothing_starts() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let graph = [
        link("alpha", -1, "p", 20),
        link("beta", 10, "p", -1),
        link("gamma", 0, "p", 20),
    ];
    for _ in 0..3 {
        r.apply(&graph).await;
    }
    assert_eq!(fake.take(), []);
    assert_eq!(
        states(&r),
        [
            (
                "alpha".into(),
                LinkState::Pending("consumer not started (pid -1)".into())
            ),
            (
                "beta".into(),
                LinkState::Pending("provider not started (pid -1)".into())
            ),
            (
                "gamma".into(),
                LinkState::Pending("consumer pid 0 (host side) is not supported".into())
            ),
        ]
    );
    for name in ["alpha", "beta", "gamma"] {
        assert_eq!(lines(&logs, "link pending", name), 1, "{}", logs.text());
    }
    // The consumer starts: now the link does.
    r.apply(&[link("alpha", 10, "p", 20)]).await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_exited_loses_its_link() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    r.apply(&[link("alpha", 10, "p", 20)]).await;
    fake.take();
    r.apply(&[link("alpha", -1, "p", 20)]).await;
    r.apply(&[link("alpha", -1, "p", 20)]).await;
    assert_eq!(fake.take(), [stop("alpha", (10, 20))]);
    assert_eq!(
        states(&r),
        [(
            "alpha".into(),
            LinkState::Pending("consumer not started (pid -1)".into())
        )]
    );
    assert_eq!(
        logs.count(&["link changed", "stopped, node removed from the consumer"]),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(lines(&logs, "link pending", "alpha"), 1);
}

#[tokio::test(start_paused = true)]
async fn duplicate_providers_pick_one_warn_once_per_set_and_never_flap() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let p1 = link("alpha", 10, "p1", 21);
    let p2 = link("alpha", 10, "p2", 22);
    let p3 = link("alpha", 10, "p3", 23);
    r.apply(&[p2.clone(), p1.clone()]).await;
    // Same set in the other order, several polls: no restart, no warning.
    for _ in 0..3 {
        r.apply(&[p1.clone(), p2.clone()]).await;
    }
    assert_eq!(fake.take(), [start("alpha", "p1", (10, 21))]);
    let warned = |logs: &Logs| lines(logs, "link has several providers", "alpha");
    assert_eq!(warned(&logs), 1, "{}", logs.text());
    assert_eq!(
        logs.count(&["candidates [\"p1\", \"p2\"]; using the first"]),
        1
    );

    // Another set: warned about once more; p1 still wins, nothing restarts.
    r.apply(&[p3.clone(), p1.clone()]).await;
    r.apply(&[p1.clone(), p3.clone()]).await;
    assert_eq!(fake.take(), []);
    assert_eq!(warned(&logs), 2, "{}", logs.text());

    // p1 leaves: p3 takes over, and one provider needs no warning.
    r.apply(std::slice::from_ref(&p3)).await;
    assert_eq!(
        fake.take(),
        [stop("alpha", (10, 21)), start("alpha", "p3", (10, 23))]
    );
    assert_eq!(warned(&logs), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failing_link_is_retried_and_logged_once_per_error() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    fake.fail("alpha", "provider socket missing");
    let graph = [link("alpha", 10, "p", 20)];
    for _ in 0..3 {
        r.apply(&graph).await;
    }
    assert_eq!(fake.take().len(), 3, "every call retries");
    assert!(r.has_failed());
    assert_eq!(
        states(&r),
        [(
            "alpha".into(),
            LinkState::Failed("provider socket missing".into())
        )]
    );
    assert_eq!(lines(&logs, "link failed", "alpha"), 1, "{}", logs.text());

    fake.fail("alpha", "permission denied");
    r.apply(&graph).await;
    r.apply(&graph).await;
    assert_eq!(lines(&logs, "link failed", "alpha"), 2, "{}", logs.text());
    assert_eq!(logs.count(&["link failed", "reason=permission denied"]), 1);
}

#[tokio::test(start_paused = true)]
async fn recovery_is_logged_once() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    fake.fail("alpha", "boom");
    let graph = [link("alpha", 10, "p", 20)];
    r.apply(&graph).await;
    r.apply(&graph).await;
    fake.heal("alpha");
    for _ in 0..3 {
        r.apply(&graph).await;
    }
    assert_eq!(fake.take().len(), 3, "two failures, then one start");
    assert!(!r.has_failed());
    assert_eq!(states(&r), [("alpha".into(), LinkState::Injected)]);
    assert_eq!(
        lines(&logs, "link recovered", "alpha"),
        1,
        "{}",
        logs.text()
    );
    assert_eq!(logs.count(&["link recovered", "was failing: boom"]), 1);
    assert_eq!(lines(&logs, "link injected", "alpha"), 0);
}

#[tokio::test(start_paused = true)]
async fn unsupported_types_are_skipped_once_and_never_started() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let input = LinkSpecBuilder::new(ServiceType::Input)
        .name("keys")
        .consumer("c", 10)
        .provider("p", 20)
        .build();
    let vsock = LinkSpecBuilder::new(ServiceType::Unknown("vsock".into()))
        .name("vm")
        .consumer("c", 10)
        .provider("p", 20)
        .build();
    for _ in 0..3 {
        r.apply(&[input.clone(), vsock.clone()]).await;
    }
    assert_eq!(fake.take(), []);
    assert_eq!(lines(&logs, "link skipped", "keys"), 1, "{}", logs.text());
    assert_eq!(lines(&logs, "link skipped", "vm"), 1);
    assert!(r.status().iter().all(|e| e.state == LinkState::Unsupported));
}

#[tokio::test(start_paused = true)]
async fn several_links_change_in_one_graph() {
    let (fake, mut r) = setup();
    r.apply(&[
        link("a", 10, "p", 20),
        link("b", 10, "p", 20),
        link("c", 10, "p", 20),
    ])
    .await;
    fake.take();
    // a gone, b's consumer restarted, c unchanged, d new.
    r.apply(&[
        link("d", 10, "p", 20),
        link("c", 10, "p", 20),
        link("b", 12, "p", 20),
    ])
    .await;
    assert_eq!(
        fake.take(),
        [
            stop("a", (10, 20)),
            stop("b", (10, 20)),
            start("b", "p", (12, 20)),
            start("d", "p", (10, 20)),
        ]
    );
    let names: Vec<String> = states(&r).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["b", "c", "d"]);
}

/// Drive [`run`] as the daemon does, on the paused clock.
struct Running {
    graphs: watch::Sender<Option<Arc<Vec<LinkSpec>>>>,
    status: watch::Receiver<Vec<StatusEntry>>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

const RETRY: Duration = Duration::from_secs(1);

fn run_with(fake: &Fake) -> Running {
    let (graphs, graph_rx) = watch::channel(None);
    let (status_tx, status) = watch::channel(Vec::new());
    let shutdown = Shutdown::new();
    let task = tokio::spawn(run(
        Reconciler::new(fake.clone()),
        graph_rx,
        RETRY,
        status_tx,
        shutdown.clone(),
    ));
    Running {
        graphs,
        status,
        shutdown,
        task,
    }
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_retries_failures_each_tick_and_only_then() {
    let (logs, _g) = Logs::capture();
    let fake = Fake::default();
    fake.fail("alpha", "boom");
    let mut running = run_with(&fake);
    running
        .graphs
        .send_replace(Some(Arc::new(vec![link("alpha", 10, "p", 20)])));
    running.status.changed().await.expect("status published");
    let first = fake.take().len();
    assert!(first >= 1);

    // Three retry periods: about one start per tick.
    tokio::time::sleep(RETRY * 3 + RETRY / 2).await;
    let retried = fake.take().len();
    assert!((3..=4).contains(&retried), "{retried} retries in 3 ticks");
    assert_eq!(lines(&logs, "link failed", "alpha"), 1, "{}", logs.text());

    // Healed: the next tick starts it; later ticks leave it alone.
    fake.heal("alpha");
    tokio::time::sleep(RETRY + RETRY / 2).await;
    assert_eq!(fake.take().len(), 1);
    assert_eq!(running.status.borrow()[0].state, LinkState::Injected);
    tokio::time::sleep(RETRY * 5).await;
    assert_eq!(fake.take(), []);
    assert_eq!(lines(&logs, "link recovered", "alpha"), 1);

    running.shutdown.cancel();
    running.task.await.expect("run loop ends");
}

#[tokio::test(start_paused = true)]
async fn shutdown_stops_every_running_link() {
    let (logs, _g) = Logs::capture();
    let fake = Fake::default();
    let mut running = run_with(&fake);
    running.graphs.send_replace(Some(Arc::new(vec![
        link("a", 10, "p", 20),
        link("b", -1, "p", 20),
    ])));
    running.status.changed().await.expect("status published");
    fake.take();
    running.shutdown.cancel();
    running.task.await.expect("run loop ends");
    assert_eq!(fake.take(), [stop("a", (10, 20))]);
    assert!(running.status.borrow().is_empty());
    assert_eq!(
        logs.count(&[
            "link stopped",
            "daemon shutdown; node removed from the consumer"
        ]),
        1,
        "{}",
        logs.text()
    );
}
