//! Leased temporary paths: every directory the cache writes before publishing it (an
//! entry being saved, a download, a tree being deleted, a copy being restored beside its
//! destination) has a lease, a lock file `<name>.lease` held with `flock(2)` by its
//! writer for as long as it works on it. A cleaner removes a temporary path only when it
//! can take that lease itself, that is when the writer is gone. Under a cache root the
//! paths are in `tmp/` and their leases in `locks/tmp/` ([`Scratch::in_root`], so `tmp/`
//! holds only what is being written); elsewhere a lease sits beside its path.
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

/// Where the leases of a cache root's `tmp/` are.
pub fn root_leases(root: &Path) -> PathBuf {
    root.join("locks").join("tmp")
}

impl Scratch {
    /// A fresh temporary path under `dir` (created if missing), its lease beside it.
    ///
    /// Errors: `dir` or the lease cannot be created or locked.
    pub fn create(dir: &Path, what: &str) -> io::Result<Scratch> {
        Scratch::create_in(dir, dir, what)
    }

    /// A fresh temporary path under the cache root `root`'s `tmp/`, its lease under
    /// `locks/tmp/`.
    ///
    /// Errors: as [`Scratch::create`].
    pub fn in_root(root: &Path, what: &str) -> io::Result<Scratch> {
        Scratch::create_in(&root.join("tmp"), &root_leases(root), what)
    }

    /// A fresh temporary path under `dir`, its lease under `leases`.
    fn create_in(dir: &Path, leases: &Path, what: &str) -> io::Result<Scratch> {
        fs::create_dir_all(dir)?;
        fs::create_dir_all(leases)?;
        loop {
            let path = publish::temp_path(dir, what);
            let lease = lease_of(leases, &path);
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

/// The lease of `path` under `leases`: `<leases>/<name of path>.lease`.
fn lease_of(leases: &Path, path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(LEASE);
    leases.join(name)
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

/// The names under `dir` that start with `prefix`.
fn names(dir: &Path, prefix: &str) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// [`sweep`] of a cache root's `tmp/` (leases under `locks/tmp/`).
pub fn sweep_root(root: &Path) -> usize {
    sweep_in(&root.join("tmp"), &root_leases(root), "")
}

/// Remove every temporary path under `dir` whose name starts with `prefix` and whose
/// writer is gone (its lease, beside it, is free or missing), with the free leases.
/// Returns how many paths were removed. Nothing is followed: a symlink there is removed
/// as a link.
pub fn sweep(dir: &Path, prefix: &str) -> usize {
    sweep_in(dir, dir, prefix)
}

fn sweep_in(dir: &Path, leases: &Path, prefix: &str) -> usize {
    let paths = names(dir, prefix);
    // Leases whose path is gone: the writer finished or died after removing it.
    for name in names(leases, prefix) {
        let Some(stem) = name.strip_suffix(LEASE) else {
            continue;
        };
        if paths.iter().any(|n| n == stem) {
            continue;
        }
        let lease = leases.join(&name);
        if let Some(_held) = lease_is_free(&lease) {
            let _ = fs::remove_file(&lease);
        } else if fs::symlink_metadata(&lease).is_ok_and(|m| !m.file_type().is_file()) {
            let _ = remove_any(&lease);
        }
    }
    let mut removed = 0;
    for name in paths
        .iter()
        .filter(|n| !n.ends_with(LEASE) || dir != leases)
    {
        let path = dir.join(name);
        let lease = lease_of(leases, &path);
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
        let leases = root_leases(t.path());
        let live = Scratch::in_root(t.path(), "target-k").unwrap();
        fs::create_dir_all(live.path().join("data")).unwrap();
        // A dead writer: a dir whose lease file exists but is not held (as the kernel
        // leaves it when the holder dies), and a dir of an old writer with no lease.
        let dead = tmp.join("target-k.999999.1");
        fs::create_dir_all(&dead).unwrap();
        fs::write(lease_of(&leases, &dead), b"").unwrap();
        let legacy = tmp.join("trash-x.1.2");
        fs::create_dir_all(&legacy).unwrap();
        let orphan_lease = leases.join("gone.1.3.lease");
        fs::write(&orphan_lease, b"").unwrap();
        // `tmp/` holds only what is being written.
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 3);
        assert_eq!(sweep_root(t.path()), 2);
        assert!(live.path().is_dir(), "a live writer's dir was removed");
        assert!(!dead.exists() && !lease_of(&leases, &dead).exists() && !legacy.exists());
        assert!(!orphan_lease.exists());
        // Its lease is held by an open file description, as it would be in another PID
        // namespace: the pid in the name plays no part.
        assert_eq!(sweep_root(t.path()), 0);
        let p = live.path().to_path_buf();
        drop(live);
        assert!(!p.exists() && !lease_of(&leases, &p).exists());
        assert_eq!(fs::read_dir(&tmp).unwrap().count(), 0);
        assert_eq!(fs::read_dir(&leases).unwrap().count(), 0);
        // Beside its path, as for a copy restore's sibling.
        let side = Scratch::create(&tmp, ".target.restore").unwrap();
        fs::create_dir_all(side.path()).unwrap();
        assert_eq!(sweep(&tmp, ".target.restore."), 0);
        let p = side.path().to_path_buf();
        std::mem::forget(side);
        // Forgotten: its lease file stays open in this process, so it is still held.
        assert_eq!(sweep(&tmp, ".target.restore."), 0);
        assert!(p.is_dir());
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
