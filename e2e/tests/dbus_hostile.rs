//! A filtered `dbus` link against hostile consumers, on Debian's
//! dbus-daemon with a service the link must hide (`org.pantavisor.Hidden`,
//! which the bus itself lets everyone call): hand-written clients send the
//! raw bytes libraries refuse to send, and libdbus's dbus-send, GLib's
//! gdbus and systemd's busctl check what ordinary clients see.
//!
//! The same moves against Debian's xdg-dbus-proxy, row by row of the
//! policy table, are in `dbus_parity.rs`; the memory bound in
//! `dbus_memory.rs`.

use std::time::{Duration, Instant};

use pv_e2e::dbus::raw::{self, Raw, Recv, BUS};
use pv_e2e::dbus::{Bus, HIDDEN};
use pv_examples::dbus::NAME;
use pv_xconnect::link::{dbus, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const BUS_PATH: &str = "/org/freedesktop/DBus";
const QUIET: Duration = Duration::from_millis(500);

async fn run(prog: &str, args: &[&str]) -> (bool, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
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

fn bus_call(serial: u32, member: &str, args: &[&str]) -> Vec<u8> {
    raw::call(serial, BUS, BUS_PATH, BUS, member, args)
}

/// The attack: `GetNameOwner` of the hidden service's unique name
/// and of an allowed name, one serial, one write; then a call to the
/// hidden unique name. The proxy disconnects; the hidden service is never
/// called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_serial_trick_disconnects_and_reaches_nothing() {
    let bus = Bus::start().await;
    let hidden = bus.hidden_unique_name();
    // Without the link in between, the hidden service answers: the test
    // can tell a refusal from an absent service.
    let mut direct = Raw::connect(&bus.path).await;
    direct
        .send(&raw::call(
            2,
            &hidden,
            "/org/pantavisor/Hidden",
            HIDDEN,
            "Secret",
            &[],
        ))
        .await;
    assert_eq!(direct.reply_to(2).await.kind, 2, "direct call answered");
    assert_eq!(bus.hidden_calls(), 1);

    let p = bus.proxy("nobody", NAME).await;
    let mut c = Raw::connect(&p.path).await;
    let mut attack = bus_call(5, "GetNameOwner", &[&hidden]);
    attack.extend(bus_call(5, "GetNameOwner", &[NAME]));
    attack.extend(raw::call(
        6,
        &hidden,
        "/org/pantavisor/Hidden",
        HIDDEN,
        "Secret",
        &[],
    ));
    c.send(&attack).await;
    let (got, closed) = c.drain(Duration::from_secs(3)).await;
    assert!(closed, "the client was not disconnected: {got:?}");
    assert!(
        !got.iter().any(|m| m.reply_serial == Some(6) && m.kind == 2),
        "the hidden service answered: {got:?}"
    );
    assert!(
        !got.iter().any(|m| m.strings().contains(&hidden)),
        "the hidden owner leaked: {got:?}"
    );
    assert_eq!(bus.hidden_calls(), 1, "the hidden service was called");

    // Other consumers of the link are unaffected.
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", p.address),
            "--print-reply",
            "--dest=org.pantavisor.Example",
            "/org/pantavisor/Example",
            "org.pantavisor.Example.GetInfo",
        ],
    )
    .await;
    assert!(ok && out.contains("dbus-example"), "{err}");
}

/// Hidden names and their owners answer like absent names, through every
/// driver method that takes a name, and never appear in `ListNames`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hidden_owners_are_not_leaked() {
    let bus = Bus::start().await;
    let hidden = bus.hidden_unique_name();
    let absent = "org.pantavisor.Absent";
    // Absent is allowed, so its answers come from the bus itself.
    let p = bus.proxy("nobody", &format!("{NAME}, {absent}")).await;
    let mut c = Raw::connect(&p.path).await;
    let mut serial = 10;
    let mut ask = |member: &str, arg: &str| {
        serial += 1;
        (serial, bus_call(serial, member, &[arg]))
    };

    for name in [HIDDEN, hidden.as_str()] {
        // GetNameOwner: the bus's own error and text for an absent name.
        let (s, m) = ask("GetNameOwner", name);
        c.send(&m).await;
        let hid = c.reply_to(s).await;
        let (s, m) = ask("GetNameOwner", absent);
        c.send(&m).await;
        let abs = c.reply_to(s).await;
        assert!(
            abs.is_error("org.freedesktop.DBus.Error.NameHasNoOwner"),
            "{abs:?}"
        );
        assert_eq!(hid.error_name, abs.error_name, "{name}");
        assert_eq!(
            hid.strings(),
            abs.strings()
                .iter()
                .map(|t| t.replace(absent, name))
                .collect::<Vec<_>>(),
            "GetNameOwner({name}) must read like an absent name"
        );
        // NameHasOwner: false.
        let (s, m) = ask("NameHasOwner", name);
        c.send(&m).await;
        let r = c.reply_to(s).await;
        assert_eq!(
            (r.kind, r.body.as_slice()),
            (2, &[0u8, 0, 0, 0][..]),
            "{name}"
        );
        // The credentials family: no such name.
        for member in [
            "GetConnectionUnixUser",
            "GetConnectionUnixProcessID",
            "GetConnectionCredentials",
        ] {
            let (s, m) = ask(member, name);
            c.send(&m).await;
            let r = c.reply_to(s).await;
            assert!(
                r.is_error("org.freedesktop.DBus.Error.NameHasNoOwner"),
                "{member}({name}): {r:?}"
            );
        }
    }
    // Calls to the hidden service, by either name.
    c.send(&raw::call(
        40,
        HIDDEN,
        "/org/pantavisor/Hidden",
        HIDDEN,
        "Secret",
        &[],
    ))
    .await;
    assert!(c
        .reply_to(40)
        .await
        .is_error("org.freedesktop.DBus.Error.ServiceUnknown"));
    c.send(&raw::call(
        41,
        &hidden,
        "/org/pantavisor/Hidden",
        HIDDEN,
        "Secret",
        &[],
    ))
    .await;
    assert!(c
        .reply_to(41)
        .await
        .is_error("org.freedesktop.DBus.Error.NameHasNoOwner"));
    assert_eq!(bus.hidden_calls(), 0);

    // ListNames: the allowed name, its owner, ourselves, the bus; nothing
    // of the hidden service, no other connection.
    c.send(&bus_call(50, "ListNames", &[])).await;
    let names = c.reply_to(50).await.string_array();
    assert!(names.contains(&NAME.to_string()), "{names:?}");
    assert!(names.contains(&c.unique_name), "{names:?}");
    assert!(
        !names.iter().any(|n| n == HIDDEN || *n == hidden),
        "{names:?}"
    );
    let uniques = names.iter().filter(|n| n.starts_with(':')).count();
    assert_eq!(
        uniques, 2,
        "own name and the service's owner only: {names:?}"
    );
    // The same through the three client libraries.
    let address = format!("--bus={}", p.address);
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &address,
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            BUS_PATH,
            "org.freedesktop.DBus.ListNames",
        ],
    )
    .await;
    assert!(
        ok && out.contains(NAME) && !out.contains(HIDDEN),
        "dbus-send: {out} {err}"
    );
    let (ok, out, err) = run(
        "gdbus",
        &[
            "call",
            "--address",
            &p.address,
            "--dest",
            BUS,
            "--object-path",
            BUS_PATH,
            "--method",
            "org.freedesktop.DBus.ListNames",
        ],
    )
    .await;
    assert!(
        ok && out.contains(NAME) && !out.contains(HIDDEN),
        "gdbus: {out} {err}"
    );
    let (ok, out, err) = run(
        "busctl",
        &[&format!("--address={}", p.address), "list", "--no-pager"],
    )
    .await;
    assert!(
        ok && out.contains(NAME) && !out.contains(HIDDEN),
        "busctl: {out} {err}"
    );
    assert!(
        !out.contains(&hidden),
        "busctl shows the hidden owner: {out}"
    );
}

/// Credentials of the client's own name and of allowed names, and the
/// filtered `ListNames`, with the clients people use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn own_and_allowed_credentials_work_with_real_clients() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", NAME).await;
    let address = format!("--bus={}", p.address);
    // The service runs as root (uid 0).
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &address,
            "--print-reply",
            "--dest=org.freedesktop.DBus",
            BUS_PATH,
            "org.freedesktop.DBus.GetConnectionUnixUser",
            &format!("string:{NAME}"),
        ],
    )
    .await;
    assert!(ok && out.contains("uint32 0"), "dbus-send: {out} {err}");
    let (ok, out, err) = run(
        "gdbus",
        &[
            "call",
            "--address",
            &p.address,
            "--dest",
            BUS,
            "--object-path",
            BUS_PATH,
            "--method",
            "org.freedesktop.DBus.GetConnectionCredentials",
            NAME,
        ],
    )
    .await;
    assert!(
        ok && out.contains("UnixUserID") && out.contains("<uint32 0>"),
        "gdbus: {out} {err}"
    );
    // busctl list asks for the credentials of every name it lists, its own
    // unique name included: the role's uid.
    let (ok, out, err) = run(
        "busctl",
        &[&format!("--address={}", p.address), "list", "--no-pager"],
    )
    .await;
    assert!(ok, "busctl list: {err}");
    // Columns: NAME PID PROCESS USER ...; the service is root, so the one
    // `nobody` connection listed is busctl itself (its pid is the proxy's,
    // as with xdg-dbus-proxy).
    let own = out.lines().filter(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        w.len() > 3 && w[0].starts_with(':') && w[3] == "nobody"
    });
    assert_eq!(
        own.count(),
        1,
        "busctl's own name with the role's user: {out}"
    );
    let (ok, out, err) = run(
        "busctl",
        &[
            &format!("--address={}", p.address),
            "status",
            NAME,
            "--no-pager",
        ],
    )
    .await;
    assert!(ok && out.contains("UID=0"), "busctl status: {out} {err}");

    // A client's own name, by a hand-written client and by zbus.
    let mut c = Raw::connect(&p.path).await;
    let me = c.unique_name.clone();
    c.send(&bus_call(2, "GetConnectionUnixUser", &[&me])).await;
    let r = c.reply_to(2).await;
    assert_eq!(
        (r.kind, r.body.as_slice()),
        (2, &65534u32.to_le_bytes()[..]),
        "{r:?}"
    );
    c.send(&bus_call(3, "GetConnectionUnixProcessID", &[&me]))
        .await;
    assert_eq!(c.reply_to(3).await.kind, 2);
    let z = zbus::connection::Builder::address(p.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let dbus = zbus::fdo::DBusProxy::new(&z).await.unwrap();
    let own = z.unique_name().unwrap().to_owned();
    let creds = dbus
        .get_connection_credentials(own.clone().into())
        .await
        .expect("own credentials");
    assert_eq!(creds.unix_user_id(), Some(65534));
    let names = dbus.list_names().await.unwrap();
    assert!(names.iter().any(|n| n.as_str() == own.as_str()));
    assert!(!names.iter().any(|n| n.as_str() == HIDDEN));
}

/// Eavesdropping and monitoring are refused, and signals about hidden
/// names never arrive, while those about allowed names do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eavesdropping_receives_nothing() {
    let bus = Bus::start().await;
    let visible = "org.pantavisor.Hidden.Visible";
    let p = bus.proxy("nobody", &format!("{NAME}, {visible}")).await;
    let mut c = Raw::connect(&p.path).await;
    for (serial, rule) in [
        (2, "eavesdrop=true,type='method_call'"),
        (3, "type='method_call',eavesdrop = 'true'"),
        (4, "eavesdrop='true'"),
    ] {
        c.send(&bus_call(serial, "AddMatch", &[rule])).await;
        let r = c.reply_to(serial).await;
        assert!(
            r.is_error("org.freedesktop.DBus.Error.AccessDenied"),
            "{rule}: {r:?}"
        );
    }
    c.send(&raw::call(
        5,
        BUS,
        BUS_PATH,
        "org.freedesktop.DBus.Monitoring",
        "BecomeMonitor",
        &[],
    ))
    .await;
    assert!(c
        .reply_to(5)
        .await
        .is_error("org.freedesktop.DBus.Error.AccessDenied"));
    // Ordinary subscriptions pass.
    for (serial, rule) in [
        (6, "type='signal',member='NameOwnerChanged'"),
        (7, "type='signal'"),
        (8, "type='method_call'"),
    ] {
        c.send(&bus_call(serial, "AddMatch", &[rule])).await;
        assert_eq!(c.reply_to(serial).await.kind, 2, "{rule}");
    }
    let _ = c.drain(QUIET).await;

    // Others talk on the bus: calls, names coming and going.
    let other = Raw::connect(&bus.path).await;
    let mut other = other;
    other
        .send(&raw::call(
            2,
            HIDDEN,
            "/org/pantavisor/Hidden",
            HIDDEN,
            "Secret",
            &[],
        ))
        .await;
    other.reply_to(2).await;
    let tmp = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name("org.pantavisor.Hidden.Tmp")
        .unwrap()
        .build()
        .await
        .expect("own a hidden name");
    let shown = zbus::connection::Builder::address(bus.address.as_str())
        .unwrap()
        .name(visible)
        .unwrap()
        .build()
        .await
        .expect("own a visible name");
    drop(tmp);
    drop(other);
    let (got, closed) = c.drain(Duration::from_secs(1)).await;
    assert!(!closed);
    let hidden_unique = bus.hidden_unique_name();
    for m in &got {
        let args = m.strings();
        assert_eq!(
            m.member.as_deref(),
            Some("NameOwnerChanged"),
            "unexpected message: {m:?}"
        );
        assert!(
            args.first()
                .is_some_and(|n| n == visible || *n == shown.unique_name().unwrap().as_str()),
            "a signal about a hidden name arrived: {args:?}"
        );
        assert!(!args.contains(&hidden_unique));
    }
    assert!(
        got.iter()
            .any(|m| m.strings().first().map(String::as_str) == Some(visible)),
        "the allowed name's NameOwnerChanged did not arrive: {got:?}"
    );
}

/// A consumer that connects and never authenticates is dropped after the
/// link's authentication timeout, and the bus never saw a connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_auth_timeout() {
    let bus = Bus::start().await;
    let options = Options {
        dbus: dbus::Options {
            auth_timeout: Duration::from_secs(1),
        },
        ..Options::default()
    };
    let p = bus.proxy_opts("nobody", NAME, None, &options).await;
    let before = bus_sockets(&bus);
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(UnixStream::connect(&p.path).await.unwrap());
    }
    // Half an exchange, then nothing.
    let mut stalled = UnixStream::connect(&p.path).await.unwrap();
    stalled.write_all(b"\0AUTH EXTERNAL").await.unwrap();
    silent.push(stalled);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bus_sockets(&bus),
        before,
        "the bus saw unauthenticated consumers"
    );
    for mut s in silent {
        let mut b = [0u8; 64];
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(&mut b)).await;
        assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))), "not closed: {r:?}");
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, the timeout is 1 s"
    );
    // The link still serves clients that do authenticate.
    let (ok, out, err) = run(
        "dbus-send",
        &[
            &format!("--bus={}", p.address),
            "--print-reply",
            "--dest=org.pantavisor.Example",
            "/org/pantavisor/Example",
            "org.pantavisor.Example.GetInfo",
        ],
    )
    .await;
    assert!(ok && out.contains("dbus-example"), "{err}");
}

/// Connections to the bus's socket: entries of /proc/net/unix bound to its
/// path (the listener and every accepted connection).
fn bus_sockets(bus: &Bus) -> usize {
    let path = bus.path.display().to_string();
    std::fs::read_to_string("/proc/net/unix")
        .expect("/proc/net/unix")
        .lines()
        .filter(|l| l.ends_with(&path))
        .count()
}

/// A message announcing a large body is decided on its header: refused
/// at once (nothing of it reaches the bus), its body discarded as it
/// streams, and the connection goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_large_message_is_discarded_as_it_streams() {
    let bus = Bus::start().await;
    let p = bus.proxy("nobody", NAME).await;
    let mut c = Raw::connect(&p.path).await;
    const LEN: u32 = 32 << 20;
    c.send(&raw::big_call(7, HIDDEN, LEN + 4, &LEN.to_le_bytes()))
        .await;
    // The refusal comes before the body does.
    let r = c.reply_to(7).await;
    assert!(
        r.is_error("org.freedesktop.DBus.Error.ServiceUnknown"),
        "{r:?}"
    );
    let chunk = vec![0x5a; 1 << 20];
    for _ in 0..32 {
        c.stream.write_all(&chunk).await.unwrap();
    }
    c.send(&raw::call(
        8,
        NAME,
        "/org/pantavisor/Example",
        NAME,
        "GetInfo",
        &[],
    ))
    .await;
    let r = c.reply_to(8).await;
    assert_eq!(r.kind, 2, "{r:?}");
    assert!(matches!(c.recv(QUIET).await, Recv::Silent));
}
