//! User and device metadata (`/user-meta`, `/device-meta`), with upstream's
//! answers (ctrl_usrmeta_ep.c, ctrl_devmeta_ep.c; checked on the real
//! appengine):
//!
//! - `GET` lists a JSON object; `PUT /…/<key>` with a body stores it (an
//!   empty body: 400 `Cannot add or update user meta` / `device meta`;
//!   more than 4 KiB: 507 `Not enough disk space available`); `DELETE`
//!   removes it (404 `User meta does not exist` / `Device meta does not
//!   exist`).
//! - Each key is also a file under the run directory's `user-meta/` and
//!   `device-meta/`, which containers see under `/pantavisor/`.
//! - Device metadata also holds what Pantavisor reports about the device
//!   (`pantavisor.status`, `pantavisor.uname`, `sysinfo`, `storage`,
//!   `interfaces`, …), after the keys set through pv-ctrl, most recent
//!   first.

use std::path::PathBuf;
use std::sync::Mutex;

use serde_json::{json, Map, Value};

use super::wire::{Request, Response};
use super::Ctrl;
use crate::paths::Paths;

/// Largest value accepted.
const MAX_VALUE: usize = 4096;

/// Both metadata stores.
pub struct Meta {
    user: Mutex<Vec<(String, String)>>,
    device: Mutex<Vec<(String, String)>>,
    user_dir: PathBuf,
    device_dir: PathBuf,
}

enum Kind {
    User,
    Device,
}

impl Kind {
    fn what(&self) -> &'static str {
        match self {
            Kind::User => "user",
            Kind::Device => "device",
        }
    }
    fn missing(&self) -> &'static str {
        match self {
            Kind::User => "User meta does not exist",
            Kind::Device => "Device meta does not exist",
        }
    }
}

impl Meta {
    /// Empty stores whose files live under `paths`' run directory.
    pub fn new(paths: &Paths) -> Self {
        Self {
            user: Mutex::new(Vec::new()),
            device: Mutex::new(Vec::new()),
            user_dir: paths.run_dir().join("user-meta"),
            device_dir: paths.run_dir().join("device-meta"),
        }
    }

    fn store(&self, kind: &Kind) -> (&Mutex<Vec<(String, String)>>, &PathBuf) {
        match kind {
            Kind::User => (&self.user, &self.user_dir),
            Kind::Device => (&self.device, &self.device_dir),
        }
    }

    fn put(&self, kind: Kind, key: &str, req: &Request) -> Response {
        let refused = format!("Cannot add or update {} meta", kind.what());
        if req.body.is_empty() {
            return Response::error(400, &refused);
        }
        if req.body.len() > MAX_VALUE {
            return Response::error(507, "Not enough disk space available");
        }
        if key.is_empty() || key.contains('/') || key == "." || key == ".." {
            return Response::error(500, &refused);
        }
        let value = String::from_utf8_lossy(&req.body).into_owned();
        let (store, dir) = self.store(&kind);
        if std::fs::create_dir_all(dir)
            .and_then(|_| std::fs::write(dir.join(key), &value))
            .is_err()
        {
            return Response::error(500, &refused);
        }
        let mut list = store.lock().unwrap_or_else(|p| p.into_inner());
        list.retain(|(k, _)| k != key);
        list.insert(0, (key.to_owned(), value));
        Response::ok()
    }

    fn delete(&self, kind: Kind, key: &str) -> Response {
        let (store, dir) = self.store(&kind);
        let mut list = store.lock().unwrap_or_else(|p| p.into_inner());
        let before = list.len();
        list.retain(|(k, _)| k != key);
        if list.len() == before {
            return Response::error(404, kind.missing());
        }
        let _ = std::fs::remove_file(dir.join(key));
        Response::ok()
    }

    fn set_keys(&self, kind: Kind) -> Map<String, Value> {
        let (store, _) = self.store(&kind);
        store
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    }

    /// `GET /user-meta`.
    pub fn list_user(&self) -> Response {
        Response::json(200, Value::Object(self.set_keys(Kind::User)).to_string())
    }

    /// `PUT /user-meta/<key>`.
    pub fn put_user(&self, key: &str, req: &Request) -> Response {
        self.put(Kind::User, key, req)
    }

    /// `DELETE /user-meta/<key>`.
    pub fn delete_user(&self, key: &str) -> Response {
        self.delete(Kind::User, key)
    }

    /// `PUT /device-meta/<key>`.
    pub fn put_device(&self, key: &str, req: &Request) -> Response {
        self.put(Kind::Device, key, req)
    }

    /// `DELETE /device-meta/<key>`.
    pub fn delete_device(&self, key: &str) -> Response {
        self.delete(Kind::Device, key)
    }

    /// `GET /device-meta`: keys set through pv-ctrl, then the device's.
    pub fn list_device(&self, ctrl: &Ctrl) -> Response {
        // serde_json's Map keeps keys sorted; upstream's order is kept by
        // writing the object by hand.
        let mut parts: Vec<(String, Value)> = self.set_keys(Kind::Device).into_iter().collect();
        let set: Vec<(String, String)> = self
            .device
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        parts.sort_by_key(|(k, _)| set.iter().position(|(s, _)| s == k));
        for (k, v) in device_values(ctrl) {
            if !parts.iter().any(|(p, _)| p == k) {
                parts.push((k.to_owned(), v));
            }
        }
        let body: Vec<String> = parts
            .iter()
            .map(|(k, v)| format!("{}:{}", Value::String(k.clone()), v))
            .collect();
        Response::json(200, format!("{{{}}}", body.join(",")))
    }
}

/// What Pantavisor reports about the device, in its order.
fn device_values(ctrl: &Ctrl) -> Vec<(&'static str, Value)> {
    let uts = nix::sys::utsname::uname().ok();
    let uts_str = |f: fn(&nix::sys::utsname::UtsName) -> &std::ffi::OsStr| {
        uts.as_ref()
            .map(|u| f(u).to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let arch = format!("{}/64/EL", std::env::consts::ARCH);
    vec![
        ("storage", storage(&ctrl.paths)),
        ("interfaces", interfaces()),
        (
            "pantavisor.status",
            Value::String(ctrl.engine.revision_status().into()),
        ),
        ("sysinfo", sysinfo()),
        (
            "time",
            json!({"timeval":{"tv_sec":now.as_secs(),"tv_usec":now.subsec_micros()},
                   "timezone":{"tz_minuteswest":0,"tz_dsttime":0}}),
        ),
        (
            "pantavisor.uname",
            json!({
                "kernel.name": uts_str(|u| u.sysname()),
                "kernel.release": uts_str(|u| u.release()),
                "kernel.version": uts_str(|u| u.version()),
                "node.name": uts_str(|u| u.nodename()),
                "machine": uts_str(|u| u.machine()),
            }),
        ),
        ("pantahub.claimed", Value::String("0".into())),
        ("pantahub.online", Value::String("0".into())),
        ("pantavisor.mode", Value::String("local".into())),
        ("pantavisor.revision", Value::String("0".into())),
        ("pantavisor.cpumodel", Value::String(cpu_model())),
        (
            "pantavisor.version",
            Value::String(concat!("appengine-lite-", env!("CARGO_PKG_VERSION")).into()),
        ),
        ("pantavisor.arch", Value::String(arch)),
    ]
}

fn storage(paths: &Paths) -> Value {
    match nix::sys::statvfs::statvfs(&paths.storage()) {
        Ok(s) => {
            let frag = s.fragment_size();
            let total = s.blocks() * frag;
            let free = s.blocks_free() * frag;
            // Upstream keeps 5 % back (PV_STORAGE_GC_RESERVED).
            let reserved = total / 20;
            json!({"total": total, "free": free, "reserved": reserved,
                   "real_free": free.saturating_sub(reserved)})
        }
        Err(_) => json!({}),
    }
}

fn interfaces() -> Value {
    let mut m = Map::new();
    if let Ok(addrs) = nix::ifaddrs::getifaddrs() {
        for a in addrs {
            let Some(addr) = a.address else { continue };
            let (key, text) = if let Some(v4) = addr.as_sockaddr_in() {
                (format!("{}.ipv4", a.interface_name), v4.ip().to_string())
            } else if let Some(l) = addr.as_link_addr() {
                match l.addr() {
                    Some(mac) if mac != [0; 6] => (
                        format!("{}.mac", a.interface_name),
                        mac.iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<Vec<_>>()
                            .join(":"),
                    ),
                    _ => continue,
                }
            } else {
                continue;
            };
            if let Value::Array(v) = m.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
                v.push(Value::String(text));
            }
        }
    }
    Value::Object(m)
}

fn meminfo(field: &str) -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn sysinfo() -> Value {
    let Ok(si) = nix::sys::sysinfo::sysinfo() else {
        return json!({});
    };
    let (l1, l5, l15) = si.load_average();
    let fixed = |l: f64| (l * 65536.0) as u64;
    json!({
        "uptime": si.uptime().as_secs(),
        "loads.0": fixed(l1), "loads.1": fixed(l5), "loads.2": fixed(l15),
        "totalram": si.ram_total(), "freeram": si.ram_unused(),
        "sharedram": meminfo("Shmem"), "bufferram": meminfo("Buffers"),
        "totalswap": si.swap_total(), "freeswap": si.swap_free(),
        "procs": si.process_count(),
        "totalhigh": 0, "freehigh": 0, "mem_unit": 1,
    })
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}
