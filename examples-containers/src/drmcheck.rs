//! DRM probes shared by the `pv-example-drm-*` containers.
//!
//! A consumer container receives a device node injected by pv-xconnect. Three
//! outcomes matter to whoever reads the container's console:
//!
//! - the node is absent: `MISSING` (the link is not established yet);
//! - the node exists but opening or querying it fails: `UNAVAILABLE: <errno>`.
//!   A `226:0` node on a kernel without a DRM driver gives `ENXIO` on open,
//!   which is what every machine without `/dev/dri` shows (and why the
//!   injected node alone proves the mediation worked);
//! - a driver answers: `OK` with what it said.
//!
//! The probes open the node freshly on every call so a node injected (or
//! removed) between two polls is seen on the next one.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use drm::buffer::DrmFourcc;
use drm::control::{connector, Device as ControlDevice};
use drm::Device;

/// An open DRM node, as the `drm` crate wants it.
struct Card(File);

impl AsFd for Card {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

impl Device for Card {}
impl ControlDevice for Card {}

/// What a probe found. `Display` renders the console line after the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// The node does not exist.
    Missing,
    /// The node exists but no driver answered; the errno says why.
    Unavailable(nix::errno::Errno),
    /// A driver answered; the report lines (first one is the summary).
    Ok(Vec<String>),
}

impl Probe {
    /// Whether a `--once` run should exit successfully.
    pub fn is_ok(&self) -> bool {
        matches!(self, Probe::Ok(_))
    }

    /// The console lines for this probe, each prefixed with `prefix`
    /// (`drm-master`, `drm-render`).
    pub fn lines(&self, prefix: &str) -> Vec<String> {
        match self {
            Probe::Missing => vec![format!("{prefix} MISSING")],
            Probe::Unavailable(e) => vec![format!("{prefix} UNAVAILABLE: {}", errno_text(*e))],
            Probe::Ok(lines) => lines.iter().map(|l| format!("{prefix} {l}")).collect(),
        }
    }
}

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Probe::Missing => write!(f, "MISSING"),
            Probe::Unavailable(e) => write!(f, "UNAVAILABLE: {}", errno_text(*e)),
            Probe::Ok(lines) => write!(f, "{}", lines.first().map(String::as_str).unwrap_or("OK")),
        }
    }
}

/// `ENXIO (No such device or address)`.
fn errno_text(e: nix::errno::Errno) -> String {
    format!("{e:?} ({})", e.desc())
}

fn to_errno(e: &io::Error) -> nix::errno::Errno {
    nix::errno::Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Opens a node read-write; the error is already the probe's verdict.
fn open_node(path: &Path) -> Result<Card, Probe> {
    match OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => Ok(Card(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Probe::Missing),
        Err(e) => Err(Probe::Unavailable(to_errno(&e))),
    }
}

fn driver_summary(card: &Card) -> Result<String, Probe> {
    let d = card
        .get_driver()
        .map_err(|e| Probe::Unavailable(to_errno(&e)))?;
    Ok(format!(
        "driver={} version={}.{}.{} desc={:?}",
        d.name().to_string_lossy(),
        d.version.0,
        d.version.1,
        d.version.2,
        d.description().to_string_lossy()
    ))
}

/// Render node probe: `DRM_IOCTL_VERSION` only (render nodes have no KMS).
pub fn probe_render(path: &Path) -> Probe {
    let card = match open_node(path) {
        Ok(c) => c,
        Err(p) => return p,
    };
    match driver_summary(&card) {
        Ok(s) => Probe::Ok(vec![format!("OK {s}")]),
        Err(p) => p,
    }
}

/// Primary node probe: driver version, KMS resources, and — when a connector
/// is connected (VKMS has one) and `modeset` is set — a dumb buffer shown on
/// it with the connector's preferred mode.
pub fn probe_master(path: &Path, modeset: bool) -> Probe {
    let card = match open_node(path) {
        Ok(c) => c,
        Err(p) => return p,
    };
    let summary = match driver_summary(&card) {
        Ok(s) => s,
        Err(p) => return p,
    };
    let res = match card.resource_handles() {
        Ok(r) => r,
        // A driver without KMS (GETRESOURCES unsupported) still answered.
        Err(e) => {
            return Probe::Ok(vec![format!(
                "OK {summary} kms=UNSUPPORTED: {}",
                errno_text(to_errno(&e))
            )])
        }
    };
    let mut lines = vec![format!(
        "OK {summary} connectors={} encoders={} crtcs={}",
        res.connectors().len(),
        res.encoders().len(),
        res.crtcs().len()
    )];
    let mut connected = None;
    for &h in res.connectors() {
        match card.get_connector(h, false) {
            Ok(info) => {
                lines.push(format!(
                    "connector {:?}-{} state={:?} modes={}",
                    info.interface(),
                    info.interface_id(),
                    info.state(),
                    info.modes().len()
                ));
                if connected.is_none()
                    && info.state() == connector::State::Connected
                    && !info.modes().is_empty()
                {
                    connected = Some(info);
                }
            }
            Err(e) => lines.push(format!("connector {h:?} FAIL: {e}")),
        }
    }
    for &h in res.encoders() {
        match card.get_encoder(h) {
            Ok(info) => lines.push(format!("encoder {:?} kind={:?}", h, info.kind())),
            Err(e) => lines.push(format!("encoder {h:?} FAIL: {e}")),
        }
    }
    for &h in res.crtcs() {
        match card.get_crtc(h) {
            Ok(info) => lines.push(format!(
                "crtc {:?} mode={}",
                h,
                info.mode()
                    .map(|m| format!("{}x{}", m.size().0, m.size().1))
                    .unwrap_or_else(|| "none".into())
            )),
            Err(e) => lines.push(format!("crtc {h:?} FAIL: {e}")),
        }
    }
    if let (true, Some(conn)) = (modeset, connected) {
        lines.push(match set_mode(&card, &res, &conn) {
            Ok(s) => format!("MODESET OK {s}"),
            Err(e) => format!("MODESET FAIL: {e}"),
        });
    }
    Probe::Ok(lines)
}

/// Shows a filled dumb buffer on `conn` with its first (preferred) mode. The
/// framebuffer and buffer are released before returning; the CRTC keeps
/// scanning out until the fd closes, which is enough to prove master rights.
fn set_mode(
    card: &Card,
    res: &drm::control::ResourceHandles,
    conn: &connector::Info,
) -> anyhow::Result<String> {
    let mode = *conn
        .modes()
        .first()
        .ok_or_else(|| anyhow::anyhow!("connector has no mode"))?;
    let crtc = conn
        .encoders()
        .iter()
        .filter_map(|&e| card.get_encoder(e).ok())
        .flat_map(|enc| res.filter_crtcs(enc.possible_crtcs()))
        .next()
        .ok_or_else(|| anyhow::anyhow!("no CRTC can drive the connector"))?;
    let (w, h) = mode.size();
    let mut db = card.create_dumb_buffer((w.into(), h.into()), DrmFourcc::Xrgb8888, 32)?;
    let result = (|| -> anyhow::Result<()> {
        {
            let mut map = card.map_dumb_buffer(&mut db)?;
            // A recognisable pattern (Pantacor-ish teal) rather than zeroes.
            for px in map.as_mut().chunks_exact_mut(4) {
                px.copy_from_slice(&[0x80, 0x80, 0x00, 0xff]);
            }
        }
        let fb = card.add_framebuffer(&db, 24, 32)?;
        let set = card.set_crtc(crtc, Some(fb), (0, 0), &[conn.handle()], Some(mode));
        let _ = card.destroy_framebuffer(fb);
        set?;
        Ok(())
    })();
    let _ = card.destroy_dumb_buffer(db);
    result?;
    Ok(format!(
        "connector={:?}-{} mode={}x{}@{} crtc={:?}",
        conn.interface(),
        conn.interface_id(),
        w,
        h,
        mode.vrefresh(),
        crtc
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};

    /// Whether the running kernel has a driver behind 226:0 (VKMS in CI).
    fn host_has_card0() -> bool {
        Path::new("/sys/dev/char/226:0").exists()
    }

    #[test]
    fn absent_node_is_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("card0");
        assert_eq!(probe_master(&p, false), Probe::Missing);
        assert_eq!(probe_render(&p), Probe::Missing);
        assert_eq!(
            probe_master(&p, false).lines("drm-master"),
            vec!["drm-master MISSING"]
        );
    }

    #[test]
    fn node_without_driver_is_unavailable_enxio() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("card0");
        pv_testkit::require_root();
        mknod(
            &p,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(226, 0),
        )
        .expect("mknod 226:0");
        let got = probe_master(&p, false);
        if host_has_card0() {
            eprintln!("host has a DRM driver on 226:0: expecting OK, got {got:?}");
            assert!(got.is_ok(), "{got:?}");
        } else {
            assert_eq!(got, Probe::Unavailable(nix::errno::Errno::ENXIO));
            assert_eq!(
                got.lines("drm-master"),
                vec!["drm-master UNAVAILABLE: ENXIO (No such device or address)"]
            );
        }
    }

    #[test]
    fn non_drm_device_is_unavailable_not_ok() {
        // /dev/null opens fine but is no DRM device: DRM_IOCTL_VERSION fails.
        let got = probe_render(Path::new("/dev/null"));
        assert!(matches!(got, Probe::Unavailable(_)), "{got:?}");
    }
}
