//! The unix example pair through a real link (run as root): the server and
//! the client each run in their own container, `link::start` joins them as
//! the manifests describe, and the client must report both checks OK.

use std::path::Path;
use std::time::Duration;

use pv_testkit::Container;
use pv_xconnect::graph::ServiceType;
use pv_xconnect::link;
use pv_xconnect::shutdown::Shutdown;
use pv_xconnect::test_util::LinkSpecBuilder;

/// One of the examples' manifests.
fn manifest(rel: &str) -> serde_json::Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples-containers")
        .join(rel);
    serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_client_reports_echo_and_fd_ok_through_the_link() {
    let server_bin = env!("CARGO_BIN_EXE_e2e-unix-server");
    let client_bin = env!("CARGO_BIN_EXE_e2e-unix-client");
    let bin_dir = Path::new(server_bin).parent().unwrap();

    // The link as Pantavisor would build it from the two manifests.
    let export = &manifest("pv-example-unix-server/services.json")["services"][0];
    let require = &manifest("pv-example-unix-client/args.json")["PV_SERVICES_REQUIRED"][0];
    assert_eq!(export["name"], require["name"]);
    let socket = export["socket"].as_str().unwrap();
    let target = require["target"].as_str().unwrap();

    let server = Container::start_with_binds(
        "pv-example-unix-server",
        &format!("{server_bin} --socket {socket}"),
        &[bin_dir],
    );
    let client =
        Container::start_with_binds("pv-example-unix-client", "sleep infinity", &[bin_dir]);
    assert!(
        server.wait_for(socket, Duration::from_secs(5)),
        "server socket appears"
    );

    // Before the link exists the client must fail (the test can fail).
    let out = client.exec(&format!("{client_bin} --once"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("unix-echo FAIL"));

    let spec = LinkSpecBuilder::new(ServiceType::Unix)
        .consumer(&client.name, client.pid)
        .provider(&server.name, server.pid)
        .name(export["name"].as_str().unwrap())
        .target(target)
        .socket(socket)
        .arc();
    let root = Shutdown::new();
    let h = link::start(spec, &root).await.expect("link starts");
    let out = tokio::task::spawn_blocking(move || {
        let out = client.exec(&format!("{client_bin} --once"));
        drop(client);
        out
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("pv-example-unix-client --once:\n{stdout}");
    assert!(stdout.contains("unix-echo OK"), "client said: {stdout}");
    assert!(stdout.contains("unix-fd OK"), "client said: {stdout}");
    assert!(out.status.success());
    h.stop().await;
}
