//! `pv-example-unix-client`: the consumer of the `raw-unix` service.
//!
//! Uses the socket pv-xconnect injected at `/run/pv/services/raw-unix.sock`
//! and prints one line per check: `unix-echo OK` (a line comes back
//! unchanged) and `unix-fd OK` (the memfd the server passes on `FD` arrives
//! with its payload), or `... FAIL: <reason>`. Repeats every 5 s like the
//! upstream example; `--once` runs one round and exits non-zero on failure.

use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::FileExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

#[derive(Parser)]
#[command(about = "Client for the raw-unix xconnect example")]
struct Args {
    /// The injected socket.
    #[arg(long, default_value = "/run/pv/services/raw-unix.sock")]
    socket: PathBuf,
    /// Run the checks once; exit status 1 if any failed.
    #[arg(long)]
    once: bool,
}

/// The program `pv-example-unix-client` runs (arguments from the command line).
pub fn main() {
    let args = Args::parse();
    if let Err(e) = crate::pid1::exit_on_stop("pv-example-unix-client", || {}) {
        eprintln!("pv-example-unix-client: stop-signal handlers: {e}");
        std::process::exit(1);
    }
    loop {
        let echo = report("unix-echo", check_echo(&args.socket));
        let fd = report("unix-fd", check_fd(&args.socket));
        if args.once {
            std::process::exit(if echo && fd { 0 } else { 1 });
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn report(what: &str, r: anyhow::Result<()>) -> bool {
    let ok = r.is_ok();
    match r {
        Ok(()) => println!("{what} OK"),
        Err(e) => println!("{what} FAIL: {e:#}"),
    }
    let _ = std::io::stdout().flush();
    ok
}

fn connect(path: &Path) -> anyhow::Result<UnixStream> {
    let s = UnixStream::connect(path).with_context(|| format!("connect {}", path.display()))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn check_echo(path: &Path) -> anyhow::Result<()> {
    let mut s = connect(path)?;
    let line = format!("hello from pv-example-unix-client {}\n", std::process::id());
    s.write_all(line.as_bytes())?;
    let mut got = vec![0u8; line.len()];
    s.read_exact(&mut got).context("reading the echo")?;
    if got != line.as_bytes() {
        bail!("echo differs: {:?}", String::from_utf8_lossy(&got));
    }
    Ok(())
}

fn check_fd(path: &Path) -> anyhow::Result<()> {
    let mut s = connect(path)?;
    s.write_all(b"FD\n")?;
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        s.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .context("recvmsg")?;
    let n = msg.bytes;
    let mut fds = Vec::new();
    for c in msg.cmsgs().context("control data")? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(raw.into_iter().map(|r| unsafe { OwnedFd::from_raw_fd(r) }));
        }
    }
    if n == 0 {
        bail!("connection closed without an answer");
    }
    if !buf[..n].starts_with(b"FD") {
        bail!("unexpected answer {:?}", String::from_utf8_lossy(&buf[..n]));
    }
    let Some(fd) = fds.into_iter().next() else {
        bail!("answer carried no file descriptor");
    };
    let f = std::fs::File::from(fd);
    let mut content = vec![0u8; crate::UNIX_FD_PAYLOAD.len() + 16];
    let got = f
        .read_at(&mut content, 0)
        .context("reading the passed fd")?;
    if &content[..got] != crate::UNIX_FD_PAYLOAD {
        bail!(
            "payload differs: {:?}",
            String::from_utf8_lossy(&content[..got])
        );
    }
    Ok(())
}
