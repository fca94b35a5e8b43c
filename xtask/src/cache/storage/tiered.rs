//! [`Tiered`]: the local cache in front of a remote store, and the stage methods the
//! runner calls around a repo (restore a stage, save it, wait for the uploads), each
//! filling a [`StageReport`] and returning its console lines. Nothing here prints.
//!
//! # Two levels
//!
//! The local engine stays in front. A restore whose exact key the local cache holds never
//! touches the network. On a local miss, the remote entry is fetched into the local cache
//! (its `tmp/`, checked, then published with one rename) and restored from there as a
//! local hit; a read-only local cache (untrusted events) gets the download next to the
//! destination and restored straight into it instead. Only exact keys are looked up
//! remotely; partial hits (restore prefixes) stay local. A save writes the local entry
//! first and then uploads it on a background thread while the next repo builds;
//! [`Tiered::finish`] waits for every upload before the run reports.
//!
//! The front tier is always the local engine ([`LocalStorage`]): a restore puts a tree
//! into a target dir by rename under a lease, which only a local store can do. The back
//! tier is any [`Storage`] (`Box<dyn Storage>`): the S3 backend in production, a second
//! [`LocalStorage`] or a failing fake in the tests below.
//!
//! # Invariants
//!
//! - A build never depends on the remote: every remote failure (unreachable, denied,
//!   missing bucket, timeout, truncated download) becomes one warning on the stage where
//!   it happened, and the remote is switched off for the rest of the run (no second
//!   timeout; later stages say `off`).
//! - A run that may not save writes nothing anywhere: its local engine is read-only and
//!   its remote is wrapped in [`ReadOnly`], so no upload can start.
//! - Nothing damaged lands in the local cache: a fetched entry is checked by the remote
//!   store's `get` and again by the local import.
//! - Credentials are never printed: every remote message passes through
//!   [`Storage::redact`] before it goes into a report or a line.
//!
//! There is no process-wide state: a `Tiered` is a value the command creates from the
//! settings ([`Tiered::open`]) and hands to the runner; clones share one remote state
//! (switched off or not, pending uploads).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;

use anyhow::{bail, Result};

use super::{Damaged, LocalStorage, Put, ReadOnly, Storage, Transfer};
use crate::cache::cargo_home::{self, skip_git_path, LockedPackages};
use crate::cache::report::StageReport;
use crate::cache::scratch::Scratch;
use crate::cache::settings::{RemoteConfig, RemoteSettings};
use crate::cache::{transfer, Cache, CacheKey, Restore, Save, Strategy};
use crate::support::fs as fsutil;

/// What keeps a download dir alive until the stage is done with it (dropping it removes
/// what is left there).
#[allow(dead_code)] // held for its `Drop`
enum Download {
    /// Under the writable cache's `tmp/`, leased (`scratch.rs`).
    Leased(Scratch),
    /// Beside the destination (a read-only cache writes nothing under its root).
    Beside(tempfile::TempDir),
}

/// Console lines a stage method produced, in order (remote transfers, evictions, remote
/// warnings), for the caller to print. Warnings are also in the stage's report.
pub type Lines = Vec<String>;

/// The local cache, and the remote behind it when one is configured (see the module
/// docs). Clones share the remote's state.
#[derive(Clone)]
pub struct Tiered {
    local: LocalStorage,
    remote: Option<Remote>,
}

impl std::fmt::Debug for Tiered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tiered")
            .field("local", &self.local)
            .field(
                "remote",
                &self.remote.as_ref().map(|r| r.storage.describe()),
            )
            .finish()
    }
}

/// The remote tier: the store and the run's state of it.
#[derive(Clone)]
struct Remote {
    storage: Arc<dyn Storage>,
    shared: Arc<Shared>,
}

/// What every clone of a [`Tiered`] shares about its remote.
#[derive(Default)]
struct Shared {
    off: Mutex<Off>,
    /// Set once the store was probed (the first time a stage needed it).
    probed: OnceLock<()>,
    uploads: Mutex<Vec<Upload>>,
}

/// Whether the remote was switched off for the run, why, and whether a stage said so.
#[derive(Default)]
struct Off {
    why: Option<String>,
    warned: bool,
}

type Upload = (CacheKey, JoinHandle<Result<Put>>);

impl Tiered {
    /// The local cache alone (no remote configured).
    pub fn local(cache: Cache) -> Tiered {
        Tiered {
            local: LocalStorage::new(cache),
            remote: None,
        }
    }

    /// `local` in front of `remote`. Nothing goes over the network until a stage misses
    /// locally.
    pub fn new(local: LocalStorage, remote: Box<dyn Storage>) -> Tiered {
        Tiered {
            local,
            remote: Some(Remote {
                storage: Arc::from(remote),
                shared: Arc::default(),
            }),
        }
    }

    /// The store `ci` uses: `cache` in front of the remote of `settings` (the manifest's
    /// `[cache.remote]`) and the environment (see [`RemoteConfig::resolve`]). `may_save`
    /// false (untrusted events, `--no-save`) makes the remote read-only; `disabled`
    /// (`--no-remote`) leaves it out. Returns the store and a line for the log (`None`:
    /// no remote configured). A remote that cannot be set up (an unknown service, a
    /// binary built without the `remote` feature) is left out, and the line says why.
    pub fn open(
        cache: Cache,
        settings: Option<&RemoteSettings>,
        may_save: bool,
        disabled: bool,
    ) -> (Tiered, Option<String>) {
        let cfg = (!disabled)
            .then(|| RemoteConfig::resolve(settings, may_save, &|k| std::env::var(k).ok()))
            .flatten();
        let (remote, line) = match cfg.map(remote_backend) {
            None => (None, None),
            Some(Ok((storage, line))) => (Some(storage), Some(line)),
            Some(Err(line)) => (None, Some(line)),
        };
        let store = match remote {
            Some(storage) => Tiered::new(LocalStorage::new(cache), storage),
            None => Tiered::local(cache),
        };
        (store, line)
    }

    /// The local engine.
    pub fn cache(&self) -> &Cache {
        self.local.cache()
    }

    /// This store, writing nothing anywhere from now on: the local engine read-only, the
    /// remote wrapped in [`ReadOnly`] (its state still shared with the other clones).
    pub fn into_read_only(self) -> Tiered {
        let remote = self.remote.map(|r| Remote {
            storage: if r.storage.is_read_only() {
                r.storage
            } else {
                Arc::new(ReadOnly::new(r.storage))
            },
            shared: r.shared,
        });
        Tiered {
            local: LocalStorage::new(self.local.cache().clone().into_read_only()),
            remote,
        }
    }

    /// Restore the chain-wide stages (registry, git) into `$CARGO_HOME`, merging (never
    /// deleting). With `enabled` false the stages are reported as misses and nothing is
    /// read.
    pub fn restore_chain(
        &self,
        registry: Option<&CacheKey>,
        git: Option<&CacheKey>,
        enabled: bool,
    ) -> (Vec<StageReport>, Lines) {
        let home = cargo_home::cargo_home();
        let (mut reports, mut lines) = (Vec::new(), Vec::new());
        for (key, dir) in [(registry, "registry"), (git, "git")] {
            if let Some(key) = key {
                let (rep, l) = self.restore_stage(key, &home.join(dir), true, enabled);
                reports.push(rep);
                lines.extend(l);
            }
        }
        (reports, lines)
    }

    /// Save the chain-wide stages restored by [`Tiered::restore_chain`] (`stages`, updated
    /// in place) from `$CARGO_HOME`, pruned to what `locked` (the lockfiles' packages)
    /// names; `registry` and `git` are the plan's keys. With `enabled` false every save
    /// is [`Save::Skipped`].
    pub fn save_chain(
        &self,
        stages: &mut [StageReport],
        registry: Option<&CacheKey>,
        git: Option<&CacheKey>,
        locked: &LockedPackages,
        enabled: bool,
    ) -> Lines {
        let home = cargo_home::cargo_home();
        let mut lines = Vec::new();
        for rep in stages {
            let is_registry = rep.stage == "registry";
            let key = if is_registry { registry } else { git };
            let Some(key) = key else { continue };
            let skip = |p: &Path| {
                if is_registry {
                    locked.skip_registry_path(p)
                } else {
                    skip_git_path(p)
                }
            };
            let src = home.join(if is_registry { "registry" } else { "git" });
            lines.extend(self.save_stage(key, &src, &skip, enabled, rep));
        }
        lines
    }

    /// Put the entry for `key` into `dst` (with `merge`, into an existing tree, keeping
    /// its files; see [`Cache::restore`]), asking the remote on a local miss. With
    /// `enabled` false nothing is read and the stage is a miss. Every problem becomes a
    /// warning in the report; a failed restore of a tree we own (`!merge`) removes the
    /// partial tree, so the build starts clean.
    pub fn restore_stage(
        &self,
        key: &CacheKey,
        dst: &Path,
        merge: bool,
        enabled: bool,
    ) -> (StageReport, Lines) {
        let mut rep = StageReport::new(key);
        let mut lines = Vec::new();
        if !enabled {
            return (rep, lines);
        }
        let direct = self
            .remote
            .as_ref()
            .and_then(|r| self.fetch(r, key, dst, merge, &mut rep, &mut lines));
        // A handle of its own, so this stage's notes are its own (repos run on threads).
        let cache = self.cache().with_own_notes();
        match direct.map_or_else(|| cache.restore(key, dst, merge), Ok) {
            Ok(r) => rep.restore = r,
            Err(e) => {
                if !merge {
                    let _ = fsutil::remove_tree(dst);
                }
                rep.warn(format!("restore failed, building without cache: {e:#}"));
            }
        }
        add_notes(&cache, &mut rep, &mut lines);
        (rep, lines)
    }

    /// Save the tree at `src` as the entry for `key` (leaving out what `skip` prunes; see
    /// [`Cache::save`]) into `rep`, then, when a new local entry was published and the
    /// remote may be written, start its upload in the background ([`Tiered::finish`]
    /// collects it). With `enabled` false nothing is written: [`Save::Skipped`].
    pub fn save_stage(
        &self,
        key: &CacheKey,
        src: &Path,
        skip: &dyn Fn(&Path) -> bool,
        enabled: bool,
        rep: &mut StageReport,
    ) -> Lines {
        let mut lines = Vec::new();
        if !enabled {
            rep.save = Some(Save::Skipped);
            return lines;
        }
        let cache = self.cache().with_own_notes();
        match cache.save(key, src, skip) {
            Ok(s) => rep.save = Some(s),
            Err(e) => rep.warn(format!("save failed (the build result stands): {e:#}")),
        }
        add_notes(&cache, rep, &mut lines);
        if let Some(remote) = &self.remote {
            self.upload_later(remote, key, rep);
        }
        lines
    }

    /// Background uploads started and not yet collected by [`Tiered::finish`].
    pub fn pending_uploads(&self) -> usize {
        self.remote
            .as_ref()
            .map_or(0, |r| r.shared.uploads.lock().expect("uploads lock").len())
    }

    /// Wait for every background upload and record each outcome in the report of its key
    /// among `reports` (the chain stages and every repo's). Call once, before the summary
    /// is written (say "waiting" first when [`Tiered::pending_uploads`] is not 0).
    pub fn finish(&self, reports: &mut [&mut StageReport]) -> Lines {
        let Some(remote) = &self.remote else {
            return Vec::new();
        };
        let uploads = std::mem::take(&mut *remote.shared.uploads.lock().expect("uploads lock"));
        let mut lines = Vec::new();
        let mut total = Totals::default();
        for (key, handle) in uploads {
            let r = handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the upload thread panicked")));
            let rep = reports
                .iter_mut()
                .find(|r| r.key == key.key && r.stage == key.stage.as_str())
                .map(|r| &mut **r);
            record_upload(remote, r, rep, &mut total, &mut lines);
        }
        if total.entries > 0 {
            lines.push(format!(
                "remote cache: uploaded {} entries, {} in {:.2}s",
                total.entries,
                fsutil::human_bytes(total.wire_bytes),
                total.secs
            ));
        }
        lines
    }

    /// Before the local restore of `key` into `dst`: on a local miss, fetch the key from
    /// the remote. A hit fills the local cache (the local restore that follows then
    /// hits), or, for a read-only local cache, is restored straight into `dst` and
    /// returned (the caller then skips its local restore). `None`: restore locally.
    fn fetch(
        &self,
        remote: &Remote,
        key: &CacheKey,
        dst: &Path,
        merge: bool,
        rep: &mut StageReport,
        lines: &mut Lines,
    ) -> Option<Restore> {
        if self.cache().contains(key) {
            rep.remote_mut().restore = "local-hit".into();
            return None;
        }
        if !merge && fsutil::non_empty_dir(dst) {
            return None; // the local restore keeps the tree
        }
        if let Err(w) = remote.usable() {
            rep.remote_mut().restore = "off".into();
            warn(rep, lines, w);
            return None;
        }
        let (into, _tmp_guard) = match self.download_dir(key, dst) {
            Ok(x) => x,
            Err(e) => {
                let w = format!("remote cache: cannot create a download dir: {e}");
                warn(rep, lines, w);
                return None;
            }
        };
        match remote.storage.get(key, &into) {
            Ok(Some(t)) => self.remote_hit(key, dst, merge, &into, &t, rep, lines),
            Ok(None) => {
                rep.remote_mut().restore = "miss".into();
                self.cache().log_remote(key, "remote-miss", 0, 0, 0.0);
                None
            }
            Err(e) if Damaged::is_in(&e) => {
                rep.remote_mut().restore = "error".into();
                self.cache().log_remote(key, "remote-damaged", 0, 0, 0.0);
                let w = self.quarantine(remote, key, &e);
                warn(rep, lines, w);
                None
            }
            Err(e) => {
                rep.remote_mut().restore = "error".into();
                self.cache().log_remote(key, "remote-error", 0, 0, 0.0);
                let why = remote.fail(&format!("{e:#}"));
                let w = format!(
                    "remote cache {} failed, running without it: {why}",
                    remote.storage.describe()
                );
                warn(rep, lines, w);
                None
            }
        }
    }

    /// A remote entry that failed its checks (`e`, [`Damaged`]): the remote stays on for
    /// the run (one bad object is not an outage); a run that may write takes the entry
    /// out of use, so this run's save uploads a fresh one and the key works again.
    /// Returns the warning.
    fn quarantine(&self, remote: &Remote, key: &CacheKey, e: &anyhow::Error) -> String {
        let why = remote.storage.redact(&format!("{e:#}"));
        let fate = if self.local.is_read_only() {
            "skipped (a read-only run leaves it for a trusted run to replace)".to_owned()
        } else {
            match remote.storage.quarantine(key) {
                Ok(true) => "skipped and quarantined; this run's save replaces it".to_owned(),
                Ok(false) => "skipped (the remote is read-only)".to_owned(),
                Err(q) => format!(
                    "skipped; quarantining it failed: {}",
                    remote.storage.redact(&format!("{q:#}"))
                ),
            }
        };
        format!(
            "remote cache entry {} {} is damaged, {fate}: {why}",
            key.stage, key.key
        )
    }

    /// Where a download goes: a writable cache's own `tmp/` (one rename to import it,
    /// removed by the next `Cache::open` if we die), else (a read-only cache must not
    /// write under its root) a temporary dir beside `dst`, removed with the guard.
    fn download_dir(&self, key: &CacheKey, dst: &Path) -> Result<(PathBuf, Download)> {
        if !self.local.is_read_only() {
            let lease = self.local.staging_dir(key)?;
            return Ok((lease.path().to_path_buf(), Download::Leased(lease)));
        }
        let parent = dst.parent().unwrap_or(Path::new("."));
        let _ = std::fs::create_dir_all(parent);
        let t = tempfile::Builder::new()
            .prefix(".bllvm-remote-")
            .tempdir_in(parent)?;
        Ok((t.path().join("entry"), Download::Beside(t)))
    }

    /// A remote hit of `key`, fetched into `into`: record it, then import it into the
    /// local cache, or (read-only local cache) place it into `dst` and return the hit.
    #[allow(clippy::too_many_arguments)]
    fn remote_hit(
        &self,
        key: &CacheKey,
        dst: &Path,
        merge: bool,
        into: &Path,
        t: &Transfer,
        rep: &mut StageReport,
        lines: &mut Lines,
    ) -> Option<Restore> {
        let st = rep.remote_mut();
        st.restore = "hit".into();
        st.restore_bytes = t.wire_bytes;
        st.restore_secs = t.secs;
        st.restore_rate = t.data_rate();
        lines.push(format!(
            "    cache {}: remote hit, {} ({} unpacked) in {:.2}s ({}/s)",
            key.stage,
            fsutil::human_bytes(t.wire_bytes),
            fsutil::human_bytes(t.data_bytes),
            t.secs,
            fsutil::human_bytes(t.data_rate() as u64)
        ));
        self.cache()
            .log_remote(key, "remote-hit", t.wire_bytes, t.data_bytes, t.secs);
        if !self.local.is_read_only() {
            if let Err(e) = self.local.import(key, into) {
                warn(
                    rep,
                    lines,
                    format!("remote cache: the download was not kept: {e:#}"),
                );
            }
            return None;
        }
        match place(&into.join("data"), dst, merge) {
            Ok(()) => Some(Restore::Hit {
                files: t.files,
                bytes: t.data_bytes,
                secs: t.secs,
                strategy: Strategy::Copied,
            }),
            Err(e) => {
                if !merge {
                    let _ = fsutil::remove_tree(dst);
                }
                let w = format!("remote cache: could not place the download: {e:#}");
                warn(rep, lines, w);
                None
            }
        }
    }

    /// After a save into `rep`: upload a newly published local entry on a background
    /// thread, under a shared lease on it (so no job moves it out meanwhile). Only a new
    /// entry is uploaded: an unchanged one was restored from the local cache (uploaded
    /// when it was saved, or fetched from the remote), so a run of local hits makes no
    /// request at all.
    fn upload_later(&self, remote: &Remote, key: &CacheKey, rep: &mut StageReport) {
        let saved = matches!(rep.save, Some(Save::Saved { .. }));
        if remote.storage.is_read_only() || self.local.is_read_only() {
            if saved {
                rep.remote_mut().upload = "read-only".into();
            }
            return;
        }
        let from_remote = rep.remote.as_ref().is_some_and(|r| r.restore == "hit");
        if !saved || from_remote || remote.is_off() {
            return;
        }
        let (local, k, storage) = (self.local.clone(), key.clone(), Arc::clone(&remote.storage));
        let handle = std::thread::spawn(move || upload(&local, &k, &*storage));
        rep.remote_mut().upload = "pending".into();
        remote
            .shared
            .uploads
            .lock()
            .expect("uploads lock")
            .push((key.clone(), handle));
    }
}

impl Remote {
    /// `Err(warning)` when the remote is off (probing it the first time it is needed); the
    /// warning is given once, later stages get an empty one.
    fn usable(&self) -> std::result::Result<(), String> {
        self.shared.probed.get_or_init(|| {
            if let Err(e) = self.storage.probe() {
                self.switch_off(&format!("{e:#}"));
            }
        });
        let mut off = self.shared.off.lock().expect("remote off lock");
        match &off.why {
            None => Ok(()),
            Some(_) if off.warned => Err(String::new()),
            Some(why) => {
                let w = format!(
                    "remote cache {} unavailable, running without it: {why}",
                    self.storage.describe()
                );
                off.warned = true;
                Err(w)
            }
        }
    }

    /// Switch the remote off for the run (the first reason stands). Returns `why`,
    /// redacted.
    fn switch_off(&self, why: &str) -> String {
        let why = self.storage.redact(why);
        let mut off = self.shared.off.lock().expect("remote off lock");
        if off.why.is_none() {
            off.why = Some(why.clone());
        }
        why
    }

    /// Switch off after a failure the current stage warns about itself: later stages
    /// say nothing more. Returns `why`, redacted.
    fn fail(&self, why: &str) -> String {
        let why = self.switch_off(why);
        self.shared.off.lock().expect("remote off lock").warned = true;
        why
    }

    fn is_off(&self) -> bool {
        self.shared
            .off
            .lock()
            .expect("remote off lock")
            .why
            .is_some()
    }
}

/// The remote tier of [`Tiered::open`]: without the `remote` cargo feature there is no
/// backend to build, and the line says how to get one.
#[cfg(feature = "remote")]
fn remote_backend(cfg: RemoteConfig) -> std::result::Result<(Box<dyn Storage>, String), String> {
    let line = format!(
        "remote cache: {} ({})",
        cfg.describe(),
        if cfg.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    let read_only = cfg.read_only;
    match super::S3Storage::new(cfg) {
        Ok(s3) if read_only => Ok((Box::new(ReadOnly::new(s3)), line)),
        Ok(s3) => Ok((Box::new(s3), line)),
        Err(e) => Err(format!("{line}: not used: {e:#}")),
    }
}

#[cfg(not(feature = "remote"))]
fn remote_backend(cfg: RemoteConfig) -> std::result::Result<(Box<dyn Storage>, String), String> {
    Err(without_remote_feature(&cfg))
}

/// The one warning line of a run whose manifest or environment configures a remote cache
/// that this binary cannot use.
#[cfg_attr(feature = "remote", allow(dead_code))]
fn without_remote_feature(cfg: &RemoteConfig) -> String {
    format!(
        "warning: remote cache {} is configured, but this xtask was built without the \
         `remote` cargo feature: running with the local cache only (to use the remote, run \
         `cargo run -p xtask --features remote -- ci ...` instead of `cargo xtask ci ...`)",
        cfg.describe()
    )
}

/// The notes of `cache` (a stage's own handle): warnings into `rep`, evictions as lines.
fn add_notes(cache: &Cache, rep: &mut StageReport, lines: &mut Lines) {
    let notes = cache.drain_notes();
    lines.extend(notes.eviction_lines());
    for w in notes.warnings {
        rep.warn(w);
    }
}

/// Add warning `w` to `rep` and to the console lines (an empty `w` adds nothing).
fn warn(rep: &mut StageReport, lines: &mut Lines, w: String) {
    if w.is_empty() {
        return;
    }
    lines.push(format!("    warning: {w}"));
    rep.warn(w);
}

/// Put the downloaded `data` into `dst`: merged by copy, or moved into an emptied `dst`.
fn place(data: &Path, dst: &Path, merge: bool) -> Result<()> {
    if merge {
        transfer::par_copy(data, dst, true, &|_| false)?;
    } else {
        fsutil::remove_tree(dst)?;
        transfer::move_tree(data, dst)?;
    }
    Ok(())
}

/// The upload thread's work: lend the local entry for `key` and put it to `remote`,
/// logging the outcome in the local event log.
fn upload(local: &LocalStorage, key: &CacheKey, remote: &dyn Storage) -> Result<Put> {
    let Some(lent) = local.lend(key)? else {
        bail!("the local entry is held by another job; not uploaded");
    };
    let r = remote.put(key, &lent.dir);
    let cache = local.cache();
    match &r {
        Ok(Put::Stored(t)) => cache.log_remote(key, "uploaded", t.wire_bytes, t.data_bytes, t.secs),
        Ok(_) => cache.log_remote(key, "upload-exists", 0, 0, 0.0),
        Err(_) => cache.log_remote(key, "upload-error", 0, 0, 0.0),
    }
    r
}

/// What the uploads of a run stored, for the closing line.
#[derive(Default)]
struct Totals {
    entries: u64,
    wire_bytes: u64,
    secs: f64,
}

/// Record one finished upload in its stage report (`rep`; `None` when no stage has its
/// key), adding to `total`.
fn record_upload(
    remote: &Remote,
    r: Result<Put>,
    rep: Option<&mut StageReport>,
    total: &mut Totals,
    lines: &mut Lines,
) {
    let (word, t, w) = match r {
        Ok(Put::Stored(t)) => {
            total.entries += 1;
            total.wire_bytes += t.wire_bytes;
            total.secs += t.secs;
            ("uploaded", Some(t), None)
        }
        Ok(Put::Exists) => ("exists", None, None),
        Ok(Put::ReadOnly) => ("read-only", None, None),
        Err(e) => {
            let why = remote.switch_off(&format!("{e:#}"));
            let w = format!("remote cache upload failed (the build result stands): {why}");
            ("error", None, Some(w))
        }
    };
    let Some(rep) = rep else {
        if let Some(w) = w {
            lines.push(format!("warning: {w}"));
        }
        return;
    };
    let st = rep.remote_mut();
    st.upload = word.into();
    if let Some(t) = t {
        st.upload_bytes = t.wire_bytes;
        st.upload_secs = t.secs;
        st.upload_rate = t.data_rate();
    }
    if let Some(w) = w {
        warn(rep, lines, w);
    }
}

mod trees;

#[cfg(test)]
mod tests;
