//! Moving trees in and out of the cache: the O(1) `rename(2)` when source and destination
//! share a filesystem, else a parallel copy that keeps modification times
//! (`support::fs::par_copy`, re-exported here).
//!
//! Hardlinks are deliberately not used: cargo rewrites some target-dir files in place
//! (fingerprint files are truncated and rewritten, `.d` dep-info files and build-script
//! `output` files too), and a hardlinked file written in place would silently change the
//! cache entry it shares an inode with. Copies never alias.
//!
//! Owns no policy: the cache decides which strategy to use.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use crate::support::fs::par_copy;
use crate::support::fs::CopyStats;

/// How a tree got into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// One `rename(2)`: same filesystem, entry leased exclusively.
    Moved,
    /// A parallel copy: the entry was leased by another job, or it lies on another
    /// filesystem, or the destination merges into an existing tree.
    Copied,
}

impl Strategy {
    /// `moved` or `copied`.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Moved => "moved",
            Strategy::Copied => "copied",
        }
    }
}

/// Device of the nearest existing ancestor of `p` (`p` itself may not exist yet).
pub fn device_of(p: &Path) -> Option<u64> {
    let mut cur = Some(p);
    while let Some(c) = cur {
        if let Ok(m) = fs::metadata(c) {
            return Some(m.dev());
        }
        cur = c.parent();
    }
    None
}

/// Whether a rename from `a` to `b` can work: both (or their nearest existing
/// ancestors) are on the same device.
pub fn same_filesystem(a: &Path, b: &Path) -> bool {
    let (Some(x), Some(y)) = (device_of(a), device_of(b)) else {
        return false;
    };
    x == y
}

/// Rename `from` to `to`, creating `to`'s parent.
///
/// Errors: the rename fails (`EXDEV` across filesystems, `ENOTEMPTY`/`EEXIST` when `to`
/// exists and is not an empty dir).
pub fn move_tree(from: &Path, to: &Path) -> io::Result<()> {
    if let Some(p) = to.parent() {
        fs::create_dir_all(p)?;
    }
    fs::rename(from, to)
}

/// Take every path under `root` that `skip` selects (relative paths; a selected
/// directory goes with everything below it) out of the tree: renamed into `trash` (a
/// directory on the same filesystem, created here) when given, which is O(1) per path
/// and leaves the deletion to the caller, else deleted in place. Returns the files and
/// bytes taken out.
///
/// Errors: the walk, a rename or a removal fails.
pub fn remove_selected(
    root: &Path,
    skip: &dyn Fn(&Path) -> bool,
    trash: Option<&Path>,
) -> Result<CopyStats> {
    let mut victims = Vec::new();
    let mut it = walkdir::WalkDir::new(root).min_depth(1).into_iter();
    while let Some(e) = it.next() {
        let e = e.with_context(|| format!("walk {}", root.display()))?;
        let rel = e.path().strip_prefix(root).expect("under root");
        if skip(rel) {
            if e.file_type().is_dir() {
                it.skip_current_dir();
            }
            victims.push((e.path().to_path_buf(), e.file_type().is_dir()));
        }
    }
    if let Some(t) = trash {
        fs::create_dir_all(t).with_context(|| format!("create {}", t.display()))?;
    }
    let mut stats = CopyStats::default();
    for (i, (p, is_dir)) in victims.into_iter().enumerate() {
        if is_dir {
            let s = crate::support::fs::tree_size(&p);
            stats.files += s.files;
            stats.bytes += s.bytes;
        } else {
            stats.files += 1;
            stats.bytes += fs::symlink_metadata(&p).map_or(0, |m| m.len());
        }
        match trash {
            Some(t) => fs::rename(&p, t.join(i.to_string()))
                .with_context(|| format!("move {} out of the tree", p.display()))?,
            None if is_dir => crate::support::fs::remove_tree(&p)
                .with_context(|| format!("remove {}", p.display()))?,
            None => fs::remove_file(&p).with_context(|| format!("remove {}", p.display()))?,
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn par_copy_merges_and_keeps_mtimes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("s");
        for i in 0..100 {
            let d = src.join(format!("d{}", i % 7));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join(format!("f{i}")), vec![b'x'; i]).unwrap();
        }
        fs::create_dir_all(src.join("incremental")).unwrap();
        fs::write(src.join("incremental/x"), b"x").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(7_000_000);
        fs::File::options()
            .write(true)
            .open(src.join("d1/f1"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let dst = t.path().join("d");
        fs::create_dir_all(dst.join("d0")).unwrap();
        fs::write(dst.join("d0/f0"), b"mine").unwrap();
        let s = par_copy(&src, &dst, true, &|p| p.starts_with("incremental")).unwrap();
        assert_eq!(s.files, 99);
        assert_eq!(s.bytes, (1..100).sum::<usize>() as u64);
        assert_eq!(fs::read(dst.join("d0/f0")).unwrap(), b"mine");
        assert_eq!(
            fs::metadata(dst.join("d1/f1")).unwrap().modified().unwrap(),
            old
        );
        assert!(!dst.join("incremental").exists());
        assert!(same_filesystem(&src, &dst.join("not/yet")));
        let r = remove_selected(&src, &|p| p.starts_with("d1") || p.ends_with("f2"), None).unwrap();
        assert!(!src.join("d1").exists() && !src.join("d2/f2").exists());
        assert!(r.files >= 15);
        let trash = t.path().join("trash");
        let r = remove_selected(&src, &|p| p.starts_with("d3"), Some(&trash)).unwrap();
        assert!(!src.join("d3").exists() && trash.join("0/f3").exists());
        assert_eq!(r.files, 14);
    }
}
