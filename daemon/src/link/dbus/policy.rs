//! Which messages a filtered consumer may send: data-only rules and a pure
//! [`decide`] (modelled on xdg-dbus-proxy's `FlatpakPolicy`/`Filter`).
//!
//! The link's `interface` is parsed by [`Policy::parse`]: empty or `dbus`
//! (the default) means no filtering at all; otherwise it is a
//! comma-separated list of bus names the consumer may talk to. `org.foo.*`
//! matches `org.foo` and every name below it. An entry suffixed `=own`
//! (`org.foo.Bar=own`) also lets the consumer own that name. See the module
//! documentation of [`super`] for the full table.

use std::collections::{HashMap, HashSet};

use super::wire::{Header, MessageType};

/// The bus driver's own name.
pub const BUS: &str = "org.freedesktop.DBus";
/// What the proxy answers for anything it refuses.
pub const ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// Bound on the bookkeeping kept per connection (pending calls, calls
/// awaiting our reply, peers learnt): beyond it the oldest knowledge is
/// dropped, which can only make the proxy stricter.
pub const MAX_TRACKED: usize = 4096;

/// Ordered access levels: each includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Access {
    None,
    /// May send calls and signals to the name.
    Talk,
    /// May also `RequestName` it.
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

    /// The highest access any rule grants `name`.
    pub fn access(&self, name: &str) -> Access {
        self.rules
            .iter()
            .filter(|r| r.pattern.matches(name))
            .map(|r| r.access)
            .max()
            .unwrap_or(Access::None)
    }

    fn owns_any(&self) -> bool {
        self.rules.iter().any(|r| r.access == Access::Own)
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

/// Bus-driver methods every filtered consumer may call.
const HARMLESS: &[&str] = &[
    "Hello",
    "AddMatch",
    "RemoveMatch",
    "GetNameOwner",
    "NameHasOwner",
    "GetId",
];

/// Interfaces every object implements; allowed wherever calls are.
const STANDARD: &[&str] = &[
    "org.freedesktop.DBus.Peer",
    "org.freedesktop.DBus.Introspectable",
    "org.freedesktop.DBus.Properties",
];

/// What the proxy remembers about one connection to route replies.
#[derive(Debug, Default)]
pub struct State {
    /// The consumer's unique name, from the reply to its `Hello`.
    pub unique_name: Option<String>,
    /// Unique names the consumer may call: owners of allowed names, learnt
    /// from replies to calls made to those names or to `GetNameOwner`.
    pub peers: HashSet<String>,
    /// The consumer's outstanding calls we must look at the replies of.
    pub pending: HashMap<u32, Pending>,
    /// Calls the consumer received and may answer: (sender, serial).
    pub to_answer: HashSet<(String, u32)>,
}

/// Why a consumer call's reply is interesting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Hello,
    /// The replier owns an allowed name.
    AllowedPeer,
    /// The reply's argument is the owner of an allowed name.
    OwnerOfAllowed,
}

/// The verdict on one message from the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Forward,
    /// Answer with `AccessDenied` if a reply is expected; never forward.
    Deny(String),
    /// Drop silently (an unsolicited reply).
    Drop(String),
}

/// Decide what to do with a message the consumer sent. `arg0` is the
/// body's leading string argument when the destination is the bus driver.
pub fn decide(policy: &Policy, h: &Header, arg0: Option<&str>, state: &State) -> Verdict {
    let dest = h.destination.as_deref();
    match h.kind {
        MessageType::MethodCall => match dest {
            None => Verdict::Deny("call without destination".into()),
            Some(BUS) => decide_bus_call(policy, h, arg0),
            Some(d) => talk_to(policy, d, state),
        },
        MessageType::Signal => match dest {
            None if policy.owns_any() => Verdict::Forward,
            None => Verdict::Deny("broadcast signal from a link that owns no name".into()),
            Some(d) => talk_to(policy, d, state),
        },
        MessageType::MethodReturn | MessageType::Error => {
            let key = (
                dest.unwrap_or_default().to_owned(),
                h.reply_serial.unwrap_or(0),
            );
            if state.to_answer.contains(&key) {
                Verdict::Forward
            } else {
                Verdict::Drop(format!("reply to a call never received from {}", key.0))
            }
        }
    }
}

fn talk_to(policy: &Policy, dest: &str, state: &State) -> Verdict {
    let ok = if dest.starts_with(':') {
        state.peers.contains(dest) || state.unique_name.as_deref() == Some(dest)
    } else {
        policy.access(dest) >= Access::Talk
    };
    if ok {
        Verdict::Forward
    } else {
        Verdict::Deny(format!("{dest} is not allowed by this link"))
    }
}

fn decide_bus_call(policy: &Policy, h: &Header, arg0: Option<&str>) -> Verdict {
    let member = h.member.as_deref().unwrap_or_default();
    match h.interface.as_deref() {
        Some(i) if STANDARD.contains(&i) => return Verdict::Forward,
        None | Some(BUS) => {}
        Some(other) => return Verdict::Deny(format!("bus interface {other}")),
    }
    let arg_access = || arg0.map(|a| policy.access(a)).unwrap_or(Access::None);
    match member {
        m if HARMLESS.contains(&m) => Verdict::Forward,
        "RequestName" | "ReleaseName" if arg_access() >= Access::Own => Verdict::Forward,
        "RequestName" | "ReleaseName" => Verdict::Deny(format!(
            "{member} {}: this link owns no such name",
            arg0.unwrap_or("?")
        )),
        "StartServiceByName" if arg_access() >= Access::Talk => Verdict::Forward,
        // Answering with a filtered list would mean rewriting the bus's
        // reply; refusing is simpler and leaks nothing.
        _ => Verdict::Deny(format!("bus method {member}")),
    }
}

/// What to remember about a forwarded consumer call.
pub fn pending_for(policy: &Policy, h: &Header, arg0: Option<&str>) -> Option<Pending> {
    if !h.expects_reply() {
        return None;
    }
    match (h.destination.as_deref(), h.member.as_deref()) {
        (Some(BUS), Some("Hello")) => Some(Pending::Hello),
        (Some(BUS), Some("GetNameOwner"))
            if arg0.is_some_and(|a| policy.access(a) >= Access::Talk) =>
        {
            Some(Pending::OwnerOfAllowed)
        }
        (Some(d), _) if !d.starts_with(':') && d != BUS => Some(Pending::AllowedPeer),
        _ => None,
    }
}

impl State {
    /// Learn from a message the bus delivered to the consumer.
    /// `arg0` is its leading string argument, if any.
    pub fn observe_incoming(&mut self, h: &Header, arg0: Option<String>) {
        match h.kind {
            MessageType::MethodCall if h.expects_reply() => {
                if let Some(s) = &h.sender {
                    bound(&mut self.to_answer);
                    self.to_answer.insert((s.clone(), h.serial));
                }
            }
            MessageType::MethodReturn | MessageType::Error => {
                let Some(p) = h.reply_serial.and_then(|r| self.pending.remove(&r)) else {
                    return;
                };
                if h.kind == MessageType::Error {
                    return;
                }
                let learnt = match p {
                    Pending::Hello => {
                        self.unique_name = arg0;
                        None
                    }
                    Pending::AllowedPeer => h.sender.clone(),
                    Pending::OwnerOfAllowed => arg0,
                };
                if let Some(u) = learnt.filter(|u| u.starts_with(':')) {
                    bound(&mut self.peers);
                    self.peers.insert(u);
                }
            }
            _ => {}
        }
    }

    /// Remember a forwarded consumer call's serial.
    pub fn expect(&mut self, serial: u32, p: Pending) {
        if self.pending.len() >= MAX_TRACKED {
            self.pending.clear();
        }
        self.pending.insert(serial, p);
    }

    /// The consumer answered a call it received.
    pub fn answered(&mut self, h: &Header) {
        if let (Some(d), Some(r)) = (&h.destination, h.reply_serial) {
            self.to_answer.remove(&(d.clone(), r));
        }
    }
}

fn bound<T>(set: &mut HashSet<T>) {
    if set.len() >= MAX_TRACKED {
        set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(dest: &str, iface: Option<&str>, member: &str) -> Header {
        Header {
            big_endian: false,
            kind: MessageType::MethodCall,
            flags: 0,
            serial: 5,
            body_offset: 0,
            body_len: 0,
            path: Some("/".into()),
            interface: iface.map(Into::into),
            member: Some(member.into()),
            error_name: None,
            reply_serial: None,
            destination: Some(dest.into()),
            sender: None,
            signature: None,
            unix_fds: 0,
        }
    }

    fn example() -> Policy {
        Policy::parse("org.pantavisor.Example").unwrap().unwrap()
    }

    #[test]
    fn default_interface_means_no_filter() {
        assert_eq!(Policy::parse("dbus").unwrap(), None);
        assert_eq!(Policy::parse("").unwrap(), None);
        assert!(Policy::parse("not a name").is_err());
        assert!(Policy::parse("org.freedesktop.DBus").is_err());
    }

    #[test]
    fn patterns_and_lists() {
        let p = Policy::parse("org.a.*, org.b.C=own").unwrap().unwrap();
        assert!(p.access("org.a") >= Access::Talk);
        assert!(p.access("org.a.X.Y") >= Access::Talk);
        assert_eq!(p.access("org.ab"), Access::None);
        assert_eq!(p.access("org.b.C"), Access::Own);
        assert!(Access::None < Access::Talk && Access::Talk < Access::Own);
    }

    #[test]
    fn allowed_name_and_harmless_driver_calls_pass() {
        let p = example();
        let s = State::default();
        let v = |h: &Header, a: Option<&str>| decide(&p, h, a, &s);
        assert_eq!(
            v(&call("org.pantavisor.Example", None, "GetInfo"), None),
            Verdict::Forward
        );
        assert_eq!(v(&call(BUS, Some(BUS), "Hello"), None), Verdict::Forward);
        assert_eq!(
            v(&call(BUS, Some(BUS), "AddMatch"), Some("type='signal'")),
            Verdict::Forward
        );
        assert_eq!(
            v(&call(BUS, Some("org.freedesktop.DBus.Peer"), "Ping"), None),
            Verdict::Forward
        );
    }

    #[test]
    fn the_attackers_moves_are_denied() {
        let p = example();
        let s = State::default();
        let denied = |h: &Header, a: Option<&str>| matches!(decide(&p, h, a, &s), Verdict::Deny(_));
        assert!(denied(
            &call(BUS, Some(BUS), "RequestName"),
            Some("org.pantavisor.Example")
        ));
        assert!(denied(
            &call("org.freedesktop.systemd1", None, "ListUnits"),
            None
        ));
        assert!(denied(&call(BUS, Some(BUS), "ListNames"), None));
        assert!(denied(
            &call(
                BUS,
                Some("org.freedesktop.DBus.Monitoring"),
                "BecomeMonitor"
            ),
            None
        ));
        assert!(denied(&call(":1.7", None, "X"), None));
    }

    #[test]
    fn owners_learnt_from_replies_become_callable() {
        let p = example();
        let mut s = State::default();
        let c = call("org.pantavisor.Example", None, "GetInfo");
        s.expect(c.serial, pending_for(&p, &c, None).unwrap());
        let mut reply = call(":1.1", None, "x");
        reply.kind = MessageType::MethodReturn;
        reply.reply_serial = Some(c.serial);
        reply.sender = Some(":1.9".into());
        s.observe_incoming(&reply, None);
        assert_eq!(
            decide(&p, &call(":1.9", None, "GetInfo"), None, &s),
            Verdict::Forward
        );
    }

    #[test]
    fn only_received_calls_may_be_answered() {
        let p = example();
        let mut s = State::default();
        let mut incoming = call(":1.1", None, "Ping");
        incoming.sender = Some(":1.3".into());
        incoming.serial = 44;
        s.observe_incoming(&incoming, None);
        let mut ret = call(":1.3", None, "x");
        ret.kind = MessageType::MethodReturn;
        ret.reply_serial = Some(44);
        assert_eq!(decide(&p, &ret, None, &s), Verdict::Forward);
        ret.reply_serial = Some(45);
        assert!(matches!(decide(&p, &ret, None, &s), Verdict::Drop(_)));
    }
}
