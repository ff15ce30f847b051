//! The hosted D-Bus system bus (upstream: CMake option
//! `PANTAVISOR_XCONNECT_DBUS_SYSTEMBUS`, dbus_daemon.c; enabled for the
//! docker appengine in meta-pantavisor's `feature/xconnect-hosted-systembus`).
//!
//! With it on, Pantavisor runs a managed `pv-dbus` daemon (Debian's
//! dbus-daemon) listening on `/run/pv/dbus/system_bus_socket`, and
//! `system-bus` is a builtin export: every requirement of it becomes a graph
//! link from provider `_pv_` (`provider_pid` 0) carrying the numeric `uid`
//! the requirement's role masquerades as on the bus. Roles get stable uids
//! from 90000 up, kept in `storage/config/dbus-role-uids.json`. The bus's
//! policy is default-deny; `services.json` entries
//! `{"type":"dbus","owns":N,"role":R,"allow":[A…]}` grant role R (N when
//! absent) ownership of and calls to N, and each A calls to N. Each role
//! resolves as user `pv-dbus-<role>` through a passwd (the appengine's own
//! plus one line per role) bound over `/etc/passwd` for the daemon only.
//! A state where a container exports `system-bus`, or where two exports own
//! one name on one bus, is refused ([`crate::state::State::validate`]).

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::daemon::DaemonSpec;
use crate::paths::Paths;
use crate::state::State;

/// Name of the managed daemon in `/daemons`.
pub const DAEMON: &str = "pv-dbus";
/// First uid handed to a role.
pub const UID_BASE: u32 = 90000;
/// The uid of a requirement without a role.
pub const NOBODY: u32 = 65534;
/// Prefix of a role's user name.
pub const USER_PREFIX: &str = "pv-dbus-";

/// The hosted bus of one appengine.
#[derive(Debug)]
pub struct HostBus {
    dir: PathBuf,
    uid_map: PathBuf,
    dbus_daemon: PathBuf,
    /// Serialises uid allocation (read-modify-write of the map file).
    alloc: Mutex<()>,
}

/// The first line of every bus configuration file upstream writes.
const DOCTYPE: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">"#;

/// The bus's base configuration: default deny, calls to the bus driver,
/// replies and signals allowed; the generated fragments grant the rest.
fn base_conf(socket: &Path, policy_dir: &Path) -> String {
    format!(
        r#"{DOCTYPE}
<busconfig>
  <type>system</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow receive_sender="org.freedesktop.DBus"/>
    <allow receive_type="method_call"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_requested_reply="true" receive_type="method_return"/>
    <allow receive_requested_reply="true" receive_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="signal"/>
  </policy>

  <includedir>{policy}</includedir>
</busconfig>
"#,
        socket = socket.display(),
        policy = policy_dir.display()
    )
}

impl HostBus {
    /// The bus under `paths` (its run directory is `<root>/run/pv/dbus`).
    pub fn new(paths: &Paths, dbus_daemon: PathBuf) -> Self {
        Self {
            dir: paths.abs("/run/pv/dbus"),
            uid_map: paths.storage().join("config/dbus-role-uids.json"),
            dbus_daemon,
            alloc: Mutex::new(()),
        }
    }

    /// The socket consumers' links point at (graph `socket`).
    pub fn socket(&self) -> PathBuf {
        self.dir.join("system_bus_socket")
    }

    fn conf(&self) -> PathBuf {
        self.dir.join("system.conf")
    }

    fn policy_dir(&self) -> PathBuf {
        self.dir.join("policy.d")
    }

    /// The daemon's private passwd.
    pub fn passwd(&self) -> PathBuf {
        self.dir.join("passwd")
    }

    /// How the managed `pv-dbus` daemon runs.
    pub fn daemon_spec(&self) -> DaemonSpec {
        DaemonSpec {
            name: DAEMON.into(),
            argv: vec![
                self.dbus_daemon.to_string_lossy().into_owned(),
                "--nofork".into(),
                "--nopidfile".into(),
                format!("--config-file={}", self.conf().display()),
            ],
            env: Vec::new(),
            enabled: true,
            jail_passwd: Some(self.passwd()),
        }
    }

    /// Lays down the run directory, base config and seed passwd before
    /// the daemon first starts.
    pub fn prepare(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(self.policy_dir())?;
        std::fs::write(self.passwd(), base_passwd())?;
        std::fs::write(self.conf(), base_conf(&self.socket(), &self.policy_dir()))
    }

    /// The stable uid of `role`, allocated (and persisted) on first use.
    /// The map is upstream's file: a JSON object in allocation order.
    pub fn role_uid(&self, role: &str) -> std::io::Result<u32> {
        let _g = self.alloc.lock().unwrap_or_else(|p| p.into_inner());
        let mut map: Vec<(String, u32)> = std::fs::read(&self.uid_map)
            .ok()
            .and_then(|b| serde_json::from_slice::<Map<String, Value>>(&b).ok())
            .map(|m| {
                let mut v: Vec<(String, u32)> = m
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, u32::try_from(v.as_u64()?).ok()?)))
                    .collect();
                v.sort_by_key(|(_, uid)| *uid);
                v
            })
            .unwrap_or_default();
        if let Some((_, uid)) = map.iter().find(|(r, _)| r == role) {
            return Ok(*uid);
        }
        let next = map
            .iter()
            .map(|(_, uid)| uid + 1)
            .max()
            .unwrap_or(UID_BASE)
            .max(UID_BASE);
        map.push((role.to_owned(), next));
        if let Some(d) = self.uid_map.parent() {
            std::fs::create_dir_all(d)?;
        }
        let body: Vec<String> = map
            .iter()
            .map(|(r, uid)| format!("{}:{uid}", Value::String(r.clone())))
            .collect();
        std::fs::write(&self.uid_map, format!("{{{}}}", body.join(",")))?;
        Ok(next)
    }

    /// The uid of a `system-bus` link: its role's, `nobody` without one.
    pub fn link_uid(&self, role: Option<&str>) -> u32 {
        match role {
            Some(r) => self.role_uid(r).unwrap_or(NOBODY),
            None => NOBODY,
        }
    }

    /// Writes the passwd and policy of `state`'s name declarations; returns
    /// whether either changed. Requirement roles get their uids too, in
    /// state order, so a role keeps one uid whatever asks first.
    pub fn generate(&self, state: &State) -> std::io::Result<bool> {
        let mut passwd = base_passwd();
        let mut policy = format!("{DOCTYPE}\n<busconfig>\n");
        let mut seen = BTreeSet::new();
        // One policy block per grant, one passwd line per role: the owner
        // may own, send to and receive from the name, each allowed caller
        // only send to and receive from it.
        let mut grant = |role: &str, owns: &str, comment: (String, String), own: bool| {
            let uid = self.role_uid(role)?;
            if seen.insert(role.to_owned()) {
                let _ = writeln!(
                    passwd,
                    "{USER_PREFIX}{role}:x:{uid}:{uid}::/nonexistent:/sbin/nologin"
                );
            }
            let _ = write!(
                policy,
                "  <!-- {} uid {uid}{} -->\n  <policy user=\"{USER_PREFIX}{role}\">\n{own_line}    <allow send_destination=\"{owns}\"/>\n    <allow receive_sender=\"{owns}\"/>\n  </policy>\n",
                comment.0,
                comment.1,
                own_line = if own { format!("    <allow own=\"{owns}\"/>\n") } else { String::new() },
            );
            std::io::Result::Ok(())
        };
        for c in &state.containers {
            for e in c.exports.iter().filter(|e| e.type_str() == "dbus") {
                let Some(owns) = e.owns.as_deref() else {
                    continue;
                };
                let owner = e.role.as_deref().unwrap_or(owns);
                let comment = format!("{} owns {owns} (owner role '{owner}'", c.name);
                grant(owner, owns, (comment, ")".into()), true)?;
                for a in &e.allow {
                    let comment = (format!("caller role '{a}'"), format!(" -> {owns}"));
                    grant(a, owns, comment, false)?;
                }
            }
        }
        policy.push_str("</busconfig>\n");
        for c in &state.containers {
            for r in c.required.iter().chain(&c.optional) {
                if r.name == crate::state::SYSTEM_BUS {
                    if let Some(role) = &r.role {
                        self.role_uid(role)?;
                    }
                }
            }
        }
        std::fs::create_dir_all(self.policy_dir())?;
        let policy_file = self.policy_dir().join("pv-generated.conf");
        let changed = std::fs::read(self.passwd()).ok().as_deref() != Some(passwd.as_bytes())
            || std::fs::read(&policy_file).ok().as_deref() != Some(policy.as_bytes());
        if changed {
            std::fs::write(self.passwd(), passwd)?;
            std::fs::write(policy_file, policy)?;
        }
        Ok(changed)
    }
}

/// The appengine's own passwd, so the daemon's own lookups keep working.
fn base_passwd() -> String {
    let mut s = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    if !s.is_empty() && !s.ends_with('\n') {
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The real appengine built with the option, on the state of
    /// meta-pantavisor's hosted-bus pvtest: `/run/pv/dbus/system.conf`,
    /// `policy.d/pv-generated.conf` and the role lines of `passwd`, byte
    /// for byte.
    #[test]
    fn files_match_upstreams() {
        let root = tempfile::tempdir().expect("tempdir");
        let paths = Paths::new("/");
        let bus = HostBus {
            dir: root.path().join("run/pv/dbus"),
            uid_map: root.path().join("storage/config/dbus-role-uids.json"),
            ..HostBus::new(&paths, "/usr/bin/dbus-daemon".into())
        };
        bus.prepare().expect("prepare");
        let conf = std::fs::read_to_string(bus.conf()).expect("system.conf");
        // Captured from the real appengine.
        let real_conf = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/pv/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>

  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus"/>
    <allow receive_sender="org.freedesktop.DBus"/>
    <allow receive_type="method_call"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_requested_reply="true" receive_type="method_return"/>
    <allow receive_requested_reply="true" receive_type="error"/>
    <allow send_type="signal"/>
    <allow receive_type="signal"/>
  </policy>

  <includedir>/run/pv/dbus/policy.d</includedir>
</busconfig>
"#;
        assert_eq!(
            conf.replace(&root.path().display().to_string(), ""),
            real_conf
        );
        let state = State::parse(
            "0",
            &json!({
                "host-server/run.json": {"services":{"required":[{"name":"system-bus","role":"example-service"}]}},
                "host-server/services.json": {"services":[{"type":"dbus","bus":"system-bus",
                    "owns":"org.pantavisor.Example","role":"example-service","allow":["operator","monitor"]}]},
                "host-client/run.json": {"services":{"required":[{"name":"system-bus","role":"operator"}]}}
            }),
        )
        .expect("state");
        assert!(bus.generate(&state).expect("generate"), "first write");
        assert!(
            !bus.generate(&state).expect("generate"),
            "unchanged: no rewrite"
        );
        let policy =
            std::fs::read_to_string(bus.policy_dir().join("pv-generated.conf")).expect("policy");
        assert_eq!(
            policy,
            r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- host-server owns org.pantavisor.Example (owner role 'example-service' uid 90000) -->
  <policy user="pv-dbus-example-service">
    <allow own="org.pantavisor.Example"/>
    <allow send_destination="org.pantavisor.Example"/>
    <allow receive_sender="org.pantavisor.Example"/>
  </policy>
  <!-- caller role 'operator' uid 90001 -> org.pantavisor.Example -->
  <policy user="pv-dbus-operator">
    <allow send_destination="org.pantavisor.Example"/>
    <allow receive_sender="org.pantavisor.Example"/>
  </policy>
  <!-- caller role 'monitor' uid 90002 -> org.pantavisor.Example -->
  <policy user="pv-dbus-monitor">
    <allow send_destination="org.pantavisor.Example"/>
    <allow receive_sender="org.pantavisor.Example"/>
  </policy>
</busconfig>
"#
        );
        let passwd = std::fs::read_to_string(bus.passwd()).expect("passwd");
        assert!(passwd.ends_with(
            "pv-dbus-example-service:x:90000:90000::/nonexistent:/sbin/nologin\npv-dbus-operator:x:90001:90001::/nonexistent:/sbin/nologin\npv-dbus-monitor:x:90002:90002::/nonexistent:/sbin/nologin\n"
        ));
        assert!(
            passwd.starts_with(&base_passwd()),
            "the appengine's own users first"
        );
    }
}
