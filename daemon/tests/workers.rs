//! Session workers (`link::workers`): a link's concurrent connections are
//! spread over the workers and relay correctly from there, half-close
//! included; a worker's count drops back when its sessions end. Its own
//! test binary: the workers are process-wide.

use std::io::{Read, Write};
use std::net::Shutdown as Half;
use std::os::unix::net::{UnixListener as StdListener, UnixStream as StdStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pv_xconnect::graph::ServiceType;
use pv_xconnect::link::{self, workers, LinkStats, Mediation};
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;

/// Echo server: every connection echoes until the client half-closes,
/// then closes.
fn echo_server(listener: StdListener) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sessions_spread_over_the_workers_and_relay() {
    workers::start(2).expect("start workers");
    assert_eq!(workers::count(), 2);
    let dir = tempfile::tempdir().unwrap();
    let provider = dir.path().join("provider.sock");
    echo_server(StdListener::bind(&provider).unwrap());
    let target = dir.path().join("link.sock");
    let spec = LinkSpecBuilder::new(ServiceType::Unix)
        .provider("host", 0)
        .socket(&provider)
        .target(&target)
        .arc();
    let mediation = Mediation::prepare(spec).await.expect("prepare");
    let listener = tokio::net::UnixListener::bind(&target).unwrap();
    let stats = Arc::new(LinkStats::default());
    let shutdown = Shutdown::new();
    tokio::spawn(link::serve(
        listener,
        mediation,
        stats.clone(),
        shutdown.clone(),
    ));

    let target2 = target.clone();
    let loads = tokio::task::spawn_blocking(move || {
        let mut clients: Vec<StdStream> = (0..4)
            .map(|_| StdStream::connect(&target2).unwrap())
            .collect();
        // Every session is up once each echoed once.
        for (i, c) in clients.iter_mut().enumerate() {
            c.write_all(&[i as u8; 3]).unwrap();
            let mut got = [0u8; 3];
            c.read_exact(&mut got).unwrap();
            assert_eq!(got, [i as u8; 3]);
        }
        let loads = workers::loads();
        // 64 KiB each way on every connection, then half-close: the
        // echo comes back whole and the relay passes the EOF on.
        for (i, c) in clients.iter_mut().enumerate() {
            let data: Vec<u8> = (0..65536u32).map(|n| (n as u8) ^ (i as u8)).collect();
            c.write_all(&data).unwrap();
            c.shutdown(Half::Write).unwrap();
            let mut back = Vec::new();
            c.read_to_end(&mut back).unwrap();
            assert_eq!(back, data, "connection {i}");
        }
        clients.clear();
        loads
    })
    .await
    .unwrap();
    assert_eq!(loads, vec![2, 2], "sessions per worker with 4 live");
    wait_for("sessions to end", || {
        workers::loads() == vec![0, 0] && stats.live() == 0
    });
    assert_eq!(stats.total(), 4);
    shutdown.cancel();
}
