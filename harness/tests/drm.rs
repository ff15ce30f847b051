//! drm: the provider's device nodes appear in the master and render
//! consumers with the provider's numbers. Without host DRM (always the case
//! on CI) the appengine holds placeholder nodes; `HARNESS_REQUIRE_DRM=1`
//! turns that into a failure, and with real DRM the master's KMS query must
//! list a connector.

use std::time::Duration;

use harness::group::Group;

const PROVIDER: &str = "pv-example-drm-provider";
const MASTER: &str = "pv-example-drm-master";
const RENDER: &str = "pv-example-drm-render";

static DRM: Group = Group::new("drm", &[PROVIDER, MASTER, RENDER], 3);

/// The type and numbers of the node `consumer` got through link `name`,
/// after checking they are those of the provider's own node (which the
/// provider's `lxc.container.conf` binds from the appengine's `/dev/dri`,
/// as on a device: Pantavisor adds no device node by itself).
fn node_numbers(ae: &harness::appengine::Appengine, consumer: &str, name: &str) -> String {
    let link = ae
        .wait_link(consumer, name, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
    let stat = |pid: i64, path: &str| {
        ae.sh(&format!("stat -c '%F %t:%T' /proc/{pid}/root{path}"))
            .unwrap_or_else(|e| panic!("{e:#}"))
            .trim()
            .to_string()
    };
    let got = stat(
        link["consumer_pid"].as_i64().expect("consumer pid"),
        &ae.link_target(&link),
    );
    let source = stat(
        link["provider_pid"].as_i64().expect("provider pid"),
        link["socket"].as_str().expect("provider node"),
    );
    assert_eq!(got, source, "{consumer} got another node than {link}");
    got
}

#[test]
fn drm_master_gets_card0_226_0() {
    let ae = DRM.enter();
    assert_eq!(
        node_numbers(&ae, MASTER, "drm-master"),
        "character special file e2:0"
    );
}

#[test]
fn drm_render_gets_render_d128_226_128() {
    let ae = DRM.enter();
    assert_eq!(
        node_numbers(&ae, RENDER, "drm-render"),
        "character special file e2:80"
    );
}

#[test]
fn drm_master_kms_query_with_real_drm() {
    let ae = DRM.enter();
    if !ae.host_drm {
        let msg = "host has no DRM (no /dev/dri): KMS query not checked, only the nodes";
        if harness::config::Config::get().expect("config").require_drm {
            panic!("HARNESS_REQUIRE_DRM=1 but {msg}");
        }
        harness::util::note(format!("NOT CHECKED: {msg}"));
        return;
    }
    let log = ae
        .wait_console(MASTER, "connector", Duration::from_secs(60))
        .expect("KMS resources listed");
    assert!(log.to_lowercase().contains("connector"), "{log}");
}
