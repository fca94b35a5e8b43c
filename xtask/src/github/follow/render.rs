//! `chain status` for people (one table in the chain's order, then the first failure) and
//! for machines (`--format json`, `schema_version` 1). Everything shown came from GitHub
//! and was cleaned when read ([`super::RunInfo::from_api`], [`super::failure_line`]).

use std::fmt::Write as _;

use serde::Serialize;

use super::{ChainStatus, Row, RunState, Verdict};

/// `schema_version` of `chain status --format json`.
pub const SCHEMA_VERSION: u32 = 1;

/// A duration in seconds as `42s`, `1m05s` or `2h03m`.
pub fn duration(secs: u64) -> String {
    match secs {
        0..=59 => format!("{secs}s"),
        60..=3599 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60),
    }
}

/// The headline: `chain ID: green`, `failed at REPO`, or how far it got.
pub fn headline(s: &ChainStatus) -> String {
    let id = &s.chain_id;
    if s.rows.is_empty() {
        return format!(
            "chain {id}: no run found (looked for `{id}` in the titles of each repo's newest repository_dispatch runs)"
        );
    }
    match s.verdict() {
        Verdict::Green => format!("chain {id}: green"),
        Verdict::Failed(repo) => format!("chain {id}: failed at {repo}"),
        Verdict::Pending => {
            let done = s
                .rows
                .iter()
                .filter(|r| r.run.as_ref().is_some_and(|x| !x.state.is_active()))
                .count();
            let tail = if s.timed_out {
                ", gave up waiting at --timeout"
            } else {
                ""
            };
            format!(
                "chain {id}: not finished ({done} of {} repo(s) done){tail}",
                s.rows.len()
            )
        }
    }
}

/// The table: repo, state, conclusion, duration, run link; a repo without a run shows
/// why (`not started`: an upstream run failed; `no run yet`).
pub fn table(s: &ChainStatus) -> String {
    let mut rows: Vec<[String; 5]> = vec![[
        "repo".into(),
        "state".into(),
        "conclusion".into(),
        "duration".into(),
        "run".into(),
    ]];
    rows.extend(s.rows.iter().map(|r| cells(r, s.now_unix)));
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (i, cell) in r.iter().enumerate() {
            if i == 4 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// One row's cells: repo, state, conclusion, duration, link (or why there is no run).
fn cells(r: &Row, now: i64) -> [String; 5] {
    let Some(run) = &r.run else {
        let (state, why) = match &r.blocked_by {
            Some(u) => ("not started", format!("({u} failed upstream)")),
            None => ("no run yet", "-".to_owned()),
        };
        return [r.repo.clone(), state.into(), "-".into(), "-".into(), why];
    };
    let conclusion = match &run.state {
        RunState::Completed(c) => c.as_str().to_owned(),
        _ => "-".into(),
    };
    let duration = run
        .duration_secs(now)
        .map(duration)
        .unwrap_or_else(|| "-".into());
    let link = if run.url.is_empty() {
        format!("run {}", run.id)
    } else {
        run.url.clone()
    };
    [
        r.repo.clone(),
        run.state.label().into(),
        conclusion,
        duration,
        link,
    ]
}

/// Headline, table and the first failure, as `chain status` prints them.
pub fn text(s: &ChainStatus) -> String {
    let mut out = format!("{}\n", headline(s));
    if !s.rows.is_empty() {
        out.push_str(&table(s));
    }
    if let Some(f) = s.first_failure() {
        let _ = writeln!(out, "first failure: {f}");
    }
    out
}

#[derive(Serialize)]
struct JsonStatus<'a> {
    schema_version: u32,
    chain_id: &'a str,
    /// `green`, `failed` or `pending`.
    verdict: &'static str,
    finished: bool,
    timed_out: bool,
    exit_code: u8,
    first_failure: Option<String>,
    repos: Vec<JsonRow<'a>>,
}

#[derive(Serialize)]
struct JsonRow<'a> {
    repo: &'a str,
    github: &'a str,
    /// `queued`, `in_progress`, `completed`, `not_started` or `no_run`.
    state: &'static str,
    conclusion: Option<&'a str>,
    run_id: Option<u64>,
    attempt: Option<u32>,
    url: Option<&'a str>,
    duration_secs: Option<u64>,
    blocked_by: Option<&'a str>,
}

/// `--format json` (`schema_version` 1).
pub fn json(s: &ChainStatus) -> serde_json::Value {
    let repos = s
        .rows
        .iter()
        .map(|r| {
            let run = r.run.as_ref();
            JsonRow {
                repo: &r.repo,
                github: &r.github,
                state: match (run, &r.blocked_by) {
                    (Some(x), _) => x.state.label(),
                    (None, Some(_)) => "not_started",
                    (None, None) => "no_run",
                },
                conclusion: run.and_then(|x| match &x.state {
                    RunState::Completed(c) => Some(c.as_str()),
                    _ => None,
                }),
                run_id: run.map(|x| x.id),
                attempt: run.map(|x| x.attempt),
                url: run.map(|x| x.url.as_str()).filter(|u| !u.is_empty()),
                duration_secs: run.and_then(|x| x.duration_secs(s.now_unix)),
                blocked_by: r.blocked_by.as_deref(),
            }
        })
        .collect();
    let verdict = match s.verdict() {
        Verdict::Green => "green",
        Verdict::Failed(_) => "failed",
        Verdict::Pending => "pending",
    };
    serde_json::to_value(JsonStatus {
        schema_version: SCHEMA_VERSION,
        chain_id: &s.chain_id,
        verdict,
        finished: s.finished(),
        timed_out: s.timed_out,
        exit_code: s.exit_code().code(),
        first_failure: s.first_failure(),
        repos,
    })
    .unwrap_or_else(
        |e| serde_json::json!({ "schema_version": SCHEMA_VERSION, "error": e.to_string() }),
    )
}
