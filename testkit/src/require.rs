//! What a test needs from the machine, checked up front.
//!
//! A missing prerequisite fails the test with a message naming the fix:
//! a test that cannot run is not a test that passed. `ci/install-deps.sh`
//! installs every tool the tests use.

use std::path::PathBuf;

/// Fail unless running as root (namespaces, mknod, bind mounts).
pub fn require_root() {
    if !nix::unistd::geteuid().is_root() {
        panic!("this test needs root (namespaces, mknod, mounts): run it as root, e.g. `sudo -E cargo test`");
    }
}

/// Fail unless `tool` is an executable on `PATH`; returns its path.
pub fn require_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join(tool);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!("this test needs `{tool}`, which is not on PATH: run ci/install-deps.sh (as root) to install it");
}

fn is_executable(p: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_sh_and_names_what_is_missing() {
        assert!(require_tool("sh").is_absolute());
        let err = std::panic::catch_unwind(|| require_tool("pvx-no-such-tool")).unwrap_err();
        let msg = err.downcast_ref::<String>().expect("message");
        assert!(
            msg.contains("pvx-no-such-tool") && msg.contains("install-deps"),
            "{msg}"
        );
    }
}
