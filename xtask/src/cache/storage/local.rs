//! [`LocalStorage`]: the local cache root as a [`Storage`], and the front tier of
//! [`super::Tiered`]. An adapter over the local engine ([`Cache`]), which keeps its
//! richer API for restoring into target dirs (moves, leases, pruning).
//!
//! `get` copies an entry out under a shared lease; `put` copies an entry dir in and
//! publishes it with one rename. As the front tier it also takes in an entry dir fetched
//! from elsewhere without copying ([`LocalStorage::import`]) and lends an entry in place
//! for an upload ([`LocalStorage::lend`]).
//!
//! Owns no entry format (that is `cache/mod.rs`'s) and never talks to the network.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::{read_entry_meta, Damaged, Put, Storage, Transfer};
use crate::cache::lock::EntryLock;
use crate::cache::scratch::Scratch;
use crate::cache::{transfer, Cache, CacheKey, Save};
use crate::support::fs as fsutil;

/// The cache root on this machine as a store of entries (see the module docs).
#[derive(Debug, Clone)]
pub struct LocalStorage {
    cache: Cache,
}

/// An entry lent in place by [`LocalStorage::lend`]: its dir, readable while this lives
/// (a shared lease: no job moves it out or evicts it meanwhile).
#[derive(Debug)]
pub struct Lent {
    /// The entry dir (`entry.json`, `manifest.tsv`, `data/`).
    pub dir: PathBuf,
    _lease: EntryLock,
}

impl LocalStorage {
    /// A backend over `cache`.
    pub fn new(cache: Cache) -> LocalStorage {
        LocalStorage { cache }
    }

    /// The local engine behind this store.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// A fresh leased path under the cache root's `tmp/` (not created) for an entry dir
    /// that [`LocalStorage::import`] will take: same filesystem, so the import is one
    /// rename. Removed when the lease is dropped, or by the next `Cache::open` if this
    /// process dies first.
    ///
    /// Errors: the lease cannot be created.
    pub fn staging_dir(&self, key: &CacheKey) -> Result<Scratch> {
        self.cache
            .scratch_dir(&format!("remote-{}-{}", key.stage, key.key))
    }

    /// Publish the complete entry dir `dir` (fetched from another store, in a
    /// [`LocalStorage::staging_dir`]) as `key` without copying it, after checking it like a
    /// restore does; `dir` is consumed. See [`Cache::import`] for the answers.
    ///
    /// Errors: the entry fails its check, or I/O; nothing is published.
    pub fn import(&self, key: &CacheKey, dir: &Path) -> Result<Save> {
        self.cache.import(key, dir)
    }

    /// The entry for `key` in place, under a shared lease, for reading (an upload).
    /// `Ok(None)`: not listed with data, or a job holds it exclusively (moved out).
    ///
    /// Errors: the lock file cannot be opened.
    pub fn lend(&self, key: &CacheKey) -> Result<Option<Lent>> {
        Ok(self.cache.share_entry(key)?.map(|lease| Lent {
            dir: self.cache.entry_dir(key),
            _lease: lease,
        }))
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
            let (_, m, _) = read_entry_meta(into).map_err(|e| Damaged(format!("{e:#}")))?;
            let damage = m.check_content(&into.join("data"))?;
            if !damage.is_empty() {
                return Err(Damaged(damage.join("; ")).into());
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

    /// Discard the local entry (a job holding it keeps it: `Ok(false)`).
    fn quarantine(&self, key: &CacheKey) -> Result<bool> {
        Ok(self.cache.remove(key.stage.as_str(), &key.key))
    }

    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        if self.cache.is_read_only() {
            return Ok(Put::ReadOnly);
        }
        if self.cache.contains(key) {
            return Ok(Put::Exists);
        }
        let start = Instant::now();
        let lease = self.cache.scratch_dir("put")?;
        let scratch = lease.path();
        // Dropping the lease on an error removes what was copied.
        let stats = (|| -> Result<fsutil::CopyStats> {
            std::fs::create_dir_all(scratch)?;
            for f in ["entry.json", "manifest.tsv"] {
                std::fs::copy(entry.join(f), scratch.join(f))
                    .with_context(|| format!("copy {f}"))?;
            }
            transfer::par_copy(&entry.join("data"), &scratch.join("data"), false, &|_| {
                false
            })
        })()?;
        match self.cache.import(key, scratch)? {
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
    use crate::cache::storage::ReadOnly;
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

        // Read-only: nothing written, whether the engine is read-only or the store is
        // wrapped.
        let ro = LocalStorage::new(Cache::open_read_only(&t.path().join("c")));
        assert!(ro.is_read_only());
        assert_eq!(ro.put(&k, &got).unwrap(), Put::ReadOnly);
        assert!(!t.path().join("c").exists());
        let wrapped = ReadOnly::new(LocalStorage::new(Cache::open(&t.path().join("d")).unwrap()));
        assert!(wrapped.is_read_only());
        assert_eq!(wrapped.put(&k, &got).unwrap(), Put::ReadOnly);
        assert!(!wrapped.contains(&k).unwrap());
    }
}
