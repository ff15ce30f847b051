//! The pv-ctrl client: `pvcontrol` run in the appengine by `docker exec`,
//! as a person would (a `docker exec` caller is Pantavisor's management
//! side), with its answers parsed.

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

impl Appengine {
    /// `pvcontrol <args>`; its stdout (the response body).
    pub fn pvcontrol(&self, args: &[&str]) -> Result<String> {
        let mut cmd = vec!["pvcontrol"];
        cmd.extend_from_slice(args);
        let out = self.exec(&cmd)?;
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
    /// <action> <name>`); Ok when pv-ctrl accepted it.
    pub fn container_action(&self, name: &str, action: ContainerAction) -> Result<()> {
        self.pvcontrol(&["containers", action.as_str(), name])
            .map(drop)
    }
}

fn as_array(v: Value) -> Result<Vec<Value>> {
    match v {
        Value::Array(a) => Ok(a),
        other => bail!("expected a JSON array, got {other}"),
    }
}
