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
//! Records read back are untrusted (`cache::untrusted`): read bounded, never through a
//! symlink or from a FIFO, and a record counts only when it is of this format, names the
//! repo and fingerprint of the directory it is in, says `ok` (for a success record), and
//! names steps that are safe file names (a step name becomes `logs/<step>.log`). Anything
//! else is "no record": the repo builds.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::untrusted;
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

    /// `results/<repo>/<fp>`, or `None` when either is not one safe directory name
    /// (repo names are checked by the manifest, fingerprints are hex; this is the net).
    fn record_dir(&self, repo: &str, fp: &str) -> Option<PathBuf> {
        (untrusted::is_safe_name(repo) && untrusted::is_safe_name(fp))
            .then(|| self.dir.join(repo).join(fp))
    }

    /// Read a record at `path` that must be `repo`'s: `None` when it is missing,
    /// unreadable, of another format or repo, or names a step that is not a safe file
    /// name.
    fn read(path: &Path, repo: &str) -> Option<Record> {
        let rec: Record = serde_json::from_str(&untrusted::read_meta(path).ok()?).ok()?;
        let valid = rec.schema_version == 1
            && rec.repo == repo
            && matches!(rec.status.as_str(), "ok" | "failed")
            && rec.steps.len() <= 1000
            && rec.steps.iter().all(|s| untrusted::is_safe_name(&s.name));
        valid.then_some(rec)
    }

    /// The success record for `repo` at `fingerprint`, if any: one that says `ok` for
    /// exactly this fingerprint (see the module docs for what else it must be).
    pub fn get(&self, repo: &str, fingerprint: &str) -> Option<Record> {
        let p = self.record_dir(repo, fingerprint)?.join("record.json");
        Results::read(&p, repo).filter(|r| r.status == "ok" && r.fingerprint == fingerprint)
    }

    /// The last run's record of `repo` (any status), if any.
    pub fn last(&self, repo: &str) -> Option<Record> {
        if !untrusted::is_safe_name(repo) {
            return None;
        }
        Results::read(&self.dir.join(repo).join("last.json"), repo)
    }

    /// Log files of the success record (sorted by step order when the record names them).
    pub fn logs(&self, repo: &str, fingerprint: &str) -> Vec<PathBuf> {
        let Some(rec) = self.get(repo, fingerprint) else {
            return Vec::new();
        };
        let Some(dir) = self.record_dir(repo, fingerprint).map(|d| d.join("logs")) else {
            return Vec::new();
        };
        // Step names were checked by `read`; a log that is not a regular file (a
        // symlink out of the store, a FIFO) is left out.
        rec.steps
            .iter()
            .map(|s| dir.join(format!("{}.log", s.name)))
            .filter(|p| untrusted::open_regular(p).is_ok())
            .collect()
    }

    /// Record a run: always updates `last.json`; when `status` is `ok`, also publishes the
    /// success record with copies of `logs` (`(step, log path)`).
    ///
    /// Errors: I/O. Callers make it a warning: a result record never decides a build.
    pub fn record(&self, fp: &Fingerprint, rec: &Record, logs: &[(String, PathBuf)]) -> Result<()> {
        let Some(final_dir) = self.record_dir(&rec.repo, &fp.hash) else {
            anyhow::bail!(
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
        if rec.status != "ok" {
            return Ok(());
        }
        if self.get(&rec.repo, &fp.hash).is_some() {
            return Ok(());
        }
        // Whatever else is in its place (a garbage record, a symlink) would make every
        // later record of this fingerprint "exist" while no run can use it: set aside.
        if fs::symlink_metadata(&final_dir).is_ok() {
            let trash = publish::temp_path(&repo_dir, ".trash");
            if fs::rename(&final_dir, &trash).is_ok() {
                let _ = untrusted::remove_any(&trash);
            }
        }
        let tmp = publish::temp_path(&repo_dir, &format!(".tmp-{}", fp.hash));
        let filled = (|| -> Result<()> {
            fs::create_dir_all(tmp.join("logs"))?;
            for (step, path) in logs {
                anyhow::ensure!(
                    untrusted::is_safe_name(step),
                    "step name `{step}` is not a safe file name"
                );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(repo: &str, fp: &str, status: &str, steps: &[&str]) -> Record {
        Record {
            schema_version: 1,
            repo: repo.into(),
            fingerprint: fp.into(),
            inputs: vec![],
            status: status.into(),
            run_id: "r1".into(),
            finished_unix: 1,
            steps: steps
                .iter()
                .map(|s| RecordedStep {
                    name: (*s).into(),
                    secs: 1.0,
                })
                .collect(),
        }
    }

    fn fp() -> Fingerprint {
        Fingerprint {
            hash: "ab12".repeat(16),
            inputs: vec![],
        }
    }

    #[test]
    fn a_record_counts_only_for_its_own_repo_fingerprint_and_safe_steps() {
        let t = tempfile::tempdir().unwrap();
        let store = Results::new(t.path());
        let log = t.path().join("build.log");
        fs::write(&log, "built").unwrap();
        let f = fp();
        store
            .record(
                &f,
                &rec("a", &f.hash, "ok", &["build"]),
                &[("build".into(), log)],
            )
            .unwrap();
        assert!(store.get("a", &f.hash).is_some());
        assert_eq!(store.logs("a", &f.hash).len(), 1);
        let path = t.path().join("results/a").join(&f.hash).join("record.json");
        let write = |r: &Record| fs::write(&path, serde_json::to_vec(r).unwrap()).unwrap();
        // Another repo's record, another fingerprint, a failure, a hostile step name: no
        // record (the repo builds), and no path is built from the step name.
        for bad in [
            rec("b", &f.hash, "ok", &["build"]),
            rec("a", "ffff", "ok", &["build"]),
            rec("a", &f.hash, "failed", &["build"]),
            rec("a", &f.hash, "ok", &["../../../../etc/passwd"]),
            rec("a", &f.hash, "ok", &["x/y"]),
        ] {
            write(&bad);
            assert!(store.get("a", &f.hash).is_none(), "{:?}", bad.steps);
            assert!(store.logs("a", &f.hash).is_empty());
        }
        // Garbage, non-UTF-8 and a FIFO: absent, never a panic or a hang.
        fs::write(&path, [0xff, 0xfe, b'{']).unwrap();
        assert!(store.get("a", &f.hash).is_none());
        fs::remove_file(&path).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(store.get("a", &f.hash).is_none());
        // A later successful run replaces the garbage instead of "existing" forever.
        let log = t.path().join("build.log");
        store
            .record(
                &f,
                &rec("a", &f.hash, "ok", &["build"]),
                &[("build".into(), log)],
            )
            .unwrap();
        assert!(store.get("a", &f.hash).is_some());
        // Names that are not one safe component are never looked up or written.
        assert!(store.get("../x", &f.hash).is_none());
        assert!(store.last("..").is_none());
        assert!(store
            .record(&f, &rec("a/../../x", &f.hash, "ok", &[]), &[])
            .is_err());
        assert!(!t.path().join("x").exists());
    }

    #[test]
    fn a_symlinked_store_dir_is_replaced_not_written_through() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::create_dir_all(t.path().join("cache/results")).unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("cache/results/a")).unwrap();
        let store = Results::new(&t.path().join("cache"));
        let f = fp();
        store
            .record(&f, &rec("a", &f.hash, "ok", &[]), &[])
            .unwrap();
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
        assert!(store.get("a", &f.hash).is_some());
    }
}
