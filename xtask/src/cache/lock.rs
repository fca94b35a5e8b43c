//! Entry leases: one lock file per entry, `locks/<stage>/<key>.lock`, locked with
//! `flock(2)` through fs4.
//!
//! Why flock: the kernel drops the lock when the holder's file descriptor closes, which
//! includes the holder being killed, so a crashed job never leaves a lock behind and no
//! lock ever needs a timeout. Every attempt here is non-blocking (`try_lock`): a job that
//! cannot get a lease at once takes another path (copy, another entry, or a miss), so two
//! jobs can never wait on each other and the cache cannot deadlock.
//!
//! Lock files live outside the entry directories so that they outlive the entries they
//! guard, and they are never deleted while the cache is in use (deleting a lock file
//! that another process has open but not yet locked would let two holders lock two
//! different inodes). `cache clear` removes them.
//!
//! Modes: a *shared* lease lets a job copy an entry out while other jobs do the same; an
//! *exclusive* lease lets one job move the entry's data out, replace or evict it.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Flags of every lock file open: never through a symlink (it would lock, or create, a
/// file outside the root), never blocking (a FIFO in a lock file's place would block a
/// read-only open forever).
const FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// Lock mode of a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Many holders may read (copy) the entry.
    Shared,
    /// One holder may move, replace or delete the entry.
    Exclusive,
}

/// A held lease; the lock is released when this is dropped (or the process dies).
#[derive(Debug)]
pub struct EntryLock {
    file: File,
}

impl EntryLock {
    /// Try to take the lock at `path` in `mode` without waiting.
    ///
    /// Returns `Ok(None)` when another holder has it in a conflicting mode. With
    /// `create = false` a missing lock file is `Ok(None)` too (read-only caches never
    /// create files), and so is anything but a regular file there. With `create`,
    /// something other than a regular file in its place (a symlink, a FIFO, a directory:
    /// never a lock anyone holds, as we only create regular files) is removed first, so
    /// it cannot wedge its key. Errors: the lock file cannot be created or opened.
    pub fn try_take(path: &Path, mode: Mode, create: bool) -> io::Result<Option<EntryLock>> {
        let file = if create {
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            if fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_file()) {
                crate::cache::untrusted::remove_any(path)?;
            }
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(FLAGS)
                .open(path)?
        } else {
            match OpenOptions::new().read(true).custom_flags(FLAGS).open(path) {
                Ok(f) if f.metadata()?.file_type().is_file() => f,
                Ok(_) => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
                Err(e) => return Err(e),
            }
        };
        let res = match mode {
            Mode::Shared => fs4::FileExt::try_lock_shared(&file),
            Mode::Exclusive => fs4::FileExt::try_lock(&file),
        };
        match res {
            Ok(()) => Ok(Some(EntryLock { file })),
            Err(fs4::TryLockError::WouldBlock) => Ok(None),
            Err(fs4::TryLockError::Error(e)) => Err(e),
        }
    }

    /// Whether the lock at `path` is held by someone in a mode that excludes `mode`
    /// (probes by taking and dropping it). A missing lock file is never held.
    pub fn is_held(path: &Path, mode: Mode) -> bool {
        match EntryLock::try_take(path, mode, false) {
            Ok(Some(_)) => false,
            Ok(None) => path.exists(),
            Err(_) => false,
        }
    }
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        let _ = fs4::FileExt::unlock(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_excludes_and_releases() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("locks/target/k.lock");
        let a = EntryLock::try_take(&p, Mode::Exclusive, true)
            .unwrap()
            .unwrap();
        // flock locks belong to the open file description, so a second open in the same
        // process conflicts just as another process would.
        assert!(EntryLock::try_take(&p, Mode::Exclusive, true)
            .unwrap()
            .is_none());
        assert!(EntryLock::try_take(&p, Mode::Shared, true)
            .unwrap()
            .is_none());
        drop(a);
        let s1 = EntryLock::try_take(&p, Mode::Shared, true)
            .unwrap()
            .unwrap();
        let s2 = EntryLock::try_take(&p, Mode::Shared, false)
            .unwrap()
            .unwrap();
        assert!(EntryLock::try_take(&p, Mode::Exclusive, true)
            .unwrap()
            .is_none());
        drop((s1, s2));
        assert!(
            EntryLock::try_take(&t.path().join("none.lock"), Mode::Shared, false)
                .unwrap()
                .is_none()
        );
        assert!(!t.path().join("none.lock").exists());
    }
}
