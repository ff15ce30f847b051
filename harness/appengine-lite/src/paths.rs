//! Filesystem locations of the appengine, all under one root prefix.
//!
//! Defaults are the real image's paths (root `/`); tests pass a temporary
//! directory as root so nothing outside it is touched.

use std::path::{Path, PathBuf};

/// Every path appengine-lite reads or writes.
#[derive(Debug, Clone)]
pub struct Paths {
    root: PathBuf,
}

impl Paths {
    /// Paths below `root` (`/` in the real image).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Maps an absolute in-image path onto the root prefix.
    pub fn abs(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    /// The root prefix itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// True when running with the real root, where LXC configs' absolute
    /// paths (`/volumes/...`) can be used unchanged.
    pub fn is_real_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Directory of pvrexports installed on first boot.
    pub fn pvtx_d(&self) -> PathBuf {
        self.abs("/usr/lib/pantavisor/pvtx.d")
    }

    /// The storage volume.
    pub fn storage(&self) -> PathBuf {
        self.abs("/var/pantavisor/storage")
    }

    /// Marker written once the pvtx.d install succeeded on this volume.
    pub fn install_marker(&self) -> PathBuf {
        self.storage().join(".pvtx-done")
    }

    /// Content-addressed object store.
    pub fn objects(&self) -> PathBuf {
        self.storage().join("objects")
    }

    /// Directory of revision `rev`.
    pub fn trail(&self, rev: &str) -> PathBuf {
        self.storage().join("trails").join(rev)
    }

    /// The state JSON of revision `rev`.
    pub fn trail_json(&self, rev: &str) -> PathBuf {
        self.trail(rev).join(".pvr").join("json")
    }

    /// Pantavisor's run directory (holds pv-ctrl).
    pub fn run_dir(&self) -> PathBuf {
        self.abs("/run/pantavisor/pv")
    }

    /// The pv-ctrl socket.
    pub fn ctrl_socket(&self) -> PathBuf {
        self.run_dir().join("pv-ctrl")
    }

    /// Log directory of revision 0 on storage.
    pub fn logs(&self) -> PathBuf {
        self.storage().join("logs")
    }

    /// `pantavisor.log`.
    pub fn pantavisor_log(&self) -> PathBuf {
        self.logs().join("0/pantavisor/pantavisor.log")
    }

    /// A container's console log.
    pub fn console_log(&self, container: &str) -> PathBuf {
        self.logs()
            .join("0")
            .join(container)
            .join("lxc/console.log")
    }

    /// A container's LXC log.
    pub fn lxc_log(&self, container: &str) -> PathBuf {
        self.logs().join("0").join(container).join("lxc/lxc.log")
    }

    /// Where container volumes are mounted (`/volumes/<c>/...`).
    pub fn volumes(&self) -> PathBuf {
        self.abs("/volumes")
    }

    /// LXC's container path (`lxc-start -P`).
    pub fn lxc_path(&self) -> PathBuf {
        self.abs("/run/pantavisor/lxc")
    }

    /// `/dev` (loop devices are created here when missing).
    pub fn dev(&self) -> PathBuf {
        self.abs("/dev")
    }
}

impl Default for Paths {
    fn default() -> Self {
        Self::new("/")
    }
}
