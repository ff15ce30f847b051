//! The D-Bus filter as a state machine: sequences of messages both ways
//! (consumer calls, signals and replies; the bus's replies, signals and
//! calls), driven exactly as the pumps drive `policy::Filter`, against a
//! model of what the consumer may learn. This is where serial tricks live.
//!
//! Input: a policy byte, a flags byte (bit 0: start with `Hello` and let
//! the bus answer it), then records `[tag][payload]`:
//! - `0`, `1`: a raw consumer (0) or bus (1) message, `u16` length then
//!   the bytes (seeds are real captured sessions); tag `0x81`: a raw bus
//!   message whose reply serial is replaced by an outstanding one (a pick
//!   byte comes first), so captured replies answer this run's calls;
//! - `2`: the bus answers every outstanding call of the proxy's own;
//! - `3`..`7`: structured moves (a bus reply to an outstanding serial with
//!   a chosen body, `NameOwnerChanged`, a signal, a peer's call, a
//!   consumer call built from name tables).
//!
//! Invariants checked after every step:
//! - a consumer call or signal forwarded to a unique name goes to the
//!   consumer's own name, or to one the *bus* said owns an allowed name
//!   (in a reply to one of the proxy's own calls, or in `NameOwnerChanged`)
//!   — never to one learnt from anything the consumer could influence;
//! - every reply forwarded (or synthesized) for the consumer answers a call
//!   of the consumer's that is outstanding, and only once;
//! - replies to the proxy's own calls are never forwarded;
//! - broadcasts forwarded come from the bus or a sender with `Talk`;
//! - every synthesized message parses back;
//! - after a `Disconnect` nothing more happens (the connection is gone).
#![no_main]

use std::collections::{HashMap, HashSet};

use libfuzzer_sys::fuzz_target;
use pv_xconnect::link::dbus::policy::{
    Access, Filter, FromBus, FromClient, Policy, BUS, MAX_CLIENT_SERIAL,
};
use pv_xconnect::link::dbus::wire::{self, Header, MessageType};
use pv_xconnect::test_util::dbus::{header, split};

const NAMES: &[&str] = &[
    BUS,
    "org.pantavisor.Example",
    "org.pantavisor.Hidden",
    "org.pantavisor.Sub.A",
    "org.pantavisor.Mine",
    ":1.3",
    ":1.4",
    ":1.5",
    ":1.7",
    ":1.9",
    "",
    "eavesdrop=true",
    "type='signal'",
];
const IFACES: &[&str] = &[
    BUS,
    "org.freedesktop.DBus.Introspectable",
    "org.freedesktop.DBus.Peer",
    "org.freedesktop.DBus.Monitoring",
    "org.freedesktop.DBus.Properties",
    "org.pantavisor.Example",
];
const MEMBERS: &[&str] = &[
    "Hello",
    "AddMatch",
    "RemoveMatch",
    "GetId",
    "ListNames",
    "ListActivatableNames",
    "NameHasOwner",
    "GetNameOwner",
    "GetConnectionUnixUser",
    "GetConnectionCredentials",
    "StartServiceByName",
    "RequestName",
    "ReleaseName",
    "ListQueuedOwners",
    "UpdateActivationEnvironment",
    "BecomeMonitor",
    "Introspect",
    "Ping",
    "GetInfo",
];
const POLICIES: &[&str] = &[
    "org.pantavisor.Example",
    "org.pantavisor.Sub.*",
    "org.pantavisor.Example, org.pantavisor.Mine=own",
];
/// The consumer's unique name, as the bus answers `Hello`.
const ME: &str = ":1.7";

fn name(i: u8) -> &'static str {
    NAMES[i as usize % NAMES.len()]
}

/// A cursor over the input; every read past the end yields zeros.
struct Input<'a> {
    data: &'a [u8],
}

impl Input<'_> {
    fn u8(&mut self) -> u8 {
        let (b, rest) = self.data.split_first().unwrap_or((&0, &[]));
        self.data = rest;
        *b
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }
    fn bytes(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.data.len());
        let (b, rest) = self.data.split_at(n);
        self.data = rest;
        b
    }
}

/// What the harness knows independently of the filter.
#[derive(Default)]
struct Model {
    /// Consumer calls awaiting one reply, by serial.
    outstanding: HashSet<u32>,
    /// The proxy's own calls awaiting a reply, and what they asked for.
    fakes: HashMap<u32, (String, String)>,
    /// Unique names the bus said own an allowed name.
    owners: HashSet<String>,
    recent: Vec<u32>,
    /// The first Hello's serial, and the name the bus answered it with.
    hello: Option<u32>,
    own: Option<String>,
    /// Calls the consumer received: (caller, serial).
    received: Vec<(String, u32)>,
    next_bus_serial: u32,
}

fn strings_body(items: &[&str]) -> Vec<u8> {
    let mut b = Vec::new();
    for s in items {
        while !b.len().is_multiple_of(4) {
            b.push(0);
        }
        b.extend_from_slice(&(s.len() as u32).to_le_bytes());
        b.extend_from_slice(s.as_bytes());
        b.push(0);
    }
    b
}

struct Harness {
    f: Filter,
    m: Model,
    policy: Policy,
}

impl Harness {
    fn record_fakes(&mut self, calls: &[Vec<u8>]) {
        for c in calls {
            let (h, body) = split(c);
            assert!(
                h.serial > MAX_CLIENT_SERIAL,
                "the proxy's calls use its own serials"
            );
            let arg = wire::first_string_arg(&body, &h).unwrap_or_default();
            self.m
                .fakes
                .insert(h.serial, (h.member.clone().unwrap_or_default(), arg));
        }
    }

    /// Run one consumer message through the filter; false on disconnect.
    fn client(&mut self, h: &Header, body: &[u8]) -> bool {
        let body = Filter::client_wants_body(h).then_some(body);
        let dest_access = self.f.access(h.destination.as_deref());
        match self.f.from_client(h, body) {
            FromClient::Disconnect(_) => return false,
            FromClient::ForwardHello(calls) => {
                assert!(
                    self.m.hello.is_none(),
                    "a second Hello started the proxy's calls again"
                );
                self.m.hello = Some(h.serial);
                self.record_fakes(&calls);
            }
            FromClient::Forward
                if matches!(h.kind, MessageType::MethodCall | MessageType::Signal) =>
            {
                if let Some(d) = h.destination.as_deref().filter(|d| d.starts_with(':')) {
                    assert!(
                        self.m.own.as_deref() == Some(d) || self.m.owners.contains(d),
                        "forwarded to {d}, which the bus never said owns an allowed name"
                    );
                }
                if h.kind == MessageType::MethodCall && h.destination.as_deref() != Some(BUS) {
                    assert!(dest_access >= Access::Talk);
                }
            }
            _ => {}
        }
        true
    }

    fn expect_reply(&mut self, h: &Header) {
        if h.kind == MessageType::MethodCall && h.expects_reply() {
            assert!(
                self.m.outstanding.insert(h.serial),
                "a second outstanding call with serial {} was let through",
                h.serial
            );
        }
    }

    fn bus(&mut self, h: &Header, body: &[u8]) {
        let wants = self.f.bus_wants_body(h);
        let verdict = self.f.from_bus(h, wants.then_some(body));
        let fake = h.reply_serial.and_then(|r| self.m.fakes.remove(&r));
        match &verdict {
            FromBus::Learnt(calls) => {
                assert!(
                    fake.is_some(),
                    "a consumer's reply was swallowed as the proxy's"
                );
                let calls = calls.clone();
                self.record_fakes(&calls);
            }
            FromBus::Forward | FromBus::Replace(_) => {
                assert!(
                    fake.is_none(),
                    "a reply to the proxy's own call reached the consumer"
                );
                let reply_to = match &verdict {
                    FromBus::Replace(m) => {
                        let (rh, _) = split(m);
                        assert_eq!(rh.reply_serial, h.reply_serial);
                        rh.reply_serial
                    }
                    _ => h.reply_serial,
                };
                if let Some(r) = reply_to {
                    assert!(
                        self.m.outstanding.remove(&r),
                        "reply to {r}, which the consumer is not waiting for"
                    );
                }
                if h.kind == MessageType::Signal && h.destination.is_none() {
                    let s = h.sender.as_deref().unwrap_or_default();
                    let noc = h.member.as_deref() == Some("NameOwnerChanged");
                    let allowed = !s.starts_with(':') && self.policy.access(s) >= Access::Talk;
                    assert!(
                        s == BUS
                            || allowed
                            || self.m.own.as_deref() == Some(s)
                            || self.m.owners.contains(s)
                            || noc,
                        "broadcast from {s} forwarded"
                    );
                }
            }
            FromBus::Drop(_) => {
                if let Some(r) = h.reply_serial {
                    assert!(fake.is_none());
                    // A dropped reply must not have been awaited by the
                    // consumer, or it would hang.
                    assert!(
                        !self.m.outstanding.contains(&r),
                        "awaited reply {r} dropped"
                    );
                }
            }
        }
        // What the bus said, the model learns.
        if h.reply_serial.is_some()
            && h.reply_serial == self.m.hello
            && h.kind == MessageType::MethodReturn
        {
            self.m.own = wire::first_string_arg(body, h).filter(|_| wants);
            self.m.hello = Some(0);
        }
        if let Some((member, arg)) = fake {
            if member == "GetNameOwner" && h.kind == MessageType::MethodReturn {
                if let Some(owner) = wire::first_string_arg(body, h).filter(|_| wants) {
                    if self.policy.access(&arg) > Access::None {
                        self.m.owners.insert(owner);
                    }
                }
            }
        }
        if h.member.as_deref() == Some("NameOwnerChanged") && h.sender.as_deref() == Some(BUS) {
            if let Some(args) = wire::string_args(body, h) {
                if args.len() == 3
                    && self.policy.access(&args[0]) > Access::None
                    && !args[2].is_empty()
                {
                    self.m.owners.insert(args[2].clone());
                }
            }
        }
    }
}

/// Owners the bus reports when the harness answers the proxy's calls.
const OWNERS: &[(&str, &str)] = &[
    ("org.pantavisor.Example", ":1.3"),
    ("org.pantavisor.Hidden", ":1.4"),
    ("org.pantavisor.Sub.A", ":1.5"),
];

fuzz_target!(|data: &[u8]| {
    let mut input = Input { data };
    let policy = Policy::parse(POLICIES[input.u8() as usize % POLICIES.len()])
        .expect("policy")
        .expect("filtered");
    let flags = input.u8();
    let mut hs = Harness {
        f: Filter::new(policy.clone()),
        m: Model {
            next_bus_serial: 1000,
            ..Model::default()
        },
        policy,
    };
    if flags & 1 != 0 {
        let m = wire::method_call(1, 0, BUS, "/", BUS, "Hello", &[]);
        let (h, body) = split(&m);
        assert!(hs.client(&h, &body));
        assert!(
            hs.m.hello == Some(1),
            "Hello did not start the proxy's calls"
        );
        hs.expect_reply(&h);
        let mut r = header(MessageType::MethodReturn, BUS, Some(ME), 999);
        r.reply_serial = Some(1);
        r.signature = Some("s".into());
        let body = strings_body(&[ME]);
        r.body_len = body.len();
        hs.bus(&r, &body);
        hs.answer_fakes();
    }
    while !input.data.is_empty() {
        hs.m.next_bus_serial += 1;
        let bus_serial = hs.m.next_bus_serial;
        let tag = input.u8();
        match tag & 0x7f {
            0 | 1 => {
                let pick = if tag & 0x80 != 0 {
                    Some(input.u8())
                } else {
                    None
                };
                let n = input.u16() as usize;
                let bytes = input.bytes(n).to_vec();
                let Ok(mut h) = wire::parse(&bytes) else {
                    continue;
                };
                let body = bytes[h.body_offset..].to_vec();
                if tag & 0x7f == 0 {
                    if hs.f.holding() {
                        continue; // the pump holds consumer messages meanwhile
                    }
                    let outstanding_before = hs.m.outstanding.contains(&h.serial);
                    if !hs.client(&h, &body) {
                        return;
                    }
                    assert!(
                        !(outstanding_before
                            && h.kind == MessageType::MethodCall
                            && h.expects_reply()),
                        "serial {} reused and not disconnected",
                        h.serial
                    );
                    hs.expect_reply(&h);
                    hs.m.recent.push(h.serial);
                } else {
                    if let (Some(p), Some(_)) = (pick, h.reply_serial) {
                        match hs.pending(p) {
                            Some(r) => h.reply_serial = Some(r),
                            None => continue,
                        }
                    }
                    hs.bus(&h, &body);
                }
            }
            2 => hs.answer_fakes(),
            3 => {
                let (pick, sender, kind, arg) = (input.u8(), input.u8(), input.u8(), input.u8());
                let Some(r) = hs.pending(pick) else {
                    continue;
                };
                let error = kind & 1 != 0;
                let mt = if error {
                    MessageType::Error
                } else {
                    MessageType::MethodReturn
                };
                let mut h = header(mt, name(sender), Some(ME), bus_serial);
                h.reply_serial = Some(r);
                let b = match kind >> 1 & 3 {
                    0 => Vec::new(),
                    1 => {
                        h.signature = Some("s".into());
                        strings_body(&[name(arg)])
                    }
                    2 => {
                        h.signature = Some("as".into());
                        let names: Vec<&str> = (0..arg % 8)
                            .map(|i| name(arg.wrapping_add(i * 3)))
                            .collect();
                        wire::string_array_body(&names)
                    }
                    _ => {
                        h.signature = Some("as".into());
                        input.bytes(arg as usize).to_vec()
                    }
                };
                h.body_len = b.len();
                hs.bus(&h, &b);
            }
            4 => {
                let (n, old, new) = (input.u8(), input.u8(), input.u8());
                let mut h = header(MessageType::Signal, BUS, None, bus_serial);
                h.interface = Some(BUS.into());
                h.member = Some("NameOwnerChanged".into());
                h.signature = Some("sss".into());
                let b = strings_body(&[name(n), name(old), name(new)]);
                h.body_len = b.len();
                hs.bus(&h, &b);
            }
            5 => {
                let (sender, unicast) = (input.u8(), input.u8() & 1 != 0);
                let h = header(
                    MessageType::Signal,
                    name(sender),
                    unicast.then_some(ME),
                    bus_serial,
                );
                hs.bus(&h, &[]);
            }
            6 => {
                let (sender, serial, no_reply) = (input.u8(), input.u32(), input.u8() & 1 != 0);
                let mut h = header(MessageType::MethodCall, name(sender), Some(ME), serial);
                if no_reply {
                    h.flags = wire::NO_REPLY_EXPECTED;
                } else if name(sender).starts_with(':') {
                    hs.m.received.push((name(sender).to_owned(), h.serial));
                }
                hs.bus(&h, &[]);
            }
            7 => {
                if hs.f.holding() {
                    continue;
                }
                let sel = input.u8();
                let serial = match sel & 3 {
                    0 => u32::from(input.u8()).max(1),
                    1 => input.u32().max(1),
                    _ => {
                        let i = input.u8() as usize;
                        hs.m.recent
                            .get(i % hs.m.recent.len().max(1))
                            .copied()
                            .unwrap_or(1)
                    }
                };
                let (flags, dest, iface, member, arg) =
                    (input.u8(), input.u8(), input.u8(), input.u8(), input.u8());
                let member = MEMBERS[member as usize % MEMBERS.len()];
                let iface = IFACES[iface as usize % IFACES.len()];
                let m = wire::method_call(
                    serial,
                    flags & 3,
                    name(dest),
                    "/",
                    iface,
                    member,
                    &[name(arg)],
                );
                let (mut h, body) = split(&m);
                if sel & 4 != 0 {
                    h.interface = None;
                }
                if sel & 8 != 0 {
                    h.destination = None;
                }
                let outstanding_before = hs.m.outstanding.contains(&serial);
                if !hs.client(&h, &body) {
                    return;
                }
                assert!(
                    !outstanding_before || !h.expects_reply(),
                    "serial {serial} reused and not disconnected"
                );
                hs.expect_reply(&h);
                hs.m.recent.push(serial);
            }
            8 => {
                // A consumer reply to a call it received (or anyone).
                let (to, raw) = (input.u8(), input.u8());
                let (dest, rs) = match hs.m.received.get(to as usize % hs.m.received.len().max(1)) {
                    Some((c, s)) if raw & 1 == 0 => (c.clone(), *s),
                    _ => (name(to).to_owned(), u32::from(raw).max(1)),
                };
                let kind = if raw & 2 != 0 {
                    MessageType::Error
                } else {
                    MessageType::MethodReturn
                };
                let mut h = header(kind, ME, Some(&dest), u32::from(to).max(1));
                h.sender = None;
                h.reply_serial = Some(rs);
                if !hs.client(&h, &[]) {
                    return;
                }
            }
            _ => {}
        }
    }
});

impl Harness {
    /// The `pick`th outstanding serial (the consumer's or the proxy's).
    fn pending(&self, pick: u8) -> Option<u32> {
        let mut p: Vec<u32> = self
            .m
            .outstanding
            .iter()
            .chain(self.m.fakes.keys())
            .copied()
            .collect();
        p.sort_unstable();
        (!p.is_empty()).then(|| p[pick as usize % p.len()])
    }

    /// Answer the proxy's own calls as a bus would.
    fn answer_fakes(&mut self) {
        // ListNames answers ask for more owners: a few rounds.
        for _ in 0..4 {
            if self.m.fakes.is_empty() {
                break;
            }
            self.answer_fakes_once();
        }
    }

    fn answer_fakes_once(&mut self) {
        let mut fakes: Vec<(u32, (String, String))> =
            self.m.fakes.iter().map(|(k, v)| (*k, v.clone())).collect();
        fakes.sort();
        for (serial, (member, arg)) in fakes {
            self.m.next_bus_serial += 1;
            let mut h = header(
                MessageType::MethodReturn,
                BUS,
                Some(ME),
                self.m.next_bus_serial,
            );
            h.reply_serial = Some(serial);
            let body = match member.as_str() {
                "GetNameOwner" => match OWNERS.iter().find(|(n, _)| *n == arg) {
                    Some((_, o)) => {
                        h.signature = Some("s".into());
                        strings_body(&[o])
                    }
                    None => {
                        h.kind = MessageType::Error;
                        h.error_name = Some("org.freedesktop.DBus.Error.NameHasNoOwner".into());
                        Vec::new()
                    }
                },
                "ListNames" => {
                    h.signature = Some("as".into());
                    wire::string_array_body(&[
                        BUS,
                        "org.pantavisor.Example",
                        "org.pantavisor.Sub.A",
                        ":1.3",
                        ":1.5",
                    ])
                }
                _ => Vec::new(),
            };
            h.body_len = body.len();
            self.bus(&h, &body);
        }
    }
}
