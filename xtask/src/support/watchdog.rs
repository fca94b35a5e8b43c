//! The watchdog: a small process started from this same binary (`xtask
//! __bllvm-ci-watchdog`) that outlives its parent by just enough to stop the step process
//! groups the parent left running when it died without a chance to clean up (SIGKILL, the
//! OOM killer, a crash).
//!
//! Why: `PR_SET_PDEATHSIG` (set on each step's leader by `support::exec`) kills only the
//! leader — e.g. `cargo` — when we die; its children (rustc, test binaries, a shell's
//! background jobs) are not in the kernel's reach of that setting, and they would run on,
//! orphaned, still writing `target/` and holding cargo's locks. The watchdog holds the
//! read end of a pipe whose write end only the parent has (close-on-exec, so no step
//! inherits it): the parent writes `+PGID` when a step group starts and `-PGID` when it is
//! gone; end of file means the parent is gone, and the watchdog sends SIGTERM to every
//! group still listed, then SIGKILL after [`GRACE`].
//!
//! Limits: a process that left its step's group (`setsid`, a daemon) is out of reach, as
//! it is for timeouts; a SIGKILL of the watchdog too (e.g. `kill -9` of every process of
//! a container, which takes the steps with it anyway) leaves only the leaders' death
//! signal. The watchdog runs only in the real binary ([`serve_if_asked`] enables it);
//! unit tests of the library run steps without one.
//!
//! Owns no files; it signals only the groups its parent listed.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use super::signals::{group_alive, GRACE};
use crate::support::exit::Exit;

/// The hidden first argument that makes this binary a watchdog.
pub const ARG: &str = "__bllvm-ci-watchdog";

static ENABLED: AtomicBool = AtomicBool::new(false);
/// The pipe to the watchdog: `None` before it is started; `Some(None)` when starting it
/// failed (then it is not tried again).
static PIPE: Mutex<Option<Option<ChildStdin>>> = Mutex::new(None);

/// Called first by the binary's `main`: serve as the watchdog when this process was
/// started as one (returns its exit code), else allow steps to start one (returns `None`).
pub fn serve_if_asked() -> Option<ExitCode> {
    if std::env::args_os().nth(1).is_some_and(|a| a == ARG) {
        return Some(serve());
    }
    ENABLED.store(true, Ordering::SeqCst);
    None
}

/// Tell the watchdog (started on first use) that step group `pgid` is running.
pub fn add(pgid: i32) {
    send(&format!("+{pgid}\n"));
}

/// Tell the watchdog that step group `pgid` is gone.
pub fn remove(pgid: i32) {
    send(&format!("-{pgid}\n"));
}

fn send(line: &str) {
    if !ENABLED.load(Ordering::SeqCst) {
        return;
    }
    let mut pipe = PIPE.lock().unwrap_or_else(|p| p.into_inner());
    let stdin = pipe.get_or_insert_with(start);
    if let Some(w) = stdin {
        if w.write_all(line.as_bytes())
            .and_then(|()| w.flush())
            .is_err()
        {
            // The watchdog is gone; the leaders' death signal is all that is left.
            *stdin = None;
        }
    }
}

fn start() -> Option<ChildStdin> {
    let exe = if std::path::Path::new("/proc/self/exe").exists() {
        std::path::PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().ok()?
    };
    // Its own process group: a terminal's Ctrl-C or a kill of our group must not reach
    // it. No stdout (a reader of ours must not wait for it); stderr for its one message.
    // argv[0] as ps shows it: the binary's name, not `/proc/self/exe`.
    let argv0 = std::env::current_exe().map_or_else(|_| "xtask".into(), |p| p.into_os_string());
    let spawned = Command::new(exe)
        .arg0(argv0)
        .arg(ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn();
    match spawned {
        Ok(mut c) => c.stdin.take(),
        Err(e) => {
            eprintln!("warning: cannot start the step watchdog ({e}): if this process is killed with SIGKILL, child processes of its steps may live on");
            None
        }
    }
}

/// The watchdog's life: read `+PGID`/`-PGID` lines until end of file, then stop what is
/// still listed.
fn serve() -> ExitCode {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: setting a signal's disposition to "ignore" has no memory effects.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let (op, n) = line.split_at(line.len().min(1));
        match (op, n.parse::<i32>()) {
            ("+", Ok(g)) if g > 1 => {
                groups.insert(g);
            }
            ("-", Ok(g)) => {
                groups.remove(&g);
            }
            _ => {}
        }
    }
    let alive: Vec<i32> = groups.into_iter().filter(|g| group_alive(*g)).collect();
    if alive.is_empty() {
        return Exit::Ok.into();
    }
    eprintln!(
        "bllvm-ci watchdog: ci ended while {} step process group(s) ran ({alive:?}): SIGTERM now, SIGKILL after {} s",
        alive.len(),
        GRACE.as_secs()
    );
    stop_groups(&alive);
    Exit::Ok.into()
}

/// SIGTERM to each group, then SIGKILL to those still there after [`GRACE`].
fn stop_groups(groups: &[i32]) {
    for g in groups {
        // SAFETY: kill(2) on a process group; no memory effects.
        unsafe { libc::kill(-g, libc::SIGTERM) };
    }
    let deadline = Instant::now() + GRACE;
    while groups.iter().any(|g| group_alive(*g)) && Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for g in groups {
        // SAFETY: as above.
        unsafe { libc::kill(-g, libc::SIGKILL) };
    }
}
