//! Sharing one booted appengine between the tests of a group.
//!
//! Each test of a group calls [`Group::enter`]; the first one boots the
//! appengine, the others wait for it. Each returned [`GroupGuard`] counts
//! its test finished when dropped (also on panic, when it prints the
//! appengine's diagnostics); after the group's last test the appengine is
//! removed. If only some tests of a group run (a name filter), an exit hook
//! removes whatever is left when the test process ends.

use std::ops::Deref;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Once};

use crate::appengine::{Appengine, BootOptions, Examples, Unsupported};

/// A set of tests sharing one appengine.
pub struct Group {
    name: &'static str,
    /// The examples to install; `None`: every example.
    examples: Option<&'static [&'static str]>,
    /// Makes test-only pvrexports to install too (see
    /// [`Group::with_exports`]).
    extra: Option<ExtraExports>,
    tests: usize,
    hosted_bus: bool,
    state: Mutex<State>,
}

/// Writes pvrexports into the given directory and returns their paths.
pub type ExtraExports = fn(&std::path::Path) -> anyhow::Result<Vec<PathBuf>>;

#[derive(Default)]
struct State {
    booted: Option<Result<Arc<Appengine>, BootFailure>>,
    finished: usize,
}

/// Appengines still alive, removed at process exit.
static LIVE: Mutex<Vec<Arc<Appengine>>> = Mutex::new(Vec::new());

impl Group {
    /// A group booted with `examples`. `tests` must equal the number of
    /// tests calling [`Group::enter`].
    pub const fn new(name: &'static str, examples: &'static [&'static str], tests: usize) -> Self {
        Group::with(name, Some(examples), tests)
    }

    /// A group booted with every example.
    pub const fn all_examples(name: &'static str, tests: usize) -> Self {
        Group::with(name, None, tests)
    }

    const fn with(
        name: &'static str,
        examples: Option<&'static [&'static str]>,
        tests: usize,
    ) -> Self {
        Group {
            name,
            examples,
            extra: None,
            tests,
            hosted_bus: false,
            state: Mutex::new(State {
                booted: None,
                finished: 0,
            }),
        }
    }

    /// Also installs the pvrexports `extra` writes (containers a test
    /// builds itself, e.g. with [`crate::examples::busybox_export`]).
    pub const fn with_exports(mut self, extra: ExtraExports) -> Self {
        self.extra = Some(extra);
        self
    }

    /// A group booted with `examples` on an appengine hosting the D-Bus
    /// system bus ([`BootOptions::hosted_bus`]).
    pub const fn hosted_bus(
        name: &'static str,
        examples: &'static [&'static str],
        tests: usize,
    ) -> Self {
        let mut g = Group::with(name, Some(examples), tests);
        g.hosted_bus = true;
        g
    }

    /// The group's appengine (booted and READY), for one test.
    /// Panics with the boot error (and its diagnostics) if boot failed:
    /// a missing example or appengine is a failure, never a skip.
    pub fn enter(&'static self) -> GroupGuard {
        match self.try_enter() {
            Ok(guard) => guard,
            Err(BootFailure::Failed(e) | BootFailure::Unsupported(e)) => {
                panic!("appengine for group '{}' did not boot: {e}", self.name)
            }
        }
    }

    /// [`Group::enter`] for a group the image may not support (a real
    /// image built without the hosted D-Bus bus, see [`Unsupported`]):
    /// then prints `NOT CHECKED: <test>: <why>` and gives `None`, and the
    /// test must return without asserting anything. Any other boot
    /// failure panics as with [`Group::enter`].
    pub fn enter_if_supported(&'static self, test: &str) -> Option<GroupGuard> {
        match self.try_enter() {
            Ok(guard) => Some(guard),
            Err(BootFailure::Unsupported(why)) => {
                crate::util::note(format!("NOT CHECKED: {test}: {why}"));
                None
            }
            Err(BootFailure::Failed(e)) => {
                panic!("appengine for group '{}' did not boot: {e}", self.name)
            }
        }
    }

    fn try_enter(&'static self) -> Result<GroupGuard, BootFailure> {
        register_exit_hook();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.booted.is_none() {
            let examples = match self.examples {
                Some(names) => Examples::only(names),
                None => Examples::All,
            };
            let r = self.boot(examples).map(Arc::new).map_err(|e| {
                match e.downcast_ref::<Unsupported>() {
                    Some(u) => BootFailure::Unsupported(u.to_string()),
                    None => BootFailure::Failed(format!("{e:#}")),
                }
            });
            if let Ok(ae) = &r {
                LIVE.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(ae.clone());
            }
            st.booted = Some(r);
        }
        match st.booted.clone() {
            Some(Ok(ae)) => Ok(GroupGuard {
                group: self,
                ae: Some(ae),
            }),
            Some(Err(e)) => {
                st.finished += 1;
                Err(e)
            }
            None => unreachable!("booted just above"),
        }
    }
}

/// Why a group's appengine is not there.
#[derive(Debug, Clone)]
enum BootFailure {
    Failed(String),
    /// The image lacks what the group needs ([`Unsupported`]).
    Unsupported(String),
}

impl Group {
    fn boot(&self, examples: Examples) -> anyhow::Result<Appengine> {
        // Copied into the container at boot: the files can go after.
        let dir = tempfile::tempdir()?;
        let extra_exports = match self.extra {
            Some(make) => make(dir.path())?,
            None => Vec::new(),
        };
        Appengine::boot(BootOptions {
            group: self.name.into(),
            examples,
            extra_exports,
            wait_ready: true,
            hosted_bus: self.hosted_bus,
            ..Default::default()
        })
    }
}

/// One test's hold on its group's appengine.
pub struct GroupGuard {
    group: &'static Group,
    ae: Option<Arc<Appengine>>,
}

impl Deref for GroupGuard {
    type Target = Appengine;
    fn deref(&self) -> &Appengine {
        self.ae.as_deref().expect("present until drop")
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(ae) = self.ae.take() else { return };
        if std::thread::panicking() {
            eprintln!("{}", ae.diagnostics());
        }
        let mut st = self.group.state.lock().unwrap_or_else(|p| p.into_inner());
        st.finished += 1;
        if st.finished >= self.group.tests {
            st.booted = None;
            drop(st);
            LIVE.lock()
                .unwrap_or_else(|p| p.into_inner())
                .retain(|a| !Arc::ptr_eq(a, &ae));
            // Last holder: dropping removes the container and volumes.
            drop(ae);
        }
    }
}

fn register_exit_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if !crate::atexit::register(remove_leftovers) {
            eprintln!("[harness] atexit refused: a filtered run may leave appengines behind");
        }
    });
}

extern "C" fn remove_leftovers() {
    let left: Vec<Arc<Appengine>> = match LIVE.lock() {
        Ok(mut l) => std::mem::take(&mut *l),
        Err(_) => return,
    };
    for ae in left {
        // Other holders (a filtered group's guards) are gone by now.
        match Arc::try_unwrap(ae) {
            Ok(mut a) => a.remove(),
            Err(a) => eprintln!("[harness] {} still in use at exit; not removed", a.name),
        }
    }
}
