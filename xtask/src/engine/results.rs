//! The result cache: a successful repo run recorded under its input fingerprint, with its
//! step logs, so a later run with the same fingerprint skips the repo entirely (status
//! `cached`) and restores nothing. Failures are never recorded as results.
//!
//! Layout under the cache root:
//!
//! ```text
//! results/<repo>/<fingerprint>/record.json   the success record (steps, durations, inputs)
//! results/<repo>/<fingerprint>/logs/*.log    its step logs, replayed by `cargo xtask logs`
//! results/<repo>/last.json                   the inputs of the last run, whatever its
//!                                            result (for `plan --explain`)
//! ```
//!
//! A record is written under a temporary name and published with one rename, like cache
//! entries (`support::publish`), so a reader never sees half a record.
//!
//! # Shared records
//!
//! A store made with [`Results::shared`] also uses the remote tier of the run's cache
//! store (`cache::Tiered`, `[cache.remote]`): each success it records is shared there as a
//! `result` entry (the record dir as published here, `cache/storage/tiered/trees.rs`), and
//! a fingerprint the cache root has no record of is asked for there. So a repo whose
//! fingerprint has a recorded success anywhere in the shared cache is `cached` on any
//! runner: another machine of the fleet, or the next job of a fanned-out workflow. A
//! record fetched from the remote is kept under the cache root like one of its own (a
//! read-only cache keeps it in memory for the run). A run that may not save shares
//! nothing: its cache store writes nothing anywhere.
//!
//! # Records are untrusted
//!
//! The cache root may come from an `actions/cache` tarball, the remote from any writer of
//! the bucket. Records are read as `cache::untrusted` reads metadata: bounded, never
//! through a symlink or from a FIFO, under directories that are real directories. A
//! record counts only when `record.json` is a regular file of sane size that parses, names exactly this repo and fingerprint, says `ok`, whose inputs hash to
//! that fingerprint, and whose step names are safe file names (logs are read by name);
//! a fetched tree must hold nothing but that record and its steps' logs, all regular
//! files. Anything else is ignored with a warning ([`Results::take_warnings`]) and the
//! repo runs: a record can only ever save work, never decide a build.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::key::hash_inputs;
use crate::cache::untrusted;
use crate::cache::{CacheKey, Stage, Tiered};
use crate::engine::fingerprint::Fingerprint;
use crate::support::publish::{self, Published};

/// Format version of `record.json` and `last.json`.
pub const SCHEMA_VERSION: u32 = 1;

/// The largest `record.json` or `last.json` read back, in bytes. A record lists the
/// fingerprint's inputs and the steps (a few kB); anything near this size is not one of
/// ours, and reading it whole could exhaust memory.
pub const MAX_RECORD_BYTES: u64 = 4 << 20;

/// One step of a recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedStep {
    /// Step name.
    pub name: String,
    /// Wall-clock seconds it took.
    pub secs: f64,
}

/// How the recorded run ended: `"ok"` or `"failed"` in `record.json` and `last.json`
/// (schema 1). A record with any other word does not parse, so it is no record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordStatus {
    /// Every step passed: the success record that makes the repo `cached`.
    Ok,
    /// A step failed or timed out (only `last.json` says this).
    Failed,
}

impl std::fmt::Display for RecordStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RecordStatus::Ok => "ok",
            RecordStatus::Failed => "failed",
        })
    }
}

/// What `record.json` and `last.json` hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Format version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Repo name.
    pub repo: String,
    /// Fingerprint hash.
    pub fingerprint: String,
    /// Fingerprint inputs.
    pub inputs: Vec<(String, String)>,
    /// How the run ended (only `last.json` can say `failed`).
    pub status: RecordStatus,
    /// The run that produced it.
    pub run_id: String,
    /// Seconds since the Unix epoch when it was written.
    pub finished_unix: u64,
    /// Steps in order.
    pub steps: Vec<RecordedStep>,
}

/// What a run asked the remote for, by `(repo, fingerprint)`: the record, or `None` for a
/// miss.
type Fetched = HashMap<(String, String), Option<Record>>;

/// The result store of a cache root, and of the remote behind it when made with
/// [`Results::shared`]. Clones share what was fetched and the warnings.
#[derive(Debug, Clone)]
pub struct Results {
    dir: PathBuf,
    /// The run's cache store, whose remote tier shares records (`None`: local only).
    shared: Option<Tiered>,
    /// Remote lookups of this run by `(repo, fingerprint)`: the record a read-only cache
    /// could not keep on disk, or `None` for a miss (asked once per run).
    fetched: Arc<Mutex<Fetched>>,
    warnings: Arc<Mutex<Vec<String>>>,
}

impl Results {
    /// The store under `cache_root/results`, local only.
    pub fn new(cache_root: &Path) -> Results {
        Results {
            dir: cache_root.join("results"),
            shared: None,
            fetched: Arc::default(),
            warnings: Arc::default(),
        }
    }

    /// The store of `store`'s cache root, sharing records through its remote tier when it
    /// has one (see the module docs).
    pub fn shared(store: &Tiered) -> Results {
        Results {
            shared: store.has_remote().then(|| store.clone()),
            ..Results::new(store.cache().root())
        }
    }

    /// The warnings about records that were ignored (damaged, hostile, a remote that
    /// failed) since the last call, for the caller to report.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().expect("warnings lock"))
    }

    /// Note warning `w`, once per run (a record is looked up by the plan and again by
    /// `logs`).
    fn warn(&self, w: String) {
        let mut all = self.warnings.lock().expect("warnings lock");
        if !all.contains(&w) {
            all.push(w);
        }
    }

    /// `results/<repo>/<fp>`, or `None` when either is not one safe directory name
    /// (repo names are checked by the manifest, fingerprints are hex; this is the net).
    fn record_dir(&self, repo: &str, fp: &str) -> Option<PathBuf> {
        (untrusted::is_safe_name(repo) && untrusted::is_safe_name(fp))
            .then(|| self.dir.join(repo).join(fp))
    }

    /// The success record for `repo` at `fingerprint`, if any: the cache root's, else one
    /// fetched from the shared remote. A record that fails its checks (module docs) is
    /// ignored with a warning.
    pub fn get(&self, repo: &str, fingerprint: &str) -> Option<Record> {
        let dir = self.record_dir(repo, fingerprint)?;
        match read_record(&dir.join("record.json")) {
            Ok(None) => {}
            Ok(Some(rec)) => match check(&rec, repo, fingerprint) {
                Ok(()) => return Some(rec),
                Err(e) => self.warn(ignored(repo, fingerprint, &dir, &e)),
            },
            Err(e) => self.warn(ignored(repo, fingerprint, &dir, &e)),
        }
        self.get_shared(repo, fingerprint)
    }

    /// The last run's record of `repo` (any status), if any and if it is that repo's.
    pub fn last(&self, repo: &str) -> Option<Record> {
        if !untrusted::is_safe_name(repo) {
            return None;
        }
        read_record(&self.dir.join(repo).join("last.json"))
            .ok()
            .flatten()
            .filter(|r| r.repo == repo && r.steps.iter().all(|s| untrusted::is_safe_name(&s.name)))
    }

    /// Log files of the success record (sorted by step order when the record names them):
    /// regular files only, never a symlink to elsewhere.
    pub fn logs(&self, repo: &str, fingerprint: &str) -> Vec<PathBuf> {
        let Some(rec) = self.get(repo, fingerprint) else {
            return Vec::new();
        };
        let Some(dir) = self.record_dir(repo, fingerprint) else {
            return Vec::new();
        };
        let dir = dir.join("logs");
        rec.steps
            .iter()
            .map(|s| dir.join(format!("{}.log", s.name)))
            .filter(|p| untrusted::open_regular(p).is_ok())
            .collect()
    }

    /// Record a run: always updates `last.json`; when `status` is `ok`, also publishes the
    /// success record with copies of `logs` (`(step, log path)`) and, for a store made
    /// with [`Results::shared`], shares it through the remote in the background (the
    /// cache store's `finish` waits for the upload).
    ///
    /// Errors: I/O, or the record could not be staged for sharing. Callers make it a
    /// warning: a result record never decides a build.
    pub fn record(&self, fp: &Fingerprint, rec: &Record, logs: &[(String, PathBuf)]) -> Result<()> {
        let Some(final_dir) = self.record_dir(&rec.repo, &fp.hash) else {
            bail!(
                "repo `{}` or fingerprint `{}` is not a safe directory name: not recorded",
                rec.repo,
                fp.hash
            );
        };
        let repo_dir = self.dir.join(&rec.repo);
        // Real directories: a symlink in their place would make the writes below land
        // outside the cache root.
        for d in [&self.dir, &repo_dir] {
            untrusted::ensure_real_dir(d).with_context(|| format!("create {}", d.display()))?;
        }
        publish::write_file(
            &repo_dir.join("last.json"),
            &serde_json::to_vec_pretty(rec)?,
        )
        .with_context(|| format!("write {}", repo_dir.join("last.json").display()))?;
        if rec.status != RecordStatus::Ok {
            return Ok(());
        }
        let valid = read_record(&final_dir.join("record.json"))
            .ok()
            .flatten()
            .is_some_and(|r| check(&r, &rec.repo, &fp.hash).is_ok());
        if !valid {
            // Whatever else is in its place (a garbage record, a symlink) would make every
            // later record of this fingerprint "exist" while no run can use it: set aside.
            if fs::symlink_metadata(&final_dir).is_ok() {
                let trash = publish::temp_path(&repo_dir, ".trash");
                if fs::rename(&final_dir, &trash).is_ok() {
                    let _ = untrusted::remove_any(&trash);
                }
            }
            self.publish_record(&repo_dir, &final_dir, fp, rec, logs)?;
        }
        self.share(&rec.repo, &fp.hash, &final_dir)
    }

    fn publish_record(
        &self,
        repo_dir: &Path,
        final_dir: &Path,
        fp: &Fingerprint,
        rec: &Record,
        logs: &[(String, PathBuf)],
    ) -> Result<()> {
        let tmp = publish::temp_path(repo_dir, &format!(".tmp-{}", fp.hash));
        let filled = (|| -> Result<()> {
            fs::create_dir_all(tmp.join("logs"))?;
            for (step, path) in logs {
                fs::copy(path, tmp.join("logs").join(format!("{step}.log")))
                    .with_context(|| format!("copy log {}", path.display()))?;
            }
            fs::write(tmp.join("record.json"), serde_json::to_vec_pretty(rec)?)?;
            Ok(())
        })();
        if let Err(e) = filled {
            let _ = crate::support::fs::remove_tree(&tmp);
            return Err(e);
        }
        // `Exists`: another run recorded the same fingerprint first; the records are
        // equivalent, so theirs stands.
        publish::publish_dir(&tmp, final_dir)
            .with_context(|| format!("publish {}", final_dir.display()))?;
        Ok(())
    }

    /// Share the published record dir of `repo` at `fp` through the remote (a no-op
    /// without one, or when the run may not write it).
    fn share(&self, repo: &str, fp: &str, dir: &Path) -> Result<()> {
        let (Some(store), Some(key)) = (&self.shared, remote_key(repo, fp)) else {
            return Ok(());
        };
        store
            .share_tree(&key, dir)
            .with_context(|| format!("share the result record of {repo}"))?;
        Ok(())
    }

    /// The shared remote's record of `repo` at `fp`, asked once per run: checked, then
    /// kept under the cache root (or in memory, for a read-only cache).
    fn get_shared(&self, repo: &str, fp: &str) -> Option<Record> {
        let store = self.shared.as_ref()?;
        let id = (repo.to_owned(), fp.to_owned());
        if let Some(known) = self.fetched.lock().expect("fetched lock").get(&id) {
            return known.clone();
        }
        let rec = remote_key(repo, fp).and_then(|key| self.fetch(store, &key, repo, fp));
        // Kept for the run whatever the answer: a read-only cache cannot keep it on disk,
        // and a miss is not asked twice.
        self.fetched
            .lock()
            .expect("fetched lock")
            .insert(id, rec.clone());
        rec
    }

    /// Fetch, check and keep the remote record for `key`; every problem is a warning and
    /// a miss.
    fn fetch(&self, store: &Tiered, key: &CacheKey, repo: &str, fp: &str) -> Option<Record> {
        let writable = !store.cache().is_read_only();
        let scratch = if writable {
            fs::create_dir_all(self.dir.join(repo)).ok().map(|()| None)
        } else {
            tempfile::tempdir().ok().map(Some)
        };
        let Some(scratch) = scratch else {
            self.warn(format!(
                "cannot make room for the shared result record of {repo}: asked nothing"
            ));
            return None;
        };
        let into = match &scratch {
            Some(t) => t.path().join("record"),
            None => publish::temp_path(&self.dir.join(repo), &format!(".remote-{fp}")),
        };
        match store.fetch_tree(key, &into) {
            Ok(Some(_)) => {}
            Ok(None) => return None,
            Err(e) => {
                self.warn(format!("{e:#}"));
                return None;
            }
        }
        let rec = match read_record(&into.join("record.json"))
            .and_then(|r| r.context("it holds no record.json"))
            .and_then(|r| check(&r, repo, fp).and(check_tree(&into, &r)).map(|()| r))
        {
            Ok(r) => r,
            Err(e) => {
                let _ = crate::support::fs::remove_tree(&into);
                self.warn(ignored(
                    repo,
                    fp,
                    Path::new(&format!("{} (remote)", key.key)),
                    &e,
                ));
                return None;
            }
        };
        if scratch.is_none() {
            self.keep(&into, repo, fp);
        }
        Some(rec)
    }

    /// Publish a fetched and checked record dir `tmp` as the record of `repo` at `fp`
    /// (another run publishing it first is as good); a failure is a warning, and the
    /// record still counts for this run.
    fn keep(&self, tmp: &Path, repo: &str, fp: &str) {
        let Some(dir) = self.record_dir(repo, fp) else {
            return;
        };
        match publish::publish_dir(tmp, &dir) {
            Ok(Published::Renamed | Published::Exists) => {}
            Err(e) => self.warn(format!(
                "could not keep the shared result record of {repo} under {}: {e}",
                self.dir.display()
            )),
        }
    }
}

/// The remote key of `repo`'s record at fingerprint `fp`: `<repo>-<fp>` in stage
/// `result` (`None` when that is not a valid key, e.g. a fingerprint that is not hex).
fn remote_key(repo: &str, fp: &str) -> Option<CacheKey> {
    let key = CacheKey {
        stage: Stage::Result,
        key: format!("{repo}-{fp}"),
        inputs: vec![
            ("repo".to_owned(), repo.to_owned()),
            ("fingerprint".to_owned(), fp.to_owned()),
        ],
    };
    let hex = fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && crate::cache::key::check_key(&key.key).is_ok()).then_some(key)
}

/// The warning for a record of `repo` at `fp` (found at `place`) that failed a check.
fn ignored(repo: &str, fp: &str, place: &Path, e: &anyhow::Error) -> String {
    format!(
        "result record of {repo} at {} ({}) ignored: {e:#}",
        &fp[..16.min(fp.len())],
        place.display()
    )
}

/// Read a record file: `Ok(None)` when there is none; an error when it is not a regular
/// file, is larger than [`MAX_RECORD_BYTES`], or does not parse.
fn read_record(path: &Path) -> Result<Option<Record>> {
    let bytes = match untrusted::read_bounded(path, MAX_RECORD_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("read {}", path.display())),
    };
    let rec =
        serde_json::from_slice(&bytes).with_context(|| format!("parse {}", path.display()))?;
    Ok(Some(rec))
}

/// Whether `rec` is a success record of exactly `repo` at fingerprint `fp` (see the
/// module docs).
///
/// Errors: the first check it fails, saying what was found.
fn check(rec: &Record, repo: &str, fp: &str) -> Result<()> {
    ensure!(
        rec.schema_version == SCHEMA_VERSION,
        "schema version {} (expected {SCHEMA_VERSION})",
        rec.schema_version
    );
    ensure!(rec.repo == repo, "it is the record of `{}`", rec.repo);
    ensure!(
        rec.fingerprint == fp,
        "it is the record of fingerprint {}",
        rec.fingerprint
    );
    ensure!(
        rec.status == RecordStatus::Ok,
        "its status is `{}`, not `ok`",
        rec.status
    );
    ensure!(
        hash_inputs(&rec.inputs) == fp,
        "its inputs do not hash to its fingerprint"
    );
    for s in &rec.steps {
        ensure!(
            untrusted::is_safe_name(&s.name),
            "step name {:?} is not a safe file name",
            s.name
        );
    }
    Ok(())
}

/// A fetched record tree holds `record.json` and, under `logs/`, one `<step>.log` per
/// step of `rec` at most; every file a regular file.
///
/// Errors: the first file that does not belong, or a walk error.
fn check_tree(dir: &Path, rec: &Record) -> Result<()> {
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e.with_context(|| format!("walk {}", dir.display()))?;
        let rel = e
            .path()
            .strip_prefix(dir)
            .expect("walkdir stays under its root");
        let rel = rel.to_string_lossy();
        let ty = e.file_type();
        let ok = match rel.split_once('/') {
            None => (rel == "record.json" && ty.is_file()) || (rel == "logs" && ty.is_dir()),
            Some(("logs", name)) => {
                ty.is_file()
                    && rec
                        .steps
                        .iter()
                        .any(|s| name.strip_suffix(".log") == Some(s.name.as_str()))
            }
            Some(_) => false,
        };
        if !ok {
            bail!("it holds `{rel}`, which no record has");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
