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

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::engine::fingerprint::Fingerprint;
use crate::support::publish;

/// One step of a recorded run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RecordedStep {
    /// Step name.
    pub name: String,
    /// Wall-clock seconds it took.
    pub secs: f64,
}

/// What `record.json` and `last.json` hold.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Format version.
    pub schema_version: u32,
    /// Repo name.
    pub repo: String,
    /// Fingerprint hash.
    pub fingerprint: String,
    /// Fingerprint inputs.
    pub inputs: Vec<(String, String)>,
    /// `ok` or `failed` (only `last.json` can say `failed`).
    pub status: String,
    /// The run that produced it.
    pub run_id: String,
    /// Seconds since the Unix epoch when it was written.
    pub finished_unix: u64,
    /// Steps in order.
    pub steps: Vec<RecordedStep>,
}

/// The result store of a cache root.
#[derive(Debug, Clone)]
pub struct Results {
    dir: PathBuf,
}

impl Results {
    /// The store under `cache_root/results`.
    pub fn new(cache_root: &Path) -> Results {
        Results {
            dir: cache_root.join("results"),
        }
    }

    fn record_dir(&self, repo: &str, fp: &str) -> PathBuf {
        self.dir.join(repo).join(fp)
    }

    /// The success record for `repo` at `fingerprint`, if any.
    pub fn get(&self, repo: &str, fingerprint: &str) -> Option<Record> {
        let p = self.record_dir(repo, fingerprint).join("record.json");
        serde_json::from_slice(&fs::read(p).ok()?).ok()
    }

    /// The last run's record of `repo` (any status), if any.
    pub fn last(&self, repo: &str) -> Option<Record> {
        serde_json::from_slice(&fs::read(self.dir.join(repo).join("last.json")).ok()?).ok()
    }

    /// Log files of the success record (sorted by step order when the record names them).
    pub fn logs(&self, repo: &str, fingerprint: &str) -> Vec<PathBuf> {
        let Some(rec) = self.get(repo, fingerprint) else {
            return Vec::new();
        };
        let dir = self.record_dir(repo, fingerprint).join("logs");
        rec.steps
            .iter()
            .map(|s| dir.join(format!("{}.log", s.name)))
            .filter(|p| p.is_file())
            .collect()
    }

    /// Record a run: always updates `last.json`; when `status` is `ok`, also publishes the
    /// success record with copies of `logs` (`(step, log path)`).
    ///
    /// Errors: I/O. Callers make it a warning: a result record never decides a build.
    pub fn record(&self, fp: &Fingerprint, rec: &Record, logs: &[(String, PathBuf)]) -> Result<()> {
        let repo_dir = self.dir.join(&rec.repo);
        publish::write_file(
            &repo_dir.join("last.json"),
            &serde_json::to_vec_pretty(rec)?,
        )
        .with_context(|| format!("write {}", repo_dir.join("last.json").display()))?;
        if rec.status != "ok" {
            return Ok(());
        }
        let final_dir = self.record_dir(&rec.repo, &fp.hash);
        if final_dir.join("record.json").is_file() {
            return Ok(());
        }
        let tmp = publish::temp_path(&repo_dir, &format!(".tmp-{}", fp.hash));
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
        publish::publish_dir(&tmp, &final_dir)
            .with_context(|| format!("publish {}", final_dir.display()))?;
        Ok(())
    }
}
