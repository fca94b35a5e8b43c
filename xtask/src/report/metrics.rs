//! Build metrics: what every `ci` run cost, as data (`build-metrics.json` in the run
//! directory, `schema_version` 1), appended to a history in the cache root
//! (`<cache root>/metrics/history.jsonl`, one run per line) that `cargo xtask report`
//! reads (issue 5, the seeds' "performance dashboard").
//!
//! This module owns the metrics types and the history file. The numbers come from the
//! runner's [`RunSummary`] plus what only the caller knows (start time, disk space before
//! the run, the cache's size after it, the CI environment). Writing metrics never fails a
//! build: problems are printed as warnings.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::engine::summary::{RunSummary, StageReport};

/// Format version of `build-metrics.json` and of each line of the history. Bump it when a
/// field changes meaning or is removed (adding an optional field is compatible).
pub const SCHEMA_VERSION: u32 = 1;

/// One run's metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildMetrics {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Run id (the run directory's name).
    pub run_id: String,
    /// When the run started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// Commit built: `GITHUB_SHA`, else `git rev-parse HEAD` in the working directory.
    pub commit: Option<String>,
    /// What started the run: `GITHUB_EVENT_NAME` (`push`, `pull_request`, ...), else `local`.
    pub event: String,
    /// `GITHUB_REF`, when set.
    pub git_ref: Option<String>,
    /// Variant built.
    pub variant: String,
    /// `ok` or `failed`.
    pub status: String,
    /// Wall-clock seconds of the whole run.
    pub secs: f64,
    /// Repos in plan order.
    pub repos: Vec<RepoMetrics>,
    /// Chain-wide cache stages (registry, git).
    pub chain_cache: Vec<StageMetrics>,
    /// Bytes in the cache root's entries after the run (`None` if it could not be read).
    pub cache_bytes: Option<u64>,
    /// Entries in the cache root after the run.
    pub cache_entries: Option<u64>,
    /// Free disk space around the run.
    pub disk: DiskMetrics,
    /// Line coverage over every repo with a `coverage` step, in percent (`None`: no repo
    /// measured coverage; see `coverage.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage_line_percent: Option<f64>,
    /// What the shared compiler cache did in the run (absent without one; an optional
    /// field added to schema 1, see `engine::compiler_cache`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler_cache: Option<crate::engine::compiler_cache::CompilerCacheStats>,
}

/// One repo's share of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoMetrics {
    /// Repo name.
    pub name: String,
    /// `ok`, `FAILED`, `skipped`, `cached` (the summary's word).
    pub status: String,
    /// Wall-clock seconds from the repo's start to its end (0 when it did not run).
    pub secs: f64,
    /// Steps that ran, in order.
    pub steps: Vec<StepMetrics>,
    /// The repo's cache stages (the target dir).
    pub cache: Vec<StageMetrics>,
    /// Seconds spent restoring caches.
    pub restore_secs: f64,
    /// Bytes restored.
    pub restore_bytes: u64,
    /// Seconds spent saving caches.
    pub save_secs: f64,
    /// Bytes saved.
    pub save_bytes: u64,
}

/// One step's duration and outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Step name.
    pub name: String,
    /// `ok`, `failed` or `timeout`.
    pub status: String,
    /// Wall-clock seconds.
    pub secs: f64,
}

/// One cache stage's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageMetrics {
    /// Stage name (`registry`, `git`, `target`).
    pub stage: String,
    /// Restore outcome: `hit`, `partial` (restored from a fallback key), `miss`, `kept`
    /// (the destination already had a tree) or `error`.
    pub restore: String,
    /// Seconds the restore took (0 unless something was restored).
    pub restore_secs: f64,
    /// Bytes restored.
    pub restore_bytes: u64,
    /// Save outcome as the cache reports it (`saved`, `unchanged`, `exists`, `skipped`,
    /// `no-space`, `empty`), or `none` when no save ran.
    pub save: String,
    /// Seconds the save took, when it reports them.
    pub save_secs: f64,
    /// Bytes in the saved entry, when it reports them.
    pub save_bytes: u64,
    /// The remote cache's part (remote hit or miss, bytes and rates of the download and
    /// the upload), counted apart from the local outcome above; absent without a remote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<crate::cache::report::RemoteStage>,
}

/// Free space on the filesystem of the cache root, before and after the run, in bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DiskMetrics {
    /// The path measured (the cache root).
    pub path: String,
    /// Free bytes before the run.
    pub free_before_bytes: Option<u64>,
    /// Free bytes after the run (after caches were saved).
    pub free_after_bytes: Option<u64>,
}

/// What the caller adds to a [`RunSummary`].
#[derive(Debug, Clone, Default)]
pub struct Extra {
    /// When the run started, in seconds since the Unix epoch.
    pub started_unix: u64,
    /// See [`BuildMetrics::commit`].
    pub commit: Option<String>,
    /// See [`BuildMetrics::event`].
    pub event: String,
    /// See [`BuildMetrics::git_ref`].
    pub git_ref: Option<String>,
    /// See [`BuildMetrics::cache_bytes`].
    pub cache_bytes: Option<u64>,
    /// See [`BuildMetrics::cache_entries`].
    pub cache_entries: Option<u64>,
    /// See [`BuildMetrics::disk`].
    pub disk_path: String,
    /// See [`DiskMetrics::free_before_bytes`].
    pub free_before: Option<u64>,
    /// See [`DiskMetrics::free_after_bytes`].
    pub free_after: Option<u64>,
}

fn stage(s: &StageReport) -> StageMetrics {
    let (restore_bytes, restore_secs) = s
        .restore
        .restored()
        .map_or((0, 0.0), |(_, bytes, secs)| (bytes, secs));
    let restore = match s.restore_word() {
        "partial hit" => "partial",
        w => w,
    }
    .to_owned();
    // The save outcome's serde form is `{"status": ..., "bytes": ..., "secs": ...}`: read it
    // from there so that new outcomes of the cache need no change here.
    let save_json = s.save.as_ref().and_then(|v| serde_json::to_value(v).ok());
    let field = |k: &str| save_json.as_ref().and_then(|v| v.get(k).cloned());
    StageMetrics {
        stage: s.stage.clone(),
        restore,
        restore_secs,
        restore_bytes,
        save: field("status")
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| "none".into()),
        save_secs: field("secs").and_then(|v| v.as_f64()).unwrap_or(0.0),
        save_bytes: field("bytes").and_then(|v| v.as_u64()).unwrap_or(0),
        remote: s.remote.clone(),
    }
}

impl BuildMetrics {
    /// The metrics of the run `summary` describes, with what only the caller knows.
    pub fn from_summary(summary: &RunSummary, extra: &Extra) -> BuildMetrics {
        BuildMetrics {
            schema_version: SCHEMA_VERSION,
            run_id: summary.run_id.clone(),
            started_unix: extra.started_unix,
            commit: extra.commit.clone(),
            event: extra.event.clone(),
            git_ref: extra.git_ref.clone(),
            variant: summary.variant.clone(),
            status: if summary.failed() { "failed" } else { "ok" }.into(),
            secs: summary.secs,
            repos: summary
                .repos
                .iter()
                .map(|r| RepoMetrics {
                    name: r.name.clone(),
                    status: r.status.word().to_owned(),
                    secs: (r.end_secs - r.start_secs).max(0.0),
                    steps: r
                        .steps
                        .iter()
                        .map(|s| StepMetrics {
                            name: s.name.clone(),
                            status: if s.timed_out {
                                "timeout"
                            } else if s.ok() {
                                "ok"
                            } else {
                                "failed"
                            }
                            .into(),
                            secs: s.secs,
                        })
                        .collect(),
                    cache: r.cache.iter().map(stage).collect(),
                    restore_secs: r.restore_secs,
                    restore_bytes: r.restore_bytes,
                    save_secs: r.save_secs,
                    save_bytes: r.save_bytes,
                })
                .collect(),
            chain_cache: summary.chain_cache.iter().map(stage).collect(),
            cache_bytes: extra.cache_bytes,
            cache_entries: extra.cache_entries,
            coverage_line_percent: crate::engine::coverage::total(&summary.repos).map(|t| t.2),
            compiler_cache: summary.compiler_cache.clone(),
            disk: DiskMetrics {
                path: extra.disk_path.clone(),
                free_before_bytes: extra.free_before,
                free_after_bytes: extra.free_after,
            },
        }
    }

    /// Every cache stage of the run, chain-wide ones first.
    pub fn stages(&self) -> impl Iterator<Item = &StageMetrics> {
        self.chain_cache
            .iter()
            .chain(self.repos.iter().flat_map(|r| r.cache.iter()))
    }

    /// Share of cache stages restored (`hit` or `partial`) among those that looked
    /// something up (`kept` stages are left out: they did not need the cache), from 0 to 1;
    /// `None` when no stage looked anything up.
    pub fn hit_rate(&self) -> Option<f64> {
        let looked: Vec<&StageMetrics> = self.stages().filter(|s| s.restore != "kept").collect();
        if looked.is_empty() {
            return None;
        }
        let hits = looked
            .iter()
            .filter(|s| s.restore == "hit" || s.restore == "partial")
            .count();
        Some(hits as f64 / looked.len() as f64)
    }
}

/// `<cache root>/metrics/history.jsonl`.
pub fn history_path(cache_root: &Path) -> PathBuf {
    cache_root.join("metrics").join("history.jsonl")
}

/// Runs kept when the history is trimmed.
pub const HISTORY_KEEP: usize = 1000;

/// Size in bytes past which the history is trimmed to its last [`HISTORY_KEEP`] runs
/// (a run's line is a few KiB, so this is some 2000 runs of a chain of seven repos).
pub const HISTORY_TRIM_BYTES: u64 = 8 << 20;

/// Append `m` as one line to the history at `path` (created with its directory if
/// needed), then trim it past [`HISTORY_TRIM_BYTES`]. One `write` of a whole line in
/// append mode, so concurrent runs do not interleave lines; a trim racing another run's
/// append may drop that one line (the history is a trend, not a ledger).
pub fn append(path: &Path, m: &BuildMetrics) -> Result<()> {
    append_line(path, m)?;
    trim(path, HISTORY_TRIM_BYTES, HISTORY_KEEP)
}

/// Largest history read back, in bytes: trimming keeps it near [`HISTORY_TRIM_BYTES`], so
/// anything far larger is not ours to load whole.
const HISTORY_READ_MAX: u64 = 16 * HISTORY_TRIM_BYTES;

/// The history's bytes, read as untrusted input (`cache::untrusted`): never through a
/// symlink, never blocking on a FIFO, at most [`HISTORY_READ_MAX`] bytes. `Ok(None)`: no
/// history yet.
fn read_bytes(path: &Path) -> Result<Option<Vec<u8>>> {
    match crate::cache::untrusted::read_bounded(path, HISTORY_READ_MAX) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read metrics history {}", path.display())),
    }
}

/// The lines of the history that parse as runs this xtask reads; the rest (not UTF-8,
/// not JSON, a newer `schema_version`) are counted as skipped.
fn parse_lines(bytes: &[u8]) -> (Vec<BuildMetrics>, usize) {
    let mut runs = Vec::new();
    let mut skipped = 0;
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<BuildMetrics>(line) {
            Ok(m) if m.schema_version <= SCHEMA_VERSION => runs.push(m),
            _ => skipped += 1,
        }
    }
    (runs, skipped)
}

/// Keep only the last `keep` runs of the history at `path` once it is larger than
/// `max_bytes` (rewritten to a temporary file, then renamed over it). Lines that are not
/// runs (garbage, bytes that are not UTF-8) are dropped with it, so one bad line can
/// never stop the trim; a history that cannot be read at all (a FIFO, far too large)
/// is replaced by an empty one.
fn trim(path: &Path, max_bytes: u64, keep: usize) -> Result<()> {
    let len = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
    if len <= max_bytes {
        return Ok(());
    }
    let bytes = read_bytes(path).unwrap_or_default().unwrap_or_default();
    // Keep JSON lines of any schema version (a newer xtask's runs are its to read).
    let json: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| serde_json::from_slice::<serde::de::IgnoredAny>(l).is_ok())
        .collect();
    let mut kept = Vec::new();
    for line in &json[json.len().saturating_sub(keep)..] {
        kept.extend_from_slice(line);
        kept.push(b'\n');
    }
    let tmp = path.with_extension(format!("jsonl.{}", std::process::id()));
    std::fs::write(&tmp, kept).with_context(|| format!("write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replace {}", path.display()))
}

fn append_line(path: &Path, m: &BuildMetrics) -> Result<()> {
    if let Some(dir) = path.parent() {
        // A real directory: a symlink in its place would make the append land outside
        // the cache root.
        crate::cache::untrusted::ensure_real_dir(dir)
            .with_context(|| format!("create {}", dir.display()))?;
    }
    let mut line = serde_json::to_string(m)?;
    line.push('\n');
    // Never through a symlink, never blocking on a FIFO put in the history's place.
    let mut f = crate::cache::untrusted::open_append(path)
        .with_context(|| format!("open metrics history {}", path.display()))?;
    f.write_all(line.as_bytes())
        .with_context(|| format!("append to metrics history {}", path.display()))
}

/// Read the history at `path`: the runs in file order, and how many lines were skipped
/// (unparsable, or a newer `schema_version` than this xtask reads).
///
/// Errors: the file cannot be read (a missing file is an empty history).
pub fn read_history(path: &Path) -> Result<(Vec<BuildMetrics>, usize)> {
    let Some(bytes) = read_bytes(path)? else {
        return Ok((Vec::new(), 0));
    };
    Ok(parse_lines(&bytes))
}

/// The last `n` runs of the history at `path` that parse (oldest first); none when it
/// is missing or cannot be read (read as [`read_history`] reads it). Only the last lines
/// are parsed, so a long history costs a read, not a parse of every run.
pub fn read_recent(path: &Path, n: usize) -> Vec<BuildMetrics> {
    let Ok(Some(bytes)) = read_bytes(path) else {
        return Vec::new();
    };
    let lines: Vec<&[u8]> = bytes
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .collect();
    let mut tail = Vec::new();
    for l in &lines[lines.len().saturating_sub(n)..] {
        tail.extend_from_slice(l);
        tail.push(b'\n');
    }
    parse_lines(&tail).0
}

/// What `ci` records before it starts, for [`Probe::finish`].
#[derive(Debug, Clone)]
pub struct Probe {
    started_unix: u64,
    cache_root: PathBuf,
    free_before: Option<u64>,
}

impl Probe {
    /// Note the start time and the free space on the cache root's filesystem.
    pub fn start(cache_root: &Path) -> Probe {
        Probe {
            started_unix: crate::support::time::now_unix(),
            cache_root: cache_root.to_path_buf(),
            free_before: crate::support::disk::free_bytes(cache_root).map(|(b, _)| b),
        }
    }

    /// Build the metrics of the finished run, write `<run dir>/build-metrics.json` and
    /// append them to the history; print where (or a warning: metrics never fail a run).
    ///
    /// A run whose cache is read-only (an untrusted event, `--no-save`) appends nothing:
    /// it writes nothing under the cache root, and an untrusted run's numbers are not
    /// the chain's (issue 13).
    pub fn finish(self, summary: &RunSummary, cache: &crate::cache::Cache, run_dir: &Path) {
        let env = crate::support::env::process_env;
        let entries = cache.entries();
        let extra = Extra {
            started_unix: self.started_unix,
            commit: env("GITHUB_SHA").or_else(git_head),
            event: env("GITHUB_EVENT_NAME").unwrap_or_else(|| "local".into()),
            git_ref: env("GITHUB_REF"),
            cache_bytes: Some(entries.iter().map(|e| e.bytes).sum()),
            cache_entries: Some(entries.len() as u64),
            disk_path: self.cache_root.display().to_string(),
            free_before: self.free_before,
            free_after: crate::support::disk::free_bytes(&self.cache_root).map(|(b, _)| b),
        };
        let m = BuildMetrics::from_summary(summary, &extra);
        let file = run_dir.join("build-metrics.json");
        let history = (!cache.is_read_only()).then(|| history_path(&self.cache_root));
        let res = serde_json::to_vec_pretty(&m)
            .map_err(anyhow::Error::from)
            .and_then(|json| {
                std::fs::write(&file, json)
                    .with_context(|| format!("write the run's metrics {}", file.display()))
            })
            .and_then(|()| history.as_deref().map_or(Ok(()), |h| append(h, &m)));
        match (res, history) {
            (Ok(()), Some(h)) => println!("metrics: {} (history: {})", file.display(), h.display()),
            (Ok(()), None) => println!(
                "metrics: {} (not added to the history: this run may not write the cache)",
                file.display()
            ),
            (Err(e), _) => {
                eprintln!("warning: metrics not recorded ({e:#}); the build result stands")
            }
        }
    }
}

/// `git rev-parse HEAD` in the working directory, if it is a git checkout.
fn git_head() -> Option<String> {
    let out = std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Metrics of a run with one repo that hit its target cache and one that failed a
    /// step after a miss, and a chain-wide registry miss. (The mapping from a real
    /// `RunSummary` is tested end to end in `tests/it/debugging.rs`.)
    pub(crate) fn sample(run_id: &str) -> BuildMetrics {
        let stage = |stage: &str, restore: &str, bytes: u64| StageMetrics {
            stage: stage.into(),
            restore: restore.into(),
            restore_secs: 0.5,
            restore_bytes: bytes,
            save: "skipped".into(),
            save_secs: 0.0,
            save_bytes: 0,
            remote: None,
        };
        let step = |name: &str, status: &str, secs| StepMetrics {
            name: name.into(),
            status: status.into(),
            secs,
        };
        let repo = |name: &str, status: &str, steps: Vec<StepMetrics>, cache| RepoMetrics {
            name: name.into(),
            status: status.into(),
            secs: 3.5,
            steps,
            cache,
            restore_secs: 0.5,
            restore_bytes: 1000,
            save_secs: 0.0,
            save_bytes: 0,
        };
        BuildMetrics {
            schema_version: SCHEMA_VERSION,
            run_id: run_id.into(),
            started_unix: 1_700_000_000,
            commit: Some("abc".into()),
            event: "push".into(),
            git_ref: None,
            variant: "base".into(),
            status: "failed".into(),
            secs: 9.0,
            repos: vec![
                repo(
                    "a",
                    "ok",
                    vec![step("build", "ok", 2.0), step("test", "ok", 1.0)],
                    vec![stage("target", "hit", 1000)],
                ),
                repo(
                    "b",
                    "FAILED",
                    vec![step("build", "ok", 3.0), step("test", "failed", 0.5)],
                    vec![stage("target", "miss", 0), stage("extra", "kept", 0)],
                ),
            ],
            chain_cache: vec![stage("registry", "partial", 10)],
            cache_bytes: Some(5000),
            cache_entries: Some(2),
            coverage_line_percent: None,
            compiler_cache: None,
            disk: DiskMetrics {
                path: "/cache".into(),
                free_before_bytes: Some(10),
                free_after_bytes: Some(9),
            },
        }
    }

    #[test]
    fn metrics_round_trip_with_their_schema_version() {
        let m = sample("r1");
        let json = serde_json::to_string_pretty(&m).unwrap();
        assert!(json.contains("\"schema_version\": 1"), "{json}");
        let back: BuildMetrics = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn hit_rate_counts_hits_and_partials_and_leaves_kept_out() {
        // registry partial, a hit, b miss; b's `kept` stage is not counted: two in three.
        let m = sample("r1");
        assert!((m.hit_rate().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        let mut none = m.clone();
        none.chain_cache.clear();
        none.repos.clear();
        assert_eq!(none.hit_rate(), None);
    }

    #[test]
    fn a_large_history_is_trimmed_to_its_last_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = history_path(dir.path());
        for i in 0..5 {
            append_line(&path, &sample(&format!("r{i}"))).unwrap();
        }
        trim(&path, u64::MAX, 2).unwrap();
        assert_eq!(
            read_history(&path).unwrap().0.len(),
            5,
            "under the size: untouched"
        );
        trim(&path, 10, 2).unwrap();
        let ids: Vec<String> = read_history(&path)
            .unwrap()
            .0
            .into_iter()
            .map(|m| m.run_id)
            .collect();
        assert_eq!(ids, ["r3", "r4"]);
    }

    #[test]
    fn history_grows_by_one_line_per_append_and_skips_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = history_path(dir.path());
        assert_eq!(read_history(&path).unwrap().0.len(), 0);
        for (i, id) in ["r1", "r2", "r3"].iter().enumerate() {
            append(&path, &sample(id)).unwrap();
            let (runs, skipped) = read_history(&path).unwrap();
            assert_eq!((runs.len(), skipped), (i + 1, 0));
            assert_eq!(runs.last().unwrap().run_id, *id);
        }
        let mut newer = serde_json::to_value(sample("r4")).unwrap();
        newer["schema_version"] = serde_json::json!(SCHEMA_VERSION + 1);
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(format!("not json\n{newer}\n").as_bytes())
            .unwrap();
        let (runs, skipped) = read_history(&path).unwrap();
        assert_eq!((runs.len(), skipped), (3, 2));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_skipped_and_the_history_still_trims() {
        let dir = tempfile::tempdir().unwrap();
        let path = history_path(dir.path());
        append(&path, &sample("r1")).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"\xff\xfe{\"run_id\": 1}\n")
            .unwrap();
        append(&path, &sample("r2")).unwrap();
        let (runs, skipped) = read_history(&path).unwrap();
        assert_eq!((runs.len(), skipped), (2, 1));
        // Trimming reads past the bad line, keeps the last runs and drops the garbage.
        trim(&path, 0, 1).unwrap();
        let (runs, skipped) = read_history(&path).unwrap();
        assert_eq!((runs.len(), skipped), (1, 0));
        assert_eq!(runs[0].run_id, "r2");
    }

    #[test]
    fn a_fifo_or_symlink_in_the_history_place_never_blocks_or_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let path = history_path(dir.path());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(
            read_history(&path).is_err(),
            "a FIFO is an error, not a hang"
        );
        append(&path, &sample("r1")).unwrap();
        assert_eq!(read_history(&path).unwrap().0.len(), 1);
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "mine").unwrap();
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        append(&path, &sample("r2")).unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"mine");
    }
}
