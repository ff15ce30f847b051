//! The DRM example binaries as a user runs them (`--once`): their console
//! lines and exit codes for an absent node, a 226:0 node with no driver
//! behind it (ENXIO on every machine without DRM), and the provider's export
//! report. On a host with a DRM driver on 226:0 (VKMS in CI) the node case
//! expects `OK` instead.

use std::path::Path;
use std::process::Command;

use nix::sys::stat::{makedev, mknod, Mode, SFlag};

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin)
        .args(args)
        .output()
        .expect("spawn example");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A DRM character node 226:`minor` at `path`, mode 0660 (needs root).
fn mk_drm_node(path: &Path, minor: u64) {
    pv_testkit::require_root();
    mknod(
        path,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o660),
        makedev(226, minor),
    )
    .unwrap_or_else(|e| panic!("mknod 226:{minor} at {}: {e}", path.display()));
    // mknod applies the umask; the provider test checks the exact mode.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).expect("chmod node");
}

#[test]
fn master_and_render_report_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("card0");
    let p = p.to_str().expect("utf8 path");
    let (code, out) = run(
        env!("CARGO_BIN_EXE_pv-example-drm-master"),
        &["--once", "--device", p],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l == "drm-master MISSING"), "{out}");
    let (code, out) = run(
        env!("CARGO_BIN_EXE_pv-example-drm-render"),
        &["--once", "--device", p],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.lines().any(|l| l == "drm-render MISSING"), "{out}");
}

#[test]
fn master_on_driverless_node_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("card0");
    mk_drm_node(&p, 0);
    let (code, out) = run(
        env!("CARGO_BIN_EXE_pv-example-drm-master"),
        &[
            "--once",
            "--no-modeset",
            "--device",
            p.to_str().expect("utf8"),
        ],
    );
    if Path::new("/sys/dev/char/226:0").exists() {
        assert_eq!(code, 0, "host has DRM on 226:0, expected OK: {out}");
        assert!(
            out.lines().any(|l| l.starts_with("drm-master OK driver=")),
            "{out}"
        );
    } else {
        assert_eq!(code, 1, "{out}");
        assert!(
            out.lines()
                .any(|l| l == "drm-master UNAVAILABLE: ENXIO (No such device or address)"),
            "{out}"
        );
    }
}

#[test]
fn render_on_driverless_node_is_unavailable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path().join("renderD128");
    mk_drm_node(&p, 128);
    let (code, out) = run(
        env!("CARGO_BIN_EXE_pv-example-drm-render"),
        &["--once", "--device", p.to_str().expect("utf8")],
    );
    if Path::new("/sys/dev/char/226:128").exists() {
        assert_eq!(code, 0, "{out}");
        assert!(
            out.lines().any(|l| l.starts_with("drm-render OK driver=")),
            "{out}"
        );
    } else {
        assert_eq!(code, 1, "{out}");
        assert!(out.contains("drm-render UNAVAILABLE: ENXIO"), "{out}");
    }
}

#[test]
fn provider_reports_exports() {
    let dir = tempfile::tempdir().expect("tempdir");
    let card = dir.path().join("card0");
    mk_drm_node(&card, 0);
    let missing = dir.path().join("renderD128");
    let card_arg = format!("drm-master={}", card.display());
    let missing_arg = format!("drm-render={}", missing.display());
    let bin = env!("CARGO_BIN_EXE_pv-example-drm-provider");

    let (code, out) = run(bin, &["--once", "--export", &card_arg]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("drm-master") && out.contains("EXPORTED 226:0 mode=660"),
        "{out}"
    );

    let (code, out) = run(
        bin,
        &["--once", "--export", &card_arg, "--export", &missing_arg],
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("drm-render") && out.contains("MISSING"),
        "{out}"
    );

    // /dev/null is a char device, but not DRM: must not count as exported.
    let (code, out) = run(bin, &["--once", "--export", "drm-master=/dev/null"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("NOT DRM 1:3"), "{out}");
}
