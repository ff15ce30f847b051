//! A real D-Bus fixture shared by `tests/dbus.rs` and `benches/dbus.rs`:
//! Debian's dbus-daemon with the example container's own configuration on
//! a temp socket, the example service (`org.pantavisor.Example`) on it, and
//! proxies: a temp listener whose accepted streams go to
//! `link::dbus::serve`, exactly as the link's accept loop does.

#![allow(dead_code)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;

use pv_xconnect::graph::{LinkSpec, ServiceType};
use pv_xconnect::link::{dbus, LinkStats, Session, Upstream};
use pv_xconnect::shutdown::Shutdown;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::UnixListener;

pub const BUS_CONF: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../examples-containers/pv-example-dbus-server/rootfs/etc/pv-example-dbus/bus.conf"
);

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
}

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
        assert!(
            std::path::Path::new("/usr/bin/dbus-daemon").exists(),
            "dbus-daemon missing: apt-get install -y dbus-daemon (ci/install-deps.sh does)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // Role connections run with the role's uid: they must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let path = dir.path().join("system_bus_socket");
        let conf = std::fs::read_to_string(BUS_CONF)
            .expect("example bus.conf")
            .replace(
                "unix:path=/run/dbus/system_bus_socket",
                &format!("unix:path={}", path.display()),
            );
        let conf_path = dir.path().join("bus.conf");
        std::fs::write(&conf_path, conf).expect("write bus.conf");
        let mut cmd = match passwd {
            None => tokio::process::Command::new("dbus-daemon"),
            Some(text) => {
                let pw = dir.path().join("passwd");
                std::fs::write(&pw, text).expect("write passwd");
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
        }
    }

    /// Start a proxy for a link with this role and interface.
    pub async fn proxy(&self, role: &str, interface: &str) -> Proxy {
        self.proxy_with(role, interface, None).await
    }

    pub async fn proxy_with(&self, role: &str, interface: &str, uid: Option<u32>) -> Proxy {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = self.dir.path().join(format!("proxy-{n}.sock"));
        let spec = Arc::new(LinkSpec {
            consumer: "test-consumer".into(),
            consumer_pid: 0,
            provider: "test-provider".into(),
            provider_pid: self.provider_pid,
            name: "system-bus".into(),
            kind: ServiceType::Dbus,
            role: role.into(),
            interface: interface.into(),
            target: path.clone(),
            socket: self.path.clone(),
            uid,
        });
        let upstream = Arc::new(Upstream::from_spec(&spec));
        let config = Arc::new(
            dbus::Config::prepare(&spec, &upstream)
                .await
                .expect("prepare"),
        );
        let stats = Arc::new(LinkStats::default());
        let shutdown = Shutdown::new();
        let session = Session {
            spec,
            upstream,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
        };
        let listener = UnixListener::bind(&path).expect("bind proxy socket");
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (config, session) = (config.clone(), session.clone());
                tokio::spawn(async move {
                    let _ = dbus::serve(&config, stream, &session).await;
                });
            }
        });
        Proxy {
            address: format!("unix:path={}", path.display()),
            path,
            stats,
            shutdown,
            task,
        }
    }
}

/// One link's listener; stops on drop.
pub struct Proxy {
    pub path: PathBuf,
    pub address: String,
    pub stats: Arc<LinkStats>,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub fn socket(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.task.abort();
    }
}
