//! graph: every example built, one appengine; `pvcontrol graph ls` lists
//! exactly the links the manifests imply, each with live pids.

use std::collections::BTreeSet;
use std::time::Duration;

use harness::examples;
use harness::group::Group;
use serde_json::Value;

static ALL: Group = Group::all_examples("graph", 1);

/// (consumer, name, provider) triples implied by the manifests of the
/// examples that were installed.
fn expected(installed: &[String]) -> BTreeSet<(String, String, String)> {
    let all = examples::discover().expect("examples");
    let present: Vec<_> = all.iter().filter(|e| installed.contains(&e.name)).collect();
    let mut out = BTreeSet::new();
    for c in &present {
        for key in ["PV_SERVICES_REQUIRED", "PV_SERVICES_OPTIONAL"] {
            for req in c
                .args
                .get(key)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let Some(name) = req["name"].as_str() else {
                    continue;
                };
                for p in &present {
                    if p.exports().iter().any(|n| n == name) {
                        out.insert((c.name.clone(), name.to_string(), p.name.clone()));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn graph_lists_every_expected_link_with_live_pids() {
    let ae = ALL.enter();
    let want = expected(&ae.installed);
    assert!(
        !want.is_empty(),
        "no links expected: installed {:?}",
        ae.installed
    );
    let uinput = ae.sh("test -c /dev/uinput").is_ok();
    for (consumer, name, provider) in &want {
        if !uinput && examples::NEEDS_UINPUT.contains(&provider.as_str()) {
            // Its provider has no evdev node to export: the link is in the
            // graph (checked below) but cannot be injected.
            println!(
                "NOT CHECKED: injection of {consumer} -> {name} (no /dev/uinput in the appengine; the input group checks it with a node of its own)"
            );
            continue;
        }
        ae.wait_link(consumer, name, Duration::from_secs(60))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }
    let graph = ae.graph().expect("graph");
    let got: BTreeSet<_> = graph
        .iter()
        .map(|l| {
            (
                l["consumer"].as_str().unwrap_or("").to_string(),
                l["name"].as_str().unwrap_or("").to_string(),
                l["provider"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(got, want, "graph differs from the manifests");
    for l in &graph {
        for k in ["consumer_pid", "provider_pid"] {
            let pid = l[k].as_i64().unwrap_or(-1);
            assert!(pid > 0, "{k} not live in {l}");
            assert!(
                ae.sh(&format!("test -d /proc/{pid}")).is_ok(),
                "{k} {pid} is not a live process: {l}"
            );
        }
    }
    println!("graph: {} links, all live", graph.len());
}
