//! Library-level tests of socket links on the real kernel (run as root):
//! real containers (mount + pid + uts namespaces, own root), `link::start`
//! called directly. The test process plays the provider by serving a
//! listener created inside the provider container ([`Container::listen`]:
//! pv-xconnect checks who listens), and the consumer by connecting through
//! `/proc/<pid>/root`, so both ends are checked from outside the code under
//! test.

use std::os::fd::AsFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pv_testkit::listen::Holder;
use pv_testkit::Container;
use pv_xconnect::fdpass;
use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link;
use pv_xconnect::process::{Pid, ProviderPid};
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

const PROVIDER_SOCK: &str = "/run/example/raw.sock";

fn spec(consumer: &Container, provider: &Container, target: &str, socket: &str) -> Arc<LinkSpec> {
    LinkSpecBuilder::new(ServiceType::Unix)
        .name("raw-unix")
        .consumer(&consumer.name, consumer.pid)
        .provider(&provider.name, provider.pid)
        .target(target)
        .socket(socket)
        .arc()
}

fn in_container(ct: &Container) -> ProviderPid {
    ProviderPid::Container(Pid::new(ct.pid).expect("container pid"))
}

fn pair(tag: &str) -> (Container, Container) {
    let p = Container::start(&format!("prov-{tag}"), "sleep infinity");
    let c = Container::start(&format!("cons-{tag}"), "sleep infinity");
    (c, p)
}

/// A listener at `inside`, created inside the container.
fn bind_in(ct: &Container, inside: &str) -> (UnixListener, Holder) {
    ct.listen(inside)
}

/// An echo server; replies `prefix` first on each connection if non-empty.
fn spawn_echo(
    (l, holder): (UnixListener, Holder),
    prefix: &'static [u8],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let _holder = holder;
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                if !prefix.is_empty() && s.write_all(prefix).await.is_err() {
                    return;
                }
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    })
}

fn is_socket(p: &Path) -> bool {
    std::fs::symlink_metadata(p)
        .map(|m| m.file_type().is_socket())
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_only_in_consumer_echo_and_stop_removes_it() {
    let (c, p) = pair("echo");
    let _srv = spawn_echo(bind_in(&p, PROVIDER_SOCK), b"");
    let target = "/run/pv/services/pvx-test-echo.sock";
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .expect("link starts");

    assert!(is_socket(&c.path(target)), "socket injected in consumer");
    assert!(!Path::new(target).exists(), "nothing on the host");
    assert!(!p.path(target).exists(), "nothing in the provider");
    let mode = std::fs::metadata(c.path(target)).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o666
    );

    let mut s = UnixStream::connect(c.path(target)).await.unwrap();
    s.write_all(b"hello through the mesh\n").await.unwrap();
    let mut buf = [0u8; 23];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .expect("echo in time")
        .unwrap();
    assert_eq!(&buf, b"hello through the mesh\n");
    drop(s);

    // A third-party client inside the consumer: socat.
    let out = c.exec(&format!(
        "printf 'socat-ping\\n' | socat -t 2 - UNIX-CONNECT:{target}"
    ));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "socat-ping\n",
        "socat stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let stats = h.stats().clone();
    assert!(stats.total() >= 2, "sessions counted: {}", stats.total());
    assert!(stats.bytes() >= 2 * 23, "bytes counted: {}", stats.bytes());
    h.stop().await;
    assert!(!c.path(target).exists(), "socket removed on stop");
    assert!(UnixStream::connect(c.path(target)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_mib_arrive_with_equal_checksum_and_half_close() {
    let (c, p) = pair("bulk");
    let (l, _h) = bind_in(&p, PROVIDER_SOCK);
    // The provider hashes everything until end of stream (which only the
    // propagated half-close delivers), then answers with the digest.
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        s.write_all(&h.finalize()).await.unwrap();
    });
    let target = "/run/pv/services/bulk.sock";
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .unwrap();
    let s = UnixStream::connect(c.path(target)).await.unwrap();
    let (mut r, mut w) = s.into_split();
    let mut chunk = vec![0u8; 1024 * 1024];
    let mut x: u32 = 12345;
    for b in chunk.iter_mut() {
        x = x.wrapping_mul(1103515245).wrapping_add(12345);
        *b = (x >> 16) as u8;
    }
    let mut local = Sha256::new();
    for _ in 0..100 {
        // Every MiB differs, so a dropped or repeated chunk changes the sum.
        chunk.rotate_left(7);
        local.update(&chunk);
        w.write_all(&chunk).await.unwrap();
    }
    w.shutdown().await.unwrap();
    let mut digest = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), r.read_to_end(&mut digest))
        .await
        .expect("digest in time")
        .unwrap();
    assert_eq!(digest, local.finalize().to_vec(), "checksums differ");
    assert!(h.stats().bytes() >= 100 * 1024 * 1024);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memfd_passes_both_ways_with_content() {
    let (c, p) = pair("memfd");
    let (l, _h) = bind_in(&p, PROVIDER_SOCK);
    // Provider: "FD\n" -> answers "HERE\n" with a memfd holding a payload;
    // a message carrying an fd -> answers "GOT <content>\n".
    tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let mut buf = [0u8; 64];
        loop {
            let mut fds = Vec::new();
            let n = fdpass::recv_with_fds(&s, &mut buf, &mut fds).await.unwrap();
            if n == 0 {
                return;
            }
            if let Some(fd) = fds.pop() {
                let mut f = std::fs::File::from(fd);
                let mut content = String::new();
                use std::io::{Read, Seek};
                f.rewind().unwrap();
                f.read_to_string(&mut content).unwrap();
                let reply = format!("GOT {content}\n");
                fdpass::send_all_with_fds(&s, reply.as_bytes(), &[])
                    .await
                    .unwrap();
            } else if &buf[..n] == b"FD\n" {
                let m = memfd::MemfdOptions::default().create("pvx").unwrap();
                use std::io::Write;
                m.as_file().write_all(b"provider-payload").unwrap();
                fdpass::send_all_with_fds(&s, b"HERE\n", &[m.as_file().as_fd()])
                    .await
                    .unwrap();
            }
        }
    });
    let target = "/run/pv/services/fd.sock";
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .unwrap();
    let s = UnixStream::connect(c.path(target)).await.unwrap();

    // consumer -> provider
    let m = memfd::MemfdOptions::default().create("cons").unwrap();
    {
        use std::io::Write;
        m.as_file().write_all(b"consumer-payload").unwrap();
    }
    fdpass::send_all_with_fds(&s, b"X", &[m.as_file().as_fd()])
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let mut fds = Vec::new();
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        fdpass::recv_with_fds(&s, &mut buf, &mut fds),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&buf[..n], b"GOT consumer-payload\n");

    // provider -> consumer
    fdpass::send_all_with_fds(&s, b"FD\n", &[]).await.unwrap();
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        fdpass::recv_with_fds(&s, &mut buf, &mut fds),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(&buf[..n], b"HERE\n");
    assert_eq!(fds.len(), 1, "the memfd travelled with its bytes");
    let mut f = std::fs::File::from(fds.pop().unwrap());
    let mut content = String::new();
    use std::io::{Read, Seek};
    f.rewind().unwrap();
    f.read_to_string(&mut content).unwrap();
    assert_eq!(content, "provider-payload");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_restart_and_provider_down() {
    let (c, p) = pair("restart");
    let first = spawn_echo(bind_in(&p, PROVIDER_SOCK), b"one\n");
    let target = "/run/pv/services/restart.sock";
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .unwrap();
    async fn greeting(path: &Path) -> Vec<u8> {
        let mut s = UnixStream::connect(path).await.unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4];
        // EOF or the 4-byte greeting, whichever comes first.
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            while out.len() < 4 {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => out.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        out
    }
    assert_eq!(greeting(&c.path(target)).await, b"one\n");

    // Provider down: the consumer's connection is closed promptly.
    first.abort();
    let _ = first.await;
    std::fs::remove_file(p.path(PROVIDER_SOCK)).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(greeting(&c.path(target)).await, b"");
    assert!(t0.elapsed() < Duration::from_secs(1), "closed promptly");

    // The provider's server comes back: new connections reach it.
    let _second = spawn_echo(bind_in(&p, PROVIDER_SOCK), b"two\n");
    assert_eq!(greeting(&c.path(target)).await, b"two\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_symlink_never_reaches_a_host_socket() {
    let (c, p) = pair("hostile");
    let hostdir = tempfile::tempdir().unwrap();
    let host_sock = hostdir.path().join("host.sock");
    let host = std::os::unix::net::UnixListener::bind(&host_sock).unwrap();
    host.set_nonblocking(true).unwrap();
    // Absolute and relative (`..`-climbing) symlinks to the host's socket.
    let dir = p.path("/run/example");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&host_sock, dir.join("abs.sock")).unwrap();
    let rel = format!("../../../../../../..{}", host_sock.display());
    std::os::unix::fs::symlink(&rel, dir.join("rel.sock")).unwrap();

    let root = Shutdown::new();
    for (i, sock) in ["/run/example/abs.sock", "/run/example/rel.sock"]
        .iter()
        .enumerate()
    {
        let target = format!("/run/pv/services/hostile{i}.sock");
        let h = link::start(spec(&c, &p, &target, sock), &root)
            .await
            .unwrap();
        let mut s = UnixStream::connect(c.path(&target)).await.unwrap();
        let _ = s.write_all(b"steal\n").await;
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut buf))
            .await
            .expect("consumer connection closed promptly")
            .unwrap_or(0);
        assert_eq!(n, 0, "no data from anywhere");
        h.stop().await;
    }
    match host.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("the host socket was reached: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_provider_paths_work() {
    let (c, p) = pair("long");
    let long = format!("/run/{}/{}/srv.sock", "d".repeat(60), "e".repeat(60));
    assert!(long.len() > 108);
    let _srv = spawn_echo(p.listen(&long), b"long\n");
    let target = format!("/run/{}/client.sock", "t".repeat(110));
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, &target, &long), &root)
        .await
        .expect("long paths accepted");
    // The consumer's path is also too long for sun_path: connect from inside
    // the directory, with a relative name.
    let out = c.exec(&format!(
        "cd /run/{} && socat -t 2 - UNIX-CONNECT:client.sock </dev/null",
        "t".repeat(110)
    ));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "long\n");
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_to_clobber_non_sockets_and_never_binds_for_pid_minus_one() {
    let (c, p) = pair("clobber");
    let _srv = spawn_echo(bind_in(&p, PROVIDER_SOCK), b"");
    let target = "/run/pv/services/file.sock";
    std::fs::create_dir_all(c.path("/run/pv/services")).unwrap();
    std::fs::write(c.path(target), b"precious").unwrap();
    let root = Shutdown::new();
    let err = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .expect_err("regular file must not be replaced");
    assert!(err.to_string().contains("regular file"), "{err}");
    assert_eq!(std::fs::read(c.path(target)).unwrap(), b"precious");

    // A stale socket (e.g. from a previous daemon run) is replaced.
    let stale = "/run/pv/services/stale.sock";
    drop(std::os::unix::net::UnixListener::bind(c.path(stale)).unwrap());
    let h = link::start(spec(&c, &p, stale, PROVIDER_SOCK), &root)
        .await
        .expect("stale socket replaced");
    let mut s = UnixStream::connect(c.path(stale)).await.unwrap();
    s.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    h.stop().await;

    // Consumer not started: pid -1. Nothing may appear on the host.
    let host_target = "/tmp/pvx-never-created/pending.sock";
    let mut s = (*spec(&c, &p, host_target, PROVIDER_SOCK)).clone();
    s.consumer_pid = -1;
    assert!(link::start(Arc::new(s), &root).await.is_err());
    assert!(!Path::new(host_target).exists());
    assert!(!Path::new("/tmp/pvx-never-created").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_parent_token_closes_sessions() {
    let (c, p) = pair("cancel");
    let _srv = spawn_echo(bind_in(&p, PROVIDER_SOCK), b"");
    let target = "/run/pv/services/cancel.sock";
    let root = Shutdown::new();
    let h = link::start(spec(&c, &p, target, PROVIDER_SOCK), &root)
        .await
        .unwrap();
    let mut s = UnixStream::connect(c.path(target)).await.unwrap();
    s.write_all(b"a").await.unwrap();
    let mut b = [0u8; 1];
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(h.stats().live(), 1);
    h.stop().await;
    let n = tokio::time::timeout(Duration::from_secs(2), s.read(&mut b))
        .await
        .expect("session closed on stop")
        .unwrap_or(0);
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_sees_requested_credentials_and_files_stay_scoped() {
    let p = Container::start("creds", "sleep infinity");
    let (l, _h) = bind_in(&p, PROVIDER_SOCK);
    std::fs::set_permissions(
        p.path(PROVIDER_SOCK),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let accept = tokio::spawn(async move {
        let (s, _) = l.accept().await.unwrap();
        let cred = s.peer_cred().unwrap();
        (cred.uid(), cred.gid())
    });
    let s = pv_xconnect::ns::connect_provider(
        in_container(&p),
        Path::new(PROVIDER_SOCK),
        Some((90001, 90002)),
    )
    .await
    .expect("connect as 90001:90002");
    assert_eq!(accept.await.unwrap(), (90001, 90002));
    drop(s);

    // read_provider_file is scoped too: a symlink to a host file reads the
    // provider's own file of that name (or nothing).
    let hostdir = tempfile::tempdir().unwrap();
    let secret = hostdir.path().join("secret");
    std::fs::write(&secret, b"host secret").unwrap();
    std::os::unix::fs::symlink(&secret, p.path("/run/link")).unwrap();
    assert!(
        pv_xconnect::ns::read_provider_file(in_container(&p), Path::new("/run/link"), 4096)
            .await
            .is_err()
    );
    std::fs::write(p.path("/run/passwd"), b"root:x:0:0::/root:/bin/sh\n").unwrap();
    let got = pv_xconnect::ns::read_provider_file(in_container(&p), Path::new("/run/passwd"), 4096)
        .await
        .unwrap();
    assert_eq!(got, b"root:x:0:0::/root:/bin/sh\n");
    assert!(
        pv_xconnect::ns::read_provider_file(in_container(&p), Path::new("/run/passwd"), 4)
            .await
            .is_err()
    );
}
