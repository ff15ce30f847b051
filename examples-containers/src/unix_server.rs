//! `pv-example-unix-server`: the provider of the `raw-unix` service.
//!
//! Listens on `/run/example/raw.sock` and echoes every line back. The line
//! `FD` is answered with `FD <len>` carrying a memfd (SCM_RIGHTS) that holds
//! [`crate::UNIX_FD_PAYLOAD`], so a consumer can check that fds cross
//! the xconnect mediation intact.

use std::io::{BufRead, BufReader, IoSlice, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

#[derive(Parser)]
#[command(about = "Echo server for the raw-unix xconnect example")]
struct Args {
    /// Where to listen.
    #[arg(long, default_value = "/run/example/raw.sock")]
    socket: PathBuf,
}

/// The program `pv-example-unix-server` runs (arguments from the command line).
pub fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let socket = args.socket.clone();
    crate::pid1::exit_on_stop("pv-example-unix-server", move || {
        crate::pid1::remove_paths(&[socket])
    })?;
    if let Some(dir) = args.socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
    }
    // A stale socket from a previous run would make bind fail.
    let _ = std::fs::remove_file(&args.socket);
    let listener = UnixListener::bind(&args.socket)
        .with_context(|| format!("bind {}", args.socket.display()))?;
    std::fs::set_permissions(&args.socket, std::fs::Permissions::from_mode(0o666))?;
    println!("unix-server listening on {}", args.socket.display());
    for conn in listener.incoming() {
        match conn {
            Ok(s) => {
                std::thread::spawn(move || {
                    if let Err(e) = serve(s) {
                        println!("unix-server: connection ended: {e:#}");
                    }
                });
            }
            Err(e) => {
                println!("unix-server: accept: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
    Ok(())
}

fn serve(stream: UnixStream) -> anyhow::Result<()> {
    let mut out = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        if line == b"FD\n" {
            send_memfd(&out)?;
        } else {
            out.write_all(&line)?;
        }
    }
}

fn send_memfd(out: &UnixStream) -> anyhow::Result<()> {
    let m = memfd::MemfdOptions::default()
        .create("pv-example-payload")
        .context("memfd_create")?;
    m.as_file().write_all(crate::UNIX_FD_PAYLOAD)?;
    let header = format!("FD {}\n", crate::UNIX_FD_PAYLOAD.len());
    let fds = [m.as_file().as_raw_fd()];
    let n = sendmsg::<()>(
        out.as_raw_fd(),
        &[IoSlice::new(header.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .context("sendmsg")?;
    // The fd went with the first byte; finish the line if it was cut.
    (&*out).write_all(&header.as_bytes()[n..])?;
    Ok(())
}
