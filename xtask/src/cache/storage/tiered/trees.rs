//! Small trees shared through the remote tier alone: what the engine's result store
//! (`engine/results.rs`) exchanges so that a success recorded on one runner makes the repo
//! `cached` on every runner sharing the remote. Each tree (a record dir: `record.json` and
//! its step logs) is a complete entry of stage [`crate::cache::Stage::Result`] on the
//! remote, with the same manifest, checks and first-writer-wins commit as any entry.
//!
//! Only the remote holds these entries: the local engine never lists them (the engine
//! keeps its own record store under the cache root). The rules of the stages hold here
//! too: a remote fault switches the remote off for the run and is one warning; a run that
//! may not save uploads nothing (its local engine is read-only, its remote a
//! [`ReadOnly`](super::ReadOnly)); uploads run in the background and [`Tiered::finish`]
//! waits for them. This module knows nothing of what the trees hold: the engine checks
//! what it fetches before it believes it.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use super::{Damaged, Storage, Tiered, Transfer};
use crate::cache::integrity::Manifest;
use crate::cache::key::{check_key, EntryKey};
use crate::cache::{transfer, CacheKey, EntryInfo, ENTRY_SCHEMA};
use crate::support::fs as fsutil;
use crate::support::time::now_unix;

impl Tiered {
    /// Whether a remote store is configured (it may have been switched off since).
    pub fn has_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Fetch the remote entry for `key` and put its data tree at `into`, which must not
    /// exist (its parent must; the download is unpacked in a temporary dir beside it and
    /// moved into place with one rename).
    ///
    /// `Ok(Some(t))`: fetched, checked against its manifest (every file's sha256), and
    /// now at `into`. `Ok(None)`: no remote, the remote is off for this run (a warning
    /// was given already), or nothing is stored under `key`; nothing was created.
    ///
    /// Errors: the remote failed (switched off for the rest of the run), or its entry
    /// failed its check (quarantined when the run may write; the remote stays on);
    /// nothing is left behind, and the message (credentials redacted) is the warning to
    /// give. Also an invalid key ([`check_key`]) or a
    /// temporary dir that cannot be created beside `into`.
    pub fn fetch_tree(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        let Some(remote) = &self.remote else {
            return Ok(None);
        };
        check_key(&key.key)?;
        if let Err(w) = remote.usable() {
            // An empty warning: the remote was switched off and a stage said so already.
            anyhow::ensure!(w.is_empty(), "{w}");
            return Ok(None);
        }
        let parent = into.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".bllvm-remote-")
            .tempdir_in(parent)
            .with_context(|| format!("create a download dir in {}", parent.display()))?;
        let entry = tmp.path().join("entry");
        match remote.storage.get(key, &entry) {
            Ok(Some(t)) => {
                std::fs::rename(entry.join("data"), into).with_context(|| {
                    format!("move the fetched {} entry to {}", key.stage, into.display())
                })?;
                Ok(Some(t))
            }
            Ok(None) => Ok(None),
            // One damaged object is not an outage (as for the stages): quarantined when
            // this run may write, the remote stays on, and the warning says so.
            Err(e) if Damaged::is_in(&e) => {
                anyhow::bail!("{}", self.quarantine(remote, key, &e))
            }
            Err(e) => {
                let why = remote.fail(&format!("{e:#}"));
                anyhow::bail!(
                    "remote cache {} failed, running without it: {why}",
                    remote.storage.describe()
                )
            }
        }
    }

    /// Share the tree at `src` as the remote entry for `key`, uploaded in the background
    /// ([`Tiered::finish`] waits for it; a failed upload is a warning line there). The
    /// tree is first copied into a complete entry dir under the local cache's `tmp/`, so
    /// `src` may change or go as soon as this returns.
    ///
    /// Returns whether an upload was started: not without a remote, when the remote is off
    /// or read-only, or when the local engine is read-only (a run that may not save
    /// writes nothing anywhere).
    ///
    /// Errors: an invalid key, or the entry dir cannot be written (nothing is uploaded
    /// and nothing is left under `tmp/`).
    pub fn share_tree(&self, key: &CacheKey, src: &Path) -> Result<bool> {
        let Some(remote) = &self.remote else {
            return Ok(false);
        };
        if remote.storage.is_read_only() || self.local.is_read_only() || remote.is_off() {
            return Ok(false);
        }
        check_key(&key.key)?;
        let staged = self
            .cache()
            .scratch_dir(&format!("share-{}-{}", key.stage, key.key))?;
        // On an error, dropping the scratch removes what was staged.
        stage_entry(key, src, staged.path())
            .with_context(|| format!("stage the {} entry {}", key.stage, key.key))?;
        let storage = Arc::clone(&remote.storage);
        let k = key.clone();
        let handle = std::thread::spawn(move || {
            let r = storage.put(&k, staged.path());
            drop(staged);
            r
        });
        remote
            .shared
            .uploads
            .lock()
            .expect("uploads lock")
            .push((key.clone(), handle));
        Ok(true)
    }
}

/// Write the tree at `src` as a complete entry dir at `dir` for `key`, laid out as the
/// local engine lays out its entries: `data/` (a copy, mtimes kept), `manifest.tsv` (every
/// file's size, mtime and sha256) and `entry.json` (whose content hash is the manifest's).
///
/// Errors: I/O; the caller removes `dir`.
fn stage_entry(key: &CacheKey, src: &Path, dir: &Path) -> Result<()> {
    let data = dir.join("data");
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    transfer::par_copy(src, &data, false, &|_| false)?;
    let m = Manifest::build(&data, None)?;
    let tsv = m.to_tsv();
    std::fs::write(dir.join("manifest.tsv"), &tsv).context("write manifest.tsv")?;
    let info = EntryInfo {
        schema_version: ENTRY_SCHEMA,
        stage: key.stage,
        key: EntryKey::new(&key.key)?,
        inputs: key.inputs.clone(),
        created_unix: now_unix(),
        files: m.count(),
        bytes: m.bytes(),
        raw_bytes: m.bytes(),
        content_hash: fsutil::sha256_hex(&tsv),
    };
    std::fs::write(dir.join("entry.json"), serde_json::to_vec_pretty(&info)?)
        .context("write entry.json")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::storage::{LocalStorage, ReadOnly};
    use crate::cache::{Cache, Stage};

    fn key(k: &str) -> CacheKey {
        CacheKey {
            stage: Stage::Result,
            key: k.into(),
            inputs: vec![("repo".into(), "r".into())],
        }
    }

    fn tree(dir: &Path) {
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        std::fs::write(dir.join("record.json"), b"{}").unwrap();
        std::fs::write(dir.join("logs/build.log"), b"Compiling r\n").unwrap();
    }

    #[test]
    fn a_shared_tree_reaches_another_runner_whole_and_only_from_a_writer() {
        let t = tempfile::tempdir().unwrap();
        let remote_root = t.path().join("remote");
        let remote = || -> Box<dyn Storage> {
            Box::new(LocalStorage::new(Cache::open(&remote_root).unwrap()))
        };
        let src = t.path().join("src");
        tree(&src);
        let k = key("r-0123456789abcdef");

        // A runner that may save shares the tree; `finish` waits for the upload.
        let a = Tiered::new(
            LocalStorage::new(Cache::open(&t.path().join("a")).unwrap()),
            remote(),
        );
        assert!(a.share_tree(&k, &src).unwrap());
        std::fs::remove_dir_all(&src).unwrap(); // the upload works on its own copy
        assert!(a.finish(&mut []).iter().all(|l| !l.contains("warning")));
        assert!(remote().contains(&k).unwrap());
        // The staged copy under `tmp/` is gone.
        let left: Vec<_> = std::fs::read_dir(t.path().join("a/tmp"))
            .map(|d| d.flatten().collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{left:?}");

        // Another runner fetches it whole; a miss creates nothing.
        let b = Tiered::new(
            LocalStorage::new(Cache::open_read_only(&t.path().join("b"))),
            remote(),
        );
        let into = t.path().join("got");
        let got = b.fetch_tree(&k, &into).unwrap().expect("a remote hit");
        assert_eq!(got.files, 2);
        assert_eq!(
            std::fs::read(into.join("logs/build.log")).unwrap(),
            b"Compiling r\n"
        );
        let none = t.path().join("none");
        assert!(b
            .fetch_tree(&key("r-fedcba9876543210"), &none)
            .unwrap()
            .is_none());
        assert!(!none.exists());
        // No download dir is left beside it.
        let stray: Vec<_> = std::fs::read_dir(t.path())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".bllvm-remote-")
            })
            .collect();
        assert!(stray.is_empty(), "{stray:?}");

        // A runner that may not save shares nothing: a read-only engine, or a read-only
        // remote.
        tree(&src);
        assert!(!b.share_tree(&key("r-1111111111111111"), &src).unwrap());
        let c = Tiered::new(
            LocalStorage::new(Cache::open(&t.path().join("c")).unwrap()),
            Box::new(ReadOnly::new(LocalStorage::new(
                Cache::open(&remote_root).unwrap(),
            ))),
        );
        assert!(!c.share_tree(&key("r-2222222222222222"), &src).unwrap());
        // Without a remote there is nothing to share or fetch.
        let local = Tiered::local(Cache::open(&t.path().join("d")).unwrap());
        assert!(!local.share_tree(&k, &src).unwrap());
        assert!(local.fetch_tree(&k, &t.path().join("x")).unwrap().is_none());
        assert!(!remote().contains(&key("r-1111111111111111")).unwrap());
    }

    #[test]
    fn a_damaged_remote_tree_is_skipped_and_the_remote_stays_on() {
        let t = tempfile::tempdir().unwrap();
        let remote_root = t.path().join("remote");
        let src = t.path().join("src");
        tree(&src);
        let k = key("r-0123456789abcdef");
        let a = Tiered::new(
            LocalStorage::new(Cache::open(&t.path().join("a")).unwrap()),
            Box::new(LocalStorage::new(Cache::open(&remote_root).unwrap())),
        );
        a.share_tree(&k, &src).unwrap();
        a.finish(&mut []);
        // Change a byte of the stored tree behind the manifest's back.
        let stored = remote_root
            .join("entries/result")
            .join(&k.key)
            .join("data/record.json");
        std::fs::write(&stored, b"{ hostile }").unwrap();

        let b = Tiered::new(
            LocalStorage::new(Cache::open(&t.path().join("b")).unwrap()),
            Box::new(LocalStorage::new(Cache::open(&remote_root).unwrap())),
        );
        let into = t.path().join("got");
        let e = b.fetch_tree(&k, &into).unwrap_err();
        let msg = format!("{e:#}");
        // The fake remote (a `LocalStorage`) cannot quarantine; S3 does (see
        // `tests/it/hostile.rs` on SeaweedFS).
        assert!(msg.contains("is damaged, skipped"), "{msg}");
        assert!(!msg.contains("running without it"), "{msg}");
        assert!(!into.exists());
        // Still on: the same damage is reported again, and sharing still uploads.
        assert!(b.fetch_tree(&k, &into).is_err());
        assert!(b.share_tree(&key("r-3333333333333333"), &src).unwrap());
    }
}
