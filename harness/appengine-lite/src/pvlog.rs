//! `pantavisor.log`: Pantavisor's own log, where the harness greps for
//! `platform '<c>' status is now STARTED` and `state revision '0' status is
//! now READY`, and where the managed daemon's output is appended.
//!
//! Line format imitates upstream's file logger:
//! `[pantavisor] 2026-11-23 23:00:00 INFO -- [state]: <message>`.
//! Daemon output is appended verbatim, one line at a time, as if the daemon
//! inherited the log as stdout.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Severity printed in a line.
#[derive(Debug, Clone, Copy)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Appends lines to `pantavisor.log` (and echoes them to stderr).
#[derive(Debug)]
pub struct PvLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl PvLog {
    /// Opens (creating directories) the log for appending.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self {
            path: path.to_owned(),
            file: Mutex::new(Some(file)),
        })
    }

    /// Path of the log file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes one formatted line from `module`.
    pub fn log(&self, level: Level, module: &str, msg: &str) {
        let line = format!(
            "[pantavisor] {} {} -- [{}]: {}",
            timestamp(),
            level.as_str(),
            module,
            msg
        );
        eprintln!("{line}");
        self.raw(&line);
    }

    /// Writes `line` verbatim (a newline is added).
    pub fn raw(&self, line: &str) {
        let mut guard = match self.file.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(f) = guard.as_mut() {
            // One write per line so concurrent writers never interleave
            // inside a line (the file is opened O_APPEND).
            let mut buf = Vec::with_capacity(line.len() + 1);
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
            if let Err(e) = f.write_all(&buf) {
                eprintln!("pantavisor.log write failed: {e}");
            }
        }
    }

    /// `INFO` shorthand.
    pub fn info(&self, module: &str, msg: &str) {
        self.log(Level::Info, module, msg)
    }

    /// `ERROR` shorthand.
    pub fn error(&self, module: &str, msg: &str) {
        self.log(Level::Error, module, msg)
    }

    /// `DEBUG` shorthand.
    pub fn debug(&self, module: &str, msg: &str) {
        self.log(Level::Debug, module, msg)
    }

    /// `WARN` shorthand.
    pub fn warn(&self, module: &str, msg: &str) {
        self.log(Level::Warn, module, msg)
    }
}

/// `YYYY-MM-DD hh:mm:ss` in UTC, without pulling in a date crate.
fn timestamp() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (y, m, d, hh, mm, ss) = civil(secs);
    format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
}

/// Civil UTC date and time `(year, month, day, hour, minute, second)` of a
/// Unix time (Howard Hinnant's days-from-civil inverse).
pub fn civil(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, rem / 3600, (rem / 60) % 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_shape() {
        let t = timestamp();
        assert_eq!(t.len(), 19, "{t}");
        assert!(t.starts_with("20"), "{t}");
    }
}
