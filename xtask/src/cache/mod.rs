//! The local cache: entries keyed by explicit inputs, restored before a repo's steps and
//! saved after them, shared safely by every `ci` process on the machine.
//!
//! Layout under the cache root (`--cache-dir`, `BLLVM_CI_CACHE_DIR`, the manifest's
//! `[cache] dir`, or the per-user cache dir):
//!
//! ```text
//! entries/<stage>/<key>/entry.json    what went into the key, sizes, content hash
//! entries/<stage>/<key>/manifest.tsv  every file: kind, size, mtime, sha256, path
//! entries/<stage>/<key>/data/         the cached tree
//! locks/<stage>/<key>.lock            the entry's lease (flock; see `lock.rs`)
//! usage/<stage>/<key>.json            last use and hit count (retention is by last use)
//! log/events.jsonl                    one line per restore and save (for `cache stats`)
//! tmp/<name>.<pid>.<n>/               an entry being written or deleted (never read)
//! ```
//!
//! # Strategies
//!
//! A restore into a target dir that does not exist yet, on the cache's filesystem, takes
//! the entry's *exclusive* lease and renames its `data/` into place: O(1) whatever the
//! size. The entry stays listed (its `entry.json` remains, a "leased stub") and its lease
//! stays held by this process until the save, so every other job sees it as leased, not
//! missing. The save then prunes the tree and renames it back: to the same key when
//! nothing changed (O(1) again, no bytes written), else into a fresh entry. When the
//! exclusive lease is taken (another job holds the entry), or the target lies on another
//! filesystem, or the stage merges into an existing tree (`$CARGO_HOME`), the restore
//! takes a *shared* lease and copies on parallel threads. A job that finds an entry moved
//! out by another job tries the next-nearest entry (restore keys), else misses. Reports
//! say which strategy was used ([`Strategy`]).
//!
//! Every tree a restore put in place or found missing (a miss: the job builds it from
//! scratch) belongs to the cache at its save, which moves it in when it is on the cache's
//! filesystem: after `ci`, a repo's target dir lives in the cache, and the next run
//! moves it back. A tree the cache did not give (a laptop's own `target/`, restored as
//! `Kept`) is copied and left in place. Pruned paths and discarded entries are renamed
//! under `tmp/` and deleted on a background thread, off the build's critical path.
//!
//! # Invariants
//!
//! - An entry is visible only once complete: it is written under `tmp/` and published
//!   with one `rename(2)` into `entries/`. A crashed writer leaves only a `tmp/` dir,
//!   which the next [`Cache::open`] removes once its writer process is gone.
//! - A published entry's data never changes while it is listed with data: it is only
//!   moved out whole (under the exclusive lease), moved back whole, or replaced by a new
//!   entry of the same key after the old one was unlisted. Readers copy only under a
//!   shared lease, so a tree is never moved or evicted under a reader.
//! - Every lease attempt is non-blocking and the OS drops a dead holder's locks, so no
//!   job waits on another and none deadlocks. A leased stub whose lease is free belonged
//!   to a job that died; [`Cache::open`] removes it.
//! - Every entry carries a manifest; every restore checks the tree against it (file set,
//!   sizes, mtimes) and discards a damaged entry, building clean instead.
//! - A read-only cache ([`Cache::open_read_only`], untrusted events, `--no-save`) never
//!   creates, changes or deletes anything under the root.
//!
//! This module never decides *whether* to save (trust, events: that is the caller's),
//! never runs cargo and never prints: problems and evictions are [`Notes`] the caller
//! drains. The submodules around it: `key.rs` keys, `lock.rs` leases, `integrity.rs`
//! manifests, `transfer.rs` moves and copies, `prune.rs` what a target entry leaves out,
//! `retention.rs` retention and the disk guard, `stats.rs` the event log's report,
//! `cargo_home.rs` the chain-wide stages, `settings.rs` the `[cache]` settings,
//! `report.rs` the per-stage report of a run, and `storage/` the [`storage::Storage`]
//! seam: the local store, the S3 backend, and [`Tiered`] (local in front of a remote),
//! which is what the runner holds.

pub mod cargo_home;
pub mod integrity;
pub mod key;
pub mod lock;
pub mod prune;
pub mod report;
pub mod retention;
pub mod scratch;
pub mod settings;
pub mod stats;
pub mod storage;
pub mod transfer;
pub mod untrusted;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use key::{CacheKey, EntryKey, Stage};
pub use storage::Tiered;
pub use transfer::Strategy;

use crate::support::fs as fsutil;
use crate::support::publish::{self, Published};
use crate::support::time::now_unix;
use integrity::Manifest;
use lock::{EntryLock, Mode};
use retention::{EntryUse, Eviction, FsUsage, Policy};
use scratch::Scratch;
use untrusted::{MAX_COUNT, MAX_UNIX};

/// Name of the environment variable that sets the cache root.
pub const CACHE_DIR_ENV: &str = "BLLVM_CI_CACHE_DIR";

/// Test hook: when set to a path `G`, a saver that has written its entry under `tmp/`
/// creates `G.waiting.<pid>` and waits until `G` exists before publishing, so tests can
/// kill it, race it against another saver, or read concurrently at exactly that point.
pub const GATE_ENV: &str = "BLLVM_CI_CACHE_TEST_GATE";

/// Version of `entry.json`. Entries of another version are treated as damaged.
pub const ENTRY_SCHEMA: u32 = 2;

/// What `entries/<stage>/<key>/entry.json` holds. Read back through [`read_info`], which
/// checks it ([`EntryInfo::check`]): the stage and key are types that only hold valid
/// names, and they must be those of the directory the file is in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Format version of this file ([`ENTRY_SCHEMA`]).
    pub schema_version: u32,
    /// Stage (`registry`, `git`, `target`).
    pub stage: Stage,
    /// The cache key (checked by [`key::check_key`] when parsed).
    pub key: EntryKey,
    /// Every input that went into the key, in the order hashed.
    pub inputs: Vec<(String, String)>,
    /// Seconds since the Unix epoch when the entry was published.
    pub created_unix: u64,
    /// Files in `data/` (regular files and symlinks).
    pub files: u64,
    /// Bytes in `data/`.
    pub bytes: u64,
    /// Bytes of the tree before pruning (what a save without pruning would have stored).
    #[serde(default)]
    pub raw_bytes: u64,
    /// sha256 of `manifest.tsv` (see `integrity.rs`).
    #[serde(default)]
    pub content_hash: String,
}

impl EntryInfo {
    /// Check what parsing cannot: counts and sizes at most [`MAX_COUNT`], the creation
    /// time at most [`MAX_UNIX`] (garbage there made retention overflow, issue 13), and
    /// at most one input list of a sane length.
    ///
    /// Errors: what is out of range.
    pub fn check(&self) -> Result<()> {
        for (what, n) in [
            ("files", self.files),
            ("bytes", self.bytes),
            ("raw_bytes", self.raw_bytes),
        ] {
            anyhow::ensure!(n <= MAX_COUNT, "{what} = {n} is out of range");
        }
        anyhow::ensure!(
            self.created_unix <= MAX_UNIX,
            "created_unix = {} is out of range",
            self.created_unix
        );
        anyhow::ensure!(
            self.inputs.len() <= 10_000,
            "{} key inputs is out of range",
            self.inputs.len()
        );
        Ok(())
    }
}

/// The outcome of a restore.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Restore {
    /// The exact key was found and put into place.
    Hit {
        /// Files restored.
        files: u64,
        /// Bytes restored.
        bytes: u64,
        /// Wall-clock seconds the restore took.
        secs: f64,
        /// Moved (O(1) rename) or copied.
        strategy: Strategy,
    },
    /// No exact entry, but an older one with the same restore prefix (same toolchain and
    /// variant, another lockfile: actions/cache's `restore-keys`) was put into place.
    Partial {
        /// The key of the entry restored.
        from: String,
        /// Files restored.
        files: u64,
        /// Bytes restored.
        bytes: u64,
        /// Wall-clock seconds the restore took.
        secs: f64,
        /// Moved or copied.
        strategy: Strategy,
    },
    /// No usable entry (none, all leased by other jobs, or damaged and discarded).
    Miss,
    /// The destination already held a tree (e.g. a laptop's own `target/`), so it was kept
    /// and nothing was copied.
    Kept,
}

impl Restore {
    /// `(files, bytes, secs)` of a hit or partial hit.
    pub fn restored(&self) -> Option<(u64, u64, f64)> {
        match *self {
            Restore::Hit {
                files, bytes, secs, ..
            }
            | Restore::Partial {
                files, bytes, secs, ..
            } => Some((files, bytes, secs)),
            Restore::Miss | Restore::Kept => None,
        }
    }
}

/// The outcome of a save.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Save {
    /// A new entry was published.
    Saved {
        /// Files in the entry.
        files: u64,
        /// Bytes in the entry (after pruning).
        bytes: u64,
        /// Bytes of the tree before pruning.
        raw_bytes: u64,
        /// Wall-clock seconds the save took.
        secs: f64,
        /// Moved (the tree was renamed into the cache) or copied.
        strategy: Strategy,
    },
    /// The exact key was restored and nothing changed after pruning: nothing was written
    /// (a moved tree was renamed back into its entry).
    Unchanged {
        /// Bytes in the entry.
        bytes: u64,
        /// Bytes of the tree before pruning.
        raw_bytes: u64,
        /// Wall-clock seconds the save took.
        secs: f64,
        /// Moved back, or left in place (the entry had been copied).
        strategy: Strategy,
    },
    /// An entry with this key already exists (another job saved it).
    Exists,
    /// Saving was not allowed or not wanted (read-only cache, `--no-save`); nothing written.
    Skipped,
    /// The disk guard could not make room (see the stage's warning); nothing written.
    NoSpace,
    /// There was nothing to save (the source tree does not exist).
    Empty,
}

/// Current time in seconds since the Unix epoch; injectable for retention tests.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;
/// Filesystem numbers for the disk guard; injectable for tests.
pub type FsStatsFn = Arc<dyn Fn(&Path) -> std::io::Result<FsUsage> + Send + Sync>;

/// What a restore into a tree left for the save of that tree.
#[derive(Debug)]
struct Lease {
    /// The entry restored (`None`: nothing restored, the tree was built from scratch).
    key: Option<String>,
    /// The entry's exclusive lease, held while its data is moved out.
    lock: Option<EntryLock>,
    /// The restored entry's manifest (to detect "unchanged" and reuse hashes).
    manifest: Option<Manifest>,
    /// How the tree got there.
    strategy: Strategy,
}

/// A cache root on the local filesystem. Clones share leases and notes; a handle with
/// notes of its own is [`Cache::with_own_notes`].
#[derive(Clone)]
pub struct Cache {
    root: PathBuf,
    read_only: bool,
    policy: Policy,
    clock: Clock,
    fs_stats: FsStatsFn,
    /// Trees this process restored (or created) that its save may move into the cache,
    /// by destination path.
    leases: Arc<Mutex<HashMap<PathBuf, Lease>>>,
    /// See [`Cache::with_keep_trees`].
    keep_trees: bool,
    /// Problems turned into warnings (damaged entries, no space) and evictions, drained
    /// by the caller ([`Cache::drain_notes`]). They belong to this handle and its
    /// clones: `ci` runs repos on parallel threads, and each stage takes a handle of its
    /// own so each repo's report gets its own notes.
    notes: Arc<Mutex<Notes>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("root", &self.root)
            .field("read_only", &self.read_only)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

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

/// What a handle's restores and saves noted for its caller ([`Cache::drain_notes`]).
#[derive(Debug, Clone, Default)]
pub struct Notes {
    /// Problems turned into warnings (damaged entries discarded, entries held by other
    /// jobs, saves skipped for lack of space).
    pub warnings: Vec<String>,
    /// Entries evicted by retention or the disk guard, for the log (not warnings).
    pub evicted: Vec<Eviction>,
}

impl Notes {
    /// One console line per eviction: `    cache: evicted <stage> entry <key> (<size>):
    /// <reason>`.
    pub fn eviction_lines(&self) -> Vec<String> {
        self.evicted
            .iter()
            .map(|e| {
                format!(
                    "    cache: evicted {} entry {} ({}): {}",
                    e.stage,
                    e.key,
                    fsutil::human_bytes(e.bytes),
                    e.reason
                )
            })
            .collect()
    }
}

/// Usage record of an entry (`usage/<stage>/<key>.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Usage {
    /// Seconds since the Unix epoch of the last restore or save of the entry.
    pub last_used_unix: u64,
    /// Restores that used the entry (exact or partial).
    pub hits: u64,
}

/// One listed entry: its `entry.json`, usage, and whether a job holds it now.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The entry's `entry.json`.
    pub info: EntryInfo,
    /// Last use and hits (last use defaults to the creation time).
    pub usage: Usage,
    /// Its data is moved out by a running job (a leased stub).
    pub leased: bool,
}

impl Cache {
    /// Open (creating if needed) the cache at `root` with the default [`Policy`], remove
    /// `tmp/` leftovers of writers that no longer run and stubs of jobs that died while
    /// holding an entry.
    ///
    /// Errors: the root cannot be created.
    pub fn open(root: &Path) -> Result<Cache> {
        fs::create_dir_all(root)
            .with_context(|| format!("create cache root {}", root.display()))?;
        let cache = Cache::new(root, false);
        cache.ensure_layout()?;
        cache.clean_stale_tmp();
        cache.clean_dead_stubs();
        Ok(cache)
    }

    /// Make the directories the engine renames and deletes in real directories: a
    /// symlink in place of `entries/<stage>`, `tmp`, `locks/<stage>`, `usage/<stage>` or
    /// `log` would make those renames and deletes act outside the root. What was there is
    /// removed (the link, never its target) with a warning.
    ///
    /// Errors: a directory cannot be created.
    fn ensure_layout(&self) -> Result<()> {
        let mut dirs = vec![
            self.root.join("entries"),
            self.root.join("tmp"),
            self.root.join("locks"),
            self.root.join("usage"),
            self.root.join("log"),
            scratch::root_leases(&self.root),
        ];
        for st in Stage::ALL {
            dirs.push(self.stage_dir(st));
            dirs.push(self.root.join("locks").join(st.as_str()));
            dirs.push(self.root.join("usage").join(st.as_str()));
        }
        for d in dirs {
            let replaced = untrusted::ensure_real_dir(&d)
                .with_context(|| format!("create cache directory {}", d.display()))?;
            if replaced {
                self.note(format!(
                    "{} was not a directory (a symlink or a file): replaced by an empty one",
                    d.display()
                ));
            }
        }
        Ok(())
    }

    /// A cache at `root` that restores (by copy only) and never writes: no directory is
    /// created, no usage recorded, no entry moved, and every save is [`Save::Skipped`].
    /// For untrusted events (`pull_request`), so a fork cannot poison the cache.
    pub fn open_read_only(root: &Path) -> Cache {
        Cache::new(root, true)
    }

    fn new(root: &Path, read_only: bool) -> Cache {
        Cache {
            root: root.to_path_buf(),
            read_only,
            policy: Policy::default(),
            clock: Arc::new(now_unix),
            fs_stats: Arc::new(|p: &Path| FsUsage::of(p)),
            leases: Arc::default(),
            notes: Arc::default(),
            keep_trees: false,
        }
    }

    /// Never move a tree in or out: restores and saves copy, and a saved tree stays where
    /// it is, unpruned. For a developer's machine, where `target/` disappearing into the
    /// cache after `cargo xtask ci` would make the next plain `cargo build` start cold;
    /// CI runners (whose checkouts are thrown away) keep the O(1) moves.
    pub fn with_keep_trees(mut self, keep: bool) -> Cache {
        self.keep_trees = keep;
        self
    }

    /// This cache, read-only from now on (see [`Cache::open_read_only`]).
    pub fn into_read_only(mut self) -> Cache {
        self.read_only = true;
        self
    }

    /// Use `policy` for retention and the disk guard.
    pub fn with_policy(mut self, policy: Policy) -> Cache {
        self.policy = policy;
        self
    }

    /// Use `clock` (Unix seconds) instead of the system clock.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    pub fn with_clock(mut self, clock: Clock) -> Cache {
        self.clock = clock;
        self
    }

    /// Use `f` instead of `statvfs` for the disk guard.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    pub fn with_fs_stats(mut self, f: FsStatsFn) -> Cache {
        self.fs_stats = f;
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this cache never writes.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The retention and guard policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// This cache (same root, policy, leases) with notes of its own, starting empty: what
    /// its restores and saves note is drained from it alone, whatever other handles do
    /// meanwhile on other threads.
    pub fn with_own_notes(&self) -> Cache {
        Cache {
            notes: Arc::default(),
            ..self.clone()
        }
    }

    /// Take the warnings this handle's restores and saves collected since its last call
    /// (damaged entries discarded, entries held by other jobs, saves skipped for lack of
    /// space, ...). The evictions collected meanwhile are dropped; see
    /// [`Cache::drain_notes`] for both.
    pub fn take_notes(&self) -> Vec<String> {
        self.drain_notes().warnings
    }

    /// Take everything this handle's restores and saves noted since its last call: the
    /// warnings of [`Cache::take_notes`] and the entries evicted to make room.
    pub fn drain_notes(&self) -> Notes {
        std::mem::take(&mut *self.notes.lock().expect("notes lock"))
    }

    fn with_notes(&self, f: impl FnOnce(&mut Notes)) {
        f(&mut self.notes.lock().expect("notes lock"));
    }

    fn note(&self, s: String) {
        self.with_notes(|n| n.warnings.push(s));
    }

    fn note_eviction(&self, e: Eviction) {
        self.with_notes(|n| n.evicted.push(e));
    }

    // The path builders below take a `Stage` (only three names) and a key that was
    // checked by `key::check_key` (at the public API, or when read back from a directory
    // name or a file): the paths they build stay under the root.

    fn stage_dir(&self, stage: Stage) -> PathBuf {
        self.root.join("entries").join(stage.as_str())
    }

    fn dir_of(&self, stage: Stage, key: &str) -> PathBuf {
        debug_assert!(key::check_key(key).is_ok(), "unchecked key {key:?}");
        self.stage_dir(stage).join(key)
    }

    fn lock_path(&self, stage: Stage, key: &str) -> PathBuf {
        debug_assert!(key::check_key(key).is_ok(), "unchecked key {key:?}");
        self.root
            .join("locks")
            .join(stage.as_str())
            .join(format!("{key}.lock"))
    }

    fn usage_path(&self, stage: Stage, key: &str) -> PathBuf {
        debug_assert!(key::check_key(key).is_ok(), "unchecked key {key:?}");
        self.root
            .join("usage")
            .join(stage.as_str())
            .join(format!("{key}.json"))
    }

    /// Directory of the entry for `key` (it may not exist).
    pub fn entry_dir(&self, key: &CacheKey) -> PathBuf {
        if key::check_key(&key.key).is_err() {
            // Never a path built from an invalid key: a name that cannot exist.
            return self.stage_dir(key.stage).join("invalid-key");
        }
        self.dir_of(key.stage, &key.key)
    }

    /// Whether an entry for `key` is listed (complete, or moved out by a running job):
    /// its directory holds an `entry.json` that reads back as this stage and key.
    pub fn contains(&self, key: &CacheKey) -> bool {
        key::check_key(&key.key).is_ok()
            && read_info(&self.entry_dir(key), key.stage, &key.key).is_ok()
    }

    /// Read an entry's `entry.json`.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    ///
    /// Errors: missing or unparsable.
    pub fn info(&self, key: &CacheKey) -> Result<EntryInfo> {
        key::check_key(&key.key)?;
        read_info(&self.entry_dir(key), key.stage, &key.key)
    }

    /// A leased temporary path under `tmp/` (see `scratch.rs`).
    fn new_tmp(&self, what: &str) -> Result<Scratch> {
        Scratch::in_root(&self.root, what)
            .with_context(|| format!("create a temporary path under {}", self.root.display()))
    }

    /// Unlist and delete an entry. The caller holds its exclusive lease (or knows no one
    /// can). The rename makes the removal atomic for readers; the deletion that follows
    /// may be interrupted, leaving only a `tmp/` dir. Evictions delete at once (the disk
    /// guard measures the space they free); other discards delete in the background.
    fn discard_now(&self, stage: Stage, key: &str, now: bool) {
        self.discard_path(&self.dir_of(stage, key), now);
        let _ = fs::remove_file(self.usage_path(stage, key));
    }

    /// Unlist the directory `dir` (a child of a stage dir) by renaming it under `tmp/`,
    /// then delete it there (now, or in the background). The rename moves a symlink as
    /// a link, and the deletion never follows one.
    fn discard_path(&self, dir: &Path, now: bool) {
        let Ok(trash) = self.new_tmp("trash") else {
            return;
        };
        if fs::rename(dir, trash.path()).is_ok() {
            if now {
                drop(trash);
            } else {
                delete_in_background(trash);
            }
        }
    }

    /// [`Cache::discard_now`] in the background.
    fn discard(&self, stage: Stage, key: &str) {
        self.discard_now(stage, key, false);
    }

    /// The usage record of an entry, or (missing, unreadable, out of range, or claiming a
    /// use more than a day in the future, which would keep the entry forever) a fresh
    /// one at `created`.
    fn usage(&self, stage: Stage, key: &str, created: u64) -> Usage {
        let now = (self.clock)();
        let created = if created > now.saturating_add(86_400) {
            0
        } else {
            created
        };
        untrusted::read_meta(&self.usage_path(stage, key))
            .ok()
            .and_then(|t| serde_json::from_str::<Usage>(&t).ok())
            .filter(|u| u.last_used_unix <= now.saturating_add(86_400) && u.hits <= MAX_COUNT)
            .unwrap_or(Usage {
                last_used_unix: created,
                hits: 0,
            })
    }

    /// Record a use of an entry (write to a temp file, then rename: readers never see a
    /// torn record). Concurrent hits may lose a count; last use is what retention needs.
    fn touch(&self, stage: Stage, key: &str, hit: bool) {
        if self.read_only {
            return;
        }
        let mut u = self.usage(stage, key, 0);
        u.last_used_unix = (self.clock)();
        if hit {
            u.hits = u.hits.saturating_add(1);
        }
        let _ = publish::write_file(
            &self.usage_path(stage, key),
            &serde_json::to_vec(&u).unwrap_or_default(),
        );
    }

    fn log_event(&self, ev: &stats::Event) {
        if self.read_only {
            return;
        }
        let dir = self.root.join("log");
        let _ = fs::create_dir_all(&dir);
        // Keep the log bounded: past 8 MiB it becomes `events.1.jsonl` (one rename, so a
        // concurrent appender writes to one file or the other, never loses its line
        // mid-way), replacing the previous generation. `cache stats` reads both.
        let path = dir.join("events.jsonl");
        if fs::symlink_metadata(&path).is_ok_and(|m| m.len() > stats::LOG_ROTATE_BYTES) {
            let _ = fs::rename(&path, dir.join("events.1.jsonl"));
        }
        // Never through a symlink, never blocking on a FIFO put there.
        if let Ok(mut f) = untrusted::open_append(&path) {
            // One write of one line: O_APPEND keeps concurrent lines whole.
            let mut line = serde_json::to_vec(ev).unwrap_or_default();
            line.push(b'\n');
            let _ = f.write_all(&line);
        }
    }

    /// Record how long a repo's steps took after a restore of kind `restored` (`hit`,
    /// `partial hit`, `miss`, `kept`, `error`), for `cache stats`. Read-only caches log
    /// nothing.
    pub fn log_build(&self, key: &CacheKey, restored: &str, secs: f64) {
        let outcome = format!("build-after-{}", restored.replace(' ', "-"));
        self.log_event(&stats::Event::new(
            (self.clock)(),
            key.stage.as_str(),
            &key.key,
            &outcome,
            None,
            0,
            0,
            secs,
        ));
    }

    /// Read `entry.json` and `manifest.tsv` of the entry dir `dir`, which must hold
    /// `stage` entry `key`, and check them against its `data/`: the manifest's hash (the
    /// entry's content hash: a data file tampered with together with its hash line in
    /// the manifest fails here), then every file's presence, kind, size and mtime, and
    /// that every symlink resolves inside `data/` (see [`Manifest::check_structure`]).
    /// File contents are not rehashed: that is `cache verify`'s and the remote's check.
    fn load_checked(
        &self,
        dir: &Path,
        stage: Stage,
        key: &str,
    ) -> Result<(EntryInfo, Manifest), Check> {
        if !untrusted::is_real_dir(dir) {
            // A symlinked entry dir would make a move restore take the data of whatever
            // it points to.
            return Err(Check::Damaged(
                "the entry is not a directory (a symlink?)".into(),
            ));
        }
        let info = read_info(dir, stage, key).map_err(|e| Check::Damaged(format!("{e:#}")))?;
        let data = dir.join("data");
        if !data.exists() && fs::symlink_metadata(&data).is_err() {
            return Err(Check::Stub);
        }
        if !untrusted::is_real_dir(&data) {
            return Err(Check::Damaged("data is not a directory".into()));
        }
        if info.schema_version != ENTRY_SCHEMA {
            return Err(Check::Damaged(format!(
                "entry format {} (expected {ENTRY_SCHEMA})",
                info.schema_version
            )));
        }
        let text = untrusted::read_meta(&dir.join("manifest.tsv"))
            .map_err(|e| Check::Damaged(format!("manifest.tsv: {e}")))?;
        if fsutil::sha256_hex(&text) != info.content_hash {
            return Err(Check::Damaged(
                "manifest.tsv does not match the entry's content hash".into(),
            ));
        }
        let m = Manifest::from_tsv(&text).map_err(|e| Check::Damaged(format!("{e:#}")))?;
        let damage = m
            .check_structure(&data)
            .map_err(|e| Check::Damaged(format!("{e:#}")))?;
        if !damage.is_empty() {
            return Err(Check::Damaged(damage.join("; ")));
        }
        Ok((info, m))
    }

    /// The entry directories of `stage` whose names are valid keys, with their names.
    /// A stage dir that is not a real directory holds none.
    fn stage_entries(&self, stage: Stage) -> Vec<(String, PathBuf)> {
        let dir = self.stage_dir(stage);
        if !untrusted::is_real_dir(&dir) {
            return Vec::new();
        }
        fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                key::check_key(&name).ok()?;
                Some((name, e.path()))
            })
            .collect()
    }

    /// Keys to try for `key`, best first: the exact key, then entries of the same stage
    /// whose key starts with [`CacheKey::restore_prefix`], newest first.
    fn candidates(&self, key: &CacheKey) -> Vec<String> {
        let mut out = vec![key.key.clone()];
        let prefix = key.restore_prefix();
        let mut others: Vec<(u64, String)> = self
            .stage_entries(key.stage)
            .into_iter()
            .filter_map(|(name, path)| {
                (name != key.key && name.starts_with(prefix)).then_some(())?;
                let info = read_info(&path, key.stage, &name).ok()?;
                Some((info.created_unix, name))
            })
            .collect();
        others.sort_by(|a, b| b.cmp(a));
        out.extend(others.into_iter().map(|(_, k)| k));
        out
    }

    /// Put the entry for `key` (or, on a miss, the nearest older entry with the same
    /// restore prefix) into `dst`. With `merge`, files already in `dst` are kept and the
    /// entry is always copied (used for `$CARGO_HOME`, which a laptop already fills);
    /// without it, a non-empty `dst` is kept as it is and reported as [`Restore::Kept`].
    ///
    /// The strategy (move or copy) is chosen as the module docs say. Damaged entries are
    /// discarded (a note says which) and the next candidate is tried. Before restoring,
    /// the disk guard evicts least recently used entries while the filesystem is too full.
    ///
    /// Errors: an invalid key ([`key::check_key`]); I/O errors while copying or moving,
    /// after which `dst` may hold a partial tree that the caller removes. Callers turn
    /// errors into a warning: a build never depends on the cache.
    pub fn restore(&self, key: &CacheKey, dst: &Path, merge: bool) -> Result<Restore> {
        key::check_key(&key.key)?;
        if !merge && fsutil::non_empty_dir(dst) {
            return Ok(Restore::Kept);
        }
        let start = Instant::now();
        if !self.read_only {
            self.guard(0, None);
        }
        let can_move = !self.read_only
            && !self.keep_trees
            && !merge
            && transfer::same_filesystem(&self.root.join("entries"), dst);
        let mut leased_by_others = Vec::new();
        for cand in self.candidates(key) {
            let dir = self.dir_of(key.stage, &cand);
            if fs::symlink_metadata(dir.join("entry.json")).is_err() {
                continue;
            }
            let attempt = if can_move {
                self.try_move(key, &cand, dst, start)?
            } else {
                Attempt::Copy
            };
            let attempt = match attempt {
                Attempt::Copy => self.try_copy(key, &cand, dst, merge, start)?,
                other => other,
            };
            match attempt {
                Attempt::Done(r) => return Ok(r),
                Attempt::Leased => leased_by_others.push(cand),
                Attempt::Next | Attempt::Copy => {}
            }
        }
        Ok(self.missed(key, dst, merge, &leased_by_others, start))
    }

    /// Restore candidate `cand` by moving its data into `dst` under its exclusive lease
    /// (the entry stays listed as a leased stub until the save). [`Attempt::Copy`] when
    /// the lease is taken by another job or the kernel refuses the rename across
    /// filesystems; [`Attempt::Next`] when the entry is a dead job's stub or damaged
    /// (both are discarded).
    ///
    /// Errors: the rename fails otherwise, or `dst` cannot be emptied.
    fn try_move(&self, key: &CacheKey, cand: &str, dst: &Path, start: Instant) -> Result<Attempt> {
        let stage = key.stage;
        let dir = self.dir_of(stage, cand);
        let Some(lock) = EntryLock::try_take(&self.lock_path(stage, cand), Mode::Exclusive, true)?
        else {
            return Ok(Attempt::Copy);
        };
        let (info, manifest) = match self.load_checked(&dir, stage, cand) {
            Ok(x) => x,
            Err(Check::Stub) => {
                // Its lease is free, so the job that moved it out is gone.
                self.discard(stage, cand);
                return Ok(Attempt::Next);
            }
            Err(Check::Damaged(why)) => {
                self.note(format!(
                    "{stage} entry {cand} is damaged ({why}): discarded, building without it"
                ));
                self.discard(stage, cand);
                return Ok(Attempt::Next);
            }
        };
        fsutil::remove_tree(dst)?;
        match transfer::move_tree(&dir.join("data"), dst) {
            Ok(()) => {
                self.lease(dst, Some(cand), Some(lock), Some(manifest), Strategy::Moved);
                Ok(Attempt::Done(self.restored(
                    key,
                    cand,
                    &info,
                    start,
                    Strategy::Moved,
                )))
            }
            // The device check said "same filesystem" but the kernel disagrees (a bind
            // mount, an overlay): copy instead. A failed rename moved nothing.
            Err(e) if e.raw_os_error() == Some(libc::EXDEV) => Ok(Attempt::Copy),
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "move {} into {}",
                dir.display(),
                dst.display()
            ))),
        }
    }

    /// Restore candidate `cand` by copying its data into `dst` under a shared lease.
    /// [`Attempt::Leased`] when a job holds it exclusively (moved out);
    /// [`Attempt::Next`] when it is damaged (discarded unless read-only) or changed
    /// under a lease-less read-only copy.
    ///
    /// Without `merge` the copy goes into a leased sibling of `dst` and is renamed into
    /// place once whole: a restore killed halfway leaves no partial `dst` (which the next
    /// run would keep as the user's own tree), only a sibling the next restore removes.
    ///
    /// Errors: the copy fails (`dst` may hold a partial tree the caller removes).
    fn try_copy(
        &self,
        key: &CacheKey,
        cand: &str,
        dst: &Path,
        merge: bool,
        start: Instant,
    ) -> Result<Attempt> {
        let stage = key.stage;
        let (dir, lock_path) = (self.dir_of(stage, cand), self.lock_path(stage, cand));
        let lock = EntryLock::try_take(&lock_path, Mode::Shared, !self.read_only)?;
        if lock.is_none() && fs::symlink_metadata(&lock_path).is_ok() {
            return Ok(Attempt::Leased);
        }
        let (info, manifest) = match self.load_checked(&dir, stage, cand) {
            Ok(x) => x,
            Err(Check::Stub) => return Ok(Attempt::Leased),
            Err(Check::Damaged(why)) => {
                drop(lock);
                self.damaged_on_copy(stage, cand, &why)?;
                return Ok(Attempt::Next);
            }
        };
        if merge {
            let stats = transfer::par_copy(&dir.join("data"), dst, true, &|_| false)
                .with_context(|| format!("copy {stage} entry {cand}"))?;
            drop(lock);
            return Ok(Attempt::Done(self.copied(key, cand, info, stats, start)));
        }
        let staged = StagedCopy::new(dst)?;
        let copied = transfer::par_copy(&dir.join("data"), staged.path(), false, &|_| false);
        // A read-only cache cannot create a missing lock file, so it may copy without a
        // lease while a job moves or replaces the entry: then the copy fails or the entry
        // is no longer the one checked. Treat that as gone (try the next candidate),
        // never as a hit or an error. Found by `cargo xtask stress` (concurrency).
        if lock.is_none() {
            let same = copied.is_ok()
                && matches!(self.load_checked(&dir, stage, cand), Ok((_, m)) if m == manifest);
            if !same {
                self.note(format!(
                    "{stage} entry {cand} changed while it was copied (read-only, no lease): not restored"
                ));
                return Ok(Attempt::Next);
            }
        }
        let stats = copied.with_context(|| format!("copy {stage} entry {cand}"))?;
        drop(lock);
        staged.into_place()?;
        if !self.read_only {
            self.lease(dst, Some(cand), None, Some(manifest), Strategy::Copied);
        }
        Ok(Attempt::Done(self.copied(key, cand, info, stats, start)))
    }

    /// The restore of a copied candidate, with the copy's counts.
    fn copied(
        &self,
        key: &CacheKey,
        cand: &str,
        info: EntryInfo,
        stats: fsutil::CopyStats,
        start: Instant,
    ) -> Restore {
        let info = EntryInfo {
            files: stats.files,
            bytes: stats.bytes,
            ..info
        };
        self.restored(key, cand, &info, start, Strategy::Copied)
    }

    /// A damaged candidate found by a copying restore: discarded when this cache may
    /// write and no job holds it, noted either way.
    fn damaged_on_copy(&self, stage: Stage, cand: &str, why: &str) -> Result<()> {
        let mut what = format!("{stage} entry {cand} is damaged ({why})");
        if self.read_only {
            what += ": skipped (read-only cache)";
        } else if let Some(_x) =
            EntryLock::try_take(&self.lock_path(stage, cand), Mode::Exclusive, true)?
        {
            self.discard(stage, cand);
            what += ": discarded, building without it";
        }
        self.note(what);
        Ok(())
    }

    /// Remember that `dst` was restored (or, with `key` `None`, missed) by this process,
    /// so its save may move it into the cache.
    fn lease(
        &self,
        dst: &Path,
        key: Option<&str>,
        lock: Option<EntryLock>,
        manifest: Option<Manifest>,
        strategy: Strategy,
    ) {
        self.leases.lock().expect("leases").insert(
            dst.to_path_buf(),
            Lease {
                key: key.map(str::to_owned),
                lock,
                manifest,
                strategy,
            },
        );
    }

    /// A restore found nothing usable: note the entries other jobs hold, claim `dst` for
    /// the save (the job builds it from scratch), and log the miss.
    fn missed(
        &self,
        key: &CacheKey,
        dst: &Path,
        merge: bool,
        leased_by_others: &[String],
        start: Instant,
    ) -> Restore {
        let stage = key.stage;
        if !leased_by_others.is_empty() {
            self.note(format!(
                "{stage} entries held by other jobs, not restored: {}",
                leased_by_others.join(", ")
            ));
        }
        if !merge && !self.read_only {
            self.lease(dst, None, None, None, Strategy::Copied);
        }
        self.log_event(&stats::Event::new(
            (self.clock)(),
            stage.as_str(),
            &key.key,
            "miss",
            None,
            0,
            0,
            start.elapsed().as_secs_f64(),
        ));
        Restore::Miss
    }

    fn restored(
        &self,
        key: &CacheKey,
        cand: &str,
        info: &EntryInfo,
        start: Instant,
        strategy: Strategy,
    ) -> Restore {
        let stage = key.stage;
        self.touch(stage, cand, true);
        let secs = start.elapsed().as_secs_f64();
        let exact = cand == key.key;
        self.log_event(&stats::Event::new(
            (self.clock)(),
            stage.as_str(),
            &key.key,
            if exact { "hit" } else { "partial" },
            Some(strategy),
            info.bytes,
            0,
            secs,
        ));
        if exact {
            Restore::Hit {
                files: info.files,
                bytes: info.bytes,
                secs,
                strategy,
            }
        } else {
            Restore::Partial {
                from: cand.to_owned(),
                files: info.files,
                bytes: info.bytes,
                secs,
                strategy,
            }
        }
    }

    /// Save the tree at `src` as the entry for `key`, leaving out what `skip` prunes
    /// (paths relative to `src`).
    ///
    /// When this process restored (or created) `src` through [`Cache::restore`] and it is
    /// on the cache's filesystem, the pruned paths are deleted from `src` and the tree is
    /// renamed into the cache (O(1)); `src` is gone afterwards. An exact hit with nothing
    /// changed after pruning writes nothing ([`Save::Unchanged`]). Otherwise the pruned
    /// tree is copied. Either way the entry is written under `tmp/` and published with one
    /// rename; if another job published the key first, ours is discarded
    /// ([`Save::Exists`]). Before a copy, the disk guard makes room or skips the save
    /// ([`Save::NoSpace`]); after a save, retention and the guard run.
    ///
    /// Errors: an invalid key ([`key::check_key`]) or I/O errors; nothing partial is ever
    /// published.
    pub fn save(&self, key: &CacheKey, src: &Path, skip: &dyn Fn(&Path) -> bool) -> Result<Save> {
        key::check_key(&key.key)?;
        let lease = self.leases.lock().expect("leases").remove(src);
        if self.read_only {
            return Ok(Save::Skipped);
        }
        let stage = key.stage;
        if !src.is_dir() {
            // The tree we moved out is gone: the entry it came from is consumed.
            self.consume(stage, lease.as_ref());
            return Ok(Save::Empty);
        }
        let start = Instant::now();
        // Bytes before pruning, for the report and the disk guard. A target dir is walked
        // whole; for the `$CARGO_HOME` stages only what the entry keeps is counted (the
        // rest, e.g. `registry/src`, can be gigabytes nobody asked to measure).
        let raw = if key.stage == Stage::Target {
            fsutil::tree_size(src).bytes
        } else {
            kept_size(src, skip)
        };
        // A symlink resolving outside the tree would be recreated by every restore, and a
        // restore merging into that tree could then write through it: such a tree is not
        // saved (issue 8; resolved, not read, since issue 13). A moved-out entry it came
        // from is consumed. Special files (a FIFO left under `target/tmp/`, a socket) are
        // left out with a warning: opening a FIFO to hash it would block the save forever.
        let scan = scan_tree(src, skip);
        if !scan.escaping.is_empty() {
            self.consume(stage, lease.as_ref());
            anyhow::bail!(
                "{stage} entry {} not saved: symlinks point outside the tree ({})",
                key.key,
                scan.escaping.join(", ")
            );
        }
        if !scan.special.is_empty() {
            self.note(format!(
                "{stage} entry {}: left out {} special file(s) (FIFOs, sockets, devices are never cached): {}",
                key.key,
                scan.special.len(),
                scan.special
                    .iter()
                    .take(5)
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let skip = &|p: &Path| skip(p) || scan.special.contains(p);
        // A tree that is a symlink itself is copied, never renamed into the cache.
        let lease = lease.filter(|_| untrusted::is_real_dir(src));
        let result = match lease {
            Some(l)
                if !self.keep_trees
                    && transfer::same_filesystem(&self.root.join("entries"), src) =>
            {
                self.save_by_move(key, src, skip, l, raw, start)
            }
            _ => self.save_by_copy(key, src, skip, raw, start),
        };
        if let Ok(s) = &result {
            self.saved(key, s, raw, start);
        }
        result
    }

    /// After a save of `key` that came to `s`: log it, record the use, then apply
    /// retention and the disk guard (never to `key` itself), noting what they did.
    fn saved(&self, key: &CacheKey, s: &Save, raw: u64, start: Instant) {
        let stage = key.stage;
        let (outcome, strategy, bytes) = match *s {
            Save::Saved {
                bytes, strategy, ..
            } => ("saved", Some(strategy), bytes),
            Save::Unchanged {
                bytes, strategy, ..
            } => ("unchanged", Some(strategy), bytes),
            Save::Exists => ("exists", None, 0),
            Save::NoSpace => ("no-space", None, 0),
            Save::Skipped | Save::Empty => ("skipped", None, 0),
        };
        self.log_event(&stats::Event::new(
            (self.clock)(),
            stage.as_str(),
            &key.key,
            outcome,
            strategy,
            bytes,
            raw,
            start.elapsed().as_secs_f64(),
        ));
        if matches!(s, Save::Saved { .. } | Save::Unchanged { .. }) {
            self.touch(stage, &key.key, false);
        }
        let protect = [(stage.as_str().to_owned(), key.key.clone())];
        for e in self.apply_retention_except(false, &protect) {
            self.note_eviction(e);
        }
        if let Some(why) = self.guard(0, Some(&protect[0])) {
            self.note(format!(
                "cache filesystem still too full after evicting every unleased entry: {why}"
            ));
        }
    }

    /// Unlist the entry a tree was moved out of (`lease` holds it exclusively) when that
    /// tree will not go back: the entry is consumed.
    fn consume(&self, stage: Stage, lease: Option<&Lease>) {
        if let Some(Lease {
            key: Some(k),
            lock: Some(_held),
            ..
        }) = lease
        {
            self.discard(stage, k);
        }
    }

    fn save_by_move(
        &self,
        key: &CacheKey,
        src: &Path,
        skip: &dyn Fn(&Path) -> bool,
        lease: Lease,
        raw: u64,
        start: Instant,
    ) -> Result<Save> {
        let stage = key.stage;
        // Pruned paths are renamed aside (O(1) each) and deleted on a background thread:
        // deleting tens of thousands of incremental files takes seconds, and the next
        // repo's build need not wait for it.
        let trash = self.new_tmp(&format!("trash-prune-{stage}"))?;
        transfer::remove_selected(src, skip, Some(trash.path())).context("prune before save")?;
        delete_in_background(trash);
        let manifest = Manifest::build(src, lease.manifest.as_ref())?;
        let exact = lease.key.as_deref() == Some(key.key.as_str());
        if exact && lease.manifest.as_ref() == Some(&manifest) {
            if lease.strategy == Strategy::Moved {
                transfer::move_tree(src, &self.entry_dir(key).join("data"))
                    .with_context(|| format!("return {} to the cache", src.display()))?;
            }
            return Ok(Save::Unchanged {
                bytes: manifest.bytes(),
                raw_bytes: raw,
                secs: start.elapsed().as_secs_f64(),
                strategy: lease.strategy,
            });
        }
        // Moving out consumed the old entry: unlist its stub (we hold its lease).
        if let (Some(k), Some(_)) = (&lease.key, &lease.lock) {
            self.discard(stage, k);
        }
        if self.contains(key) {
            return Ok(Save::Exists);
        }
        let tmp = self.new_tmp(&format!("{stage}-{}", key.key))?;
        let r = (|| -> Result<()> {
            fs::create_dir_all(tmp.path())?;
            self.write_meta(tmp.path(), key, &manifest, raw)?;
            transfer::move_tree(src, &tmp.path().join("data"))?;
            Ok(())
        })();
        if let Err(e) = r {
            // Dropping the lease removes what was written.
            return Err(e.context(format!("save {stage} entry {}", key.key)));
        }
        drop(lease.lock);
        self.publish(key, tmp.path(), &manifest, raw, start, Strategy::Moved)
    }

    fn save_by_copy(
        &self,
        key: &CacheKey,
        src: &Path,
        skip: &dyn Fn(&Path) -> bool,
        raw: u64,
        start: Instant,
    ) -> Result<Save> {
        let stage = key.stage;
        if self.contains(key) {
            return Ok(Save::Exists);
        }
        // The pruned tree is at most the raw one; make room for that much.
        if let Some(why) = self.guard(raw, None) {
            self.note(format!(
                "{stage} entry {} not saved: {why}, even after evicting every unleased entry \
                 (free space on the cache's filesystem or lower [cache] disk-max-used-percent)",
                key.key
            ));
            return Ok(Save::NoSpace);
        }
        let tmp = self.new_tmp(&format!("{stage}-{}", key.key))?;
        let data = tmp.path().join("data");
        let r = (|| -> Result<Manifest> {
            transfer::par_copy(src, &data, false, skip)?;
            let m = Manifest::build(&data, None)?;
            self.write_meta(tmp.path(), key, &m, raw)?;
            Ok(m)
        })();
        match r {
            Ok(m) => self.publish(key, tmp.path(), &m, raw, start, Strategy::Copied),
            // Dropping the lease removes what was written.
            Err(e) => Err(e.context(format!("save {stage} entry {}", key.key))),
        }
    }

    fn write_meta(&self, dir: &Path, key: &CacheKey, m: &Manifest, raw: u64) -> Result<()> {
        let tsv = m.to_tsv();
        let info = EntryInfo {
            schema_version: ENTRY_SCHEMA,
            stage: key.stage,
            key: EntryKey::new(&key.key)?,
            inputs: key.inputs.clone(),
            created_unix: (self.clock)(),
            files: m.count(),
            bytes: m.bytes(),
            raw_bytes: raw,
            content_hash: fsutil::sha256_hex(&tsv),
        };
        fs::write(dir.join("manifest.tsv"), tsv)?;
        fs::write(dir.join("entry.json"), serde_json::to_vec_pretty(&info)?)?;
        Ok(())
    }

    /// Publish the complete entry at `tmp` as `key` with one rename.
    fn publish(
        &self,
        key: &CacheKey,
        tmp: &Path,
        m: &Manifest,
        raw: u64,
        start: Instant,
        strategy: Strategy,
    ) -> Result<Save> {
        if let Some(gate) = std::env::var_os(GATE_ENV).map(PathBuf::from) {
            let mut waiting = gate.clone().into_os_string();
            waiting.push(format!(".waiting.{}", std::process::id()));
            let _ = fs::write(&waiting, b"");
            while !gate.exists() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        }
        let dst = self.entry_dir(key);
        self.clear_damaged(key);
        // `Exists` covers ENOTEMPTY/EEXIST: an entry held the key at the rename, even if its
        // holder has unlisted it since (a job replacing it; `cargo xtask stress` hit that
        // window). Another writer won the race and ours is dropped (first writer wins, as
        // with actions/cache).
        match publish::publish_dir(tmp, &dst)
            .with_context(|| format!("publish cache entry {}", dst.display()))?
        {
            Published::Renamed => Ok(Save::Saved {
                files: m.count(),
                bytes: m.bytes(),
                raw_bytes: raw,
                secs: start.elapsed().as_secs_f64(),
                strategy,
            }),
            Published::Exists => Ok(Save::Exists),
        }
    }

    /// Before publishing `key`: a directory in its place that is not a listed entry
    /// (its `entry.json` missing, unreadable, out of range or naming another key, or the
    /// directory a symlink) would make every save of the key "exist" forever while no
    /// restore can use it. Remove it under its exclusive lease, with a warning.
    fn clear_damaged(&self, key: &CacheKey) {
        let dir = self.entry_dir(key);
        if fs::symlink_metadata(&dir).is_err() {
            return;
        }
        let why = match read_info(&dir, key.stage, &key.key) {
            Ok(_) if untrusted::is_real_dir(&dir) => return,
            Ok(_) => "it is a symlink".to_owned(),
            Err(e) => format!("{e:#}"),
        };
        if let Ok(Some(_held)) =
            EntryLock::try_take(&self.lock_path(key.stage, &key.key), Mode::Exclusive, true)
        {
            self.discard_path(&dir, true);
            self.note(format!(
                "{} entry {} was damaged ({why}): discarded, saving a fresh one",
                key.stage, key.key
            ));
        }
    }

    /// Every listed entry with its usage, sorted by stage and key; unreadable entries
    /// are skipped (see [`Cache::unlisted`] for them).
    pub fn list(&self) -> Vec<Listed> {
        let mut out = self.scan().0;
        out.sort_by(|a, b| (a.info.stage, &a.info.key).cmp(&(b.info.stage, &b.info.key)));
        out
    }

    /// The directories under `entries/<stage>/` that are not listed entries: a name that
    /// is not a valid key, an `entry.json` that is missing, unreadable, out of range or
    /// names another entry, or a symlink in place of the directory. They hold disk space
    /// and block their key; retention, the disk guard, a save of their key and `cache
    /// verify --discard` remove them.
    pub fn unlisted(&self) -> Vec<Unlisted> {
        self.scan().1
    }

    /// Every child of the stage dirs, as a listed entry or an unlisted one.
    fn scan(&self) -> (Vec<Listed>, Vec<Unlisted>) {
        let (mut listed, mut unlisted) = (Vec::new(), Vec::new());
        for stage in Stage::ALL {
            let dir = self.stage_dir(stage);
            if !untrusted::is_real_dir(&dir) {
                continue;
            }
            for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                let found = if key::check_key(&name).is_err() || e.file_name().to_str().is_none() {
                    Err("its name is not a valid cache key".to_owned())
                } else {
                    match read_info(&path, stage, &name) {
                        Ok(info) if untrusted::is_real_dir(&path) => Ok(info),
                        Ok(_) => Err("it is a symlink, not a directory".to_owned()),
                        Err(err) => Err(format!("{err:#}")),
                    }
                };
                match found {
                    Ok(info) => {
                        let usage = self.usage(stage, &name, info.created_unix);
                        let leased = !path.join("data").is_dir();
                        listed.push(Listed {
                            info,
                            usage,
                            leased,
                        });
                    }
                    // Gone since the listing (discarded, or moved by its job): not unlisted.
                    Err(_) if fs::symlink_metadata(&path).is_err() => {}
                    Err(why) => unlisted.push(Unlisted {
                        stage,
                        name,
                        why,
                        path,
                    }),
                }
            }
        }
        (listed, unlisted)
    }

    /// Every listed entry's `entry.json`, sorted by stage and key.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    pub fn entries(&self) -> Vec<EntryInfo> {
        self.list().into_iter().map(|l| l.info).collect()
    }

    fn uses(&self) -> Vec<EntryUse> {
        self.list()
            .into_iter()
            .map(|l| EntryUse {
                // A shared probe: it conflicts only with an exclusive holder (an entry
                // moved out or being evicted), and never makes a concurrent reader miss.
                leased: l.leased
                    || EntryLock::is_held(&self.lock_path(l.info.stage, &l.info.key), Mode::Shared),
                stage: l.info.stage.as_str().to_owned(),
                key: l.info.key.into(),
                bytes: l.info.bytes,
                last_used_unix: l.usage.last_used_unix,
            })
            .collect()
    }

    /// Apply the retention policy now: evict what [`retention::retention_victims`] picks
    /// (entries that a job holds are skipped), and every unlisted directory
    /// ([`Cache::unlisted`]) no job holds. With `dry_run`, only report. Returns the
    /// evictions (made or planned).
    pub fn apply_retention(&self, dry_run: bool) -> Vec<Eviction> {
        self.apply_retention_except(dry_run, &[])
    }

    fn apply_retention_except(&self, dry_run: bool, protect: &[(String, String)]) -> Vec<Eviction> {
        let mut out = self.discard_unlisted(dry_run || self.read_only);
        let uses: Vec<EntryUse> = self
            .uses()
            .into_iter()
            .map(|mut u| {
                u.leased |= protect.iter().any(|(s, k)| *s == u.stage && *k == u.key);
                u
            })
            .collect();
        let victims = retention::retention_victims(&uses, &self.policy, (self.clock)());
        if dry_run || self.read_only {
            out.extend(victims);
            return out;
        }
        out.extend(
            victims
                .into_iter()
                .filter(|v| self.evict_named(&v.stage, &v.key)),
        );
        out
    }

    /// Remove every unlisted directory that no job holds (with `dry_run`, only say
    /// which), as evictions whose reason says what was wrong.
    fn discard_unlisted(&self, dry_run: bool) -> Vec<Eviction> {
        let mut out = Vec::new();
        for u in self.unlisted() {
            let bytes = if untrusted::is_real_dir(&u.path) {
                fsutil::tree_size(&u.path).bytes
            } else {
                0
            };
            let gone = dry_run || self.discard_unlisted_one(&u);
            if gone {
                out.push(Eviction {
                    stage: u.stage.as_str().to_owned(),
                    key: u.name.clone(),
                    bytes,
                    reason: format!("not a valid entry ({})", u.why),
                });
            }
        }
        out
    }

    /// Remove one unlisted directory: under its key's exclusive lease when its name is a
    /// key (a job may hold that key), else at once (no job can name it). Under the lease
    /// it is checked again: since the listing, it may have been removed and a whole entry
    /// published under its name.
    fn discard_unlisted_one(&self, u: &Unlisted) -> bool {
        if key::check_key(&u.name).is_err() {
            self.discard_path(&u.path, true);
            return true;
        }
        match EntryLock::try_take(&self.lock_path(u.stage, &u.name), Mode::Exclusive, true) {
            Ok(Some(_held)) if self.still_unlisted(u) => {
                self.discard_now(u.stage, &u.name, true);
                true
            }
            _ => false,
        }
    }

    /// Whether `u` is still there and still not a listed entry.
    fn still_unlisted(&self, u: &Unlisted) -> bool {
        fs::symlink_metadata(&u.path).is_ok()
            && (!untrusted::is_real_dir(&u.path) || read_info(&u.path, u.stage, &u.name).is_err())
    }

    /// The unlisted directories, each confirmed under a shared lease on its key (every
    /// removal of an entry holds the exclusive one), so a directory that was only being
    /// discarded or replaced while it was listed is not reported. One a job holds is left
    /// out.
    fn confirmed_unlisted(&self) -> Vec<Unlisted> {
        self.unlisted()
            .into_iter()
            .filter(|u| {
                if key::check_key(&u.name).is_err() {
                    return true;
                }
                let lock_path = self.lock_path(u.stage, &u.name);
                match EntryLock::try_take(&lock_path, Mode::Shared, !self.read_only) {
                    Ok(Some(_lease)) => self.still_unlisted(u),
                    // Read-only and no lock file: no job ever leased it.
                    Ok(None) if fs::symlink_metadata(&lock_path).is_err() => self.still_unlisted(u),
                    _ => false,
                }
            })
            .collect()
    }

    /// [`Cache::evict`] of an entry named by strings (retention's records).
    fn evict_named(&self, stage: &str, key: &str) -> bool {
        match Stage::parse(stage) {
            Some(st) if key::check_key(key).is_ok() => self.evict(st, key),
            _ => false,
        }
    }

    /// Evict one entry if no job holds it. Returns whether it was removed.
    fn evict(&self, stage: Stage, key: &str) -> bool {
        match EntryLock::try_take(&self.lock_path(stage, key), Mode::Exclusive, true) {
            Ok(Some(_held)) => {
                self.discard_now(stage, key, true);
                true
            }
            _ => false,
        }
    }

    /// The disk guard: while the cache's filesystem would be too full with `extra` more
    /// bytes (see [`FsUsage::too_full`]), evict the least recently used entry that no job
    /// holds (never `protect`), after every unlisted directory. Returns `None` once within
    /// the policy, or why not when nothing more can be evicted. Filesystem errors count as
    /// within the policy (the guard must never fail a build).
    pub fn guard(&self, extra: u64, protect: Option<&(String, String)>) -> Option<String> {
        if self.read_only {
            return None;
        }
        let mut swept = false;
        loop {
            let usage = match (self.fs_stats)(&self.root) {
                Ok(u) => u,
                Err(_) => return None,
            };
            let why = usage.too_full(&self.policy, extra)?;
            if !swept {
                swept = true;
                let gone = self.discard_unlisted(false);
                if !gone.is_empty() {
                    gone.into_iter().for_each(|e| self.note_eviction(e));
                    continue;
                }
            }
            let uses: Vec<EntryUse> = self
                .uses()
                .into_iter()
                .filter(|u| !u.leased && protect.is_none_or(|(s, k)| *s != u.stage || *k != u.key))
                .collect();
            let order = retention::guard_order(&uses);
            // When evicting everything evictable would still not be enough, evict nothing:
            // emptying the cache for a save that cannot happen helps no one.
            let evictable = uses.iter().fold(0u64, |a, u| a.saturating_add(u.bytes));
            let best = FsUsage {
                total: usage.total,
                available: usage.available.saturating_add(evictable),
            };
            if best.too_full(&self.policy, extra).is_some() {
                return Some(why);
            }
            let evicted = order.into_iter().map(|i| &uses[i]).any(|u| {
                let ok = self.evict_named(&u.stage, &u.key);
                if ok {
                    self.note_eviction(Eviction {
                        stage: u.stage.clone(),
                        key: u.key.clone(),
                        bytes: u.bytes,
                        reason: why.clone(),
                    });
                }
                ok
            });
            if !evicted {
                return Some(why);
            }
        }
    }

    /// Check every entry against its manifest, rehashing every byte with `content`.
    /// Returns `(stage, key, damage)` per entry; empty damage = whole. Entries a job holds
    /// are reported as leased, not checked; unlisted directories as damaged.
    pub fn verify(&self, content: bool) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for l in self.list() {
            let (stage, key) = (l.info.stage, String::from(l.info.key));
            let lock_path = self.lock_path(stage, &key);
            let Ok(Some(_lock)) = EntryLock::try_take(&lock_path, Mode::Shared, !self.read_only)
            else {
                out.push((
                    stage.as_str().to_owned(),
                    key,
                    vec!["leased by a running job: not checked".into()],
                ));
                continue;
            };
            let dir = self.dir_of(stage, &key);
            // Unlisted between the listing and the lease (evicted, or consumed by the job
            // that had moved it out): gone, not damaged. Under the lease it cannot go.
            // Found by `cargo xtask stress` (concurrency: "verify found ... damaged: read
            // entry.json: No such file").
            if fs::symlink_metadata(dir.join("entry.json")).is_err() {
                continue;
            }
            let damage = match self.load_checked(&dir, stage, &key) {
                Ok((_, m)) if content => m
                    .check_content(&dir.join("data"))
                    .unwrap_or_else(|e| vec![format!("{e:#}")]),
                Ok(_) => Vec::new(),
                Err(Check::Stub) => vec!["leased stub without data".into()],
                Err(Check::Damaged(d)) => vec![d],
            };
            out.push((stage.as_str().to_owned(), key, damage));
        }
        // An unlisted directory is neither restored nor evicted by retention's records,
        // yet holds its disk space: report it too, so `verify --discard` removes it.
        // Found by `cargo xtask stress` (corruption scenario).
        for u in self.confirmed_unlisted() {
            out.push((u.stage.as_str().to_owned(), u.name, vec![u.why]));
        }
        out
    }

    /// Discard an entry, or an unlisted directory of that name (for `cache verify
    /// --discard`, `cache clear`). Returns whether it was removed (false when a job holds
    /// it, the stage is unknown or the cache is read-only).
    pub fn remove(&self, stage: &str, key: &str) -> bool {
        let Some(st) = Stage::parse(stage).filter(|_| !self.read_only) else {
            return false;
        };
        if key::check_key(key).is_ok() && self.evict(st, key) {
            return true;
        }
        self.unlisted()
            .iter()
            .find(|u| u.stage == st && u.name == key)
            .is_some_and(|u| self.discard_unlisted_one(u))
    }

    /// Remove `tmp/` paths whose writer is gone: their lease (`scratch.rs`) is free. A
    /// writer's pid plays no part (another PID namespace may share this cache).
    fn clean_stale_tmp(&self) {
        scratch::sweep_root(&self.root);
    }

    /// Remove leased stubs whose lease is free: the job that moved their data out died.
    fn clean_dead_stubs(&self) {
        for l in self.list().into_iter().filter(|l| l.leased) {
            self.evict(l.info.stage, &l.info.key);
        }
    }
}

/// A directory under `entries/<stage>/` that is not a listed entry (see
/// [`Cache::unlisted`]).
#[derive(Debug, Clone)]
pub struct Unlisted {
    /// The stage dir it is in.
    pub stage: Stage,
    /// Its name (lossily decoded; it may not be a valid key).
    pub name: String,
    /// What is wrong with it.
    pub why: String,
    /// Its path (a child of the stage dir).
    path: PathBuf,
}

/// Bytes of the regular files under `root` that `skip` keeps (skipped dirs are not
/// walked).
fn kept_size(root: &Path, skip: &dyn Fn(&Path) -> bool) -> u64 {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(root).map_or(true, |rel| !skip(rel)))
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// Delete a leased path under `tmp/` on a detached thread (dropping the lease removes
/// it). A process that exits first leaves the rest, its lease free, to the next
/// [`Cache::open`].
fn delete_in_background(dir: Scratch) {
    // If the thread cannot be spawned, the closure (and the lease in it) is dropped here,
    // which deletes at once.
    let _ = std::thread::Builder::new()
        .name("cache-trash".into())
        .spawn(move || drop(dir));
}

/// A copy being restored beside its destination: a leased sibling `.<name>.restore.*`
/// of `dst` (same filesystem, so one rename puts it into place). Leftovers of a killed
/// restore are removed by the next restore into the same destination.
struct StagedCopy {
    scratch: Scratch,
    dst: PathBuf,
}

impl StagedCopy {
    /// A fresh sibling of `dst` (not created), after removing dead ones.
    ///
    /// Errors: the parent cannot be created or the lease cannot be taken.
    fn new(dst: &Path) -> Result<StagedCopy> {
        let parent = dst
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let name = dst
            .file_name()
            .map_or_else(|| "restore".into(), |n| n.to_string_lossy().into_owned());
        let prefix = format!(".{name}.restore");
        scratch::sweep(parent, &format!("{prefix}."));
        let scratch = Scratch::create(parent, &prefix)
            .with_context(|| format!("create a restore dir beside {}", dst.display()))?;
        Ok(StagedCopy {
            scratch,
            dst: dst.to_path_buf(),
        })
    }

    fn path(&self) -> &Path {
        self.scratch.path()
    }

    /// Rename the complete copy over `dst` (empty or missing: the restore checked).
    ///
    /// Errors: `dst` cannot be removed or the rename fails.
    fn into_place(self) -> Result<()> {
        untrusted::remove_any(&self.dst)
            .with_context(|| format!("empty {}", self.dst.display()))?;
        fs::rename(self.scratch.path(), &self.dst)
            .with_context(|| format!("move the restored tree into {}", self.dst.display()))
    }
}

/// What one restore candidate came to.
enum Attempt {
    /// Restored.
    Done(Restore),
    /// Not usable now (damaged, a dead job's stub, changed under a copy): try the next.
    Next,
    /// Held by another job: try the next, and say so if nothing else is found.
    Leased,
    /// Not moved (the lease is taken, or another filesystem): copy it instead.
    Copy,
}

/// Why an entry could not be used.
enum Check {
    /// Listed but its data is moved out.
    Stub,
    /// Its files do not match its manifest (or its metadata is unreadable).
    Damaged(String),
}

/// What a save found in a tree (outside what its `skip` prunes).
struct TreeScan {
    /// Symlinks that resolve outside the tree (`rel -> target (why)`).
    escaping: Vec<String>,
    /// FIFOs, sockets and devices, relative to the tree: never opened, never saved.
    special: std::collections::BTreeSet<PathBuf>,
}

/// Walk `root` (not following symlinks) for [`TreeScan`].
fn scan_tree(root: &Path, skip: &dyn Fn(&Path) -> bool) -> TreeScan {
    let mut out = TreeScan {
        escaping: Vec::new(),
        special: Default::default(),
    };
    let walk = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(root).map_or(true, |r| !skip(r)))
        .flatten();
    for e in walk {
        let Ok(rel) = e.path().strip_prefix(root) else {
            continue;
        };
        let ft = e.file_type();
        if ft.is_symlink() {
            out.escaping.extend(untrusted::link_escapes(root, rel));
        } else if !ft.is_dir() && !ft.is_file() {
            out.special.insert(rel.to_path_buf());
        }
    }
    out
}

/// Read and check the `entry.json` in `dir`, which must be `stage` entry `key` (the
/// names of the directories it is in): a file that is not a regular file, is too large,
/// does not parse, is out of range ([`EntryInfo::check`]) or names another stage or key
/// is an error, so a key read back from a file never becomes a path (issue 13: a key of
/// `a.1.0/../../../../victim` made `cache list` delete outside the root).
///
/// Errors: the reason, for a "damaged" warning.
fn read_info(dir: &Path, stage: Stage, key: &str) -> Result<EntryInfo> {
    let p = dir.join("entry.json");
    let text = untrusted::read_meta(&p).with_context(|| format!("read {}", p.display()))?;
    let info: EntryInfo =
        serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))?;
    info.check()
        .with_context(|| format!("check {}", p.display()))?;
    anyhow::ensure!(
        info.stage == stage && info.key == *key,
        "{} names {} entry {}, but it is in the directory of {stage} entry {key}",
        p.display(),
        info.stage,
        info.key
    );
    Ok(info)
}

/// Hooks for the storage layer (`storage/local.rs`, `storage/tiered.rs`): importing an
/// entry fetched from elsewhere, leasing an entry while it is uploaded, and logging remote
/// transfers. Kept apart from the local engine above.
impl Cache {
    /// A fresh leased path under `tmp/` (not created): removed when the returned lease is
    /// dropped, or by the next [`Cache::open`] if this process dies first. For entries
    /// being fetched from a remote.
    ///
    /// Errors: the lease cannot be created (a read-only or unwritable root).
    pub fn scratch_dir(&self, what: &str) -> Result<Scratch> {
        self.new_tmp(what)
    }

    /// Publish the complete entry dir `dir` (`entry.json`, `manifest.tsv`, `data/`,
    /// written outside the cache, e.g. downloaded) as `key`, after checking it like a
    /// restore does (content hash of the manifest, file set, sizes, mtimes). `dir` should
    /// be a [`Cache::scratch_dir`] (same filesystem: one rename); it is consumed.
    ///
    /// [`Save::Saved`]: published. [`Save::Exists`]: the key was already listed (first
    /// writer wins). [`Save::Skipped`]: read-only cache, nothing written.
    ///
    /// Errors: the entry fails its check or an I/O error; `dir` is removed and nothing is
    /// published.
    pub fn import(&self, key: &CacheKey, dir: &Path) -> Result<Save> {
        key::check_key(&key.key)?;
        if self.read_only {
            let _ = fsutil::remove_tree(dir);
            return Ok(Save::Skipped);
        }
        if self.contains(key) {
            let _ = fsutil::remove_tree(dir);
            return Ok(Save::Exists);
        }
        let start = Instant::now();
        let (info, m) = match self.load_checked(dir, key.stage, &key.key) {
            Ok(x) => x,
            Err(Check::Stub) | Err(Check::Damaged(_)) if !dir.exists() => {
                anyhow::bail!("import {}: no such entry dir", dir.display())
            }
            Err(Check::Stub) => {
                let _ = fsutil::remove_tree(dir);
                anyhow::bail!("import {} entry {}: no data", key.stage, key.key)
            }
            Err(Check::Damaged(why)) => {
                let _ = fsutil::remove_tree(dir);
                anyhow::bail!("import {} entry {}: damaged ({why})", key.stage, key.key)
            }
        };
        let r = self.publish(key, dir, &m, info.raw_bytes, start, Strategy::Copied);
        if matches!(r, Ok(Save::Saved { .. })) {
            self.touch(key.stage, &key.key, false);
        }
        r
    }

    /// Take a shared lease on the entry for `key` (so no job moves it out or evicts it
    /// while it is read, e.g. uploaded). `Ok(None)`: the entry is not listed with data, or
    /// a job holds it exclusively (moved out).
    ///
    /// Errors: the lock file cannot be opened.
    pub fn share_entry(&self, key: &CacheKey) -> Result<Option<EntryLock>> {
        if key::check_key(&key.key).is_err() || !self.entry_dir(key).join("data").is_dir() {
            return Ok(None);
        }
        let lock = EntryLock::try_take(
            &self.lock_path(key.stage, &key.key),
            Mode::Shared,
            !self.read_only,
        )?;
        // Re-check under the lease: the data may have been moved out just before.
        Ok(lock.filter(|_| self.entry_dir(key).join("data").is_dir()))
    }

    /// Record a remote transfer in the event log (`remote-hit`, `remote-miss`,
    /// `remote-error`, `uploaded`, `upload-exists`, `upload-error`); `bytes` are bytes
    /// over the wire, `secs` wall-clock seconds. Read-only caches log nothing.
    pub fn log_remote(&self, key: &CacheKey, outcome: &str, bytes: u64, raw_bytes: u64, secs: f64) {
        self.log_event(&stats::Event::new(
            (self.clock)(),
            key.stage.as_str(),
            &key.key,
            outcome,
            None,
            bytes,
            raw_bytes,
            secs,
        ));
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
