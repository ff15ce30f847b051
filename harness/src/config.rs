//! Everything the harness takes from its environment, read in one place.
//!
//! [`Config::get`] reads the variables once per process; every other module
//! asks it instead of calling `std::env`. The table (kept in step with the
//! README's "Harness options"):
//!
//! | variable | field | effect |
//! |---|---|---|
//! | `PV_APPENGINE_IMAGE=<ref>` | [`Config::appengine`] | boot this already loaded image (a real Pantavisor appengine, e.g. built with `harness/real-appengine/build.sh`) instead of appengine-lite |
//! | `PV_APPENGINE_TAR=<file>` | [`Config::appengine`] | `docker load` this tarball and boot the image it holds |
//! | `HARNESS_PVREXPORTS=<dir>` | [`Config::pvrexports`] | take `<dir>/<name>.pvrexport.tgz` instead of packaging the examples |
//! | `HARNESS_REQUIRE_DRM=1` | [`Config::require_drm`] | a host without DRM fails the DRM test instead of checking only the nodes |
//! | `HARNESS_PRIVILEGED=1` | [`Config::privileged`] | run the appengine `--privileged` instead of the capability set |
//! | `HARNESS_KEEP=1` | [`Config::keep`] | leave appengine containers behind for inspection |
//! | `HARNESS_SKIP_BUILD=1` | [`Config::skip_build`] | reuse the static binaries already built |
//! | `HARNESS_CACHE=<dir>` | [`Config::cache_dir`] | debootstrap trees, exports, the build lock (default `<workspace>/.harness-cache`) |
//! | `HARNESS_DEBIAN_MIRROR=<url>` | [`Config::debian_mirror`] | Debian mirror for debootstrap |
//! | `CARGO`, `CARGO_TARGET_DIR` | [`Config::cargo`], [`Config::target_dir`] | set by cargo: the static build uses the same cargo and target dir |
//!
//! Switches take `1` (on) or `0`/empty (off); anything else is an error, so
//! a typo does not silently run the default. Libraries read two more:
//! `DOCKER_HOST` (bollard and testcontainers: which engine) and
//! `TESTCONTAINERS_COMMAND` (testcontainers: `keep` leaves every container
//! behind, like `HARNESS_KEEP=1`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{bail, Result};

use crate::image::ImageKind;

/// Which appengine image the harness boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// appengine-lite, built from this workspace (the default).
    Lite,
    /// An image already in the engine (`PV_APPENGINE_IMAGE`).
    Loaded(String),
    /// A `docker save` tarball to load first (`PV_APPENGINE_TAR`), such as
    /// Yocto's `pantavisor-appengine-docker.tar`.
    Tar(PathBuf),
}

impl ImageSource {
    /// What kind of appengine this source gives, known before anything is
    /// built or loaded (`harness down` needs it without booting).
    pub fn kind(&self) -> ImageKind {
        match self {
            ImageSource::Lite => ImageKind::Lite,
            ImageSource::Loaded(_) | ImageSource::Tar(_) => ImageKind::Real,
        }
    }
}

/// The harness's settings; see the module doc for the variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub appengine: ImageSource,
    pub pvrexports: Option<PathBuf>,
    pub require_drm: bool,
    pub privileged: bool,
    pub keep: bool,
    pub skip_build: bool,
    pub cache_dir: PathBuf,
    pub debian_mirror: String,
    pub cargo: PathBuf,
    pub target_dir: PathBuf,
}

/// Debian's own redirector.
pub const DEFAULT_DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

impl Config {
    /// The process's configuration, read from the environment on first use.
    /// A bad value is an error every time it is asked for.
    pub fn get() -> Result<&'static Config> {
        static CONFIG: OnceLock<Result<Config, String>> = OnceLock::new();
        match CONFIG.get_or_init(|| Config::from_env().map_err(|e| format!("{e:#}"))) {
            Ok(c) => Ok(c),
            Err(e) => bail!("{e}"),
        }
    }

    /// Reads the process environment (the only place the harness does).
    pub fn from_env() -> Result<Config> {
        Config::from_lookup(|name| std::env::var_os(name))
    }

    /// Builds a configuration from any variable source (tests pass a map).
    pub fn from_lookup(var: impl Fn(&str) -> Option<OsString>) -> Result<Config> {
        let text = |name: &str| -> Result<Option<String>> {
            match var(name) {
                None => Ok(None),
                Some(v) if v.is_empty() => Ok(None),
                Some(v) => match v.into_string() {
                    Ok(s) => Ok(Some(s)),
                    Err(v) => bail!("{name}={v:?} is not valid UTF-8"),
                },
            }
        };
        let path = |name: &str| var(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let switch = |name: &str| -> Result<bool> {
            match text(name)?.as_deref() {
                None | Some("0") => Ok(false),
                Some("1") => Ok(true),
                Some(other) => bail!("{name}={other:?}: expected 1 (on) or 0 (off)"),
            }
        };
        let appengine = match (text("PV_APPENGINE_IMAGE")?, path("PV_APPENGINE_TAR")) {
            (Some(_), Some(_)) => {
                bail!("set PV_APPENGINE_IMAGE or PV_APPENGINE_TAR, not both")
            }
            (Some(r), None) => ImageSource::Loaded(r),
            (None, Some(t)) => ImageSource::Tar(t),
            (None, None) => ImageSource::Lite,
        };
        let workspace = crate::util::workspace_root();
        Ok(Config {
            appengine,
            pvrexports: path("HARNESS_PVREXPORTS"),
            require_drm: switch("HARNESS_REQUIRE_DRM")?,
            privileged: switch("HARNESS_PRIVILEGED")?,
            keep: switch("HARNESS_KEEP")?,
            skip_build: switch("HARNESS_SKIP_BUILD")?,
            cache_dir: path("HARNESS_CACHE").unwrap_or_else(|| workspace.join(".harness-cache")),
            debian_mirror: text("HARNESS_DEBIAN_MIRROR")?
                .unwrap_or_else(|| DEFAULT_DEBIAN_MIRROR.into()),
            cargo: path("CARGO").unwrap_or_else(|| "cargo".into()),
            target_dir: path("CARGO_TARGET_DIR").unwrap_or_else(|| workspace.join("target")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        Config::from_lookup(|n| map.get(n).cloned())
    }

    #[test]
    fn defaults_boot_appengine_lite_from_the_workspace() {
        let c = config(&[]).unwrap();
        assert_eq!(c.appengine, ImageSource::Lite);
        assert_eq!(c.appengine.kind(), ImageKind::Lite);
        assert!(!c.privileged && !c.keep && !c.skip_build && !c.require_drm);
        assert_eq!(c.pvrexports, None);
        let root = crate::util::workspace_root();
        assert_eq!(c.cache_dir, root.join(".harness-cache"));
        assert_eq!(c.target_dir, root.join("target"));
        assert_eq!(c.debian_mirror, DEFAULT_DEBIAN_MIRROR);
        assert_eq!(c.cargo, PathBuf::from("cargo"));
    }

    #[test]
    fn every_variable_lands_in_its_field() {
        let c = config(&[
            ("PV_APPENGINE_IMAGE", "pantavisor-appengine:real-src"),
            ("HARNESS_PVREXPORTS", "/deploy"),
            ("HARNESS_REQUIRE_DRM", "1"),
            ("HARNESS_PRIVILEGED", "1"),
            ("HARNESS_KEEP", "1"),
            ("HARNESS_SKIP_BUILD", "1"),
            ("HARNESS_CACHE", "/cache"),
            ("HARNESS_DEBIAN_MIRROR", "http://mirror/debian"),
            ("CARGO", "/opt/cargo"),
            ("CARGO_TARGET_DIR", "/tgt"),
        ])
        .unwrap();
        assert_eq!(
            c.appengine,
            ImageSource::Loaded("pantavisor-appengine:real-src".into())
        );
        assert_eq!(c.appengine.kind(), ImageKind::Real);
        assert_eq!(c.pvrexports, Some(PathBuf::from("/deploy")));
        assert!(c.require_drm && c.privileged && c.keep && c.skip_build);
        assert_eq!(c.cache_dir, PathBuf::from("/cache"));
        assert_eq!(c.debian_mirror, "http://mirror/debian");
        assert_eq!(c.cargo, PathBuf::from("/opt/cargo"));
        assert_eq!(c.target_dir, PathBuf::from("/tgt"));
        let t = config(&[("PV_APPENGINE_TAR", "/x/appengine.tar")]).unwrap();
        assert_eq!(t.appengine, ImageSource::Tar("/x/appengine.tar".into()));
        assert_eq!(t.appengine.kind(), ImageKind::Real);
    }

    #[test]
    fn empty_and_zero_switches_are_off() {
        let c = config(&[("HARNESS_KEEP", ""), ("HARNESS_PRIVILEGED", "0")]).unwrap();
        assert!(!c.keep && !c.privileged);
        // An empty path is unset, not the current directory.
        let c = config(&[("HARNESS_CACHE", ""), ("PV_APPENGINE_IMAGE", "")]).unwrap();
        assert_eq!(
            c.cache_dir,
            crate::util::workspace_root().join(".harness-cache")
        );
        assert_eq!(c.appengine, ImageSource::Lite);
    }

    #[test]
    fn a_typo_in_a_switch_or_two_images_is_an_error() {
        let e = config(&[("HARNESS_KEEP", "yes")]).unwrap_err();
        assert!(format!("{e}").contains("HARNESS_KEEP=\"yes\""), "{e}");
        let e = config(&[("PV_APPENGINE_IMAGE", "a:b"), ("PV_APPENGINE_TAR", "/t")]).unwrap_err();
        assert!(format!("{e}").contains("not both"), "{e}");
    }
}
