//! The run summary: what happened to every repo, as data (`summary.json` in the run
//! directory, `schema_version` 1) and as the table printed at the end of `ci`.
//!
//! Owns the report types and their rendering only; the runner fills them in.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use crate::cache::report::StageReport;

/// Final status of a repo in a run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "reason")]
pub enum RepoStatus {
    /// Every step succeeded.
    Ok,
    /// A step failed or timed out, or the repo could not be resolved (reason given).
    Failed(String),
    /// Not run (reason given: upstream failed, not affected, stopped early).
    Skipped(String),
    /// Not run because a successful run with the same input fingerprint is recorded
    /// (reason says how to replay or force it).
    Cached(String),
}

impl RepoStatus {
    /// Short word for the table.
    pub fn word(&self) -> &'static str {
        match self {
            RepoStatus::Ok => "ok",
            RepoStatus::Failed(_) => "FAILED",
            RepoStatus::Skipped(_) => "skipped",
            RepoStatus::Cached(_) => "cached",
        }
    }

    /// `word: reason`, or just the word.
    pub fn describe(&self) -> String {
        match self {
            RepoStatus::Ok => "ok".into(),
            RepoStatus::Failed(why) | RepoStatus::Skipped(why) | RepoStatus::Cached(why) => {
                format!("{}: {}", self.word(), why.lines().next().unwrap_or(""))
            }
        }
    }
}

/// One step's result.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Step name.
    pub name: String,
    /// Exit code (`None` when killed).
    pub code: Option<i32>,
    /// Killed at its timeout.
    pub timed_out: bool,
    /// Wall-clock seconds.
    pub secs: f64,
    /// Log file of the step.
    pub log: String,
    /// Compiler errors the step reported (from cargo's JSON diagnostics, in GitHub
    /// Actions; at most 20), for the summary and notifications.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::support::exec::Diagnostic>,
    /// The run was cancelled while the step ran: the signal was forwarded to it, so its
    /// exit says nothing about the step (added to schema 1; absent when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cancelled: bool,
}

impl StepReport {
    /// Whether the step succeeded (a cancelled step did not).
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out && !self.cancelled
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// One repo's row.
#[derive(Debug, Clone, Serialize)]
pub struct RepoReport {
    /// Repo name.
    pub name: String,
    /// Final status.
    #[serde(flatten)]
    pub status: RepoStatus,
    /// Seconds from the start of the run when the repo started (0 when it did not run).
    pub start_secs: f64,
    /// Seconds from the start of the run when the repo ended (0 when it did not run).
    pub end_secs: f64,
    /// Steps that ran, in order.
    pub steps: Vec<StepReport>,
    /// Test counts from the JUnit report of a nextest test step (absent without nextest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tests: Option<crate::engine::testing::TestCounts>,
    /// The failing tests of its test steps, in run order: from nextest's JUnit report and
    /// the doctest step's output, each with its panic message and place (at most
    /// [`crate::engine::testing::MAX_FAILED_TESTS`]; `tests` counts every one). Added to
    /// schema 1; absent when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_tests: Vec<crate::engine::testing::FailedTest>,
    /// Cache results per stage (the target stage).
    pub cache: Vec<StageReport>,
    /// Seconds spent restoring caches.
    pub restore_secs: f64,
    /// Bytes restored.
    pub restore_bytes: u64,
    /// Seconds spent saving caches.
    pub save_secs: f64,
    /// Bytes saved.
    pub save_bytes: u64,
    /// Warnings for the summary (unused patches, cache problems).
    pub warnings: Vec<String>,
    /// Suggested fixes for a failed step, from the error knowledge base
    /// (`ci/error-patterns.toml`, see `explain`), at most 3.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// What the run knew about the failed repo beyond its logs when it computed `hints`
    /// (the toolchain against the repo's pin, registry versions against the checkouts';
    /// names in `report::explain::CONTEXT_NAMES`), so `explain` over the run gives the
    /// same hints. Added to schema 1; absent when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub hint_context: BTreeMap<String, String>,
    /// Release outputs (`ci --release`): files, hashes, determinism; see
    /// [`crate::engine::release_build`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<ReleaseRepo>,
    /// Line coverage of a `coverage` step (see [`crate::engine::coverage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<CoverageReport>,
    /// The run was cancelled before the repo finished: its status is `skipped` with the
    /// reason (it neither passed nor failed), and its steps list what ran (added to
    /// schema 1; absent when false).
    #[serde(default, skip_serializing_if = "is_false")]
    pub cancelled: bool,
}

impl RepoReport {
    /// The report of repo `name` that did not run, with `status` (its reason).
    pub fn not_run(name: &str, status: RepoStatus) -> RepoReport {
        RepoReport {
            name: name.to_owned(),
            status,
            start_secs: 0.0,
            end_secs: 0.0,
            tests: None,
            failed_tests: Vec::new(),
            hints: Vec::new(),
            hint_context: BTreeMap::new(),
            steps: Vec::new(),
            cache: Vec::new(),
            restore_secs: 0.0,
            restore_bytes: 0,
            save_secs: 0.0,
            save_bytes: 0,
            release: None,
            coverage: None,
            warnings: Vec::new(),
            cancelled: false,
        }
    }
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    /// Format version of `summary.json`.
    pub schema_version: u32,
    /// Run id (also the run directory's name).
    pub run_id: String,
    /// Variant built.
    pub variant: String,
    /// Chain-wide stages (registry, git).
    pub chain_cache: Vec<StageReport>,
    /// Repos in plan order.
    pub repos: Vec<RepoReport>,
    /// Wall-clock seconds of the whole run.
    pub secs: f64,
    /// The signal that cancelled the run (`SIGINT`, `SIGTERM`, ...); absent for a run that
    /// was not cancelled (added to schema 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled: Option<String>,
    /// Problems of the run as a whole that did not change any repo's result, e.g. a run
    /// dir that could not be written (each names the path and the operation; added to
    /// schema 1, absent when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// What the shared compiler cache (sccache) did in the run: hits, misses and bytes
    /// (added to schema 1; absent when the run had no compiler cache; see
    /// [`crate::engine::compiler_cache`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiler_cache: Option<crate::engine::compiler_cache::CompilerCacheStats>,
}

impl RunSummary {
    /// Whether any repo failed (the exit code is non-zero then).
    pub fn failed(&self) -> bool {
        self.repos
            .iter()
            .any(|r| matches!(r.status, RepoStatus::Failed(_)))
    }
}

/// One collected release file (see [`crate::engine::release_build`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactFile {
    /// File name (the binary's name), as it appears in `SHA256SUMS`.
    pub name: String,
    /// Path relative to the run's `artifacts/` directory (`<repo>/<name>`).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Hex sha256 of the file's bytes.
    pub sha256: String,
}

/// One repo's release outputs: its entry in `release-manifest.json`, also attached to
/// the repo's row of `summary.json` (`release`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseRepo {
    /// Repo name.
    pub repo: String,
    /// `ok`, `failed` or `skipped` (a repo that did not run, or a docs repo's `ok`).
    pub status: ReleaseStatus,
    /// The repo's version: the version all its workspace members share, else that of the
    /// member named like the repo; `None` when neither exists (or for docs repos).
    pub version: Option<String>,
    /// Version of every workspace member package (from `cargo metadata`).
    #[serde(default)]
    pub packages: BTreeMap<String, String>,
    /// `git rev-parse HEAD` in the checkout; `None` outside git.
    pub commit: Option<String>,
    /// First line of `rustc -vV` of the toolchain that built it (`rustc 1.88.0 (...)`).
    pub toolchain: Option<String>,
    /// Features of the variant built.
    #[serde(default)]
    pub features: Vec<String>,
    /// Key in the builds store.
    pub key: Option<String>,
    /// The files came from the builds store (an earlier identical build), not a build.
    #[serde(default)]
    pub reused: bool,
    /// `Some(true)`: a clean rebuild gave the same bytes; `Some(false)`: it did not;
    /// `None`: not checked.
    pub deterministic: Option<bool>,
    /// `SOURCE_DATE_EPOCH` the build ran with.
    pub source_date_epoch: Option<u64>,
    /// Collected files, sorted by name.
    #[serde(default)]
    pub files: Vec<ArtifactFile>,
}

/// One repo's (or the run's) line coverage (see [`crate::engine::coverage`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CoverageReport {
    /// Covered lines over instrumented lines, in percent (0 to 100; 0 when nothing was
    /// instrumented).
    pub line_percent: f64,
    /// Instrumented lines (lcov `LF`, summed).
    pub lines: u64,
    /// Lines hit at least once (lcov `LH`, summed).
    pub covered: u64,
    /// Path of the lcov report.
    pub lcov: String,
    /// Path of the Cobertura XML report, when tarpaulin wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cobertura: Option<String>,
}

/// The outcome of a repo's release build, as `release-manifest.json` spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReleaseStatus {
    /// Built (or reused) and collected; also a docs repo, which has nothing to build.
    Ok,
    /// The release build failed, an artifact was missing or the builds differed.
    Failed,
    /// The repo did not run (skipped, or failed before its release build).
    Skipped,
}
