//! Publish by rename: whatever a reader must see whole (a cache entry, a result record, a
//! usage record) is written under a temporary name and made visible with one `rename(2)`,
//! so a reader sees nothing, the old version or the new one, never a torn one.
//!
//! Two shapes: [`write_file`] for a small file (its temporary file sits beside the
//! destination), and [`temp_path`] + [`publish_dir`] for a directory that is filled first
//! (its temporary directory is wherever the caller's store keeps them, on the same
//! filesystem, e.g. the cache root's `tmp/`).
//!
//! Owns no policy: callers decide what is published where and who may clean leftovers.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh temporary path `<dir>/<what>.<pid>.<n>` (not created). The pid in the name lets
/// a cleaner tell the leftovers of a writer that died (the cache's `Cache::open` removes
/// those under its `tmp/`); `n` makes names unique within the process.
pub fn temp_path(dir: &Path, what: &str) -> PathBuf {
    dir.join(format!(
        "{what}.{}.{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Write `bytes` to `dst` through a temporary file beside it (`.<name>.<pid>.<n>.tmp`),
/// renamed into place. Creates `dst`'s parent directory.
///
/// Errors: I/O; the temporary file is removed and `dst` is unchanged.
pub fn write_file(dst: &Path, bytes: &[u8]) -> io::Result<()> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent)?;
    let name = dst
        .file_name()
        .map_or_else(|| "file".into(), |n| n.to_string_lossy().into_owned());
    let tmp = parent.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    let r = fs::write(&tmp, bytes).and_then(|()| fs::rename(&tmp, dst));
    if r.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    r
}

/// What [`publish_dir`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// The directory is now at the destination.
    Renamed,
    /// The destination already existed (another writer published first): ours was
    /// removed, theirs stands (first writer wins).
    Exists,
}

/// Publish the complete directory `tmp` as `dst` with one rename, creating `dst`'s parent.
/// `tmp` must be on `dst`'s filesystem (see [`temp_path`]). When `dst` exists (the kernel
/// refuses with `ENOTEMPTY`/`EEXIST`, or it is there after the failure), `tmp` is removed
/// and the answer is [`Published::Exists`].
///
/// Errors: any other I/O error; `tmp` is removed, nothing is published.
pub fn publish_dir(tmp: &Path, dst: &Path) -> io::Result<Published> {
    let parent = dst.parent().unwrap_or(Path::new("."));
    let r = fs::create_dir_all(parent).and_then(|()| fs::rename(tmp, dst));
    match r {
        Ok(()) => Ok(Published::Renamed),
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::ENOTEMPTY | libc::EEXIST))
                || fs::symlink_metadata(dst).is_ok() =>
        {
            let _ = crate::support::fs::remove_tree(tmp);
            Ok(Published::Exists)
        }
        Err(e) => {
            let _ = crate::support::fs::remove_tree(tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_replace_whole_and_dirs_publish_once() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("a/usage.json");
        write_file(&f, b"one").unwrap();
        write_file(&f, b"two").unwrap();
        assert_eq!(fs::read(&f).unwrap(), b"two");
        // No temporary file is left beside it.
        assert_eq!(fs::read_dir(t.path().join("a")).unwrap().count(), 1);

        let dst = t.path().join("entries/k");
        for (i, want) in [Published::Renamed, Published::Exists]
            .into_iter()
            .enumerate()
        {
            let tmp = temp_path(t.path(), "entry");
            fs::create_dir_all(&tmp).unwrap();
            fs::write(tmp.join("x"), i.to_string()).unwrap();
            assert_eq!(publish_dir(&tmp, &dst).unwrap(), want);
            assert!(!tmp.exists());
        }
        // The first writer's directory stands.
        assert_eq!(fs::read(dst.join("x")).unwrap(), b"0");
    }
}
