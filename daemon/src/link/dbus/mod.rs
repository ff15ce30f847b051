//! `dbus` mediation: a D-Bus proxy that makes the provider's bus see the
//! link's role, and (optionally) lets the consumer talk only to the names
//! its link was granted — what xdg-dbus-proxy does for Flatpak.
//!
//! # Identity
//!
//! The role becomes a uid once per link ([`Config::prepare`], see
//! [`passwd`]). Every provider-side connection is made with that uid as its
//! kernel credential (SO_PEERCRED), because dbus-daemon checks the uid
//! claimed in `AUTH EXTERNAL` against it; the SASL exchange is rewritten
//! so that every claim names that uid ([`sasl`]). Whatever the consumer
//! claims, the bus sees the role.
//!
//! # Filtering
//!
//! With the default `interface` (`dbus`, or empty) nothing is filtered:
//! messages are framed and checked, then forwarded with their fds. When
//! `interface` lists bus names ([`policy::Policy::parse`]: `org.a.B`,
//! `org.a.*`, comma lists, `=own` suffix), the consumer's messages are
//! judged by [`policy::decide`]:
//!
//! | consumer sends                                   | verdict                       |
//! |--------------------------------------------------|-------------------------------|
//! | call/signal to an allowed name (Talk or Own)     | forward                       |
//! | call to a unique name that answered for an allowed name, or owns one (`GetNameOwner`) | forward |
//! | bus: Hello, AddMatch, RemoveMatch, GetNameOwner, NameHasOwner, GetId | forward |
//! | bus: Peer, Introspectable, Properties interfaces | forward                       |
//! | bus: RequestName/ReleaseName of an `=own` name   | forward                       |
//! | bus: RequestName/ReleaseName of any other name   | AccessDenied                  |
//! | bus: StartServiceByName of an allowed name       | forward                       |
//! | bus: ListNames and every other driver method     | AccessDenied                  |
//! | call to any other name                           | AccessDenied                  |
//! | broadcast signal                                 | forward only with an `=own` rule |
//! | reply to a call the consumer received            | forward                       |
//! | any other reply                                  | dropped                       |
//!
//! "Owns" therefore means: the link's `interface` grants it with `=own`.
//! A plain entry (the upstream examples' `org.pantavisor.Example`) lets a
//! consumer call the name, never take it over. `ListNames` is refused rather
//! than filtered: a rewritten list would still reveal unique names.
//!
//! A denied call is answered by the proxy itself with
//! `org.freedesktop.DBus.Error.AccessDenied`, sender `org.freedesktop.DBus`,
//! the call's serial as reply serial and the consumer's unique name as
//! destination; it never reaches the bus. Everything the bus sends the
//! consumer (replies, subscribed signals, calls to it) flows unchanged; the
//! bus's own policy already applied to it.
//!
//! # Robustness
//!
//! Malformed SASL, oversized or corrupt messages, or a message announcing
//! more fds than arrived with it close that connection only (logged).
//! Unix fds travel with the message that carries them, both ways.
//!
//! # Layout
//!
//! - [`wire`]: message framing (prologue check, header fields).
//! - [`sasl`]: the authentication exchange, rewritten line by line.
//! - [`policy`]: the filter's rules and the pure [`policy::decide`].
//! - [`passwd`]: role → uid, from the provider's `/etc/passwd`.
//! - this module: [`Config`] (once per link) and [`serve`] (one consumer
//!   connection: SASL, then a `Connection` pumping both directions).

pub mod passwd;
pub mod policy;
pub mod sasl;
pub mod wire;

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use anyhow::{bail, Context};
use tokio::net::UnixStream;

use self::policy::{Policy, State, Verdict};
use self::sasl::Step;
use self::wire::{Header, MessageType};
use super::{LinkError, Provider, Session, SessionError};
use crate::fdpass;
use crate::graph::LinkSpec;
use crate::logging::link_event;
use crate::ns::NsError;

/// Fds may arrive a little ahead of the message that claims them, never
/// this far.
const MAX_QUEUED_FDS: usize = 4 * fdpass::MAX_FDS;
/// One read's worth of bytes.
const READ_CHUNK: usize = 64 * 1024;

/// Per-link configuration, computed once when the link starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Identity the bus sees for every connection of this link.
    pub uid: u32,
    pub gid: u32,
    /// `None`: no filtering (default interface).
    pub policy: Option<Policy>,
}

impl Config {
    /// Resolve the role and parse the filter. Fails only on an `interface`
    /// that is neither the default nor a list of bus names.
    pub async fn prepare(spec: &LinkSpec, provider: &Provider) -> anyhow::Result<Self> {
        let policy = Policy::parse(&spec.interface)?;
        let (uid, gid) = match spec.uid {
            Some(uid) => (uid, uid),
            None => resolve_role(spec, provider).await?,
        };
        link_event!(
            tracing::Level::INFO,
            spec,
            role = %spec.role,
            uid,
            filtered = policy.is_some(),
            "dbus: masquerading as uid {uid}"
        );
        Ok(Self { uid, gid, policy })
    }
}

/// A role is looked up in the provider's own `/etc/passwd` (the bus there
/// knows its users, we do not). A provider without one gets `nobody` for
/// every name; any other read error fails the link, which reconcile retries,
/// rather than silently demoting a root client to `nobody` for good.
async fn resolve_role(spec: &LinkSpec, provider: &Provider) -> Result<(u32, u32), LinkError> {
    let role = &spec.role;
    let text = match provider_passwd(provider).await {
        Ok(t) => t,
        Err(NsError::AbsentInRoot(_)) => {
            link_event!(
                tracing::Level::WARN,
                spec,
                "dbus: provider has no /etc/passwd"
            );
            String::new()
        }
        Err(err) => {
            return Err(LinkError::Refused(format!(
                "dbus: cannot read the provider's /etc/passwd to resolve role '{role}': {err}"
            )))
        }
    };
    Ok(passwd::lookup(role, &text).unwrap_or_else(|| {
        link_event!(
            tracing::Level::INFO,
            spec,
            role = %role,
            "dbus: role not found in provider, using nobody (65534)"
        );
        passwd::NOBODY
    }))
}

/// The provider's `/etc/passwd`, read inside its root (symlinks cannot
/// leave it; provider_pid 0 is the host).
async fn provider_passwd(provider: &Provider) -> Result<String, NsError> {
    let bytes = crate::ns::read_provider_file(
        provider.pid,
        std::path::Path::new("/etc/passwd"),
        passwd::MAX_PASSWD,
    )
    .await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Serve one consumer connection until either side closes.
pub async fn serve(
    config: &Config,
    consumer: UnixStream,
    session: &Session,
) -> Result<(), SessionError> {
    let bus = session
        .provider
        .connect_as(config.uid, config.gid)
        .await
        .context("connect to the provider's bus")?;
    tokio::select! {
        r = proxy(config, &consumer, &bus, session) => r.context("dbus")?,
        _ = session.shutdown.cancelled() => {}
    }
    Ok(())
}

/// Bytes read from a socket but not consumed yet, with their fds.
#[derive(Default)]
struct Inbox {
    buf: Vec<u8>,
    fds: VecDeque<OwnedFd>,
}

impl Inbox {
    /// Read once; `false` at end of stream.
    async fn fill(&mut self, sock: &UnixStream) -> anyhow::Result<bool> {
        let mut chunk = vec![0u8; READ_CHUNK];
        let mut fds = Vec::new();
        let n = fdpass::recv_with_fds(sock, &mut chunk, &mut fds).await?;
        self.buf.extend_from_slice(&chunk[..n]);
        self.fds.extend(fds);
        if self.fds.len() > MAX_QUEUED_FDS {
            bail!(
                "{} fds queued without a message claiming them",
                self.fds.len()
            );
        }
        Ok(n > 0)
    }

    /// Take one CRLF-terminated line (without CRLF), reading as needed.
    /// `None` at end of stream.
    async fn line(&mut self, sock: &UnixStream, limit: usize) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = sasl::line_end(&self.buf) {
                let line = self.buf[..end - 2].to_vec();
                self.buf.drain(..end);
                return Ok(Some(line));
            }
            if self.buf.len() > limit {
                return Err(sasl::SaslError::TooLong.into());
            }
            if !self.fill(sock).await? {
                return Ok(None);
            }
        }
    }
}

async fn proxy(
    config: &Config,
    consumer: &UnixStream,
    bus: &UnixStream,
    session: &Session,
) -> anyhow::Result<()> {
    let mut from_consumer = Inbox::default();
    let mut from_bus = Inbox::default();

    // SASL, in lock step (see `sasl`).
    while from_consumer.buf.is_empty() {
        if !from_consumer.fill(consumer).await? {
            return Ok(());
        }
    }
    if from_consumer.buf[0] != 0 {
        return Err(sasl::SaslError::NoNul.into());
    }
    from_consumer.buf.remove(0);
    fdpass::send_all_with_fds(bus, b"\0", &[]).await?;
    let mut budget = sasl::MAX_AUTH_BYTES;
    loop {
        let Some(line) = from_consumer.line(consumer, budget).await? else {
            return Ok(());
        };
        budget = budget
            .checked_sub(line.len() + 2)
            .ok_or(sasl::SaslError::TooLong)?;
        match sasl::client_step(&line, config.uid)? {
            Step::Forward(out) => {
                fdpass::send_all_with_fds(bus, &out, &[]).await?;
                let Some(reply) = from_bus.line(bus, sasl::MAX_AUTH_BYTES).await? else {
                    bail!("bus closed during authentication");
                };
                let reply = sasl::server_line(&reply)?;
                fdpass::send_all_with_fds(consumer, &reply, &[]).await?;
            }
            Step::Reply(r) => fdpass::send_all_with_fds(consumer, r, &[]).await?,
            Step::Begin => {
                fdpass::send_all_with_fds(bus, b"BEGIN\r\n", &[]).await?;
                break;
            }
        }
    }

    // Message mode: one pump per direction; the consumer socket is written
    // by both (denials come from the upward pump), so writes take a lock.
    let conn = Connection {
        config,
        consumer,
        session,
        state: Mutex::new(State::default()),
        consumer_writes: tokio::sync::Mutex::new(()),
        serial: AtomicU32::new(1),
    };
    let up = conn.pump(consumer, bus, from_consumer, Direction::Up);
    let down = conn.pump(bus, consumer, from_bus, Direction::Down);
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => { r?; down.await }
        r = &mut down => { r?; up.await }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Consumer to bus: judged by the policy.
    Up,
    /// Bus to consumer: observed, always forwarded.
    Down,
}

/// One consumer connection in message mode, and its bus connection.
struct Connection<'a> {
    config: &'a Config,
    consumer: &'a UnixStream,
    session: &'a Session,
    state: Mutex<State>,
    consumer_writes: tokio::sync::Mutex<()>,
    /// Serials of the messages the proxy writes itself.
    serial: AtomicU32,
}

impl Connection<'_> {
    async fn pump(
        &self,
        src: &UnixStream,
        dst: &UnixStream,
        mut inbox: Inbox,
        dir: Direction,
    ) -> anyhow::Result<()> {
        let mut out = Vec::with_capacity(READ_CHUNK);
        loop {
            let mut used = 0;
            while let Some(len) = wire::check(&inbox.buf[used..])? {
                if inbox.buf.len() - used < len {
                    break;
                }
                let msg = &inbox.buf[used..used + len];
                used += len;
                let h = wire::parse(msg)?;
                let n = h.unix_fds as usize;
                if n > inbox.fds.len() {
                    bail!(
                        "message announces {n} fds, {} arrived with it",
                        inbox.fds.len()
                    );
                }
                let fds: Vec<OwnedFd> = inbox.fds.drain(..n).collect();
                let forward = match dir {
                    Direction::Up => self.judge(msg, &h).await?,
                    Direction::Down => {
                        self.observe(msg, &h);
                        true
                    }
                };
                if !forward {
                    continue;
                }
                if fds.is_empty() {
                    out.extend_from_slice(msg);
                } else {
                    // Fds ride with the first byte of a write, so this
                    // message starts a write of its own.
                    self.write(dst, &out, &[], dir).await?;
                    out.clear();
                    let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
                    self.write(dst, msg, &b, dir).await?;
                }
            }
            self.write(dst, &out, &[], dir).await?;
            out.clear();
            inbox.buf.drain(..used);
            if !inbox.fill(src).await? {
                if !inbox.buf.is_empty() {
                    bail!("stream ended inside a message");
                }
                // Propagate the half-close; the other direction goes on.
                let _ =
                    nix::sys::socket::shutdown(dst.as_raw_fd(), nix::sys::socket::Shutdown::Write);
                return Ok(());
            }
        }
    }

    async fn write(
        &self,
        dst: &UnixStream,
        bytes: &[u8],
        fds: &[BorrowedFd<'_>],
        dir: Direction,
    ) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        let _guard = match dir {
            Direction::Down => Some(self.consumer_writes.lock().await),
            Direction::Up => None,
        };
        fdpass::send_all_with_fds(dst, bytes, fds).await?;
        self.session
            .stats
            .bytes_relayed
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Decide on one consumer message; answers denials itself.
    async fn judge(&self, msg: &[u8], h: &Header) -> anyhow::Result<bool> {
        let Some(policy) = &self.config.policy else {
            return Ok(true);
        };
        let arg0 = (h.destination.as_deref() == Some(policy::BUS))
            .then(|| wire::first_string_arg(msg, h))
            .flatten();
        let (verdict, me) = {
            let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let v = policy::decide(policy, h, arg0.as_deref(), &st);
            if v == Verdict::Forward {
                match h.kind {
                    MessageType::MethodCall => {
                        if let Some(p) = policy::pending_for(policy, h, arg0.as_deref()) {
                            st.expect(h.serial, p);
                        }
                    }
                    MessageType::MethodReturn | MessageType::Error => st.answered(h),
                    MessageType::Signal => {}
                }
            }
            (v, st.unique_name.clone())
        };
        let spec = &self.session.spec;
        match verdict {
            Verdict::Forward => Ok(true),
            Verdict::Deny(reason) => {
                link_event!(
                    tracing::Level::INFO,
                    spec,
                    member = h.member.as_deref().unwrap_or(""),
                    destination = h.destination.as_deref().unwrap_or(""),
                    "dbus: *DENIED* {reason}"
                );
                if h.expects_reply() {
                    let serial = self.serial.fetch_add(1, Ordering::Relaxed);
                    let err = wire::error_reply(
                        serial,
                        h.serial,
                        me.as_deref(),
                        policy::ACCESS_DENIED,
                        &format!("pv-xconnect: {reason}"),
                    );
                    self.write(self.consumer, &err, &[], Direction::Down)
                        .await?;
                }
                Ok(false)
            }
            Verdict::Drop(reason) => {
                link_event!(tracing::Level::INFO, spec, "dbus: dropped: {reason}");
                Ok(false)
            }
        }
    }

    fn observe(&self, msg: &[u8], h: &Header) {
        if self.config.policy.is_none() {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let interesting = h.kind == MessageType::MethodReturn
            && h.reply_serial.is_some_and(|r| st.pending.contains_key(&r));
        let arg0 = interesting
            .then(|| wire::first_string_arg(msg, h))
            .flatten();
        st.observe_incoming(h, arg0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(pid: i32, role: &str) -> (LinkSpec, Provider) {
        let spec = crate::test_util::LinkSpecBuilder::new(crate::graph::ServiceType::Dbus)
            .provider("bus", pid)
            .socket("/run/dbus/system_bus_socket")
            .role(role)
            .build();
        let provider = Provider::new(
            spec.provider.clone(),
            crate::process::ProviderPid::new(pid).expect("provider pid"),
            spec.socket.clone(),
        );
        (spec, provider)
    }

    async fn resolve(pid: i32, role: &str) -> Result<(u32, u32), LinkError> {
        let (spec, provider) = bus(pid, role);
        resolve_role(&spec, &provider).await
    }

    #[tokio::test]
    async fn names_resolve_in_the_providers_passwd() {
        // pid 0: the host's root, whose passwd has root.
        assert_eq!(resolve(0, "root").await.unwrap(), (0, 0));
        assert_eq!(
            resolve(0, "no-such-user-here").await.unwrap(),
            passwd::NOBODY
        );
    }

    #[tokio::test]
    async fn a_provider_whose_passwd_cannot_be_read_fails_the_link() {
        // A vanished provider must not turn a root client into nobody for
        // the link's lifetime: the error makes reconcile retry.
        let err = resolve(i32::MAX, "root").await.unwrap_err();
        assert!(err.to_string().contains("/etc/passwd"), "{err}");
    }
}
