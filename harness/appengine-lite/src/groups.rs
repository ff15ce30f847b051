//! Container groups: start order, default status goal, restart policy and
//! auto-recovery of their members.
//!
//! A state without `groups.json` gets upstream's defaults
//! (`/etc/pantavisor/defaults/groups.json`): `data` (goal MOUNTED), `root`,
//! `platform` (restart policy `system`) and `app` (restart policy
//! `container`, auto-recovery on-failure × 5, then reboot), in that order.
//! A state's own `groups.json` replaces them.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::recovery::AutoRecovery;
use crate::state::{RestartPolicy, Status};

/// One group.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub status_goal: Status,
    pub restart_policy: RestartPolicy,
    /// Seconds a member may take to reach its goal before the next group
    /// starts anyway.
    pub timeout: u64,
    pub auto_recovery: Option<AutoRecovery>,
}

/// Upstream's `PV_UPDATER_GOALS_TIMEOUT` default, used when a group gives
/// no timeout.
pub const DEFAULT_TIMEOUT: u64 = 120;

impl Group {
    fn new(name: &str, goal: Status, policy: RestartPolicy) -> Self {
        Self {
            name: name.into(),
            status_goal: goal,
            restart_policy: policy,
            timeout: 30,
            auto_recovery: None,
        }
    }

    /// The groups of a state without `groups.json`.
    pub fn defaults() -> Vec<Group> {
        vec![
            Group::new("data", Status::Mounted, RestartPolicy::System),
            Group::new("root", Status::Started, RestartPolicy::System),
            Group::new("platform", Status::Started, RestartPolicy::System),
            Group {
                auto_recovery: Some(AutoRecovery::app_default()),
                ..Group::new("app", Status::Started, RestartPolicy::Container)
            },
        ]
    }

    /// Parses a state's `groups.json` (an array of group objects).
    pub fn parse_list(v: &Value) -> Result<Vec<Group>, String> {
        let list = v.as_array().ok_or("groups.json is not an array")?;
        if list.is_empty() {
            return Err("empty groups array".into());
        }
        list.iter().map(Group::parse).collect()
    }

    fn parse(v: &Value) -> Result<Group, String> {
        let o: &Map<String, Value> = v.as_object().ok_or("invalid group entry")?;
        let name = o
            .get("name")
            .and_then(Value::as_str)
            .ok_or("group does not have a name")?;
        let goal = match o.get("status_goal").and_then(Value::as_str) {
            None => Status::Started,
            Some(s) => Status::parse_goal(s).ok_or(format!("group '{name}': bad status_goal"))?,
        };
        let policy = match o.get("restart_policy").and_then(Value::as_str) {
            None => RestartPolicy::Container,
            Some(s) => {
                RestartPolicy::parse(s).ok_or(format!("group '{name}': bad restart_policy"))?
            }
        };
        let timeout = match o.get("timeout") {
            None => DEFAULT_TIMEOUT,
            Some(t) => t
                .as_u64()
                .or_else(|| t.as_str().and_then(|s| s.parse().ok()))
                .ok_or("group timeout malformed or beyond to the limits")?,
        };
        Ok(Group {
            name: name.into(),
            status_goal: goal,
            restart_policy: policy,
            timeout,
            auto_recovery: o
                .get("auto_recovery")
                .and_then(Value::as_object)
                .map(AutoRecovery::parse)
                .filter(AutoRecovery::enabled),
        })
    }
}

/// `GET /groups` entry, keys in upstream's order.
#[derive(Debug, Serialize)]
pub struct GroupJson<'a> {
    pub name: &'a str,
    pub status_goal: &'static str,
    pub restart_policy: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_recovery: Option<GroupRecoveryJson>,
}

/// The summary of a group's auto-recovery upstream lists.
#[derive(Debug, Serialize)]
pub struct GroupRecoveryJson {
    pub max_retries: u32,
    pub stable_timeout: u64,
    pub backoff_policy: String,
}

impl Group {
    /// This group as `GET /groups` lists it, with its current `status`.
    pub fn json(&self, status: Status) -> GroupJson<'_> {
        GroupJson {
            name: &self.name,
            status_goal: self.status_goal.as_str(),
            restart_policy: self.restart_policy.as_str(),
            status: status.as_str(),
            auto_recovery: self.auto_recovery.as_ref().map(|a| GroupRecoveryJson {
                max_retries: a.max_retries,
                stable_timeout: a.stable_timeout,
                backoff_policy: a.backoff.render(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pvcontrol groups ls` on the real appengine with every group idle.
    #[test]
    fn defaults_list_like_upstream() {
        let groups = Group::defaults();
        let list: Vec<_> = groups.iter().map(|g| g.json(Status::Ready)).collect();
        assert_eq!(
            serde_json::to_string(&list).expect("json"),
            r#"[{"name":"data","status_goal":"MOUNTED","restart_policy":"system","status":"READY"},{"name":"root","status_goal":"STARTED","restart_policy":"system","status":"READY"},{"name":"platform","status_goal":"STARTED","restart_policy":"system","status":"READY"},{"name":"app","status_goal":"STARTED","restart_policy":"container","status":"READY","auto_recovery":{"max_retries":5,"stable_timeout":30,"backoff_policy":"reboot"}}]"#
        );
    }

    #[test]
    fn parse_groups_json() {
        let v = serde_json::json!([{"name":"g1","restart_policy":"system"},
                                   {"name":"g2","status_goal":"READY","timeout":"5"}]);
        let g = Group::parse_list(&v).expect("parse");
        assert_eq!(g[0].restart_policy, RestartPolicy::System);
        assert_eq!(g[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!((g[1].status_goal, g[1].timeout), (Status::Ready, 5));
        assert!(Group::parse_list(&serde_json::json!([{"status_goal":"READY"}])).is_err());
    }
}
