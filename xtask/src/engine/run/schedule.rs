//! The DAG scheduler: with `--jobs N`, a repo starts as soon as every selected repo
//! upstream of it has finished (not when its whole level has), at most N at a time, in
//! plan order among the ready ones. Reports come back in plan order whatever order the
//! workers finished in.
//!
//! A repo is not started when an upstream failed (it is `skipped` with the upstream named),
//! or, without `--keep-going`, once any repo has failed (repos already running finish), or
//! once the run is cancelled (it is `skipped`, marked `cancelled`; repos already running
//! stop with their steps).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::mpsc;

use super::options::RunOptions;
use super::repo::{cancelled_status, empty_report, release_hook, run_repo};
use crate::cache::Tiered;
use crate::engine::events::{Event, Reporter};
use crate::engine::plan::{Action, Plan, RepoPlan};
use crate::engine::summary::{RepoReport, RepoStatus};
use crate::support::signals;

/// What the scheduler knows while the run goes on.
struct State<'p> {
    /// Selected repos not started yet, in plan order.
    pending: Vec<&'p RepoPlan>,
    /// Finished (or skipped) repos.
    finished: BTreeMap<String, RepoReport>,
    /// Repos that failed.
    failed: BTreeSet<String>,
    /// Repos running now.
    running: BTreeSet<String>,
    /// A repo failed without `--keep-going`: start nothing more.
    stop: bool,
    /// Repos started so far (for `[n/total]`).
    started: usize,
    /// Selected repos in the run.
    total: usize,
}

/// Run every selected repo of `plan` (see the module docs); `on_finished` is called in
/// the scheduler's thread for each repo that ran to an end (ok or failed), in finishing
/// order. Returns the reports in plan order.
pub fn run_all(
    start: std::time::Instant,
    plan: &Plan,
    store: &Tiered,
    opts: &RunOptions,
    reporter: &dyn Reporter,
    on_finished: &mut dyn FnMut(&RepoPlan, &RepoReport),
) -> Vec<RepoReport> {
    let pending: Vec<&RepoPlan> = plan.repos.iter().filter(|r| r.selected).collect();
    let mut st = State {
        total: pending.len(),
        pending,
        finished: BTreeMap::new(),
        failed: BTreeSet::new(),
        running: BTreeSet::new(),
        stop: false,
        started: 0,
    };
    let jobs = opts.jobs.max(1);
    std::thread::scope(|s| {
        let (tx, rx) = mpsc::channel::<(String, RepoReport)>();
        loop {
            while let Some(r) = next_ready(plan, &st) {
                st.pending.retain(|p| p.name != r.name);
                let cancel = signals::cancelled();
                let skip = match cancel {
                    Some(sig) => Some(cancelled_status(sig, None)),
                    None => skip_status(plan, r, &st),
                };
                if let Some(status) = skip {
                    let mut report = empty_report(r, status);
                    report.cancelled = cancel.is_some();
                    if matches!(report.status, RepoStatus::Cached(_)) {
                        // Release: a `cached` repo's artifacts come from the builds store
                        // (or a build when the store has none).
                        release_hook(plan, r, store.cache(), opts, &mut report, reporter);
                    }
                    reporter.report(&Event::RepoSkipped {
                        repo: r,
                        report: &report,
                    });
                    st.finished.insert(r.name.clone(), report);
                    continue;
                }
                if st.running.len() >= jobs {
                    // Put it back in front: it is the next to start.
                    st.pending.insert(0, r);
                    break;
                }
                st.started += 1;
                st.running.insert(r.name.clone());
                reporter.report(&Event::RepoStarted {
                    repo: r,
                    index: st.started,
                    total: st.total,
                });
                let tx = tx.clone();
                s.spawn(move || {
                    let t0 = start.elapsed().as_secs_f64();
                    let mut report = run_repo(plan, r, store, opts, reporter);
                    report.start_secs = t0;
                    report.end_secs = start.elapsed().as_secs_f64();
                    reporter.report(&Event::RepoFinished {
                        repo: r,
                        report: &report,
                    });
                    let _ = tx.send((r.name.clone(), report));
                });
            }
            if st.running.is_empty() {
                break;
            }
            let Ok((name, report)) = rx.recv() else { break };
            st.running.remove(&name);
            if matches!(report.status, RepoStatus::Failed(_)) {
                st.failed.insert(name.clone());
                st.stop |= !opts.keep_going;
            }
            if let Some(r) = plan.repo(&name) {
                on_finished(r, &report);
            }
            st.finished.insert(name, report);
        }
    });
    plan.repos
        .iter()
        .filter_map(|r| st.finished.remove(&r.name))
        .collect()
}

/// The first pending repo (plan order) whose selected upstreams have all finished, if
/// any. A repo that is ready but cannot start for lack of a worker is still returned; the
/// caller puts it back.
fn next_ready<'p>(plan: &Plan, st: &State<'p>) -> Option<&'p RepoPlan> {
    st.pending.iter().copied().find(|r| {
        plan.graph
            .upstream_closure(&[r.name.as_str()])
            .iter()
            .filter(|u| plan.repo(u).is_some_and(|p| p.selected))
            .all(|u| st.finished.contains_key(u.as_str()))
    })
}

/// Why a ready repo is not run, or `None` to run it.
fn skip_status(plan: &Plan, r: &RepoPlan, st: &State<'_>) -> Option<RepoStatus> {
    let failed_up: Vec<String> = plan
        .graph
        .upstream_closure(&[r.name.as_str()])
        .into_iter()
        .filter(|u| st.failed.contains(u))
        .collect();
    if !failed_up.is_empty() {
        return Some(RepoStatus::Skipped(format!(
            "upstream failed: {}",
            failed_up.join(", ")
        )));
    }
    if st.stop {
        return Some(stopped_status());
    }
    match &r.action {
        Action::SkipCached => Some(RepoStatus::Cached(format!(
            "a successful run with fingerprint {} is recorded; `cargo xtask logs {}` replays it, --force re-runs",
            r.fingerprint.short(),
            r.name
        ))),
        Action::SkipNotAffected(why) | Action::SkipUnavailable(why) => {
            Some(RepoStatus::Skipped(why.clone()))
        }
        Action::Run | Action::NotSelected => None,
    }
}

fn stopped_status() -> RepoStatus {
    RepoStatus::Skipped(
        "not run: stopped after a failure (pass --keep-going to run independent repos)".to_owned(),
    )
}
