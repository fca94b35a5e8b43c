//! Where complete cache entries are stored: one trait, [`Storage`], with one backend per
//! file (sccache's `trait Storage` with `disk.rs`, `s3.rs`, ...): [`LocalStorage`] here
//! (the cache root on this machine, the default: no network, no async runtime) and the
//! remote backend in `remote.rs` (S3-compatible object storage through OpenDAL).
//!
//! The unit of exchange is an *entry dir*: `entry.json`, `manifest.tsv` and `data/`, the
//! same layout as `entries/<stage>/<key>/` under a cache root (see `mod.rs`), so an entry
//! moves between backends without being rebuilt or rehashed.
//!
//! This module owns the contract only; the two-level logic (local in front of remote) is
//! `remote.rs`'s, the entry format `mod.rs`'s and `integrity.rs`'s.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::integrity::Manifest;
use super::{transfer, Cache, CacheKey, Save};
use crate::support::fs as fsutil;

/// One transfer of an entry: what moved and how long it took.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Transfer {
    /// Bytes that crossed the backend's boundary (for the remote: the compressed archive
    /// plus its manifest; for the local backend: the entry's data bytes).
    pub wire_bytes: u64,
    /// Bytes of the entry's files (uncompressed).
    pub data_bytes: u64,
    /// Files in the entry.
    pub files: u64,
    /// Wall-clock seconds of the transfer, checks included.
    pub secs: f64,
}

impl Transfer {
    /// Uncompressed entry bytes per second (0 when no time was measured).
    pub fn data_rate(&self) -> f64 {
        if self.secs > 0.0 {
            self.data_bytes as f64 / self.secs
        } else {
            0.0
        }
    }
}

/// The outcome of [`Storage::put`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Put {
    /// The entry was stored; it is now visible to every reader of the backend.
    Stored(Transfer),
    /// An entry with this key was already stored (first writer wins): nothing written.
    Exists,
    /// The backend is read-only (untrusted event, `read-only = true`): nothing written.
    ReadOnly,
}

/// A store of complete, immutable cache entries keyed by [`CacheKey`].
///
/// Every method is synchronous: a backend that talks to the network owns its own async
/// runtime, so callers (the `ci` runner's threads) never need one. Entries are immutable:
/// once `put` has stored a key, later `put`s of that key change nothing.
pub trait Storage: Send + Sync {
    /// A short description for messages (`local /path`, `s3://bucket/prefix`), never
    /// containing credentials.
    fn describe(&self) -> String;

    /// Whether [`Storage::put`] always answers [`Put::ReadOnly`].
    fn is_read_only(&self) -> bool;

    /// Whether a complete entry is stored under `key`.
    ///
    /// `Ok(true)`: a hit, a `get` would find it. `Ok(false)`: a miss. `Err`: the backend
    /// could not answer (unreachable, denied, timed out); callers treat it as a miss and
    /// warn.
    fn contains(&self, key: &CacheKey) -> Result<bool>;

    /// Fetch the entry for the exact `key` into the entry dir `into` (which must not
    /// exist; its parent must).
    ///
    /// `Ok(Some(t))`, a hit: `into` holds `entry.json`, `manifest.tsv` and `data/`, and
    /// `data/` was checked against the manifest (file set, sizes, mtimes and every file's
    /// sha256). `Ok(None)`, a miss: nothing is stored under `key`; `into` was not
    /// created. `Err`: the backend failed or the entry failed its check (truncated,
    /// damaged); `into` has been removed, so nothing damaged is left behind.
    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>>;

    /// Store the complete entry dir `entry` under `key`. `entry` is only read.
    ///
    /// `Ok(Put::Stored)`: stored and visible. `Ok(Put::Exists)`: another writer stored
    /// the key first; nothing changed. `Ok(Put::ReadOnly)`: nothing written. `Err`: the
    /// backend failed; no reader ever sees a partial entry (an interrupted upload leaves
    /// at most unreferenced objects, never a listed entry).
    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put>;
}

/// Read and check an entry dir's `entry.json` and `manifest.tsv`: the manifest's sha256
/// must be the entry's `content_hash`. Returns both.
///
/// Errors: a file is missing or unparsable, or the hashes differ.
pub fn read_entry_meta(dir: &Path) -> Result<(super::EntryInfo, Manifest, String)> {
    let info: super::EntryInfo =
        serde_json::from_slice(&std::fs::read(dir.join("entry.json")).context("read entry.json")?)
            .context("parse entry.json")?;
    let tsv = std::fs::read_to_string(dir.join("manifest.tsv")).context("read manifest.tsv")?;
    if fsutil::sha256_hex(&tsv) != info.content_hash {
        bail!("manifest.tsv does not match the entry's content hash");
    }
    let m = Manifest::from_tsv(&tsv)?;
    Ok((info, m, tsv))
}

/// The local cache root as a [`Storage`]: an adapter over [`Cache`] (which keeps its own
/// richer API for restoring into target dirs). `get` copies an entry out under a shared
/// lease; `put` copies an entry dir in and publishes it with one rename.
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))] // `ci` uses `Cache` directly; the adapter is the contract's reference
pub struct LocalStorage {
    cache: Cache,
}

impl LocalStorage {
    /// A backend over `cache`.
    #[cfg_attr(not(test), allow(dead_code))]
    pub fn new(cache: Cache) -> LocalStorage {
        LocalStorage { cache }
    }
}

impl Storage for LocalStorage {
    fn describe(&self) -> String {
        format!("local {}", self.cache.root().display())
    }

    fn is_read_only(&self) -> bool {
        self.cache.is_read_only()
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.cache.contains(key))
    }

    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        let start = Instant::now();
        let Some(_lease) = self.cache.share_entry(key)? else {
            return Ok(None);
        };
        let dir = self.cache.entry_dir(key);
        if !dir.join("data").is_dir() {
            return Ok(None);
        }
        let r = (|| -> Result<Transfer> {
            std::fs::create_dir_all(into)?;
            for f in ["entry.json", "manifest.tsv"] {
                std::fs::copy(dir.join(f), into.join(f)).with_context(|| format!("copy {f}"))?;
            }
            let stats =
                transfer::par_copy(&dir.join("data"), &into.join("data"), false, &|_| false)?;
            let (_, m, _) = read_entry_meta(into)?;
            let damage = m.check_content(&into.join("data"))?;
            if !damage.is_empty() {
                bail!("entry is damaged: {}", damage.join("; "));
            }
            Ok(Transfer {
                wire_bytes: stats.bytes,
                data_bytes: stats.bytes,
                files: stats.files,
                secs: start.elapsed().as_secs_f64(),
            })
        })();
        match r {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                let _ = fsutil::remove_tree(into);
                Err(e.context(format!("get {} entry {}", key.stage, key.key)))
            }
        }
    }

    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        if self.cache.is_read_only() {
            return Ok(Put::ReadOnly);
        }
        if self.cache.contains(key) {
            return Ok(Put::Exists);
        }
        let start = Instant::now();
        let scratch = self.cache.scratch_dir("put");
        let copied = (|| -> Result<crate::support::fs::CopyStats> {
            std::fs::create_dir_all(&scratch)?;
            for f in ["entry.json", "manifest.tsv"] {
                std::fs::copy(entry.join(f), scratch.join(f))
                    .with_context(|| format!("copy {f}"))?;
            }
            transfer::par_copy(&entry.join("data"), &scratch.join("data"), false, &|_| {
                false
            })
        })();
        let stats = match copied {
            Ok(s) => s,
            Err(e) => {
                let _ = fsutil::remove_tree(&scratch);
                return Err(e);
            }
        };
        match self.cache.import(key, &scratch)? {
            Save::Exists => Ok(Put::Exists),
            Save::Skipped => Ok(Put::ReadOnly),
            _ => Ok(Put::Stored(Transfer {
                wire_bytes: stats.bytes,
                data_bytes: stats.bytes,
                files: stats.files,
                secs: start.elapsed().as_secs_f64(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Stage;

    fn key(k: &str) -> CacheKey {
        CacheKey {
            stage: Stage::Target,
            key: k.into(),
            inputs: vec![("test".into(), "1".into())],
        }
    }

    #[test]
    fn local_backend_round_trips_an_entry_and_first_writer_wins() {
        let t = tempfile::tempdir().unwrap();
        let a = Cache::open(&t.path().join("a")).unwrap();
        let b = LocalStorage::new(Cache::open(&t.path().join("b")).unwrap());
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("debug/deps")).unwrap();
        std::fs::write(src.join("debug/deps/libx.rlib"), b"rlib bytes").unwrap();
        let k = key("repo-x-0123456789abcdef-0123456789abcdef");
        a.save(&k, &src, &|_| false).unwrap();
        let la = LocalStorage::new(a.clone());
        assert!(la.contains(&k).unwrap());
        assert!(!b.contains(&k).unwrap());

        let got = t.path().join("got");
        let tr = la.get(&k, &got).unwrap().expect("a hit");
        assert_eq!(tr.files, 1);
        assert_eq!(tr.data_bytes, 10);
        assert!(matches!(b.put(&k, &got).unwrap(), Put::Stored(_)));
        assert_eq!(b.put(&k, &got).unwrap(), Put::Exists);
        assert!(b.contains(&k).unwrap());

        // A miss creates nothing.
        let none = t.path().join("none");
        assert!(la
            .get(&key("repo-y-0123456789abcdef-0123456789abcdef"), &none)
            .unwrap()
            .is_none());
        assert!(!none.exists());

        // Read-only: nothing written.
        let ro = LocalStorage::new(Cache::open_read_only(&t.path().join("c")));
        assert_eq!(ro.put(&k, &got).unwrap(), Put::ReadOnly);
        assert!(!t.path().join("c").exists());
    }
}
