//! `dbus` mediation against the real thing: Debian's dbus-daemon with the
//! example container's policy, the example service, and third-party
//! clients (libdbus's dbus-send, GLib's gdbus, systemd's busctl) plus zbus,
//! all going through the daemon's accept loop and `link::dbus`.

use std::io::{Seek, Write};
use std::os::fd::AsFd;
use std::time::Duration;

use pv_e2e::dbus::{request_name, zbus_connect as zbus_conn, Bus};
use pv_examples::dbus::{ExampleProxy, INFO, NAME, PATH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const T: Duration = Duration::from_secs(20);

/// Run a client program; (success, stdout, stderr).
async fn run(prog: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        T,
        tokio::process::Command::new(pv_testkit::require_tool(prog))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{prog} {args:?} timed out"))
    .unwrap_or_else(|e| panic!("{prog}: {e}"));
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn dbus_send(address: &str, method: &str, args: &[&str]) -> (bool, String, String) {
    let bus = format!("--bus={address}");
    let (dest, path, m) = if method.starts_with("org.freedesktop.DBus.") {
        (
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            method.to_owned(),
        )
    } else {
        (
            "--dest=org.pantavisor.Example",
            PATH,
            format!("org.pantavisor.Example.{method}"),
        )
    };
    let mut a = vec![bus.as_str(), "--print-reply", dest, path, m.as_str()];
    a.extend_from_slice(args);
    run("dbus-send", &a).await
}

/// The uid the bus reports for each client library's connection.
async fn whoami_all_clients(address: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (ok, o, e) = dbus_send(address, "WhoAmI", &[]).await;
    assert!(ok, "dbus-send WhoAmI failed: {e}");
    out.push((
        "dbus-send".into(),
        o.split_whitespace().last().unwrap_or("").to_owned(),
    ));
    let (ok, o, e) = run(
        "gdbus",
        &[
            "call",
            "--address",
            address,
            "--dest",
            NAME,
            "--object-path",
            PATH,
            "--method",
            "org.pantavisor.Example.WhoAmI",
        ],
    )
    .await;
    assert!(ok, "gdbus WhoAmI failed: {e}");
    // "(uint32 65534,)"
    let n: String = o.chars().filter(|c| c.is_ascii_digit()).collect();
    out.push(("gdbus".into(), n.trim_start_matches("32").to_owned()));
    let (ok, o, e) = run(
        "busctl",
        &[
            &format!("--address={address}"),
            "call",
            NAME,
            PATH,
            NAME,
            "WhoAmI",
        ],
    )
    .await;
    assert!(ok, "busctl WhoAmI failed: {e}");
    out.push((
        "busctl".into(),
        o.split_whitespace().last().unwrap_or("").to_owned(),
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_info_through_the_proxy_with_three_client_libraries() {
    let bus = Bus::start().await;
    let p = bus.proxy("root", "org.pantavisor.Example").await;
    let (ok, out, err) = dbus_send(&p.address, "GetInfo", &[]).await;
    assert!(ok, "dbus-send: {err}");
    assert!(
        out.contains(r#"{"service": "dbus-example", "status": "active"}"#),
        "{out}"
    );
    let (ok, out, err) = run(
        "gdbus",
        &[
            "call",
            "--address",
            &p.address,
            "--dest",
            NAME,
            "--object-path",
            PATH,
            "--method",
            "org.pantavisor.Example.GetInfo",
        ],
    )
    .await;
    assert!(ok, "gdbus: {err}");
    assert!(out.contains("dbus-example"), "{out}");
    let (ok, out, err) = run(
        "busctl",
        &[
            &format!("--address={}", p.address),
            "call",
            NAME,
            PATH,
            NAME,
            "GetInfo",
        ],
    )
    .await;
    assert!(ok, "busctl: {err}");
    assert!(out.contains("dbus-example"), "{out}");
    assert!(
        p.stats
            .bytes_relayed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whoami_is_the_role_for_every_client_style() {
    let bus = Bus::start().await;
    // (role, hosted-bus uid, expected uid). The provider here is the host
    // (provider_pid 0), so names resolve in the host's /etc/passwd, where
    // Debian always has root, daemon (1), bin (2) and nobody. dbus-daemon
    // drops connections whose uid has no passwd entry (it cannot resolve
    // their groups), so numeric roles use uids that exist.
    let cases: &[(&str, Option<u32>, &str)] = &[
        ("root", None, "0"),
        ("nobody", None, "65534"),
        ("1", None, "1"),
        ("no-such-role", None, "65534"),
        ("any", None, "65534"),
        // A hosted-bus link's allocated uid wins over the role.
        ("root", Some(2), "2"),
    ];
    for (role, uid, want) in cases {
        let p = bus.proxy_with(role, "org.pantavisor.Example", *uid).await;
        for (client, got) in whoami_all_clients(&p.address).await {
            assert_eq!(&got, want, "role {role} via {client}");
        }
        // zbus claims the caller's uid (0 here) in AUTH EXTERNAL.
        let c = zbus_conn(&p.address).await;
        let got = ExampleProxy::new(&c)
            .await
            .unwrap()
            .who_am_i()
            .await
            .unwrap();
        assert_eq!(got.to_string(), *want, "role {role} via zbus");
    }
}

/// Role names resolve in the PROVIDER's /etc/passwd: here dbus-daemon runs
/// in its own mount namespace where `operator` is 1001; the host has no
/// such user, so reading the host's file would give 65534.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_names_resolve_in_the_providers_passwd() {
    let passwd = pv_examples::dbus::SERVER_PASSWD;
    assert!(
        !std::fs::read_to_string("/etc/passwd")
            .unwrap()
            .contains("operator:x:1001"),
        "this host has an operator user of its own; the test would prove nothing"
    );
    let bus = Bus::start_with_passwd(passwd).await;
    assert!(bus.provider_pid > 0);
    for (role, want) in [
        ("operator", "1001"),
        ("root", "0"),
        ("nobody", "65534"),
        ("1001", "1001"),
    ] {
        let p = bus.proxy(role, "org.pantavisor.Example").await;
        for (client, got) in whoami_all_clients(&p.address).await {
            assert_eq!(got, want, "role {role} via {client}");
        }
    }
    // The example clients, as the containers run them.
    let p = bus.proxy("operator", "org.pantavisor.Example").await;
    pv_examples::dbus::client_main(p.socket(), true)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacker_is_refused_while_an_allowed_client_keeps_working() {
    let bus = Bus::start().await;
    let attacker = bus.proxy("nobody", "org.pantavisor.Example").await;
    let friend = bus.proxy("nobody", "org.pantavisor.Example").await;
    let friend_conn = zbus_conn(&friend.address).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let p = ExampleProxy::new(&friend_conn).await.unwrap();
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(p.get_info().await.unwrap(), INFO);
                n += 1;
            }
            n
        })
    };

    let results = pv_examples::dbus::attack(attacker.socket()).await.unwrap();
    assert_eq!(results.len(), 3);
    for (what, refused, detail) in &results {
        assert!(refused, "attacker got through: {what}: {detail}");
    }

    // The same with libdbus, and the denial is the proxy's own answer.
    let (ok, _, err) = dbus_send(
        &attacker.address,
        "org.freedesktop.DBus.RequestName",
        &["string:org.pantavisor.Example", "uint32:0"],
    )
    .await;
    assert!(!ok);
    assert!(
        err.contains("org.freedesktop.DBus.Error.AccessDenied") && err.contains("pv-xconnect"),
        "{err}"
    );

    // The error is addressed to the caller and answers the right serial.
    let c = zbus_conn(&attacker.address).await;
    let e = request_name(&c, NAME, 0)
        .await
        .expect_err("RequestName must be refused");
    let zbus::Error::MethodError(name, _, msg) = e else {
        panic!("unexpected error {e:?}");
    };
    assert_eq!(name.as_str(), "org.freedesktop.DBus.Error.AccessDenied");
    let h = msg.header();
    assert_eq!(
        h.destination().map(|d| d.to_string()),
        c.unique_name().map(|u| u.to_string())
    );
    assert_eq!(
        h.sender().map(|s| s.to_string()).as_deref(),
        Some("org.freedesktop.DBus")
    );

    // The service still owns its name.
    let direct = zbus_conn(&bus.address).await;
    let owner = zbus::fdo::DBusProxy::new(&direct)
        .await
        .unwrap()
        .get_name_owner(NAME.try_into().unwrap())
        .await;
    assert!(owner.is_ok());

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let calls = worker
        .await
        .expect("allowed client failed while the attacker ran");
    assert!(calls > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtering_follows_the_interface() {
    let bus = Bus::start().await;
    let open = bus.proxy("root", "dbus").await;
    let filtered = bus.proxy("root", "org.pantavisor.Example").await;
    let hidden = [
        "--dest=org.pantavisor.Hidden",
        "/org/pantavisor/Hidden",
        "org.pantavisor.Hidden.Secret",
    ];

    // The default interface filters nothing: the service no link grants
    // answers, and ListNames shows it.
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", open.address),
            "--print-reply",
            hidden[0],
            hidden[1],
            hidden[2],
        ],
    )
    .await;
    assert!(
        ok && out.contains("secret"),
        "default interface must not filter: {err}"
    );
    let (ok, out, err) = dbus_send(&open.address, "org.freedesktop.DBus.ListNames", &[]).await;
    assert!(
        ok && out.contains(NAME) && out.contains("org.pantavisor.Hidden"),
        "ListNames unfiltered: {out} {err}"
    );

    // Filtered: the hidden service looks absent, ListNames leaves it out.
    let (ok, _, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", filtered.address),
            "--print-reply",
            hidden[0],
            hidden[1],
            hidden[2],
        ],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("ServiceUnknown"), "{err}");
    assert_eq!(
        bus.hidden_calls(),
        1,
        "only the unfiltered call got through"
    );
    let (ok, out, err) = dbus_send(&filtered.address, "org.freedesktop.DBus.ListNames", &[]).await;
    assert!(
        ok && out.contains(NAME) && !out.contains("org.pantavisor.Hidden"),
        "ListNames filtered: {out} {err}"
    );
    // Harmless driver calls and standard interfaces still work.
    let (ok, _, err) = dbus_send(
        &filtered.address,
        "org.freedesktop.DBus.GetNameOwner",
        &["string:org.pantavisor.Example"],
    )
    .await;
    assert!(ok, "GetNameOwner: {err}");
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", filtered.address),
            "--print-reply",
            "--dest=org.pantavisor.Example",
            PATH,
            "org.freedesktop.DBus.Introspectable.Introspect",
        ],
    )
    .await;
    assert!(ok && out.contains("GetInfo"), "Introspect: {err}");

    // `=own` grants ownership: root's RequestName now reaches the bus (the
    // service keeps the name, so the answer is "in queue", not an error).
    let owner = bus.proxy("root", "org.pantavisor.Example=own").await;
    let c = zbus_conn(&owner.address).await;
    let r = request_name(&c, NAME, 4).await;
    assert!(r.is_ok(), "RequestName with =own: {r:?}");
}

/// A hosted-bus link (the graph gives its `uid`) is not filtered by its
/// `interface`, which upstream makes informational there: the bus's policy
/// decides. `pv-example-dbus-host-server` declares `org.pantavisor.Example`
/// without `=own`; filtered like a per-provider link, its `RequestName`
/// was refused by pv-xconnect and the name never owned (the hostbus
/// harness group timed out waiting for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosted_bus_links_leave_the_verdicts_to_the_bus() {
    let bus = Bus::start().await;
    let request_name =
        |address: String| async move { request_name(&zbus_conn(&address).await, NAME, 4).await };
    // The same role and interface on a per-provider link: refused by the
    // link's filter.
    let filtered = bus.proxy("root", NAME).await;
    let r = request_name(filtered.address.clone()).await;
    assert!(
        matches!(&r, Err(e) if e.to_string().contains("AccessDenied")),
        "per-provider link: {r:?}"
    );
    // Hosted (uid 0, whom this bus lets own the name): the bus answers;
    // the example service holds the name, so "exists" (3).
    let hosted = bus.proxy_with("root", NAME, Some(0)).await;
    let r = request_name(hosted.address.clone()).await;
    assert_eq!(r.ok(), Some(3), "hosted-bus link: RequestName");
    // And a name outside the interface is the bus's to refuse or allow:
    // this bus lets everyone call the hidden service.
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", hosted.address),
            "--print-reply",
            "--dest=org.pantavisor.Hidden",
            "/org/pantavisor/Hidden",
            "org.pantavisor.Hidden.Secret",
        ],
    )
    .await;
    assert!(ok && out.contains("secret"), "hosted-bus link: {err}");
    // While the bus's own refusals still reach the consumer: uid 2 (bin)
    // may not own the name.
    let bin = bus.proxy_with("root", NAME, Some(2)).await;
    let r = request_name(bin.address.clone()).await;
    assert!(
        matches!(&r, Err(e) if e.to_string().contains("AccessDenied")),
        "uid 2: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fds_travel_both_ways() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", "org.pantavisor.Example").await;
    let c = zbus_conn(&p.address).await;
    let ex = ExampleProxy::new(&c).await.unwrap();
    let mut f = tempfile::tempfile().unwrap();
    f.write_all(b"payload through the proxy").unwrap();
    f.rewind().unwrap();
    let got = ex.read_fd(f.as_fd().into()).await.unwrap();
    assert_eq!(got, "payload through the proxy");

    let fd = ex.make_fd("made by the service").await.unwrap();
    let fd: std::os::fd::OwnedFd = fd.into();
    let mut s = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut s).unwrap();
    assert_eq!(s, "made by the service");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_sequential_calls_on_one_connection() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", "org.pantavisor.Example").await;
    let c = zbus_conn(&p.address).await;
    let ex = ExampleProxy::new(&c).await.unwrap();
    for i in 0..1000 {
        assert_eq!(
            ex.get_info()
                .await
                .unwrap_or_else(|e| panic!("call {i}: {e}")),
            INFO
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_concurrent_connections() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", "org.pantavisor.Example").await;
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let a = p.address.clone();
            tokio::spawn(async move {
                let c = zbus_conn(&a).await;
                let ex = ExampleProxy::new(&c).await.unwrap();
                (
                    ex.get_info().await.unwrap(),
                    ex.who_am_i().await.unwrap(),
                    c,
                )
            })
        })
        .collect();
    let mut conns = Vec::new();
    for t in tasks {
        let (info, uid, c) = t.await.unwrap();
        assert_eq!(info, INFO);
        assert_eq!(uid, 65534);
        conns.push(c);
    }
    assert_eq!(conns.len(), 100);
}

/// Read until EOF; true if the proxy closed the connection in time.
async fn closed(s: &mut UnixStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while !line.ends_with(b"\r\n") {
        let n = tokio::time::timeout(T, s.read(&mut b))
            .await
            .expect("read timed out")
            .unwrap();
        assert!(
            n == 1,
            "closed mid-line: {:?}",
            String::from_utf8_lossy(&line)
        );
        line.push(b[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_kills_only_that_connection() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", "org.pantavisor.Example").await;
    let keeper = zbus_conn(&p.address).await;
    let ex = ExampleProxy::new(&keeper).await.unwrap();

    // No leading NUL.
    let mut s = UnixStream::connect(&p.path).await.unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    assert!(closed(&mut s).await, "no NUL: not closed");
    assert_eq!(ex.get_info().await.unwrap(), INFO);

    // Binary junk in a SASL line.
    let mut s = UnixStream::connect(&p.path).await.unwrap();
    s.write_all(b"\0AUTH EXTERNAL 30\r\n").await.unwrap();
    assert!(read_line(&mut s).await.starts_with("OK "));
    s.write_all(b"\x01\x02\xff\r\n").await.unwrap();
    assert!(closed(&mut s).await, "bad SASL: not closed");

    // Other mechanisms are refused by the proxy, the exchange goes on.
    let mut s = UnixStream::connect(&p.path).await.unwrap();
    s.write_all(b"\0AUTH ANONYMOUS 7a627573\r\n").await.unwrap();
    assert_eq!(read_line(&mut s).await, "REJECTED EXTERNAL\r\n");

    // Garbage after BEGIN.
    for junk in [
        &b"this is not a message at all"[..],
        // Valid prologue announcing a 200 MiB body: oversized.
        b"l\x01\x00\x01\x00\x00\x80\x0c\x01\x00\x00\x00\x00\x00\x00\x00",
        // Version 9.
        b"l\x01\x00\x09\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00",
    ] {
        let mut s = UnixStream::connect(&p.path).await.unwrap();
        s.write_all(b"\0AUTH EXTERNAL 30\r\n").await.unwrap();
        assert!(read_line(&mut s).await.starts_with("OK "));
        s.write_all(b"BEGIN\r\n").await.unwrap();
        s.write_all(junk).await.unwrap();
        assert!(
            closed(&mut s).await,
            "junk after BEGIN not closed: {junk:?}"
        );
        assert_eq!(
            ex.get_info().await.unwrap(),
            INFO,
            "the other connection died"
        );
    }

    // And new connections still work.
    let (ok, out, err) = dbus_send(&p.address, "GetInfo", &[]).await;
    assert!(ok && out.contains("dbus-example"), "{err}");
}
