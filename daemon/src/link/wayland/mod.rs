//! `wayland` mediation: a protocol-aware relay between one consumer client
//! and the provider's compositor.
//!
//! Upstream's C daemon splices bytes, which loses every fd a Wayland client
//! sends (shm pools, keymaps, dmabufs, clipboard pipes). This relay frames
//! each message ([`wire`]), tracks which object id is which interface
//! ([`protocol`]) so it knows how many fds each message consumes, and sends
//! those fds with the first byte of that very message, in both directions.
//!
//! Messages on objects of interfaces the proxy does not know (compositor
//! extensions) are still relayed: every fd queued when such a message is
//! forwarded goes with it, in arrival order. That is safe because Wayland
//! peers queue incoming fds and consume them in order: an fd may arrive
//! early, never late. Fds sent ahead that way are "credit" the next known
//! message draws from before the queue.
//!
//! # Filtering
//!
//! When the link's `interface` is a comma-separated list of global
//! interface names (anything but the default `wayland` or empty), the
//! client sees only those globals: other `wl_registry.global` events and
//! their `global_remove` are dropped, advertised versions are capped at what
//! the proxy understands, and a `bind` to anything not advertised gets
//! `wl_display.error` and the connection is closed. With filtering on,
//! nothing the proxy cannot parse is relayed (unknown interfaces are hidden,
//! unknown opcodes close the client), so no object escapes the tracking.
//!
//! # Failure
//!
//! A malformed message from either side ends this session only (logged);
//! the compositor and other clients are unaffected. Buffers are bounded:
//! a side is not read while the other side's output backlog is full.

pub mod protocol;
pub mod wire;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::UnixStream;
use wayland_backend::protocol::Interface;

use self::protocol::{Objects, WL_DISPLAY_INTERFACE, WL_REGISTRY_INTERFACE};
use self::wire::{WireError, HEADER_LEN};
use super::{Session, SessionError};
use crate::fdpass::{self, FdBudget, HeldFd};
use crate::graph::LinkSpec;
use crate::logging::link_event;

/// Inbound buffer per direction: room for the largest possible message
/// (size is a 16-bit field) plus a full socket read.
const IN_CAP: usize = 128 * 1024;
/// Stop reading a side while this much output towards the other is pending.
const OUT_HIGH: usize = 256 * 1024;
/// libwayland receives at most 28 fds per recvmsg (MAX_FDS_OUT); more in one
/// sendmsg would be truncated on its side.
const FDS_PER_SEND: usize = 28;
/// Fds held without a message to consume them before the peer is cut off.
const MAX_QUEUED_FDS: usize = 1024;
/// How long pending output (e.g. a protocol error) may take to drain on close.
const LINGER: Duration = Duration::from_secs(1);

/// Per-link configuration, computed once when the link starts.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Global interface names the client may see; `None` = no filtering.
    pub allow: Option<HashSet<String>>,
}

impl Config {
    /// Parse the link's `interface` field (see the module docs).
    pub fn prepare(spec: &LinkSpec) -> Self {
        let trimmed = spec.interface.trim();
        if trimmed.is_empty() || trimmed == "wayland" {
            return Self { allow: None };
        }
        let allow: HashSet<String> = trimmed
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for name in &allow {
            if protocol::lookup(name.as_bytes()).is_none() {
                link_event!(
                    tracing::Level::WARN,
                    spec,
                    interface = %name,
                    "wayland filter names an interface the proxy does not know: it stays hidden"
                );
            }
        }
        Self { allow: Some(allow) }
    }
}

/// Serve one consumer connection until either side closes.
pub async fn serve(
    config: &Config,
    consumer: UnixStream,
    session: &Session,
) -> Result<(), SessionError> {
    let compositor = session
        .provider
        .connect()
        .await
        .map_err(|e| SessionError::Fault(anyhow::anyhow!("compositor unreachable: {e}")))?;
    let mut relay = Relay::new(config, consumer, compositor);
    let outcome = tokio::select! {
        r = relay.run(session) => r,
        _ = session.shutdown.cancelled() => Ok(End::Shutdown),
    };
    match outcome {
        Ok(End::Refused(why)) => {
            link_event!(
                tracing::Level::INFO,
                session.spec,
                reason = %why,
                "wayland client refused"
            );
            relay.linger(session).await;
            Ok(())
        }
        Ok(End::Closed) => {
            relay.linger(session).await;
            Ok(())
        }
        Ok(End::Shutdown) => Ok(()),
        Err(Fault::Client(e)) => {
            // Tell the client why, as a compositor would (invalid_method).
            let why = format!("pv-xconnect: malformed request: {e}");
            wire::encode_display_error(&mut relay.down.out, 1, 1, &why);
            relay.linger(session).await;
            Err(SessionError::Fault(anyhow::anyhow!(
                "malformed message from the wayland client, closed it: {e}"
            )))
        }
        Err(Fault::Compositor(e)) => Err(SessionError::Fault(anyhow::anyhow!(
            "malformed message from the compositor, closed this client's session: {e}"
        ))),
        Err(Fault::Io(e)) => Err(SessionError::Gone(e.into())),
    }
}

/// How a session ended without a fault.
enum End {
    Closed,
    Shutdown,
    /// A bind was refused; the error event is queued towards the client.
    Refused(String),
}

enum Fault {
    Client(WireError),
    Compositor(WireError),
    Io(io::Error),
}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        Fault::Io(e)
    }
}

/// Globals seen in this session's registry events (filtering only).
#[derive(Default)]
struct Globals {
    /// Advertised name → (interface, capped version).
    shown: HashMap<u32, (&'static Interface, u32)>,
    hidden: HashSet<u32>,
}

/// One direction of the relay: bytes and fds read from `src`, written to `dst`.
struct Pipe {
    buf: Box<[u8]>,
    head: usize,
    tail: usize,
    fds: VecDeque<HeldFd>,
    /// Reused landing place for fds of one recvmsg.
    scratch: Vec<HeldFd>,
    /// Reused control buffer.
    cmsg: Vec<u8>,
    /// Fds already forwarded ahead of the message that will consume them.
    credit: usize,
    out: Vec<u8>,
    sent: usize,
    /// Fds to send with the byte at this offset of `out`.
    out_fds: VecDeque<(usize, HeldFd)>,
    eof: bool,
}

impl Pipe {
    fn new() -> Self {
        Self {
            buf: vec![0u8; IN_CAP].into_boxed_slice(),
            head: 0,
            tail: 0,
            fds: VecDeque::new(),
            scratch: Vec::new(),
            cmsg: fdpass::cmsg_buffer(),
            credit: 0,
            out: Vec::with_capacity(16 * 1024),
            sent: 0,
            out_fds: VecDeque::new(),
            eof: false,
        }
    }

    fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    fn wants_read(&self) -> bool {
        !self.eof && self.pending() < OUT_HIGH
    }

    /// Read what `src` has queued (non-blocking). Returns false at EOF.
    fn read(&mut self, src: &UnixStream, budget: &FdBudget) -> io::Result<bool> {
        if self.head > 0 && (self.head == self.tail || IN_CAP - self.tail < 64 * 1024) {
            self.buf.copy_within(self.head..self.tail, 0);
            self.tail -= self.head;
            self.head = 0;
        }
        let fd = src.as_raw_fd();
        let buf = &mut self.buf[self.tail..];
        let scratch = &mut self.scratch;
        let cmsg = &mut self.cmsg;
        let got = src.try_io(Interest::READABLE, || {
            fdpass::recv_now_budget(fd, buf, cmsg, scratch, budget)
        });
        self.fds.extend(self.scratch.drain(..));
        match got {
            Ok(0) => {
                self.eof = true;
                Ok(false)
            }
            Ok(n) => {
                self.tail += n;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(e),
        }
    }

    /// Queue a whole message for output, with `nfds` fds taken from credit
    /// first, then the queue.
    fn forward(&mut self, msg: std::ops::Range<usize>, nfds: usize) -> Result<(), WireError> {
        let from_credit = nfds.min(self.credit);
        let from_queue = nfds - from_credit;
        if from_queue > self.fds.len() {
            return Err(WireError::MissingFds {
                need: nfds,
                have: self.credit + self.fds.len(),
            });
        }
        self.credit -= from_credit;
        let at = self.out.len();
        for fd in self.fds.drain(..from_queue) {
            self.out_fds.push_back((at, fd));
        }
        self.out.extend_from_slice(&self.buf[msg]);
        Ok(())
    }

    /// Forward a message whose fd needs are unknown: everything queued goes
    /// with it, and counts as credit for later known messages.
    fn forward_unknown(&mut self, msg: std::ops::Range<usize>) {
        let at = self.out.len();
        self.credit += self.fds.len();
        for fd in self.fds.drain(..) {
            self.out_fds.push_back((at, fd));
        }
        self.out.extend_from_slice(&self.buf[msg]);
    }

    /// Write as much pending output as `dst` takes now. Returns bytes written.
    fn flush(&mut self, dst: &UnixStream) -> io::Result<usize> {
        let fd = dst.as_raw_fd();
        let mut total = 0;
        while self.sent < self.out.len() {
            let due = self
                .out_fds
                .iter()
                .take_while(|(at, _)| *at <= self.sent)
                .count();
            let nfds = due.min(FDS_PER_SEND);
            // Stop before the next message that carries fds so they ride on
            // its first byte.
            let mut end = self.out_fds.get(due).map_or(self.out.len(), |(at, _)| *at);
            if due > nfds {
                // More fds due than one sendmsg may carry: spread them over
                // the next few bytes.
                end = end.min(self.sent + 4);
            }
            // Allocates only for messages that carry fds.
            let list: Vec<BorrowedFd<'_>> = self
                .out_fds
                .iter()
                .take(nfds)
                .map(|(_, f)| f.as_fd())
                .collect();
            let bytes = &self.out[self.sent..end];
            match dst.try_io(Interest::WRITABLE, || fdpass::send_now(fd, bytes, &list)) {
                Ok(n) => {
                    drop(list);
                    self.out_fds.drain(..nfds);
                    self.sent += n;
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        } else if self.sent > 64 * 1024 && self.sent * 2 > self.out.len() {
            self.out.drain(..self.sent);
            for (at, _) in self.out_fds.iter_mut() {
                *at = at.saturating_sub(self.sent);
            }
            self.sent = 0;
        }
        Ok(total)
    }
}

struct Relay<'c> {
    config: &'c Config,
    client: UnixStream,
    server: UnixStream,
    objects: Objects,
    globals: Globals,
    /// client → compositor (requests)
    up: Pipe,
    /// compositor → client (events)
    down: Pipe,
}

impl<'c> Relay<'c> {
    fn new(config: &'c Config, client: UnixStream, server: UnixStream) -> Self {
        Self {
            config,
            client,
            server,
            objects: Objects::default(),
            globals: Globals::default(),
            up: Pipe::new(),
            down: Pipe::new(),
        }
    }

    async fn run(&mut self, session: &Session) -> Result<End, Fault> {
        enum Ready {
            ClientIn,
            ServerIn,
            ServerOut,
            ClientOut,
        }
        loop {
            if self.up.eof || self.down.eof {
                // Either peer gone: the caller passes on what the compositor
                // still had for the client (e.g. its protocol error).
                return Ok(End::Closed);
            }
            let up_read = self.up.wants_read();
            let down_read = self.down.wants_read();
            let up_write = self.up.pending() > 0;
            let down_write = self.down.pending() > 0;
            let ready = tokio::select! {
                r = self.client.readable(), if up_read => r.map(|_| Ready::ClientIn),
                r = self.server.readable(), if down_read => r.map(|_| Ready::ServerIn),
                r = self.server.writable(), if up_write => r.map(|_| Ready::ServerOut),
                r = self.client.writable(), if down_write => r.map(|_| Ready::ClientOut),
            }?;
            match ready {
                Ready::ClientIn => {
                    if self.up.read(&self.client, &session.fds)? {
                        if let Some(why) = self.process_requests().map_err(Fault::Client)? {
                            return Ok(End::Refused(why));
                        }
                        self.flush_up(session)?;
                    }
                }
                Ready::ServerIn => {
                    if self.down.read(&self.server, &session.fds)? {
                        self.process_events().map_err(Fault::Compositor)?;
                        self.flush_down(session)?;
                    }
                }
                Ready::ServerOut => self.flush_up(session)?,
                Ready::ClientOut => self.flush_down(session)?,
            }
        }
    }

    fn flush_up(&mut self, session: &Session) -> io::Result<()> {
        let n = self.up.flush(&self.server)?;
        session.stats.add_bytes(n as u64);
        Ok(())
    }

    fn flush_down(&mut self, session: &Session) -> io::Result<()> {
        let n = self.down.flush(&self.client)?;
        session.stats.add_bytes(n as u64);
        Ok(())
    }

    /// After a refusal: give the queued error event a moment to reach the
    /// client, then drop both connections.
    async fn linger(&mut self, session: &Session) {
        let _ = tokio::time::timeout(LINGER, async {
            while self.down.pending() > 0 {
                if self.client.writable().await.is_err() || self.flush_down(session).is_err() {
                    break;
                }
            }
        })
        .await;
    }

    fn filtering(&self) -> bool {
        self.config.allow.is_some()
    }

    /// Frame and forward every complete request. `Ok(Some(reason))` when a
    /// bind was refused (the error event is queued downstream).
    fn process_requests(&mut self) -> Result<Option<String>, WireError> {
        let strict = self.filtering();
        while let Some(h) = wire::header(&self.up.buf[self.up.head..self.up.tail])? {
            if self.up.tail - self.up.head < h.size {
                break;
            }
            let start = self.up.head;
            let range = start..start + h.size;
            let Some(iface) = self.objects.get(h.object) else {
                if strict {
                    return Err(WireError::UnknownObject(h.object));
                }
                self.up.forward_unknown(range);
                self.up.head += h.size;
                continue;
            };
            let Some(desc) = iface.requests.get(h.opcode as usize) else {
                if strict {
                    return Err(WireError::UnknownOpcode {
                        interface: iface.name,
                        opcode: h.opcode,
                    });
                }
                self.up.forward_unknown(range);
                self.up.head += h.size;
                continue;
            };
            let body = &self.up.buf[start + HEADER_LEN..start + h.size];
            let args = wire::walk(desc, body)?;
            if let Some(nid) = args.new_id {
                let created = match (desc.child_interface, nid.interface) {
                    (Some(child), _) => Some(child),
                    (None, Some(name)) => protocol::lookup(name),
                    (None, None) => None,
                };
                if nid.id >= protocol::SERVER_ID_BASE {
                    return Err(WireError::BadNewId(nid.id));
                }
                if protocol::same(iface, &WL_REGISTRY_INTERFACE) {
                    if let Some(allow) = &self.config.allow {
                        if let Err(why) = self.check_bind(allow, body, nid, created) {
                            let registry = h.object;
                            self.up.head += h.size;
                            wire::encode_display_error(&mut self.down.out, registry, 0, &why);
                            return Ok(Some(why));
                        }
                    }
                }
                if strict && created.is_none() {
                    return Err(WireError::UnknownObject(nid.id));
                }
                self.objects.create(nid.id, created, strict)?;
            }
            self.up.forward(range, args.fds)?;
            if desc.is_destructor && !strict {
                // An unknown extension may reuse the id next; events still
                // in flight to the old object then travel as unknown, which
                // is safe. With filtering every reuse is seen, so the old
                // interface is kept to parse those in-flight events.
                self.objects.destroyed(h.object);
            }
            self.up.head += h.size;
        }
        if self.up.fds.len() > MAX_QUEUED_FDS {
            return Err(WireError::FdFlood);
        }
        Ok(None)
    }

    /// Is this `wl_registry.bind` allowed under the filter?
    fn check_bind(
        &self,
        allow: &HashSet<String>,
        body: &[u8],
        nid: wire::NewId<'_>,
        created: Option<&'static Interface>,
    ) -> Result<(), String> {
        let name = wire::u32_at(body, 0).unwrap_or(0);
        let asked = String::from_utf8_lossy(nid.interface.unwrap_or(b"")).into_owned();
        match (self.globals.shown.get(&name), created) {
            (Some((shown, max)), Some(want))
                if protocol::same(shown, want) && allow.contains(shown.name) =>
            {
                if nid.version == 0 || nid.version > *max {
                    Err(format!(
                        "invalid version {} for global {asked} ({name})",
                        nid.version
                    ))
                } else {
                    Ok(())
                }
            }
            _ => Err(format!("invalid global {asked} ({name})")),
        }
    }

    /// Frame and forward every complete event, applying the filter.
    fn process_events(&mut self) -> Result<(), WireError> {
        let strict = self.filtering();
        while let Some(h) = wire::header(&self.down.buf[self.down.head..self.down.tail])? {
            if self.down.tail - self.down.head < h.size {
                break;
            }
            let start = self.down.head;
            let range = start..start + h.size;
            let Some(iface) = self.objects.get(h.object) else {
                if strict {
                    return Err(WireError::UnknownObject(h.object));
                }
                self.down.forward_unknown(range);
                self.down.head += h.size;
                continue;
            };
            let Some(desc) = iface.events.get(h.opcode as usize) else {
                if strict {
                    return Err(WireError::UnknownOpcode {
                        interface: iface.name,
                        opcode: h.opcode,
                    });
                }
                self.down.forward_unknown(range);
                self.down.head += h.size;
                continue;
            };
            let body_range = start + HEADER_LEN..start + h.size;
            let args = wire::walk(desc, &self.down.buf[body_range.clone()])?;
            let nfds = args.fds;
            if let Some(nid) = args.new_id {
                if nid.id < protocol::SERVER_ID_BASE {
                    return Err(WireError::BadNewId(nid.id));
                }
                let created = desc
                    .child_interface
                    .or_else(|| nid.interface.and_then(protocol::lookup));
                if strict && created.is_none() {
                    return Err(WireError::UnknownObject(nid.id));
                }
                self.objects.create(nid.id, created, strict)?;
            }
            if protocol::same(iface, &WL_DISPLAY_INTERFACE) && h.opcode == 1 {
                // delete_id: the client may now reuse that id.
                if let Some(id) = wire::u32_at(&self.down.buf, body_range.start) {
                    self.objects.delete(id);
                }
            }
            if self.config.allow.is_some()
                && protocol::same(iface, &WL_REGISTRY_INTERFACE)
                && !self.filter_registry_event(h.opcode, body_range)
            {
                // Dropped: registry events carry no fds, nothing to consume.
                self.down.head += h.size;
                continue;
            }
            self.down.forward(range, nfds)?;
            if desc.is_destructor && !strict {
                // An unknown extension may reuse the id next; events still
                // in flight to the old object then travel as unknown, which
                // is safe. With filtering every reuse is seen, so the old
                // interface is kept to parse those in-flight events.
                self.objects.destroyed(h.object);
            }
            self.down.head += h.size;
        }
        if self.down.fds.len() > MAX_QUEUED_FDS {
            return Err(WireError::FdFlood);
        }
        Ok(())
    }

    /// Decide on a registry event under the filter; may cap the advertised
    /// version in place. Returns whether to forward it.
    fn filter_registry_event(&mut self, opcode: u16, body: std::ops::Range<usize>) -> bool {
        let Some(allow) = &self.config.allow else {
            return true;
        };
        let buf = &mut self.down.buf[body];
        let name = wire::u32_at(buf, 0).unwrap_or(0);
        match opcode {
            // global(name, interface, version); walk() validated the layout.
            0 => {
                let len = wire::u32_at(buf, 4).unwrap_or(0) as usize;
                let text = buf.get(8..8 + len.saturating_sub(1)).unwrap_or(&[]);
                let vpos = 8 + ((len + 3) & !3);
                let announced = wire::u32_at(buf, vpos).unwrap_or(0);
                match protocol::lookup(text) {
                    Some(iface) if allow.contains(iface.name) => {
                        let capped = announced.min(iface.version);
                        buf[vpos..vpos + 4].copy_from_slice(&capped.to_ne_bytes());
                        self.globals.shown.insert(name, (iface, capped));
                        true
                    }
                    _ => {
                        self.globals.hidden.insert(name);
                        false
                    }
                }
            }
            // global_remove(name)
            1 => !self.globals.hidden.contains(&name),
            _ => true,
        }
    }
}
