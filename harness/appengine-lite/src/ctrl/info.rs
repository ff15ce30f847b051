//! Configuration and build information (`/config`, `/config2`,
//! `/buildinfo`), as the real appengine answers them (ctrl_config_ep.c,
//! ctrl_buildinfo_ep.c).
//!
//! The two configuration listings are the real appengine's answers,
//! captured from `pvcontrol config ls` / `conf ls` on a build of upstream's
//! master in appengine mode (`config.json`, `config2.json` here): the
//! legacy alias object and the `[{"key","value","modified"}]` list.
//! `/buildinfo` is `text/plain` (upstream's build manifest).

use super::wire::Response;

/// `GET /config` on the real appengine.
const CONFIG: &str = include_str!("config.json");
/// `GET /config2` on the real appengine.
const CONFIG2: &str = include_str!("config2.json");

/// What the configuration endpoints serve.
#[derive(Debug, Clone)]
pub struct Info {
    /// Body of `/buildinfo`.
    pub buildinfo: String,
}

impl Default for Info {
    fn default() -> Self {
        Self {
            buildinfo: concat!("appengine-lite ", env!("CARGO_PKG_VERSION"), "\n").into(),
        }
    }
}

impl Info {
    /// `GET /config`.
    pub fn config(&self) -> Response {
        Response::json(200, CONFIG)
    }

    /// `GET /config2`.
    pub fn config2(&self) -> Response {
        Response::json(200, CONFIG2)
    }

    /// `GET /buildinfo`.
    pub fn buildinfo(&self) -> Response {
        Response {
            content_type: "text/plain",
            ..Response::json(200, self.buildinfo.clone())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_configuration_is_json_of_upstreams_shapes() {
        let c: serde_json::Value = serde_json::from_str(CONFIG).expect("config.json");
        assert_eq!(c["system.init.mode"], 2);
        let c2: serde_json::Value = serde_json::from_str(CONFIG2).expect("config2.json");
        let list = c2.as_array().expect("array");
        assert!(list.iter().any(|e| e["key"] == "PV_SYSTEM_INIT_MODE"
            && e["value"] == "appengine"
            && e["modified"] == "pv conf file"));
    }
}
