//! Broken pvrexports: the appengine must say why in pantavisor.log and
//! start nothing; then, as Pantavisor refusing its factory revision does in
//! appengine mode, it shuts down instead of rebooting (pv-ctrl stops
//! answering) and pv-appengine launches it again.

use std::time::Duration;

use harness::appengine::{Appengine, BootOptions, Examples};
use harness::examples::busybox_export;
use harness::pvrexport::{ContainerSpec, DockerConfig};
use serde_json::{json, Map, Value};

fn spec(name: &str, args: Value, services: Option<Value>) -> ContainerSpec {
    ContainerSpec {
        name: name.into(),
        args: serde_json::from_value::<Map<String, Value>>(args).unwrap(),
        docker: DockerConfig::for_command(vec!["/bin/sh".into(), "-c".into(), "sleep 1000".into()]),
        services,
    }
}

/// Boots with `files` only, waits for `needle` in pantavisor.log, then
/// checks nothing started.
fn expect_refused(group: &str, files: Vec<std::path::PathBuf>, needle: &str) {
    let ae = Appengine::boot(BootOptions {
        group: group.into(),
        examples: Examples::All,
        extra_exports: files,
        wait_ready: false,
        ..Default::default()
    })
    .expect("appengine container starts");
    let r = ae.wait_for(
        &format!("{needle:?} in pantavisor.log"),
        Duration::from_secs(60),
        |ae| Ok(ae.pantavisor_log().contains(needle).then_some(())),
    );
    if let Err(e) = r {
        panic!("{e:#}\n{}", ae.diagnostics());
    }
    // Give a wrongly started container time to show up.
    std::thread::sleep(Duration::from_secs(3));
    // pv-ctrl is gone after Pantavisor's non-reboot (or, caught during a
    // launch, answers "State not loaded yet"): nothing started either way.
    let containers = match ae.containers_after_refusal() {
        Ok(list) => list,
        Err(e) => panic!("{e:#}\n{}", ae.diagnostics()),
    };
    let started: Vec<_> = containers
        .iter()
        .filter(|c| matches!(c["status"].as_str(), Some("STARTING" | "STARTED" | "READY")))
        .collect();
    assert!(started.is_empty(), "containers started anyway: {started:?}");
    match ae.devmeta() {
        Ok(meta) => assert_ne!(meta["pantavisor.status"], "READY", "{meta}"),
        Err(e) => assert!(
            ae.ended_by_appengine_reboot(),
            "pv-ctrl answers /devmeta: {e:#}\n{}",
            ae.diagnostics()
        ),
    }
}

#[test]
fn corrupt_object_is_rejected_with_a_clear_error() {
    let mut e = busybox_export(&spec(
        "pvx-corrupt",
        json!({}),
        Some(json!({"#spec": "service-manifest-xconnect@1",
                    "services": [{"name": "x", "type": "unix", "socket": "/run/x.sock"}]})),
    ))
    .expect("export");
    let sha = e.state["pvx-corrupt/root.squashfs"]
        .as_str()
        .unwrap()
        .to_string();
    // Same name, different bytes: what a truncated download looks like.
    let obj = e.objects.get_mut(&sha).unwrap();
    let mid = obj.len() / 2;
    obj[mid] ^= 0xff;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pvx-corrupt.pvrexport.tgz");
    e.write(&path).unwrap();
    expect_refused("corrupt", vec![path], &sha);
}

#[test]
fn missing_required_service_is_rejected_with_upstreams_error() {
    let dir = tempfile::tempdir().unwrap();
    let consumer = busybox_export(&spec(
        "pvx-lonely-consumer",
        json!({"PV_SERVICES_REQUIRED": [{"name": "no-such-service",
               "target": "/run/pv/services/none.sock"}]}),
        None,
    ))
    .expect("export");
    let provider = busybox_export(&spec(
        "pvx-innocent-provider",
        json!({}),
        Some(json!({"#spec": "service-manifest-xconnect@1",
                    "services": [{"name": "other", "type": "unix", "socket": "/run/o.sock"}]})),
    ))
    .expect("export");
    let (a, b) = (
        dir.path().join("pvx-lonely-consumer.pvrexport.tgz"),
        dir.path().join("pvx-innocent-provider.pvrexport.tgz"),
    );
    consumer.write(&a).unwrap();
    provider.write(&b).unwrap();
    expect_refused(
        "missing",
        vec![a, b],
        "required service 'no-such-service' for platform 'pvx-lonely-consumer' not found",
    );
}
