//! `lxc.container.conf` as pvr's builtin `lxc-docker` template renders it.
//!
//! Only the knobs our examples (and the real fixtures) use are supported;
//! the output is byte-identical to pvr's for them, including the template's
//! double spaces (`user  net  ipc`, `proc  sys:rw  cgroup`), which come from
//! its whitespace trimming and are kept so object hashes match real exports.

use serde_json::{Map, Value};

use super::DockerConfig;

/// Renders the configuration of container `name`.
pub fn render(name: &str, docker: &DockerConfig, args: &Map<String, Value>) -> String {
    let arg_str = |k: &str| -> Option<String> {
        match args.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(Value::Bool(true)) => Some("true".into()),
            _ => None,
        }
    };
    let arg_list = |k: &str| -> Vec<String> {
        match args.get(k) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| match v {
                    Value::String(s) => Some(s.clone()),
                    Value::Null => None,
                    other => Some(other.to_string()),
                })
                .collect(),
            Some(Value::String(s)) if !s.is_empty() => vec![s.clone()],
            _ => Vec::new(),
        }
    };

    let mut out = Vec::<String>::new();
    out.push(format!(
        "lxc.tty.max = {}",
        arg_str("LXC_TTY_MAX").unwrap_or_else(|| "8".into())
    ));
    out.push(format!(
        "lxc.pty.max = {}",
        arg_str("LXC_PTY_MAX").unwrap_or_else(|| "1024".into())
    ));
    let white = arg_list("PVR_LXC_CGROUP_DEVICES_WHITE");
    if white.is_empty() {
        out.push("lxc.cgroup.devices.allow = a".into());
    } else {
        out.push("lxc.cgroup.devices.deny = a".into());
        for w in white {
            out.push(format!("lxc.cgroup.devices.allow = {w}"));
        }
    }
    out.push(format!(
        "lxc.rootfs.path = overlayfs:/volumes/{name}/root.squashfs:/volumes/{name}/lxc-overlay/upper"
    ));
    out.push(format!("lxc.init.cmd ={}", init_cmd(docker)));
    if let Some(wd) = docker.working_dir.as_deref().filter(|w| !w.is_empty()) {
        out.push(format!("lxc.init.cwd = {wd}"));
    }
    for e in docker.env.iter().flatten() {
        out.push(format!("lxc.environment = {e}"));
    }
    for e in arg_list("PV_LXC_EXTRA_ENV") {
        out.push(format!("lxc.environment = {e}"));
    }
    match arg_str("PV_LXC_NAMESPACE_KEEP") {
        Some(keep) => out.push(format!("lxc.namespace.keep = {keep}")),
        None => {
            let host_net = match arg_str("PV_LXC_NETWORK_TYPE") {
                Some(t) => t == "host",
                None => true,
            };
            out.push(if host_net {
                "lxc.namespace.keep = user  net  ipc".into()
            } else {
                "lxc.namespace.keep = user  ipc".into()
            });
        }
    }
    if arg_str("PV_LXC_DISABLE_CONSOLE").is_some() {
        out.push("lxc.console.path = none".into());
    }
    out.push(format!(
        "lxc.mount.auto = {}  {}  {}",
        arg_str("LXC_MOUNT_AUTO_PROC").unwrap_or_else(|| "proc".into()),
        arg_str("LXC_MOUNT_AUTO_SYS").unwrap_or_else(|| "sys:rw".into()),
        arg_str("LXC_MOUNT_AUTO_GROUP").unwrap_or_else(|| "cgroup".into()),
    ));
    if arg_str("PV_DISABLE_AUTODEV").is_some() {
        out.push("lxc.autodev = 0".into());
    }
    if arg_str("PV_SECURITY_FULLDEV").is_some() {
        out.push("lxc.mount.entry = /dev/ dev none bind,rw,create=dir 0 0".into());
    }
    if arg_str("PV_SECURITY_WITH_STORAGE").is_some() {
        out.push("lxc.mount.entry = /storage storage none bind,rw,create=dir 0 0".into());
    }
    if arg_str("PV_RUN_TMPFS_DISABLE").is_none() {
        out.push(format!(
            "lxc.mount.entry = tmpfs {} tmpfs rw,nodev,relatime,create=dir,mode=755 0 0",
            arg_str("PV_RUN_TMPFS_PATH").unwrap_or_else(|| "run".into())
        ));
    }
    if arg_str("PV_RESOLV_CONF_DISABLE").is_none() {
        out.push(format!(
            "lxc.mount.entry = /etc/resolv.conf {} none bind,rw,create=file 0 0",
            arg_str("PV_RESOLV_CONF_PATH").unwrap_or_else(|| "etc/resolv.conf".into())
        ));
    }
    for vol in super::persistent_volumes(docker).keys() {
        out.push(format!(
            "lxc.mount.entry = /volumes/{name}/{} {} none bind,rw,create=dir 0 0",
            super::volume_dir(vol),
            vol.trim_start_matches('/')
        ));
    }
    for c in arg_list("PV_LXC_CAP_DROP") {
        out.push(format!("lxc.cap.drop = {}", c.to_lowercase()));
    }
    for c in arg_list("PV_LXC_CAP_KEEP") {
        out.push(format!("lxc.cap.keep = {}", c.to_lowercase()));
    }
    if let Some(extra) = arg_str("PV_LXC_EXTRA_CONF") {
        out.push(extra);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

/// The `lxc.init.cmd` value (with its leading space): the entrypoint, then
/// Cmd's words quoted (pvr quotes every word but the first), else
/// `/sbin/init`.
fn init_cmd(docker: &DockerConfig) -> String {
    let words = |v: &[String], from: usize| -> String {
        v.iter()
            .skip(from)
            .map(|w| format!(" \"{w}\""))
            .collect::<String>()
    };
    let ep = docker.entrypoint.as_deref().unwrap_or(&[]);
    let cmd = docker.cmd.as_deref().unwrap_or(&[]);
    if !ep.is_empty() {
        let mut s = String::new();
        if !ep[0].is_empty() {
            s = format!(" {}{}", ep[0], words(ep, 1));
        }
        if !cmd.is_empty() {
            // The template emits a separator before Cmd's quoted words.
            s.push(' ');
            s.push_str(&words(cmd, 0));
        }
        s
    } else if !cmd.is_empty() {
        if cmd[0].is_empty() {
            String::new()
        } else {
            format!(" {}{}", cmd[0], words(cmd, 1))
        }
    } else {
        " /sbin/init".into()
    }
}
