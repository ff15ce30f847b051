//! `dbus` mediation: a D-Bus proxy that makes the provider's bus see the
//! link's role, and (optionally) lets the consumer see and talk only to the
//! names its link was granted — what xdg-dbus-proxy does for Flatpak.
//!
//! # Identity
//!
//! The role becomes a uid once per link ([`Config::prepare`], see
//! [`passwd`]). Every provider-side connection is made with that uid as its
//! kernel credential (SO_PEERCRED), because dbus-daemon checks the uid
//! claimed in `AUTH EXTERNAL` against it, and the proxy authenticates to
//! the bus as that uid ([`sasl`]). Whatever the consumer claims, the bus
//! sees the role.
//!
//! # Authentication first
//!
//! The consumer's SASL exchange is finished by the proxy itself
//! ([`sasl::Server`]) within the link's authentication timeout
//! ([`Options::auth_timeout`], 10 s by default); only after its `BEGIN` is
//! the bus connection opened and the exchange replayed as the role
//! ([`sasl::Client`]). A consumer that never authenticates costs the bus
//! nothing and is dropped.
//!
//! # Filtering
//!
//! With the default `interface` (`dbus`, or empty) nothing is filtered:
//! messages are framed, their headers checked and their fds attached, and
//! they stream through. When `interface` lists bus names
//! ([`policy::Policy::parse`]: `org.a.B`, `org.a.*`, comma lists, `=own`
//! suffix), every message in both directions goes through
//! [`policy::Filter`], whose module documentation holds the method →
//! verdict tables and how they compare with xdg-dbus-proxy.
//!
//! # Memory
//!
//! No message is ever held whole. Each is decided on its header (at most
//! [`wire::MAX_HEADER`]), plus its body only where a verdict needs an
//! argument: calls to the bus driver (bodies up to [`MAX_CLIENT_BODY`];
//! larger ones are refused) and the bus's replies the filter learns from
//! or rewrites (up to [`MAX_BUS_BODY`]). Every other body streams through
//! in chunks with backpressure, or is discarded as it arrives when the
//! message is refused. Bytes buffered per direction are capped
//! ([`MAX_BUFFERED`] from the consumer) and so are fds received ahead of
//! their message (`MAX_QUEUED_FDS`); crossing a cap closes the connection.
//!
//! # Robustness
//!
//! Malformed SASL, oversized or corrupt messages, a message announcing
//! more fds than arrived with it, or a consumer the filter disconnects
//! ([`policy::FromClient::Disconnect`]) close that connection only
//! (logged). Unix fds travel with the message that carries them, both ways.
//!
//! # Layout
//!
//! - [`wire`]: message framing (prologue, header fields, the few bodies
//!   the filter reads, the messages the proxy writes).
//! - [`sasl`]: the authentication exchange, both halves.
//! - [`policy`]: the filter: rules, visibility, verdicts (the tables).
//! - [`passwd`]: role → uid, from the provider's `/etc/passwd`.
//! - this module: [`Config`] (once per link) and [`serve`] (one consumer
//!   connection: authentication, then a `Connection` pumping both
//!   directions).

pub mod passwd;
pub mod policy;
pub mod sasl;
pub mod wire;

use std::collections::VecDeque;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tokio::io::Interest;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use self::policy::{Filter, FromBus, FromClient, Policy};
use self::wire::{Header, PROLOGUE};
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
/// Largest consumer body the filter reads (a call to the bus driver).
pub const MAX_CLIENT_BODY: usize = 64 * 1024;
/// Largest bus body the filter reads (a `ListNames` reply to filter).
pub const MAX_BUS_BODY: usize = 1 << 20;
/// Cap on bytes buffered from the consumer at any time.
pub const MAX_BUFFERED: usize = wire::MAX_HEADER + MAX_CLIENT_BODY + READ_CHUNK;
/// The same from the bus, which may have to send a long `ListNames`.
const MAX_BUS_BUFFERED: usize = wire::MAX_HEADER + MAX_BUS_BODY + READ_CHUNK;
/// Default for [`Options::auth_timeout`].
pub const DEFAULT_AUTH_TIMEOUT: Duration = Duration::from_secs(10);

/// Daemon-wide settings of dbus links (command-line flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// How long a consumer has to finish authenticating (until `BEGIN`);
    /// the bus is not contacted before. Also bounds the replay to the bus.
    pub auth_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            auth_timeout: DEFAULT_AUTH_TIMEOUT,
        }
    }
}

/// Per-link configuration, computed once when the link starts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Identity the bus sees for every connection of this link.
    pub uid: u32,
    pub gid: u32,
    /// `None`: no filtering (default interface).
    pub policy: Option<Policy>,
    pub options: Options,
    /// The server GUID the proxy announces to this link's consumers.
    guid: String,
}

impl Config {
    /// Resolve the role and parse the filter. Fails only on an `interface`
    /// that is neither the default nor a list of bus names, or a provider
    /// whose passwd cannot be read.
    pub async fn prepare(
        spec: &LinkSpec,
        provider: &Provider,
        options: &Options,
    ) -> anyhow::Result<Self> {
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
        Ok(Self {
            uid,
            gid,
            policy,
            options: *options,
            guid: new_guid(),
        })
    }
}

/// 32 hex digits, different for every link (clients may key shared
/// connections on it; it protects nothing).
fn new_guid() -> String {
    use std::hash::{BuildHasher, Hasher};
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    (0..2u8)
        .map(|i| {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u8(i);
            h.write_u128(now);
            format!("{:016x}", h.finish())
        })
        .collect()
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
    let timeout = config.options.auth_timeout;
    let mut from_consumer = Inbox::new(MAX_BUFFERED);
    let unix_fd = match tokio::time::timeout(
        timeout,
        authenticate(&consumer, &mut from_consumer, &config.guid),
    )
    .await
    {
        Err(_) => {
            return Err(SessionError::Fault(anyhow!(
                "dbus: consumer did not authenticate within {timeout:?}; closed"
            )))
        }
        Ok(Err(e)) => return Err(SessionError::Fault(e.context("dbus: authentication"))),
        // Left before BEGIN: the bus never heard of it.
        Ok(Ok(None)) => return Ok(()),
        Ok(Ok(Some(unix_fd))) => unix_fd,
    };
    let bus = session
        .provider
        .connect_as(config.uid, config.gid)
        .await
        .context("connect to the provider's bus")?;
    let mut from_bus = Inbox::new(MAX_BUS_BUFFERED);
    tokio::time::timeout(timeout, replay(&bus, &mut from_bus, config.uid, unix_fd))
        .await
        .map_err(|_| anyhow!("dbus: the bus did not authenticate us within {timeout:?}"))?
        .context("dbus: authenticating to the bus")?;
    proxy(config, &consumer, &bus, from_consumer, from_bus, session)
        .await
        .context("dbus")?;
    Ok(())
}

/// The consumer's exchange, answered by the proxy. `Some(unix_fd)` after
/// `BEGIN`; `None` if the consumer left first.
async fn authenticate(
    consumer: &UnixStream,
    inbox: &mut Inbox,
    guid: &str,
) -> anyhow::Result<Option<bool>> {
    if !inbox.ensure(consumer, 1).await? {
        return Ok(None);
    }
    if inbox.data()[0] != 0 {
        return Err(sasl::SaslError::NoNul.into());
    }
    inbox.consume(1);
    let mut server = sasl::Server::new(guid);
    let mut budget = sasl::MAX_AUTH_BYTES;
    loop {
        let Some(line) = inbox.line(consumer, budget).await? else {
            return Ok(None);
        };
        budget = budget
            .checked_sub(line.len() + 2)
            .ok_or(sasl::SaslError::TooLong)?;
        match server.step(&line)? {
            sasl::Step::Reply(r) => fdpass::send_all_with_fds(consumer, &r, &[]).await?,
            sasl::Step::Begin => return Ok(Some(server.unix_fd())),
        }
    }
}

/// Authenticate to the bus as `uid`, pipelined.
async fn replay(
    bus: &UnixStream,
    inbox: &mut Inbox,
    uid: u32,
    unix_fd: bool,
) -> anyhow::Result<()> {
    let mut client = sasl::Client::new(unix_fd);
    fdpass::send_all_with_fds(bus, &client.request(uid), &[]).await?;
    loop {
        let Some(line) = inbox.line(bus, sasl::MAX_AUTH_BYTES).await? else {
            bail!("bus closed during authentication");
        };
        if client.reply(&line)? {
            return Ok(());
        }
    }
}

/// Bytes read from a socket but not consumed yet, with their fds. Holds at
/// most `cap` bytes.
struct Inbox {
    buf: Vec<u8>,
    head: usize,
    tail: usize,
    cap: usize,
    fds: VecDeque<OwnedFd>,
    received: Vec<OwnedFd>,
    cmsg: Vec<u8>,
}

impl Inbox {
    fn new(cap: usize) -> Self {
        Self {
            buf: Vec::new(),
            head: 0,
            tail: 0,
            cap,
            fds: VecDeque::new(),
            received: Vec::new(),
            cmsg: fdpass::cmsg_buffer(),
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.head..self.tail]
    }

    fn len(&self) -> usize {
        self.tail - self.head
    }

    fn consume(&mut self, n: usize) {
        self.head += n;
        if self.head == self.tail {
            self.head = 0;
            self.tail = 0;
        }
    }

    /// Read once; `false` at end of stream.
    async fn fill(&mut self, sock: &UnixStream) -> anyhow::Result<bool> {
        if self.tail == self.buf.len() {
            if self.head > 0 {
                self.buf.copy_within(self.head..self.tail, 0);
                self.tail -= self.head;
                self.head = 0;
            }
            if self.tail == self.buf.len() {
                if self.buf.len() >= self.cap {
                    bail!("more than {} bytes buffered", self.cap);
                }
                let grown = (self.buf.len() * 2).clamp(READ_CHUNK, self.cap);
                self.buf.resize(grown, 0);
            }
        }
        let Self {
            buf,
            tail,
            cmsg,
            received,
            ..
        } = self;
        let fd: RawFd = sock.as_raw_fd();
        let n = sock
            .async_io(Interest::READABLE, || {
                fdpass::recv_now_with(fd, &mut buf[*tail..], cmsg, received)
            })
            .await?;
        self.tail += n;
        self.fds.extend(self.received.drain(..));
        if self.fds.len() > MAX_QUEUED_FDS {
            bail!(
                "{} fds queued without a message claiming them",
                self.fds.len()
            );
        }
        Ok(n > 0)
    }

    /// Buffer at least `n` bytes; `false` if the stream ends first.
    async fn ensure(&mut self, sock: &UnixStream, n: usize) -> anyhow::Result<bool> {
        while self.len() < n {
            if n > self.cap {
                bail!(
                    "a message part of {n} bytes exceeds the {} byte buffer",
                    self.cap
                );
            }
            if !self.fill(sock).await? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Take one CRLF-terminated line (without CRLF), reading as needed.
    /// `None` at end of stream.
    async fn line(&mut self, sock: &UnixStream, limit: usize) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = sasl::line_end(self.data()) {
                let line = self.data()[..end - 2].to_vec();
                self.consume(end);
                return Ok(Some(line));
            }
            if self.len() > limit {
                return Err(sasl::SaslError::TooLong.into());
            }
            if !self.fill(sock).await? {
                return Ok(None);
            }
        }
    }
}

/// Messages the bus-to-consumer pump hands the other one, which alone
/// writes to the bus.
enum ToBus {
    /// One of the proxy's own calls.
    Send(Vec<u8>),
    /// The proxy's calls after `Hello` are all answered.
    Ready,
}

async fn proxy(
    config: &Config,
    consumer: &UnixStream,
    bus: &UnixStream,
    from_consumer: Inbox,
    from_bus: Inbox,
    session: &Session,
) -> anyhow::Result<()> {
    let (to_bus, from_down) = mpsc::unbounded_channel();
    let conn = Connection {
        filter: config.policy.clone().map(|p| Mutex::new(Filter::new(p))),
        session,
    };
    let up = conn.pump(consumer, bus, from_consumer, Direction::Up(from_down));
    let down = conn.pump(bus, consumer, from_bus, Direction::Down(to_bus));
    tokio::pin!(up, down);
    tokio::select! {
        r = &mut up => { r?; down.await }
        r = &mut down => { r?; up.await }
    }
}

enum Direction {
    /// Consumer to bus; receives what the other pump has for the bus.
    Up(mpsc::UnboundedReceiver<ToBus>),
    /// Bus to consumer.
    Down(mpsc::UnboundedSender<ToBus>),
}

/// What to do with one message.
enum Action {
    Forward,
    /// Send this instead.
    Replace(Vec<u8>),
    Skip,
    /// Forward, send the proxy's calls, wait for their answers.
    Hello(Vec<Vec<u8>>),
}

/// One consumer connection in message mode.
struct Connection<'a> {
    /// `None`: unfiltered link.
    filter: Option<Mutex<Filter>>,
    session: &'a Session,
}

impl Connection<'_> {
    fn filter(&self) -> Option<std::sync::MutexGuard<'_, Filter>> {
        self.filter
            .as_ref()
            .map(|f| f.lock().unwrap_or_else(|e| e.into_inner()))
    }

    async fn pump(
        &self,
        src: &UnixStream,
        dst: &UnixStream,
        mut inbox: Inbox,
        mut dir: Direction,
    ) -> anyhow::Result<()> {
        let mut out = Output::new(dst, self.session);
        loop {
            // The next message's prologue and header; `out` is flushed
            // before any wait for input.
            if !inbox.has(PROLOGUE) {
                out.flush().await?;
                if !inbox.ensure(src, PROLOGUE).await? {
                    if inbox.len() > 0 {
                        bail!("stream ended inside a message");
                    }
                    // Propagate the half-close; the other direction goes on.
                    let _ = nix::sys::socket::shutdown(
                        dst.as_raw_fd(),
                        nix::sys::socket::Shutdown::Write,
                    );
                    return Ok(());
                }
            }
            let frame = wire::frame(inbox.data())?.context("short prologue")?;
            if !inbox.has(frame.header_len) {
                out.flush().await?;
                if !inbox.ensure(src, frame.header_len).await? {
                    bail!("stream ended inside a message");
                }
            }
            let h = wire::parse_header(&inbox.data()[..frame.header_len])?;
            let n = h.unix_fds as usize;
            if n > inbox.fds.len() {
                bail!(
                    "message announces {n} fds, {} arrived with it",
                    inbox.fds.len()
                );
            }
            let fds: Vec<OwnedFd> = inbox.fds.drain(..n).collect();

            let (wants, limit) = match (&dir, self.filter()) {
                (_, None) => (false, 0),
                (Direction::Up(_), Some(_)) => (Filter::client_wants_body(&h), MAX_CLIENT_BODY),
                (Direction::Down(_), Some(f)) => (f.bus_wants_body(&h), MAX_BUS_BODY),
            };
            let with_body = wants && frame.body_len <= limit;
            if with_body && !inbox.has(frame.total()) {
                out.flush().await?;
                if !inbox.ensure(src, frame.total()).await? {
                    bail!("stream ended inside a message");
                }
            }
            let body = with_body.then(|| &inbox.data()[frame.header_len..frame.total()]);
            let action = match &mut dir {
                Direction::Up(_) => self.judge_up(&h, body)?,
                Direction::Down(tx) => self.judge_down(&h, body, tx),
            };

            match action {
                Action::Forward => out.forward(src, &mut inbox, frame.total(), fds).await?,
                Action::Replace(m) => {
                    out.push(&m);
                    out.skip(src, &mut inbox, frame.total()).await?;
                }
                Action::Skip => out.skip(src, &mut inbox, frame.total()).await?,
                Action::Hello(calls) => {
                    out.forward(src, &mut inbox, frame.total(), fds).await?;
                    for c in &calls {
                        out.push(c);
                    }
                    out.flush().await?;
                    let Direction::Up(rx) = &mut dir else {
                        unreachable!("Hello comes from the consumer");
                    };
                    self.hold(&mut out, rx).await?;
                }
            }
        }
    }

    /// Until the proxy's own calls after `Hello` are answered, consumer
    /// messages wait (their verdicts depend on the answers); meanwhile
    /// send the further calls the answers ask for.
    async fn hold(
        &self,
        out: &mut Output<'_>,
        rx: &mut mpsc::UnboundedReceiver<ToBus>,
    ) -> anyhow::Result<()> {
        if !self.filter().is_some_and(|f| f.holding()) {
            return Ok(());
        }
        while let Some(msg) = rx.recv().await {
            match msg {
                ToBus::Send(m) => {
                    out.push(&m);
                    out.flush().await?;
                }
                ToBus::Ready => break,
            }
        }
        Ok(())
    }

    /// Decide on one consumer message.
    fn judge_up(&self, h: &Header, body: Option<&[u8]>) -> anyhow::Result<Action> {
        let Some(mut filter) = self.filter() else {
            return Ok(Action::Forward);
        };
        let verdict = filter.from_client(h, body);
        drop(filter);
        let spec = &self.session.spec;
        Ok(match verdict {
            FromClient::Forward => Action::Forward,
            FromClient::ForwardHello(calls) => Action::Hello(calls),
            FromClient::Refuse { ping, why } => {
                link_event!(
                    tracing::Level::INFO,
                    spec,
                    member = h.member.as_deref().unwrap_or(""),
                    destination = h.destination.as_deref().unwrap_or(""),
                    "dbus: *DENIED* {why}"
                );
                match ping {
                    Some(p) => Action::Replace(p),
                    None => Action::Skip,
                }
            }
            FromClient::Drop(why) => {
                link_event!(tracing::Level::INFO, spec, "dbus: dropped: {why}");
                Action::Skip
            }
            FromClient::Disconnect(why) => bail!("consumer disconnected: {why}"),
        })
    }

    /// Decide on one bus message.
    fn judge_down(
        &self,
        h: &Header,
        body: Option<&[u8]>,
        to_bus: &mpsc::UnboundedSender<ToBus>,
    ) -> Action {
        let Some(mut filter) = self.filter() else {
            return Action::Forward;
        };
        let was_holding = filter.holding();
        let verdict = filter.from_bus(h, body);
        let ready = was_holding && !filter.holding();
        drop(filter);
        let action = match verdict {
            FromBus::Forward => Action::Forward,
            FromBus::Replace(m) => Action::Replace(m),
            FromBus::Drop(why) => {
                tracing::debug!("dbus: bus message dropped: {why}");
                Action::Skip
            }
            FromBus::Learnt(calls) => {
                for c in calls {
                    // The other pump is gone only if the connection is.
                    let _ = to_bus.send(ToBus::Send(c));
                }
                Action::Skip
            }
        };
        if ready {
            let _ = to_bus.send(ToBus::Ready);
        }
        action
    }
}

/// The writing half of a pump: complete messages are batched and written
/// before the pump waits for input; a message with fds or one that did
/// not arrive whole is written at once and its body streamed.
struct Output<'a> {
    dst: &'a UnixStream,
    session: &'a Session,
    batch: Vec<u8>,
}

impl<'a> Output<'a> {
    fn new(dst: &'a UnixStream, session: &'a Session) -> Self {
        Self {
            dst,
            session,
            batch: Vec::new(),
        }
    }

    fn push(&mut self, bytes: &[u8]) {
        self.batch.extend_from_slice(bytes);
    }

    async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.batch.is_empty() {
            fdpass::send_all_with_fds(self.dst, &self.batch, &[]).await?;
            self.session.stats.add_bytes(self.batch.len() as u64);
            self.batch.clear();
        }
        Ok(())
    }

    async fn send(&self, bytes: &[u8], fds: &[BorrowedFd<'_>]) -> anyhow::Result<()> {
        if bytes.is_empty() {
            return Ok(());
        }
        fdpass::send_all_with_fds(self.dst, bytes, fds).await?;
        self.session.stats.add_bytes(bytes.len() as u64);
        Ok(())
    }

    /// Forward the `total`-byte message at the head of `inbox`.
    async fn forward(
        &mut self,
        src: &UnixStream,
        inbox: &mut Inbox,
        total: usize,
        fds: Vec<OwnedFd>,
    ) -> anyhow::Result<()> {
        if fds.is_empty() && inbox.len() >= total {
            self.batch.extend_from_slice(&inbox.data()[..total]);
            inbox.consume(total);
            return Ok(());
        }
        // Fds ride with the first byte of a write, so this message starts
        // a write of its own; the part not yet read streams after it.
        self.flush().await?;
        let first = inbox.len().min(total);
        let b: Vec<BorrowedFd<'_>> = fds.iter().map(|f| f.as_fd()).collect();
        self.send(&inbox.data()[..first], &b).await?;
        inbox.consume(first);
        let mut left = total - first;
        while left > 0 {
            if !inbox.fill(src).await? {
                bail!("stream ended inside a message");
            }
            let n = inbox.len().min(left);
            self.send(&inbox.data()[..n], &[]).await?;
            inbox.consume(n);
            left -= n;
        }
        Ok(())
    }

    /// Discard the `total`-byte message at the head of `inbox`, reading
    /// the part not yet arrived as it comes.
    async fn skip(
        &mut self,
        src: &UnixStream,
        inbox: &mut Inbox,
        total: usize,
    ) -> anyhow::Result<()> {
        let first = inbox.len().min(total);
        inbox.consume(first);
        let mut left = total - first;
        if left > 0 {
            self.flush().await?;
        }
        while left > 0 {
            if !inbox.fill(src).await? {
                bail!("stream ended inside a message");
            }
            let n = inbox.len().min(left);
            inbox.consume(n);
            left -= n;
        }
        Ok(())
    }
}

impl Inbox {
    fn has(&self, n: usize) -> bool {
        self.len() >= n
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
