//! Where complete cache entries are stored: one trait, [`Storage`], with one backend per
//! file (sccache's `trait Storage` with `disk.rs`, `s3.rs`, ...), and the types composed
//! from it:
//!
//! - [`LocalStorage`] (`local.rs`): the cache root on this machine, the local engine
//!   ([`super::Cache`]) seen as a store of entries. No network, no async runtime.
//! - `S3Storage` (`s3.rs`, cargo feature `remote`): S3-compatible object storage through
//!   OpenDAL (gcs, azblob and ghac one feature further), entries streamed as tar + zstd
//!   (`archive.rs`).
//! - [`ReadOnly`] (`read_only.rs`): any store that never writes. A run that may not save
//!   wraps its remote in it, so "read-only" is a type, not a flag each backend checks.
//! - [`Tiered`] (`tiered.rs`): the local engine in front of any remote store, and what
//!   the runner calls around a repo: restore a stage, save it, upload in the background,
//!   wait for the uploads at the end.
//!
//! The local engine has its own read-only mode ([`super::Cache::open_read_only`]): it is
//! more than "never `put`" (a read-only engine also restores by copy instead of moving
//! entries out, takes no lease it would have to create, records no usage), so it stays a
//! mode of the engine; [`LocalStorage::is_read_only`] reports it, and [`Tiered`] never
//! uploads from a read-only engine. Wrapping a [`LocalStorage`] in [`ReadOnly`] only
//! stops its `put`.
//!
//! The unit of exchange is an *entry dir*: `entry.json`, `manifest.tsv` and `data/`, the
//! same layout as `entries/<stage>/<key>/` under a cache root (see `cache/mod.rs`), so an
//! entry moves between backends without being rebuilt or rehashed.
//!
//! This module owns the contract; the entry format is `cache/mod.rs`'s and
//! `integrity.rs`'s, the settings `settings.rs`'s.

#[cfg(feature = "remote")]
mod archive;
mod local;
mod read_only;
#[cfg(feature = "remote")]
mod s3;
mod tiered;

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

#[cfg(feature = "remote")]
pub use archive::ZSTD_LEVEL;
pub use local::LocalStorage;
pub use read_only::ReadOnly;
#[cfg(feature = "remote")]
pub use s3::{writer_id, S3Storage};
pub use tiered::Tiered;

use super::integrity::Manifest;
use super::{CacheKey, EntryInfo};
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

/// An answer of a store that failed its checks: the object is there, and it is damaged
/// (a marker that does not parse or names another key, a manifest that does not match
/// the entry's content hash, an archive of another size than its marker says, a tree
/// that does not match its manifest). Callers branch on it: a damaged entry is skipped
/// and quarantined ([`Storage::quarantine`]), while the store stays in use; any other
/// error means the store could not answer.
#[derive(Debug, thiserror::Error)]
#[error("damaged entry: {0}")]
pub struct Damaged(pub String);

impl Damaged {
    /// Whether `e` (or one of its causes) is a [`Damaged`].
    pub fn is_in(e: &anyhow::Error) -> bool {
        e.chain().any(|c| c.is::<Damaged>())
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
    /// The store is read-only ([`ReadOnly`], a read-only local engine): nothing written.
    ReadOnly,
}

/// A store of complete, immutable cache entries keyed by [`CacheKey`].
///
/// Every method is synchronous: a backend that talks to the network owns its own async
/// runtime, so callers (the runner's threads) never need one. Entries are immutable: once
/// `put` has stored a key, later `put`s of that key change nothing.
///
/// What the answers mean, for every backend:
///
/// - a **hit** is a complete entry under exactly this key: `contains` says `Ok(true)`,
///   `get` fills `into` and returns `Ok(Some(_))` only after checking the data against
///   the entry's manifest;
/// - a **miss** is "nothing is stored under this key": `Ok(false)` / `Ok(None)`, and
///   nothing was created;
/// - an **error** is "the backend could not answer" (unreachable, denied, timed out) or
///   "what it answered was damaged" (truncated, failed its check). Nothing damaged is
///   left behind, and callers treat it as a miss plus a warning: a build never depends
///   on a store.
///
/// No message (`describe`, errors) ever contains a credential; [`Storage::redact`] is
/// there for text that did not come from the backend itself.
pub trait Storage: Send + Sync {
    /// A short description for messages (`local /path`, `s3://bucket/prefix`), never
    /// containing credentials.
    fn describe(&self) -> String;

    /// Whether [`Storage::put`] always answers [`Put::ReadOnly`] without writing.
    fn is_read_only(&self) -> bool {
        false
    }

    /// Check that the store answers at all (for a remote: the bucket exists and the
    /// credentials work), before the first transfer of a run. A local store always does.
    ///
    /// Errors: why not, ready for a warning.
    fn probe(&self) -> Result<()> {
        Ok(())
    }

    /// `text` with every credential this store knows replaced by `***`.
    fn redact(&self, text: &str) -> String {
        text.to_owned()
    }

    /// Whether a complete entry is stored under `key`.
    #[cfg_attr(not(any(test, feature = "remote")), allow(dead_code))] // the S3 backend's `put` asks it
    ///
    /// `Ok(true)`: a hit, a `get` would find it. `Ok(false)`: a miss. `Err`: the backend
    /// could not answer; callers treat it as a miss and warn.
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

    /// Take the entry stored under `key` out of use after a `get` found it [`Damaged`]:
    /// a reader no longer finds it, and the next `put` of the key stores a fresh one (for
    /// S3, the marker is moved under `quarantine/` for inspection). `Ok(true)`: done;
    /// `Ok(false)`: this store does not write (read-only), nothing changed.
    ///
    /// Errors: the store could not do it.
    fn quarantine(&self, key: &CacheKey) -> Result<bool> {
        let _ = key;
        Ok(false)
    }

    /// Store the complete entry dir `entry` under `key`. `entry` is only read.
    ///
    /// `Ok(Put::Stored)`: stored and visible. `Ok(Put::Exists)`: another writer stored
    /// the key first; nothing changed. `Ok(Put::ReadOnly)`: nothing written. `Err`: the
    /// backend failed; no reader ever sees a partial entry (an interrupted upload leaves
    /// at most unreferenced objects, never a listed entry).
    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put>;
}

/// A shared store is a store: [`Tiered`] keeps its remote in an `Arc` (the background
/// uploads hold it too), and [`ReadOnly`] can wrap that.
impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn describe(&self) -> String {
        (**self).describe()
    }
    fn is_read_only(&self) -> bool {
        (**self).is_read_only()
    }
    fn probe(&self) -> Result<()> {
        (**self).probe()
    }
    fn redact(&self, text: &str) -> String {
        (**self).redact(text)
    }
    fn contains(&self, key: &CacheKey) -> Result<bool> {
        (**self).contains(key)
    }
    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        (**self).get(key, into)
    }
    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        (**self).put(key, entry)
    }
    fn quarantine(&self, key: &CacheKey) -> Result<bool> {
        (**self).quarantine(key)
    }
}

/// Read and check an entry dir's `entry.json` and `manifest.tsv`: the manifest's sha256
/// must be the entry's `content_hash`. Returns both, and the manifest's text.
///
/// Errors: a file is missing or unparsable, or the hashes differ.
pub fn read_entry_meta(dir: &Path) -> Result<(EntryInfo, Manifest, String)> {
    use crate::cache::untrusted::read_meta;
    let info: EntryInfo =
        serde_json::from_str(&read_meta(&dir.join("entry.json")).context("read entry.json")?)
            .context("parse entry.json")?;
    info.check().context("check entry.json")?;
    let tsv = read_meta(&dir.join("manifest.tsv")).context("read manifest.tsv")?;
    if fsutil::sha256_hex(&tsv) != info.content_hash {
        bail!("manifest.tsv does not match the entry's content hash");
    }
    let m = Manifest::from_tsv(&tsv)?;
    Ok((info, m, tsv))
}
