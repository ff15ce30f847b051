//! Our dbus filter next to the proxy it follows: every row of the policy
//! table in `link::dbus::policy` sent by a hand-written client through a
//! pv-xconnect link and through Debian's xdg-dbus-proxy (`--filter
//! --talk=org.pantavisor.Example`) on the same dbus-daemon. Each row
//! states what both answer; where they differ on purpose, both answers
//! are asserted and the policy module says why.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pv_e2e::dbus::raw::{self, Raw, Recv, BUS};
use pv_e2e::dbus::{Bus, HIDDEN};
use pv_examples::dbus::NAME;

const BUS_PATH: &str = "/org/freedesktop/DBus";

/// How a call ended, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Return(Vec<u8>),
    Error(String),
    Closed,
    Silent,
}

use Outcome::*;

fn err(name: &str) -> Outcome {
    Error(format!("org.freedesktop.DBus.Error.{name}"))
}

/// What a row sends: given the client's own unique name and the hidden
/// service's, the bytes (one or more messages) and the serial to watch.
type Row = (&'static str, fn(&str, &str) -> (Vec<u8>, u32));

fn bus_call(serial: u32, member: &str, args: &[&str]) -> Vec<u8> {
    raw::call(serial, BUS, BUS_PATH, BUS, member, args)
}

async fn outcome(path: &Path, hidden: &str, row: fn(&str, &str) -> (Vec<u8>, u32)) -> Outcome {
    let mut c = Raw::connect(path).await;
    let me = c.unique_name.clone();
    let (bytes, serial) = row(&me, hidden);
    c.send(&bytes).await;
    loop {
        match c.recv(Duration::from_secs(3)).await {
            Recv::Msg(m) if m.reply_serial == Some(serial) => {
                return match m.kind {
                    2 => Return(m.body),
                    _ => Error(m.error_name.unwrap_or_default()),
                }
            }
            Recv::Msg(_) => continue,
            Recv::Closed => return Closed,
            Recv::Silent => return Silent,
        }
    }
}

/// Debian's xdg-dbus-proxy on the bus, filtering like our link.
struct XdgProxy {
    path: PathBuf,
    _child: tokio::process::Child,
}

async fn xdg_proxy(bus: &Bus) -> XdgProxy {
    let path = bus.dir.path().join("xdg-dbus-proxy.sock");
    let child = tokio::process::Command::new(pv_testkit::require_tool("xdg-dbus-proxy"))
        .arg(&bus.address)
        .arg(&path)
        .arg("--filter")
        .arg(format!("--talk={NAME}"))
        .kill_on_drop(true)
        .spawn()
        .expect("xdg-dbus-proxy");
    pv_testkit::assert_eventually!(path.exists(), "xdg-dbus-proxy did not listen");
    XdgProxy {
        path,
        _child: child,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_against_xdg_dbus_proxy() {
    let bus = Bus::start().await;
    let ours = bus.proxy("root", NAME).await;
    let xdg = xdg_proxy(&bus).await;
    let hidden = bus.hidden_unique_name();
    let t = 1u32.to_le_bytes().to_vec();
    let f = 0u32.to_le_bytes().to_vec();

    // (row, ours, xdg-dbus-proxy); `None` for xdg means "same as ours".
    let rows: Vec<(Row, Outcome, Option<Outcome>)> = vec![
        (
            ("call an allowed name", |_, _| {
                (
                    raw::call(9, NAME, "/org/pantavisor/Example", NAME, "GetInfo", &[]),
                    9,
                )
            }),
            Return(vec![]),
            None,
        ),
        (
            ("call the hidden name", |_, _| {
                (
                    raw::call(9, HIDDEN, "/org/pantavisor/Hidden", HIDDEN, "Secret", &[]),
                    9,
                )
            }),
            err("ServiceUnknown"),
            None,
        ),
        (
            ("call the hidden unique name", |_, h| {
                (
                    raw::call(9, h, "/org/pantavisor/Hidden", HIDDEN, "Secret", &[]),
                    9,
                )
            }),
            err("NameHasNoOwner"),
            None,
        ),
        (
            ("GetNameOwner(allowed)", |_, _| {
                (bus_call(9, "GetNameOwner", &[NAME]), 9)
            }),
            Return(vec![]),
            None,
        ),
        (
            ("GetNameOwner(hidden)", |_, _| {
                (bus_call(9, "GetNameOwner", &[HIDDEN]), 9)
            }),
            err("NameHasNoOwner"),
            None,
        ),
        (
            ("GetNameOwner(hidden unique)", |_, h| {
                (bus_call(9, "GetNameOwner", &[h]), 9)
            }),
            err("NameHasNoOwner"),
            None,
        ),
        (
            ("NameHasOwner(allowed)", |_, _| {
                (bus_call(9, "NameHasOwner", &[NAME]), 9)
            }),
            Return(t.clone()),
            None,
        ),
        (
            ("NameHasOwner(hidden)", |_, _| {
                (bus_call(9, "NameHasOwner", &[HIDDEN]), 9)
            }),
            Return(f.clone()),
            None,
        ),
        (
            ("GetConnectionUnixUser(allowed)", |_, _| {
                (bus_call(9, "GetConnectionUnixUser", &[NAME]), 9)
            }),
            Return(f.clone()),
            None,
        ),
        (
            ("GetConnectionUnixUser(own)", |me, _| {
                (bus_call(9, "GetConnectionUnixUser", &[me]), 9)
            }),
            Return(f.clone()),
            None,
        ),
        (
            ("GetConnectionCredentials(own)", |me, _| {
                (bus_call(9, "GetConnectionCredentials", &[me]), 9)
            }),
            Return(vec![]),
            None,
        ),
        (
            ("GetConnectionUnixUser(hidden)", |_, _| {
                (bus_call(9, "GetConnectionUnixUser", &[HIDDEN]), 9)
            }),
            err("NameHasNoOwner"),
            Some(err("ServiceUnknown")),
        ),
        (
            ("GetConnectionUnixProcessID(hidden unique)", |_, h| {
                (bus_call(9, "GetConnectionUnixProcessID", &[h]), 9)
            }),
            err("NameHasNoOwner"),
            Some(err("ServiceUnknown")),
        ),
        (
            ("StartServiceByName(hidden)", |_, _| {
                (bus_call(9, "StartServiceByName", &[HIDDEN]), 9)
            }),
            err("ServiceUnknown"),
            None,
        ),
        (
            ("RequestName(allowed, talk only)", |_, _| {
                (bus_call(9, "RequestName", &[NAME]), 9)
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("RequestName(hidden)", |_, _| {
                (bus_call(9, "RequestName", &[HIDDEN]), 9)
            }),
            err("AccessDenied"),
            Some(err("ServiceUnknown")),
        ),
        (
            ("AddMatch(plain)", |_, _| {
                (bus_call(9, "AddMatch", &["type='signal'"]), 9)
            }),
            Return(vec![]),
            None,
        ),
        (
            ("AddMatch(eavesdrop)", |_, _| {
                (
                    bus_call(9, "AddMatch", &["eavesdrop=true,type='method_call'"]),
                    9,
                )
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("BecomeMonitor", |_, _| {
                (
                    raw::call(
                        9,
                        BUS,
                        BUS_PATH,
                        "org.freedesktop.DBus.Monitoring",
                        "BecomeMonitor",
                        &[],
                    ),
                    9,
                )
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("UpdateActivationEnvironment", |_, _| {
                (bus_call(9, "UpdateActivationEnvironment", &[]), 9)
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("Peer.Ping to the bus", |_, _| {
                (
                    raw::call(9, BUS, BUS_PATH, "org.freedesktop.DBus.Peer", "Ping", &[]),
                    9,
                )
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("Properties.GetAll on the bus", |_, _| {
                (
                    raw::call(
                        9,
                        BUS,
                        BUS_PATH,
                        "org.freedesktop.DBus.Properties",
                        "GetAll",
                        &[BUS],
                    ),
                    9,
                )
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("Introspect the bus", |_, _| {
                (
                    raw::call(
                        9,
                        BUS,
                        BUS_PATH,
                        "org.freedesktop.DBus.Introspectable",
                        "Introspect",
                        &[],
                    ),
                    9,
                )
            }),
            Return(vec![]),
            None,
        ),
        (
            ("unknown driver method", |_, _| {
                (bus_call(9, "NoSuchMethod", &[]), 9)
            }),
            err("AccessDenied"),
            None,
        ),
        (
            ("the serial trick", |_, h| {
                let mut m = bus_call(5, "GetNameOwner", &[h]);
                m.extend(bus_call(5, "GetNameOwner", &[NAME]));
                m.extend(raw::call(
                    6,
                    h,
                    "/org/pantavisor/Hidden",
                    HIDDEN,
                    "Secret",
                    &[],
                ));
                (m, 6)
            }),
            Closed,
            None,
        ),
        (
            ("a serial kept for the proxy's own calls", |_, _| {
                (
                    raw::call(
                        u32::MAX - 7,
                        NAME,
                        "/org/pantavisor/Example",
                        NAME,
                        "GetInfo",
                        &[],
                    ),
                    u32::MAX - 7,
                )
            }),
            Closed,
            Some(Return(vec![])),
        ),
    ];

    let mut report = Vec::new();
    for ((label, row), want_ours, want_xdg) in &rows {
        let got_ours = normalise(outcome(&ours.path, &hidden, *row).await, want_ours);
        let got_xdg = normalise(
            outcome(&xdg.path, &hidden, *row).await,
            want_xdg.as_ref().unwrap_or(want_ours),
        );
        report.push(format!(
            "{label:45} ours {got_ours:?}  xdg-dbus-proxy {got_xdg:?}"
        ));
        assert_eq!(&got_ours, want_ours, "ours: {label}");
        assert_eq!(
            &got_xdg,
            want_xdg.as_ref().unwrap_or(want_ours),
            "xdg-dbus-proxy: {label}"
        );
    }
    println!("{}", report.join("\n"));
    assert_eq!(bus.hidden_calls(), 0, "the hidden service was reached");
}

/// Return bodies are compared only where the row gives one (a boolean,
/// a uid); otherwise any return counts.
fn normalise(got: Outcome, want: &Outcome) -> Outcome {
    match (got, want) {
        (Return(_), Return(w)) if w.is_empty() => Return(vec![]),
        (g, _) => g,
    }
}

/// ListNames through both: the same well-known names, never the hidden
/// service or its owner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_names_matches_xdg_dbus_proxy() {
    let bus = Bus::start().await;
    let ours = bus.proxy("root", NAME).await;
    let xdg = xdg_proxy(&bus).await;
    let hidden = bus.hidden_unique_name();
    let mut seen = Vec::new();
    for path in [&ours.path, &xdg.path] {
        let mut c = Raw::connect(path).await;
        c.send(&bus_call(9, "ListNames", &[])).await;
        let names = c.reply_to(9).await.string_array();
        assert!(
            !names.iter().any(|n| n == HIDDEN || *n == hidden),
            "{names:?}"
        );
        assert!(
            names.contains(&c.unique_name),
            "own name missing: {names:?}"
        );
        let mut well_known: Vec<String> =
            names.into_iter().filter(|n| !n.starts_with(':')).collect();
        well_known.sort();
        seen.push(well_known);
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[0], [BUS, NAME]);
}
