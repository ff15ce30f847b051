//! What a person needs when something failed: the tails of pantavisor.log,
//! pv-appengine's output and each installed container's console, what
//! pv-ctrl says (containers, graph, daemons) and pv-xconnect's view of its
//! links (`pv-xconnect status` where our daemon runs, its log lines
//! otherwise).
//! Every part is collected on its own: one that fails says so and the rest
//! still shows.

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::{Appengine, APPENGINE_OUT, STORAGE};

/// Where our pv-xconnect serves its status (its `--status-socket` default).
pub const XCONNECT_STATUS_SOCKET: &str = "/run/pv-xconnect/status.sock";

impl Appengine {
    /// The report, as one string (printed by a failing test).
    pub fn diagnostics(&self) -> String {
        let mut out = format!("==== diagnostics of appengine {} ====\n", self.name);
        out += &format!(
            "---- pantavisor.log (tail) ----\n{}\n",
            tail(&self.pantavisor_log(), 60)
        );
        out += &format!(
            "---- {APPENGINE_OUT} (tail) ----\n{}\n",
            tail(&self.appengine_output(), 20)
        );
        for c in &self.installed {
            out += &format!(
                "---- {c} console.log (tail) ----\n{}\n",
                tail(&self.console_log(c), 15)
            );
        }
        for (title, args) in [
            ("pvcontrol ls", &["ls"][..]),
            ("pvcontrol graph ls", &["graph", "ls"][..]),
            ("pvcontrol daemons ls", &["daemons", "ls"][..]),
        ] {
            let r = self
                .pvcontrol(args)
                .unwrap_or_else(|e| format!("(failed: {e:#})"));
            out += &format!("---- {title} ----\n{}\n", r.trim());
        }
        out += &format!("---- pv-xconnect status ----\n{}\n", self.xconnect_status());
        out
    }

    /// What pv-xconnect says about its links. Only our daemon has a status
    /// socket, and only its binary answers `pv-xconnect status` (the C
    /// one, given any argument, starts a second daemon): so the client runs
    /// only where the socket is. Any other pv-xconnect (an image's own, or
    /// ours when its socket is gone) is described by its lines in
    /// pantavisor.log, where Pantavisor captures daemons' output.
    fn xconnect_status(&self) -> String {
        let script = format!(
            "if [ -S {XCONNECT_STATUS_SOCKET} ]; then exec pv-xconnect status; fi; \
             echo '(no status socket at {XCONNECT_STATUS_SOCKET}: not our pv-xconnect, or it is down; \
             its lines in pantavisor.log follow)'; \
             grep -i 'xconnect\\|pvx-' {STORAGE}/logs/0/pantavisor/pantavisor.log 2>/dev/null | tail -n 30"
        );
        self.exec(&["sh", "-c", &script])
            .map(|o| format!("{}{}", o.stdout, o.stderr))
            .unwrap_or_else(|e| format!("(failed: {e:#})"))
            .trim()
            .to_string()
    }
}

impl Appengine {
    /// Our pv-xconnect's links as its status socket reports them (JSON
    /// objects with `consumer`, `name`, `state`, `reason`, counters), asked
    /// with netcat, which every appengine image carries; an error where no
    /// such socket answers (another pv-xconnect, or ours down).
    pub fn xconnect_links(&self) -> Result<Vec<Value>> {
        let reply = self.sh(&format!(
            "[ -S {XCONNECT_STATUS_SOCKET} ] && printf 'status\\n' | nc -N -U {XCONNECT_STATUS_SOCKET}"
        ))?;
        let v: Value = serde_json::from_str(reply.trim())
            .with_context(|| format!("status socket answered {reply:?}"))?;
        match (v.get("links"), v.get("error")) {
            (_, Some(e)) => bail!("status socket: {e}"),
            (Some(Value::Array(links)), None) => Ok(links.clone()),
            _ => bail!("status socket answered {v}"),
        }
    }
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
