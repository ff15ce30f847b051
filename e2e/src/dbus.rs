//! A real D-Bus provider shared by `tests/dbus*.rs` and `benches/dbus.rs`:
//! Debian's dbus-daemon with the example container's own configuration on
//! a temp socket, the example service (`org.pantavisor.Example`) and a
//! service no link allows (`org.pantavisor.Hidden`, counting the calls it
//! gets) on it, and dbus links to it served by the daemon's accept loop
//! ([`Proxy`]). [`raw`] is a hand-written client for what libraries refuse
//! to send.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pv_xconnect::graph::ServiceType;
use pv_xconnect::link::Options;
use pv_xconnect::test_util::LinkSpecBuilder;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Proxy;

/// A zbus client connection to `address`; fails after 20 s.
pub async fn zbus_connect(address: &str) -> zbus::Connection {
    let build = zbus::connection::Builder::address(address)
        .expect("zbus address")
        .build();
    tokio::time::timeout(std::time::Duration::from_secs(20), build)
        .await
        .expect("zbus connect timed out")
        .expect("zbus connect")
}

/// The bus driver's `RequestName(name, flags)` through `c`: its reply code,
/// or the error exactly as zbus returns it (with the error message).
pub async fn request_name(c: &zbus::Connection, name: &str, flags: u32) -> zbus::Result<u32> {
    let reply = c
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "RequestName",
            &(name, flags),
        )
        .await?;
    reply.body().deserialize::<u32>()
}

/// dbus-daemon + the example service, torn down on drop.
pub struct Bus {
    pub dir: tempfile::TempDir,
    /// The "provider" pid links use: 0 (host), or dbus-daemon's own pid
    /// when it runs in a mount namespace of its own.
    pub provider_pid: i32,
    pub path: PathBuf,
    pub address: String,
    _daemon: tokio::process::Child,
    _service: zbus::Connection,
    hidden: zbus::Connection,
    hidden_calls: Arc<AtomicU64>,
}

/// The name no test link allows.
pub const HIDDEN: &str = "org.pantavisor.Hidden";

/// A service the bus lets everyone call, and links must hide.
struct Hidden(Arc<AtomicU64>);

#[zbus::interface(name = "org.pantavisor.Hidden")]
impl Hidden {
    #[zbus(name = "Secret")]
    fn secret(&self) -> String {
        self.0.fetch_add(1, Ordering::SeqCst);
        "secret".into()
    }
}

/// Test-only additions to the example bus policy: the hidden service may
/// be owned by root and called by anyone (so only a link can hide it), and
/// messages up to 128 MiB are accepted (the memory tests stream 100 MiB).
const TEST_POLICY: &str = r#"
  <policy user="root"><allow own_prefix="org.pantavisor.Hidden"/></policy>
  <policy context="default"><allow send_destination_prefix="org.pantavisor.Hidden"/></policy>
  <limit name="max_message_size">134217728</limit>
  <limit name="max_incoming_bytes">1000000000</limit>
</busconfig>"#;

impl Bus {
    pub async fn start() -> Bus {
        Self::start_with(None).await
    }

    /// dbus-daemon in a private mount namespace where `/etc/passwd` is
    /// `passwd`: a provider whose users differ from the host's.
    pub async fn start_with_passwd(passwd: &str) -> Bus {
        Self::start_with(Some(passwd)).await
    }

    async fn start_with(passwd: Option<&str>) -> Bus {
        pv_testkit::require_tool("dbus-daemon");
        let dir = tempfile::tempdir().expect("tempdir");
        // Role connections run with the role's uid: they must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let path = dir.path().join("system_bus_socket");
        let conf = pv_examples::dbus::BUS_CONF
            .replace(
                "unix:path=/run/dbus/system_bus_socket",
                &format!("unix:path={}", path.display()),
            )
            .replace("</busconfig>", TEST_POLICY);
        let conf_path = dir.path().join("bus.conf");
        std::fs::write(&conf_path, conf).expect("write bus.conf");
        let mut cmd = match passwd {
            None => tokio::process::Command::new("dbus-daemon"),
            Some(text) => {
                let pw = dir.path().join("passwd");
                std::fs::write(&pw, text).expect("write passwd");
                pv_testkit::require_root();
                let mut c = tokio::process::Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                    .arg(r#"mount --bind "$0" /etc/passwd && exec dbus-daemon "$@""#)
                    .arg(&pw);
                c
            }
        };
        let mut daemon = cmd
            .args(["--nofork", "--nopidfile", "--print-address"])
            .arg(format!("--config-file={}", conf_path.display()))
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn dbus-daemon");
        let stdout = daemon.stdout.take().expect("stdout");
        let address = BufReader::new(stdout)
            .lines()
            .next_line()
            .await
            .expect("read address")
            .expect("dbus-daemon printed no address");
        let service = pv_examples::dbus::serve(&address)
            .await
            .expect("publish org.pantavisor.Example");
        let hidden_calls = Arc::new(AtomicU64::new(0));
        let hidden = zbus::connection::Builder::address(address.as_str())
            .expect("address")
            .name(HIDDEN)
            .expect("name")
            .serve_at("/org/pantavisor/Hidden", Hidden(hidden_calls.clone()))
            .expect("serve")
            .build()
            .await
            .expect("publish org.pantavisor.Hidden");
        let provider_pid = match passwd {
            None => 0,
            Some(_) => daemon.id().expect("dbus-daemon pid") as i32,
        };
        Bus {
            dir,
            provider_pid,
            path,
            address,
            _daemon: daemon,
            _service: service,
            hidden,
            hidden_calls,
        }
    }

    /// Calls `org.pantavisor.Hidden` answered so far.
    pub fn hidden_calls(&self) -> u64 {
        self.hidden_calls.load(Ordering::SeqCst)
    }

    /// The hidden service's unique name.
    pub fn hidden_unique_name(&self) -> String {
        self.hidden.unique_name().expect("unique name").to_string()
    }

    /// Start a proxy for a link with this role and interface.
    pub async fn proxy(&self, role: &str, interface: &str) -> Proxy {
        self.proxy_with(role, interface, None).await
    }

    pub async fn proxy_with(&self, role: &str, interface: &str, uid: Option<u32>) -> Proxy {
        self.proxy_opts(role, interface, uid, &Options::default())
            .await
    }

    /// A link with daemon options of its own (timeouts).
    pub async fn proxy_opts(
        &self,
        role: &str,
        interface: &str,
        uid: Option<u32>,
        options: &Options,
    ) -> Proxy {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let spec = LinkSpecBuilder::new(ServiceType::Dbus)
            .provider("test-provider", self.provider_pid)
            .name("system-bus")
            .role(role)
            .interface(interface)
            .target(self.dir.path().join(format!("proxy-{n}.sock")))
            .socket(&self.path)
            .uid(uid)
            .arc();
        Proxy::start_with(spec, options).await
    }
}

pub mod raw {
    //! A D-Bus client written byte by byte: it authenticates, sends
    //! whatever the test builds (two calls with one serial, an eavesdropping
    //! match rule, a 100 MiB message that never ends) and reads messages
    //! back with a parser of its own, independent of the daemon's.

    use std::path::Path;
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::UnixStream;

    pub const BUS: &str = "org.freedesktop.DBus";

    /// One received message.
    #[derive(Debug, Clone)]
    pub struct Msg {
        pub kind: u8,
        pub serial: u32,
        pub reply_serial: Option<u32>,
        pub error_name: Option<String>,
        pub sender: Option<String>,
        pub member: Option<String>,
        pub signature: String,
        pub body: Vec<u8>,
    }

    impl Msg {
        /// String arguments, for bodies of strings only.
        pub fn strings(&self) -> Vec<String> {
            let mut r = Cursor::new(&self.body);
            self.signature.chars().filter_map(|_| r.string()).collect()
        }

        /// The `as` argument of a ListNames reply.
        pub fn string_array(&self) -> Vec<String> {
            let mut r = Cursor::new(&self.body);
            let n = r.u32().unwrap_or(0) as usize;
            let end = r.pos + n;
            let mut out = Vec::new();
            while r.pos < end {
                match r.string() {
                    Some(s) => out.push(s),
                    None => break,
                }
            }
            out
        }

        pub fn is_error(&self, name: &str) -> bool {
            self.kind == 3 && self.error_name.as_deref() == Some(name)
        }
    }

    struct Cursor<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl<'a> Cursor<'a> {
        fn new(b: &'a [u8]) -> Self {
            Self { b, pos: 0 }
        }
        fn u32(&mut self) -> Option<u32> {
            self.pos = (self.pos + 3) & !3;
            let v = self.b.get(self.pos..self.pos + 4)?;
            self.pos += 4;
            Some(u32::from_le_bytes([v[0], v[1], v[2], v[3]]))
        }
        fn string(&mut self) -> Option<String> {
            let n = self.u32()? as usize;
            let s = self.b.get(self.pos..self.pos + n)?;
            self.pos += n + 1;
            Some(String::from_utf8_lossy(s).into_owned())
        }
    }

    fn pad(m: &mut Vec<u8>, a: usize) {
        while !m.len().is_multiple_of(a) {
            m.push(0);
        }
    }

    fn put_str(m: &mut Vec<u8>, s: &str) {
        pad(m, 4);
        m.extend_from_slice(&(s.len() as u32).to_le_bytes());
        m.extend_from_slice(s.as_bytes());
        m.push(0);
    }

    /// A little-endian method call with string arguments.
    pub fn call(
        serial: u32,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        args: &[&str],
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for a in args {
            put_str(&mut body, a);
        }
        header(
            1,
            serial,
            dest,
            path,
            iface,
            member,
            &"s".repeat(args.len()),
            body.len() as u32,
            &body,
        )
    }

    /// A call's header announcing `body_len` bytes of body (signature
    /// `ay`), followed by `body`: the start of a body that may never end.
    pub fn big_call(serial: u32, dest: &str, body_len: u32, body: &[u8]) -> Vec<u8> {
        header(
            1,
            serial,
            dest,
            "/",
            "org.x.Big",
            "Take",
            "ay",
            body_len,
            body,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn header(
        kind: u8,
        serial: u32,
        dest: &str,
        path: &str,
        iface: &str,
        member: &str,
        sig: &str,
        body_len: u32,
        body: &[u8],
    ) -> Vec<u8> {
        let mut m = vec![b'l', kind, 0, 1];
        m.extend_from_slice(&body_len.to_le_bytes());
        m.extend_from_slice(&serial.to_le_bytes());
        m.extend_from_slice(&[0; 4]);
        for (code, t, v) in [
            (1u8, b'o', path),
            (6, b's', dest),
            (2, b's', iface),
            (3, b's', member),
        ] {
            pad(&mut m, 8);
            m.extend_from_slice(&[code, 1, t, 0]);
            put_str(&mut m, v);
        }
        if !sig.is_empty() {
            pad(&mut m, 8);
            m.extend_from_slice(&[8, 1, b'g', 0, sig.len() as u8]);
            m.extend_from_slice(sig.as_bytes());
            m.push(0);
        }
        let n = (m.len() - 16) as u32;
        m[12..16].copy_from_slice(&n.to_le_bytes());
        pad(&mut m, 8);
        m.extend_from_slice(body);
        m
    }

    /// What a read brought.
    #[derive(Debug)]
    pub enum Recv {
        Msg(Msg),
        Closed,
        Silent,
    }

    pub struct Raw {
        pub stream: UnixStream,
        buf: Vec<u8>,
        pub unique_name: String,
    }

    impl Raw {
        /// Connect and authenticate (claiming uid 0), without `Hello`.
        pub async fn authenticated(path: &Path) -> Raw {
            let mut stream = UnixStream::connect(path).await.expect("connect");
            stream
                .write_all(b"\0AUTH EXTERNAL 30\r\n")
                .await
                .expect("auth");
            let mut line = Vec::new();
            while !line.ends_with(b"\r\n") {
                let mut b = [0u8; 1];
                assert_eq!(
                    stream.read(&mut b).await.expect("read"),
                    1,
                    "closed during auth"
                );
                line.push(b[0]);
            }
            assert!(
                line.starts_with(b"OK "),
                "{}",
                String::from_utf8_lossy(&line)
            );
            stream.write_all(b"BEGIN\r\n").await.expect("begin");
            Raw {
                stream,
                buf: Vec::new(),
                unique_name: String::new(),
            }
        }

        /// Authenticated and registered (`Hello`, serial 1).
        pub async fn connect(path: &Path) -> Raw {
            let mut r = Self::authenticated(path).await;
            r.send(&call(1, BUS, "/org/freedesktop/DBus", BUS, "Hello", &[]))
                .await;
            let reply = r.reply_to(1).await;
            r.unique_name = reply.strings().pop().expect("unique name");
            r
        }

        pub async fn send(&mut self, bytes: &[u8]) {
            self.stream.write_all(bytes).await.expect("send");
        }

        /// The next message, `Closed` at end of stream, `Silent` if none
        /// comes within `wait`.
        pub async fn recv(&mut self, wait: Duration) -> Recv {
            loop {
                if let Some(m) = self.parse() {
                    return Recv::Msg(m);
                }
                let mut chunk = [0u8; 65536];
                match tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
                    Err(_) => return Recv::Silent,
                    Ok(Ok(0)) | Ok(Err(_)) => return Recv::Closed,
                    Ok(Ok(n)) => self.buf.extend_from_slice(&chunk[..n]),
                }
            }
        }

        /// The reply to `serial`, skipping signals; panics on close.
        pub async fn reply_to(&mut self, serial: u32) -> Msg {
            loop {
                match self.recv(Duration::from_secs(20)).await {
                    Recv::Msg(m) if m.reply_serial == Some(serial) => return m,
                    Recv::Msg(_) => continue,
                    other => panic!("no reply to {serial}: {other:?}"),
                }
            }
        }

        /// Every message until the connection stays silent for `wait`
        /// (`closed` tells whether it ended instead).
        pub async fn drain(&mut self, wait: Duration) -> (Vec<Msg>, bool) {
            let mut out = Vec::new();
            loop {
                match self.recv(wait).await {
                    Recv::Msg(m) => out.push(m),
                    Recv::Closed => return (out, true),
                    Recv::Silent => return (out, false),
                }
            }
        }

        fn parse(&mut self) -> Option<Msg> {
            let b = &self.buf;
            if b.len() < 16 {
                return None;
            }
            assert_eq!(b[0], b'l', "big-endian message");
            let u = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
            let body_len = u(4) as usize;
            let fields = u(12) as usize;
            let body_at = 16 + ((fields + 7) & !7);
            if b.len() < body_at + body_len {
                return None;
            }
            let mut m = Msg {
                kind: b[1],
                serial: u(8),
                reply_serial: None,
                error_name: None,
                sender: None,
                member: None,
                signature: String::new(),
                body: b[body_at..body_at + body_len].to_vec(),
            };
            let mut p = 16;
            while p < 16 + fields {
                p = (p + 7) & !7;
                let code = b[p];
                let sig = b[p + 2];
                p += 4;
                match sig {
                    b's' | b'o' => {
                        let n = u(p) as usize;
                        let v = String::from_utf8_lossy(&b[p + 4..p + 4 + n]).into_owned();
                        p += 4 + n + 1;
                        match code {
                            3 => m.member = Some(v),
                            4 => m.error_name = Some(v),
                            7 => m.sender = Some(v),
                            _ => {}
                        }
                    }
                    b'u' => {
                        if code == 5 {
                            m.reply_serial = Some(u(p));
                        }
                        p += 4;
                    }
                    b'g' => {
                        let n = b[p] as usize;
                        m.signature = String::from_utf8_lossy(&b[p + 1..p + 1 + n]).into_owned();
                        p += n + 2;
                    }
                    other => panic!("unexpected header field type {other}"),
                }
            }
            self.buf.drain(..body_at + body_len);
            Some(m)
        }
    }
}
