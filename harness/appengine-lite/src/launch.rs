//! One launch of Pantavisor on revision 0, as far as it can refuse it.
//!
//! Upstream (pantavisor.c, state.c; seen on the real appengine) refuses
//! its factory revision in one of two places:
//!
//! - `_pv_run`: the state does not parse (`state could not be loaded`) or
//!   an object in the trail does not hash to its name (`trails object <key>
//!   with checksum <sha> failed`, then `state objects validation went
//!   wrong`). pvtx installed it without checking, so `.pvtx-done` is there.
//!   The factory revision cannot be rolled back: `bad factory revision`.
//! - the first state run in `_pv_wait`: a required service nobody exports
//!   (`required service '<n>' for platform '<c>' not found`) or, with the
//!   hosted bus, a container exporting `system-bus`: `a platform did not
//!   work as expected. Tearing down...`.
//!
//! Either way Pantavisor goes to `STATE_REBOOT`, which in appengine mode
//! (`will not actually perform 'reboot' as we are in appengine mode`) shuts
//! it down: pv-ctrl's listener closes (its socket file stays, so a client
//! finds it and gets no answer), the daemons get SIGTERM, and pantavisor
//! exits 0. pv-appengine launches it again 5 s later, and it refuses the
//! same revision the same way, for as long as the container runs.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::hostbus::HostBus;
use crate::install::{self, object_ref};
use crate::paths::Paths;
use crate::pvlog::PvLog;
use crate::state::State;

/// Where upstream's state machine gives up on the revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `_pv_run`, with the controller's own line after the cause.
    Run(&'static str),
    /// The first state run (`_pv_wait`).
    Wait,
}

/// Why a launch refused revision 0: upstream's first error line (module,
/// text) and where it was raised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub module: &'static str,
    pub error: String,
    pub stage: Stage,
}

impl Refusal {
    fn run(module: &'static str, error: String, why: &'static str) -> Self {
        Self {
            module,
            error,
            stage: Stage::Run(why),
        }
    }

    /// Upstream's lines from the cause to the appengine-mode non-reboot.
    pub fn log(&self, log: &PvLog) {
        log.error(self.module, &self.error);
        match self.stage {
            Stage::Run(why) => {
                log.error("controller", why);
                log.error("controller", "bad factory revision");
            }
            Stage::Wait => log.error(
                "controller",
                "a platform did not work as expected. Tearing down...",
            ),
        }
        log.info("controller", "preparing 'reboot'...");
        log.info(
            "controller",
            "will not actually perform 'reboot' as we are in appengine mode",
        );
    }
}

/// Installs pvtx.d on first boot, then parses, checks and validates
/// revision 0 (and writes the hosted bus's policy); the installed files are
/// logged as they go.
pub fn load(paths: &Paths, log: &PvLog, bus: Option<&HostBus>) -> Result<State, Refusal> {
    const NOT_LOADED: &str = "state could not be loaded";
    let installed = install::ensure_installed(paths)
        .map_err(|e| Refusal::run("pvtx", format!("pvtx install failed: {e}"), NOT_LOADED))?;
    for f in &installed.files {
        log.info(
            "pvtx",
            &format!("installed '{}' into revision 0", f.display()),
        );
    }
    if !installed.files.is_empty() {
        log.info("pvtx", "wrote .pvtx-done");
    }
    let state = State::parse("0", &installed.state)
        .map_err(|e| Refusal::run("state", e.to_string(), NOT_LOADED))?;
    if let Err((key, sha)) = check_objects(paths, "0", &installed.state) {
        return Err(Refusal::run(
            "state",
            format!("trails object {key} with checksum {sha} failed"),
            "state objects validation went wrong",
        ));
    }
    state.validate(bus.is_some()).map_err(|e| Refusal {
        module: match e {
            crate::state::StateError::MissingService { .. } => "state",
            _ => "dbus-daemon",
        },
        error: e.to_string(),
        stage: Stage::Wait,
    })?;
    if let Some(bus) = bus {
        bus.generate(&state).map_err(|e| Refusal {
            module: "dbus-daemon",
            error: format!("could not write the hosted bus policy: {e}"),
            stage: Stage::Wait,
        })?;
    }
    log.info(
        "state",
        &format!(
            "state revision '0' loaded with {} containers",
            state.containers.len()
        ),
    );
    Ok(state)
}

/// Upstream's `pv_state_validate_checksum`: every object of the state, as
/// the trail holds it, must hash to its name; the first that does not is
/// returned as (key, sha).
pub fn check_objects(paths: &Paths, rev: &str, state: &Value) -> Result<(), (String, String)> {
    let Some(map) = state.as_object() else {
        return Ok(());
    };
    for (key, v) in map {
        let Some(sha) = object_ref(key, v) else {
            continue;
        };
        let path: PathBuf = paths.trail(rev).join(key);
        if sha256_file(&path).is_none_or(|h| !h.eq_ignore_ascii_case(sha)) {
            return Err((key.clone(), sha.to_owned()));
        }
    }
    Ok(())
}

fn sha256_file(path: &std::path::Path) -> Option<String> {
    let mut f = File::open(path).ok()?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Some(hex::encode(hasher.finalize()))
}
