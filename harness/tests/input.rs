//! input: the provider's evdev node appears in the consumer with the
//! provider's numbers, and the consumer reads the key events the provider
//! types through uinput. Without `/dev/uinput` (the case on CI) the
//! provider creates no device: the test makes a node with mknod (13:77) in
//! the provider's root, checks the injection against it, and says that
//! events were not checked.

use std::time::Duration;

use harness::appengine::Appengine;
use harness::group::Group;

const PROVIDER: &str = "pv-example-input-provider";
const CONSUMER: &str = "pv-example-input-consumer";
const NAME: &str = "input-keyboard";
/// The provider's exported node and the consumer's target (manifests).
const PROVIDER_NODE: &str = "/dev/input/pv-example-keyboard";
const CONSUMER_NODE: &str = "/dev/input/event0";

static INPUT: Group = Group::new("input", &[PROVIDER, CONSUMER], 2);

/// Whether the provider made a uinput device; without one, a 13:77 node
/// is made in its root (once per appengine).
fn provider_has_uinput(ae: &Appengine) -> bool {
    let log = ae
        .wait_console(PROVIDER, "input-provider:", Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}"));
    if !log.contains("uinput UNAVAILABLE") {
        return true;
    }
    let pid = ae
        .wait_for("provider pid in the graph", Duration::from_secs(60), |ae| {
            Ok(ae
                .graph()?
                .iter()
                .find(|l| l["name"] == NAME && l["provider"] == PROVIDER)
                .and_then(|l| l["provider_pid"].as_i64())
                .filter(|p| *p > 0))
        })
        .unwrap_or_else(|e| panic!("{e:#}"));
    ae.sh(&format!(
        "n=/proc/{pid}/root{PROVIDER_NODE}; test -e $n || \
         {{ mkdir -p $(dirname $n) && mknod -m 0640 $n c 13 77; }}"
    ))
    .expect("mknod in the provider's root");
    false
}

fn numbers(ae: &Appengine, pid: i64, path: &str) -> String {
    ae.sh(&format!("stat -c '%F %t:%T' /proc/{pid}/root{path}"))
        .expect("stat node")
        .trim()
        .to_string()
}

#[test]
fn input_consumer_gets_the_providers_evdev_node() {
    let ae = INPUT.enter();
    provider_has_uinput(&ae);
    // A refused first start is retried with backoff (at most 30 s).
    let link = ae
        .wait_link(CONSUMER, NAME, Duration::from_secs(90))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(link["type"], "input", "{link}");
    let cpid = link["consumer_pid"].as_i64().expect("consumer pid");
    let ppid = link["provider_pid"].as_i64().expect("provider pid");
    let theirs = numbers(&ae, ppid, PROVIDER_NODE);
    let ours = numbers(&ae, cpid, CONSUMER_NODE);
    assert!(theirs.starts_with("character special file d:"), "{theirs}");
    assert_eq!(ours, theirs, "consumer's node = provider's node");
    // The consumer itself sees those numbers.
    let (_, hex) = theirs.rsplit_once(' ').expect("numbers");
    let (major, minor) = hex.split_once(':').expect("major:minor");
    let dec = |h: &str| u64::from_str_radix(h, 16).expect("hex");
    let line = format!(
        "input-consumer: device {}:{} at {CONSUMER_NODE}",
        dec(major),
        dec(minor)
    );
    ae.wait_console(CONSUMER, &line, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e:#}"));
}

#[test]
fn input_consumer_reads_the_providers_key_events() {
    let ae = INPUT.enter();
    if !provider_has_uinput(&ae) {
        // The consumer still gets and opens the node: it reports why it
        // cannot read from it (no such device behind 13:77 on this host).
        let log = ae
            .wait_console(CONSUMER, "input UNAVAILABLE 13:77", Duration::from_secs(90))
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(!log.contains("input OK"), "{log}");
        harness::util::note(
            "NOT CHECKED: host has no /dev/uinput: no key events read, only the \
             injected node (13:77, made with mknod in the provider's root)",
        );
        return;
    }
    let log = ae
        .wait_console(
            CONSUMER,
            "input OK read 4 key events",
            Duration::from_secs(90),
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(log.contains("input EVENT key code=30 value=1"), "{log}");
    assert!(log.contains("input EVENT key code=30 value=0"), "{log}");
    assert!(log.contains("device name \"pv-example-keyboard\""), "{log}");
}
