//! The `input` example: `pv-example-input-provider` makes a virtual
//! keyboard with uinput and exports its evdev node; pv-xconnect recreates
//! that node (13:N) in `pv-example-input-consumer`, which reads the key
//! events the provider types.
//!
//! uinput needs `/dev/uinput` in the provider (the manifest binds the
//! host's, `optional`). The kernel names the new device `inputN` and its
//! evdev node `eventM` in sysfs; the provider then creates that node
//! itself at the path its `services.json` exports ([`PROVIDER_NODE`]), since
//! no udev or mdev runs in the container. Without `/dev/uinput` it says so
//! and creates nothing: whatever node the platform puts at that path is
//! exported (the harness makes one with mknod to check the injection).
//!
//! The ioctls and event records are Linux's `<linux/uinput.h>` and
//! `<linux/input.h>` ABI; the `unsafe` is confined to the ioctl wrappers.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};

/// Where the provider puts its evdev node (`services.json` `socket`).
pub const PROVIDER_NODE: &str = "/dev/input/pv-example-keyboard";
/// Where the consumer receives it (`args.json` `target`).
pub const CONSUMER_NODE: &str = "/dev/input/event0";
/// The virtual keyboard's name (EVIOCGNAME in the consumer).
pub const DEVICE_NAME: &str = "pv-example-keyboard";
/// The key the provider types: KEY_A.
pub const KEY: u16 = 30;
/// How many key events the consumer reports before `input OK`.
pub const EVENTS_FOR_OK: usize = 4;

const EV_SYN: u16 = 0;
const EV_KEY: u16 = 1;
/// `struct input_event` on 64-bit Linux: timeval (16), type, code, value.
const EVENT_SIZE: usize = 24;

/// `struct uinput_setup`.
#[repr(C)]
pub struct UinputSetup {
    bustype: u16,
    vendor: u16,
    product: u16,
    version: u16,
    name: [u8; 80],
    ff_effects_max: u32,
}

mod sys {
    use super::UinputSetup;
    nix::ioctl_write_int!(ui_set_evbit, b'U', 100);
    nix::ioctl_write_int!(ui_set_keybit, b'U', 101);
    nix::ioctl_write_ptr!(ui_dev_setup, b'U', 3, UinputSetup);
    nix::ioctl_none!(ui_dev_create, b'U', 1);
    nix::ioctl_read_buf!(ui_get_sysname, b'U', 44, u8);
    nix::ioctl_read_buf!(eviocgname, b'E', 0x06, u8);
}

/// One `struct input_event` with a zero timestamp (the kernel stamps
/// events written to uinput).
fn event(kind: u16, code: u16, value: i32) -> [u8; EVENT_SIZE] {
    let mut b = [0u8; EVENT_SIZE];
    b[16..18].copy_from_slice(&kind.to_ne_bytes());
    b[18..20].copy_from_slice(&code.to_ne_bytes());
    b[20..24].copy_from_slice(&value.to_ne_bytes());
    b
}

/// (type, code, value) of one `struct input_event`.
fn parse_event(b: &[u8; EVENT_SIZE]) -> (u16, u16, i32) {
    (
        u16::from_ne_bytes([b[16], b[17]]),
        u16::from_ne_bytes([b[18], b[19]]),
        i32::from_ne_bytes([b[20], b[21], b[22], b[23]]),
    )
}

/// A NUL-terminated ioctl string.
fn c_string(buf: &[u8]) -> String {
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// `major:minor` of a character device, or why it is not one.
pub fn device_numbers(path: &Path) -> anyhow::Result<(u64, u64)> {
    let md = std::fs::metadata(path).with_context(|| format!("stat {}", path.display()))?;
    if !md.file_type().is_char_device() {
        bail!("{} is not a character device", path.display());
    }
    Ok((
        nix::sys::stat::major(md.rdev()),
        nix::sys::stat::minor(md.rdev()),
    ))
}

/// A uinput keyboard and the numbers of its evdev node.
pub struct VirtualKeyboard {
    uinput: File,
    pub major: u64,
    pub minor: u64,
}

impl VirtualKeyboard {
    /// Creates the device on `/dev/uinput` and finds its evdev node.
    pub fn create(uinput: &Path) -> anyhow::Result<Self> {
        let f = OpenOptions::new()
            .write(true)
            .open(uinput)
            .with_context(|| format!("open {}", uinput.display()))?;
        let fd = f.as_raw_fd();
        let mut setup = UinputSetup {
            bustype: 0x06, // BUS_VIRTUAL
            vendor: 0x1d6b,
            product: 0x0104,
            version: 1,
            name: [0; 80],
            ff_effects_max: 0,
        };
        setup.name[..DEVICE_NAME.len()].copy_from_slice(DEVICE_NAME.as_bytes());
        let mut sysname = [0u8; 64];
        // SAFETY: fd is an open uinput descriptor for the whole block; the
        // pointer and buffer arguments outlive each call and have the sizes
        // the ioctl numbers encode.
        unsafe {
            sys::ui_set_evbit(fd, libc::c_ulong::from(EV_KEY)).context("UI_SET_EVBIT")?;
            sys::ui_set_keybit(fd, libc::c_ulong::from(KEY)).context("UI_SET_KEYBIT")?;
            sys::ui_dev_setup(fd, &setup).context("UI_DEV_SETUP")?;
            sys::ui_dev_create(fd).context("UI_DEV_CREATE")?;
            sys::ui_get_sysname(fd, &mut sysname).context("UI_GET_SYSNAME")?;
        }
        let sysname = c_string(&sysname);
        let dir = Path::new("/sys/devices/virtual/input").join(&sysname);
        // The evdev handler binds asynchronously: wait for eventM.
        for _ in 0..50 {
            if let Some((major, minor)) = evdev_of(&dir) {
                return Ok(Self {
                    uinput: f,
                    major,
                    minor,
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("no evdev node under {} after 5 s", dir.display())
    }

    /// One key press and release of [`KEY`], each followed by a SYN.
    pub fn type_key(&mut self) -> std::io::Result<()> {
        for (kind, code, value) in [
            (EV_KEY, KEY, 1),
            (EV_SYN, 0, 0),
            (EV_KEY, KEY, 0),
            (EV_SYN, 0, 0),
        ] {
            self.uinput.write_all(&event(kind, code, value))?;
        }
        Ok(())
    }
}

/// The `dev` numbers of the `eventM` child of an input device in sysfs.
fn evdev_of(dir: &Path) -> Option<(u64, u64)> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if !e.file_name().to_string_lossy().starts_with("event") {
            continue;
        }
        let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
        let (ma, mi) = dev.trim().split_once(':')?;
        return Some((ma.parse().ok()?, mi.parse().ok()?));
    }
    None
}

/// Creates the char node `path` (replacing what is there) with `numbers`.
pub fn make_node(path: &Path, major: u64, minor: u64) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    nix::sys::stat::mknod(
        path,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o660),
        nix::sys::stat::makedev(major, minor),
    )
    .with_context(|| format!("mknod {} c {major} {minor}", path.display()))
}

/// The provider: a virtual keyboard typing [`KEY`] every second, its node
/// at `node`; without uinput, a line saying so and an idle container.
pub fn provider_main(uinput: &Path, node: &Path) -> anyhow::Result<()> {
    let mut kbd = match VirtualKeyboard::create(uinput) {
        Ok(k) => k,
        Err(e) => {
            println!(
                "input-provider: uinput UNAVAILABLE ({e:#}): no device created; \
                 exporting whatever node is at {}",
                node.display()
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    };
    make_node(node, kbd.major, kbd.minor)?;
    println!(
        "input-provider: {DEVICE_NAME} is {}:{} at {}",
        kbd.major,
        kbd.minor,
        node.display()
    );
    loop {
        if let Err(e) = kbd.type_key() {
            println!("input-provider: writing events failed: {e}");
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// The consumer: waits for `node`, prints its numbers and name, then reads
/// key events; prints `input OK ...` after [`EVENTS_FOR_OK`] of them. A
/// node it cannot open is reported (`input UNAVAILABLE ...`) and retried.
pub fn consumer_main(node: &Path) -> anyhow::Result<()> {
    let mut last = String::new();
    let mut say = |line: String| {
        if line != last {
            println!("{line}");
            last = line;
        }
    };
    loop {
        let (major, minor) = match device_numbers(node) {
            Ok(n) => n,
            Err(e) => {
                say(format!(
                    "input-consumer: waiting for {}: {e:#}",
                    node.display()
                ));
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
        };
        say(format!(
            "input-consumer: device {major}:{minor} at {}",
            node.display()
        ));
        match read_events(node) {
            Ok(n) => say(format!("input OK read {n} key events from {major}:{minor}")),
            Err(e) => say(format!("input UNAVAILABLE {major}:{minor}: {e:#}")),
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

/// Opens the node, prints its name and the first key events, returns once
/// [`EVENTS_FOR_OK`] were read.
fn read_events(node: &Path) -> anyhow::Result<usize> {
    let mut f = File::open(node).with_context(|| format!("open {}", node.display()))?;
    let mut name = [0u8; 256];
    // SAFETY: f is open for the call; the buffer outlives it and its
    // length is the size the request encodes.
    let named = unsafe { sys::eviocgname(f.as_raw_fd(), &mut name) };
    if named.is_ok() {
        println!("input-consumer: device name {:?}", c_string(&name));
    }
    let mut keys = 0;
    let mut buf = [0u8; EVENT_SIZE];
    while keys < EVENTS_FOR_OK {
        f.read_exact(&mut buf).context("read input_event")?;
        let (kind, code, value) = parse_event(&buf);
        if kind == EV_KEY {
            keys += 1;
            println!("input EVENT key code={code} value={value}");
        }
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_records_round_trip() {
        let b = event(EV_KEY, KEY, 1);
        assert_eq!(b.len(), EVENT_SIZE);
        assert_eq!(parse_event(&b), (EV_KEY, KEY, 1));
        assert_eq!(&b[..16], &[0u8; 16], "the kernel stamps the time");
    }

    #[test]
    fn ioctl_strings_stop_at_nul() {
        assert_eq!(c_string(b"input7\0junk"), "input7");
        assert_eq!(c_string(b"full"), "full");
    }
}
