//! What this process does when it is told to stop (SIGINT, SIGTERM, SIGHUP), and the
//! registry of things that must be undone or killed if it has to stop at once.
//!
//! Two modes:
//! - **Graceful** ([`install_graceful`], `ci`): the first signal only sets the cancel flag
//!   ([`cancelled`]). The step executor (`support::exec`) forwards it to each running
//!   step's process group and sends SIGKILL after [`GRACE`]; the runner starts nothing
//!   new; the job puts the checkouts back, writes the summary marked cancelled and `ci`
//!   exits with 128 + the signal number (130 for SIGINT, 143 for SIGTERM). A second
//!   signal is an emergency stop (below).
//! - **Emergency** (every other command, installed by the first registration,
//!   [`with_registry`] or [`track_group`]): the first signal kills every tracked process group with SIGKILL, runs
//!   every registered undo action (a stripped `Cargo.toml` put back, a generated
//!   `Cargo.lock` removed) and exits with 128 + the signal number.
//!
//! Registrations are made under one lock ([`with_registry`]), and an emergency stop holds
//! that lock until the process is gone, so a change to a checkout and its undo action are
//! registered atomically with respect to a stop: an emergency stop sees either neither or
//! both.
//!
//! Limits: SIGKILL cannot be handled. What survives a SIGKILL of this process is covered
//! by `PR_SET_PDEATHSIG` on each step's leader and by the watchdog (`support::watchdog`);
//! the checkout changes are reconciled by the next run that owns the checkout
//! (`engine::patches`).
//!
//! Owns the process's signal dispositions for SIGINT, SIGTERM and SIGHUP; touches nothing
//! on disk itself (the undo actions do).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

/// How long a process group told to stop (SIGTERM at a timeout, or the signal `ci`
/// received) may take before it gets SIGKILL. A few seconds: long enough for cargo and
/// test harnesses to exit on their own, short enough for a CI cancel (GitHub Actions sends
/// SIGKILL 7.5 s after its SIGINT).
pub const GRACE: Duration = Duration::from_secs(3);

/// The signals handled.
const HANDLED: [i32; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// The first signal received (0: none).
static CANCELLED: AtomicI32 = AtomicI32::new(0);
/// Whether the owner of the process handles a cancel itself ([`install_graceful`]).
static GRACEFUL: AtomicBool = AtomicBool::new(false);
static INSTALL: Once = Once::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    undo: BTreeMap::new(),
    groups: BTreeMap::new(),
});

type UndoFn = Box<dyn FnOnce() + Send>;

/// What an emergency stop must undo and kill.
pub struct Registry {
    undo: BTreeMap<u64, UndoFn>,
    groups: BTreeMap<u64, i32>,
}

impl Registry {
    /// Register `undo` to run if the process must stop at once; the returned [`OnStop`]
    /// runs it when dropped instead (exactly one of the two happens).
    pub fn on_stop(&mut self, undo: impl FnOnce() + Send + 'static) -> OnStop {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        self.undo.insert(id, Box::new(undo));
        OnStop { id, armed: true }
    }
}

/// An undo action registered with [`Registry::on_stop`]: runs when dropped (or by an
/// emergency stop, whichever comes first; never twice).
#[must_use = "dropping it runs the undo action at once"]
pub struct OnStop {
    id: u64,
    armed: bool,
}

impl OnStop {
    /// Forget the action without running it (the change it undoes is gone already).
    pub fn disarm(mut self) {
        self.armed = false;
        lock().undo.remove(&self.id);
    }
}

impl Drop for OnStop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let f = lock().undo.remove(&self.id);
        if let Some(f) = f {
            f();
        }
    }
}

impl std::fmt::Debug for OnStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OnStop({})", self.id)
    }
}

/// A process group that an emergency stop kills; untracked when dropped.
#[derive(Debug)]
pub struct TrackedGroup {
    id: u64,
}

impl Drop for TrackedGroup {
    fn drop(&mut self) {
        lock().groups.remove(&self.id);
    }
}

/// Track process group `pgid` (a step, or a helper that writes into a checkout) until the
/// returned guard is dropped. Installs the emergency handler if nothing is installed yet.
pub fn track_group(pgid: i32) -> TrackedGroup {
    ensure_installed();
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    lock().groups.insert(id, pgid);
    TrackedGroup { id }
}

/// Run `f` with the registry locked: a change `f` makes and the undo action it registers
/// are atomic with respect to an emergency stop. Installs the emergency handler if nothing
/// is installed yet. `f` must not call back into this module, nor drop an [`OnStop`] (the
/// lock is not reentrant): register the action last, once nothing can fail.
pub fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    ensure_installed();
    f(&mut lock())
}

fn lock() -> MutexGuard<'static, Registry> {
    // An undo action that panicked must not disable every later one.
    REGISTRY.lock().unwrap_or_else(|p| p.into_inner())
}

/// The signal that cancelled the run, if one arrived (`SIGINT` = 2, `SIGTERM` = 15,
/// `SIGHUP` = 1).
pub fn cancelled() -> Option<i32> {
    match CANCELLED.load(Ordering::SeqCst) {
        0 => None,
        s => Some(s),
    }
}

/// Mark the run cancelled by `sig` as if the signal had arrived (tests, and the first
/// signal in graceful mode).
pub fn cancel(sig: i32) {
    let _ = CANCELLED.compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst);
}

/// The exit code of a process cancelled by `sig`: 128 + the signal number, as shells
/// report it (130 for SIGINT, 143 for SIGTERM).
pub fn exit_code(sig: i32) -> u8 {
    super::exit::Exit::Signal(sig).code()
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, or `signal N`.
pub fn name(sig: i32) -> String {
    match sig {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        libc::SIGKILL => "SIGKILL".into(),
        n => format!("signal {n}"),
    }
}

/// `ci`: handle SIGINT/SIGTERM/SIGHUP gracefully (see the module docs). Call before any
/// checkout is changed; a later call after [`ensure_installed`] still switches the mode.
pub fn install_graceful() {
    GRACEFUL.store(true, Ordering::SeqCst);
    ensure_installed();
}

/// Install the handler thread once (emergency mode unless [`install_graceful`] ran).
fn ensure_installed() {
    INSTALL.call_once(|| {
        let mut signals = match signal_hook::iterator::Signals::new(HANDLED) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("warning: cannot handle SIGINT/SIGTERM ({e}): a cancel may leave a checkout changed until the next run");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    on_signal(sig);
                }
            });
        if let Err(e) = spawned {
            eprintln!("warning: cannot start the signal thread ({e})");
        }
    });
}

fn on_signal(sig: i32) {
    let first = cancelled().is_none();
    cancel(sig);
    if first && GRACEFUL.load(Ordering::SeqCst) {
        eprintln!(
            "\n{}: stopping the running steps ({} now, SIGKILL after {} s), putting the checkouts back and writing the summary; send it again to stop at once",
            name(sig),
            name(sig),
            GRACE.as_secs()
        );
        return;
    }
    emergency(sig);
}

/// Stop at once: kill every tracked group, run every undo action, exit 128 + `sig`. Holds
/// the registry lock until the process is gone, so nothing new is changed or registered.
fn emergency(sig: i32) -> ! {
    let mut reg = lock();
    for pgid in reg.groups.values() {
        // SAFETY: kill(2) on a process group; no memory effects.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
    }
    // A killed process may still be finishing a write (uninterruptible I/O): wait until
    // each group is gone (or only zombies remain to be reaped) before undoing, bounded.
    let deadline = Instant::now() + Duration::from_secs(2);
    while reg.groups.values().any(|g| group_alive(*g)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let undo = std::mem::take(&mut reg.undo);
    for (_, f) in undo {
        f();
    }
    eprintln!(
        "{}: stopped at once; running steps were killed and the checkouts put back",
        name(sig)
    );
    // SAFETY: _exit ends the process without running destructors or atexit handlers that
    // could wait on locks other threads hold.
    unsafe { libc::_exit(i32::from(exit_code(sig))) }
}

/// Whether any process of group `pgid` still exists (a zombie counts until reaped).
pub fn group_alive(pgid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence.
    let r = unsafe { libc::kill(-pgid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn an_undo_action_runs_once_when_dropped_and_never_after_disarm() {
        let n = Arc::new(AtomicI32::new(0));
        let n2 = n.clone();
        drop(with_registry(|r| {
            r.on_stop(move || {
                n2.fetch_add(1, Ordering::SeqCst);
            })
        }));
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let n3 = n.clone();
        with_registry(|r| {
            r.on_stop(move || {
                n3.fetch_add(1, Ordering::SeqCst);
            })
        })
        .disarm();
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn exit_codes_are_128_plus_the_signal() {
        assert_eq!(exit_code(libc::SIGINT), 130);
        assert_eq!(exit_code(libc::SIGTERM), 143);
        assert_eq!(name(libc::SIGTERM), "SIGTERM");
    }
}
