//! The processes a link is made for: their pids checked in one place, then
//! pinned, so a pid is an identity and never just a number.
//!
//! Pantavisor names each end of a link by its container's init pid: -1
//! before the container first started, 0 for the host side (only the
//! hosted system bus, provider `_pv_` of type `dbus`), > 0 for a running
//! container — or for a container that has *stopped*: Pantavisor never
//! resets a pid, so the number may since belong to any other process.
//!
//! [`LinkPids::of`] turns the two raw pids of a [`LinkSpec`] into checked
//! types, or says why the link must wait or is refused ([`PidError`]).
//! [`Process::open_container`] then pins each container end:
//!
//! - its `/proc/<pid>` directory is opened once; every later lookup
//!   (`root`, `ns/mnt`, `stat`) goes through that descriptor, which the
//!   kernel ties to the process, not to its number: once the process is
//!   gone, lookups fail even if the number was reused. No pid is ever
//!   resolved again after the link started;
//! - a pidfd says when the process exits (readable), with no polling;
//! - its start time and mount/pid namespace inodes are recorded and
//!   re-checked before every use ([`Process::check`]);
//! - a process that shares the daemon's own mount namespace, or that is
//!   not the init of a pid namespace of its own, is not a container's init
//!   (a stale pid reused by someone else) and is refused.
//!
//! Links of one container share its pin ([`Process::pin_container`]), and
//! a pin has at most one exit watcher, so a hundred links to one provider
//! cost a handful of descriptors, not hundreds.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::watch;

use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{fstatat, Mode};

use crate::error::PathError;
use crate::graph::{LinkSpec, ServiceType};

/// The provider name of the hosted system bus, the only link that may
/// reach the host (`provider_pid` 0).
pub const HOSTED_BUS: &str = "_pv_";

/// A container's init process as the graph names it: a pid > 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Pid(i32);

impl Pid {
    /// `None` unless `raw` > 0.
    pub fn new(raw: i32) -> Option<Pid> {
        (raw > 0).then_some(Pid(raw))
    }

    pub fn get(self) -> i32 {
        self.0
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a provider's socket or device lives: the host's own root (pid 0),
/// or a container's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderPid {
    Host,
    Container(Pid),
}

impl ProviderPid {
    /// Check a provider pid from the graph (the hosted-bus rule for pid 0
    /// is [`LinkPids::of`]'s).
    pub fn new(raw: i32) -> Result<ProviderPid, PidError> {
        match raw {
            0 => Ok(ProviderPid::Host),
            -1 => Err(PidError::ProviderNotStarted),
            p => Pid::new(p)
                .map(ProviderPid::Container)
                .ok_or(PidError::ProviderInvalid(p)),
        }
    }

    /// The pid as the graph has it (0 for the host).
    pub fn raw(self) -> i32 {
        match self {
            ProviderPid::Host => 0,
            ProviderPid::Container(p) => p.get(),
        }
    }
}

impl fmt::Display for ProviderPid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.raw().fmt(f)
    }
}

/// Why a link cannot start with the pids the graph gave (its `pending`
/// reason in `pv-xconnect status`, or its refusal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PidError {
    #[error("consumer not started (pid -1)")]
    ConsumerNotStarted,
    #[error("consumer pid 0 (host side) is not supported")]
    ConsumerIsHost,
    #[error("consumer pid {0} is invalid")]
    ConsumerInvalid(i32),
    #[error("provider not started (pid -1)")]
    ProviderNotStarted,
    #[error("provider pid {0} is invalid")]
    ProviderInvalid(i32),
    #[error("provider pid 0 (the host) is allowed only for the hosted system bus (provider {HOSTED_BUS}, type dbus)")]
    HostNotAllowed,
}

impl PidError {
    /// A refusal (the graph asks for something never allowed), as opposed
    /// to waiting for a container to start.
    pub fn is_refusal(&self) -> bool {
        matches!(self, PidError::HostNotAllowed | PidError::ConsumerIsHost)
    }
}

/// Check a consumer pid from the graph: nothing is ever created on the
/// host side, so 0 is refused like -1.
pub fn consumer_pid(raw: i32) -> Result<Pid, PidError> {
    match raw {
        -1 => Err(PidError::ConsumerNotStarted),
        0 => Err(PidError::ConsumerIsHost),
        p => Pid::new(p).ok_or(PidError::ConsumerInvalid(p)),
    }
}

/// Both ends of a link, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPids {
    pub consumer: Pid,
    pub provider: ProviderPid,
}

impl LinkPids {
    /// The one pid check: a link may start only when this succeeds. Pid 0
    /// (the host) is accepted for the hosted system bus only, as upstream
    /// uses it.
    pub fn of(spec: &LinkSpec) -> Result<LinkPids, PidError> {
        let consumer = consumer_pid(spec.consumer_pid)?;
        let provider = ProviderPid::new(spec.provider_pid)?;
        if provider == ProviderPid::Host
            && !(spec.provider == HOSTED_BUS && spec.kind == ServiceType::Dbus)
        {
            return Err(PidError::HostNotAllowed);
        }
        Ok(LinkPids { consumer, provider })
    }
}

/// Identity of a namespace: device and inode of its nsfs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NsId {
    dev: u64,
    ino: u64,
}

impl fmt::Display for NsId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.ino)
    }
}

/// The daemon's own namespaces, read once.
struct Own {
    mnt: NsId,
    pid: NsId,
}

fn own() -> Option<&'static Own> {
    static OWN: OnceLock<Option<Own>> = OnceLock::new();
    OWN.get_or_init(|| {
        let st = |p: &str| {
            nix::sys::stat::stat(p).ok().map(|s| NsId {
                dev: s.st_dev,
                ino: s.st_ino,
            })
        };
        Some(Own {
            mnt: st("/proc/self/ns/mnt")?,
            pid: st("/proc/self/ns/pid")?,
        })
    })
    .as_ref()
}

/// The daemon's own mount namespace.
pub fn own_mnt_ns() -> Option<NsId> {
    own().map(|o| o.mnt)
}

/// Why a process cannot be used (anymore) for a link.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("{role} pid {pid} is not running")]
    Gone { role: &'static str, pid: i32 },
    #[error("{role} pid {pid} is no longer the process the link was made for ({what})")]
    Changed {
        role: &'static str,
        pid: i32,
        what: &'static str,
    },
    #[error("{role} pid {pid} shares pv-xconnect's own mount namespace, so it is not a container (a stale pid reused by another process?)")]
    SharesDaemonNamespace { role: &'static str, pid: i32 },
    #[error("{role} pid {pid} is not a container's init (pid 1 of a pid namespace of its own): a stale pid reused by another process?")]
    NotContainerInit { role: &'static str, pid: i32 },
    #[error("{role} pid {pid} is a thread, not a process")]
    NotAProcess { role: &'static str, pid: i32 },
    #[error("{role}: {source}")]
    Io {
        role: &'static str,
        #[source]
        source: PathError,
    },
}

impl ProcessError {
    /// The pid no longer names the process the graph meant (exited,
    /// replaced, or never a container): retrying with the same graph
    /// cannot help, only a new pid can.
    pub fn is_gone(&self) -> bool {
        !matches!(self, ProcessError::Io { .. })
    }
}

/// A pinned process (see the module docs).
#[derive(Debug)]
pub struct Process {
    role: &'static str,
    pid: i32,
    /// `/proc/<pid>`, O_PATH: tied to this very process.
    dir: OwnedFd,
    /// `None` on kernels without `pidfd_open` (< 5.3): exit is then
    /// noticed by polling `dir`.
    pidfd: Option<OwnedFd>,
    start_time: u64,
    mnt_ns: NsId,
    pid_ns: NsId,
    /// Set once the process exited; fed by one watcher task per pin.
    exit: OnceLock<watch::Receiver<bool>>,
}

/// How often exit is polled without a pidfd.
const EXIT_POLL: Duration = Duration::from_millis(500);

impl Process {
    /// Pin `pid` (any process: the test helpers and a host-side provider
    /// use this directly). Blocking (procfs only).
    pub fn open(pid: i32, role: &'static str) -> Result<Process, ProcessError> {
        let path = PathBuf::from(format!("/proc/{pid}"));
        let dir = match nix::fcntl::open(
            &path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::ENOENT) => return Err(ProcessError::Gone { role, pid }),
            Err(e) => {
                return Err(ProcessError::Io {
                    role,
                    source: PathError::at("open", &path)(e),
                })
            }
        };
        let pidfd = match crate::sys::pidfd_open(pid) {
            Ok(fd) => Some(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => None,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => {
                return Err(ProcessError::Gone { role, pid })
            }
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                return Err(ProcessError::NotAProcess { role, pid })
            }
            Err(e) => {
                return Err(ProcessError::Io {
                    role,
                    source: PathError::at("pidfd_open", &path)(e),
                })
            }
        };
        let mut p = Process {
            role,
            pid,
            dir,
            pidfd,
            start_time: 0,
            mnt_ns: NsId { dev: 0, ino: 0 },
            pid_ns: NsId { dev: 0, ino: 0 },
            exit: OnceLock::new(),
        };
        p.start_time = p.read_start_time()?;
        p.mnt_ns = p.ns("mnt")?;
        p.pid_ns = p.ns("pid")?;
        // The pidfd was opened after `dir`: if the number changed hands in
        // between, the process behind `dir` is dead by now.
        if p.has_exited() {
            return Err(ProcessError::Gone { role, pid });
        }
        Ok(p)
    }

    /// Pin a container end of a link: refuse anything that cannot be a
    /// container's init (see the module docs).
    pub fn open_container(pid: Pid, role: &'static str) -> Result<Process, ProcessError> {
        let p = Process::open(pid.get(), role)?;
        let pid = pid.get();
        if let Some(own) = own() {
            if p.mnt_ns == own.mnt {
                return Err(ProcessError::SharesDaemonNamespace { role, pid });
            }
            if p.pid_ns == own.pid || p.innermost_pid()? != Some(1) {
                return Err(ProcessError::NotContainerInit { role, pid });
            }
        }
        Ok(p)
    }

    /// [`Process::open_container`], sharing a live pin of the same process
    /// (same pid and start time, same role) with other links.
    pub fn pin_container(pid: Pid, role: &'static str) -> Result<Arc<Process>, ProcessError> {
        type Pins = Mutex<HashMap<(i32, &'static str), Weak<Process>>>;
        static PINS: OnceLock<Pins> = OnceLock::new();
        let pins = PINS.get_or_init(Default::default);
        let key = (pid.get(), role);
        let cached = pins
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .and_then(Weak::upgrade);
        if let Some(p) = cached {
            if p.check().is_ok() {
                return Ok(p);
            }
        }
        let p = Arc::new(Process::open_container(pid, role)?);
        let mut pins = pins.lock().unwrap_or_else(|p| p.into_inner());
        pins.retain(|_, w| w.strong_count() > 0);
        pins.insert(key, Arc::downgrade(&p));
        Ok(p)
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    pub fn role(&self) -> &'static str {
        self.role
    }

    pub fn mnt_ns(&self) -> NsId {
        self.mnt_ns
    }

    pub fn pid_ns(&self) -> NsId {
        self.pid_ns
    }

    /// Whether the process has exited (a zombie counts as exited).
    pub fn has_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => {
                let mut pfd = [nix::poll::PollFd::new(
                    fd.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                matches!(
                    nix::poll::poll(&mut pfd, nix::poll::PollTimeout::ZERO),
                    Ok(n) if n > 0
                )
            }
            None => self.read_start_time().is_err(),
        }
    }

    /// Still alive, still the same process, still in the namespace the
    /// link was made for.
    pub fn check(&self) -> Result<(), ProcessError> {
        if self.has_exited() {
            return Err(self.gone());
        }
        if self.ns("mnt")? != self.mnt_ns {
            return Err(ProcessError::Changed {
                role: self.role,
                pid: self.pid,
                what: "its mount namespace changed",
            });
        }
        if self.read_start_time()? != self.start_time {
            return Err(ProcessError::Changed {
                role: self.role,
                pid: self.pid,
                what: "its start time changed",
            });
        }
        Ok(())
    }

    /// The process's root directory (what it sees as `/`), O_PATH, opened
    /// through the pinned `/proc` entry and checked afterwards.
    pub fn root(&self) -> Result<OwnedFd, ProcessError> {
        let fd = self.openat("root", OFlag::O_PATH | OFlag::O_DIRECTORY)?;
        self.check()?;
        Ok(fd)
    }

    /// The process's mount namespace, for `setns(2)`: opened through the
    /// pin and checked to be the namespace the link was made for.
    pub fn mnt_ns_file(&self) -> Result<OwnedFd, ProcessError> {
        let fd = self.openat("ns/mnt", OFlag::O_RDONLY)?;
        let st = nix::sys::stat::fstat(&fd).map_err(self.io_or_gone("stat", "ns/mnt"))?;
        if (NsId {
            dev: st.st_dev,
            ino: st.st_ino,
        }) != self.mnt_ns
        {
            return Err(ProcessError::Changed {
                role: self.role,
                pid: self.pid,
                what: "its mount namespace changed",
            });
        }
        self.check()?;
        Ok(fd)
    }

    /// Resolves when the process exits. Needs a tokio runtime.
    pub async fn exited(&self) {
        if let Some(mut rx) = self.exit_watch() {
            loop {
                if *rx.borrow_and_update() {
                    return;
                }
                if rx.changed().await.is_err() {
                    break;
                }
            }
        }
        while !self.has_exited() {
            tokio::time::sleep(EXIT_POLL).await;
        }
    }

    /// The pin's exit flag, started on first use: one task waits for the
    /// pidfd to turn readable, and ends with the pin.
    fn exit_watch(&self) -> Option<watch::Receiver<bool>> {
        if let Some(rx) = self.exit.get() {
            return Some(rx.clone());
        }
        let fd = self.pidfd.as_ref()?.try_clone().ok()?;
        let watched = crate::sys::async_readable(fd).ok()?;
        let (tx, rx) = watch::channel(false);
        tokio::spawn(async move {
            tokio::select! {
                // Readable once the process exited; errors mean the same.
                _ = watched.readable() => {
                    let _ = tx.send(true);
                }
                _ = tx.closed() => {}
            }
        });
        Some(self.exit.get_or_init(|| rx).clone())
    }

    fn gone(&self) -> ProcessError {
        ProcessError::Gone {
            role: self.role,
            pid: self.pid,
        }
    }

    fn io_or_gone(
        &self,
        what: &'static str,
        sub: &str,
    ) -> impl FnOnce(nix::errno::Errno) -> ProcessError + '_ {
        let path = PathBuf::from(format!("/proc/{}/{sub}", self.pid));
        move |e| match e {
            // The entry of a process that is gone: ENOENT or ESRCH.
            nix::errno::Errno::ENOENT | nix::errno::Errno::ESRCH => self.gone(),
            e => ProcessError::Io {
                role: self.role,
                source: PathError::at(what, &path)(e),
            },
        }
    }

    fn openat(&self, sub: &str, flags: OFlag) -> Result<OwnedFd, ProcessError> {
        openat(&self.dir, sub, flags | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(self.io_or_gone("open", sub))
    }

    fn ns(&self, kind: &str) -> Result<NsId, ProcessError> {
        let sub = format!("ns/{kind}");
        let st = fstatat(&self.dir, sub.as_str(), nix::fcntl::AtFlags::empty())
            .map_err(self.io_or_gone("stat", &sub))?;
        Ok(NsId {
            dev: st.st_dev,
            ino: st.st_ino,
        })
    }

    fn read_file(&self, sub: &str) -> Result<String, ProcessError> {
        let fd = self.openat(sub, OFlag::O_RDONLY)?;
        let mut text = String::new();
        File::from(fd)
            .take(64 * 1024)
            .read_to_string(&mut text)
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => self.gone(),
                _ if e.raw_os_error() == Some(libc::ESRCH) => self.gone(),
                _ => ProcessError::Io {
                    role: self.role,
                    source: PathError::at("read", Path::new(sub))(e),
                },
            })?;
        Ok(text)
    }

    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
    fn read_start_time(&self) -> Result<u64, ProcessError> {
        let stat = self.read_file("stat")?;
        parse_start_time(&stat).ok_or(ProcessError::Changed {
            role: self.role,
            pid: self.pid,
            what: "its /proc stat is unreadable",
        })
    }

    /// The pid in its innermost pid namespace (`NSpid`'s last field), if
    /// the kernel says (Linux >= 4.1).
    fn innermost_pid(&self) -> Result<Option<i32>, ProcessError> {
        let status = self.read_file("status")?;
        Ok(status
            .lines()
            .find_map(|l| l.strip_prefix("NSpid:"))
            .and_then(|v| v.split_whitespace().last())
            .and_then(|v| v.parse().ok()))
    }
}

impl AsRawFd for Process {
    /// The pinned `/proc/<pid>` directory.
    fn as_raw_fd(&self) -> RawFd {
        self.dir.as_raw_fd()
    }
}

/// Start time from a `/proc/<pid>/stat` line; the command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its
/// last `)`.
fn parse_start_time(stat: &str) -> Option<u64> {
    let rest = stat.rsplit_once(')')?.1;
    // After the command: state is field 3, start time field 22.
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// The outcome of [`Process::open`] errors as an `io::Error`, for callers
/// that only report.
impl From<ProcessError> for io::Error {
    fn from(e: ProcessError) -> io::Error {
        io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::LinkSpecBuilder;

    #[test]
    fn consumers_must_be_running_containers() {
        assert_eq!(consumer_pid(1234).map(Pid::get), Ok(1234));
        assert_eq!(consumer_pid(-1), Err(PidError::ConsumerNotStarted));
        assert_eq!(consumer_pid(0), Err(PidError::ConsumerIsHost));
        assert_eq!(consumer_pid(-7), Err(PidError::ConsumerInvalid(-7)));
        assert_eq!(Pid::new(0), None);
        assert_eq!(Pid::new(-1), None);
    }

    #[test]
    fn providers_may_be_the_host() {
        assert_eq!(ProviderPid::new(0), Ok(ProviderPid::Host));
        assert_eq!(ProviderPid::new(42).map(ProviderPid::raw), Ok(42));
        assert_eq!(ProviderPid::new(-1), Err(PidError::ProviderNotStarted));
        assert_eq!(ProviderPid::new(-3), Err(PidError::ProviderInvalid(-3)));
    }

    #[test]
    fn only_the_hosted_bus_reaches_the_host() {
        let link = |provider: &str, kind: ServiceType| {
            LinkSpecBuilder::new(kind)
                .consumer("c", 10)
                .provider(provider, 0)
                .build()
        };
        assert_eq!(
            LinkPids::of(&link(HOSTED_BUS, ServiceType::Dbus)).map(|p| p.provider),
            Ok(ProviderPid::Host)
        );
        for (provider, kind) in [
            (HOSTED_BUS, ServiceType::Unix),
            (HOSTED_BUS, ServiceType::Rest),
            ("app", ServiceType::Dbus),
            ("app", ServiceType::Wayland),
            ("app", ServiceType::Drm),
        ] {
            let err = LinkPids::of(&link(provider, kind.clone())).unwrap_err();
            assert_eq!(err, PidError::HostNotAllowed, "{provider} {kind}");
            assert!(err.is_refusal());
        }
    }

    #[test]
    fn the_reasons_read_as_status_shows_them() {
        assert_eq!(
            PidError::ConsumerNotStarted.to_string(),
            "consumer not started (pid -1)"
        );
        assert_eq!(
            PidError::ConsumerIsHost.to_string(),
            "consumer pid 0 (host side) is not supported"
        );
        assert_eq!(
            PidError::ProviderNotStarted.to_string(),
            "provider not started (pid -1)"
        );
    }

    #[test]
    fn start_time_is_field_22_even_with_odd_command_names() {
        let line =
            "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1234 56";
        assert_eq!(parse_start_time(line), Some(987654));
        assert_eq!(parse_start_time("garbage"), None);
    }

    #[test]
    fn this_process_is_pinned_and_shares_our_namespace() {
        let me = std::process::id() as i32;
        let p = Process::open(me, "test").expect("open self");
        p.check().expect("still us");
        assert!(!p.has_exited());
        assert_eq!(Some(p.mnt_ns()), own_mnt_ns());
        let err = Process::open_container(Pid::new(me).unwrap(), "consumer").unwrap_err();
        assert!(
            matches!(err, ProcessError::SharesDaemonNamespace { .. }),
            "{err}"
        );
        assert!(err.is_gone());
        assert!(matches!(
            Process::open(i32::MAX, "test"),
            Err(ProcessError::Gone { .. })
        ));
    }

    #[tokio::test]
    async fn exit_is_noticed_without_polling_the_graph() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let p = Process::open(child.id() as i32, "test").unwrap();
        assert!(!p.has_exited());
        child.kill().unwrap();
        tokio::time::timeout(Duration::from_secs(5), p.exited())
            .await
            .expect("exit noticed");
        assert!(p.has_exited());
        assert!(matches!(p.check(), Err(ProcessError::Gone { .. })));
        let _ = child.wait();
        // Reaped: the pinned directory no longer resolves either.
        assert!(p.root().is_err());
    }
}
