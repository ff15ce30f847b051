//! Waiting for the appengine: polls with a deadline and an error that says
//! what was awaited and the last failure seen. Nothing here sleeps a fixed
//! time in place of a condition.

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde_json::Value;

use super::Appengine;
use crate::util::Step;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(300);

impl Appengine {
    /// Polls `check` until it yields `Some` or `timeout`; the error says
    /// what was awaited and the last failure seen.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Self) -> Result<Option<T>>,
    ) -> Result<T> {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        loop {
            match check(self) {
                Ok(Some(v)) => return Ok(v),
                Ok(None) => {}
                Err(e) => last = format!("{e:#}"),
            }
            if start.elapsed() > timeout {
                bail!("timed out after {timeout:?} waiting for {what} (last error: {last})");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for `pantavisor.status` = READY.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let step = Step::start(format!("waiting for {} to reach READY", self.name));
        self.wait_for("pantavisor.status READY", timeout, |ae| {
            let m = ae.devmeta()?;
            Ok((m["pantavisor.status"] == "READY").then_some(()))
        })?;
        step.done("");
        Ok(())
    }

    /// Waits until `consumer`'s link `name` has live pids and its target
    /// exists in the consumer's mount namespace; returns the graph entry.
    pub fn wait_link(&self, consumer: &str, name: &str, timeout: Duration) -> Result<Value> {
        self.wait_for(
            &format!("link {consumer} -> {name} injected"),
            timeout,
            |ae| ae.link_injected(&ae.graph()?, consumer, name).map(Some),
        )
    }

    /// `consumer`'s link `name` in `graph` if it is injected (live pids,
    /// target present in the consumer); the error says what is missing.
    pub fn link_injected(&self, graph: &[Value], consumer: &str, name: &str) -> Result<Value> {
        let Some(link) = graph
            .iter()
            .find(|l| l["consumer"] == consumer && l["name"] == name)
        else {
            bail!("no link {consumer}/{name} in the graph");
        };
        let pid = link["consumer_pid"].as_i64().unwrap_or(-1);
        if pid <= 0 || link["provider_pid"].as_i64().unwrap_or(-1) < 0 {
            bail!("pids not live yet: {link}");
        }
        let target = link_target(link);
        if self.exists_in(pid, &target)? {
            Ok(link.clone())
        } else {
            bail!("{target} not present in {consumer} (pid {pid}) yet")
        }
    }

    /// Where a link lands in the consumer (see [`link_target`]).
    pub fn link_target(&self, link: &Value) -> String {
        link_target(link)
    }

    /// Whether `path` exists in the mount namespace of `pid`.
    pub fn exists_in(&self, pid: i64, path: &str) -> Result<bool> {
        let out = self.exec(&["test", "-e", &format!("/proc/{pid}/root{path}")])?;
        Ok(out.code == 0)
    }

    /// Waits until `container`'s console log contains `needle`; returns
    /// the log.
    pub fn wait_console(&self, container: &str, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_for(
            &format!("{needle:?} in {container}'s console.log"),
            timeout,
            |ae| {
                let log = ae.console_log(container);
                Ok(log.contains(needle).then_some(log))
            },
        )
    }
}

/// Where a link lands in the consumer: its `target`, or pv-xconnect's
/// default when null (`/run/pv/services/<name>.sock`; drm: the socket).
pub fn link_target(link: &Value) -> String {
    match link["target"].as_str() {
        Some(t) => t.to_string(),
        None if link["type"] == "drm" => link["socket"].as_str().unwrap_or("").to_string(),
        None => format!(
            "/run/pv/services/{}.sock",
            link["name"].as_str().unwrap_or("")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn link_targets_default_like_pv_xconnect() {
        assert_eq!(
            link_target(&json!({"name": "raw-unix", "type": "unix", "target": "/run/x.sock"})),
            "/run/x.sock"
        );
        assert_eq!(
            link_target(&json!({"name": "raw-unix", "type": "unix", "target": null})),
            "/run/pv/services/raw-unix.sock"
        );
        assert_eq!(
            link_target(&json!({"name": "drm-master", "type": "drm", "socket": "/dev/dri/card0"})),
            "/dev/dri/card0"
        );
    }
}
