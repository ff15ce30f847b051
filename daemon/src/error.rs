//! The error every module shares: an I/O failure with the action that
//! failed and the path it failed on (`bind /run/pv/x.sock: Permission
//! denied`). Module errors ([`crate::ns::NsError`], [`crate::ctrl::FetchError`],
//! [`crate::status::StatusError`]) wrap it where they need one.

use std::io;
use std::path::{Path, PathBuf};

/// An I/O error, the action that failed and the path it was acting on.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct PathError {
    pub action: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl PathError {
    /// For `map_err`: `.map_err(PathError::at("bind", &target))`. Takes any
    /// error that converts to `io::Error` (nix's `Errno` does).
    pub fn at<'a, E: Into<io::Error>>(
        action: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(E) -> PathError + 'a {
        move |e| PathError {
            action,
            path: path.to_path_buf(),
            source: e.into(),
        }
    }

    pub fn kind(&self) -> io::ErrorKind {
        self.source.kind()
    }
}
