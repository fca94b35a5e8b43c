//! The run summary: what happened to every repo, as data (`summary.json` in the run
//! directory, `schema_version` 1) and as the table printed at the end of `ci`.
//!
//! Owns the report types and their rendering only; the runner fills them in.

use serde::Serialize;

use crate::cache::report::summary_word;
pub use crate::cache::report::StageReport;
use crate::cache::Save;
use crate::support::fs::human_bytes;

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
}

impl StepReport {
    /// Whether the step succeeded.
    pub fn ok(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }
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
    /// Release outputs (`ci --release`): files, hashes, determinism; see
    /// [`crate::engine::release_build`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<crate::engine::release_build::ReleaseRepo>,
    /// Line coverage of a `coverage` step (see [`crate::engine::coverage`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<crate::engine::coverage::CoverageReport>,
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
}

impl RunSummary {
    /// Whether any repo failed (the exit code is non-zero then).
    pub fn failed(&self) -> bool {
        self.repos
            .iter()
            .any(|r| matches!(r.status, RepoStatus::Failed(_)))
    }

    /// The table printed at the end of `ci`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "\nsummary (run {}, variant `{}`, {:.1} s)\n",
            self.run_id, self.variant, self.secs
        );
        for c in &self.chain_cache {
            s += &format!(
                "  cache {}: {}{}{}\n",
                c.stage,
                c.restore_word(),
                summary_word(c.remote.as_ref()),
                save_word(c.save.as_ref())
            );
            if let Some(w) = &c.warning {
                s += &format!("    warning: cache {}: {w}\n", c.stage);
            }
        }
        let width = self
            .repos
            .iter()
            .map(|r| r.name.len())
            .max()
            .unwrap_or(4)
            .max(4);
        for r in &self.repos {
            let steps: Vec<String> = r
                .steps
                .iter()
                .map(|st| {
                    let mark = if st.timed_out {
                        "timeout"
                    } else if st.ok() {
                        "ok"
                    } else {
                        "failed"
                    };
                    format!("{} {mark} {:.1}s", st.name, st.secs)
                })
                .collect();
            let cache: Vec<String> = r
                .cache
                .iter()
                .map(|c| {
                    format!(
                        "{} {}{}{}",
                        c.stage,
                        c.restore_word(),
                        summary_word(c.remote.as_ref()),
                        save_word(c.save.as_ref())
                    )
                })
                .collect();
            s += &format!("  {:<width$}  {:<7}", r.name, r.status.word());
            if !steps.is_empty() {
                s += &format!("  {}", steps.join(", "));
            }
            if let Some(t) = &r.tests {
                s += &format!(
                    "  | tests {} passed, {} failed, {} skipped",
                    t.passed, t.failed, t.skipped
                );
            }
            if let Some(c) = &r.coverage {
                s += &format!("  | coverage {:.1}% of {} lines", c.line_percent, c.lines);
            }
            if let Some(rel) = &r.release {
                s += &format!(
                    "  | release {} file(s){}{}",
                    rel.files.len(),
                    if rel.reused { " reused" } else { "" },
                    match rel.deterministic {
                        Some(true) => ", deterministic",
                        Some(false) => ", NOT deterministic",
                        None => "",
                    }
                );
            }
            if !cache.is_empty() {
                s += &format!(
                    "  | cache {} | restore {:.2}s {} | save {:.2}s {}",
                    cache.join(", "),
                    r.restore_secs,
                    human_bytes(r.restore_bytes),
                    r.save_secs,
                    human_bytes(r.save_bytes)
                );
            }
            s.push('\n');
            match &r.status {
                RepoStatus::Failed(why) | RepoStatus::Skipped(why) | RepoStatus::Cached(why) => {
                    for (i, line) in why.lines().enumerate() {
                        s += &format!(
                            "  {:<width$}    {}{line}\n",
                            "",
                            if i == 0 { "why: " } else { "     " }
                        );
                    }
                }
                RepoStatus::Ok => {}
            }
            for h in &r.hints {
                s += &format!("  {:<width$}    hint: {h}\n", "");
            }
            if let (false, Some(step)) =
                (r.hints.is_empty(), r.steps.iter().rev().find(|s| !s.ok()))
            {
                s += &format!(
                    "  {:<width$}    hint: details with `cargo xtask explain {}`\n",
                    "", step.log
                );
            }
            for w in &r.warnings {
                s += &format!("  {:<width$}    warning: {w}\n", "");
            }
            for c in r.cache.iter().filter(|c| c.warning.is_some()) {
                let w = c.warning.as_deref().unwrap_or_default();
                s += &format!("  {:<width$}    warning: cache {}: {w}\n", "", c.stage);
            }
        }
        let failed: Vec<&str> = self
            .repos
            .iter()
            .filter(|r| matches!(r.status, RepoStatus::Failed(_)))
            .map(|r| r.name.as_str())
            .collect();
        if let Some((lines, covered, pct)) = crate::engine::coverage::total(&self.repos) {
            s += &format!("coverage: {pct:.1}% of lines ({covered}/{lines})\n");
        }
        if failed.is_empty() {
            s += "result: ok\n";
        } else {
            s += &format!("result: FAILED ({})\n", failed.join(", "));
        }
        s
    }
}

fn save_word(save: Option<&Save>) -> &'static str {
    match save {
        Some(Save::Saved { .. }) => ", saved",
        Some(Save::Exists) => ", exists",
        Some(Save::Unchanged { .. }) => ", unchanged",
        Some(Save::NoSpace) => ", not saved (no space)",
        Some(Save::Skipped) => ", not saved",
        Some(Save::Empty) | None => "",
    }
}
