//! `GET /xconnect-graph` bodies (or a `--graph-file`): parsing and
//! resolution into link specs must never panic, whatever Pantavisor or a
//! hand-edited file holds, and every resolved link must satisfy what the
//! rest of the daemon relies on: absolute paths without `..` or NUL.
#![no_main]

use std::path::Component;

use libfuzzer_sys::fuzz_target;
use pv_xconnect::graph;

fuzz_target!(|data: &[u8]| {
    let Ok(resolved) = graph::parse_and_resolve(data) else {
        return;
    };
    for spec in &resolved.links {
        for p in [&spec.target, &spec.socket] {
            assert!(p.is_absolute(), "{spec:?}");
            assert!(
                !p.components().any(|c| c == Component::ParentDir),
                "{spec:?}"
            );
            assert!(!p.to_string_lossy().contains('\0'), "{spec:?}");
        }
        assert!(
            !spec.consumer.is_empty() && !spec.name.is_empty(),
            "{spec:?}"
        );
        let _ = spec.key().to_string();
    }
});
