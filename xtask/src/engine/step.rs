//! Execute one [`PreparedStep`]: the only place the engine spawns a step (the repo runner
//! and the release build both come here). Emits `StepStarted`, `StepOutput` and
//! `StepFinished`, and turns the outcome into a [`StepReport`] and, when the step did not
//! succeed, the repo's failure reason.

use std::time::Duration;

use crate::engine::events::{Event, Reporter};
use crate::engine::plan::RepoPlan;
use crate::engine::steps::PreparedStep;
use crate::engine::summary::StepReport;
use crate::support::exec::{self, StepCommand, StepOutcome};

/// What one step did.
#[derive(Debug, Clone)]
pub struct StepRun {
    /// The summary's record of it.
    pub report: StepReport,
    /// Why the step did not succeed (`None`: it succeeded). When [`StepRun::cancelled`]
    /// is set, the reason is the cancel, not a failure of the step: callers that report
    /// results check `cancelled` first.
    pub failure: Option<String>,
    /// The signal the run was cancelled with while the step ran (it was forwarded to the
    /// step, so the step neither passed nor failed).
    pub cancelled: Option<i32>,
    /// A problem that did not change the step's result, e.g. its log could not be
    /// written (names the path and the operation).
    pub warning: Option<String>,
}

/// Run `step` of `repo`, reporting to `reporter`. Never errors: a step that cannot start
/// (not installed, blocked) is a failed step with the reason; a log that cannot be
/// written is only a warning (the output still reaches the reporters).
pub fn execute(repo: &RepoPlan, step: &PreparedStep, reporter: &dyn Reporter) -> StepRun {
    reporter.report(&Event::StepStarted { repo, step });
    let (outcome, failure) = match spawn(repo, step, reporter) {
        Ok(o) => {
            let failure = failure_reason(step, &o);
            (Some(o), failure)
        }
        Err(why) => (None, Some(why)),
    };
    let cancelled = outcome.as_ref().and_then(|o| o.cancelled);
    let warning = outcome.as_ref().and_then(|o| o.log_error.clone());
    let report = StepReport {
        name: step.name.clone(),
        code: outcome.as_ref().and_then(|o| o.code),
        timed_out: outcome.as_ref().is_some_and(|o| o.timed_out),
        secs: outcome.as_ref().map_or(0.0, |o| o.secs),
        log: step.log.display().to_string(),
        errors: outcome
            .as_ref()
            .map(|o| {
                o.diagnostics
                    .iter()
                    .filter(|d| d.level.starts_with("error"))
                    .take(20)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default(),
        cancelled: cancelled.is_some(),
    };
    let diagnostics = outcome.as_ref().map_or(&[][..], |o| &o.diagnostics[..]);
    reporter.report(&Event::StepFinished {
        repo,
        step,
        report: &report,
        diagnostics,
    });
    StepRun {
        report,
        failure,
        cancelled,
        warning,
    }
}

/// Prepare the step's outputs and spawn it; `Err(reason)` when it cannot start.
fn spawn(
    repo: &RepoPlan,
    step: &PreparedStep,
    reporter: &dyn Reporter,
) -> Result<StepOutcome, String> {
    if let Some(why) = &step.blocked {
        return Err(why.clone());
    }
    if let Some(parent) = step.log.parent() {
        // A run dir that cannot be written (a full disk) costs the log, not the step:
        // `run_step` reports the missing log as a warning.
        let _ = std::fs::create_dir_all(parent);
    }
    if let Some(j) = &step.junit {
        let _ = std::fs::remove_file(j);
    }
    if let Some(dir) = &step.coverage_dir {
        let _ = crate::support::fs::remove_tree(dir);
        std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    }
    let cmd = StepCommand {
        program: step.program.clone(),
        args: step.args.clone(),
        dir: step.dir.clone(),
        env: step.env.clone(),
        env_remove: step.env_remove.clone(),
        timeout: Duration::from_secs(step.timeout_secs),
        json_diagnostics: step.json_diagnostics,
    };
    let on_output = |text: &[u8]| reporter.report(&Event::StepOutput { repo, step, text });
    let mut o = exec::run_step(&cmd, &step.log, &on_output)
        .map_err(|e| format!("step `{}` could not start: {e:#}", step.name))?;
    if step.lenient_no_lib
        && !o.timed_out
        && o.cancelled.is_none()
        && o.code == Some(101)
        && only_no_library(&String::from_utf8_lossy(&o.tail))
    {
        // `cargo test --doc` in a workspace without a library: nothing to test.
        o.code = Some(0);
    }
    Ok(o)
}

/// Whether a failed `cargo test --doc` log says only that there is no library to test:
/// cargo's own `error: no library targets found` line, and no test ran (no `test result:`
/// line). Matching the bare words anywhere would let a failing doctest that prints them
/// pass.
fn only_no_library(log: &str) -> bool {
    let lines = || log.lines().map(str::trim_start);
    lines().any(|l| l.starts_with("error: no library targets found"))
        && !lines().any(|l| l.starts_with("test result:") || l.starts_with("failures:"))
}

/// Why a finished step did not succeed, or `None` when it did. A step stopped by a cancel
/// gets the cancel as its reason (it neither passed nor failed; see [`StepRun::failure`]).
fn failure_reason(step: &PreparedStep, o: &StepOutcome) -> Option<String> {
    if let Some(sig) = o.cancelled {
        Some(format!(
            "step `{}` was stopped: the run was cancelled by {}",
            step.name,
            crate::support::signals::name(sig)
        ))
    } else if o.timed_out {
        Some(format!(
            "step `{}` timed out after {} s and was stopped with its process group (log: {})",
            step.name,
            step.timeout_secs,
            step.log.display()
        ))
    } else if !o.success() {
        Some(format!(
            "step `{}` exited with {} (log: {})",
            step.name,
            o.code
                .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")),
            step.log.display()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cargos_no_library_error_makes_a_doctest_step_lenient() {
        assert!(only_no_library(
            "error: no library targets found in packages: app\n"
        ));
        // A doctest that failed while printing the words is a failure.
        let failed = "running 1 test\ntest src/lib.rs - f (line 3) ... FAILED\n\nfailures:\n\n---- src/lib.rs - f (line 3) stdout ----\nerror: no library targets found\n\ntest result: FAILED. 0 passed; 1 failed\n";
        assert!(!only_no_library(failed));
        assert!(!only_no_library("error: could not compile `x`\n"));
        assert!(!only_no_library("note: no library targets found here\n"));
    }
}
