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
pub mod settings;
pub mod stats;
pub mod storage;
pub mod transfer;

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

pub use key::{CacheKey, Stage};
pub use storage::Tiered;
pub use transfer::Strategy;

use crate::support::fs as fsutil;
use crate::support::publish::{self, Published};
use crate::support::time::now_unix;
use integrity::Manifest;
use lock::{EntryLock, Mode};
use retention::{EntryUse, Eviction, FsUsage, Policy};

/// Name of the environment variable that sets the cache root.
pub const CACHE_DIR_ENV: &str = "BLLVM_CI_CACHE_DIR";

/// Test hook: when set to a path `G`, a saver that has written its entry under `tmp/`
/// creates `G.waiting.<pid>` and waits until `G` exists before publishing, so tests can
/// kill it, race it against another saver, or read concurrently at exactly that point.
pub const GATE_ENV: &str = "BLLVM_CI_CACHE_TEST_GATE";

/// Version of `entry.json`. Entries of another version are treated as damaged.
pub const ENTRY_SCHEMA: u32 = 2;

/// What `entries/<stage>/<key>/entry.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EntryInfo {
    /// Format version of this file ([`ENTRY_SCHEMA`]).
    pub schema_version: u32,
    /// Stage name (`registry`, `git`, `target`).
    pub stage: String,
    /// The cache key.
    pub key: String,
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
        fs::create_dir_all(root.join("entries"))
            .and_then(|()| fs::create_dir_all(root.join("tmp")))
            .with_context(|| format!("create cache root {}", root.display()))?;
        let cache = Cache::new(root, false);
        cache.clean_stale_tmp();
        cache.clean_dead_stubs();
        Ok(cache)
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

    fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join("entries").join(stage)
    }

    fn dir_of(&self, stage: &str, key: &str) -> PathBuf {
        self.stage_dir(stage).join(key)
    }

    fn lock_path(&self, stage: &str, key: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(stage)
            .join(format!("{key}.lock"))
    }

    fn usage_path(&self, stage: &str, key: &str) -> PathBuf {
        self.root
            .join("usage")
            .join(stage)
            .join(format!("{key}.json"))
    }

    /// Directory of the entry for `key` (it may not exist).
    pub fn entry_dir(&self, key: &CacheKey) -> PathBuf {
        self.dir_of(key.stage.as_str(), &key.key)
    }

    /// Whether an entry for `key` is listed (complete, or moved out by a running job).
    pub fn contains(&self, key: &CacheKey) -> bool {
        self.entry_dir(key).join("entry.json").is_file()
    }

    /// Read an entry's `entry.json`.
    #[cfg_attr(not(test), allow(dead_code))] // used by tests and the bench
    ///
    /// Errors: missing or unparsable.
    pub fn info(&self, key: &CacheKey) -> Result<EntryInfo> {
        read_info(&self.entry_dir(key))
    }

    fn new_tmp(&self, what: &str) -> PathBuf {
        publish::temp_path(&self.root.join("tmp"), what)
    }

    /// Unlist and delete an entry. The caller holds its exclusive lease (or knows no one
    /// can). The rename makes the removal atomic for readers; the deletion that follows
    /// may be interrupted, leaving only a `tmp/` dir. Evictions delete at once (the disk
    /// guard measures the space they free); other discards delete in the background.
    fn discard_now(&self, stage: &str, key: &str, now: bool) {
        let dir = self.dir_of(stage, key);
        let trash = self.new_tmp(&format!("trash-{stage}-{key}"));
        if fs::rename(&dir, &trash).is_ok() {
            if now {
                let _ = fsutil::remove_tree(&trash);
            } else {
                delete_in_background(trash);
            }
        }
        let _ = fs::remove_file(self.usage_path(stage, key));
    }

    /// [`Cache::discard_now`] in the background.
    fn discard(&self, stage: &str, key: &str) {
        self.discard_now(stage, key, false);
    }

    fn usage(&self, stage: &str, key: &str, created: u64) -> Usage {
        fs::read_to_string(self.usage_path(stage, key))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Usage {
                last_used_unix: created,
                hits: 0,
            })
    }

    /// Record a use of an entry (write to a temp file, then rename: readers never see a
    /// torn record). Concurrent hits may lose a count; last use is what retention needs.
    fn touch(&self, stage: &str, key: &str, hit: bool) {
        if self.read_only {
            return;
        }
        let mut u = self.usage(stage, key, 0);
        u.last_used_unix = (self.clock)();
        if hit {
            u.hits += 1;
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
        if fs::metadata(&path).is_ok_and(|m| m.len() > stats::LOG_ROTATE_BYTES) {
            let _ = fs::rename(&path, dir.join("events.1.jsonl"));
        }
        if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(&path) {
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

    /// Read `entry.json` and `manifest.tsv` of an entry dir and check them against its
    /// `data/`: the manifest's hash, then every file's presence, size and mtime.
    fn load_checked(&self, dir: &Path) -> Result<(EntryInfo, Manifest), Check> {
        let info = read_info(dir).map_err(|e| Check::Damaged(format!("{e:#}")))?;
        if !dir.join("data").is_dir() {
            return Err(Check::Stub);
        }
        if info.schema_version != ENTRY_SCHEMA {
            return Err(Check::Damaged(format!(
                "entry format {} (expected {ENTRY_SCHEMA})",
                info.schema_version
            )));
        }
        let text = fs::read_to_string(dir.join("manifest.tsv"))
            .map_err(|e| Check::Damaged(format!("manifest.tsv: {e}")))?;
        if fsutil::sha256_hex(&text) != info.content_hash {
            return Err(Check::Damaged(
                "manifest.tsv does not match the entry's content hash".into(),
            ));
        }
        let m = Manifest::from_tsv(&text).map_err(|e| Check::Damaged(format!("{e:#}")))?;
        let damage = m
            .check_structure(&dir.join("data"))
            .map_err(|e| Check::Damaged(format!("{e:#}")))?;
        if !damage.is_empty() {
            return Err(Check::Damaged(damage.join("; ")));
        }
        let data = dir.join("data");
        if let Some(bad) = m
            .files
            .iter()
            .filter(|(_, r)| r.kind == 'l')
            .find_map(|(rel, _)| link_escapes(&data, Path::new(rel)))
        {
            return Err(Check::Damaged(format!(
                "symlink {bad} points outside the entry"
            )));
        }
        Ok((info, m))
    }

    /// Keys to try for `key`, best first: the exact key, then entries of the same stage
    /// whose key starts with [`CacheKey::restore_prefix`], newest first.
    fn candidates(&self, key: &CacheKey) -> Vec<String> {
        let mut out = vec![key.key.clone()];
        let prefix = key.restore_prefix();
        let mut others: Vec<(u64, String)> = fs::read_dir(self.stage_dir(key.stage.as_str()))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_str()?.to_owned();
                (name != key.key && name.starts_with(prefix)).then_some(())?;
                let info = read_info(&e.path()).ok()?;
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
            let dir = self.dir_of(key.stage.as_str(), &cand);
            if !dir.join("entry.json").is_file() {
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
        let stage = key.stage.as_str();
        let dir = self.dir_of(stage, cand);
        let Some(lock) = EntryLock::try_take(&self.lock_path(stage, cand), Mode::Exclusive, true)?
        else {
            return Ok(Attempt::Copy);
        };
        let (info, manifest) = match self.load_checked(&dir) {
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
    /// Errors: the copy fails (`dst` may hold a partial tree the caller removes).
    fn try_copy(
        &self,
        key: &CacheKey,
        cand: &str,
        dst: &Path,
        merge: bool,
        start: Instant,
    ) -> Result<Attempt> {
        let stage = key.stage.as_str();
        let (dir, lock_path) = (self.dir_of(stage, cand), self.lock_path(stage, cand));
        let lock = EntryLock::try_take(&lock_path, Mode::Shared, !self.read_only)?;
        if lock.is_none() && lock_path.exists() {
            return Ok(Attempt::Leased);
        }
        let (info, manifest) = match self.load_checked(&dir) {
            Ok(x) => x,
            Err(Check::Stub) => return Ok(Attempt::Leased),
            Err(Check::Damaged(why)) => {
                drop(lock);
                self.damaged_on_copy(stage, cand, &why)?;
                return Ok(Attempt::Next);
            }
        };
        let copied = transfer::par_copy(&dir.join("data"), dst, merge, &|_| false);
        // A read-only cache cannot create a missing lock file, so it may copy without a
        // lease while a job moves or replaces the entry: then the copy fails or the entry
        // is no longer the one checked. Treat that as gone (try the next candidate),
        // never as a hit or an error. Found by `cargo xtask stress` (concurrency).
        if lock.is_none() && !merge {
            let same =
                copied.is_ok() && matches!(self.load_checked(&dir), Ok((_, m)) if m == manifest);
            if !same {
                fsutil::remove_tree(dst)?;
                self.note(format!(
                    "{stage} entry {cand} changed while it was copied (read-only, no lease): not restored"
                ));
                return Ok(Attempt::Next);
            }
        }
        let stats = copied.with_context(|| format!("copy {stage} entry {cand}"))?;
        drop(lock);
        if !merge && !self.read_only {
            self.lease(dst, Some(cand), None, Some(manifest), Strategy::Copied);
        }
        let info = EntryInfo {
            files: stats.files,
            bytes: stats.bytes,
            ..info
        };
        let r = self.restored(key, cand, &info, start, Strategy::Copied);
        Ok(Attempt::Done(r))
    }

    /// A damaged candidate found by a copying restore: discarded when this cache may
    /// write and no job holds it, noted either way.
    fn damaged_on_copy(&self, stage: &str, cand: &str, why: &str) -> Result<()> {
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
        let stage = key.stage.as_str();
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
            stage,
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
        let stage = key.stage.as_str();
        self.touch(stage, cand, true);
        let secs = start.elapsed().as_secs_f64();
        let exact = cand == key.key;
        self.log_event(&stats::Event::new(
            (self.clock)(),
            stage,
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
        let stage = key.stage.as_str();
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
        // A symlink pointing outside the tree would be recreated by every restore, and a
        // restore merging into that tree could then write through it: such a tree is not
        // saved (issue 8). A moved-out entry it came from is consumed.
        let escaping = escaping_symlinks(src, skip);
        if !escaping.is_empty() {
            self.consume(stage, lease.as_ref());
            anyhow::bail!(
                "{stage} entry {} not saved: symlinks point outside the tree ({})",
                key.key,
                escaping.join(", ")
            );
        }
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
        let stage = key.stage.as_str();
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
            stage,
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
        let protect = [(stage.to_owned(), key.key.clone())];
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
    fn consume(&self, stage: &str, lease: Option<&Lease>) {
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
        let stage = key.stage.as_str();
        // Pruned paths are renamed aside (O(1) each) and deleted on a background thread:
        // deleting tens of thousands of incremental files takes seconds, and the next
        // repo's build need not wait for it.
        let trash = self.new_tmp(&format!("trash-prune-{stage}"));
        transfer::remove_selected(src, skip, Some(&trash)).context("prune before save")?;
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
        let tmp = self.new_tmp(&format!("{stage}-{}", key.key));
        let r = (|| -> Result<()> {
            fs::create_dir_all(&tmp)?;
            self.write_meta(&tmp, key, &manifest, raw)?;
            transfer::move_tree(src, &tmp.join("data"))?;
            Ok(())
        })();
        if let Err(e) = r {
            let _ = fsutil::remove_tree(&tmp);
            return Err(e.context(format!("save {stage} entry {}", key.key)));
        }
        drop(lease.lock);
        self.publish(key, &tmp, &manifest, raw, start, Strategy::Moved)
    }

    fn save_by_copy(
        &self,
        key: &CacheKey,
        src: &Path,
        skip: &dyn Fn(&Path) -> bool,
        raw: u64,
        start: Instant,
    ) -> Result<Save> {
        let stage = key.stage.as_str();
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
        let tmp = self.new_tmp(&format!("{stage}-{}", key.key));
        let r = (|| -> Result<Manifest> {
            transfer::par_copy(src, &tmp.join("data"), false, skip)?;
            let m = Manifest::build(&tmp.join("data"), None)?;
            self.write_meta(&tmp, key, &m, raw)?;
            Ok(m)
        })();
        match r {
            Ok(m) => self.publish(key, &tmp, &m, raw, start, Strategy::Copied),
            Err(e) => {
                let _ = fsutil::remove_tree(&tmp);
                Err(e.context(format!("save {stage} entry {}", key.key)))
            }
        }
    }

    fn write_meta(&self, dir: &Path, key: &CacheKey, m: &Manifest, raw: u64) -> Result<()> {
        let tsv = m.to_tsv();
        let info = EntryInfo {
            schema_version: ENTRY_SCHEMA,
            stage: key.stage.as_str().to_owned(),
            key: key.key.clone(),
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

    /// Every listed entry with its usage, sorted by stage and key; unreadable entries
    /// are skipped.
    pub fn list(&self) -> Vec<Listed> {
        let mut out = Vec::new();
        for stage in Stage::ALL {
            let Ok(rd) = fs::read_dir(self.stage_dir(stage.as_str())) else {
                continue;
            };
            for e in rd.flatten() {
                if let Ok(info) = read_info(&e.path()) {
                    let usage = self.usage(&info.stage, &info.key, info.created_unix);
                    let leased = !e.path().join("data").is_dir();
                    out.push(Listed {
                        info,
                        usage,
                        leased,
                    });
                }
            }
        }
        out.sort_by(|a, b| (&a.info.stage, &a.info.key).cmp(&(&b.info.stage, &b.info.key)));
        out
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
                    || EntryLock::is_held(
                        &self.lock_path(&l.info.stage, &l.info.key),
                        Mode::Shared,
                    ),
                stage: l.info.stage,
                key: l.info.key,
                bytes: l.info.bytes,
                last_used_unix: l.usage.last_used_unix,
            })
            .collect()
    }

    /// Apply the retention policy now: evict what [`retention::retention_victims`] picks
    /// (entries that a job holds are skipped). With `dry_run`, only report. Returns the
    /// evictions (made or planned).
    pub fn apply_retention(&self, dry_run: bool) -> Vec<Eviction> {
        self.apply_retention_except(dry_run, &[])
    }

    fn apply_retention_except(&self, dry_run: bool, protect: &[(String, String)]) -> Vec<Eviction> {
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
            return victims;
        }
        victims
            .into_iter()
            .filter(|v| self.evict(&v.stage, &v.key))
            .collect()
    }

    /// Evict one entry if no job holds it. Returns whether it was removed.
    fn evict(&self, stage: &str, key: &str) -> bool {
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
    /// holds (never `protect`). Returns `None` once within the policy, or why not when
    /// nothing more can be evicted. Filesystem errors count as within the policy (the
    /// guard must never fail a build).
    pub fn guard(&self, extra: u64, protect: Option<&(String, String)>) -> Option<String> {
        if self.read_only {
            return None;
        }
        loop {
            let usage = match (self.fs_stats)(&self.root) {
                Ok(u) => u,
                Err(_) => return None,
            };
            let why = usage.too_full(&self.policy, extra)?;
            let mut uses: Vec<EntryUse> = self
                .uses()
                .into_iter()
                .filter(|u| !u.leased && protect.is_none_or(|(s, k)| *s != u.stage || *k != u.key))
                .collect();
            uses.sort_by_key(|u| (u.last_used_unix, u.key.clone()));
            // When evicting everything evictable would still not be enough, evict nothing:
            // emptying the cache for a save that cannot happen helps no one.
            let evictable: u64 = uses.iter().map(|u| u.bytes).sum();
            let best = FsUsage {
                total: usage.total,
                available: usage.available.saturating_add(evictable),
            };
            if best.too_full(&self.policy, extra).is_some() {
                return Some(why);
            }
            let evicted = uses.iter().any(|u| {
                let ok = self.evict(&u.stage, &u.key);
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
    /// are reported as leased, not checked.
    pub fn verify(&self, content: bool) -> Vec<(String, String, Vec<String>)> {
        let mut out = Vec::new();
        for l in self.list() {
            let (stage, key) = (l.info.stage.clone(), l.info.key.clone());
            let lock_path = self.lock_path(&stage, &key);
            let Ok(Some(_lock)) = EntryLock::try_take(&lock_path, Mode::Shared, !self.read_only)
            else {
                out.push((
                    stage,
                    key,
                    vec!["leased by a running job: not checked".into()],
                ));
                continue;
            };
            let dir = self.dir_of(&stage, &key);
            // Unlisted between the listing and the lease (evicted, or consumed by the job
            // that had moved it out): gone, not damaged. Under the lease it cannot go.
            // Found by `cargo xtask stress` (concurrency: "verify found ... damaged: read
            // entry.json: No such file").
            if !dir.join("entry.json").is_file() {
                continue;
            }
            let damage = match self.load_checked(&dir) {
                Ok((_, m)) if content => m
                    .check_content(&dir.join("data"))
                    .unwrap_or_else(|e| vec![format!("{e:#}")]),
                Ok(_) => Vec::new(),
                Err(Check::Stub) => vec!["leased stub without data".into()],
                Err(Check::Damaged(d)) => vec![d],
            };
            out.push((stage, key, damage));
        }
        // An entry whose entry.json cannot be read is not listed (so it is neither restored
        // nor evicted) yet holds its disk space: report it too, so `verify --discard`
        // removes it. Found by `cargo xtask stress` (corruption scenario).
        for stage in Stage::ALL {
            let Ok(rd) = fs::read_dir(self.stage_dir(stage.as_str())) else {
                continue;
            };
            for e in rd.flatten() {
                if let Err(err) = read_info(&e.path()) {
                    if e.path().exists() {
                        let key = e.file_name().to_string_lossy().into_owned();
                        out.push((stage.as_str().to_owned(), key, vec![format!("{err:#}")]));
                    }
                }
            }
        }
        out
    }

    /// Discard an entry (for `cache verify --discard`, `cache clear`). Returns whether it
    /// was removed (false when a job holds it).
    pub fn remove(&self, stage: &str, key: &str) -> bool {
        !self.read_only && key::check_key(key).is_ok() && self.evict(stage, key)
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

    /// Remove leased stubs whose lease is free: the job that moved their data out died.
    fn clean_dead_stubs(&self) {
        for l in self.list().into_iter().filter(|l| l.leased) {
            self.evict(&l.info.stage, &l.info.key);
        }
    }
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

/// Delete a tree under `tmp/` on a detached thread. A process that exits first leaves
/// the rest, named with its pid, to the next [`Cache::open`].
fn delete_in_background(dir: PathBuf) {
    let spawned = std::thread::Builder::new()
        .name("cache-trash".into())
        .spawn({
            let dir = dir.clone();
            move || {
                let _ = fsutil::remove_tree(&dir);
            }
        });
    if spawned.is_err() {
        let _ = fsutil::remove_tree(&dir);
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

/// `rel -> target` when the symlink at `root/rel` points outside `root`: an absolute
/// target, or one whose `..` climb above `root` (lexically, no link is followed).
fn link_escapes(root: &Path, rel: &Path) -> Option<String> {
    let target = fs::read_link(root.join(rel)).ok()?;
    let mut depth = rel.components().count() as i64 - 1;
    let mut escapes = target.has_root();
    for c in target.components() {
        match c {
            std::path::Component::ParentDir => depth -= 1,
            std::path::Component::Normal(_) => depth += 1,
            _ => {}
        }
        escapes |= depth < 0;
    }
    escapes.then(|| format!("{} -> {}", rel.display(), target.display()))
}

/// Every symlink under `root` (outside what `skip` prunes) that points outside it.
fn escaping_symlinks(root: &Path, skip: &dyn Fn(&Path) -> bool) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| e.path().strip_prefix(root).map_or(true, |r| !skip(r)))
        .flatten()
        .filter(|e| e.path_is_symlink())
        .filter_map(|e| link_escapes(root, e.path().strip_prefix(root).ok()?))
        .collect()
}

fn read_info(dir: &Path) -> Result<EntryInfo> {
    let p = dir.join("entry.json");
    let text = fs::read_to_string(&p).with_context(|| format!("read {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parse {}", p.display()))
}

/// Hooks for the storage layer (`storage/local.rs`, `storage/tiered.rs`): importing an
/// entry fetched from elsewhere, leasing an entry while it is uploaded, and logging remote
/// transfers. Kept apart from the local engine above.
impl Cache {
    /// A fresh directory path under `tmp/` (not created) that [`Cache::open`] removes if
    /// this process dies before using it. For entries being fetched from a remote.
    pub fn scratch_dir(&self, what: &str) -> PathBuf {
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
        let (info, m) = match self.load_checked(dir) {
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
        if info.key != key.key || info.stage != key.stage.as_str() {
            let _ = fsutil::remove_tree(dir);
            anyhow::bail!(
                "import: entry dir holds {} {}, not {} {}",
                info.stage,
                info.key,
                key.stage,
                key.key
            );
        }
        let r = self.publish(key, dir, &m, info.raw_bytes, start, Strategy::Copied);
        if matches!(r, Ok(Save::Saved { .. })) {
            self.touch(key.stage.as_str(), &key.key, false);
        }
        r
    }

    /// Take a shared lease on the entry for `key` (so no job moves it out or evicts it
    /// while it is read, e.g. uploaded). `Ok(None)`: the entry is not listed with data, or
    /// a job holds it exclusively (moved out).
    ///
    /// Errors: the lock file cannot be opened.
    pub fn share_entry(&self, key: &CacheKey) -> Result<Option<EntryLock>> {
        if !self.entry_dir(key).join("data").is_dir() {
            return Ok(None);
        }
        let lock = EntryLock::try_take(
            &self.lock_path(key.stage.as_str(), &key.key),
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
mod tests;
