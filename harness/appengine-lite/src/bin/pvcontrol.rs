//! `pvcontrol`: the subset of upstream's pvcontrol shell tool the harness
//! uses, with the same socket lookup, output and exit codes: on HTTP 200
//! the body is printed on stdout (plus a newline) and the exit code is 0;
//! otherwise the body goes to stderr and the exit code is 255; a missing
//! socket prints `ERROR: <socket> not found` and exits 1.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

const USAGE: &str = "Usage: pvcontrol [options] <ls|containers|devmeta|graph|daemons> [arguments]
Control Pantavisor from your container
options:
       -h           show help
       -s <path>    send queries to PATH socket (default: /pantavisor/pv-ctrl)
       -f <path>    send output to file instead of stdout";

fn usage(code: i32) -> ! {
    println!("{USAGE}");
    exit(code)
}

struct Req {
    method: &'static str,
    path: String,
    body: Option<String>,
}

fn get(path: &str) -> Req {
    Req {
        method: "GET",
        path: path.to_owned(),
        body: None,
    }
}

fn put_action(path: String, action: &str) -> Req {
    Req {
        method: "PUT",
        path,
        body: Some(format!("{{\"action\":\"{action}\"}}")),
    }
}

fn default_socket() -> PathBuf {
    for p in ["/run/pantavisor/pv/pv-ctrl", "/pv/pv-ctrl"] {
        if is_socket(Path::new(p)) {
            return PathBuf::from(p);
        }
    }
    PathBuf::from("/pantavisor/pv-ctrl")
}

fn is_socket(p: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(p).is_ok_and(|m| m.file_type().is_socket())
}

/// One HTTP/1.0 exchange; returns (status, body).
fn call(socket: &Path, req: &Req) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = UnixStream::connect(socket)?;
    s.set_read_timeout(Some(Duration::from_secs(240)))?;
    let body = req.body.as_deref().unwrap_or("");
    let head = format!(
        "{} {} HTTP/1.0\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        req.method,
        req.path,
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body.as_bytes())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let split = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(resp.len(), |i| i + 4);
    let status_line = String::from_utf8_lossy(&resp[..split]);
    let code = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, resp[split..].to_vec()))
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    while let Some(a) = args.first().cloned() {
        match a.as_str() {
            "-h" => usage(0),
            "-v" => {
                args.remove(0);
            }
            "-s" | "-f" | "-m" => {
                args.remove(0);
                if args.is_empty() {
                    usage(1)
                }
                let v = PathBuf::from(args.remove(0));
                match a.as_str() {
                    "-s" => socket = Some(v),
                    "-f" => output = Some(v),
                    _ => {}
                }
            }
            _ => break,
        }
    }
    let arg = |i: usize| args.get(i).map(String::as_str);
    let need = |i: usize| -> String {
        match arg(i) {
            Some(v) if !v.is_empty() => v.to_owned(),
            _ => usage(1),
        }
    };
    let reqs: Vec<Req> = match (arg(0), arg(1)) {
        (Some("ls" | "list"), None) => vec![get("/containers")],
        (Some("containers"), Some("ls" | "list")) => vec![get("/containers")],
        (Some("containers"), Some(a @ ("start" | "stop" | "restart"))) => {
            vec![put_action(format!("/containers/{}", need(2)), a)]
        }
        (Some("daemons"), Some("ls" | "list")) => vec![get("/daemons")],
        (Some("daemons"), Some(a @ ("start" | "stop"))) => {
            vec![put_action(format!("/daemons/{}", need(2)), a)]
        }
        (Some("daemons"), Some("restart")) => {
            let n = need(2);
            vec![
                put_action(format!("/daemons/{n}"), "stop"),
                put_action(format!("/daemons/{n}"), "start"),
            ]
        }
        (Some("graph"), Some("ls" | "list")) => vec![get("/xconnect-graph")],
        (Some("devmeta"), Some("ls" | "list")) => vec![get("/device-meta")],
        (Some("conf" | "configuration"), Some("ls" | "list")) => vec![get("/config2")],
        (Some("--help"), _) => usage(0),
        _ => usage(1),
    };
    let socket = socket.unwrap_or_else(default_socket);
    if !is_socket(&socket) {
        println!("ERROR: {} not found", socket.display());
        exit(1);
    }
    let mut last = (0u16, Vec::new());
    for r in &reqs {
        last = match call(&socket, r) {
            Ok(x) => x,
            Err(e) => {
                eprintln!("pvcontrol: {}: {e}", socket.display());
                (0, Vec::new())
            }
        };
        if last.0 != 200 {
            break;
        }
    }
    let (code, body) = last;
    let mut text = String::from_utf8_lossy(&body).into_owned();
    // Shell command substitution drops trailing newlines; so does upstream.
    while text.ends_with('\n') {
        text.pop();
    }
    if code != 200 {
        eprintln!("{text}");
        exit(255);
    }
    match output {
        Some(p) => {
            if let Err(e) = std::fs::write(&p, format!("{text}\n")) {
                eprintln!("pvcontrol: {}: {e}", p.display());
                exit(1);
            }
        }
        None => println!("{text}"),
    }
}
