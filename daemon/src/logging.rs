//! How the daemon logs.
//!
//! Every line about a link carries the same fields, in the same order,
//! under the same names: `consumer`, `name`, `type`, `provider`,
//! `consumer_pid`, `provider_pid`, `target`, then what the line adds
//! (`reason` for why something happened). `link_event!` writes them, so
//! no call site can spell them differently. Link events (injected,
//! pending, failed, removed…) are logged by [`crate::reconcile`] only,
//! one line each; session lines by [`crate::link`]'s accept loop, through
//! a [`Throttle`] so a peer that fails thousands of sessions produces a
//! handful of lines and a count.
//!
//! Strings from containers (names, paths, reasons quoting them) are never
//! written raw: the subscriber escapes every control character in every
//! field ([`EscapedFields`]), so one event is always one line and no
//! terminal sequence gets through, and identifiers that are not plain
//! words are quoted ([`Escaped`]) so a name cannot pose as another field.
//!
//! [`init`] installs the daemon's subscriber: lines go to stdout, which
//! Pantavisor captures into pantavisor.log.

use std::fmt;
use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

/// Log one line about a link: `link_event!(Level::WARN, spec, reason =
/// %why, "link failed")`. The link's identifying fields come first; extra
/// fields and the message follow as in `tracing::event!`.
macro_rules! link_event {
    ($level:expr, $spec:expr, $($rest:tt)+) => {{
        let spec: &$crate::graph::LinkSpec = &$spec;
        ::tracing::event!(
            $level,
            consumer = %$crate::logging::Escaped(&spec.consumer),
            name = %$crate::logging::Escaped(&spec.name),
            r#type = %$crate::logging::Escaped(spec.kind.as_str()),
            provider = %$crate::logging::Escaped(&spec.provider),
            consumer_pid = spec.consumer_pid,
            provider_pid = spec.provider_pid,
            target = %$crate::logging::Escaped(&spec.target.to_string_lossy()),
            $($rest)+
        )
    }};
}
pub(crate) use link_event;

/// An identifier from a container (name, path) for a log line or the
/// status table: as is when it is a plain word, quoted and escaped like
/// Rust's `{:?}` otherwise.
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plain = !self.0.is_empty()
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:@+,%~".contains(c));
        if plain {
            f.write_str(self.0)
        } else {
            write!(f, "{:?}", self.0)
        }
    }
}

/// Characters never written raw: controls (C0, C1, DEL) and the Unicode
/// marks that reorder text on a terminal.
fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Write `s` with every [`must_escape`] character as `\n`, `\t`, `\r` or
/// `\u{..}`.
pub fn write_escaped(out: &mut impl fmt::Write, s: &str) -> fmt::Result {
    let mut rest = s;
    while let Some(i) = rest.find(must_escape) {
        out.write_str(&rest[..i])?;
        let c = rest[i..].chars().next().unwrap_or('\0');
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_str("\\t")?,
            c => write!(out, "\\u{{{:x}}}", c as u32)?,
        }
        rest = &rest[i + c.len_utf8()..];
    }
    out.write_str(rest)
}

/// `s` with control characters escaped (see [`write_escaped`]).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let _ = write_escaped(&mut out, s);
    out
}

/// The subscriber's field formatter: tracing's default format, then every
/// control character escaped.
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> fmt::Result {
        let mut raw = String::new();
        self.0.format_fields(Writer::new(&mut raw), fields)?;
        write_escaped(&mut writer, &raw)
    }
}

/// Lines a [`Throttle`] lets through per window.
pub const BURST: u32 = 5;
/// A [`Throttle`]'s window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Rate limit for a repeated message (one per link): [`BURST`] lines per
/// [`WINDOW`], the rest counted and reported with the next line let through.
#[derive(Debug)]
pub struct Throttle(Mutex<State>);

#[derive(Debug)]
struct State {
    window: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle(Mutex::new(State {
            window: Instant::now(),
            logged: 0,
            suppressed: 0,
        }))
    }
}

impl Throttle {
    /// `Some(n)`: log this one, mentioning the `n` suppressed since the
    /// last line; `None`: suppressed (counted).
    pub fn admit(&self) -> Option<u64> {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if st.window.elapsed() >= WINDOW {
            st.window = Instant::now();
            st.logged = 0;
        }
        if st.logged < BURST {
            st.logged += 1;
            Some(std::mem::take(&mut st.suppressed))
        } else {
            st.suppressed += 1;
            None
        }
    }

    /// Messages suppressed and not reported yet (reset).
    pub fn take_suppressed(&self) -> u64 {
        let mut st = self.0.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut st.suppressed)
    }
}

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
                .fmt_fields(EscapedFields::default())
                .with_writer(std::io::stdout)
                .with_ansi(std::io::stdout().is_terminal()),
        )
        .with(filter)
        .init();
    if let Some(msg) = bad {
        tracing::warn!("{msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_never_reach_the_log_raw() {
        assert_eq!(
            escape("a\nb\r\tc\x1b[31m\u{202e}d"),
            "a\\nb\\r\\tc\\u{1b}[31m\\u{202e}d"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn identifiers_are_quoted_unless_plain() {
        assert_eq!(
            Escaped("pv-example-unix-client").to_string(),
            "pv-example-unix-client"
        );
        assert_eq!(
            Escaped("/run/pv/services/x.sock").to_string(),
            "/run/pv/services/x.sock"
        );
        assert_eq!(
            Escaped("a provider=evil").to_string(),
            "\"a provider=evil\""
        );
        assert_eq!(Escaped("x\ny").to_string(), "\"x\\ny\"");
        assert_eq!(Escaped("").to_string(), "\"\"");
    }

    #[test]
    fn a_throttle_lets_a_burst_through_then_counts() {
        let t = Throttle::default();
        let passed: Vec<Option<u64>> = (0..BURST + 3).map(|_| t.admit()).collect();
        assert!(passed[..BURST as usize].iter().all(|p| *p == Some(0)));
        assert!(passed[BURST as usize..].iter().all(Option::is_none));
        assert_eq!(t.take_suppressed(), 3);
        assert_eq!(t.take_suppressed(), 0);
    }

    #[test]
    fn the_subscriber_escapes_every_field() {
        use tracing_subscriber::prelude::*;
        let logs = std::sync::Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = logs.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(EscapedFields::default())
                .with_ansi(false)
                .with_writer(move || Sink(sink.clone())),
        );
        tracing::subscriber::with_default(subscriber, || {
            let reason = String::from("bad\nINFO forged line");
            tracing::warn!(reason = %reason, "msg with \x1b[2J and\r\n a second line");
        });
        let text = String::from_utf8(logs.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("bad\\nINFO forged line"), "{text}");
        assert!(!text.contains('\x1b'), "{text}");
    }

    struct Sink(std::sync::Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
