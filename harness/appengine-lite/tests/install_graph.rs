//! Install and graph generation through the library, on real fixtures.

mod common;

use appengine_lite::graph;
use appengine_lite::install;
use appengine_lite::launch::{self, Refusal, Stage};
use appengine_lite::paths::Paths;
use appengine_lite::pvlog::PvLog;
use appengine_lite::pvrexport;
use appengine_lite::state::State;
use common::fixture;
use serde_json::{json, Value};

#[test]
fn installs_real_export_once() {
    let root = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(root.path());
    std::fs::create_dir_all(paths.pvtx_d()).expect("mkdir");
    std::fs::copy(
        fixture("pv-oem-developer-001.tgz"),
        paths.pvtx_d().join("pv-oem-developer-001.tgz"),
    )
    .expect("copy fixture");

    let first = install::ensure_installed(&paths).expect("install real export");
    assert_eq!(first.files.len(), 1);
    let sha = "906488a3276dd351e7f9f782b0a84f5aa8ed0fc32d992ac1f2290e6410a1ebe3";
    assert_eq!(first.state["pv-oem-developer-001/test.config"], sha);
    assert!(first.state["_sigs/pv-oem-developer-001.json"]["signature"].is_string());
    let obj = std::fs::read(paths.objects().join(sha)).expect("object stored");
    assert_eq!(pvrexport::sha256_hex(&obj), sha);
    let in_trail = std::fs::read(paths.trail("0").join("pv-oem-developer-001/test.config"))
        .expect("object linked into the trail");
    assert_eq!(in_trail, obj);
    assert!(paths.install_marker().exists(), ".pvtx-done written");
    let state = State::parse("0", &first.state).expect("parse");
    assert!(
        state.containers.is_empty(),
        "this export carries no container"
    );

    // A second boot on the same volume does not look at pvtx.d again, even
    // if it now holds garbage.
    std::fs::write(paths.pvtx_d().join("zz-garbage.tgz"), b"not a tar").expect("write");
    let second = install::ensure_installed(&paths).expect("marker short-circuits");
    assert!(second.files.is_empty());
    assert_eq!(second.state, first.state);
}

/// Upstream's pvtx stores an object under the name the export gives it
/// without hashing it (pvtx_txn.c only re-checks an object it already
/// has); the launch's object check (state.c pv_state_validate_checksum)
/// refuses it with upstream's lines.
#[test]
fn corrupt_object_is_installed_as_pvtx_does_and_refused_at_load() {
    let root = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(root.path());
    std::fs::create_dir_all(paths.pvtx_d()).expect("mkdir");
    let good = b"lxc.init.cmd = /bin/true\n".to_vec();
    let claimed = pvrexport::sha256_hex(b"something else");
    let file = paths.pvtx_d().join("broken.tgz");
    pvrexport::write(
        &file,
        &json!({"#spec":"pantavisor-service-system@1","c/lxc.container.conf": claimed}),
        &[(claimed.clone(), good.clone())],
    )
    .expect("write export");

    let installed = install::ensure_installed(&paths).expect("pvtx does not check objects");
    assert_eq!(installed.files, vec![file]);
    assert!(paths.install_marker().exists());
    assert_eq!(
        std::fs::read(paths.objects().join(&claimed)).expect("object kept"),
        good
    );
    let log = PvLog::open(&root.path().join("pantavisor.log")).expect("log");
    let refusal = launch::load(&paths, &log, None).expect_err("refused at load");
    assert_eq!(
        refusal,
        Refusal {
            module: "state",
            error: format!("trails object c/lxc.container.conf with checksum {claimed} failed"),
            stage: Stage::Run("state objects validation went wrong"),
        }
    );
}

#[test]
fn rejects_reference_to_absent_object() {
    let root = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(root.path());
    std::fs::create_dir_all(paths.pvtx_d()).expect("mkdir");
    let sha = pvrexport::sha256_hex(b"x");
    pvrexport::write(
        &paths.pvtx_d().join("a.tgz"),
        &json!({"c/root.squashfs": sha}),
        &[],
    )
    .expect("write");
    let err = install::ensure_installed(&paths).expect_err("missing object");
    assert!(err.to_string().contains("c/root.squashfs"), "{err}");
}

/// Real states from the fixtures plus a provider/consumer pair and a
/// second provider of the same name, checked byte for byte.
#[test]
fn graph_matches_upstream_semantics() {
    let mut merged = serde_json::Map::new();
    for f in ["pvwificonnect.state.json", "watchdog_pinger.state.json"] {
        let text = std::fs::read_to_string(fixture(f)).expect("fixture");
        let v: Value = serde_json::from_str(&text).expect("fixture json");
        merged.extend(v.as_object().expect("object").clone());
    }
    let extra = json!({
        "srv/run.json": {"name":"srv","group":"platform"},
        "srv/services.json": {"#spec":"service-manifest-xconnect@1","services":[
            {"name":"raw-unix","type":"unix","socket":"/run/example/raw.sock"},
            {"name":"weird","type":"carrier-pigeon"}]},
        "srv2/run.json": {"name":"srv2"},
        "srv2/services.json": [{"name":"raw-unix","type":"unix","socket":"/run/other.sock"}],
        "cli/run.json": {"name":"cli","group":"app","services":{
            "required":[{"name":"raw-unix","type":"rest","target":"/run/pv/services/raw-unix.sock"}],
            "optional":[{"name":"weird","role":"nobody","interface":"org.x"},{"name":"absent"}]}},
    });
    merged.extend(extra.as_object().expect("object").clone());
    let state = State::parse("0", &Value::Object(merged)).expect("parse");
    state.validate(false).expect("valid");
    let names: Vec<&str> = state.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["cli", "pvwificonnect", "srv", "srv2", "watchdog_pinger"]
    );

    let pid = |n: &str| match n {
        "srv" => 5678,
        "cli" => 1234,
        _ => -1,
    };
    let body = graph::to_json(&graph::build(&state, pid, None));
    let expected = concat!(
        r#"[{"consumer":"cli","consumer_pid":1234,"provider":"srv","provider_pid":5678,"name":"raw-unix","type":"unix","role":"any","interface":"unix","target":"/run/pv/services/raw-unix.sock","socket":"/run/example/raw.sock"},"#,
        r#"{"consumer":"cli","consumer_pid":1234,"provider":"srv2","provider_pid":-1,"name":"raw-unix","type":"unix","role":"any","interface":"unix","target":"/run/pv/services/raw-unix.sock","socket":"/run/other.sock"},"#,
        r#"{"consumer":"cli","consumer_pid":1234,"provider":"srv","provider_pid":5678,"name":"weird","type":"unknown","role":"nobody","interface":"org.x","target":null,"socket":null}]"#
    );
    assert_eq!(body, expected);
}

#[test]
fn consumer_own_export_counts() {
    let state = State::parse(
        "0",
        &json!({"self/run.json":{"services":{"required":[{"name":"loop"}]}},
                "self/services.json":{"services":[{"name":"loop","type":"drm","socket":"/dev/dri/card0"}]}}),
    )
    .expect("parse");
    state
        .validate(false)
        .expect("own export satisfies the requirement");
    let links = graph::build(&state, |_| -1, None);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].consumer, "self");
    assert_eq!(links[0].provider, "self");
    assert_eq!(links[0].svc_type, "drm");
    assert_eq!(links[0].interface, "drm");
}

/// Upstream's hosted-bus graph (state.c with PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS):
/// a `system-bus` requirement links to `_pv_`, pid 0, the bus socket,
/// interface default `dbus`, and the role's uid from 90000 (65534 without
/// a role) — the same uid for the same role, across consumers and boots.
#[test]
fn hosted_bus_links_carry_provider_pv_and_role_uids() {
    use appengine_lite::hostbus::HostBus;
    let root = tempfile::tempdir().expect("tempdir");
    let paths = Paths::new(root.path());
    let bus = HostBus::new(&paths, "/usr/bin/dbus-daemon".into());
    let state = State::parse(
        "0",
        &json!({
            "owner/run.json": {"services":{"required":[{"name":"system-bus","role":"example-service",
                "interface":"org.pantavisor.Example","target":"/run/dbus/system_bus_socket"}]}},
            "owner/services.json": {"services":[{"type":"dbus","bus":"system-bus",
                "owns":"org.pantavisor.Example","role":"example-service","allow":["operator","monitor"]}]},
            "caller/run.json": {"services":{"required":[{"name":"system-bus","role":"operator",
                "target":"/run/dbus/system_bus_socket"}]}},
            "anon/run.json": {"services":{"optional":[{"name":"system-bus"}]}}
        }),
    )
    .expect("parse");
    state.validate(true).expect("valid with the hosted bus");
    bus.generate(&state).expect("generate");
    let links = graph::build(&state, |n| if n == "caller" { 42 } else { -1 }, Some(&bus));
    let sock = bus.socket().display().to_string();
    assert_eq!(
        graph::to_json(&links),
        format!(
            concat!(
                r#"[{{"consumer":"anon","consumer_pid":-1,"provider":"_pv_","provider_pid":0,"name":"system-bus","type":"dbus","role":"any","interface":"dbus","target":null,"socket":"{s}","uid":65534}},"#,
                r#"{{"consumer":"caller","consumer_pid":42,"provider":"_pv_","provider_pid":0,"name":"system-bus","type":"dbus","role":"operator","interface":"dbus","target":"/run/dbus/system_bus_socket","socket":"{s}","uid":90001}},"#,
                r#"{{"consumer":"owner","consumer_pid":-1,"provider":"_pv_","provider_pid":0,"name":"system-bus","type":"dbus","role":"example-service","interface":"org.pantavisor.Example","target":"/run/dbus/system_bus_socket","socket":"{s}","uid":90000}}]"#
            ),
            s = sock
        )
    );
    // Upstream's map file, in allocation order.
    assert_eq!(
        std::fs::read_to_string(paths.storage().join("config/dbus-role-uids.json")).expect("map"),
        r#"{"example-service":90000,"operator":90001,"monitor":90002}"#
    );
    // The map persists: a new bus on the same storage gives the same uids,
    // and a new role the next one.
    let again = HostBus::new(&paths, "/usr/bin/dbus-daemon".into());
    assert_eq!(again.role_uid("operator").expect("uid"), 90001);
    assert_eq!(again.role_uid("monitor").expect("uid"), 90002);
    assert_eq!(again.role_uid("newcomer").expect("uid"), 90003);
    // Without the option, system-bus is an ordinary (here: absent) export.
    assert!(graph::build(&state, |_| -1, None).is_empty());
}
