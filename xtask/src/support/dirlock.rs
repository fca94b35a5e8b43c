//! Exclusive locks on directories (a run's checkouts): `flock(2)` through fs4 on the
//! directory itself, so no lock file is added to a checkout and the kernel drops the lock
//! when the holder dies (SIGKILL included) — a lock never needs a timeout or a cleanup.
//!
//! Several directories are always locked in one order (sorted canonical paths), so two
//! processes that each need several can never deadlock. A process that waits says who
//! holds the lock (its pid and command line, from `/proc/locks`), and stops waiting when
//! the run is cancelled.
//!
//! Limits: flock on a directory is local to one kernel; on NFS two machines do not see
//! each other's locks. A holder in another pid namespace (another container) is named
//! only as "another process".
//!
//! Owns only the open directory handles it returns; writes nothing.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::signals;

/// How often a waiting process tries again.
const RETRY: Duration = Duration::from_millis(100);

/// An exclusive lock on a directory, released when dropped (or when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Why a lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it and the caller would not wait (`--no-wait`).
    #[error("checkout {dir} is in use by {holder}: wait for it to finish, or run without --no-wait to wait for it")]
    Busy {
        /// The directory.
        dir: PathBuf,
        /// Who holds it (`pid N (command line)`, or `another process`).
        holder: String,
    },
    /// The run was cancelled while waiting.
    #[error("cancelled by {signal} while waiting for the lock on checkout {dir}")]
    Cancelled {
        /// The directory.
        dir: PathBuf,
        /// The signal's name.
        signal: String,
    },
    /// The directory cannot be opened or locked.
    #[error("lock checkout {dir}: {source}")]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Lock every directory of `dirs` (duplicates and order do not matter), in sorted
/// canonical order. With `wait`, a busy directory is waited for (the first wait prints
/// who holds it to stderr); without, a busy directory is [`LockError::Busy`] at once.
///
/// Errors: see [`LockError`]; locks already taken are released.
pub fn lock_all(dirs: &[PathBuf], wait: bool) -> Result<Vec<DirLock>, LockError> {
    let mut canon: Vec<PathBuf> = dirs
        .iter()
        .map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.clone()))
        .collect();
    canon.sort();
    canon.dedup();
    canon.into_iter().map(|d| lock_one(d, wait)).collect()
}

fn lock_one(dir: PathBuf, wait: bool) -> Result<DirLock, LockError> {
    let file = File::open(&dir).map_err(|source| LockError::Io {
        dir: dir.clone(),
        source,
    })?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match fs4::FileExt::try_lock(&file) {
            Ok(()) => break,
            Err(fs4::TryLockError::Error(source)) => return Err(LockError::Io { dir, source }),
            Err(fs4::TryLockError::WouldBlock) => {}
        }
        if let Some(sig) = signals::cancelled() {
            return Err(LockError::Cancelled {
                dir,
                signal: signals::name(sig),
            });
        }
        let holder = holder(&file);
        if !wait {
            return Err(LockError::Busy { dir, holder });
        }
        if !told {
            eprintln!(
                "waiting for checkout {}: in use by {holder} (another run builds in it; pass --no-wait to fail at once instead)",
                dir.display()
            );
            told = true;
        }
        std::thread::sleep(RETRY);
    }
    if told {
        eprintln!(
            "checkout {} is ours after {:.1} s of waiting",
            dir.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(DirLock { _file: file })
}

/// Who holds a flock on `file`: `pid N (command line)` from `/proc/locks`, or `another
/// process` when it cannot be seen.
fn holder(file: &File) -> String {
    let Ok(meta) = file.metadata() else {
        return "another process".into();
    };
    let id = format!(
        "{:02x}:{:02x}:{}",
        libc::major(meta.dev()),
        libc::minor(meta.dev()),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        // `1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF` (a waiter's line has `->`).
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == id)
            .then(|| f[4].parse::<u32>().ok())
            .flatten()
    });
    match pid {
        Some(pid) if pid != 0 => {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| {
                    let s: Vec<String> = b
                        .split(|c| *c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect();
                    s.join(" ").chars().take(200).collect::<String>()
                })
                .unwrap_or_default();
            if cmd.is_empty() {
                format!("pid {pid}")
            } else {
                format!("pid {pid} (`{cmd}`)")
            }
        }
        _ => "another process".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_busy_and_names_the_holder_then_free_after_drop() {
        let t = tempfile::tempdir().unwrap();
        let dirs = vec![t.path().to_path_buf(), t.path().join(".")];
        let held = lock_all(&dirs, false).unwrap();
        assert_eq!(held.len(), 1, "the same dir twice is locked once");
        match lock_all(&dirs, false) {
            Err(LockError::Busy { holder, .. }) => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                );
            }
            other => panic!("expected busy, got {other:?}"),
        }
        drop(held);
        assert_eq!(lock_all(&dirs, false).unwrap().len(), 1);
    }
}
