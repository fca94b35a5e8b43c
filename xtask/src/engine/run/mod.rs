//! `cargo xtask ci`'s runner: execute a [`Plan`] — the repos in dependency order through
//! the DAG scheduler ([`schedule`]), each repo's restore → steps → save ([`repo`]) — and
//! return the [`RunSummary`]. It prints nothing: everything it does is an [`Event`] for the
//! caller's [`Reporter`]s.
//!
//! Invariant: a build's result never depends on the cache. Every cache error becomes a
//! warning in the summary and the repo builds as if it had missed.

mod options;
mod repo;
mod schedule;
mod stages;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;

pub use options::RunOptions;
pub use stages::restore_chain;

use crate::cache::Tiered;
use crate::engine::events::{Event, Reporter};
use crate::engine::plan::{Plan, RepoPlan};
use crate::engine::results::{Record, RecordStatus, RecordedStep, Results};
use crate::engine::summary::{RepoReport, RepoStatus, RunSummary, StageReport};
use crate::support::signals;

/// Run `plan` with `store`; `chain_cache` holds the chain-wide stages already restored by
/// [`restore_chain`] (they are saved again at the end). Returns the summary; the caller
/// adds hints, writes `summary.json` and reports it (see `job`).
///
/// A run dir that cannot be created is a warning in the summary (the steps run without
/// logs), never a failed repo. A cancel of the run ([`crate::support::signals`]) stops the
/// running steps, starts nothing more, skips the chain-wide saves and marks the summary
/// [`RunSummary::cancelled`].
///
/// Errors only for problems outside any repo (the release manifest cannot be written);
/// step failures are results, not errors.
pub fn run(
    plan: &Plan,
    store: &Tiered,
    opts: &RunOptions,
    mut chain_cache: Vec<StageReport>,
    reporter: &dyn Reporter,
) -> Result<RunSummary> {
    let start = Instant::now();
    let cache = store.cache();
    let mut warnings = Vec::new();
    if let Err(e) = std::fs::create_dir_all(&opts.run_dir) {
        warnings.push(format!(
            "create run dir {}: {e}; the steps run without logs",
            opts.run_dir.display()
        ));
    }
    let run_id = opts
        .run_dir
        .file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned());
    let total = plan.repos.iter().filter(|r| r.selected).count();
    reporter.report(&Event::RunStarted { plan, total });
    // Successes are shared through the store's remote, when it has one and may write.
    let results = Results::shared(store);
    let mut reports = schedule::run_all(start, plan, store, opts, reporter, &mut |r, report| {
        // A read-only cache (untrusted events, --no-save) writes nothing under its root,
        // results included: a trusted run must never skip a repo on the word of an
        // untrusted one.
        // A cancelled repo neither passed nor failed: nothing to record.
        if !cache.is_read_only() && !report.cancelled {
            record_result(&results, r, report, &run_id);
        }
    });
    let cancelled = signals::cancelled();
    if cancelled.is_none() {
        stages::save_chain(plan, store, opts.save, &mut chain_cache, reporter);
    }
    stages::finish_uploads(store, &mut chain_cache, &mut reports, reporter);
    // Run-wide outputs of the release and coverage hooks.
    crate::engine::coverage::write_total(&opts.run_dir, &reports);
    if opts.release.is_some() {
        let path = crate::engine::release_build::write_release_manifest(
            &opts.run_dir,
            &run_id,
            &plan.variant,
            &reports,
        )?;
        let text = format!("release manifest: {}", path.display());
        reporter.report(&Event::Note {
            repo: None,
            text: &text,
        });
    }
    Ok(RunSummary {
        schema_version: 1,
        run_id,
        variant: plan.variant.clone(),
        chain_cache,
        repos: reports,
        secs: start.elapsed().as_secs_f64(),
        cancelled: cancelled.map(signals::name),
        warnings,
        compiler_cache: None,
    })
}

/// Record a finished repo in the result cache (success records skip it next time; the
/// last run's inputs feed `plan --explain`). A failure to record is only a warning.
fn record_result(results: &Results, r: &RepoPlan, report: &RepoReport, run_id: &str) {
    let ok = matches!(report.status, RepoStatus::Ok);
    let rec = Record {
        schema_version: 1,
        repo: r.name.clone(),
        fingerprint: r.fingerprint.hash.clone(),
        inputs: r.fingerprint.inputs.clone(),
        status: if ok {
            RecordStatus::Ok
        } else {
            RecordStatus::Failed
        },
        run_id: run_id.to_owned(),
        finished_unix: crate::support::time::now_unix(),
        steps: report
            .steps
            .iter()
            .map(|s| RecordedStep {
                name: s.name.clone(),
                secs: s.secs,
            })
            .collect(),
    };
    let logs: Vec<(String, PathBuf)> = report
        .steps
        .iter()
        .map(|s| (s.name.clone(), PathBuf::from(&s.log)))
        .collect();
    if let Err(e) = results.record(&r.fingerprint, &rec, &logs) {
        eprintln!("warning: could not record the result of {}: {e:#}", r.name);
    }
}
