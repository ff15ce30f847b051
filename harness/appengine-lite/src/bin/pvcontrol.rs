//! `pvcontrol`: upstream's pvcontrol shell tool (tools/pvcontrol over
//! tools/pvcurl) in Rust, with its subcommands, usage texts, output and exit
//! codes:
//!
//! - HTTP 200: the body on stdout (trailing newlines trimmed, one added),
//!   exit 0. Otherwise the body on stderr and exit 255 — 75 for a 503, 48
//!   for `Not enough disk space available`, 60 for `Object has bad
//!   checksum`, 70 for `State verification has failed`.
//! - Usage errors print the subcommand's usage on stdout and exit 1 (`--help`:
//!   exit 0). A missing socket prints `ERROR: <socket> not found`, exit 1;
//!   no answer at all prints `ERROR: got no response` on stderr, exit 1.
//! - Like pvcurl, every request is HTTP/1.0 over the socket, and an answer
//!   idle for 5 s is given up (`nc -w 5`): the call then fails with exit 255
//!   and an empty message — what a `containers stop` of a real Pantavisor
//!   often gets, since it answers after about 5 s. As upstream's script,
//!   `CURL_ARGS` replaces the client's arguments; of them only pvcurl's
//!   `--connect-timeout N` (its `nc -w N`) changes anything here, so a
//!   caller that expects a slow answer can wait longer on either image.
//! - `objects get` writes the raw body (to `-f <file>` if given) and exits 0.
//! - `steps install <tgz> [rev]` uploads the export's objects and state as
//!   the script does, then prints `{"revision":"<rev>"}` (default name
//!   `locals/<sha256 of the file>`).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::exit;
use std::time::Duration;

/// pvcurl's `nc -w` idle timeout (its `--connect-timeout` default).
const IDLE: Duration = Duration::from_secs(5);

/// The idle timeout `CURL_ARGS` asks for: upstream's script passes
/// `CURL_ARGS` to pvcurl instead of its defaults, and pvcurl turns
/// `--connect-timeout N` into `nc -w N` (other options do not change how
/// long it waits).
fn idle_timeout(curl_args: Option<&str>) -> Duration {
    let Some(args) = curl_args.filter(|a| !a.is_empty()) else {
        return IDLE;
    };
    let mut words = args.split_whitespace();
    let mut idle = IDLE;
    while let Some(w) = words.next() {
        if w == "--connect-timeout" {
            if let Some(secs) = words.next().and_then(|n| n.parse().ok()) {
                idle = Duration::from_secs(secs);
            }
        }
    }
    idle
}

const USAGE: &str = "Usage: pvcontrol [options] <ls|containers|groups|signal|cmd|usrmeta|devmeta|buildinfo|objects|steps|conf|graph|daemons|storage> [arguments]
Control Pantavisor from your container
options:
       -h           show help
       -v           verbose
       -s <path>    send queries to PATH socket (default: /pantavisor/pv-ctrl)
       -f <path>    send output to file instead of stdout
       -m <message> commit message (only used for steps install and steps put)";

const USAGE_LS: &str = "Usage: pvcontrol ls
List all containers existing in the current revision";

const USAGE_GROUPS: &str = "Usage: pvcontrol groups <ls>
Container groups related operations
       pvcontrol groups ls - lists groups of containers";

const USAGE_SIGNAL: &str = "Usage: pvcontrol signal <ready|alive>
Send status signals to Pantavisor
       pvcontrol groups ready - container is ready
       pvcontrol groups alive - container is alive";

const USAGE_CMD: &str = "Usage: pvcontrol cmd <run|poweroff|reboot|run-gc|make-factory|enable-ssh|disable-ssh|go-remote|unclaim> [arguments]
Send command to the Pantavisor state machine
       pvcontrol cmd run <locals/revision|revision> 			- runs an installed step
       pvcontrol cmd run-commit <locals/revision|revision>		- runs and commit an installed step
       pvcontrol cmd poweroff [message]             			- leniently powers device off
       pvcontrol cmd reboot [message]               			- leniently reboots device
       pvcontrol cmd run-gc                         			- run garbage collector
       pvcontrol cmd make-factory [revision]        			- make revision the factory revision if device is not yet claimed. It will use current revision if not set
       pvcontrol cmd enable-ssh                     			- start SSH server ignoring config until reboot
       pvcontrol cmd disable-ssh                    			- stops SSH server ignoring config until reboot
       pvcontrol cmd go-remote                      			- go remote when running on a locals/ revision if allowed by config
       pvcontrol cmd unclaim                        			- remove Pantacor Hub credentials and make the device claimable again
       pvcontrol cmd defer-reboot [new_timeout]     			- when debug shell is enabled and a reboot is issue, it will defer reboot to a new timeout";

const USAGE_DEVMETA: &str = "Usage: pvcontrol devmeta <save|delete|ls> [arguments]
Device metadata related operations
       pvcontrol devmeta save <key> [value] - creates or updates key-value pair in device metadata list
       pvcontrol devmeta delete <key>       - deletes key-value pair from device metadata list
       pvcontrol devmeta ls                 - lists stored device metadata";

const USAGE_USRMETA: &str = "Usage: pvcontrol usrmeta <save|delete|ls> [arguments]
User metadata related operations
       pvcontrol usrmeta save <key> [value] - creates or updates key-value pair in user metadata list
       pvcontrol usrmeta delete <key>       - deletes key-value pair from user metadata list
       pvcontrol usrmeta ls                 - lists stored user metadata";

const USAGE_BUILDINFO: &str = "Usage: pvcontrol buildinfo
Dump Pantavisor build info";

const USAGE_STORAGE: &str = "Usage: pvcontrol storage <gc>
Storage related operations
       pvcontrol storage gc - run garbage collector synchronously and report reclaimed bytes";

const USAGE_OBJECTS: &str = "Usage: pvcontrol objects <put|get|ls> [path] <sha>
Object related operations
       pvcontrol objects put [path] <sha> - puts object with a given sha256
       pvcontrol objects get <sha>        - gets object with a fiven sha256
       pvcontrol objects ls               - lists stored objects";

const USAGE_STEPS: &str = "Usage: pvcontrol steps <install|put|get|show-progress|ls> [path] <[remotes|locals]/branch/rev>
Step related operations
       pvcontrol steps install <path> locals/<revision>                 - installs a .tgz compressed tarball step and returns generated name if not specified
       pvcontrol steps put <path> locals/<revision>                     - creates step and puts state json in a given step
       pvcontrol steps get <locals/revision|revision|current>           - returns state json from a given step
       pvcontrol steps show-progress <locals/revision|revision|current> - returns update progress json from a given step
       pvcontrol steps ls                                               - lists steps from device";

const USAGE_GRAPH: &str = "Usage: pvcontrol graph <ls>
xconnect service mesh graph operations
       pvcontrol graph ls - show current xconnect graph";

const USAGE_CONTAINERS: &str = "Usage: pvcontrol containers <ls|start|stop|restart> [arguments]
Container lifecycle operations
       pvcontrol containers ls               - list all containers and their status
       pvcontrol containers start <name>     - start a stopped container
       pvcontrol containers stop <name>      - stop a running container
       pvcontrol containers restart <name>   - restart a container";

const USAGE_DAEMONS: &str = "Usage: pvcontrol daemons <ls|start|stop|restart> [arguments]
Daemon lifecycle operations
       pvcontrol daemons ls             - list all daemons and their status
       pvcontrol daemons start <name>   - start a daemon
       pvcontrol daemons stop <name>    - stop a daemon
       pvcontrol daemons restart <name> - restart a daemon";

const USAGE_CONFIG: &str = "Usage: pvcontrol config <ls>
Legacy configuration related operations
       pvcontrol config ls - lists legacy configuration";

const USAGE_CONF: &str = "Usage: pvcontrol <configuration|conf> <ls>
Configuration related operations
       pvcontrol conf ls - lists current configuration";

fn usage(text: &str, code: i32) -> ! {
    println!("{text}");
    exit(code)
}

/// One request as pvcurl sends it.
struct Req {
    method: &'static str,
    path: String,
    content_type: &'static str,
    body: Vec<u8>,
}

fn get(path: impl Into<String>) -> Req {
    Req {
        method: "GET",
        path: path.into(),
        content_type: "application/json",
        body: Vec::new(),
    }
}

fn with(method: &'static str, path: impl Into<String>, body: impl Into<Vec<u8>>) -> Req {
    Req {
        method,
        path: path.into(),
        content_type: "application/json",
        body: body.into(),
    }
}

fn action(path: String, a: &str) -> Req {
    with("PUT", path, format!("{{\"action\":\"{a}\"}}"))
}

fn command(op: &str, payload: &str) -> Req {
    with(
        "POST",
        "/commands",
        format!("{{\"op\":\"{op}\",\"payload\":\"{payload}\"}}"),
    )
}

/// What came back: status (0 when nothing did) and body.
struct Reply {
    code: u16,
    body: Vec<u8>,
}

struct Client {
    socket: PathBuf,
    verbose: bool,
    idle: Duration,
}

impl Client {
    /// One HTTP/1.0 exchange; `None` when the socket could not be used.
    fn call(&self, req: &Req) -> Option<Reply> {
        if self.verbose {
            eprintln!("* Connecting to {}...", self.socket.display());
            eprintln!("> {} {} HTTP/1.0", req.method, req.path);
        }
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(self.idle)).ok()?;
        let head = format!(
            "{} {} HTTP/1.0\r\nHost: localhost\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n",
            req.method,
            req.path,
            req.content_type,
            req.body.len()
        );
        s.write_all(head.as_bytes()).ok()?;
        s.write_all(&req.body).ok()?;
        let mut resp = Vec::new();
        let mut buf = [0u8; 64 * 1024];
        loop {
            match s.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => resp.extend_from_slice(&buf[..n]),
                // Idle for `nc -w`'s time: it gives up silently with what it has.
                Err(_) => break,
            }
        }
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
        if self.verbose {
            if let Some(l) = status_line.lines().next() {
                eprintln!("{l}");
            }
        }
        Some(Reply {
            code,
            body: resp[split..].to_vec(),
        })
    }
}

/// pvcontrol's show_output.
fn show(reply: Option<Reply>, out: &mut dyn Write) -> ! {
    let Some(reply) = reply else {
        eprintln!("ERROR: got no response");
        exit(1)
    };
    let mut text = String::from_utf8_lossy(&reply.body).into_owned();
    // Shell command substitution drops trailing newlines; so does upstream.
    while text.ends_with('\n') {
        text.pop();
    }
    if reply.code != 200 {
        let code = match text.as_str() {
            "{\"Error\":\"Not enough disk space available\"}" => 48,
            "{\"Error\":\"Object has bad checksum\"}" => 60,
            "{\"Error\":\"State verification has failed\"}" => 70,
            _ if reply.code == 503 => 75,
            _ => 255,
        };
        eprintln!("{text}");
        exit(code)
    }
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
    exit(0)
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

/// What the command line asks for.
enum Op {
    One(Req),
    /// `daemons restart`: stop, then start if the stop said 200.
    Restart(String),
    PutObject {
        path: String,
        sha: String,
    },
    GetObject(String),
    PutStep {
        path: String,
        rev: String,
    },
    Install {
        path: String,
        rev: Option<String>,
    },
}

fn parse(args: &[String]) -> Op {
    let a = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let need = |i: usize, u: &str| -> String {
        match a(i) {
            "" => usage(u, 1),
            v => v.to_owned(),
        }
    };
    match a(0) {
        "ls" | "list" => match a(1) {
            "" => Op::One(get("/containers")),
            "--help" => usage(USAGE_LS, 0),
            _ => usage(USAGE_LS, 1),
        },
        "containers" => match a(1) {
            "ls" | "list" => Op::One(get("/containers")),
            v @ ("start" | "stop" | "restart") => Op::One(action(
                format!("/containers/{}", need(2, USAGE_CONTAINERS)),
                v,
            )),
            "--help" => usage(USAGE_CONTAINERS, 0),
            _ => usage(USAGE_CONTAINERS, 1),
        },
        "groups" => match a(1) {
            "ls" => Op::One(get("/groups")),
            "--help" => usage(USAGE_GROUPS, 0),
            _ => usage(USAGE_GROUPS, 1),
        },
        "signal" => match a(1) {
            v @ ("ready" | "alive") => Op::One(with(
                "POST",
                "/signal",
                format!("{{\"type\":\"{v}\",\"payload\":\"\"}}"),
            )),
            "--help" => usage(USAGE_SIGNAL, 0),
            _ => usage(USAGE_SIGNAL, 1),
        },
        "cmd" | "command" | "commands" => Op::One(match a(1) {
            "run" => command("LOCAL_RUN", &need(2, USAGE_CMD)),
            "run-commit" => command("LOCAL_RUN_COMMIT", &need(2, USAGE_CMD)),
            "reboot" => command("REBOOT_DEVICE", a(2)),
            "poweroff" => command("POWEROFF_DEVICE", a(2)),
            "make-factory" => command("MAKE_FACTORY", a(2)),
            "run-gc" => command("RUN_GC", ""),
            "enable-ssh" => command("ENABLE_SSH", ""),
            "disable-ssh" => command("DISABLE_SSH", ""),
            "go-remote" => command("GO_REMOTE", ""),
            "unclaim" => command("UNCLAIM", ""),
            "defer-reboot" => command("DEFER_REBOOT", &need(2, USAGE_CMD)),
            "--help" => usage(USAGE_CMD, 0),
            _ => usage(USAGE_CMD, 1),
        }),
        m @ ("devmeta" | "usrmeta") => {
            let (u, ep) = if m == "devmeta" {
                (USAGE_DEVMETA, "device-meta")
            } else {
                (USAGE_USRMETA, "user-meta")
            };
            match a(1) {
                "save" => Op::One(with("PUT", format!("/{ep}/{}", need(2, u)), a(3))),
                "upload" if m == "devmeta" => {
                    Op::One(with("PUT", format!("/{ep}/{}", need(2, u)), a(3)))
                }
                "delete" => Op::One(with("DELETE", format!("/{ep}/{}", need(2, u)), "")),
                "ls" | "list" => Op::One(get(format!("/{ep}"))),
                "--help" => usage(u, 0),
                _ => usage(u, 1),
            }
        }
        "buildinfo" => match a(1) {
            "" => Op::One(get("/buildinfo")),
            "--help" => usage(USAGE_BUILDINFO, 0),
            _ => usage(USAGE_BUILDINFO, 1),
        },
        "storage" => match a(1) {
            "gc" => Op::One(with("POST", "/storage/gc", "")),
            "--help" => usage(USAGE_STORAGE, 0),
            _ => usage(USAGE_STORAGE, 1),
        },
        "objects" => match a(1) {
            "put" => {
                if a(2).is_empty() || a(3).is_empty() {
                    usage(USAGE_OBJECTS, 1)
                }
                Op::PutObject {
                    path: a(2).into(),
                    sha: a(3).into(),
                }
            }
            "get" => Op::GetObject(need(2, USAGE_OBJECTS)),
            "ls" | "list" => Op::One(get("/objects")),
            "--help" => usage(USAGE_OBJECTS, 0),
            _ => usage(USAGE_OBJECTS, 1),
        },
        "steps" => match a(1) {
            "install" => Op::Install {
                path: need(2, USAGE_STEPS),
                rev: Some(a(3).to_owned()).filter(|r| !r.is_empty()),
            },
            "put" => {
                if a(2).is_empty() || a(3).is_empty() {
                    usage(USAGE_STEPS, 1)
                }
                Op::PutStep {
                    path: a(2).into(),
                    rev: a(3).into(),
                }
            }
            "get" => Op::One(get(format!("/steps/{}", need(2, USAGE_STEPS)))),
            "show-progress" => Op::One(get(format!("/steps/{}/progress", need(2, USAGE_STEPS)))),
            "ls" | "list" => Op::One(get("/steps")),
            "--help" => usage(USAGE_STEPS, 0),
            _ => usage(USAGE_STEPS, 1),
        },
        "config" => match a(1) {
            "ls" | "list" => Op::One(get("/config")),
            "--help" => usage(USAGE_CONFIG, 0),
            _ => usage(USAGE_CONFIG, 1),
        },
        "configuration" | "conf" => match a(1) {
            "ls" | "list" => Op::One(get("/config2")),
            "--help" => usage(USAGE_CONF, 0),
            _ => usage(USAGE_CONF, 1),
        },
        "graph" => match a(1) {
            "ls" | "list" => Op::One(get("/xconnect-graph")),
            "--help" => usage(USAGE_GRAPH, 0),
            _ => usage(USAGE_GRAPH, 1),
        },
        "daemons" => match a(1) {
            "ls" | "list" => Op::One(get("/daemons")),
            v @ ("start" | "stop") => {
                Op::One(action(format!("/daemons/{}", need(2, USAGE_DAEMONS)), v))
            }
            "restart" => Op::Restart(need(2, USAGE_DAEMONS)),
            "--help" => usage(USAGE_DAEMONS, 0),
            _ => usage(USAGE_DAEMONS, 1),
        },
        "--help" => usage(USAGE, 0),
        _ => usage(USAGE, 1),
    }
}

fn read_input(path: &str) -> Vec<u8> {
    let data = if path == "-" {
        let mut v = Vec::new();
        std::io::stdin().read_to_end(&mut v).map(|_| v)
    } else {
        std::fs::read(path)
    };
    data.unwrap_or_else(|e| {
        eprintln!("pvcontrol: {path}: {e}");
        exit(1)
    })
}

fn octet(method: &'static str, path: String, body: Vec<u8>) -> Req {
    Req {
        method,
        path,
        content_type: "application/octet-stream",
        body,
    }
}

/// `steps install`: the script's upload of an export's objects and state.
fn install(client: &Client, path: &str, rev: Option<String>) -> ! {
    let data = read_input(path);
    if !path.ends_with(".tgz") {
        println!("ERROR: unkwnown file format");
        exit(1)
    }
    let mut json = None;
    let mut objects = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&data[..]));
    let entries = archive.entries().unwrap_or_else(|_| {
        println!("ERROR: wrong contents of compressed step");
        exit(1)
    });
    for entry in entries.flatten() {
        let mut entry = entry;
        let name = entry
            .path()
            .map(|p| p.to_string_lossy().trim_start_matches("./").to_owned())
            .unwrap_or_default();
        let mut content = Vec::new();
        if entry.read_to_end(&mut content).is_err() {
            continue;
        }
        if name == "json" {
            json = Some(content);
        } else if let Some(sha) = name.strip_prefix("objects/").filter(|s| !s.is_empty()) {
            objects.push((sha.to_owned(), content));
        }
    }
    let Some(json) = json else {
        println!("ERROR: wrong contents of compressed step");
        exit(1)
    };
    let rev = rev.unwrap_or_else(|| {
        use sha2::Digest;
        format!("locals/{}", hex::encode(sha2::Sha256::digest(&data)))
    });
    let listed = |r: Option<Reply>| r.map(|r| String::from_utf8_lossy(&r.body).into_owned());
    let olist = listed(client.call(&get("/objects"))).unwrap_or_default();
    for (sha, content) in objects {
        if !olist.contains(&sha) {
            client.call(&octet("PUT", format!("/objects/{sha}"), content));
        }
    }
    let slist = listed(client.call(&get("/steps"))).unwrap_or_default();
    if !slist.contains(&rev) {
        client.call(&with("PUT", format!("/steps/{rev}"), json));
    }
    println!("{{\"revision\":\"{rev}\"}}");
    exit(0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut socket: Option<PathBuf> = None;
    let mut output: Option<PathBuf> = None;
    let mut message = String::new();
    let mut verbose = false;
    let mut i = 0;
    while let Some(a) = args.get(i) {
        match a.as_str() {
            "-h" => usage(USAGE, 0),
            "-v" => verbose = true,
            "-s" | "-f" | "-m" => {
                i += 1;
                let v = args.get(i).cloned().unwrap_or_default();
                match a.as_str() {
                    "-s" => socket = Some(PathBuf::from(v)),
                    "-f" => output = Some(PathBuf::from(v)),
                    _ => message = v,
                }
            }
            _ => break,
        }
        i += 1;
    }
    let op = parse(&args[i..]);
    let client = Client {
        socket: socket.unwrap_or_else(default_socket),
        verbose,
        idle: idle_timeout(std::env::var("CURL_ARGS").ok().as_deref()),
    };
    if !is_socket(&client.socket) {
        println!("ERROR: {} not found", client.socket.display());
        exit(1);
    }
    let mut out: Box<dyn Write> = match &output {
        Some(p) => match std::fs::File::create(p) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("pvcontrol: {}: {e}", p.display());
                exit(1)
            }
        },
        None => Box::new(std::io::stdout()),
    };
    match op {
        Op::One(req) => show(client.call(&req), &mut *out),
        Op::Restart(name) => {
            let stop = client.call(&action(format!("/daemons/{name}"), "stop"));
            match stop {
                Some(r) if r.code == 200 => show(
                    client.call(&action(format!("/daemons/{name}"), "start")),
                    &mut *out,
                ),
                other => show(other, &mut *out),
            }
        }
        Op::PutObject { path, sha } => {
            let body = read_input(&path);
            show(
                client.call(&octet("PUT", format!("/objects/{sha}"), body)),
                &mut *out,
            )
        }
        Op::GetObject(sha) => {
            if let Some(r) = client.call(&get(format!("/objects/{sha}"))) {
                let _ = out.write_all(&r.body);
                let _ = out.flush();
            }
            exit(0)
        }
        Op::PutStep { path, rev } => {
            let body = read_input(&path);
            let reply = client.call(&with("PUT", format!("/steps/{rev}"), body));
            if matches!(&reply, Some(r) if r.code == 200) && !message.is_empty() {
                show(
                    client.call(&with("PUT", format!("/steps/{rev}/commitmsg"), message)),
                    &mut *out,
                )
            }
            show(reply, &mut *out)
        }
        Op::Install { path, rev } => install(&client, &path, rev),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curl_args_connect_timeout_is_the_idle_timeout() {
        assert_eq!(idle_timeout(None), IDLE);
        assert_eq!(idle_timeout(Some("")), IDLE);
        assert_eq!(idle_timeout(Some("-s -w \\n%{http_code}")), IDLE);
        assert_eq!(
            idle_timeout(Some(
                "-s -w \\n%{http_code} --connect-timeout 30 --max-time 240"
            )),
            Duration::from_secs(30)
        );
        assert_eq!(idle_timeout(Some("--connect-timeout x")), IDLE);
    }
}
