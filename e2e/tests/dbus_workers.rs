//! dbus links on the daemon's session workers (`--session-workers`, as the
//! daemon runs them): connections accepted on the caller's runtime move to
//! the least-loaded worker with their sockets, and there authenticate,
//! connect to the bus as the link's uid (from a disposable thread) and
//! relay. Hosted-bus links, as the hostbus harness group uses them, against
//! Debian's dbus-daemon. Its own test binary: the workers are process-wide.

use pv_e2e::dbus::{request_name, zbus_connect as connect, Bus};
use pv_examples::dbus::{ExampleProxy, INFO, NAME};
use pv_xconnect::link::workers;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_bus_sessions_on_the_workers_own_and_call_as_the_links_uid() {
    workers::start(2).expect("start workers");
    let bus = Bus::start().await;
    // Two hosted-bus links: uid 0 (whom this bus lets own the name) and
    // uid 2, each with the name as its (informational) interface.
    let owner = bus.proxy_with("example-service", NAME, Some(0)).await;
    let client = bus.proxy_with("operator", NAME, Some(2)).await;

    // Four clients live at once: their sessions spread over both workers,
    // and each is seen by the bus as the link's uid.
    let mut conns = Vec::new();
    for _ in 0..4 {
        conns.push(connect(&client.address).await);
    }
    let loads = workers::loads();
    assert_eq!(loads.iter().sum::<usize>(), 4, "{loads:?}");
    assert!(
        loads.iter().all(|&n| n > 0),
        "sessions per worker: {loads:?}"
    );
    for c in &conns {
        let p = ExampleProxy::new(c).await.unwrap();
        assert_eq!(p.get_info().await.unwrap(), INFO);
        assert_eq!(p.who_am_i().await.unwrap(), 2);
    }

    // The owner's link reaches the bus's verdict on RequestName: the
    // example service holds the name, so "exists" (3), not a refusal.
    let c = connect(&owner.address).await;
    let code = request_name(&c, NAME, 4)
        .await
        .expect("RequestName through a hosted-bus link");
    assert_eq!(code, 3);
    let p = ExampleProxy::new(&c).await.unwrap();
    assert_eq!(p.who_am_i().await.unwrap(), 0);
}
