//! The pvrexport writer against real pvr output (shared fixtures) and
//! against its own reader. No Docker needed.

use std::path::PathBuf;

use harness::pvrexport::{
    lxcconf, render_run_json, render_src_json, sha256_hex, ContainerSpec, DockerConfig, Pvrexport,
    PvrexportError,
};
use serde_json::{json, Map, Value};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pvrexport")
}

fn load_state(name: &str) -> Map<String, Value> {
    let p = fixtures().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {p:?}: {e}"));
    serde_json::from_str(&text).expect("fixture is a JSON object")
}

/// Docker config and args of a fixture container, as pvr saw them.
fn inputs(state: &Map<String, Value>, c: &str) -> (DockerConfig, Map<String, Value>) {
    let src = &state[&format!("{c}/src.json")];
    let docker: DockerConfig =
        serde_json::from_value(src["docker_config"].clone()).expect("docker_config parses");
    let args = src
        .get("args")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    (docker, args)
}

#[test]
fn lxc_conf_is_byte_identical_to_pvr_output() {
    let state = load_state("watchdog_pinger.state.json");
    let (docker, args) = inputs(&state, "watchdog_pinger");
    let conf = lxcconf::render("watchdog_pinger", &docker, &args);
    let real = std::fs::read_to_string(fixtures().join("watchdog_pinger.lxc.container.conf"))
        .expect("fixture conf");
    assert_eq!(conf, real);
    // The state references the conf by the sha256 of exactly these bytes.
    assert_eq!(
        json!(sha256_hex(conf.as_bytes())),
        state["watchdog_pinger/lxc.container.conf"]
    );
}

#[test]
fn run_json_matches_pvr_field_by_field() {
    for (file, c) in [
        ("watchdog_pinger.state.json", "watchdog_pinger"),
        ("pvwificonnect.state.json", "pvwificonnect"),
    ] {
        let state = load_state(file);
        let (docker, args) = inputs(&state, c);
        let ours = render_run_json(c, &docker, &args);
        let real = &state[&format!("{c}/run.json")];
        let (o, r) = (ours.as_object().unwrap(), real.as_object().unwrap());
        for (k, v) in r {
            assert_eq!(o.get(k), Some(v), "{c}/run.json field {k}");
        }
        let extra: Vec<_> = o.keys().filter(|k| !r.contains_key(*k)).collect();
        assert!(
            extra.is_empty(),
            "{c}/run.json: fields pvr does not write: {extra:?}"
        );
    }
}

#[test]
fn src_json_keeps_args_and_docker_config() {
    for (file, c) in [
        ("watchdog_pinger.state.json", "watchdog_pinger"),
        ("pvwificonnect.state.json", "pvwificonnect"),
    ] {
        let state = load_state(file);
        let (docker, args) = inputs(&state, c);
        let ours = render_src_json(&docker, &args);
        let real = &state[&format!("{c}/src.json")];
        assert_eq!(ours["#spec"], real["#spec"]);
        assert_eq!(ours["template"], real["template"]);
        assert_eq!(ours["docker_config"], real["docker_config"], "{c}");
        if real.get("args").is_some() {
            assert_eq!(ours["args"], real["args"]);
        }
    }
}

#[test]
fn services_render_into_run_json() {
    let args: Map<String, Value> = serde_json::from_value(json!({
        "PV_SERVICES_REQUIRED": [{"name": "raw-unix", "type": "unix",
                                  "target": "/run/pv/services/raw-unix.sock"}],
        "PV_SERVICES_OPTIONAL": "a, b",
        "PV_GROUP": "app",
        "PV_RESTART_POLICY": "container"
    }))
    .unwrap();
    let run = render_run_json("c", &DockerConfig::for_command(vec!["/x".into()]), &args);
    assert_eq!(
        run["services"],
        json!({"required": [{"name": "raw-unix", "type": "unix",
                             "target": "/run/pv/services/raw-unix.sock"}],
               "optional": [{"name": "a"}, {"name": "b"}]})
    );
    assert_eq!(run["group"], "app");
    assert_eq!(run["restart_policy"], "container");
    // No services block when the container requires nothing.
    let run = render_run_json("c", &DockerConfig::default(), &Map::new());
    assert!(run.get("services").is_none());
}

#[test]
fn entrypoint_and_cmd_render_like_pvr() {
    let d = DockerConfig {
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec!["exec foo".into()]),
        ..Default::default()
    };
    let conf = lxcconf::render("c", &d, &Map::new());
    assert!(
        conf.contains("lxc.init.cmd = /bin/sh \"-c\"  \"exec foo\"\n"),
        "{conf}"
    );
    let conf = lxcconf::render("c", &DockerConfig::default(), &Map::new());
    assert!(conf.contains("lxc.init.cmd = /sbin/init\n"), "{conf}");
}

fn sample() -> Pvrexport {
    let spec = ContainerSpec {
        name: "pv-example-unix-server".into(),
        args: Map::new(),
        docker: DockerConfig::for_command(vec!["/usr/bin/pv-example-unix-server".into()]),
        services: Some(json!({"#spec": "service-manifest-xconnect@1",
            "services": [{"name": "raw-unix", "type": "unix", "socket": "/run/example/raw.sock"}]})),
    };
    let mut e = Pvrexport::default();
    e.add_container(&spec, b"not really squashfs".to_vec());
    e
}

#[test]
fn round_trip_through_tgz_and_tar() {
    let e = sample();
    e.verify().expect("fresh export verifies");
    assert_eq!(Pvrexport::parse(&e.to_tgz()).expect("tgz parses"), e);
    assert_eq!(Pvrexport::parse(&e.to_tar()).expect("tar parses"), e);
    assert_eq!(e.containers(), vec!["pv-example-unix-server".to_string()]);
    assert_eq!(e.state["#spec"], "pantavisor-service-system@1");
    let conf_sha = e.state["pv-example-unix-server/lxc.container.conf"]
        .as_str()
        .unwrap();
    let conf = String::from_utf8(e.objects[conf_sha].clone()).unwrap();
    assert!(conf.contains("lxc.init.cmd = /usr/bin/pv-example-unix-server\n"));
    assert_eq!(
        e.state["pv-example-unix-server/services.json"]["services"][0]["name"],
        "raw-unix"
    );
}

#[test]
fn tar_has_file_entries_only() {
    let tar_bytes = sample().to_tar();
    let mut ar = tar::Archive::new(&tar_bytes[..]);
    let mut names = Vec::new();
    for entry in ar.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    assert_eq!(names[0], "json");
    assert!(names[1..]
        .iter()
        .all(|n| n.starts_with("objects/") && n.len() == 8 + 64));
    // Same content, same bytes: exports are cacheable by hash.
    assert_eq!(sample().to_tgz(), sample().to_tgz());
}

#[test]
fn corrupt_or_missing_objects_are_detected() {
    let mut e = sample();
    let sha = e.objects.keys().next().unwrap().clone();
    e.objects.get_mut(&sha).unwrap().push(b'!');
    assert!(matches!(e.verify(), Err(PvrexportError::BadObject { .. })));
    let mut e = sample();
    e.objects.remove(&sha);
    assert!(matches!(
        e.verify(),
        Err(PvrexportError::MissingObject { .. })
    ));
}

#[test]
fn real_export_parses_and_verifies() {
    let e = Pvrexport::read(&fixtures().join("pv-oem-developer-001.tgz")).expect("parses");
    e.verify().expect("real export verifies");
    assert_eq!(e.objects.len(), 1);
    assert!(e.state.contains_key("pv-oem-developer-001/test.config"));
}
