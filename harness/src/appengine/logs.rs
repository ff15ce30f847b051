//! Reading the appengine's logs: pantavisor.log, each container's
//! console, pv-appengine's own output, and picking a client's result line
//! out of its console (what `harness up` shows).
//!
//! A log that does not exist yet reads as empty: callers poll for lines.

use super::{Appengine, APPENGINE_OUT, STORAGE};

impl Appengine {
    /// A container's console log (empty if it has none yet).
    pub fn console_log(&self, container: &str) -> String {
        self.cat(&format!("{STORAGE}/logs/0/{container}/lxc/console.log"))
    }

    /// pantavisor.log.
    pub fn pantavisor_log(&self) -> String {
        self.cat(&format!("{STORAGE}/logs/0/pantavisor/pantavisor.log"))
    }

    /// pv-appengine's own stdout and stderr.
    pub fn appengine_output(&self) -> String {
        self.cat(APPENGINE_OUT)
    }

    fn cat(&self, path: &str) -> String {
        self.exec(&["cat", path])
            .map(|o| o.stdout)
            .unwrap_or_default()
    }
}

/// Words example clients print with their results.
const RESULT_WORDS: &[&str] = &[
    "RESULT",
    "OK",
    "FAIL",
    "REFUSED",
    "ERROR",
    "error",
    "uid=",
    "MISSING",
    "UNAVAILABLE",
];

/// The last line of a console that reports a result, if any.
pub fn result_line(log: &str) -> Option<&str> {
    log.lines()
        .rev()
        .find(|l| RESULT_WORDS.iter().any(|k| l.contains(k)))
}

/// The last result a client reported (else its last line), trimmed to 70
/// characters for a table cell.
pub fn last_result(log: &str) -> String {
    result_line(log)
        .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
        .unwrap_or("(no output)")
        .trim()
        .chars()
        .take(70)
        .collect()
}

/// The client's last result if it wrote one after byte `mark` of its
/// console (a restarted container may have truncated it: then the whole
/// log counts). A one-shot client's `RESULT` line is final, however old.
pub fn fresh_result(log: &str, mark: usize) -> Option<String> {
    let fresh = log.get(mark..).unwrap_or(log);
    let final_verdict = result_line(log).is_some_and(|l| l.contains("RESULT"));
    (result_line(fresh).is_some() || final_verdict).then(|| last_result(log))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_result_counts_only_after_the_mark_unless_final() {
        let log = "unix-echo FAIL no link\nwaiting\n";
        assert_eq!(fresh_result(log, log.len()), None);
        let later = format!("{log}unix-echo OK\n");
        assert_eq!(
            fresh_result(&later, log.len()).as_deref(),
            Some("unix-echo OK")
        );
        let verdict = "attacker RESULT all refused\nidle\n";
        assert_eq!(
            fresh_result(verdict, verdict.len()).as_deref(),
            Some("attacker RESULT all refused")
        );
        // A truncated (restarted) console is read whole.
        assert_eq!(fresh_result("rest OK\n", 500).as_deref(), Some("rest OK"));
    }

    #[test]
    fn last_result_falls_back_to_the_last_line() {
        assert_eq!(last_result("starting\nlistening\n"), "listening");
        assert_eq!(last_result(""), "(no output)");
        assert_eq!(last_result(&format!("{} OK", "x".repeat(100))).len(), 70);
    }
}
