//! The local cache: entries keyed by explicit inputs, restored before a repo's steps and
//! saved after them.
//!
//! Layout under the cache root (`--cache-dir`, `BLLVM_CI_CACHE_DIR`, or the per-user cache
//! dir):
//!
//! ```text
//! entries/<stage>/<key>/entry.json   what went into the key, size, creation time
//! entries/<stage>/<key>/data/        the cached tree
//! tmp/<stage>-<key>.<pid>.<n>/       an entry being written (never read)
//! ```
//!
//! Invariant: an entry is visible only once complete. It is written under `tmp/` and
//! published with one `rename(2)` into `entries/`; a crashed writer leaves only a `tmp/`
//! directory, which the next [`Cache::open`] removes once its writer process is gone.
//! Entries are immutable once published: a second save of the same key is a no-op (the
//! first writer wins, as with actions/cache).
//!
//! This module never decides *whether* to save (trust, events: that is the caller's) and
//! never runs cargo.

pub mod cargo_home;
pub mod key;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use key::{CacheKey, Stage};

use crate::fsutil::{self, CopyStats};

/// Name of the environment variable that sets the cache root.
pub const CACHE_DIR_ENV: &str = "BLLVM_CI_CACHE_DIR";

/// What `entries/<stage>/<key>/entry.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Format version of this file.
    pub schema_version: u32,
    /// Stage name (`registry`, `git`, `target`).
    pub stage: String,
    /// The cache key.
    pub key: String,
    /// Every input that went into the key, in the order hashed.
    pub inputs: Vec<(String, String)>,
    /// Seconds since the Unix epoch when the entry was published.
    pub created_unix: u64,
    /// Regular files in `data/`.
    pub files: u64,
    /// Bytes in `data/`.
    pub bytes: u64,
}

/// The outcome of a restore.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Restore {
    /// The exact key was found and copied into place.
    Hit {
        /// Regular files copied.
        files: u64,
        /// Bytes copied.
        bytes: u64,
        /// Wall-clock seconds the restore took.
        secs: f64,
    },
    /// No entry for the key.
    Miss,
    /// The destination already held a tree (e.g. a laptop's own `target/`), so it was kept
    /// and nothing was copied.
    Kept,
}

/// The outcome of a save.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Save {
    /// A new entry was published.
    Saved {
        /// Files written.
        files: u64,
        /// Bytes written.
        bytes: u64,
        /// Wall-clock seconds the save took.
        secs: f64,
    },
    /// An entry with this key already exists (entries are immutable).
    Exists,
    /// Saving was not allowed or not wanted (e.g. `--no-save`); nothing written.
    Skipped,
    /// There was nothing to save (the source tree does not exist).
    Empty,
}

/// A cache root on the local filesystem.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
}

static TMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// The cache root to use: `flag` (from `--cache-dir`), else `$BLLVM_CI_CACHE_DIR`, else the
/// manifest's `[cache] dir`, else `<per-user cache dir>/bllvm-ci`.
pub fn resolve_root(flag: Option<&Path>, manifest_dir: Option<&Path>) -> PathBuf {
    if let Some(f) = flag {
        return f.to_path_buf();
    }
    if let Some(v) = std::env::var_os(CACHE_DIR_ENV).filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    if let Some(d) = manifest_dir {
        return d.to_path_buf();
    }
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("bllvm-ci")
}

impl Cache {
    /// Open (creating if needed) the cache at `root`, and remove `tmp/` leftovers of
    /// writers that no longer run.
    pub fn open(root: &Path) -> Result<Cache> {
        fs::create_dir_all(root.join("entries"))
            .and_then(|()| fs::create_dir_all(root.join("tmp")))
            .with_context(|| format!("create cache root {}", root.display()))?;
        let cache = Cache {
            root: root.to_path_buf(),
        };
        cache.clean_stale_tmp();
        Ok(cache)
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Directory of the entry for `key` (it may not exist).
    pub fn entry_dir(&self, key: &CacheKey) -> PathBuf {
        self.root
            .join("entries")
            .join(key.stage.as_str())
            .join(&key.key)
    }

    /// Whether a complete entry for `key` exists.
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entry_dir(key).join("entry.json").is_file()
    }

    /// Read an entry's `entry.json`.
    pub fn info(&self, key: &CacheKey) -> Result<EntryInfo> {
        let p = self.entry_dir(key).join("entry.json");
        let text = fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
    }

    /// Copy the entry for `key` into `dst`. With `merge`, files already in `dst` are kept
    /// (used for `$CARGO_HOME`, which a laptop already fills); without it, a non-empty
    /// `dst` is kept as it is and reported as [`Restore::Kept`].
    ///
    /// Errors: I/O errors while copying. Callers turn them into a warning: a build never
    /// depends on the cache.
    pub fn restore(&self, key: &CacheKey, dst: &Path, merge: bool) -> Result<Restore> {
        if !self.contains(key) {
            return Ok(Restore::Miss);
        }
        if !merge && fsutil::non_empty_dir(dst) {
            return Ok(Restore::Kept);
        }
        let start = Instant::now();
        let stats = fsutil::copy_tree(&self.entry_dir(key).join("data"), dst, merge, &|_| false)
            .with_context(|| format!("restore {} entry {}", key.stage, key.key))?;
        Ok(Restore::Hit {
            files: stats.files,
            bytes: stats.bytes,
            secs: start.elapsed().as_secs_f64(),
        })
    }

    /// Save the tree at `src` as the entry for `key`, leaving out what `skip` prunes
    /// (paths relative to `src`). Writes under `tmp/` and publishes with one rename; if
    /// another writer published the key first, ours is discarded and the result is
    /// [`Save::Exists`].
    pub fn save(&self, key: &CacheKey, src: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Save> {
        if self.contains(key) {
            return Ok(Save::Exists);
        }
        if !src.is_dir() {
            return Ok(Save::Empty);
        }
        let start = Instant::now();
        let tmp = self.root.join("tmp").join(format!(
            "{}-{}.{}.{}",
            key.stage,
            key.key,
            std::process::id(),
            TMP_SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| -> Result<CopyStats> {
            let stats = fsutil::copy_tree(src, &tmp.join("data"), false, skip)?;
            let info = EntryInfo {
                schema_version: 1,
                stage: key.stage.as_str().to_owned(),
                key: key.key.clone(),
                inputs: key.inputs.clone(),
                created_unix: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
                files: stats.files,
                bytes: stats.bytes,
            };
            fs::write(tmp.join("entry.json"), serde_json::to_vec_pretty(&info)?)?;
            Ok(stats)
        })();
        let stats = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = fsutil::remove_tree(&tmp);
                return Err(e.context(format!("save {} entry {}", key.stage, key.key)));
            }
        };
        let dst = self.entry_dir(key);
        fs::create_dir_all(dst.parent().expect("entry dirs have a parent"))?;
        match fs::rename(&tmp, &dst) {
            Ok(()) => Ok(Save::Saved {
                files: stats.files,
                bytes: stats.bytes,
                secs: start.elapsed().as_secs_f64(),
            }),
            Err(_) if self.contains(key) => {
                // Another writer won the race; entries are immutable, so drop ours.
                let _ = fsutil::remove_tree(&tmp);
                Ok(Save::Exists)
            }
            Err(e) => {
                let _ = fsutil::remove_tree(&tmp);
                Err(anyhow::Error::new(e).context(format!("publish cache entry {}", dst.display())))
            }
        }
    }

    /// Every published entry, as `(stage, info)`; unreadable entries are skipped.
    pub fn entries(&self) -> Vec<EntryInfo> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            let Ok(rd) = fs::read_dir(self.root.join("entries").join(stage.as_str())) else {
                continue;
            };
            for e in rd.flatten() {
                let p = e.path().join("entry.json");
                if let Some(info) = fs::read_to_string(&p)
                    .ok()
                    .and_then(|t| serde_json::from_str::<EntryInfo>(&t).ok())
                {
                    out.push(info);
                }
            }
        }
        out.sort_by(|a, b| (&a.stage, &a.key).cmp(&(&b.stage, &b.key)));
        out
    }

    /// Remove `tmp/` directories whose writer (the pid in their name) is no longer alive.
    fn clean_stale_tmp(&self) {
        let Ok(rd) = fs::read_dir(self.root.join("tmp")) else {
            return;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.rsplit('.').nth(1).and_then(|p| p.parse::<u32>().ok());
            let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
            if !alive {
                let _ = fsutil::remove_tree(&e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> CacheKey {
        CacheKey {
            stage: Stage::Target,
            key: k.into(),
            inputs: vec![("x".into(), "y".into())],
        }
    }

    #[test]
    fn save_then_restore_and_first_writer_wins() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::open(&t.path().join("c")).unwrap();
        let src = t.path().join("target");
        fs::create_dir_all(src.join("debug/incremental")).unwrap();
        fs::write(src.join("debug/libx.rlib"), b"rlib").unwrap();
        fs::write(src.join("debug/incremental/junk"), b"junk").unwrap();
        let k = key("a-1");
        assert_eq!(
            cache.restore(&k, &t.path().join("r"), false).unwrap(),
            Restore::Miss
        );
        let skip = |p: &Path| p.ends_with("incremental");
        assert!(matches!(
            cache.save(&k, &src, &skip).unwrap(),
            Save::Saved { files: 1, .. }
        ));
        assert_eq!(cache.save(&k, &src, &skip).unwrap(), Save::Exists);
        let dst = t.path().join("r");
        assert!(matches!(
            cache.restore(&k, &dst, false).unwrap(),
            Restore::Hit { files: 1, .. }
        ));
        assert_eq!(fs::read(dst.join("debug/libx.rlib")).unwrap(), b"rlib");
        assert_eq!(cache.restore(&k, &dst, false).unwrap(), Restore::Kept);
        assert_eq!(cache.info(&k).unwrap().inputs, k.inputs);
    }

    #[test]
    fn stale_tmp_is_removed() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("c");
        // pid 0 is never a live writer of ours.
        fs::create_dir_all(root.join("tmp/target-a.0.0/data")).unwrap();
        let live = root.join(format!("tmp/target-b.{}.0", std::process::id()));
        fs::create_dir_all(&live).unwrap();
        Cache::open(&root).unwrap();
        assert!(!root.join("tmp/target-a.0.0").exists());
        assert!(live.exists());
    }
}
