//! rest: the provider sees the consumer's true identity, injected by
//! pv-xconnect, and a spoofed identity does not get through.

use std::time::Duration;

use harness::group::Group;

const SERVER: &str = "pv-example-rest-server";
const CLIENT: &str = "pv-example-rest-client";

static REST: Group = Group::new("rest", &[SERVER, CLIENT], 2);

#[test]
fn rest_reply_carries_the_true_client_and_role() {
    let ae = REST.enter();
    ae.wait_link(CLIENT, "network-manager", Duration::from_secs(30))
        .expect("link");
    let log = ae
        .wait_console(CLIENT, "rest OK", Duration::from_secs(60))
        .expect("a reply");
    assert!(
        log.lines()
            .any(|l| l.trim() == "rest OK client=pv-example-rest-client role=any"),
        "{log}"
    );
    // The reply itself, as JSON, from the mock service.
    let reply = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l.trim()).ok())
        .find(|v| v["service"] == "network-manager-mock")
        .unwrap_or_else(|| panic!("no JSON reply in {log}"));
    assert_eq!(reply["client"], CLIENT, "{reply}");
    assert_eq!(reply["role"], "any", "{reply}");
    assert_eq!(reply["status"], "online", "{reply}");
}

#[test]
fn rest_spoofed_identity_is_overwritten() {
    let ae = REST.enter();
    let log = ae
        .wait_console(CLIENT, "rest spoof", Duration::from_secs(60))
        .expect("spoof attempt");
    assert!(
        log.contains("rest spoof REFUSED role=any client=pv-example-rest-client"),
        "{log}"
    );
    assert!(!log.contains("rest spoof ACCEPTED"), "{log}");
}
