//! `POST /commands` and `POST /signal` (ctrl_commands_ep.c, ctrl_cmd.c,
//! ctrl_signal_ep.c; checked on the real appengine).
//!
//! A command is `{"op":"<OP>","payload":"…"}`; a body that is not one, or
//! an unknown op, is 400 `Command has bad format`. Pantavisor holds one
//! command at a time until its loop takes it: another one meanwhile is 503
//! `A command is already in progress. Try again` (`Retry-After: 120`),
//! which `pvcontrol` turns into exit code 75. Refused outright, as on the
//! appengine (local mode, unclaimed, remote control off): `GO_REMOTE` (409),
//! `UPDATE_METADATA` (409), `UNCLAIM` (204 with an `Error` body). Accepted
//! commands take effect about a second later: `REBOOT_DEVICE` and
//! `POWEROFF_DEVICE` shut Pantavisor down as in appengine mode (pv-ctrl
//! closes; after a reboot it comes back, see [`crate::engine`]), `RUN_GC`
//! collects objects; the others (`LOCAL_RUN`, `MAKE_FACTORY`, ssh, …) are
//! logged and otherwise ignored — there are no updates here.
//!
//! `POST /signal` from Pantavisor itself (every caller here, see
//! [`super`]) is 500 `Signal not expected from this platform`, as for a
//! `docker exec` caller on the real appengine.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::wire::Response;
use super::Ctrl;
use crate::engine::Transition;

/// Largest command or signal body.
const MAX_BODY: usize = 4096;

/// Every op upstream knows.
const OPS: &[&str] = &[
    "UPDATE_METADATA",
    "REBOOT_DEVICE",
    "POWEROFF_DEVICE",
    "TRY_ONCE",
    "LOCAL_RUN",
    "MAKE_FACTORY",
    "RUN_GC",
    "ENABLE_SSH",
    "DISABLE_SSH",
    "GO_REMOTE",
    "DEFER_REBOOT",
    "LOCAL_RUN_COMMIT",
    "LOCAL_APPLY",
    "XCONNECT_GRAPH",
    "UNCLAIM",
];

/// The command slot.
#[derive(Debug, Default)]
pub struct Commands {
    pending: Arc<Mutex<Option<String>>>,
}

fn field(v: &Value, k: &str) -> Option<String> {
    match v.get(k)? {
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

impl Commands {
    /// How long Pantavisor's loop takes to pick a command up.
    pub const PICKUP: Duration = Duration::from_secs(1);

    /// `POST /commands`.
    pub fn post(&self, ctrl: &Ctrl, body: &[u8]) -> Response {
        if body.len() > MAX_BODY {
            return Response::error(507, "Not enough disk space available");
        }
        let parsed: Option<Value> = serde_json::from_slice(body).ok();
        let cmd = parsed.as_ref().and_then(|v| {
            let op = field(v, "op").filter(|op| OPS.contains(&op.as_str()))?;
            let payload = field(v, "payload")?;
            Some((op, payload))
        });
        let Some((op, payload)) = cmd else {
            return Response::error(400, "Command has bad format");
        };
        let refuse = |code, msg: &str| {
            ctrl.log
                .warn("cmd", &format!("rejecting {op} command: {msg}"));
            Response::error(code, msg)
        };
        match op.as_str() {
            "UPDATE_METADATA" => {
                return refuse(409, "Cannot do this operation while on local mode")
            }
            "GO_REMOTE" => {
                return refuse(
                    409,
                    "Cannot do this operation when remote mode is disabled by config",
                )
            }
            "UNCLAIM" => return refuse(204, "Device is already unclaimed"),
            _ => {}
        }
        let mut slot = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_some() {
            let mut r = refuse(503, "A command is already in progress. Try again");
            r.headers.push(("Retry-After".into(), "120".into()));
            return r;
        }
        *slot = Some(op.clone());
        ctrl.log.info(
            "commands-ep",
            &format!("new command arrive: {op} payload '{payload}'"),
        );
        let pending = self.pending.clone();
        let engine = ctrl.engine.clone();
        let log = ctrl.log.clone();
        let paths = ctrl.paths.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Self::PICKUP).await;
            match op.as_str() {
                "REBOOT_DEVICE" => {
                    log.debug(
                        "controller",
                        &format!("reboot command with message '{payload}' received. Rebooting..."),
                    );
                    engine.transition_now(Transition::Reboot).await
                }
                "POWEROFF_DEVICE" => {
                    log.debug(
                        "controller",
                        &format!(
                            "poweroff command with message '{payload}' received. Powering off..."
                        ),
                    );
                    engine.transition_now(Transition::Poweroff).await
                }
                "RUN_GC" => {
                    super::store::gc(&paths);
                }
                _ => log.info(
                    "controller",
                    &format!("command {op} ('{payload}') has no effect in appengine-lite"),
                ),
            }
            *pending.lock().unwrap_or_else(|p| p.into_inner()) = None;
        });
        Response::ok()
    }
}

/// `POST /signal`.
pub fn signal(ctrl: &Ctrl, body: &[u8]) -> Response {
    if ctrl.engine.state().is_none() {
        return Response::error(500, "State not loaded yet");
    }
    if body.len() > MAX_BODY {
        return Response::error(507, "Not enough disk space available");
    }
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    if parsed.as_ref().and_then(|v| v.get("type")).is_none() {
        return Response::error(400, "Signal has bad format");
    }
    Response::error(500, "Signal not expected from this platform")
}
