//! Leased temporary paths: every directory the cache writes before publishing it (an
//! entry being saved, a download, a tree being deleted, a copy being restored beside its
//! destination) has a lease, a lock file `<path>.lease` held with `flock(2)` by its
//! writer for as long as it works on it. A cleaner removes a temporary path only when it
//! can take that lease itself, that is when the writer is gone.
//!
//! Why a lease and not the writer's pid: jobs in other PID namespaces (containers that
//! share a cache volume) cannot see each other's pids, so "no `/proc/<pid>`" deleted the
//! live temp dirs of jobs in other containers. A flock is held by an open file, which the
//! kernel releases when its holder dies however it dies, and it works across PID
//! namespaces on one filesystem.
//!
//! Protocol (the usual lock-file-with-recheck): the writer creates and locks the lease,
//! then checks that the lease it locked is still the file at that name (a cleaner may
//! have unlinked it in between), and only then creates the path. A cleaner unlinks a
//! lease only while holding it. So a path whose lease is held belongs to a live writer,
//! and a path without a lease, or with a free one, belongs to none.
//!
//! Owns no policy: callers decide where temporary paths go and when to sweep.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::untrusted::remove_any;
use crate::support::publish;

/// Suffix of a lease file.
const LEASE: &str = ".lease";

/// A temporary path `<dir>/<what>.<pid>.<n>` (not created) and its held lease. Dropping
/// it removes whatever is still at the path, then the lease: a writer that returns early
/// leaves nothing behind, and one that dies leaves a path whose lease is free.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
    lease: PathBuf,
    _file: File,
}

impl Scratch {
    /// A fresh temporary path under `dir` (created if missing), leased by this process.
    ///
    /// Errors: `dir` or the lease cannot be created or locked.
    pub fn create(dir: &Path, what: &str) -> io::Result<Scratch> {
        fs::create_dir_all(dir)?;
        loop {
            let path = publish::temp_path(dir, what);
            let lease = lease_of(&path);
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(&lease)?;
            match fs4::FileExt::try_lock(&file) {
                Ok(()) => {}
                // A cleaner holds it for the moment: take another name.
                Err(fs4::TryLockError::WouldBlock) => continue,
                Err(fs4::TryLockError::Error(e)) => return Err(e),
            }
            // The recheck: a cleaner may have unlinked this lease before we locked it.
            let ours = file.metadata()?;
            let linked = fs::symlink_metadata(&lease)
                .is_ok_and(|m| m.ino() == ours.ino() && m.dev() == ours.dev());
            if linked {
                return Ok(Scratch {
                    path,
                    lease,
                    _file: file,
                });
            }
        }
    }

    /// The temporary path (not created by [`Scratch::create`]).
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = remove_any(&self.path);
        // Unlinked while still held (the file is closed after this): the protocol.
        let _ = fs::remove_file(&self.lease);
    }
}

fn lease_of(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(LEASE);
    PathBuf::from(s)
}

/// Whether the lease at `lease` is free (its writer is gone): taken and dropped here.
/// A missing lease is free; an unopenable one (a directory, a FIFO) is not a lease we
/// wrote, so it is free too.
fn lease_is_free(lease: &Path) -> Option<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(lease)
        .ok()?;
    if !f.metadata().is_ok_and(|m| m.file_type().is_file()) {
        return None;
    }
    fs4::FileExt::try_lock(&f).ok().map(|()| f)
}

/// Remove every temporary path under `dir` whose name starts with `prefix` and whose
/// writer is gone (its lease is free or missing), with the free leases. Returns how many
/// paths were removed. Nothing is followed: a symlink there is removed as a link.
pub fn sweep(dir: &Path, prefix: &str) -> usize {
    let Ok(rd) = fs::read_dir(dir) else {
        return 0;
    };
    let names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect();
    let mut removed = 0;
    for name in &names {
        let path = dir.join(name);
        if let Some(stem) = name.strip_suffix(LEASE) {
            // A lease whose path is gone: the writer finished or died after removing it.
            if !names.iter().any(|n| n == stem) {
                if let Some(_held) = lease_is_free(&path) {
                    let _ = fs::remove_file(&path);
                } else if fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
                    let _ = remove_any(&path);
                }
            }
            continue;
        }
        let lease = lease_of(&path);
        let exists = fs::symlink_metadata(&lease).is_ok();
        let held = if exists { lease_is_free(&lease) } else { None };
        let dead = !exists || held.is_some() || !is_lease_file(&lease);
        if dead && remove_any(&path).is_ok() {
            removed += 1;
            if exists {
                let _ = remove_any(&lease);
            }
        }
        drop(held);
    }
    removed
}

fn is_lease_file(p: &Path) -> bool {
    fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lease_protects_its_path_and_a_free_one_does_not() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        let live = Scratch::create(&tmp, "target-k").unwrap();
        fs::create_dir_all(live.path().join("data")).unwrap();
        // A dead writer: a dir whose lease file exists but is not held (as the kernel
        // leaves it when the holder dies), and a dir of an old writer with no lease.
        let dead = tmp.join("target-k.999999.1");
        fs::create_dir_all(&dead).unwrap();
        fs::write(lease_of(&dead), b"").unwrap();
        let legacy = tmp.join("trash-x.1.2");
        fs::create_dir_all(&legacy).unwrap();
        let orphan_lease = tmp.join("gone.1.3.lease");
        fs::write(&orphan_lease, b"").unwrap();
        assert_eq!(sweep(&tmp, ""), 2);
        assert!(live.path().is_dir(), "a live writer's dir was removed");
        assert!(!dead.exists() && !lease_of(&dead).exists() && !legacy.exists());
        assert!(!orphan_lease.exists());
        // Its lease is held by an open file description, as it would be in another PID
        // namespace: the pid in the name plays no part.
        assert_eq!(sweep(&tmp, ""), 0);
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists() && !lease_of(&p).exists());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
    }

    #[test]
    fn sweep_removes_links_without_following_them() {
        let t = tempfile::tempdir().unwrap();
        let tmp = t.path().join("tmp");
        fs::create_dir_all(&tmp).unwrap();
        let victim = t.path().join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("f"), b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, tmp.join("x.1.1")).unwrap();
        assert_eq!(sweep(&tmp, ""), 1);
        assert_eq!(fs::read(victim.join("f")).unwrap(), b"keep");
        // Only names with the prefix are looked at.
        fs::create_dir_all(tmp.join("other.1.1")).unwrap();
        assert_eq!(sweep(&tmp, ".target."), 0);
        assert!(tmp.join("other.1.1").exists());
    }
}
