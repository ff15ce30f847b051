//! The reconciler's rules (see the module docs), one test each, against a
//! recording fake [`Backend`] on tokio's paused clock: no namespaces, no
//! root, no real time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pv_testkit::Logs;
use tokio::sync::{oneshot, watch};

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
/// with that error; one in `hanging` never finishes starting (until
/// released); `end` makes a running link end on its own.
#[derive(Clone, Default)]
struct Fake(Arc<Mutex<FakeState>>);

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    failing: HashMap<String, StartError>,
    hanging: HashMap<String, Arc<tokio::sync::Notify>>,
    ends: HashMap<String, oneshot::Sender<LinkEnd>>,
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
        self.state()
            .failing
            .insert(name.into(), StartError::Failed(error.into()));
    }

    fn gone(&self, name: &str, why: &str) {
        self.state()
            .failing
            .insert(name.into(), StartError::Gone(why.into()));
    }

    fn heal(&self, name: &str) {
        self.state().failing.remove(name);
    }

    /// Starts of `name` block until the returned notify is notified.
    fn hang(&self, name: &str) -> Arc<tokio::sync::Notify> {
        let n = Arc::new(tokio::sync::Notify::new());
        self.state().hanging.insert(name.into(), n.clone());
        n
    }

    /// The running link `name` ends on its own.
    fn end(&self, name: &str, end: LinkEnd) {
        let tx = self.state().ends.remove(name).expect("link running");
        tx.send(end).expect("reconciler listens");
    }
}

struct FakeLink(Arc<LinkSpec>, Option<oneshot::Receiver<LinkEnd>>);

fn pids(spec: &LinkSpec) -> (i32, i32) {
    (spec.consumer_pid, spec.provider_pid)
}

impl Backend for Fake {
    type Handle = FakeLink;

    async fn start(&self, spec: Arc<LinkSpec>) -> Result<FakeLink, StartError> {
        let hang = {
            let mut st = self.state();
            st.calls
                .push(start(&spec.name, &spec.provider, pids(&spec)));
            st.hanging.get(&spec.name).cloned()
        };
        if let Some(n) = hang {
            n.notified().await;
        }
        let mut st = self.state();
        match st.failing.get(&spec.name) {
            Some(error) => Err(error.clone()),
            None => {
                let (tx, rx) = oneshot::channel();
                st.ends.insert(spec.name.clone(), tx);
                Ok(FakeLink(spec, Some(rx)))
            }
        }
    }

    async fn stop(&self, handle: FakeLink) -> Removal {
        let mut st = self.state();
        st.calls.push(stop(&handle.0.name, pids(&handle.0)));
        st.ends.remove(&handle.0.name);
        Removal::Removed
    }

    fn stats(&self, _: &FakeLink) -> Option<Arc<LinkStats>> {
        None
    }

    fn take_end(&self, handle: &mut FakeLink) -> Option<EndWatch> {
        let end = handle.1.take()?;
        Some(EndWatch::new(async move { end.await.ok() }))
    }
}

/// A unix link `name` from consumer `c` to provider `p`.
fn link(name: &str, consumer_pid: i32, provider: &str, provider_pid: i32) -> LinkSpec {
    LinkSpecBuilder::new(ServiceType::Unix)
        .name(name)
        .consumer("c", consumer_pid)
        .provider(provider, provider_pid)
        .socket(format!("/run/{provider}.sock"))
        .target(format!("/run/pv/services/{name}.sock"))
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

const RETRY: Duration = Duration::from_secs(1);

fn setup() -> (Fake, Reconciler<Fake>) {
    let fake = Fake::default();
    (fake.clone(), Reconciler::new(fake, RETRY))
}

/// Apply `graph` and wait for the starts it caused.
async fn apply(r: &mut Reconciler<Fake>, graph: &[LinkSpec]) {
    r.apply(graph).await;
    r.settle_starts().await;
}

#[tokio::test(start_paused = true)]
async fn a_new_link_is_started_once() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let graph = [link("alpha", 10, "p", 20)];
    apply(&mut r, &graph).await;
    apply(&mut r, &graph).await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
    assert_eq!(states(&r), [("alpha".into(), LinkState::Injected)]);
    assert_eq!(lines(&logs, "link injected", "alpha"), 1, "{}", logs.text());
}

#[tokio::test(start_paused = true)]
async fn a_link_gone_from_the_graph_is_stopped_and_removed() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    apply(&mut r, &[link("alpha", 10, "p", 20)]).await;
    fake.take();
    apply(&mut r, &[]).await;
    apply(&mut r, &[]).await;
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
    apply(&mut r, &[link("alpha", 10, "p", 20)]).await;
    // The consumer restarted.
    apply(&mut r, &[link("alpha", 11, "p", 20)]).await;
    // Then the provider did.
    apply(&mut r, &[link("alpha", 11, "p", 21)]).await;
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
        apply(&mut r, &graph).await;
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
                LinkState::Failed("consumer pid 0 (host side) is not supported".into())
            ),
        ]
    );
    for name in ["alpha", "beta"] {
        assert_eq!(lines(&logs, "link pending", name), 1, "{}", logs.text());
    }
    assert_eq!(lines(&logs, "link failed", "gamma"), 1, "{}", logs.text());
    // The consumer starts: now the link does.
    apply(&mut r, &[link("alpha", 10, "p", 20)]).await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
}

#[tokio::test(start_paused = true)]
async fn a_consumer_that_exited_loses_its_link() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    apply(&mut r, &[link("alpha", 10, "p", 20)]).await;
    fake.take();
    apply(&mut r, &[link("alpha", -1, "p", 20)]).await;
    apply(&mut r, &[link("alpha", -1, "p", 20)]).await;
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
    apply(&mut r, &[p2.clone(), p1.clone()]).await;
    // Same set in the other order, several polls: no restart, no warning.
    for _ in 0..3 {
        apply(&mut r, &[p1.clone(), p2.clone()]).await;
    }
    assert_eq!(fake.take(), [start("alpha", "p1", (10, 21))]);
    let warned = |logs: &Logs| lines(logs, "link has several providers", "alpha");
    assert_eq!(warned(&logs), 1, "{}", logs.text());
    assert_eq!(
        logs.count(&["candidates [\"p1\", \"p2\"]; using the first"]),
        1
    );

    // Another set: warned about once more; p1 still wins, nothing restarts.
    apply(&mut r, &[p3.clone(), p1.clone()]).await;
    apply(&mut r, &[p1.clone(), p3.clone()]).await;
    assert_eq!(fake.take(), []);
    assert_eq!(warned(&logs), 2, "{}", logs.text());

    // p1 leaves: p3 takes over, and one provider needs no warning.
    apply(&mut r, std::slice::from_ref(&p3)).await;
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
        apply(&mut r, &graph).await;
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
    apply(&mut r, &graph).await;
    apply(&mut r, &graph).await;
    assert_eq!(lines(&logs, "link failed", "alpha"), 2, "{}", logs.text());
    assert_eq!(logs.count(&["link failed", "reason=permission denied"]), 1);
}

#[tokio::test(start_paused = true)]
async fn recovery_is_logged_once() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    fake.fail("alpha", "boom");
    let graph = [link("alpha", 10, "p", 20)];
    apply(&mut r, &graph).await;
    apply(&mut r, &graph).await;
    fake.heal("alpha");
    for _ in 0..3 {
        apply(&mut r, &graph).await;
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
    let input = LinkSpecBuilder::new(ServiceType::Unknown("uart".into()))
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
        apply(&mut r, &[input.clone(), vsock.clone()]).await;
    }
    assert_eq!(fake.take(), []);
    assert_eq!(lines(&logs, "link skipped", "keys"), 1, "{}", logs.text());
    assert_eq!(lines(&logs, "link skipped", "vm"), 1);
    assert!(r.status().iter().all(|e| e.state == LinkState::Unsupported));
}

#[tokio::test(start_paused = true)]
async fn several_links_change_in_one_graph() {
    let (fake, mut r) = setup();
    apply(
        &mut r,
        &[
            link("a", 10, "p", 20),
            link("b", 10, "p", 20),
            link("c", 10, "p", 20),
        ],
    )
    .await;
    fake.take();
    // a gone, b's consumer restarted, c unchanged, d new.
    apply(
        &mut r,
        &[
            link("d", 10, "p", 20),
            link("c", 10, "p", 20),
            link("b", 12, "p", 20),
        ],
    )
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
    reload: watch::Sender<u64>,
    status: watch::Receiver<Vec<StatusEntry>>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

fn run_with(fake: &Fake) -> Running {
    let (graphs, graph_rx) = watch::channel(None);
    let (status_tx, status) = watch::channel(Vec::new());
    let shutdown = Shutdown::new();
    let (reload, reload_rx) = watch::channel(0u64);
    let task = tokio::spawn(run(
        Reconciler::new(fake.clone(), RETRY),
        graph_rx,
        reload_rx,
        status_tx,
        shutdown.clone(),
    ));
    Running {
        graphs,
        reload,
        status,
        shutdown,
        task,
    }
}

#[tokio::test(start_paused = true)]
async fn the_run_loop_backs_off_and_a_reload_retries_at_once() {
    let (logs, _g) = Logs::capture();
    let fake = Fake::default();
    fake.fail("alpha", "boom");
    let mut running = run_with(&fake);
    running
        .graphs
        .send_replace(Some(Arc::new(vec![link("alpha", 10, "p", 20)])));
    running.status.changed().await.expect("status published");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.take().len(), 1, "first attempt");

    // Retries after 1 s, then 2 s more, then 4 s more: 3 in 7.5 s (a
    // retry each second would have made 7).
    tokio::time::sleep(Duration::from_millis(7500)).await;
    assert_eq!(fake.take().len(), 3, "exponential backoff");
    // The next wait is 8 s: nothing at 12 s.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(fake.take().len(), 0);
    assert_eq!(lines(&logs, "link failed", "alpha"), 1, "{}", logs.text());

    // Capped at 30 s.
    tokio::time::sleep(Duration::from_secs(200)).await;
    let retried = fake.take().len();
    assert!((6..=8).contains(&retried), "{retried} retries in 200 s");

    // A reload (SIGHUP) retries now; healed, it starts and stays.
    fake.heal("alpha");
    running.reload.send_modify(|n| *n += 1);
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.take().len(), 1);
    assert_eq!(running.status.borrow()[0].state, LinkState::Injected);
    tokio::time::sleep(RETRY * 60).await;
    assert_eq!(fake.take(), []);
    assert_eq!(lines(&logs, "link recovered", "alpha"), 1);

    running.shutdown.cancel();
    running.task.await.expect("run loop ends");
}

#[tokio::test(start_paused = true)]
async fn a_graph_change_resets_the_backoff() {
    let fake = Fake::default();
    fake.fail("alpha", "boom");
    let running = run_with(&fake);
    let graph = vec![link("alpha", 10, "p", 20), link("beta", -1, "p", 20)];
    running.graphs.send_replace(Some(Arc::new(graph.clone())));
    // Attempts at 0, 1, 3, 7 s; the next is due at 15 s.
    tokio::time::sleep(Duration::from_millis(7500)).await;
    assert_eq!(fake.take().len(), 4);
    // Another link's change is a new graph: alpha is retried at once.
    let mut changed = graph;
    changed[1] = link("beta", -1, "q", 20);
    running.graphs.send_replace(Some(Arc::new(changed)));
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
    // And its next retry is 1 s later, not 16 s.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(fake.take().len(), 1);
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

#[tokio::test(start_paused = true)]
async fn an_exited_process_ends_the_link_at_once_and_its_stale_pid_is_never_reused() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let graph = [link("alpha", 10, "p", 20), link("beta", 11, "p", 20)];
    apply(&mut r, &graph).await;
    fake.take();

    // The consumer of alpha exits; the graph still shows its pid, as
    // Pantavisor's does.
    fake.end("alpha", LinkEnd::Exited("consumer exited (pid 10)".into()));
    let msg = r.rx.recv().await.expect("end reported");
    r.handle(msg).await;
    assert_eq!(fake.take(), [stop("alpha", (10, 20))]);
    assert_eq!(
        states(&r),
        [
            (
                "alpha".into(),
                LinkState::Pending(
                    "consumer exited (pid 10); waiting for a new pid in the graph".into()
                )
            ),
            ("beta".into(), LinkState::Injected),
        ]
    );
    assert_eq!(
        logs.count(&["link pending", "consumer exited (pid 10); node removed"]),
        1,
        "{}",
        logs.text()
    );

    // Same graph, retry ticks, reloads: pid 10 may belong to anyone now.
    for _ in 0..3 {
        apply(&mut r, &graph).await;
        r.retry_due(&graph).await;
    }
    assert_eq!(fake.take(), []);

    // The container came back with a new pid: the link does too.
    apply(
        &mut r,
        &[link("alpha", 12, "p", 20), link("beta", 11, "p", 20)],
    )
    .await;
    assert_eq!(fake.take(), [start("alpha", "p", (12, 20))]);
    assert_eq!(states(&r)[0].1, LinkState::Injected);
}

#[tokio::test(start_paused = true)]
async fn a_pid_found_gone_at_start_waits_for_a_new_one() {
    let (fake, mut r) = setup();
    fake.gone("alpha", "consumer pid 10 is not running");
    let graph = [link("alpha", 10, "p", 20)];
    apply(&mut r, &graph).await;
    apply(&mut r, &graph).await;
    r.retry_due(&graph).await;
    assert_eq!(fake.take().len(), 1, "tried once");
    assert!(!r.has_failed());
    assert_eq!(
        states(&r),
        [(
            "alpha".into(),
            LinkState::Pending("consumer pid 10 is not running".into())
        )]
    );
}

#[tokio::test(start_paused = true)]
async fn a_refused_provider_socket_fails_the_link_with_backoff() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let graph = [link("alpha", 10, "p", 20)];
    apply(&mut r, &graph).await;
    fake.take();
    let why = "provider socket /run/p.sock is served from outside container p";
    fake.end("alpha", LinkEnd::Refused(why.into()));
    let msg = r.rx.recv().await.expect("end reported");
    r.handle(msg).await;
    assert_eq!(fake.take(), [stop("alpha", (10, 20))]);
    assert_eq!(
        states(&r),
        [("alpha".into(), LinkState::Failed(why.into()))]
    );
    assert_eq!(logs.count(&["link failed", why]), 1, "{}", logs.text());
    // Not before its backoff.
    r.retry_due(&graph).await;
    assert_eq!(fake.take(), []);
    tokio::time::sleep(RETRY).await;
    r.retry_due(&graph).await;
    r.settle_starts().await;
    assert_eq!(fake.take(), [start("alpha", "p", (10, 20))]);
}

#[tokio::test(start_paused = true)]
async fn one_target_one_link_and_the_first_by_name_wins() {
    let (logs, _g) = Logs::capture();
    let target = "/run/pv/services/shared.sock";
    let on = |name: &str, provider: &str| {
        LinkSpecBuilder::new(ServiceType::Unix)
            .name(name)
            .consumer("c", 10)
            .provider(provider, 20)
            .target(target)
            .build()
    };
    for order in [
        [on("zeta", "p1"), on("alpha", "p2")],
        [on("alpha", "p2"), on("zeta", "p1")],
    ] {
        let (fake, mut r) = setup();
        apply(&mut r, &order).await;
        apply(&mut r, &order).await;
        assert_eq!(
            fake.take(),
            [start("alpha", "p2", (10, 20))],
            "whatever the order"
        );
        let st = states(&r);
        assert_eq!(st[0].1, LinkState::Injected);
        match &st[1].1 {
            LinkState::Failed(why) => {
                assert!(why.contains("is also the target of link alpha"), "{why}")
            }
            other => panic!("zeta: {other:?}"),
        }
        // alpha leaves: zeta gets the target, after alpha's node is gone.
        apply(&mut r, &[on("zeta", "p1")]).await;
        assert_eq!(
            fake.take(),
            [stop("alpha", (10, 20)), start("zeta", "p1", (10, 20))]
        );
    }
    assert_eq!(
        lines(&logs, "link failed", "zeta"),
        2,
        "once per run: {}",
        logs.text()
    );
}

#[tokio::test(start_paused = true)]
async fn pid_zero_is_for_the_hosted_bus_only() {
    let (fake, mut r) = setup();
    let host = |provider: &str, kind: ServiceType| {
        LinkSpecBuilder::new(kind)
            .name(provider)
            .consumer("c", 10)
            .provider(provider, 0)
            .target(format!("/run/{provider}.sock"))
            .build()
    };
    let graph = [
        host(crate::process::HOSTED_BUS, ServiceType::Dbus),
        host("app", ServiceType::Unix),
    ];
    apply(&mut r, &graph).await;
    assert_eq!(fake.take(), [start("_pv_", "_pv_", (10, 0))]);
    match &states(&r)[1].1 {
        LinkState::Failed(why) => assert!(why.contains("hosted system bus"), "{why}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_start_delays_no_other_link_and_times_out() {
    let (logs, _g) = Logs::capture();
    let (fake, mut r) = setup();
    let release = fake.hang("stuck");
    r.apply(&[link("stuck", 10, "p", 20), link("fine", 11, "p", 20)])
        .await;
    // "fine" is up while "stuck" still starts.
    let msg = r.rx.recv().await.expect("a start reports");
    r.handle(msg).await;
    let st = states(&r);
    assert_eq!(st[0], ("fine".into(), LinkState::Injected));
    assert_eq!(
        st[1],
        ("stuck".into(), LinkState::Pending("starting".into()))
    );
    // Removing "fine" does not wait for "stuck".
    r.apply(&[link("stuck", 10, "p", 20)]).await;
    assert!(fake.take().contains(&stop("fine", (11, 20))));

    // After START_TIMEOUT the start is reported failed...
    r.settle_starts().await;
    match &states(&r)[0].1 {
        LinkState::Failed(why) => assert!(why.contains("timed out"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(logs.count(&["link failed", "timed out"]), 1);
    // ...and the backend's late success is not left running: the real
    // backend stops it itself (see LinkBackend's `Reap`).
    release.notify_one();
}

#[tokio::test(start_paused = true)]
async fn a_start_that_finishes_after_its_link_left_is_stopped() {
    let (fake, mut r) = setup();
    let release = fake.hang("alpha");
    r.apply(&[link("alpha", 10, "p", 20)]).await;
    r.apply(&[]).await;
    release.notify_one();
    r.settle_starts().await;
    assert_eq!(
        fake.take(),
        [start("alpha", "p", (10, 20)), stop("alpha", (10, 20))]
    );
    assert!(r.status().is_empty());
}

#[tokio::test(start_paused = true)]
async fn starts_run_a_few_at_a_time_and_a_slow_one_gives_its_place_up() {
    let (fake, mut r) = setup();
    // More hung starts than places, then a quick one (names sort in this
    // order, which is the order starts are queued).
    let stuck: Vec<String> = (0..=START_BURST).map(|i| format!("s{i}")).collect();
    let _releases: Vec<_> = stuck.iter().map(|name| fake.hang(name)).collect();
    let mut graph: Vec<LinkSpec> = stuck.iter().map(|n| link(n, 10, "p", 20)).collect();
    graph.push(link("zfine", 11, "p", 20));
    let t0 = Instant::now();
    r.apply(&graph).await;
    tokio::task::yield_now().await;
    // Only a burst's worth has started.
    let first: Vec<String> = fake
        .take()
        .into_iter()
        .map(|c| match c {
            Call::Start(name, ..) => name,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(first, stuck[..START_BURST]);
    // The quick one starts once the slow ones gave their places up.
    let msg = r.rx.recv().await.expect("a start reports");
    assert_eq!(t0.elapsed(), START_SLOT);
    r.handle(msg).await;
    assert_eq!(
        fake.take(),
        [
            start(&stuck[START_BURST], "p", (10, 20)),
            start("zfine", "p", (11, 20))
        ]
    );
    assert_eq!(states(&r).last().unwrap().1, LinkState::Injected);
}
