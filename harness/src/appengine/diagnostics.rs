//! What a person needs when something failed: the tails of pantavisor.log,
//! pv-appengine's output and each installed container's console, what
//! pv-ctrl says (containers, graph, daemons) and `pv-xconnect status`.
//! Every part is collected on its own: one that fails says so and the rest
//! still shows.

use super::{Appengine, APPENGINE_OUT};

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

    /// `pv-xconnect status` of the daemon in the appengine (ours: a real
    /// image gets our binary before it boots).
    fn xconnect_status(&self) -> String {
        self.exec(&["pv-xconnect", "status"])
            .map(|o| format!("{}{}", o.stdout, o.stderr))
            .unwrap_or_else(|e| format!("(failed: {e:#})"))
            .trim()
            .to_string()
    }
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
