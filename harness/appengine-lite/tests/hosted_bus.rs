//! The hosted D-Bus system bus (`--hosted-bus`; upstream's
//! PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS as meta-pantavisor's
//! `feature/xconnect-hosted-systembus` enables it) with Debian's real
//! dbus-daemon, run as root: the managed `pv-dbus` daemon, the `_pv_` links
//! and their uids, the generated default-deny policy seen from clients of
//! each role's uid (as pv-xconnect's SASL masquerade presents them), and
//! the state validation. The clients are `dbus-send` under `setpriv`; the
//! name owner is this test binary re-run under the owner role's uid.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const NAME: &str = "org.pantavisor.Example";

/// Re-run of this binary that owns [`NAME`] on the bus at
/// `PVX_TEST_BUS` and answers `GetInfo` (does nothing without it).
#[test]
fn owner_helper() {
    let Ok(bus) = std::env::var("PVX_TEST_BUS") else {
        return;
    };
    struct Example;
    #[zbus::interface(name = "org.pantavisor.Example")]
    impl Example {
        #[zbus(name = "GetInfo")]
        fn get_info(&self) -> String {
            r#"{"service": "dbus-example", "status": "active"}"#.into()
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let _conn = zbus::connection::Builder::address(format!("unix:path={bus}").as_str())
            .expect("address")
            .name(NAME)
            .expect("name")
            .serve_at("/org/pantavisor/Example", Example)
            .expect("serve")
            .build()
            .await
            .expect("own org.pantavisor.Example as the owner role");
        println!("owner ready");
        std::future::pending::<()>().await;
    });
}

/// `dbus-send` on the bus as `uid`.
fn send_as(uid: u32, bus: &str, args: &[&str]) -> Output {
    Command::new("setpriv")
        .args([
            &format!("--reuid={uid}"),
            &format!("--regid={uid}"),
            "--clear-groups",
            "dbus-send",
            // --bus registers (Hello) like any bus client; --address
            // would not.
            &format!("--bus=unix:path={bus}"),
            "--print-reply",
        ])
        .args(args)
        .output()
        .expect("setpriv dbus-send (util-linux, dbus-bin)")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn exports(root: &std::path::Path) {
    let bus_req = |role: &str| {
        json!({"name":"system-bus","type":"dbus","role":role,
               "interface":NAME,"target":"/run/dbus/system_bus_socket"})
    };
    write_exports(
        root,
        &[
            Spec {
                required: vec![bus_req("example-service")],
                services: Some(json!({"#spec":"service-manifest-xconnect@1","services":[
                    {"type":"dbus","bus":"system-bus","owns":NAME,
                     "role":"example-service","allow":["operator","monitor"]}]})),
                ..Spec::new("host-server", "sleep 1000")
            },
            Spec {
                required: vec![bus_req("operator")],
                ..Spec::new("host-client", "sleep 1000")
            },
            Spec {
                required: vec![bus_req("stranger")],
                ..Spec::new("stranger", "sleep 1000")
            },
        ],
    );
}

#[test]
fn managed_bus_links_and_generated_policy() {
    let root = tempfile::tempdir().expect("tempdir");
    exports(root.path());
    let xc = script(root.path(), "fake-xconnect", "exec sleep 1000");
    let ae = start_with(root, &xc, Timing::fast(5000), &["--hosted-bus"]);
    ae.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
    let bus = ae.root.path().join("run/pv/dbus/system_bus_socket");
    let bus_s = bus.to_str().expect("utf-8").to_owned();

    // pv-dbus: listed, a live dbus-daemon with the generated config.
    let d = ae.get_json("/daemons");
    let pvdbus = d
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "pv-dbus"))
        .cloned()
        .unwrap_or(Value::Null);
    assert_eq!(pvdbus["respawn"], true, "{d}");
    let pid = pvdbus["pid"].as_i64().unwrap_or(0);
    wait_for(Duration::from_secs(5), || bus.exists()).expect("bus socket");
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        cmdline.contains("dbus-daemon") && cmdline.contains("run/pv/dbus/system.conf"),
        "{cmdline:?}"
    );

    // Graph: provider _pv_, pid 0, the bus socket, uid per role.
    let g = ae.get_json("/xconnect-graph");
    let by = |c: &str| {
        g.as_array()
            .and_then(|a| a.iter().find(|l| l["consumer"] == c))
            .cloned()
            .unwrap_or(Value::Null)
    };
    for (c, role, uid) in [
        ("host-server", "example-service", 90000),
        ("host-client", "operator", 90001),
        ("stranger", "stranger", 90003),
    ] {
        let l = by(c);
        assert_eq!(l["provider"], "_pv_", "{l}");
        assert_eq!(l["provider_pid"], 0);
        assert_eq!(l["type"], "dbus");
        assert_eq!(l["role"], role);
        assert_eq!(l["socket"], bus_s.as_str());
        assert_eq!(l["uid"], uid, "{l}");
        assert!(l["consumer_pid"].as_i64().unwrap_or(0) > 0);
    }

    // The owner role may own the name (through the passwd jail, the policy's
    // `pv-dbus-example-service` user is uid 90000).
    let mut owner = Command::new("setpriv")
        .args(["--reuid=90000", "--regid=90000", "--clear-groups"])
        .arg(std::env::current_exe().expect("test binary"))
        .args(["--exact", "owner_helper", "--nocapture"])
        .env("PVX_TEST_BUS", &bus_s)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("owner");
    let has_owner = || {
        let o = send_as(
            0,
            &bus_s,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.NameHasOwner",
                &format!("string:{NAME}"),
            ],
        );
        text(&o).contains("boolean true")
    };
    let owned = wait_for(Duration::from_secs(10), has_owner);
    let call = |uid| {
        send_as(
            uid,
            &bus_s,
            &[
                &format!("--dest={NAME}"),
                "/org/pantavisor/Example",
                "org.pantavisor.Example.GetInfo",
            ],
        )
    };
    let operator = call(90001);
    let stranger = call(90003);
    let root_call = call(0);
    let rogue = send_as(
        90001,
        &bus_s,
        &[
            "--dest=org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus.RequestName",
            "string:org.pantavisor.Rogue",
            "uint32:0",
        ],
    );
    let _ = owner.kill();
    let _ = owner.wait();
    owned.unwrap_or_else(|| {
        let conf = ae.root.path().join("run/pv/dbus");
        panic!(
            "owner role got no name; policy:\n{}\npasswd tail:\n{}\nlog:\n{}",
            std::fs::read_to_string(conf.join("policy.d/pv-generated.conf")).unwrap_or_default(),
            std::fs::read_to_string(conf.join("passwd"))
                .unwrap_or_default()
                .lines()
                .rev()
                .take(4)
                .collect::<Vec<_>>()
                .join("\n"),
            ae.log()
        )
    });
    assert!(
        operator.status.success() && text(&operator).contains(r#""status": "active""#),
        "allowed role calls the owner: {}",
        text(&operator)
    );
    assert!(
        !root_call.status.success() && text(&root_call).contains("AccessDenied"),
        "root, no role of the name, is denied: {}",
        text(&root_call)
    );
    // A role nobody allowed has a uid but no user in the bus's passwd: the
    // bus does not even let it register.
    assert!(
        !stranger.status.success() && !text(&stranger).contains("active"),
        "a role not allowed gets nothing: {}",
        text(&stranger)
    );
    assert!(
        text(&rogue).contains("AccessDenied") || text(&rogue).contains("not allowed to own"),
        "operator may not own names: {}",
        text(&rogue)
    );

    // Stopping pv-dbus through pv-ctrl stops the bus.
    assert_eq!(ae.put("/daemons/pv-dbus", r#"{"action":"stop"}"#).0, 200);
    wait_for(Duration::from_secs(5), || {
        ae.get_json("/daemons")
            .as_array()
            .and_then(|a| a.iter().find(|x| x["name"] == "pv-dbus").cloned())
            .is_some_and(|x| x["pid"] == -1)
    })
    .expect("pv-dbus stopped");
}

/// dbus_daemon.c with the bus on: a container exporting `system-bus`
/// fails the first state run like a missing required service (see the
/// appengine tests: the appengine-mode non-reboot, pv-ctrl gone; nothing
/// starts); without the option the same state boots.
#[test]
fn a_container_exporting_system_bus_is_refused() {
    let shadow = |root: &std::path::Path| {
        write_exports(
            root,
            &[Spec {
                services: Some(json!([{"name":"system-bus","type":"dbus",
                    "socket":"/run/dbus/system_bus_socket"}])),
                ..Spec::new("shadow", "sleep 1000")
            }],
        )
    };
    let root = tempfile::tempdir().expect("tempdir");
    shadow(root.path());
    let xc = script(root.path(), "fake-xconnect", "exec sleep 1000");
    let ae = start_with(root, &xc, Timing::fast(5000), &["--hosted-bus"]);
    ae.wait_log(
        "ERROR -- [dbus-daemon]: platform 'shadow' exports reserved service name 'system-bus' while the hosted system bus is enabled",
        Duration::from_secs(5),
    );
    // Then upstream's first state run gives up and, in appengine mode,
    // Pantavisor shuts down instead of rebooting: pv-ctrl stops accepting.
    ae.wait_log("server stopped", Duration::from_secs(5));
    assert!(ae
        .log()
        .contains("a platform did not work as expected. Tearing down..."));
    let refused = std::os::unix::net::UnixStream::connect(ae.socket()).map(drop);
    assert_eq!(
        refused.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionRefused)
    );
    assert!(!ae.log().contains("status is now STARTED"));

    let root = tempfile::tempdir().expect("tempdir");
    shadow(root.path());
    let xc = script(root.path(), "fake-xconnect", "exec sleep 1000");
    let plain = start(root, &xc, 5000);
    plain.wait_log(
        "state revision '0' status is now READY",
        Duration::from_secs(15),
    );
    assert!(plain
        .get_json("/daemons")
        .as_array()
        .is_some_and(|a| a.iter().all(|d| d["name"] != "pv-dbus")));
}
