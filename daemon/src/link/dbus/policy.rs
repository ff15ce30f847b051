//! The D-Bus filter: which names a consumer may see and talk to, and what
//! happens to every message in both directions. Pure and synchronous: the
//! pumps in [`super`] feed it headers (and a bounded body where a row below
//! needs one) and execute its verdicts; the stateful fuzz target drives it
//! the same way.
//!
//! # Visibility (xdg-dbus-proxy's model)
//!
//! Access levels are ordered, each including the ones before it:
//! `None < See < Talk < Own`. A link's `interface` grants well-known names
//! `Talk` (`org.a.B`, `org.a.*`: `org.a` and every name below it) or `Own`
//! (suffix `=own`). A unique name (`:1.42`) gets the highest access of the
//! names it owns or owned (learnt from `GetNameOwner`, `ListNames` and
//! `NameOwnerChanged` the proxy asks for itself right after `Hello`, like
//! xdg-dbus-proxy); the consumer's own unique name gets `Talk`; a peer
//! that sent the consumer a message gets `See` (so a service can track its
//! callers). The bus driver (`org.freedesktop.DBus`) is `Talk`. A name is
//! *visible* with `See` or more, *hidden* otherwise; a hidden name is
//! answered exactly as if it had no owner.
//!
//! # Consumer → bus
//!
//! | consumer sends                                          | verdict | xdg-dbus-proxy `--filter` |
//! |---------------------------------------------------------|---------|---------------------------|
//! | call or signal to a name with `Talk`                    | forward | same |
//! | call to a visible name without `Talk`                   | `AccessDenied` | same |
//! | call to a hidden name                                   | `NameHasNoOwner` (unique name or `NO_AUTO_START`), else `ServiceUnknown` | same |
//! | unicast signal to a name without `Talk`                 | dropped | same |
//! | broadcast signal (no destination)                       | forward | same |
//! | method call without destination                         | `AccessDenied` | forwarded (dbus-daemon answers it as a peer) |
//! | bus `Hello`, `RemoveMatch`, `GetId`                     | forward | same |
//! | bus `AddMatch`                                          | forward; `AccessDenied` if it says `eavesdrop=` | same |
//! | bus `ListNames`, `ListActivatableNames`                 | forward, reply filtered to visible names | same |
//! | bus `NameHasOwner(n)`                                   | forward if `n` visible, else `false` | same |
//! | bus `GetNameOwner(n)`                                   | forward if `n` visible, else `NameHasNoOwner` | same |
//! | bus `GetConnectionUnixUser`, `GetConnectionUnixProcessID`, `GetConnectionCredentials`, `GetAdtAuditSessionData`, `GetConnectionSELinuxSecurityContext` (n) | forward if `n` visible, else `NameHasNoOwner` | forward if visible, else `ServiceUnknown` |
//! | bus `StartServiceByName(n)`                             | forward with `Talk`; `AccessDenied` if only visible; else `ServiceUnknown` | same |
//! | bus `RequestName`, `ReleaseName`, `ListQueuedOwners` (n) | forward with `Own`, else `AccessDenied` | `AccessDenied` if visible, else `ServiceUnknown` |
//! | bus `UpdateActivationEnvironment`, `BecomeMonitor`, any other driver method or interface (`Peer`, `Properties`, `Monitoring`, `Debug.Stats`, none) but `Introspectable` | `AccessDenied` | same |
//! | bus `Introspectable.Introspect`                         | forward | same |
//! | reply to a call the consumer received                   | forward | same |
//! | any other reply                                         | dropped | same |
//! | serial above [`MAX_CLIENT_SERIAL`] (kept for the proxy's own calls) | disconnect | 0.1.7 the same; Debian's 0.1.4 forwards (it checks increasing serials instead) |
//! | call expecting a reply whose serial is still outstanding | disconnect | Debian's 0.1.4 disconnects on any non-increasing serial; 0.1.7 overwrites the expectation |
//! | more than [`MAX_TRACKED`] calls outstanding             | disconnect | no bound |
//!
//! A refused call that expects a reply is replaced by an
//! `org.freedesktop.DBus.Peer.Ping` to the bus with the same serial, and the
//! bus's answer is replaced by the refusal: replies keep the bus's order
//! and serials, and only the consumer-to-bus direction ever writes to the
//! bus (xdg-dbus-proxy's round trip). Calls refused without a reply
//! expected are dropped. Refusals carry the bus's own error names (and, for
//! hidden names, the bus's own text), so a hidden name and an absent one
//! look the same.
//!
//! # Bus → consumer
//!
//! | the bus delivers                                     | verdict | xdg-dbus-proxy |
//! |------------------------------------------------------|---------|----------------|
//! | reply to an outstanding consumer call                | forward (`ListNames` filtered; a stand-in `Ping` answered with the refusal) | same |
//! | reply to one of the proxy's own calls                | learnt, never forwarded | same |
//! | any other reply                                      | dropped | same |
//! | `NameOwnerChanged` about a hidden name               | dropped | same |
//! | broadcast signal from a sender without `Talk`        | dropped | same |
//! | broadcast signal without a sender (a bus never sends one) | dropped | forwarded as the bus's |
//! | call or unicast signal to the consumer               | forward; the sender becomes `See` | same |
//!
//! Every row is a unit test (`policy/tests.rs`); the rows a client can
//! observe are also run side by side with Debian's xdg-dbus-proxy 0.1.4 on
//! one dbus-daemon (`e2e/tests/dbus_parity.rs`).
//!
//! Differences from xdg-dbus-proxy, and why: hidden names answer
//! `NameHasNoOwner` for the `GetConnection*` family, as the bus does for an
//! absent name (xdg-dbus-proxy says `ServiceUnknown`, which no bus says
//! there); `RequestName` and friends answer `AccessDenied` for every name
//! without `Own` (a free name cannot be told from a hidden one by it
//! anyway); a method call without destination is refused (the link grants
//! names, and such a call names none); a reused outstanding serial
//! disconnects; bookkeeping is bounded ([`MAX_TRACKED`]) and a unique name's
//! knowledge is dropped when it leaves the bus (xdg-dbus-proxy keeps it
//! forever); a sender-less broadcast is dropped, not taken for the bus's.
//! The role masquerade (every connection carries the role's uid)
//! is ours alone: xdg-dbus-proxy connects with its own credentials.

use std::collections::{HashMap, HashSet};

use super::wire::{self, Header, MessageType};

/// The bus driver's own name and interface.
pub const BUS: &str = "org.freedesktop.DBus";
const INTROSPECTABLE: &str = "org.freedesktop.DBus.Introspectable";
const PEER: &str = "org.freedesktop.DBus.Peer";

pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";
pub const NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
pub const SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
const LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";

/// Client serials above this are the proxy's own (xdg-dbus-proxy's split).
pub const MAX_CLIENT_SERIAL: u32 = u32::MAX - 65536;

/// Bound on each piece of bookkeeping kept per connection. Outstanding
/// calls beyond it disconnect the consumer; the other tables are cleared,
/// which can only hide more.
pub const MAX_TRACKED: usize = 4096;

/// Ordered access levels: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    None,
    /// Listed, and its owner and credentials may be asked for.
    See,
    /// May receive calls and signals; its broadcasts are delivered.
    Talk,
    /// May also be requested (`RequestName`).
    Own,
}

/// A bus-name pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    Exact(String),
    /// `org.foo.*`: `org.foo` itself and anything below it.
    Subtree(String),
}

impl Pattern {
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Pattern::Exact(n) => n == name,
            Pattern::Subtree(p) => {
                name == p || (name.starts_with(p.as_str()) && name[p.len()..].starts_with('.'))
            }
        }
    }
}

/// One rule: a pattern and the access it grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub pattern: Pattern,
    pub access: Access,
}

/// A link's filter; absent (`None` from [`Policy::parse`]) means no filtering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub rules: Vec<Rule>,
}

/// The `interface` string is not a list of bus names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid dbus interface filter entry {0:?}")]
pub struct PolicyError(pub String);

impl Policy {
    /// Parse a link's `interface`. `""` and `"dbus"` mean no filtering.
    pub fn parse(interface: &str) -> Result<Option<Policy>, PolicyError> {
        let interface = interface.trim();
        if interface.is_empty() || interface == "dbus" {
            return Ok(None);
        }
        let mut rules = Vec::new();
        for entry in interface
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            let (name, access) = match entry.strip_suffix("=own") {
                Some(n) => (n, Access::Own),
                None => (entry, Access::Talk),
            };
            let pattern = match name.strip_suffix(".*") {
                Some(p) => Pattern::Subtree(p.to_owned()),
                None => Pattern::Exact(name.to_owned()),
            };
            let base = match &pattern {
                Pattern::Exact(n) | Pattern::Subtree(n) => n,
            };
            if !is_well_known_name(base) || base == BUS {
                return Err(PolicyError(entry.to_owned()));
            }
            rules.push(Rule { pattern, access });
        }
        if rules.is_empty() {
            return Err(PolicyError(interface.to_owned()));
        }
        Ok(Some(Policy { rules }))
    }

    /// The highest access any rule grants the well-known `name`.
    pub fn access(&self, name: &str) -> Access {
        if name == BUS {
            return Access::Talk;
        }
        self.rules
            .iter()
            .filter(|r| r.pattern.matches(name))
            .map(|r| r.access)
            .max()
            .unwrap_or(Access::None)
    }
}

/// Bus-name syntax of the specification (well-known names only).
fn is_well_known_name(n: &str) -> bool {
    n.len() <= 255
        && n.split('.').count() >= 2
        && n.split('.').all(|e| {
            !e.is_empty()
                && !e.as_bytes()[0].is_ascii_digit()
                && e.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
}

/// Matches any `eavesdrop=`, with blanks before the `=` (xdg-dbus-proxy's
/// `is_eavesdrop`): whatever its value, the rule is refused.
pub fn is_eavesdrop(rule: &str) -> bool {
    rule.match_indices("eavesdrop").any(|(i, m)| {
        rule[i + m.len()..]
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('=')
    })
}

/// What the proxy answers in place of the bus for a refused call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Error {
        name: &'static str,
        text: String,
    },
    /// `NameHasOwner` of a hidden name: `false`.
    False,
}

/// Why a reply is awaited, by serial (consumer calls and the proxy's own).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Normal,
    Hello,
    ListNames,
    /// A stand-in `Ping`: answer with this instead.
    Refused(Refusal),
    /// The proxy's own calls.
    OwnerOf(String),
    AllNames,
    Match,
}

/// The verdict on a consumer message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromClient {
    Forward,
    /// Forward (the first `Hello`), then send these calls of the proxy's
    /// own and hold further consumer messages until [`Filter::holding`]
    /// turns false.
    ForwardHello(Vec<Vec<u8>>),
    /// Refused: send `ping` (the stand-in, when a reply is expected)
    /// instead. `why` is for the log.
    Refuse {
        ping: Option<Vec<u8>>,
        why: String,
    },
    /// Not forwarded, nothing to answer (a reply nobody asked for).
    Drop(String),
    /// The consumer broke the protocol in a way replies could not be
    /// attributed after: close its connection.
    Disconnect(String),
}

/// The verdict on a bus message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromBus {
    Forward,
    /// Send this to the consumer instead (a filtered `ListNames`, a
    /// refusal).
    Replace(Vec<u8>),
    Drop(&'static str),
    /// A reply to the proxy's own call: not forwarded; send these further
    /// calls to the bus (owners of the names `ListNames` found).
    Learnt(Vec<Vec<u8>>),
}

/// One filtered connection's state.
#[derive(Debug)]
pub struct Filter {
    policy: Policy,
    own_name: Option<String>,
    /// `See` granted to peers that sent the consumer something.
    seen: HashSet<String>,
    /// Unique name → allowed well-known names it owns or owned.
    owned: HashMap<String, Vec<String>>,
    expected: HashMap<u32, Expect>,
    /// Calls the consumer received and may answer: (caller, serial).
    to_answer: HashSet<(String, u32)>,
    hello_seen: bool,
    next_fake: u32,
    /// The proxy's own calls after `Hello` not answered yet.
    fakes_outstanding: usize,
}

impl Filter {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            own_name: None,
            seen: HashSet::new(),
            owned: HashMap::new(),
            expected: HashMap::new(),
            to_answer: HashSet::new(),
            hello_seen: false,
            next_fake: MAX_CLIENT_SERIAL,
            fakes_outstanding: 0,
        }
    }

    /// The consumer's unique name, once the bus answered its `Hello`.
    pub fn own_name(&self) -> Option<&str> {
        self.own_name.as_deref()
    }

    /// True while the proxy's own calls after `Hello` are unanswered:
    /// consumer messages wait, so every decision sees the owners of the
    /// allowed names.
    pub fn holding(&self) -> bool {
        self.fakes_outstanding > 0
    }

    /// The access `name` has (`None`: the bus driver, for messages
    /// without destination or sender).
    pub fn access(&self, name: Option<&str>) -> Access {
        let Some(name) = name else {
            return Access::Talk;
        };
        if !name.starts_with(':') {
            return self.policy.access(name);
        }
        let mut a = Access::None;
        if self.own_name.as_deref() == Some(name) {
            a = Access::Talk;
        } else if self.seen.contains(name) {
            a = Access::See;
        }
        if let Some(names) = self.owned.get(name) {
            for n in names {
                a = a.max(self.policy.access(n));
            }
        }
        a
    }

    /// Whether [`Filter::from_client`] needs this message's body (bounded
    /// by the caller): calls to the bus driver, which carry the name the
    /// verdict depends on.
    pub fn client_wants_body(h: &Header) -> bool {
        h.kind == MessageType::MethodCall
            && h.destination.as_deref() == Some(BUS)
            && h.interface.as_deref() == Some(BUS)
    }

    /// Judge a consumer message. `body` is its body when
    /// [`Filter::client_wants_body`] and it fit the bound, else `None`.
    pub fn from_client(&mut self, h: &Header, body: Option<&[u8]>) -> FromClient {
        if h.serial > MAX_CLIENT_SERIAL {
            return FromClient::Disconnect(format!(
                "serial {} is above {MAX_CLIENT_SERIAL}, kept for the proxy",
                h.serial
            ));
        }
        match h.kind {
            MessageType::MethodReturn | MessageType::Error => {
                let key = (
                    h.destination.clone().unwrap_or_default(),
                    h.reply_serial.unwrap_or(0),
                );
                if self.to_answer.remove(&key) {
                    FromClient::Forward
                } else {
                    FromClient::Drop(format!("reply to a call never received from {}", key.0))
                }
            }
            MessageType::Signal => match h.destination.as_deref() {
                None => FromClient::Forward,
                Some(d) if self.access(Some(d)) >= Access::Talk => FromClient::Forward,
                Some(d) => FromClient::Refuse {
                    ping: None,
                    why: format!("signal to {d}"),
                },
            },
            MessageType::MethodCall => {
                if h.expects_reply() {
                    if self.expected.contains_key(&h.serial) {
                        return FromClient::Disconnect(format!(
                            "serial {} reused while its call is outstanding",
                            h.serial
                        ));
                    }
                    if self.expected.len() >= MAX_TRACKED {
                        return FromClient::Disconnect(format!(
                            "more than {MAX_TRACKED} calls outstanding"
                        ));
                    }
                }
                let verdict = match h.destination.as_deref() {
                    None => Err((
                        denied("method call without destination"),
                        "no destination".into(),
                    )),
                    Some(BUS) => self.bus_call(h, body),
                    Some(d) => match self.access(Some(d)) {
                        Access::Talk | Access::Own => Ok(Expect::Normal),
                        Access::See => {
                            Err((denied(&format!("{d} may not be called")), d.to_owned()))
                        }
                        Access::None => Err((hidden(h, d), format!("{d} is hidden"))),
                    },
                };
                match verdict {
                    Ok(mut expect) => {
                        // Only the first Hello's reply names the consumer
                        // (the bus refuses any later one anyway).
                        let hello = expect == Expect::Hello && !self.hello_seen;
                        if expect == Expect::Hello && !hello {
                            expect = Expect::Normal;
                        }
                        if h.expects_reply() {
                            self.expected.insert(h.serial, expect);
                        }
                        if hello {
                            self.hello_seen = true;
                            return FromClient::ForwardHello(self.initial_calls());
                        }
                        FromClient::Forward
                    }
                    Err((refusal, why)) => {
                        let ping = h.expects_reply().then(|| {
                            self.expected.insert(h.serial, Expect::Refused(refusal));
                            wire::method_call(h.serial, h.flags, BUS, "/", PEER, "Ping", &[])
                        });
                        FromClient::Refuse { ping, why }
                    }
                }
            }
        }
    }

    /// A call to the bus driver: what to expect, or the refusal and why.
    fn bus_call(&self, h: &Header, body: Option<&[u8]>) -> Result<Expect, (Refusal, String)> {
        let member = h.member.as_deref().unwrap_or_default();
        match h.interface.as_deref() {
            Some(INTROSPECTABLE) => return Ok(Expect::Normal),
            Some(BUS) => {}
            other => {
                let what = format!("bus interface {}", other.unwrap_or("(none)"));
                return Err((denied(&what), what));
            }
        }
        let arg0 = body.and_then(|b| wire::first_string_arg(b, h));
        let name = arg0.as_deref().unwrap_or_default();
        let access = arg0
            .as_deref()
            .map_or(Access::None, |n| self.access(Some(n)));
        let why = |what: &str| format!("{member}({name}): {what}");
        match member {
            "Hello" => Ok(Expect::Hello),
            "RemoveMatch" | "GetId" => Ok(Expect::Normal),
            "AddMatch" if is_eavesdrop(name) => {
                Err((denied("eavesdropping"), why("eavesdropping")))
            }
            "AddMatch" => Ok(Expect::Normal),
            "ListNames" | "ListActivatableNames" => Ok(Expect::ListNames),
            "NameHasOwner" if access >= Access::See => Ok(Expect::Normal),
            "NameHasOwner" => Err((Refusal::False, why("hidden"))),
            "GetNameOwner" if access >= Access::See => Ok(Expect::Normal),
            "GetNameOwner" => Err((
                no_owner(format!(
                    "Could not get owner of name '{name}': no such name"
                )),
                why("hidden"),
            )),
            "GetConnectionUnixUser"
            | "GetConnectionUnixProcessID"
            | "GetConnectionCredentials"
            | "GetAdtAuditSessionData"
            | "GetConnectionSELinuxSecurityContext" => {
                if access >= Access::See {
                    Ok(Expect::Normal)
                } else {
                    Err((
                        no_owner(format!("The connection \"{name}\" does not exist")),
                        why("hidden"),
                    ))
                }
            }
            "StartServiceByName" => match access {
                Access::Talk | Access::Own => Ok(Expect::Normal),
                Access::See => Err((denied(&why("not callable")), why("not callable"))),
                Access::None => Err((
                    Refusal::Error {
                        name: SERVICE_UNKNOWN,
                        text: format!("The name {name} was not provided by any .service files"),
                    },
                    why("hidden"),
                )),
            },
            "RequestName" | "ReleaseName" | "ListQueuedOwners" if access >= Access::Own => {
                Ok(Expect::Normal)
            }
            "RequestName" | "ReleaseName" | "ListQueuedOwners" => Err((
                denied(&why("this link may not own it")),
                why("this link may not own it"),
            )),
            _ => Err((
                denied(&format!("bus method {member}")),
                format!("bus method {member}"),
            )),
        }
    }

    /// The proxy's own calls after `Hello`: watch every allowed name's
    /// owner, ask for the current owners (all names, for subtree rules).
    fn initial_calls(&mut self) -> Vec<Vec<u8>> {
        let mut calls = Vec::new();
        let mut subtree = false;
        let rules = self.policy.rules.clone();
        for r in &rules {
            let rule = match &r.pattern {
                Pattern::Exact(n) => format!("{NOC},arg0='{n}'"),
                Pattern::Subtree(n) => {
                    subtree = true;
                    format!("{NOC},arg0namespace='{n}'")
                }
            };
            calls.extend(self.fake("AddMatch", &rule, Expect::Match));
            if let Pattern::Exact(n) = &r.pattern {
                calls.extend(self.fake("GetNameOwner", n, Expect::OwnerOf(n.clone())));
            }
        }
        if subtree {
            calls.extend(self.fake("ListNames", "", Expect::AllNames));
        }
        calls
    }

    /// One call of the proxy's own to the bus driver (`arg` empty: none).
    fn fake(&mut self, member: &str, arg: &str, expect: Expect) -> Option<Vec<u8>> {
        // Serials above MAX_CLIENT_SERIAL are ours; once spent, knowledge
        // simply stops growing (stricter, never looser).
        self.next_fake = self.next_fake.checked_add(1)?;
        self.expected.insert(self.next_fake, expect);
        self.fakes_outstanding += 1;
        let args: &[&str] = if arg.is_empty() { &[] } else { &[arg] };
        Some(wire::method_call(
            self.next_fake,
            0,
            BUS,
            "/org/freedesktop/DBus",
            BUS,
            member,
            args,
        ))
    }

    /// Whether [`Filter::from_bus`] needs this message's body: replies it
    /// learns from or rewrites, and `NameOwnerChanged`.
    pub fn bus_wants_body(&self, h: &Header) -> bool {
        match h.reply_serial {
            Some(r) if h.kind == MessageType::MethodReturn => matches!(
                self.expected.get(&r),
                Some(Expect::Hello | Expect::ListNames | Expect::OwnerOf(_) | Expect::AllNames)
            ),
            Some(_) => false,
            None => is_name_owner_changed(h),
        }
    }

    /// Judge a bus message. `body` is its body when
    /// [`Filter::bus_wants_body`] and it fit the bound, else `None`.
    pub fn from_bus(&mut self, h: &Header, body: Option<&[u8]>) -> FromBus {
        if let Some(r) = h.reply_serial {
            return self.reply_from_bus(h, r, body);
        }
        if is_name_owner_changed(h) {
            let Some(args) = body.and_then(|b| wire::string_args(b, h)) else {
                return FromBus::Drop("NameOwnerChanged that does not decode");
            };
            let [name, _old, new] = &args[..] else {
                return FromBus::Drop("NameOwnerChanged that does not decode");
            };
            if self.access(Some(name)) < Access::See {
                return FromBus::Drop("NameOwnerChanged about a hidden name");
            }
            if !name.starts_with(':') && !new.is_empty() {
                self.learn_owner(new, name);
            }
            if name.starts_with(':') && new.is_empty() {
                // A unique name is never reused: forget it.
                self.owned.remove(name);
                self.seen.remove(name);
                self.to_answer.retain(|(caller, _)| caller != name);
            }
            return FromBus::Forward;
        }
        if h.kind == MessageType::Signal && h.destination.is_none() {
            // dbus-daemon stamps a sender on everything it routes, so a
            // sender-less broadcast cannot be the bus's: nobody vouches
            // for it (xdg-dbus-proxy would take it for the bus's own).
            let Some(sender) = h.sender.as_deref() else {
                return FromBus::Drop("broadcast without a sender");
            };
            if self.access(Some(sender)) < Access::Talk {
                return FromBus::Drop("broadcast from a sender without Talk");
            }
            return FromBus::Forward;
        }
        if let Some(s) = h.sender.as_deref().filter(|s| s.starts_with(':')) {
            if self.seen.len() >= MAX_TRACKED {
                self.seen.clear();
            }
            self.seen.insert(s.to_owned());
            if h.expects_reply() {
                if self.to_answer.len() >= MAX_TRACKED {
                    self.to_answer.clear();
                }
                self.to_answer.insert((s.to_owned(), h.serial));
            }
        }
        FromBus::Forward
    }

    fn reply_from_bus(&mut self, h: &Header, r: u32, body: Option<&[u8]>) -> FromBus {
        let Some(expect) = self.expected.remove(&r) else {
            return FromBus::Drop("reply to no outstanding call");
        };
        let ok = h.kind == MessageType::MethodReturn;
        match expect {
            Expect::Normal => FromBus::Forward,
            Expect::Hello => {
                if let Some(name) = body
                    .and_then(|b| wire::first_string_arg(b, h))
                    .filter(|_| ok)
                {
                    self.own_name = Some(name);
                }
                FromBus::Forward
            }
            Expect::ListNames if !ok => FromBus::Forward,
            Expect::ListNames => {
                let dest = h.destination.as_deref();
                let Some(names) = body.and_then(|b| wire::string_array_arg(b, h)) else {
                    return FromBus::Replace(wire::error_reply(
                        h.serial,
                        r,
                        dest,
                        LIMITS_EXCEEDED,
                        "pv-xconnect: the list of names is too long to filter",
                    ));
                };
                let visible: Vec<&str> = names
                    .iter()
                    .map(String::as_str)
                    .filter(|n| self.access(Some(n)) >= Access::See)
                    .collect();
                FromBus::Replace(wire::method_return(
                    h.serial,
                    r,
                    dest,
                    "as",
                    &wire::string_array_body(&visible),
                ))
            }
            Expect::Refused(refusal) => {
                let dest = self.own_name.as_deref().or(h.destination.as_deref());
                FromBus::Replace(match refusal {
                    Refusal::Error { name, text } => {
                        wire::error_reply(h.serial, r, dest, name, &text)
                    }
                    Refusal::False => {
                        wire::method_return(h.serial, r, dest, "b", &wire::bool_body(false))
                    }
                })
            }
            Expect::OwnerOf(name) => {
                self.fakes_outstanding = self.fakes_outstanding.saturating_sub(1);
                if let Some(owner) = body
                    .and_then(|b| wire::first_string_arg(b, h))
                    .filter(|_| ok)
                {
                    self.learn_owner(&owner, &name);
                }
                FromBus::Learnt(Vec::new())
            }
            Expect::AllNames => {
                self.fakes_outstanding = self.fakes_outstanding.saturating_sub(1);
                let names = body
                    .and_then(|b| wire::string_array_arg(b, h))
                    .filter(|_| ok)
                    .unwrap_or_default();
                let mut calls = Vec::new();
                for n in names {
                    if !n.starts_with(':') && self.policy.access(&n) > Access::None {
                        calls.extend(self.fake("GetNameOwner", &n, Expect::OwnerOf(n.clone())));
                    }
                }
                FromBus::Learnt(calls)
            }
            Expect::Match => {
                self.fakes_outstanding = self.fakes_outstanding.saturating_sub(1);
                FromBus::Learnt(Vec::new())
            }
        }
    }

    fn learn_owner(&mut self, unique: &str, name: &str) {
        if !unique.starts_with(':') || self.policy.access(name) == Access::None {
            return;
        }
        if self.owned.len() >= MAX_TRACKED && !self.owned.contains_key(unique) {
            self.owned.clear();
        }
        let names = self.owned.entry(unique.to_owned()).or_default();
        if !names.iter().any(|n| n == name) && names.len() < MAX_TRACKED {
            names.push(name.to_owned());
        }
    }
}

const NOC: &str = "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'";

fn is_name_owner_changed(h: &Header) -> bool {
    h.kind == MessageType::Signal
        && h.sender.as_deref() == Some(BUS)
        && h.interface.as_deref() == Some(BUS)
        && h.member.as_deref() == Some("NameOwnerChanged")
}

fn denied(what: &str) -> Refusal {
    Refusal::Error {
        name: ACCESS_DENIED,
        text: format!("pv-xconnect: {what} (not allowed by this link)"),
    }
}

fn no_owner(text: String) -> Refusal {
    Refusal::Error {
        name: NAME_HAS_NO_OWNER,
        text,
    }
}

/// What the bus says for a call to a name nobody owns.
fn hidden(h: &Header, dest: &str) -> Refusal {
    if dest.starts_with(':') || h.flags & wire::NO_AUTO_START != 0 {
        no_owner(format!("The name {dest} does not have an owner"))
    } else {
        Refusal::Error {
            name: SERVICE_UNKNOWN,
            text: format!("The name {dest} was not provided by any .service files"),
        }
    }
}

#[cfg(test)]
mod tests;
