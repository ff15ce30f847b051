//! A real D-Bus provider shared by `tests/dbus.rs` and `benches/dbus.rs`:
//! Debian's dbus-daemon with the example container's own configuration on
//! a temp socket, the example service (`org.pantavisor.Example`) on it, and
//! dbus links to it served by the daemon's accept loop ([`Proxy`]).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;

use pv_xconnect::graph::ServiceType;
use pv_xconnect::test_util::LinkSpecBuilder;
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::Proxy;

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
        pv_testkit::require_tool("dbus-daemon");
        let dir = tempfile::tempdir().expect("tempdir");
        // Role connections run with the role's uid: they must reach the socket.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod tempdir");
        let path = dir.path().join("system_bus_socket");
        let conf = pv_examples::dbus::BUS_CONF.replace(
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
        let spec = LinkSpecBuilder::new(ServiceType::Dbus)
            .provider("test-provider", self.provider_pid)
            .name("system-bus")
            .role(role)
            .interface(interface)
            .target(self.dir.path().join(format!("proxy-{n}.sock")))
            .socket(&self.path)
            .uid(uid)
            .arc();
        Proxy::start(spec).await
    }
}
