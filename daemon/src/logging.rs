//! How the daemon logs.
//!
//! Every line about a link carries the same fields, in the same order,
//! under the same names: `consumer`, `name`, `type`, `provider`,
//! `consumer_pid`, `provider_pid`, `target`, then what the line adds
//! (`reason` for why something happened). `link_event!` writes them, so
//! no call site can spell them differently. Link events (injected,
//! pending, failed, removed…) are logged by [`crate::reconcile`] only,
//! one line each; session lines by [`crate::link`]'s accept loop.
//!
//! [`init`] installs the daemon's subscriber: lines go to stdout, which
//! Pantavisor captures into pantavisor.log.

use std::io::IsTerminal;

/// Log one line about a link: `link_event!(Level::WARN, spec, reason =
/// %why, "link failed")`. The link's identifying fields come first; extra
/// fields and the message follow as in `tracing::event!`.
macro_rules! link_event {
    ($level:expr, $spec:expr, $($rest:tt)+) => {{
        let spec: &$crate::graph::LinkSpec = &$spec;
        ::tracing::event!(
            $level,
            consumer = %spec.consumer,
            name = %spec.name,
            r#type = %spec.kind,
            provider = %spec.provider,
            consumer_pid = spec.consumer_pid,
            provider_pid = spec.provider_pid,
            target = %spec.target.display(),
            $($rest)+
        )
    }};
}
pub(crate) use link_event;

/// Install the daemon's subscriber: one line per event on stdout (Rust's
/// stdout is line-buffered, so every event is flushed as it happens), no
/// colours unless a terminal is watching.
///
/// `RUST_LOG` takes `level` and `target=level` directives separated by
/// commas (e.g. `info,pv_xconnect::link=debug`); span and field filters
/// are not supported, which keeps a regex engine out of the binary.
pub fn init() {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    let default = || Targets::new().with_default(LevelFilter::INFO);
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match v.parse::<Targets>() {
            Ok(t) => (t, None),
            Err(e) => (default(), Some(format!("ignoring RUST_LOG={v:?}: {e}"))),
        },
        _ => (default(), None),
    };
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stdout)
                .with_ansi(std::io::stdout().is_terminal()),
        )
        .with(filter)
        .init();
    if let Some(msg) = bad {
        tracing::warn!("{msg}");
    }
}
