//! `--unix-passthrough` against the real daemon binary (run as root): real
//! containers (testkit's: own mount, pid and uts namespaces and root), the
//! graph from a graph file. The provider's server (on a listener created
//! inside the provider container) tells every connection who it sees:
//! the SO_PEERCRED pid and that process's mount namespace, so a test can
//! tell a consumer talking to it directly from one relayed by the daemon.
//! Mounts are read from the consumer's own `/proc/<pid>/mountinfo`.

mod common;

use std::io::{Read, Seek, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{entry, host_listener, wait_status, wait_until, Graph, Opts, PROVIDER_SOCK};
use pv_testkit::{assert_eventually, Container};
use pv_xconnect::fdpass;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const TARGET: &str = "/run/pv/services/direct.sock";

/// The daemon's options, with or without `--unix-passthrough`.
fn opts(passthrough: bool) -> Opts<'static> {
    Opts {
        args: if passthrough {
            vec!["--unix-passthrough".to_string()]
        } else {
            Vec::new()
        },
        ..Opts::default()
    }
}

fn link(name: &str, c: &Container, p: &Container, target: &str) -> serde_json::Value {
    entry(
        name,
        (&c.name, c.pid),
        (&p.name, p.pid),
        target,
        PROVIDER_SOCK,
    )
}

/// How many mounts sit at `inside` in the container's mount namespace.
fn mounts_at(c: &Container, inside: &str) -> usize {
    std::fs::read_to_string(format!("/proc/{}/mountinfo", c.pid))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.split(' ').nth(4) == Some(inside))
        .count()
}

/// The provider's server: each connection first gets one line
/// `<tag> pid=<SO_PEERCRED pid> mnt=<that pid's mount namespace>`, then
/// its bytes echoed; a message carrying an fd is answered with
/// `GOT <file content>`.
/// Aborting the returned task closes the listener.
fn whoami_provider(p: &Container, tag: &'static str) -> tokio::task::JoinHandle<()> {
    let (l, holder) = p.listen(PROVIDER_SOCK);
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_whoami(s, tag));
        }
    })
}

/// The provider "exports" a host socket: a bind mount of it at its socket
/// path (what every mgmt container has for pv-ctrl).
fn bind_host_socket(p: &Container, host_sock: &Path) {
    p.sh(&format!(
        "mkdir -p /run/example && rm -f {PROVIDER_SOCK} && touch {PROVIDER_SOCK} && mount --bind {} {PROVIDER_SOCK}",
        host_sock.display()
    ));
}

async fn serve_whoami(s: UnixStream, tag: &'static str) {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let pid = getsockopt(&s.as_fd(), PeerCredentials).map_or(0, |c| c.pid());
    let ns = std::fs::read_link(format!("/proc/{pid}/ns/mnt")).unwrap_or_default();
    let hello = format!("{tag} pid={pid} mnt={}\n", ns.display());
    if fdpass::send_all_with_fds(&s, hello.as_bytes(), &[])
        .await
        .is_err()
    {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = Vec::new();
        let n = match fdpass::recv_with_fds(&s, &mut buf, &mut fds).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let reply = match fds.pop() {
            Some(fd) => {
                let mut f = std::fs::File::from(fd);
                let mut content = String::new();
                f.rewind().unwrap();
                f.read_to_string(&mut content).unwrap();
                format!("GOT {content}\n").into_bytes()
            }
            None => buf[..n].to_vec(),
        };
        if fdpass::send_all_with_fds(&s, &reply, &[]).await.is_err() {
            return;
        }
    }
}

/// Connect and read the provider's first line.
async fn hello(path: &Path) -> std::io::Result<(UnixStream, String)> {
    let mut s = UnixStream::connect(path).await?;
    let line = read_line(&mut s).await?;
    Ok((s, line))
}

async fn read_line(s: &mut UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while line.last() != Some(&b'\n') {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .map_err(|_| std::io::Error::other("no line in time"))??;
        if n == 0 {
            break;
        }
        line.push(b[0]);
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_string())
}

/// The `pid=` field of a hello line.
fn peer_pid(hello: &str) -> i32 {
    hello
        .split(' ')
        .find_map(|f| f.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no pid in {hello:?}"))
}

async fn echo(s: &mut UnixStream, msg: &[u8]) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut back))
        .await
        .expect("echo in time")
        .unwrap();
    back
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_reaches_the_provider_itself_and_removal_unmounts() {
    let p = Container::start("pt-server", "sleep infinity");
    let c = Container::start("pt-client", "sleep infinity");
    let _server = whoami_provider(&p, "server");
    let graph = Graph::new(&[link("direct", &c, &p, TARGET)]);
    let mut d = graph.daemon(opts(true));
    wait_status(&d, "direct", "mode=passthrough").await;
    assert_eq!(mounts_at(&c, TARGET), 1, "the provider's socket is bound");
    assert!(!Path::new(TARGET).exists(), "nothing on the host");
    let line = d.status_of("direct");
    assert!(
        line.contains(r#"state="injected""#) && line.contains("sessions=0/0 bytes=0"),
        "{line}"
    );

    // A client (this process) through the consumer's root: the provider
    // sees that client, not the daemon.
    let (mut s, hi) = hello(&c.path(TARGET)).await.expect("connect");
    assert!(hi.starts_with("server "), "{hi}");
    assert_eq!(peer_pid(&hi), std::process::id() as i32, "{hi}");
    assert_ne!(peer_pid(&hi), d.pid());
    assert_eq!(
        echo(&mut s, b"bytes through the mount\n").await,
        b"bytes through the mount\n"
    );

    // SCM_RIGHTS: a memfd goes to the provider, which reads it.
    let mut memfd = memfd::MemfdOptions::default()
        .create("pt-payload")
        .unwrap()
        .into_file();
    memfd.write_all(b"fd content").unwrap();
    fdpass::send_all_with_fds(&s, b"F", &[memfd.as_fd()])
        .await
        .unwrap();
    assert_eq!(read_line(&mut s).await.unwrap(), "GOT fd content");

    // A client inside the consumer (socat): the provider sees a process
    // of the consumer's mount namespace.
    let out = c.exec(&format!("printf x | socat -t 2 - UNIX-CONNECT:{TARGET}"));
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    let consumer_ns = std::fs::read_link(format!("/proc/{}/ns/mnt", c.pid)).unwrap();
    assert!(
        said.starts_with("server ") && said.contains(&format!("mnt={}\n", consumer_ns.display())),
        "socat in the consumer: {said:?}, stderr {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The link leaves the graph: unmounted and gone, but the established
    // connection still works (the daemon is not on its path).
    graph.set(&[]);
    assert!(
        wait_until(Duration::from_secs(5), || mounts_at(&c, TARGET) == 0
            && std::fs::symlink_metadata(c.path(TARGET)).is_err())
        .await,
        "unmounted and removed; logs:\n{}",
        d.logs()
    );
    assert!(UnixStream::connect(c.path(TARGET)).await.is_err());
    assert_eq!(echo(&mut s, b"still here\n").await, b"still here\n");

    // Back, then SIGTERM: the daemon unmounts at exit.
    graph.set(&[link("direct", &c, &p, TARGET)]);
    wait_status(&d, "direct", "mode=passthrough").await;
    assert!(hello(&c.path(TARGET)).await.is_ok());
    assert!(d.alive());
    assert!(d.terminate(), "clean exit on SIGTERM");
    assert_eq!(mounts_at(&c, TARGET), 0, "unmounted at exit");
    assert!(std::fs::symlink_metadata(c.path(TARGET)).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_provider_is_bound_again() {
    let p1 = Container::start("pt-restart-p", "sleep infinity");
    let c = Container::start("pt-restart-c", "sleep infinity");
    let server = whoami_provider(&p1, "first");
    let graph = Graph::new(&[link("restart", &c, &p1, TARGET)]);
    let d = graph.daemon(opts(true));
    wait_status(&d, "restart", "mode=passthrough").await;
    let (_s, hi) = hello(&c.path(TARGET)).await.unwrap();
    assert!(hi.starts_with("first "), "{hi}");

    // The server restarts inside the same container (a new socket at the
    // same path, same provider pid): followed.
    server.abort();
    let _ = server.await;
    whoami_provider(&p1, "again");
    assert_eventually!(
        matches!(hello(&c.path(TARGET)).await, Ok((_, hi)) if hi.starts_with("again ")),
        "never followed the new socket; status {}\nlogs:\n{}",
        d.status(),
        d.logs()
    );
    assert_eq!(mounts_at(&c, TARGET), 1, "one mount at the target");

    // The provider restarts: a new container, new pid, same name.
    drop(p1);
    let p2 = Container::start("pt-restart-p", "sleep infinity");
    whoami_provider(&p2, "second");
    graph.set(&[link("restart", &c, &p2, TARGET)]);
    assert_eventually!(
        matches!(hello(&c.path(TARGET)).await, Ok((_, hi)) if hi.starts_with("second ")),
        "never bound to the new provider; status {}\nlogs:\n{}",
        d.status(),
        d.logs()
    );
    assert_eq!(mounts_at(&c, TARGET), 1, "the old mount is gone");
    wait_status(&d, "restart", &format!("pids={}/{}", c.pid, p2.pid)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_swapping_in_a_host_socket_loses_the_link() {
    let host_dir = tempfile::tempdir().unwrap();
    let (host_sock, accepted, bytes) = host_listener(host_dir.path());
    let p = Container::start_with_binds("pt-swap-p", "sleep infinity", &[host_dir.path()]);
    let c = Container::start("pt-swap-c", "sleep infinity");
    let server = whoami_provider(&p, "honest");
    let graph = Graph::new(&[link("swap", &c, &p, TARGET)]);
    let d = graph.daemon(opts(true));
    wait_status(&d, "swap", "mode=passthrough").await;
    assert!(hello(&c.path(TARGET)).await.is_ok());

    // Once bound, the provider's server "restarts" as a host socket at its
    // socket path. (While the first server still answers, the bound socket
    // stays: the one checked keeps being used, as when relaying.)
    server.abort();
    let _ = server.await;
    bind_host_socket(&p, &host_sock);
    wait_status(&d, "swap", "is served from outside container pt-swap-p").await;
    assert_eq!(mounts_at(&c, TARGET), 0, "unbound");
    assert!(UnixStream::connect(c.path(TARGET)).await.is_err());
    assert_eq!(bytes.load(Ordering::SeqCst), 0, "bytes reached the host");
    println!(
        "host listener saw {} empty probe connection(s)",
        accepted.load(Ordering::SeqCst)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_socket_bind_mounted_into_the_provider_is_never_bound() {
    let host_dir = tempfile::tempdir().unwrap();
    let (host_sock, accepted, bytes) = host_listener(host_dir.path());
    let p = Container::start_with_binds("pt-thief-p", "sleep infinity", &[host_dir.path()]);
    bind_host_socket(&p, &host_sock);
    let c = Container::start("pt-thief-c", "sleep infinity");
    let ok_p = Container::start("pt-thief-ok-p", "sleep infinity");
    whoami_provider(&ok_p, "ok");
    let stolen = "/run/pv/services/stolen.sock";
    let graph = Graph::new(&[
        link("stolen", &c, &p, stolen),
        link("healthy", &c, &ok_p, TARGET),
    ]);
    let mut d = graph.daemon(opts(true));
    wait_status(&d, "stolen", "is served from outside container pt-thief-p").await;
    wait_status(&d, "healthy", "mode=passthrough").await;
    assert_eq!(mounts_at(&c, stolen), 0, "the host socket is not bound");
    assert!(
        std::fs::symlink_metadata(c.path(stolen)).is_err(),
        "nothing at the target"
    );
    assert!(UnixStream::connect(c.path(stolen)).await.is_err());
    let (_s, hi) = hello(&c.path(TARGET)).await.expect("the other link works");
    assert!(hi.starts_with("ok "), "{hi}");
    assert_eq!(bytes.load(Ordering::SeqCst), 0, "bytes reached the host");
    println!(
        "host listener saw {} empty probe connection(s)",
        accepted.load(Ordering::SeqCst)
    );
    assert!(d.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_flag_links_are_relayed() {
    let p = Container::start("pt-relay-p", "sleep infinity");
    let c = Container::start("pt-relay-c", "sleep infinity");
    whoami_provider(&p, "server");
    let graph = Graph::new(&[link("relayed", &c, &p, TARGET)]);
    let d = graph.daemon(opts(false));
    wait_status(&d, "relayed", "mode=relay").await;
    assert_eq!(mounts_at(&c, TARGET), 0, "a listener, not a mount");
    let (mut s, hi) = hello(&c.path(TARGET)).await.expect("connect");
    assert_eq!(peer_pid(&hi), d.pid(), "the provider sees the daemon: {hi}");
    assert_eq!(echo(&mut s, b"relayed\n").await, b"relayed\n");
    assert_eventually!(
        d.status_of("relayed").contains("sessions=1/1"),
        "{}",
        d.status()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemon_leaves_a_mount_the_next_one_takes_over() {
    let p = Container::start("pt-crash-p", "sleep infinity");
    let c = Container::start("pt-crash-c", "sleep infinity");
    let _server = whoami_provider(&p, "server");
    let graph = Graph::new(&[link("crash", &c, &p, TARGET)]);
    let d = graph.daemon(opts(true));
    wait_status(&d, "crash", "mode=passthrough").await;
    d.signal(nix::sys::signal::Signal::SIGKILL);
    drop(d);
    assert_eq!(mounts_at(&c, TARGET), 1, "left behind by SIGKILL");

    let d = graph.daemon(opts(true));
    wait_status(&d, "crash", "mode=passthrough").await;
    assert_eq!(mounts_at(&c, TARGET), 1, "the leftover was replaced");
    let (mut s, hi) = hello(&c.path(TARGET)).await.expect("connect");
    assert!(hi.starts_with("server "), "{hi}");
    assert_eq!(echo(&mut s, b"after a crash\n").await, b"after a crash\n");
    assert!(d.terminate());
    assert_eq!(mounts_at(&c, TARGET), 0);
}
