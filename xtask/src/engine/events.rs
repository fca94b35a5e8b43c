//! Run events and the reporter seam (nextest's `TestEvent` → reporter, moon's
//! subscribers): the runner says what happens, in order, and never prints; console output,
//! GitHub Actions groups and annotations, the progress display and metrics are
//! [`Reporter`]s that turn events into output.
//!
//! Events are emitted from the runner's worker threads (several repos may run at once
//! with `--jobs`), so a reporter must be `Sync` and keep any state behind a lock. Events of
//! one repo arrive in order; events of different repos interleave.

use crate::engine::plan::{Plan, RepoPlan};
use crate::engine::steps::PreparedStep;
use crate::engine::summary::{RepoReport, RunSummary, StageReport, StepReport};
use crate::support::exec::Diagnostic;

/// Something that happened in a run. Each variant carries what any reporter may want;
/// not every reporter reads every field, hence the `dead_code` allowance.
#[derive(Debug, Clone, Copy)]
#[allow(dead_code)]
pub enum Event<'a> {
    /// The run begins; `total` repos are selected.
    RunStarted {
        /// The plan being run.
        plan: &'a Plan,
        /// Selected repos.
        total: usize,
    },
    /// A repo starts its restore and steps. `index` counts from 1 in start order.
    RepoStarted {
        /// The repo.
        repo: &'a RepoPlan,
        /// Position in start order (1-based).
        index: usize,
        /// Selected repos in the run.
        total: usize,
    },
    /// A selected repo that will not run (cached, skipped, blocked by an upstream failure,
    /// or not started after a failure); `report` holds its status.
    RepoSkipped {
        /// The repo.
        repo: &'a RepoPlan,
        /// Its final report.
        report: &'a RepoReport,
    },
    /// A cache stage of a repo was restored (or missed).
    CacheRestored {
        /// The repo.
        repo: &'a RepoPlan,
        /// The stage's report so far.
        stage: &'a StageReport,
    },
    /// A step is about to be spawned.
    StepStarted {
        /// The repo.
        repo: &'a RepoPlan,
        /// The exact command.
        step: &'a PreparedStep,
    },
    /// A chunk of a step's output (one line, or one rendered diagnostic), as written to
    /// its log.
    StepOutput {
        /// The repo.
        repo: &'a RepoPlan,
        /// The step.
        step: &'a PreparedStep,
        /// The bytes.
        text: &'a [u8],
    },
    /// A step ended (or could not start; then `report.code` is `None`).
    StepFinished {
        /// The repo.
        repo: &'a RepoPlan,
        /// The step.
        step: &'a PreparedStep,
        /// Its result.
        report: &'a StepReport,
        /// Every compiler diagnostic it printed (JSON diagnostics only).
        diagnostics: &'a [Diagnostic],
    },
    /// A cache stage of a repo was saved (or the save was skipped or failed).
    CacheSaved {
        /// The repo.
        repo: &'a RepoPlan,
        /// The stage's final report.
        stage: &'a StageReport,
    },
    /// A line worth showing that is not a step's output (`docs repo: nothing to build`,
    /// release notes, the release manifest's path).
    Note {
        /// The repo it is about, if any.
        repo: Option<&'a RepoPlan>,
        /// The text (one line).
        text: &'a str,
    },
    /// A repo ended; `report` is final.
    RepoFinished {
        /// The repo.
        repo: &'a RepoPlan,
        /// Its report.
        report: &'a RepoReport,
    },
    /// The job ended; the summary is final (hints added, `summary.json` written).
    RunFinished {
        /// The summary.
        summary: &'a RunSummary,
    },
}

/// Turns events into output. Called from several threads at once.
pub trait Reporter: Sync {
    /// Handle one event. Must not panic; an output error is the reporter's to swallow.
    fn report(&self, event: &Event<'_>);
}

/// Several reporters, each given every event in order.
pub struct Fanout<'a>(pub Vec<&'a dyn Reporter>);

impl Reporter for Fanout<'_> {
    fn report(&self, event: &Event<'_>) {
        for r in &self.0 {
            r.report(event);
        }
    }
}
