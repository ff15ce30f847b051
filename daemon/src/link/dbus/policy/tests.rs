//! One test per row of the tables in [`super`], on messages built and
//! parsed with [`wire`] as the pumps see them.

use super::*;
use crate::test_util::dbus;

const EXAMPLE: &str = "org.pantavisor.Example";
const HIDDEN: &str = "org.pantavisor.Hidden";
const ME: &str = ":1.7";
const SERVICE: &str = ":1.3";
const STRANGER: &str = ":1.4";

/// A parsed consumer call and its body.
fn call(serial: u32, dest: &str, iface: &str, member: &str, args: &[&str]) -> (Header, Vec<u8>) {
    call_flags(serial, 0, dest, iface, member, args)
}

fn call_flags(
    serial: u32,
    flags: u8,
    dest: &str,
    iface: &str,
    member: &str,
    args: &[&str],
) -> (Header, Vec<u8>) {
    dbus::split(&wire::method_call(
        serial, flags, dest, "/", iface, member, args,
    ))
}

fn bus_call(serial: u32, member: &str, args: &[&str]) -> (Header, Vec<u8>) {
    call(serial, BUS, BUS, member, args)
}

/// A message from the bus, built field by field.
fn incoming(kind: MessageType, sender: &str, dest: Option<&str>) -> Header {
    dbus::header(kind, sender, dest, 900)
}

fn reply_to(serial: u32, sender: &str, sig: Option<&str>, body: &[u8]) -> Header {
    let mut h = incoming(MessageType::MethodReturn, sender, Some(ME));
    h.reply_serial = Some(serial);
    h.signature = sig.map(Into::into);
    h.body_len = body.len();
    h
}

fn string_body(s: &str) -> Vec<u8> {
    let m = wire::error_reply(1, 1, None, "a.b", s);
    let h = wire::parse(&m).unwrap();
    m[h.body_offset..].to_vec()
}

/// Answer the proxy's own calls as the bus would: `owners` maps names to
/// unique names; `names` is what ListNames returns.
fn answer_fakes(f: &mut Filter, mut calls: Vec<Vec<u8>>, owners: &[(&str, &str)], names: &[&str]) {
    while let Some(m) = calls.pop() {
        let h = wire::parse(&m).unwrap();
        let arg = wire::first_string_arg(&m[h.body_offset..], &h);
        let (sig, body) = match h.member.as_deref().unwrap() {
            "GetNameOwner" => {
                let name = arg.unwrap();
                match owners.iter().find(|(n, _)| *n == name) {
                    Some((_, o)) => (Some("s"), string_body(o)),
                    None => {
                        let mut e = incoming(MessageType::Error, BUS, Some(ME));
                        e.reply_serial = Some(h.serial);
                        assert_eq!(f.from_bus(&e, None), FromBus::Learnt(vec![]));
                        continue;
                    }
                }
            }
            "ListNames" => (Some("as"), wire::string_array_body(names)),
            "AddMatch" => (None, vec![]),
            other => panic!("unexpected fake {other}"),
        };
        let r = reply_to(h.serial, BUS, sig, &body);
        assert!(f.bus_wants_body(&r) == (sig.is_some()));
        match f.from_bus(&r, Some(&body)) {
            FromBus::Learnt(more) => calls.extend(more),
            other => panic!("fake reply forwarded: {other:?}"),
        }
    }
}

/// A filter for `interface` after `Hello`, with `EXAMPLE` owned by
/// `SERVICE` and `HIDDEN` by `STRANGER`.
fn connected(interface: &str) -> Filter {
    let mut f = Filter::new(Policy::parse(interface).unwrap().unwrap());
    let (h, b) = bus_call(1, "Hello", &[]);
    let FromClient::ForwardHello(fakes) = f.from_client(&h, Some(&b)) else {
        panic!("Hello not forwarded");
    };
    assert!(f.holding());
    let body = string_body(ME);
    let r = reply_to(1, BUS, Some("s"), &body);
    assert!(f.bus_wants_body(&r));
    assert_eq!(f.from_bus(&r, Some(&body)), FromBus::Forward);
    answer_fakes(
        &mut f,
        fakes,
        &[
            (EXAMPLE, SERVICE),
            (HIDDEN, STRANGER),
            ("org.pantavisor.Sub.A", ":1.5"),
        ],
        &[
            BUS,
            EXAMPLE,
            HIDDEN,
            "org.pantavisor.Sub.A",
            SERVICE,
            STRANGER,
            ":1.5",
            ME,
        ],
    );
    assert!(!f.holding());
    assert_eq!(f.own_name(), Some(ME));
    f
}

/// Run a refused call through its stand-in Ping and return what the
/// consumer finally receives.
fn refused(f: &mut Filter, h: &Header, body: &[u8]) -> (Header, Vec<u8>) {
    let FromClient::Refuse {
        ping: Some(ping), ..
    } = f.from_client(h, Some(body))
    else {
        panic!("{:?} not refused with a reply", h.member);
    };
    let p = wire::parse(&ping).unwrap();
    assert_eq!(p.serial, h.serial);
    assert_eq!(p.destination.as_deref(), Some(BUS));
    assert_eq!(p.interface.as_deref(), Some(PEER));
    let pong = reply_to(h.serial, BUS, None, &[]);
    let FromBus::Replace(answer) = f.from_bus(&pong, None) else {
        panic!("Ping reply not rewritten");
    };
    let a = wire::parse(&answer).unwrap();
    assert_eq!(a.reply_serial, Some(h.serial));
    assert_eq!(a.serial, pong.serial);
    assert_eq!(a.destination.as_deref(), Some(ME));
    assert_eq!(a.sender.as_deref(), Some(BUS));
    let body = answer[a.body_offset..].to_vec();
    (a, body)
}

fn refused_with(f: &mut Filter, h: &Header, body: &[u8]) -> String {
    let (a, _) = refused(f, h, body);
    a.error_name.unwrap_or_else(|| "(return)".into())
}

#[test]
fn talk_names_are_forwarded() {
    let mut f = connected(EXAMPLE);
    for (i, dest) in [EXAMPLE, SERVICE, ME].iter().enumerate() {
        let (h, b) = call(10 + i as u32, dest, EXAMPLE, "GetInfo", &[]);
        assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward, "{dest}");
    }
    // The replies come back.
    let r = reply_to(10, SERVICE, None, &[]);
    assert_eq!(f.from_bus(&r, None), FromBus::Forward);
}

#[test]
fn visible_but_not_callable_is_access_denied() {
    let mut f = connected(EXAMPLE);
    // A stranger calls the consumer: it becomes See.
    let mut c = incoming(MessageType::MethodCall, ":1.9", Some(ME));
    c.serial = 55;
    assert_eq!(f.from_bus(&c, None), FromBus::Forward);
    assert_eq!(f.access(Some(":1.9")), Access::See);
    let (h, b) = call(11, ":1.9", "org.x.Y", "M", &[]);
    assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED);
    // But its credentials may be asked for.
    let (h, b) = bus_call(12, "GetConnectionUnixUser", &[":1.9"]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
}

#[test]
fn hidden_names_look_absent() {
    let mut f = connected(EXAMPLE);
    let (h, b) = call(11, HIDDEN, HIDDEN, "GetInfo", &[]);
    assert_eq!(refused_with(&mut f, &h, &b), SERVICE_UNKNOWN);
    let (h, b) = call_flags(12, wire::NO_AUTO_START, HIDDEN, HIDDEN, "GetInfo", &[]);
    assert_eq!(refused_with(&mut f, &h, &b), NAME_HAS_NO_OWNER);
    let (h, b) = call(13, STRANGER, HIDDEN, "GetInfo", &[]);
    assert_eq!(refused_with(&mut f, &h, &b), NAME_HAS_NO_OWNER);
}

#[test]
fn signals_to_names_without_talk_are_dropped_broadcasts_pass() {
    let mut f = connected(EXAMPLE);
    let mut s = incoming(MessageType::Signal, ME, Some(STRANGER));
    s.serial = 20;
    assert!(matches!(
        f.from_client(&s, None),
        FromClient::Refuse { ping: None, .. }
    ));
    s.destination = Some(EXAMPLE.into());
    assert_eq!(f.from_client(&s, None), FromClient::Forward);
    s.destination = None;
    assert_eq!(f.from_client(&s, None), FromClient::Forward);
}

#[test]
fn a_call_without_destination_is_refused() {
    let mut f = connected(EXAMPLE);
    let (mut h, b) = call(20, BUS, PEER, "Ping", &[]);
    h.destination = None;
    assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED);
}

#[test]
fn harmless_driver_calls_pass() {
    let mut f = connected(EXAMPLE);
    for (i, m) in ["RemoveMatch", "GetId", "Hello"].iter().enumerate() {
        let (h, b) = bus_call(30 + i as u32, m, &["type='signal'"]);
        assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward, "{m}");
    }
    let (h, b) = call(40, BUS, INTROSPECTABLE, "Introspect", &[]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
}

#[test]
fn add_match_passes_unless_it_eavesdrops() {
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(30, "AddMatch", &["type='signal',member='NameOwnerChanged'"]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
    for (i, rule) in [
        "eavesdrop=true,type='method_call'",
        "type='signal',eavesdrop = 'true'",
        "eavesdrop\t='false'",
    ]
    .iter()
    .enumerate()
    {
        let (h, b) = bus_call(31 + i as u32, "AddMatch", &[rule]);
        assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED, "{rule}");
    }
    assert!(!is_eavesdrop("type='signal',arg0='eavesdrop'"));
}

#[test]
fn list_names_replies_are_filtered() {
    for member in ["ListNames", "ListActivatableNames"] {
        let mut f = connected(EXAMPLE);
        let (h, b) = bus_call(30, member, &[]);
        assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
        let all = [BUS, EXAMPLE, HIDDEN, "org.other.X", SERVICE, STRANGER, ME];
        let body = wire::string_array_body(&all);
        let r = reply_to(30, BUS, Some("as"), &body);
        assert!(f.bus_wants_body(&r));
        let FromBus::Replace(m) = f.from_bus(&r, Some(&body)) else {
            panic!("not rewritten");
        };
        let a = wire::parse(&m).unwrap();
        assert_eq!((a.serial, a.reply_serial), (r.serial, Some(30)));
        let names = wire::string_array_arg(&m[a.body_offset..], &a).unwrap();
        assert_eq!(names, [BUS, EXAMPLE, SERVICE, ME]);
        // Too long to filter (the body was over the bound): an error.
        let (h, b) = bus_call(31, member, &[]);
        f.from_client(&h, Some(&b));
        let r = reply_to(31, BUS, Some("as"), &body);
        let FromBus::Replace(m) = f.from_bus(&r, None) else {
            panic!("not replaced");
        };
        assert_eq!(
            wire::parse(&m).unwrap().error_name.as_deref(),
            Some(LIMITS_EXCEEDED)
        );
    }
}

#[test]
fn name_has_owner_of_a_hidden_name_is_false() {
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(30, "NameHasOwner", &[EXAMPLE]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
    let (h, b) = bus_call(31, "NameHasOwner", &[HIDDEN]);
    let (a, body) = refused(&mut f, &h, &b);
    assert_eq!(a.kind, MessageType::MethodReturn);
    assert_eq!(a.signature.as_deref(), Some("b"));
    assert_eq!(body, 0u32.to_le_bytes());
}

#[test]
fn get_name_owner_of_a_hidden_name_has_no_owner() {
    let mut f = connected(EXAMPLE);
    for (i, n) in [EXAMPLE, SERVICE, ME, BUS].iter().enumerate() {
        let (h, b) = bus_call(30 + i as u32, "GetNameOwner", &[n]);
        assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward, "{n}");
    }
    for (i, n) in [HIDDEN, STRANGER, "org.absent.Name"].iter().enumerate() {
        let (h, b) = bus_call(40 + i as u32, "GetNameOwner", &[n]);
        let (a, body) = refused(&mut f, &h, &b);
        assert_eq!(a.error_name.as_deref(), Some(NAME_HAS_NO_OWNER), "{n}");
        let text = wire::first_string_arg(&body, &a).unwrap();
        assert_eq!(
            text,
            format!("Could not get owner of name '{n}': no such name")
        );
    }
}

#[test]
fn credentials_of_visible_names_only() {
    let mut f = connected(EXAMPLE);
    let mut serial = 30;
    for m in [
        "GetConnectionUnixUser",
        "GetConnectionUnixProcessID",
        "GetConnectionCredentials",
        "GetAdtAuditSessionData",
        "GetConnectionSELinuxSecurityContext",
    ] {
        for n in [ME, EXAMPLE, SERVICE, BUS] {
            serial += 1;
            let (h, b) = bus_call(serial, m, &[n]);
            assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward, "{m}({n})");
        }
        for n in [HIDDEN, STRANGER] {
            serial += 1;
            let (h, b) = bus_call(serial, m, &[n]);
            assert_eq!(refused_with(&mut f, &h, &b), NAME_HAS_NO_OWNER, "{m}({n})");
        }
    }
}

#[test]
fn start_service_needs_talk() {
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(30, "StartServiceByName", &[EXAMPLE, "0"]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
    let (h, b) = bus_call(31, "StartServiceByName", &[HIDDEN]);
    assert_eq!(refused_with(&mut f, &h, &b), SERVICE_UNKNOWN);
    let mut c = incoming(MessageType::MethodCall, ":1.9", Some(ME));
    c.flags = wire::NO_REPLY_EXPECTED;
    f.from_bus(&c, None);
    let (h, b) = bus_call(32, "StartServiceByName", &[":1.9"]);
    assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED);
}

#[test]
fn owning_needs_own() {
    let mut f = connected("org.pantavisor.Example, org.pantavisor.Mine=own");
    let mut serial = 30;
    for m in ["RequestName", "ReleaseName", "ListQueuedOwners"] {
        serial += 1;
        let (h, b) = bus_call(serial, m, &["org.pantavisor.Mine"]);
        assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward, "{m}");
        for n in [EXAMPLE, HIDDEN] {
            serial += 1;
            let (h, b) = bus_call(serial, m, &[n]);
            assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED, "{m}({n})");
        }
    }
}

#[test]
fn privileged_and_unknown_driver_calls_are_denied() {
    let mut f = connected(EXAMPLE);
    let mut serial = 30;
    for (iface, member) in [
        (BUS, "UpdateActivationEnvironment"),
        ("org.freedesktop.DBus.Monitoring", "BecomeMonitor"),
        (BUS, "ReloadConfig"),
        (BUS, "NoSuchMethod"),
        (PEER, "GetMachineId"),
        ("org.freedesktop.DBus.Properties", "GetAll"),
        ("org.freedesktop.DBus.Debug.Stats", "GetStats"),
    ] {
        serial += 1;
        let (h, b) = call(serial, BUS, iface, member, &[]);
        assert_eq!(
            refused_with(&mut f, &h, &b),
            ACCESS_DENIED,
            "{iface}.{member}"
        );
    }
    // No interface: dbus-daemon would look the member up in every
    // interface, BecomeMonitor included.
    serial += 1;
    let (mut h, b) = call(serial, BUS, BUS, "BecomeMonitor", &[]);
    h.interface = None;
    assert_eq!(refused_with(&mut f, &h, &b), ACCESS_DENIED);
    // Without a reply expected: dropped, nothing to answer.
    let (h, b) = call_flags(
        99,
        wire::NO_REPLY_EXPECTED,
        BUS,
        BUS,
        "UpdateActivationEnvironment",
        &[],
    );
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Refuse { ping: None, .. }
    ));
}

#[test]
fn only_received_calls_may_be_answered() {
    let mut f = connected(EXAMPLE);
    let mut c = incoming(MessageType::MethodCall, SERVICE, Some(ME));
    c.serial = 44;
    assert_eq!(f.from_bus(&c, None), FromBus::Forward);
    let mut ret = incoming(MessageType::MethodReturn, ME, Some(SERVICE));
    ret.serial = 50;
    ret.reply_serial = Some(44);
    assert_eq!(f.from_client(&ret, None), FromClient::Forward);
    // Only once, and only to that caller.
    assert!(matches!(f.from_client(&ret, None), FromClient::Drop(_)));
    ret.destination = Some(STRANGER.into());
    assert!(matches!(f.from_client(&ret, None), FromClient::Drop(_)));
}

#[test]
fn serials_kept_for_the_proxy_disconnect() {
    let mut f = connected(EXAMPLE);
    let (h, b) = call(MAX_CLIENT_SERIAL + 1, EXAMPLE, EXAMPLE, "GetInfo", &[]);
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Disconnect(_)
    ));
}

/// The attack: two GetNameOwner calls with one serial, the first
/// for a hidden service's unique name, the second for an allowed name.
#[test]
fn a_reused_outstanding_serial_disconnects() {
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(77, "GetNameOwner", &[EXAMPLE]);
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
    let (h, b) = bus_call(77, "GetNameOwner", &[EXAMPLE]);
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Disconnect(_)
    ));
    // A refused call's serial is outstanding too.
    let (h, b) = bus_call(78, "GetNameOwner", &[STRANGER]);
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Refuse { ping: Some(_), .. }
    ));
    let (h, b) = bus_call(78, "GetNameOwner", &[EXAMPLE]);
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Disconnect(_)
    ));
    // Once answered, a serial may come back (it wraps in long sessions).
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(79, "GetNameOwner", &[EXAMPLE]);
    f.from_client(&h, Some(&b));
    let body = string_body(SERVICE);
    f.from_bus(&reply_to(79, BUS, Some("s"), &body), Some(&body));
    assert_eq!(f.from_client(&h, Some(&b)), FromClient::Forward);
    // And a GetNameOwner reply never makes a name callable: only the
    // bus's answers to the proxy's own calls do.
    let mut f = connected(EXAMPLE);
    let (h, b) = bus_call(80, "GetNameOwner", &[EXAMPLE]);
    f.from_client(&h, Some(&b));
    let body = string_body(STRANGER);
    f.from_bus(&reply_to(80, BUS, Some("s"), &body), Some(&body));
    assert_eq!(f.access(Some(STRANGER)), Access::None);
}

#[test]
fn too_many_outstanding_calls_disconnect() {
    let mut f = connected(EXAMPLE);
    for s in 0..MAX_TRACKED as u32 {
        let (h, b) = call(100 + s, EXAMPLE, EXAMPLE, "GetInfo", &[]);
        if let FromClient::Disconnect(_) = f.from_client(&h, Some(&b)) {
            assert!(s as usize >= MAX_TRACKED - 8, "disconnected after {s}");
            return;
        }
    }
    let (h, b) = call(99_999, EXAMPLE, EXAMPLE, "GetInfo", &[]);
    assert!(matches!(
        f.from_client(&h, Some(&b)),
        FromClient::Disconnect(_)
    ));
}

#[test]
fn unexpected_replies_from_the_bus_are_dropped() {
    let mut f = connected(EXAMPLE);
    let r = reply_to(12345, SERVICE, None, &[]);
    assert!(matches!(f.from_bus(&r, None), FromBus::Drop(_)));
    // A reply is forwarded once.
    let (h, b) = call(10, EXAMPLE, EXAMPLE, "GetInfo", &[]);
    f.from_client(&h, Some(&b));
    let r = reply_to(10, SERVICE, None, &[]);
    assert_eq!(f.from_bus(&r, None), FromBus::Forward);
    assert!(matches!(f.from_bus(&r, None), FromBus::Drop(_)));
}

fn owner_changed(name: &str, old: &str, new: &str) -> (Header, Vec<u8>) {
    let mut h = incoming(MessageType::Signal, BUS, None);
    h.interface = Some(BUS.into());
    h.member = Some("NameOwnerChanged".into());
    h.signature = Some("sss".into());
    let mut body = Vec::new();
    for s in [name, old, new] {
        while body.len() % 4 != 0 {
            body.push(0);
        }
        body.extend_from_slice(&(s.len() as u32).to_le_bytes());
        body.extend_from_slice(s.as_bytes());
        body.push(0);
    }
    h.body_len = body.len();
    (h, body)
}

#[test]
fn name_owner_changed_about_hidden_names_is_dropped() {
    let mut f = connected(EXAMPLE);
    let (h, b) = owner_changed(HIDDEN, "", ":1.20");
    assert!(f.bus_wants_body(&h));
    assert!(matches!(f.from_bus(&h, Some(&b)), FromBus::Drop(_)));
    let (h, b) = owner_changed(":1.20", "", ":1.20");
    assert!(matches!(f.from_bus(&h, Some(&b)), FromBus::Drop(_)));
    // An allowed name changing hands is seen, and its new owner callable.
    let (h, b) = owner_changed(EXAMPLE, SERVICE, ":1.21");
    assert_eq!(f.from_bus(&h, Some(&b)), FromBus::Forward);
    assert_eq!(f.access(Some(":1.21")), Access::Talk);
    let (h, b) = owner_changed(":1.21", ":1.21", "");
    assert_eq!(f.from_bus(&h, Some(&b)), FromBus::Forward);
    assert_eq!(f.access(Some(":1.21")), Access::None);
    // Garbage from the bus is not forwarded.
    let (h, _) = owner_changed(EXAMPLE, "", ":1.22");
    assert!(matches!(f.from_bus(&h, Some(b"xx")), FromBus::Drop(_)));
}

#[test]
fn broadcasts_need_a_sender_with_talk() {
    let mut f = connected(EXAMPLE);
    let s = incoming(MessageType::Signal, STRANGER, None);
    assert!(matches!(f.from_bus(&s, None), FromBus::Drop(_)));
    let s = incoming(MessageType::Signal, SERVICE, None);
    assert_eq!(f.from_bus(&s, None), FromBus::Forward);
    let s = incoming(MessageType::Signal, BUS, None);
    assert_eq!(f.from_bus(&s, None), FromBus::Forward);
    // Found by the dbus_policy fuzz target: no sender is nobody, not the bus.
    let mut s = incoming(MessageType::Signal, BUS, None);
    s.sender = None;
    assert!(matches!(f.from_bus(&s, None), FromBus::Drop(_)));
    // Subtree rules learnt their owners from ListNames.
    let f = connected("org.pantavisor.Sub.*");
    assert_eq!(f.access(Some(":1.5")), Access::Talk);
    assert_eq!(f.access(Some(SERVICE)), Access::None);
}

#[test]
fn unicast_messages_to_the_consumer_pass_and_reveal_their_sender() {
    let mut f = connected(EXAMPLE);
    let s = incoming(MessageType::Signal, STRANGER, Some(ME));
    assert_eq!(f.from_bus(&s, None), FromBus::Forward);
    assert_eq!(f.access(Some(STRANGER)), Access::See);
}

#[test]
fn policy_parsing() {
    assert_eq!(Policy::parse("dbus").unwrap(), None);
    assert_eq!(Policy::parse("").unwrap(), None);
    assert!(Policy::parse("not a name").is_err());
    assert!(Policy::parse("org.freedesktop.DBus").is_err());
    let p = Policy::parse("org.a.*, org.b.C=own").unwrap().unwrap();
    assert!(p.access("org.a") >= Access::Talk);
    assert!(p.access("org.a.X.Y") >= Access::Talk);
    assert_eq!(p.access("org.ab"), Access::None);
    assert_eq!(p.access("org.b.C"), Access::Own);
    assert!(Access::None < Access::See && Access::See < Access::Talk && Access::Talk < Access::Own);
}
