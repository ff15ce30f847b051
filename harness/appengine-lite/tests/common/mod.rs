//! Shared helpers: build pvtx.d exports, run `pv-appengine` in a temp root
//! with the process runtime, talk HTTP to its pv-ctrl socket, find the
//! fixtures. (What a test needs from the host is checked with
//! pv-testkit's `require_*`, which fail, never skip.)

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appengine_lite::pvrexport;
use serde_json::{json, Value};

/// Real pvr output, shared with the harness's own tests (one copy in the
/// repository, found from this crate).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/pvrexport")
        .join(name)
}

/// A container for the process runtime: run.json, services.json and an
/// lxc.container.conf whose `lxc.init.cmd` is `cmd`. `group` and `policy`
/// `None` leave the field out of run.json (upstream's defaults apply);
/// `run` is merged into run.json last.
pub struct Spec<'a> {
    pub name: &'a str,
    pub group: Option<&'a str>,
    pub policy: Option<&'a str>,
    pub cmd: &'a str,
    pub services: Option<Value>,
    pub required: Vec<Value>,
    pub optional: Vec<Value>,
    pub run: Value,
}

impl<'a> Spec<'a> {
    pub fn new(name: &'a str, cmd: &'a str) -> Self {
        Self {
            name,
            group: Some("app"),
            policy: Some("container"),
            cmd,
            services: None,
            required: vec![],
            optional: vec![],
            run: json!({}),
        }
    }
}

/// Writes one pvrexport per spec into `<root>/usr/lib/pantavisor/pvtx.d`.
pub fn write_exports(root: &Path, specs: &[Spec<'_>]) {
    let dir = root.join("usr/lib/pantavisor/pvtx.d");
    std::fs::create_dir_all(&dir).expect("pvtx.d");
    for s in specs {
        let conf = format!(
            "lxc.tty.max = 8\nlxc.cgroup.devices.allow = a\nlxc.rootfs.path = overlayfs:/volumes/{n}/root.squashfs:/volumes/{n}/lxc-overlay/upper\nlxc.init.cmd = {cmd}\n",
            n = s.name,
            cmd = s.cmd
        );
        let sha = pvrexport::sha256_hex(conf.as_bytes());
        let mut run = json!({
            "#spec": "service-manifest-run@1",
            "name": s.name, "type": "lxc", "config": "lxc.container.conf",
            "storage": {"lxc-overlay": {"persistence": "boot"}},
            "volumes": [], "drivers": {"manual": [], "optional": [], "required": []},
            "services": {"required": s.required, "optional": s.optional}
        });
        if let Some(g) = s.group {
            run["group"] = json!(g);
        }
        if let Some(p) = s.policy {
            run["restart_policy"] = json!(p);
        }
        if let (Some(run), Some(extra)) = (run.as_object_mut(), s.run.as_object()) {
            run.extend(extra.clone());
        }
        let mut j = json!({
            "#spec": "pantavisor-service-system@1",
            format!("{}/run.json", s.name): run,
            format!("{}/lxc.container.conf", s.name): sha,
        });
        if let Some(svc) = &s.services {
            j[format!("{}/services.json", s.name)] = svc.clone();
        }
        pvrexport::write(
            &dir.join(format!("{}.tgz", s.name)),
            &j,
            &[(sha, conf.into_bytes())],
        )
        .expect("write export");
    }
}

/// A running pv-appengine; SIGTERM + wait on drop so its containers die.
pub struct Appengine {
    pub root: tempfile::TempDir,
    pub child: Child,
}

impl Appengine {
    pub fn socket(&self) -> PathBuf {
        self.root.path().join("run/pantavisor/pv/pv-ctrl")
    }
    pub fn log_path(&self) -> PathBuf {
        self.root
            .path()
            .join("var/pantavisor/storage/logs/0/pantavisor/pantavisor.log")
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }
    pub fn get(&self, path: &str) -> (u16, String, String) {
        http(&self.socket(), "GET", path, "", "localhost")
    }
    pub fn put(&self, path: &str, body: &str) -> (u16, String, String) {
        http(&self.socket(), "PUT", path, body, "localhost")
    }
    pub fn get_json(&self, path: &str) -> Value {
        let (code, _, body) = self.get(path);
        assert_eq!(code, 200, "GET {path}: {body}");
        serde_json::from_str(&body).expect("json body")
    }
    /// `GET path` as JSON, or `None` while pv-ctrl does not accept (as
    /// during a reboot) or answers an error.
    pub fn try_get_json(&self, path: &str) -> Option<Value> {
        UnixStream::connect(self.socket()).ok()?;
        let (code, _, body) = self.get(path);
        (code == 200).then(|| serde_json::from_str(&body).ok())?
    }
    pub fn wait_log(&self, needle: &str, timeout: Duration) {
        wait_for(timeout, || self.log().contains(needle))
            .unwrap_or_else(|| panic!("'{needle}' not in pantavisor.log:\n{}", self.log()));
    }
    pub fn container_status(&self, name: &str) -> String {
        self.container(name)["status"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    /// `GET /containers` entry of `name` (null if absent).
    pub fn container(&self, name: &str) -> Value {
        let v = self.get_json("/containers");
        v.as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name))
            .cloned()
            .unwrap_or(Value::Null)
    }
    /// Waits until `name` has `status`.
    pub fn wait_status(&self, name: &str, status: &str, timeout: Duration) {
        wait_for(timeout, || self.container_status(name) == status).unwrap_or_else(|| {
            panic!(
                "{name} never {status} (is {}):\n{}",
                self.container_status(name),
                self.log()
            )
        });
    }
    /// Runs `pvcontrol -s <socket> args`: (exit code, stdout, stderr).
    pub fn pvcontrol(&self, args: &[&str]) -> (i32, String, String) {
        self.pvcontrol_env(&[], args)
    }

    /// `pvcontrol` with extra environment (`CURL_ARGS`).
    pub fn pvcontrol_env(&self, env: &[(&str, &str)], args: &[&str]) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_pvcontrol"))
            .envs(env.iter().copied())
            .arg("-s")
            .arg(self.socket())
            .args(args)
            .output()
            .expect("run pvcontrol");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for Appengine {
    fn drop(&mut self) {
        self.stop();
        unmount_under(self.root.path());
    }
}

impl Appengine {
    fn stop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Timing of a test appengine: upstream's durations, scaled down.
#[derive(Clone, Copy)]
pub struct Timing {
    pub respawn_ms: u64,
    /// One auto-recovery "second".
    pub unit_ms: u64,
    pub logger_stop_ms: u64,
    pub stop_timeout_ms: u64,
    pub reboot_ms: u64,
}

impl Timing {
    /// Fast everything; `respawn_ms` for the managed daemon.
    pub fn fast(respawn_ms: u64) -> Self {
        Self {
            respawn_ms,
            unit_ms: 40,
            logger_stop_ms: 300,
            stop_timeout_ms: 600,
            reboot_ms: 300,
        }
    }
}

/// Starts pv-appengine on `root` (already holding pvtx.d) and waits for
/// its socket.
pub fn start(root: tempfile::TempDir, xconnect: &Path, respawn_ms: u64) -> Appengine {
    start_with(root, xconnect, Timing::fast(respawn_ms), &[])
}

/// [`start`] with explicit timing and extra arguments.
pub fn start_with(
    root: tempfile::TempDir,
    xconnect: &Path,
    t: Timing,
    extra: &[&str],
) -> Appengine {
    let child = Command::new(env!("CARGO_BIN_EXE_pv-appengine"))
        .arg("--root")
        .arg(root.path())
        .arg("--runtime")
        .arg("process")
        .arg("--xconnect")
        .arg(xconnect)
        .args(["--respawn-ms", &t.respawn_ms.to_string()])
        .args(["--recovery-unit-ms", &t.unit_ms.to_string()])
        .args(["--logger-stop-ms", &t.logger_stop_ms.to_string()])
        .args(["--stop-timeout-ms", &t.stop_timeout_ms.to_string()])
        .args(["--reboot-ms", &t.reboot_ms.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn pv-appengine");
    let ae = Appengine { root, child };
    wait_for(Duration::from_secs(10), || ae.socket().exists()).expect("pv-ctrl socket appears");
    ae
}

/// A shell script at `<root>/<name>` (made executable).
pub fn script(root: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = root.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    p
}

pub fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return Some(());
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Raw HTTP/1.0 request like pvcurl/pv-xconnect send; returns (status,
/// head, body).
pub fn http(
    sock: &Path,
    method: &str,
    path: &str,
    body: &str,
    host: &str,
) -> (u16, String, String) {
    let mut s = UnixStream::connect(sock).expect("connect pv-ctrl");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let req = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).expect("read");
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_owned(), body.to_owned())
}

pub fn pid_alive(pid: i64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next())
                .is_some_and(|st| st != "Z")
        })
        .unwrap_or(false)
}

/// Unmounts what the appengine mounted under `root` (deepest first) so the
/// temp dir can be removed without descending into mounts.
pub fn unmount_under(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = root.to_string_lossy().into_owned();
    let mut mps: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .filter(|mp| mp.starts_with(&prefix))
        .map(str::to_owned)
        .collect();
    mps.sort_by_key(|m| std::cmp::Reverse(m.len()));
    for mp in mps {
        let _ = Command::new("umount").arg("-l").arg(&mp).status();
    }
}
