//! Hostile containers against the real daemon (run as root): one test per
//! attack, each asserting that the attack failed *and* that another link
//! of the same daemon kept working. Containers are testkit's (own mount,
//! pid and uts namespaces and root); the graph comes from a graph file.
//!
//! The symlink race drives the daemon's injection code directly (the
//! library the binary runs): 10,000 link starts through the binary would
//! take an hour of graph polls, the race needs them in seconds.

mod common;

use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{
    echo_ok, echo_provider, entry, host_listener, is_socket, wait_status, wait_until, Daemon,
    Graph, GraphFrom, Opts, PROVIDER_SOCK,
};
use nix::sys::signal::Signal;
use pv_testkit::sandbox::PidSandbox;
use pv_testkit::{assert_eventually, Container};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const HEALTHY: &str = "/run/pv/services/healthy.sock";

/// A consumer/provider pair whose echo link must keep working whatever
/// the attacker does.
struct Healthy {
    c: Container,
    p: Container,
}

impl Healthy {
    fn start(tag: &str) -> Healthy {
        let p = Container::start(&format!("{tag}-ok-p"), "sleep infinity");
        let c = Container::start(&format!("{tag}-ok-c"), "sleep infinity");
        echo_provider(&p);
        Healthy { c, p }
    }

    fn entry(&self) -> serde_json::Value {
        entry(
            "healthy",
            (&self.c.name, self.c.pid),
            (&self.p.name, self.p.pid),
            HEALTHY,
            PROVIDER_SOCK,
        )
    }

    async fn works(&self) -> bool {
        echo_ok(&self.c.path(HEALTHY)).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_socket_bind_mounted_into_a_provider_never_serves_a_consumer() {
    // A host listener, counting what reaches it.
    let host_dir = tempfile::tempdir().unwrap();
    let (host_sock, accepted, bytes) = host_listener(host_dir.path());
    // The provider "exports" it: a bind mount of the host socket at its
    // socket path (what every mgmt container has for pv-ctrl).
    let p = Container::start_with_binds("thief-p", "sleep infinity", &[host_dir.path()]);
    p.sh(&format!(
        "mkdir -p /run/example && touch {PROVIDER_SOCK} && mount --bind {} {PROVIDER_SOCK}",
        host_sock.display()
    ));
    let c = Container::start("thief-c", "sleep infinity");
    let ok = Healthy::start("thief");
    let stolen = "/run/pv/services/stolen.sock";
    let graph = Graph::new(&[
        entry(
            "stolen",
            (&c.name, c.pid),
            (&p.name, p.pid),
            stolen,
            PROVIDER_SOCK,
        ),
        ok.entry(),
    ]);
    let mut d = graph.daemon(Opts::default());
    assert!(
        wait_until(Duration::from_secs(10), || is_socket(&c.path(stolen))).await,
        "logs:\n{}",
        d.logs()
    );

    // The consumer tries, and gets nothing from the host.
    for _ in 0..3 {
        if let Ok(mut s) = UnixStream::connect(c.path(stolen)).await {
            let _ = s.write_all(b"GET /containers HTTP/1.0\r\n\r\n").await;
            let mut buf = [0u8; 64];
            let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf))
                .await
                .expect("closed promptly")
                .unwrap_or(0);
            assert_eq!(n, 0, "an answer came back");
        }
    }
    wait_status(&d, "stolen", "is served from outside container thief-p").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        bytes.load(Ordering::SeqCst),
        0,
        "consumer bytes reached the host"
    );
    // Who listens can only be asked of a connected socket: each refused
    // attempt costs the host listener one empty connection, no more.
    let probes = accepted.load(Ordering::SeqCst);
    println!("host listener saw {probes} empty connection(s), 0 bytes");
    assert!(
        probes <= 3,
        "{probes} connections reached the host listener"
    );
    assert!(ok.works().await, "the other link kept working");
    assert!(d.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_pid_gets_no_node_and_no_socket() {
    // Daemon and containers in a fresh pid namespace, where the stale pid
    // of a stopped consumer can be handed to another process at will.
    let sb = PidSandbox::start();
    let p = Container::start_in(&sb, "reuse-p", "sleep infinity", None);
    echo_provider(&p);
    let c = Container::start_in(&sb, "reuse-c", "sleep infinity", None);
    let ok_c = Container::start_in(&sb, "reuse-ok", "sleep infinity", None);
    let inner = |ct: &Container| sb.pid_of(ct.pid).expect("in the sandbox");
    let target = "/run/pv/services/reuse.sock";
    let links = |cpid: i32| {
        vec![
            entry(
                "victim",
                ("reuse-c", cpid),
                ("reuse-p", inner(&p)),
                target,
                PROVIDER_SOCK,
            ),
            entry(
                "healthy",
                ("reuse-ok", inner(&ok_c)),
                ("reuse-p", inner(&p)),
                HEALTHY,
                PROVIDER_SOCK,
            ),
        ]
    };
    let stale = inner(&c);
    let graph = Graph::new(&links(stale));
    let mut d = graph.daemon(Opts {
        sandbox: Some(&sb),
        ..Opts::default()
    });
    assert!(
        wait_until(Duration::from_secs(10), || is_socket(&c.path(target))
            && is_socket(&ok_c.path(HEALTHY)))
        .await,
        "logs:\n{}",
        d.logs()
    );
    assert!(echo_ok(&c.path(target)).await);

    // The consumer stops; the graph keeps its pid, as Pantavisor does.
    let t0 = Instant::now();
    drop(c);
    wait_status(&d, "victim", "consumer exited").await;
    println!("consumer exit noticed after {:?}", t0.elapsed());

    // 1. The pid goes to a process in the daemon's own mount namespace.
    let mut reuser = None;
    for _ in 0..50 {
        let mut child = sb
            .command_forcing_pid(stale, "sh")
            .args(["-c", "sleep 600 & wait"])
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        let mut got = None;
        while got.is_none() && Instant::now() < deadline {
            let kids = pv_testkit::container::children_of(child.id() as i32);
            got = kids
                .iter()
                .flat_map(|k| pv_testkit::container::children_of(*k))
                .find(|g| sb.pid_of(*g).is_some());
            std::thread::sleep(Duration::from_millis(10));
        }
        match got {
            Some(g) if sb.pid_of(g) == Some(stale) => {
                reuser = Some((child, g));
                break;
            }
            other => {
                if let Some(g) = other {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(g), Signal::SIGKILL);
                }
                let _ = child.wait();
            }
        }
    }
    let (mut reuser, reuser_pid) = reuser.expect("pid reused by a host-side process");
    println!("stale pid {stale} now names host-side pid {reuser_pid}");
    d.signal(Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let host_view = PathBuf::from(format!("/proc/{reuser_pid}/root{target}"));
    assert!(
        !host_view.exists(),
        "socket created in the daemon's own namespace"
    );
    assert!(!Path::new(target).exists());
    assert!(d.status_of("victim").contains("pending"), "{}", d.status());
    // Free the pid again (its shell reaps it, nsenter the shell).
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(reuser_pid), Signal::SIGKILL);
    let _ = reuser.wait();

    // 2. The pid goes to another container's init.
    let mut intruder = None;
    for _ in 0..50 {
        let ct = Container::start_in(&sb, "reuse-intruder", "sleep infinity", Some(stale));
        if inner(&ct) == stale {
            intruder = Some(ct);
            break;
        }
    }
    let intruder = intruder.expect("pid reused by another container");
    d.signal(Signal::SIGHUP);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !intruder.path(target).exists(),
        "socket injected into the container that got the stale pid"
    );
    assert!(!intruder.path("/run/pv").exists(), "nothing created there");
    assert!(d.status_of("victim").contains("pending"), "{}", d.status());
    assert!(
        echo_ok(&ok_c.path(HEALTHY)).await,
        "the other link kept working"
    );

    // The consumer comes back with a new pid: so does its link.
    drop(intruder);
    let c2 = Container::start_in(&sb, "reuse-c", "sleep infinity", None);
    graph.set(&links(inner(&c2)));
    assert!(
        wait_until(Duration::from_secs(5), || is_socket(&c2.path(target))).await,
        "logs:\n{}",
        d.logs()
    );
    assert!(echo_ok(&c2.path(target)).await);
    assert!(d.alive());
}

/// A provider that accepts and never reads: what the relay writes to it
/// (bytes and fds) backs up in the daemon.
fn sink_provider(p: &Container) -> Arc<std::sync::Mutex<Vec<UnixStream>>> {
    let (l, holder) = p.listen(PROVIDER_SOCK);
    let held = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((s, _)) = l.accept().await {
            keep.lock().unwrap().push(s);
        }
    });
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_flooding_connections_and_fds_leaves_the_daemon_bounded() {
    let p = Container::start("flood-p", "sleep infinity");
    let c = Container::start("flood-c", "sleep infinity");
    let held = sink_provider(&p);
    let ok = Healthy::start("flood");
    let target = "/run/pv/services/flood.sock";
    let graph = Graph::new(&[
        entry(
            "flood",
            (&c.name, c.pid),
            (&p.name, p.pid),
            target,
            PROVIDER_SOCK,
        ),
        ok.entry(),
    ]);
    let max_sessions = 64;
    let mut d = graph.daemon(Opts {
        args: vec!["--max-sessions-per-link".into(), max_sessions.to_string()],
        ..Opts::default()
    });
    // Links start concurrently: wait for both.
    assert!(
        wait_until(Duration::from_secs(10), || is_socket(&c.path(target))
            && is_socket(&ok.c.path(HEALTHY)))
        .await
    );
    assert!(ok.works().await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = d.fd_count();

    // 300 connections, each sending 1 byte + 253 fds until the kernel or
    // the daemon stops taking them.
    let file = tempfile::tempfile().unwrap();
    let copies: Vec<BorrowedFd<'_>> = (0..253).map(|_| file.as_fd()).collect();
    let mut conns = Vec::new();
    let mut peak = 0;
    let mut sent_fds = 0usize;
    for _ in 0..300 {
        let Ok(s) = std::os::unix::net::UnixStream::connect(c.path(target)) else {
            continue;
        };
        s.set_nonblocking(true).unwrap();
        for _ in 0..64 {
            match pv_xconnect::fdpass::send_now(s.as_raw_fd(), b"x", &copies) {
                Ok(_) => sent_fds += copies.len(),
                Err(_) => break,
            }
        }
        conns.push(s);
        peak = peak.max(d.fd_count());
    }
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        peak = peak.max(d.fd_count());
    }
    // Two sockets per session, the fd budget (1024: each read reserves
    // its room before the kernel installs anything), and a little slack
    // for the connection being accepted or refused.
    let bound = baseline + 2 * max_sessions + 1024 + 32;
    println!(
        "sent {sent_fds} fds over {} connections; daemon fds: baseline {baseline}, peak {peak}, bound {bound}",
        conns.len()
    );
    assert!(peak <= bound, "daemon held {peak} fds (bound {bound})");
    assert!(ok.works().await, "the other link serves during the flood");
    assert!(d.alive());

    drop(conns);
    held.lock().unwrap().clear();
    assert_eventually!(
        d.fd_count() <= baseline + 2,
        "back to baseline {baseline}: {} fds",
        d.fd_count()
    );
    assert!(ok.works().await);
    // The flood link itself still accepts.
    assert!(UnixStream::connect(c.path(target)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_container_consuming_its_own_export_cannot_loop_the_daemon() {
    let x = Container::start("selfish", "sleep infinity");
    let ok = Healthy::start("selfish");
    // (a) nothing listens there but what the daemon injects.
    let own = "/run/self/x.sock";
    // (b) its own server listens there.
    let served = "/run/self/y.sock";
    let (l, _holder) = x.listen(served);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"mine\n").await;
        }
    });
    let graph = Graph::new(&[
        entry("self-a", (&x.name, x.pid), (&x.name, x.pid), own, own),
        entry("self-b", (&x.name, x.pid), (&x.name, x.pid), served, served),
        ok.entry(),
    ]);
    let mut d = graph.daemon(Opts::default());
    assert!(wait_until(Duration::from_secs(10), || is_socket(&x.path(own))).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = d.fd_count();
    for _ in 0..20 {
        if let Ok(mut s) = UnixStream::connect(x.path(own)).await {
            let _ = s.write_all(b"loop?\n").await;
            let mut buf = [0u8; 8];
            let _ = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf)).await;
        }
    }
    wait_status(&d, "self-a", "pv-xconnect's own injected listeners").await;
    wait_status(&d, "self-b", "target occupied").await;
    let after = d.fd_count();
    assert!(after <= baseline + 4, "fds {baseline} -> {after}");
    assert!(d.alive());
    // Its own server was left alone.
    let mut s = UnixStream::connect(x.path(served)).await.unwrap();
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"mine\n");
    assert!(ok.works().await, "the other link kept working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_never_accepts_delays_no_other_start() {
    let p = Container::start("stuck-p", "sleep infinity");
    let c = Container::start("stuck-c", "sleep infinity");
    // Backlog 0, never accepted.
    let (_listener, _holder) = p.listen_std(PROVIDER_SOCK, 0);
    let ok = Healthy::start("stuck");
    let target = "/run/pv/services/stuck.sock";
    let stuck = entry(
        "stuck",
        (&c.name, c.pid),
        (&p.name, p.pid),
        target,
        PROVIDER_SOCK,
    );
    let graph = Graph::new(std::slice::from_ref(&stuck));
    let mut d = graph.daemon(Opts::default());
    assert!(wait_until(Duration::from_secs(10), || is_socket(&c.path(target))).await);

    // 600 consumer connections, all waiting on the provider.
    let mut conns = Vec::new();
    for _ in 0..600 {
        if let Ok(mut s) = UnixStream::connect(c.path(target)).await {
            let _ = s.write_all(b"x").await;
            conns.push(s);
        }
    }
    // Meanwhile another link is added: it must be up within 2 s.
    let t0 = Instant::now();
    graph.set(&[stuck, ok.entry()]);
    let mut up = false;
    while t0.elapsed() < Duration::from_secs(2) {
        if is_socket(&ok.c.path(HEALTHY)) && ok.works().await {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let took = t0.elapsed();
    println!(
        "other link up {took:?} after the graph change, with {} stuck sessions",
        conns.len()
    );
    assert!(up, "other link not up within 2 s; logs:\n{}", d.logs());
    assert!(d.alive());

    // SIGTERM still ends everything in time and removes what was injected.
    drop(conns);
    assert!(d.terminate(), "clean exit within 10 s");
    assert!(!c.path(target).exists());
    assert!(!ok.c.path(HEALTHY).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_socket_at_the_target_is_not_replaced() {
    let p = Container::start("occupied-p", "sleep infinity");
    let c = Container::start("occupied-c", "sleep infinity");
    echo_provider(&p);
    let ok = Healthy::start("occupied");
    let target = "/run/pv/services/taken.sock";
    // The consumer's own service is there.
    let (l, _holder) = c.listen(target);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"own\n").await;
        }
    });
    let before = std::fs::symlink_metadata(c.path(target)).unwrap().ino();
    let graph = Graph::new(&[
        entry(
            "taken",
            (&c.name, c.pid),
            (&p.name, p.pid),
            target,
            PROVIDER_SOCK,
        ),
        ok.entry(),
    ]);
    let d = graph.daemon(Opts::default());
    wait_status(&d, "taken", "target occupied").await;
    assert_eq!(
        std::fs::symlink_metadata(c.path(target)).unwrap().ino(),
        before
    );
    let mut s = UnixStream::connect(c.path(target)).await.unwrap();
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"own\n", "the consumer's own service still answers");
    assert!(ok.works().await, "the other link kept working");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_racer_never_redirects_what_the_daemon_creates() {
    use pv_xconnect::ns::{self, DeviceNode};
    use pv_xconnect::process::{Pid, Process};
    let c = Container::start("racer", "sleep infinity");
    c.sh(
        "mkdir -p /victim /run/race/d && echo secret > /victim/secret && chmod 0600 /victim/secret \
         && ln -s /victim /run/race/alt",
    );
    let secret = std::fs::metadata(c.path("/victim/secret")).unwrap();
    let pid = Pid::new(c.pid).unwrap();
    let consumer = Arc::new(Process::open_container(pid, "consumer").unwrap());

    // Two racers inside the consumer's root: one swaps the directory with
    // a symlink to /victim (atomically), one replaces whatever the daemon
    // just created with a symlink to /victim/secret.
    let stop = Arc::new(AtomicBool::new(false));
    let racer = |work: fn()| {
        let (stop, root) = (stop.clone(), c.path("/"));
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_FS).unwrap();
            std::env::set_current_dir(&root).unwrap();
            nix::unistd::chroot(".").unwrap();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                work();
                n += 1;
            }
            n
        })
    };
    let swapper = racer(|| {
        let _ = nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            "/run/race/d",
            nix::fcntl::AT_FDCWD,
            "/run/race/alt",
            nix::fcntl::RenameFlags::RENAME_EXCHANGE,
        );
    });
    let replacer = racer(|| {
        for name in ["/run/race/d/x.sock", "/run/race/d/x.dev"] {
            if std::fs::symlink_metadata(name).is_ok_and(|m| !m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(name);
                let _ = std::os::unix::fs::symlink("/victim/secret", name);
            }
        }
    });

    let t0 = Instant::now();
    let (mut made, mut refused) = (0, 0);
    for i in 0..10_000 {
        let done = if i % 5 == 4 {
            let node = DeviceNode {
                major: 1,
                minor: 3,
                mode: libc::S_IFCHR | 0o666,
                uid: 4321,
                gid: 4321,
            };
            ns::mknod_in_consumer(&consumer, pid, Path::new("/run/race/d/x.dev"), node).await
        } else {
            ns::inject_socket(&consumer, pid, Path::new("/run/race/d/x.sock"))
                .await
                .map(|(_listener, injected)| injected)
        };
        match done {
            Ok(injected) => {
                made += 1;
                let _ = ns::remove_injected(&injected).await;
            }
            Err(_) => refused += 1,
        }
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    let replaced = replacer.join().unwrap();
    println!(
        "10000 attempts in {:?}: {made} created, {refused} refused; {swaps} swaps, {replaced} replacement rounds",
        t0.elapsed()
    );
    assert!(made > 0 && refused > 0, "the race ran both ways");
    let now = std::fs::symlink_metadata(c.path("/victim/secret")).unwrap();
    assert!(now.file_type().is_file());
    assert_eq!(
        now.permissions().mode() & 0o7777,
        0o600,
        "victim's mode changed"
    );
    assert_eq!(
        (now.uid(), now.gid()),
        (secret.uid(), secret.gid()),
        "victim chowned"
    );
    assert_eq!(now.ino(), secret.ino());
    for entry in std::fs::read_dir(c.path("/victim")).unwrap().flatten() {
        let ft = entry.file_type().unwrap();
        assert!(
            ft.is_file() || ft.is_symlink(),
            "the daemon created {:?} in /victim",
            entry.file_name()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_never_kills() {
    use pv_testkit::pvctrl::FakePvCtrl;
    let ok = Healthy::start("hup");
    let dir = tempfile::tempdir().unwrap();
    let ctrl = FakePvCtrl::with_graph(
        &dir.path().join("pv-ctrl"),
        &serde_json::Value::from(vec![ok.entry()]).to_string(),
    );
    // A poll period far longer than the test: only SIGHUP fetches.
    let mut d = Daemon::spawn_with(
        GraphFrom::Ctrl(ctrl.path()),
        Opts {
            interval_ms: Some(600_000),
            ..Opts::default()
        },
    );
    assert!(wait_until(Duration::from_secs(10), || is_socket(&ok.c.path(HEALTHY))).await);
    for _ in 0..3 {
        let seen = ctrl.request_count();
        d.signal(Signal::SIGHUP);
        assert_eventually!(ctrl.request_count() > seen, "SIGHUP fetches the graph");
        assert!(d.alive(), "SIGHUP killed the daemon");
        assert!(ok.works().await);
    }
    assert!(d.logs().contains("SIGHUP received"), "{}", d.logs());
    assert!(d.terminate(), "clean exit on SIGTERM");
    assert!(!ok.c.path(HEALTHY).exists(), "removed at exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_failed_or_refused_sessions_log_a_bounded_number_of_lines() {
    // "down": its provider has no server. "capped": one session at most,
    // held by a client that never leaves.
    let p = Container::start("noisy-p", "sleep infinity");
    let c = Container::start("noisy-c", "sleep infinity");
    let capped_p = Container::start("noisy-cap-p", "sleep infinity");
    let _held = sink_provider(&capped_p);
    let ok = Healthy::start("noisy");
    let down = "/run/pv/services/down.sock";
    let capped = "/run/pv/services/capped.sock";
    let graph = Graph::new(&[
        entry(
            "down",
            (&c.name, c.pid),
            (&p.name, p.pid),
            down,
            PROVIDER_SOCK,
        ),
        entry(
            "capped",
            (&c.name, c.pid),
            (&capped_p.name, capped_p.pid),
            capped,
            PROVIDER_SOCK,
        ),
        ok.entry(),
    ]);
    let mut d = graph.daemon(Opts {
        args: vec!["--max-sessions-per-link".into(), "1".into()],
        ..Opts::default()
    });
    assert!(
        wait_until(Duration::from_secs(10), || is_socket(&c.path(down))
            && is_socket(&c.path(capped))
            && is_socket(&ok.c.path(HEALTHY)))
        .await
    );
    let _occupant = std::os::unix::net::UnixStream::connect(c.path(capped)).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t0 = Instant::now();
    let (down_path, capped_path) = (c.path(down), c.path(capped));
    let attempts = tokio::task::spawn_blocking(move || {
        let mut n = 0;
        for i in 0..10_000 {
            let path = if i % 2 == 0 { &down_path } else { &capped_path };
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(mut s) => {
                    let _ = s.write_all(b"x");
                    n += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        n
    })
    .await
    .unwrap();
    println!(
        "{attempts} sessions failed or refused in {:?}",
        t0.elapsed()
    );
    assert!(attempts > 9_000);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let logs = d.logs();
    let about = |name: &str| {
        logs.lines()
            .filter(|l| l.contains(&format!(" name={name} ")))
            .count()
    };
    println!(
        "log lines: down {}, capped {}",
        about("down"),
        about("capped")
    );
    // Per link and per minute at most: injected, 5 session lines (and a
    // count of the rest), 5 cap bursts with their "below again" lines.
    let bound = 1 + 5 + 2 * 5;
    for name in ["down", "capped"] {
        assert!(
            about(name) <= bound,
            "{name} logged {} lines:\n{logs}",
            about(name)
        );
    }
    let cap_lines = logs.lines().filter(|l| l.contains("session limit")).count();
    assert!(
        cap_lines <= 4 * 5,
        "{cap_lines} lines about the session limit"
    );
    assert!(ok.works().await, "the other link kept working");
    assert!(d.alive());
}
