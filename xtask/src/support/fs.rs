//! Small filesystem helpers shared by the cache and the sample chain: the one tree copy
//! that keeps mtimes ([`par_copy`]), tree sizes, sha256 of files, path normalisation,
//! human sizes.
//!
//! Owns no policy: callers decide what to copy and where.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

/// Totals of a copy: files copied and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    /// Regular files copied.
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
}

/// Copy the tree at `src` into `dst` on up to 8 threads, keeping file modification times
/// (cargo's freshness checks compare them) and recreating symlinks. `skip` prunes paths
/// relative to `src` (and everything below them). With `only_missing`, files already in
/// `dst` are kept (a merge into `$CARGO_HOME`).
///
/// Files are copied with `std::fs::copy`, which uses `copy_file_range(2)` on Linux, so
/// filesystems that support reflinks (btrfs, xfs) share extents instead of copying bytes.
///
/// Errors: any I/O error, with the path it happened on.
pub fn par_copy(
    src: &Path,
    dst: &Path,
    only_missing: bool,
    skip: &dyn Fn(&Path) -> bool,
) -> Result<CopyStats> {
    fs::create_dir_all(dst).with_context(|| format!("create {}", dst.display()))?;
    let mut files: Vec<(PathBuf, PathBuf)> = Vec::new();
    let walker = walkdir::WalkDir::new(src)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(src).map_or(true, |rel| !skip(rel)));
    for entry in walker {
        let entry = entry.with_context(|| format!("walk {}", src.display()))?;
        let rel = entry
            .path()
            .strip_prefix(src)
            .expect("walkdir yields paths under its root");
        let to = dst.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            fs::create_dir_all(&to).with_context(|| format!("create {}", to.display()))?;
        } else if ft.is_symlink() {
            if only_missing && fs::symlink_metadata(&to).is_ok() {
                continue;
            }
            let target = fs::read_link(entry.path())?;
            let _ = fs::remove_file(&to);
            std::os::unix::fs::symlink(&target, &to)
                .with_context(|| format!("symlink {}", to.display()))?;
        } else if ft.is_file() {
            if only_missing && fs::symlink_metadata(&to).is_ok() {
                continue;
            }
            files.push((entry.path().to_path_buf(), to));
        }
    }
    let results = crate::support::par::par_map(&files, |(from, to)| -> Result<u64> {
        let bytes = fs::copy(from, to)
            .with_context(|| format!("copy {} to {}", from.display(), to.display()))?;
        let mtime = fs::metadata(from)?.modified()?;
        fs::File::options()
            .write(true)
            .open(to)?
            .set_modified(mtime)
            .with_context(|| format!("set mtime of {}", to.display()))?;
        Ok(bytes)
    });
    let mut stats = CopyStats::default();
    for r in results {
        stats.bytes += r?;
        stats.files += 1;
    }
    Ok(stats)
}

/// Total bytes and regular-file count under `dir` (0 when it does not exist). Symlinks are
/// not followed.
pub fn tree_size(dir: &Path) -> CopyStats {
    let mut s = CopyStats::default();
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file() {
            s.files += 1;
            s.bytes += e.metadata().map_or(0, |m| m.len());
        }
    }
    s
}

/// Whether `dir` exists and holds at least one entry.
pub fn non_empty_dir(dir: &Path) -> bool {
    fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some())
}

/// Hex sha256 of a file's bytes.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// Hex sha256 of a byte string.
pub fn sha256_hex(data: impl AsRef<[u8]>) -> String {
    hex::encode(Sha256::digest(data.as_ref()))
}

/// Remove a tree if it exists; a missing tree is not an error.
pub fn remove_tree(dir: &Path) -> io::Result<()> {
    match fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// `path` without `.` components (`a/./b` → `a/b`, `./x` → `x`), lexically: `..` is kept,
/// so no symlink is resolved. Paths built by joining a relative `root = "."` print cleanly.
pub fn normalize(path: &Path) -> std::path::PathBuf {
    let p: std::path::PathBuf = path
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if p.as_os_str().is_empty() {
        ".".into()
    } else {
        p
    }
}

/// Human size: `1.2 GiB`, `340 KiB`, `12 B`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_keeps_mtime_and_skips() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(src.join("keep")).unwrap();
        fs::create_dir_all(src.join("incremental")).unwrap();
        fs::write(src.join("keep/a"), b"hello").unwrap();
        fs::write(src.join("incremental/b"), b"x").unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(src.join("keep/a"))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let dst = t.path().join("dst");
        let s = par_copy(&src, &dst, false, &|p| p.starts_with("incremental")).unwrap();
        assert_eq!(s, CopyStats { files: 1, bytes: 5 });
        assert_eq!(
            fs::metadata(dst.join("keep/a"))
                .unwrap()
                .modified()
                .unwrap(),
            old
        );
        assert!(!dst.join("incremental").exists());
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
