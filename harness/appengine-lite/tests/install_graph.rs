//! Install and graph generation through the library, on real fixtures.

mod common;

use appengine_lite::graph;
use appengine_lite::install::{self, InstallError};
use appengine_lite::paths::Paths;
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

#[test]
fn rejects_corrupt_object_naming_file_and_object() {
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

    let err = install::ensure_installed(&paths).expect_err("corrupt object must be rejected");
    assert!(matches!(err, InstallError::BadObject { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("broken.tgz"), "{text}");
    assert!(text.contains(&claimed), "{text}");
    assert!(text.contains(&pvrexport::sha256_hex(&good)), "{text}");
    assert!(text.contains("bad checksum"), "{text}");
    assert!(
        !paths.install_marker().exists(),
        "no marker after a failed install"
    );
    assert!(
        !paths.objects().join(&claimed).exists(),
        "bad object not kept"
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
    state.validate().expect("valid");
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
    let body = graph::to_json(&graph::build(&state, pid));
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
        .validate()
        .expect("own export satisfies the requirement");
    let links = graph::build(&state, |_| -1);
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].consumer, "self");
    assert_eq!(links[0].provider, "self");
    assert_eq!(links[0].svc_type, "drm");
    assert_eq!(links[0].interface, "drm");
}
