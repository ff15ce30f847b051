//! The pv-ctrl client: `pvcontrol` run in the appengine by `docker exec`,
//! as a person would (a `docker exec` caller is Pantavisor's management
//! side), with its answers parsed.
//!
//! Container actions wait longer than pvcontrol's default: real pv-ctrl
//! answers `PUT /containers/<name>` only once the stop has gone through
//! (about 5 s for the container's loggers, then up to 5 s more for an init
//! that ignores the halt signal), while pvcurl gives up on an answer idle
//! for 5 s. Upstream's script takes the client's arguments from
//! `CURL_ARGS`; pvcurl's `--connect-timeout N` is its idle limit, so
//! [`Appengine::container_action`] passes one that outlasts a forced stop.
//! appengine-lite's pvcontrol honours the same variable.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::Appengine;

/// What `PUT /containers/<name>` asks of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContainerAction {
    Start,
    Stop,
    Restart,
}

impl ContainerAction {
    /// pvcontrol's (and pv-ctrl's) word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            ContainerAction::Start => "start",
            ContainerAction::Stop => "stop",
            ContainerAction::Restart => "restart",
        }
    }
}

/// How long pvcurl may wait for pv-ctrl's answer to a container action:
/// beyond upstream's stop (5 s of loggers, 5 s of grace, the SIGKILL).
const ACTION_IDLE_SECS: u64 = 30;

/// upstream pvcontrol's default client arguments with [`ACTION_IDLE_SECS`]
/// as the idle limit (`-w` keeps the status line the script reads).
fn action_curl_args() -> String {
    format!("CURL_ARGS=-s -w \\n%{{http_code}} --connect-timeout {ACTION_IDLE_SECS} --max-time 240")
}

impl Appengine {
    /// `pvcontrol <args>`; its stdout (the response body).
    pub fn pvcontrol(&self, args: &[&str]) -> Result<String> {
        let mut cmd = vec!["pvcontrol"];
        cmd.extend_from_slice(args);
        self.run_pvcontrol(&cmd, args, super::EXEC_TIMEOUT)
    }

    /// Runs `cmd` (a pvcontrol command line, maybe behind `env`) within
    /// `timeout`; stdout when it exits 0.
    fn run_pvcontrol(&self, cmd: &[&str], args: &[&str], timeout: Duration) -> Result<String> {
        let out = self.exec_with_timeout(cmd, timeout)?;
        if out.code != 0 {
            bail!(
                "pvcontrol {} exited {}: {}{}",
                args.join(" "),
                out.code,
                out.stderr.trim(),
                out.stdout.trim()
            );
        }
        Ok(out.stdout)
    }

    /// `pvcontrol <args>` parsed as JSON.
    pub fn pvcontrol_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.pvcontrol(args)?;
        serde_json::from_str(out.trim())
            .with_context(|| format!("pvcontrol {} printed no JSON: {out:?}", args.join(" ")))
    }

    /// `GET /devmeta`.
    pub fn devmeta(&self) -> Result<Value> {
        self.pvcontrol_json(&["devmeta", "ls"])
    }

    /// `GET /containers`.
    pub fn containers(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["containers", "ls"])?)
    }

    /// The containers running after Pantavisor refused the state it was
    /// given. Pantavisor refusing its factory revision goes on to
    /// `STATE_REBOOT`, which in appengine mode ends it without rebooting
    /// (appengine-lite copies this): pv-ctrl then answers nothing, nothing
    /// runs, and pv-appengine launches it again ~5 s later, which refuses
    /// again. Caught while a launch is still loading, pv-ctrl may answer
    /// "State not loaded yet": nothing is listed either. Any other failure
    /// of pv-ctrl is an error.
    pub fn containers_after_refusal(&self) -> Result<Vec<Value>> {
        match self.containers() {
            Ok(list) => Ok(list),
            Err(e) if format!("{e:#}").contains("State not loaded yet") => Ok(Vec::new()),
            Err(e) if self.ended_by_appengine_reboot() => {
                eprintln!(
                    "[harness] pv-ctrl is gone after Pantavisor's appengine-mode reboot: {e:#}"
                );
                Ok(Vec::new())
            }
            Err(e) => Err(e.context("pv-ctrl stopped answering")),
        }
    }

    /// Whether Pantavisor went through `STATE_REBOOT`, which in appengine
    /// mode ends it (and pv-ctrl) without a reboot.
    pub fn ended_by_appengine_reboot(&self) -> bool {
        self.pantavisor_log()
            .contains("will not actually perform 'reboot' as we are in appengine mode")
    }

    /// `GET /xconnect-graph`.
    pub fn graph(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["graph", "ls"])?)
    }

    /// `GET /daemons`.
    pub fn daemons(&self) -> Result<Vec<Value>> {
        as_array(self.pvcontrol_json(&["daemons", "ls"])?)
    }

    /// Status of one container from `GET /containers`.
    pub fn container_status(&self, name: &str) -> Result<Option<String>> {
        Ok(self
            .containers()?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["status"].as_str().map(str::to_string)))
    }

    /// `PUT /containers/<name>` with `action` (`pvcontrol containers
    /// <action> <name>`), waiting for pv-ctrl's answer as long as a real
    /// stop takes; Ok when pv-ctrl accepted it (and, for a stop or restart,
    /// the stop went through).
    pub fn container_action(&self, name: &str, action: ContainerAction) -> Result<()> {
        let env = action_curl_args();
        let args = ["containers", action.as_str(), name];
        let mut cmd = vec!["env", env.as_str(), "pvcontrol"];
        cmd.extend_from_slice(&args);
        let limit = Duration::from_secs(ACTION_IDLE_SECS) + super::EXEC_TIMEOUT;
        self.run_pvcontrol(&cmd, &args, limit).map(drop)
    }
}

fn as_array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("expected a JSON array, got {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pvcontrol word-splits `CURL_ARGS`; pvcurl reads `-w`'s `\n` with
    /// printf's `%b` and `--connect-timeout` as `nc -w`.
    #[test]
    fn action_curl_args_keep_the_status_line_and_raise_the_idle_limit() {
        let a = action_curl_args();
        let words: Vec<&str> = a.trim_start_matches("CURL_ARGS=").split(' ').collect();
        assert_eq!(
            words,
            [
                "-s",
                "-w",
                "\\n%{http_code}",
                "--connect-timeout",
                "30",
                "--max-time",
                "240"
            ]
        );
    }
}
