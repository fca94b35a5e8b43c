//! One repo of a run: restore its target dir, run its prepared steps in order (stopping at
//! the first failure), build its release artifacts when asked, and save the target dir.
//! Every cache problem is a warning; the repo's result depends only on its steps.

use std::borrow::Cow;
use std::path::Path;

use super::options::RunOptions;
use super::stages::notes;
use crate::cache::{Cache, Save, Tiered};
use crate::engine::events::{Event, Reporter};
use crate::engine::manifest::RepoKind;
use crate::engine::plan::{self, Plan, RepoPlan};
use crate::engine::step;
use crate::engine::steps::PreparedStep;
use crate::engine::summary::{RepoReport, RepoStatus};
use crate::engine::{compiler_cache, coverage, testing};
use crate::support::signals;

/// Run `r` (selected, with action `Run`) and return its report.
pub fn run_repo(
    plan: &Plan,
    r: &RepoPlan,
    store: &Tiered,
    opts: &RunOptions,
    reporter: &dyn Reporter,
) -> RepoReport {
    let mut report = empty_report(r, RepoStatus::Ok);
    if let Some(e) = &r.error {
        let text = format!("error: {}", e.lines().next().unwrap_or(""));
        reporter.report(&Event::Note {
            repo: Some(r),
            text: &text,
        });
        report.status = RepoStatus::Failed(e.clone());
        return report;
    }
    let target_dir = r
        .target_dir
        .clone()
        .unwrap_or_else(|| plan::default_target_dir(&r.dir));
    // A run that may not save must not move entries out either (a moved entry only goes
    // back through a save), so it restores through a read-only view of the cache.
    let tstore = if opts.save {
        store.clone()
    } else {
        store.clone().into_read_only()
    };
    restore_target(r, &tstore, &target_dir, opts, &mut report, reporter);
    if r.kind == RepoKind::Docs && r.steps.is_empty() {
        reporter.report(&Event::Note {
            repo: Some(r),
            text: "docs repo: nothing to build",
        });
    }
    run_steps(r, opts, &mut report, reporter);
    if report.cancelled {
        // A cancel stops here: no release build and no save (a copy-mode save could take
        // longer than the CI's grace; a moved-out entry stays in the target dir, so the
        // next run still finds the build, only not through the cache).
        return report;
    }
    // Release artifacts are built before the save, so the target entry keeps the release
    // dependency units too.
    if report.status == RepoStatus::Ok {
        release_hook(plan, r, store.cache(), opts, &mut report, reporter);
        if report.cancelled {
            return report;
        }
    }
    save_target(r, &tstore, &target_dir, opts, &mut report, reporter);
    report
}

fn restore_target(
    r: &RepoPlan,
    store: &Tiered,
    target_dir: &Path,
    opts: &RunOptions,
    report: &mut RepoReport,
    reporter: &dyn Reporter,
) {
    let Some(key) = &r.cache_key else { return };
    let (st, lines) = store.restore_stage(key, target_dir, false, opts.restore);
    notes(reporter, &lines);
    if let Some((_, bytes, secs)) = st.restore.restored() {
        report.restore_bytes += bytes;
        report.restore_secs += secs;
    }
    reporter.report(&Event::CacheRestored {
        repo: r,
        stage: &st,
    });
    report.cache.push(st);
}

/// Run the prepared steps in order until one fails or the run is cancelled. A run dir
/// that cannot be written costs the logs (warnings naming the path), never the result.
fn run_steps(r: &RepoPlan, opts: &RunOptions, report: &mut RepoReport, reporter: &dyn Reporter) {
    let log_dir = opts.run_dir.join(&r.name);
    if let Err(e) = std::fs::create_dir_all(&log_dir) {
        report.warnings.push(format!(
            "create log dir {}: {e}; the steps run without logs",
            log_dir.display()
        ));
    }
    let (steps, _config) = match with_tool_config(r, &log_dir, report) {
        Ok(s) => s,
        Err(why) => {
            report.status = RepoStatus::Failed(why);
            return;
        }
    };
    for prepared in steps.iter() {
        if let Some(sig) = signals::cancelled() {
            mark_cancelled(report, sig, None);
            return;
        }
        if let Some(j) = &prepared.junit {
            // A report left by an earlier run (or a restored target dir) must not be read
            // as this step's when the step dies before nextest writes its own.
            let _ = std::fs::remove_file(j);
        }
        // The compiler cache joins the spawn environment only, never the prepared step
        // (which the fingerprint hashes): on or off, the keys stay the same.
        let with_cache;
        let prepared = if opts.compiler_env.is_empty() {
            prepared
        } else {
            with_cache = PreparedStep {
                env: compiler_cache::apply(&prepared.program, &prepared.env, &opts.compiler_env),
                ..prepared.clone()
            };
            &with_cache
        };
        let run = step::execute(r, prepared, reporter);
        absorb_outputs(prepared, &run, &log_dir, report);
        report.warnings.extend(run.warning.clone());
        report.steps.push(run.report);
        if let Some(sig) = run.cancelled {
            mark_cancelled(report, sig, Some(&prepared.name));
            return;
        }
        if let Some(why) = run.failure {
            report.status = RepoStatus::Failed(why);
            return;
        }
    }
}

/// The status of a repo the run's cancel (by `sig`) stopped: `skipped` with the reason —
/// it neither passed nor failed. `during`: the step that was running.
pub(super) fn cancelled_status(sig: i32, during: Option<&str>) -> RepoStatus {
    let name = signals::name(sig);
    RepoStatus::Skipped(match during {
        Some(step) => format!("cancelled by {name} while step `{step}` ran"),
        None => format!("cancelled by {name} before it finished"),
    })
}

fn mark_cancelled(report: &mut RepoReport, sig: i32, during: Option<&str>) {
    report.status = cancelled_status(sig, during);
    report.cancelled = true;
}

/// The steps with the nextest tool config they name written (see `steps::prepare`): in
/// the log dir, or — when the run dir cannot take it (a full disk) — in a temp file the
/// steps are pointed at instead (kept alive by the returned handle), with a warning.
///
/// Errors: not even a temp file can be written (then nextest cannot run as prepared).
fn with_tool_config<'p>(
    r: &'p RepoPlan,
    log_dir: &Path,
    report: &mut RepoReport,
) -> Result<(Cow<'p, [PreparedStep]>, Option<tempfile::TempPath>), String> {
    if !r.prepared.iter().any(|s| s.junit.is_some()) {
        return Ok((Cow::Borrowed(&r.prepared), None));
    }
    let tool_config = log_dir.join("nextest.toml");
    let Err(e) = testing::write_tool_config(&tool_config) else {
        return Ok((Cow::Borrowed(&r.prepared), None));
    };
    let fallback = tempfile::Builder::new()
        .prefix("bllvm-ci-nextest-")
        .suffix(".toml")
        .tempfile()
        .map_err(|e2| {
            format!(
                "write nextest config {}: {e}; and a temp file: {e2}",
                tool_config.display()
            )
        })?
        .into_temp_path();
    testing::write_tool_config(&fallback).map_err(|e2| {
        format!(
            "write nextest config {}: {e}; and {}: {e2}",
            tool_config.display(),
            fallback.display()
        )
    })?;
    report.warnings.push(format!(
        "write nextest config {}: {e}; used {} instead",
        tool_config.display(),
        fallback.display()
    ));
    let arg = format!("bllvm-ci:{}", fallback.display());
    let steps = r
        .prepared
        .iter()
        .map(|s| {
            let mut s = s.clone();
            for a in &mut s.args {
                if a.starts_with("bllvm-ci:") && a.ends_with("nextest.toml") {
                    a.clone_from(&arg);
                }
            }
            s
        })
        .collect();
    Ok((Cow::Owned(steps), Some(fallback)))
}

/// What a finished step leaves besides its log: test counts and failing tests from its
/// JUnit report (copied to the repo's log dir) or, for a doctest step, from its output
/// (so the totals include doctests), and its coverage report. A report that cannot be
/// read or parsed is a warning: the step's exit code already decided the result.
fn absorb_outputs(
    prepared: &PreparedStep,
    run: &step::StepRun,
    log_dir: &Path,
    report: &mut RepoReport,
) {
    let ok = run.failure.is_none();
    if let (Some(dir), true) = (&prepared.coverage_dir, ok) {
        match coverage::collect(dir) {
            Ok(c) => report.coverage = Some(c),
            Err(e) => report.warnings.push(format!("{e:#}")),
        }
    }
    let results = if let Some(j) = &prepared.junit {
        let Ok(xml) = std::fs::read_to_string(j) else {
            return;
        };
        let _ = std::fs::copy(j, log_dir.join("junit.xml"));
        match testing::parse_junit(&xml) {
            Ok(r) => r,
            Err(e) => {
                report.warnings.push(format!(
                    "JUnit report {} of step `{}`: {e}; its test counts are missing",
                    j.display(),
                    prepared.name
                ));
                return;
            }
        }
    } else if testing::is_doctest(&prepared.program, &prepared.args) && run.cancelled.is_none() {
        let Ok(bytes) = std::fs::read(&prepared.log) else {
            return;
        };
        testing::parse_libtest(&String::from_utf8_lossy(&bytes))
    } else {
        return;
    };
    let mut all = testing::TestResults {
        counts: report.tests.unwrap_or_default(),
        failures: std::mem::take(&mut report.failed_tests),
    };
    all.absorb(results);
    report.tests = Some(all.counts);
    report.failed_tests = all.failures;
}

fn save_target(
    r: &RepoPlan,
    store: &Tiered,
    target_dir: &Path,
    opts: &RunOptions,
    report: &mut RepoReport,
    reporter: &dyn Reporter,
) {
    let Some(key) = &r.cache_key else { return };
    let steps_secs = report.steps.iter().map(|s| s.secs).fold(0.0, |a, b| a + b);
    let Some(st) = report.cache.last_mut() else {
        return;
    };
    // For `cache stats`: how long the steps took after this kind of restore, so the time
    // a hit saves can be measured rather than guessed.
    store.cache().log_build(key, st.restore_word(), steps_secs);
    // Leave out what the next build redoes anyway: incremental data, and every unit of the
    // repo's own workspace; keep every dependency unit (see cache/prune.rs).
    let members: Vec<String> = r.versions.keys().cloned().collect();
    let prune = crate::cache::prune::target_prune(target_dir, &members);
    let skip = |p: &Path| prune.skips(p);
    let lines = store.save_stage(key, target_dir, &skip, opts.save, st);
    notes(reporter, &lines);
    match st.save {
        Some(Save::Saved { bytes, secs, .. }) => {
            report.save_bytes += bytes;
            report.save_secs += secs;
        }
        Some(Save::Unchanged { secs, .. }) => report.save_secs += secs,
        _ => {}
    }
    if let Some(w) = &st.warning {
        report.warnings.push(w.clone());
    }
    let st = st.clone();
    reporter.report(&Event::CacheSaved {
        repo: r,
        stage: &st,
    });
}

/// A report for `r` with `status` and nothing run yet (its unused patches as warnings).
pub(super) fn empty_report(r: &RepoPlan, status: RepoStatus) -> RepoReport {
    let mut report = RepoReport::not_run(&r.name, status);
    report.warnings = r
        .unused_patches
        .iter()
        .map(|p| format!("patch `{p}` was not used in the crate graph: the sibling checkout was silently not used"))
        .collect();
    report
}

/// `--release`: build (or reuse) the repo's artifacts into the run dir; a failure marks
/// the report failed (see [`crate::engine::release_build::run_for_repo`]).
pub(super) fn release_hook(
    plan: &Plan,
    r: &RepoPlan,
    cache: &Cache,
    opts: &RunOptions,
    report: &mut RepoReport,
    reporter: &dyn Reporter,
) {
    if let Some(release) = &opts.release {
        let ctx = crate::engine::release_build::RepoContext {
            plan,
            repo: r,
            cache_root: cache.root(),
            save: opts.save,
            run_dir: &opts.run_dir,
            reporter,
            opts: release,
        };
        crate::engine::release_build::run_for_repo(&ctx, report);
        // A release build stopped by a cancel did not fail: the repo is cancelled.
        if let (Some(sig), Some(step)) = (signals::cancelled(), report.steps.last()) {
            if step.cancelled && matches!(report.status, RepoStatus::Failed(_)) {
                let name = step.name.clone();
                mark_cancelled(report, sig, Some(&name));
            }
        }
    }
}
