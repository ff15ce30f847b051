//! The D-Bus example: the `org.pantavisor.Example` service (run by
//! `pv-example-dbus-server` next to its own dbus-daemon) and the client
//! side shared by `pv-example-dbus-client*` and `pv-example-dbus-attacker`.
//!
//! The service answers `GetInfo` like upstream's Python example, and adds
//! `WhoAmI` (the caller's uid as the bus reports it, so tests can check the
//! role masquerade), `ReadFd` (reads a passed fd) and `MakeFd` (returns a
//! fd), so fd passing can be checked both ways.

use std::io::{Read, Seek, Write};
use std::time::Duration;

use zbus::zvariant::{Fd, OwnedFd};

/// The well-known name the service owns.
pub const NAME: &str = "org.pantavisor.Example";
/// Its object path.
pub const PATH: &str = "/org/pantavisor/Example";
/// `GetInfo`'s answer (byte-for-byte upstream's).
pub const INFO: &str = r#"{"service": "dbus-example", "status": "active"}"#;
/// Where the system bus socket lives in both containers.
pub const SOCKET: &str = "/run/dbus/system_bus_socket";
/// The bus configuration the `pv-example-dbus-server` container ships
/// (listening on [`SOCKET`]), for tests that run that bus elsewhere.
pub const BUS_CONF: &str =
    include_str!("../pv-example-dbus-server/rootfs/etc/pv-example-dbus/bus.conf");
/// The `/etc/passwd` of the `pv-example-dbus-server` container (it has an
/// `operator` user, 1001, which the hosts running the tests do not).
pub const SERVER_PASSWD: &str = include_str!("../pv-example-dbus-server/rootfs/etc/passwd");

/// The service object.
pub struct Example;

#[zbus::interface(name = "org.pantavisor.Example")]
impl Example {
    #[zbus(name = "GetInfo")]
    fn get_info(&self) -> String {
        INFO.to_owned()
    }

    /// The caller's uid according to the bus (GetConnectionUnixUser).
    #[zbus(name = "WhoAmI")]
    async fn who_am_i(
        &self,
        #[zbus(header)] header: zbus::message::Header<'_>,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> zbus::fdo::Result<u32> {
        let sender = header
            .sender()
            .ok_or_else(|| zbus::fdo::Error::Failed("call without sender".into()))?;
        let bus = zbus::fdo::DBusProxy::new(conn).await?;
        bus.get_connection_unix_user(sender.clone().into()).await
    }

    /// Read (up to 64 KiB of) the passed file from its start.
    #[zbus(name = "ReadFd")]
    fn read_fd(&self, fd: OwnedFd) -> zbus::fdo::Result<String> {
        let fd: std::os::fd::OwnedFd = fd.into();
        let mut f = std::fs::File::from(fd);
        let _ = f.rewind();
        let mut s = String::new();
        f.take(64 * 1024)
            .read_to_string(&mut s)
            .map_err(|e| zbus::fdo::Error::IOError(e.to_string()))?;
        Ok(s)
    }

    /// A fresh anonymous file holding `content`, returned as a fd.
    #[zbus(name = "MakeFd")]
    fn make_fd(&self, content: String) -> zbus::fdo::Result<OwnedFd> {
        let io = |e: std::io::Error| zbus::fdo::Error::IOError(e.to_string());
        let mut f = tempfile_in_memory().map_err(io)?;
        f.write_all(content.as_bytes()).map_err(io)?;
        f.rewind().map_err(io)?;
        Ok(std::os::fd::OwnedFd::from(f).into())
    }
}

fn tempfile_in_memory() -> std::io::Result<std::fs::File> {
    let m = memfd::MemfdOptions::default()
        .create("pv-example-dbus")
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(m.into_file())
}

/// Publish [`Example`] on the bus at `address` (a D-Bus address string).
pub async fn serve(address: &str) -> zbus::Result<zbus::Connection> {
    zbus::connection::Builder::address(address)?
        .name(NAME)?
        .serve_at(PATH, Example)?
        .build()
        .await
}

/// Client-side view of the service.
#[zbus::proxy(
    interface = "org.pantavisor.Example",
    default_service = "org.pantavisor.Example",
    default_path = "/org/pantavisor/Example"
)]
pub trait Example {
    #[zbus(name = "GetInfo")]
    fn get_info(&self) -> zbus::Result<String>;
    #[zbus(name = "WhoAmI")]
    fn who_am_i(&self) -> zbus::Result<u32>;
    #[zbus(name = "ReadFd")]
    fn read_fd(&self, fd: Fd<'_>) -> zbus::Result<String>;
    #[zbus(name = "MakeFd")]
    fn make_fd(&self, content: &str) -> zbus::Result<OwnedFd>;
}

/// Connect to the bus at `socket`, retrying until `patience` runs out
/// (the link may not be injected yet when a container starts).
pub async fn connect(socket: &str, patience: Duration) -> zbus::Result<zbus::Connection> {
    let deadline = tokio::time::Instant::now() + patience;
    let address = format!("unix:path={socket}");
    loop {
        match zbus::connection::Builder::address(address.as_str())?
            .build()
            .await
        {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

/// What `pv-example-dbus-client*` does: GetInfo, WhoAmI, print
/// `dbus OK uid=<n>`. With `once` it returns after one round; otherwise it
/// repeats every 30 s (a container that keeps running).
pub async fn client_main(socket: &str, once: bool) -> anyhow::Result<()> {
    loop {
        let round = async {
            let conn = connect(socket, Duration::from_secs(60)).await?;
            let p = ExampleProxy::new(&conn).await?;
            let info = p.get_info().await?;
            println!("{info}");
            let uid = p.who_am_i().await?;
            println!("dbus OK uid={uid}");
            anyhow::Ok(())
        };
        let r = round.await;
        if let Err(e) = &r {
            println!("dbus ERROR {e:#}");
        }
        if once {
            return r;
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
    }
}

/// What `pv-example-dbus-attacker` tries; each entry is (attempt, refused,
/// detail). An attempt counts as refused only if the proxy (or the bus)
/// said no: `AccessDenied`, a name that looks absent (a filtered link
/// answers for hidden names exactly as the bus does for absent ones), or an
/// identity other than the one claimed.
pub async fn attack(socket: &str) -> anyhow::Result<Vec<(String, bool, String)>> {
    let mut out = Vec::new();
    let conn = connect(socket, Duration::from_secs(60)).await?;

    let what = format!("own {NAME}");
    out.push(match conn.request_name(NAME).await {
        Ok(()) => (what, false, "name acquired".into()),
        Err(e) => (what, is_refused(&e), e.to_string()),
    });

    let what = "call org.freedesktop.systemd1".to_owned();
    let r = conn
        .call_method(
            Some("org.freedesktop.systemd1"),
            "/org/freedesktop/systemd1",
            Some("org.freedesktop.systemd1.Manager"),
            "ListUnits",
            &(),
        )
        .await;
    out.push(match r {
        Ok(_) => (what, false, "call answered".into()),
        Err(e) => (what, is_refused(&e), e.to_string()),
    });

    let what = "claim uid 0".to_owned();
    out.push(match claim_uid_0(socket).await {
        Err(e) => (what, true, format!("authentication refused: {e}")),
        Ok(c) => match ExampleProxy::new(&c).await?.who_am_i().await {
            Ok(0) => (what, false, "bus sees uid 0".into()),
            Ok(uid) => (what, true, format!("bus sees uid {uid}")),
            Err(e) => (what, is_refused(&e), e.to_string()),
        },
    });
    Ok(out)
}

/// Authenticates with `AUTH EXTERNAL` naming uid 0 whatever our real uid
/// is, then connects over that socket. The SASL exchange is written here
/// because zbus only lets a client choose the uid it claims from 5.13 on,
/// which needs a newer Rust than the examples' MSRV (meta-layer/README.md).
pub async fn claim_uid_0(socket: &str) -> zbus::Result<zbus::Connection> {
    use tokio::io::AsyncWriteExt;

    let mut stream = tokio::net::UnixStream::connect(socket).await?;
    // NUL credentials byte, then "0" hex-encoded as the authorization id.
    stream.write_all(b"\0AUTH EXTERNAL 30\r\n").await?;
    let line = read_sasl_line(&mut stream).await?;
    let guid = match line.strip_prefix("OK ") {
        Some(guid) => guid.to_owned(),
        None => return Err(zbus::Error::Handshake(format!("server answered {line:?}"))),
    };
    // zbus assumes fd passing on a unix socket it did not authenticate.
    stream.write_all(b"NEGOTIATE_UNIX_FD\r\n").await?;
    let line = read_sasl_line(&mut stream).await?;
    if line != "AGREE_UNIX_FD" {
        return Err(zbus::Error::Handshake(format!("server answered {line:?}")));
    }
    stream.write_all(b"BEGIN\r\n").await?;
    let conn = zbus::connection::Builder::authenticated_socket(stream, guid)?
        .build()
        .await?;
    // zbus says Hello only on connections it authenticated itself; the bus
    // refuses every other message before it.
    zbus::fdo::DBusProxy::new(&conn).await?.hello().await?;
    Ok(conn)
}

/// One SASL line, without its CRLF. Read byte by byte (a 1-byte buffer):
/// nothing past it may be consumed, the socket is handed to zbus next.
async fn read_sasl_line(stream: &mut tokio::net::UnixStream) -> zbus::Result<String> {
    use tokio::io::AsyncBufReadExt;

    let mut line = String::new();
    tokio::io::BufReader::with_capacity(1, stream)
        .read_line(&mut line)
        .await?;
    Ok(line.trim_end().to_owned())
}

/// Whether the bus (or a filtering proxy) said no: `AccessDenied`, or a
/// name that looks absent.
pub fn is_refused(e: &zbus::Error) -> bool {
    match e {
        zbus::Error::MethodError(name, _, _) => matches!(
            name.as_str(),
            "org.freedesktop.DBus.Error.AccessDenied"
                | "org.freedesktop.DBus.Error.ServiceUnknown"
                | "org.freedesktop.DBus.Error.NameHasNoOwner"
        ),
        zbus::Error::FDO(f) => matches!(
            **f,
            zbus::fdo::Error::AccessDenied(_)
                | zbus::fdo::Error::ServiceUnknown(_)
                | zbus::fdo::Error::NameHasNoOwner(_)
        ),
        _ => false,
    }
}
