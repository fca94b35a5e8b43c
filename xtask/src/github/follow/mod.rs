//! Following a chain run across repos: which workflow run of each repo belongs to a chain
//! id, where each is, and whether the chain finished green (`cargo xtask chain status`,
//! `chain --wait`, and the waits of a release walk).
//!
//! This module is pure: it turns what [`crate::github::dispatch::runs`] read into a
//! [`ChainStatus`] (one row per repo, in the chain's order) and a [`Verdict`].
//! [`watch`] polls GitHub through [`crate::github::dispatch`] (the only code that talks
//! to the API), [`pace`] decides how long to wait between polls, [`render`] prints.
//!
//! A run belongs to chain `C` when its `display_title` (the generated workflows'
//! `run-name`, `bllvm-chain repository_dispatch C`) has `C` as a whole word; of several,
//! the newest wins (a chain reaches a repo once; a second run is a re-dispatch). Which
//! repos a chain should reach: the repos a caller expects (the targets it sent) and every
//! repo downstream of a repo that has a run, since each run dispatches its dependents.

pub mod pace;
pub mod render;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};

use crate::engine::graph::Graph;
use crate::engine::manifest::Manifest;
use crate::github::dispatch::client::clean_message;
use crate::github::dispatch::runs::{unix_time, WorkflowRun};
use crate::support::exit::Exit;

/// How a completed run ended (GitHub's `conclusion`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conclusion {
    /// `success`: the only green one.
    Success,
    /// `failure`.
    Failure,
    /// `cancelled`.
    Cancelled,
    /// `timed_out`.
    TimedOut,
    /// Any other (`skipped`, `neutral`, `action_required`, `startup_failure`, `stale`, or
    /// none given): not green, since nothing says the repo built.
    Other(String),
}

impl Conclusion {
    /// From the API's `conclusion`.
    pub fn parse(text: Option<&str>) -> Conclusion {
        match text {
            Some("success") => Conclusion::Success,
            Some("failure") => Conclusion::Failure,
            Some("cancelled") => Conclusion::Cancelled,
            Some("timed_out") => Conclusion::TimedOut,
            Some(other) => Conclusion::Other(clean_message(other, "")),
            None => Conclusion::Other("none".into()),
        }
    }

    /// GitHub's word for it.
    pub fn as_str(&self) -> &str {
        match self {
            Conclusion::Success => "success",
            Conclusion::Failure => "failure",
            Conclusion::Cancelled => "cancelled",
            Conclusion::TimedOut => "timed_out",
            Conclusion::Other(s) => s,
        }
    }
}

/// Where a run is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// `queued`, `requested`, `waiting` or `pending`: not started.
    Queued,
    /// `in_progress`, or a status this code does not know (never taken as finished).
    InProgress,
    /// `completed`, with how it ended.
    Completed(Conclusion),
}

impl RunState {
    /// From the API's `status` and `conclusion`. A run without a status but with a
    /// conclusion is completed.
    pub fn from_api(status: Option<&str>, conclusion: Option<&str>) -> RunState {
        match (status, conclusion) {
            (Some("completed"), c) | (None, c @ Some(_)) => {
                RunState::Completed(Conclusion::parse(c))
            }
            (Some("queued" | "requested" | "waiting" | "pending"), _) | (None, None) => {
                RunState::Queued
            }
            (Some(_), _) => RunState::InProgress,
        }
    }

    /// `queued`, `in_progress` or `completed`.
    pub fn label(&self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::InProgress => "in_progress",
            RunState::Completed(_) => "completed",
        }
    }

    /// Whether it completed with `success`.
    pub fn is_green(&self) -> bool {
        *self == RunState::Completed(Conclusion::Success)
    }

    /// Whether it completed with anything but `success`.
    pub fn is_red(&self) -> bool {
        matches!(self, RunState::Completed(c) if *c != Conclusion::Success)
    }

    /// Whether it is still queued or running.
    pub fn is_active(&self) -> bool {
        !matches!(self, RunState::Completed(_))
    }
}

/// A run found for a repo, cleaned for display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInfo {
    /// Run id.
    pub id: u64,
    /// Where it is.
    pub state: RunState,
    /// Its page (only an `http(s)` URL; else empty).
    pub url: String,
    /// When its current attempt started (else when it was created), Unix seconds.
    pub started_unix: Option<i64>,
    /// When it last changed (its end once completed), Unix seconds.
    pub updated_unix: Option<i64>,
    /// Attempt number.
    pub attempt: u32,
}

impl RunInfo {
    /// From the API's run.
    pub fn from_api(run: &WorkflowRun) -> RunInfo {
        let url = run
            .html_url
            .as_deref()
            .map(|u| clean_message(u, ""))
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .unwrap_or_default();
        RunInfo {
            id: run.id,
            state: RunState::from_api(run.status.as_deref(), run.conclusion.as_deref()),
            url,
            started_unix: run
                .run_started_at
                .as_deref()
                .or(run.created_at.as_deref())
                .and_then(unix_time),
            updated_unix: run.updated_at.as_deref().and_then(unix_time),
            attempt: run.run_attempt.unwrap_or(1),
        }
    }

    /// Seconds from its start to its end (once completed) or to `now`.
    pub fn duration_secs(&self, now: i64) -> Option<u64> {
        let end = if self.state.is_active() {
            now
        } else {
            self.updated_unix?
        };
        Some(end.saturating_sub(self.started_unix?).max(0) as u64)
    }
}

/// Whether a run titled `title` belongs to chain `chain_id`: the id is one of the title's
/// words, or the title's end (a chain id with spaces).
pub fn matches(title: Option<&str>, chain_id: &str) -> bool {
    let Some(title) = title else { return false };
    let id = chain_id.trim();
    !id.is_empty()
        && (title.split_whitespace().any(|w| w == id)
            || title.trim_end().ends_with(&format!(" {id}")))
}

/// The run of `chain_id` among `runs`: its title matches, it was created at or after
/// `since` (Unix seconds; a run without a creation time passes), and its id is not in
/// `known` (runs that existed before a dispatch). The newest by creation time, then id.
pub fn pick<'a>(
    runs: &'a [WorkflowRun],
    chain_id: &str,
    since: Option<i64>,
    known: &BTreeSet<u64>,
) -> Option<&'a WorkflowRun> {
    runs.iter()
        .filter(|r| matches(r.display_title.as_deref(), chain_id))
        .filter(|r| !known.contains(&r.id))
        .filter(|r| {
            let created = r.created_at.as_deref().and_then(unix_time);
            match (since, created) {
                (Some(s), Some(c)) => c >= s,
                _ => true,
            }
        })
        .max_by_key(|r| (r.created_at.as_deref().and_then(unix_time), r.id))
}

/// The repos a chain can reach, in the chain's order.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Repos in run order.
    pub repos: Vec<ScopeRepo>,
}

impl Scope {
    /// Every repo of the manifest in the graph's run order, each with its downstream
    /// closure.
    ///
    /// Errors: the graph has a cycle, or names a repo the manifest does not have.
    pub fn of_chain(manifest: &Manifest, graph: &Graph) -> anyhow::Result<Scope> {
        let repos = graph
            .order()?
            .into_iter()
            .map(|name| {
                Ok(ScopeRepo {
                    github: manifest.repo(&name)?.github.clone(),
                    downstream: graph.downstream_closure(&[name.as_str()]),
                    name,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Scope { repos })
    }
}

/// One repo of a [`Scope`].
#[derive(Debug, Clone)]
pub struct ScopeRepo {
    /// Manifest name.
    pub name: String,
    /// GitHub `owner/name`.
    pub github: String,
    /// Every repo downstream of it (transitively): a run of it dispatches them in turn.
    pub downstream: BTreeSet<String>,
}

/// What is known of one repo's run.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    /// The run, once found.
    pub run: Option<RunInfo>,
    /// For a red run, the first failure's summary line.
    pub failure: Option<String>,
}

/// One row of a [`ChainStatus`].
#[derive(Debug, Clone)]
pub struct Row {
    /// Manifest name.
    pub repo: String,
    /// GitHub `owner/name`.
    pub github: String,
    /// Its run, once found.
    pub run: Option<RunInfo>,
    /// For a red run, the first failure's summary line.
    pub failure: Option<String>,
    /// For a repo without a run: the upstream repo whose red run means it never starts.
    pub blocked_by: Option<String>,
}

/// The outcome of a chain run so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every run the chain should have completed with `success`.
    Green,
    /// A run did not succeed: the first such repo in the chain's order.
    Failed(String),
    /// Runs are queued or running, or an expected run has not appeared.
    Pending,
}

/// Where a chain run is: one row per repo it reached or should reach, in its order.
#[derive(Debug, Clone)]
pub struct ChainStatus {
    /// The chain id.
    pub chain_id: String,
    /// Rows in the chain's order.
    pub rows: Vec<Row>,
    /// When it was observed, Unix seconds (durations of running runs end here).
    pub now_unix: i64,
    /// Whether a wait gave up at its timeout before the chain finished.
    pub timed_out: bool,
}

impl ChainStatus {
    /// The status of `chain_id` given what was `seen`: a row for every repo of `scope`
    /// that is `expected`, has a run, or is downstream of a repo that has one.
    pub fn build(
        scope: &Scope,
        chain_id: &str,
        expected: &BTreeSet<String>,
        seen: &BTreeMap<String, Seen>,
        now_unix: i64,
    ) -> ChainStatus {
        let run_of = |n: &str| seen.get(n).and_then(|s| s.run.as_ref());
        let reached: BTreeSet<&str> = scope
            .repos
            .iter()
            .filter(|r| run_of(&r.name).is_some())
            .flat_map(|r| {
                r.downstream
                    .iter()
                    .map(String::as_str)
                    .chain([r.name.as_str()])
            })
            .collect();
        let rows = scope
            .repos
            .iter()
            .filter(|r| expected.contains(&r.name) || reached.contains(r.name.as_str()))
            .map(|r| {
                let run = run_of(&r.name).cloned();
                let blocked_by = if run.is_none() {
                    scope
                        .repos
                        .iter()
                        .find(|u| {
                            u.downstream.contains(&r.name)
                                && run_of(&u.name).is_some_and(|x| x.state.is_red())
                        })
                        .map(|u| u.name.clone())
                } else {
                    None
                };
                Row {
                    repo: r.name.clone(),
                    github: r.github.clone(),
                    failure: seen.get(&r.name).and_then(|s| s.failure.clone()),
                    run,
                    blocked_by,
                }
            })
            .collect();
        ChainStatus {
            chain_id: chain_id.to_owned(),
            rows,
            now_unix,
            timed_out: false,
        }
    }

    /// Green, failed (the first red repo in order) or pending; pending when no row.
    pub fn verdict(&self) -> Verdict {
        if let Some(r) = self
            .rows
            .iter()
            .find(|r| r.run.as_ref().is_some_and(|x| x.state.is_red()))
        {
            return Verdict::Failed(r.repo.clone());
        }
        let pending = self.rows.is_empty()
            || self.rows.iter().any(|r| match &r.run {
                Some(x) => !x.state.is_green(),
                None => r.blocked_by.is_none(),
            });
        if pending {
            Verdict::Pending
        } else {
            Verdict::Green
        }
    }

    /// Whether nothing will change any more: green, or failed with no run still going.
    pub fn finished(&self) -> bool {
        match self.verdict() {
            Verdict::Green => true,
            Verdict::Failed(_) => !self
                .rows
                .iter()
                .any(|r| r.run.as_ref().is_some_and(|x| x.state.is_active())),
            Verdict::Pending => false,
        }
    }

    /// [`Exit::Ok`] finished green, [`Exit::Failed`] a run failed (or was cancelled,
    /// timed out, ...), [`Exit::NotFinished`] a run is queued or in progress, or an
    /// expected run has not appeared (also when `--watch` or `--wait` gave up).
    pub fn exit_code(&self) -> Exit {
        match self.verdict() {
            Verdict::Green => Exit::Ok,
            Verdict::Failed(_) => Exit::Failed,
            Verdict::Pending => Exit::NotFinished,
        }
    }

    /// The first failure's summary line, if any run failed.
    pub fn first_failure(&self) -> Option<String> {
        let Verdict::Failed(repo) = self.verdict() else {
            return None;
        };
        let row = self.rows.iter().find(|r| r.repo == repo)?;
        Some(row.failure.clone().unwrap_or_else(|| {
            let how = match row.run.as_ref().map(|r| &r.state) {
                Some(RunState::Completed(c)) => c.as_str().to_owned(),
                _ => "failed".into(),
            };
            format!("{repo}: run {how}")
        }))
    }
}

/// The summary line of a red run of `repo` from its jobs: the first job that did not
/// succeed and its first failed step, with the job's link.
pub fn failure_line(
    repo: &str,
    jobs: &[crate::github::dispatch::runs::Job],
    run: &RunInfo,
) -> String {
    let bad = |c: &Option<String>| {
        c.as_deref()
            .is_some_and(|c| !matches!(c, "success" | "skipped" | "neutral"))
    };
    let clean = |s: &Option<String>| clean_message(s.as_deref().unwrap_or("?"), "");
    let how = match &run.state {
        RunState::Completed(c) => c.as_str().to_owned(),
        _ => "failed".into(),
    };
    let Some(job) = jobs.iter().find(|j| bad(&j.conclusion)) else {
        return format!("{repo}: run {how}");
    };
    let verb = match job.conclusion.as_deref() {
        Some("failure") => "failed".to_owned(),
        other => clean_message(other.unwrap_or("failed"), ""),
    };
    let at = job
        .steps
        .iter()
        .find(|s| bad(&s.conclusion))
        .map(|s| format!(" at step `{}`", clean(&s.name)))
        .unwrap_or_default();
    let link = job
        .html_url
        .as_deref()
        .map(|u| clean_message(u, ""))
        .filter(|u| u.starts_with("http"))
        .map(|u| format!(" ({u})"))
        .unwrap_or_default();
    format!("{repo}: job `{}` {verb}{at}{link}", clean(&job.name))
}

#[cfg(test)]
mod tests;
