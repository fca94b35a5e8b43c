//! Reading GitHub Actions workflow runs: how a dispatched run is found and followed
//! (`cargo xtask chain status`, `chain --wait`, the release walk).
//!
//! GitHub returns no run id for a `repository_dispatch`, so a run is found by listing the
//! repo's dispatched runs and matching the chain id the generated workflows put in their
//! `run-name` (`github/workflows.rs`), which the API returns as `display_title`. REST
//! endpoints (GitHub docs, "Workflow runs" and "Workflow jobs"):
//!
//! - `GET /repos/{owner}/{repo}/actions/runs?event=repository_dispatch&per_page=100`
//!   (newest first; `created=>=TIME` narrows it to runs created since a dispatch);
//! - `GET /repos/{owner}/{repo}/actions/runs/{run_id}`;
//! - `GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs?filter=latest&per_page=100`.
//!
//! Only the fields used are read, each optional, so a change in the rest of GitHub's run
//! shape cannot break a status; everything read is untrusted and is cleaned before it is
//! shown (`github/follow`). The token needs `actions: read` on each repo.

use serde::Deserialize;

use super::client::{Budget, Client, Reply};
use super::DispatchError;

/// Newest dispatched runs read per repo and round: GitHub's largest page.
pub const PER_PAGE: u32 = 100;

/// One workflow run, as far as it is read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct WorkflowRun {
    /// Run id (the `{run_id}` of the run's URLs).
    pub id: u64,
    /// The run's title: the workflow's `run-name`, which holds the chain id.
    #[serde(default)]
    pub display_title: Option<String>,
    /// `queued`, `in_progress`, `completed`, `waiting`, `requested` or `pending`.
    #[serde(default)]
    pub status: Option<String>,
    /// Once completed: `success`, `failure`, `cancelled`, `timed_out`, `skipped`, ...
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The run's page on GitHub.
    #[serde(default)]
    pub html_url: Option<String>,
    /// RFC 3339 time the run was created.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339 time the current attempt started.
    #[serde(default)]
    pub run_started_at: Option<String>,
    /// RFC 3339 time the run last changed (its end, once completed).
    #[serde(default)]
    pub updated_at: Option<String>,
    /// Attempt number (re-runs keep the run id).
    #[serde(default)]
    pub run_attempt: Option<u32>,
}

#[derive(Deserialize)]
struct RunsPage {
    #[serde(default)]
    workflow_runs: Vec<WorkflowRun>,
}

/// One job of a run, as far as it is read.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Job {
    /// Job name.
    #[serde(default)]
    pub name: Option<String>,
    /// Job conclusion once completed (`failure`, ...).
    #[serde(default)]
    pub conclusion: Option<String>,
    /// The job's page on GitHub.
    #[serde(default)]
    pub html_url: Option<String>,
    /// Its steps, in order.
    #[serde(default)]
    pub steps: Vec<JobStep>,
}

/// One step of a job.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobStep {
    /// Step name.
    #[serde(default)]
    pub name: Option<String>,
    /// Step conclusion once completed.
    #[serde(default)]
    pub conclusion: Option<String>,
}

#[derive(Deserialize)]
struct JobsPage {
    #[serde(default)]
    jobs: Vec<Job>,
}

/// An answer's data with the rate-limit budget its headers stated.
#[derive(Debug)]
pub struct Read<T> {
    /// What was read.
    pub data: T,
    /// The budget left, when the answer stated one.
    pub budget: Option<Budget>,
}

/// The newest [`PER_PAGE`] `repository_dispatch` runs of `github` (`owner/name`), newest
/// first; with `created_since` (Unix seconds) only those created since then.
///
/// Errors: the [`DispatchError`] of the call, or [`DispatchError::Unexpected`] when the
/// answer is not a runs list.
pub async fn list(
    client: &Client,
    github: &str,
    created_since: Option<i64>,
) -> Result<Read<Vec<WorkflowRun>>, DispatchError> {
    let mut route =
        format!("/repos/{github}/actions/runs?event=repository_dispatch&per_page={PER_PAGE}");
    if let Some(since) = created_since.and_then(rfc3339) {
        // `created=>=TIME`, with `>=` percent-encoded (not a valid URI character).
        route.push_str(&format!("&created=%3E%3D{since}"));
    }
    let reply = read(client, github, &route).await?;
    let page: RunsPage = client.parse(github, "the runs list", &reply)?;
    Ok(Read {
        data: page.workflow_runs,
        budget: Budget::from_headers(&reply.headers),
    })
}

/// Run `id` of `github`.
///
/// Errors: as [`list`].
pub async fn get(
    client: &Client,
    github: &str,
    id: u64,
) -> Result<Read<WorkflowRun>, DispatchError> {
    let route = format!("/repos/{github}/actions/runs/{id}");
    let reply = read(client, github, &route).await?;
    Ok(Read {
        data: client.parse(github, "the run", &reply)?,
        budget: Budget::from_headers(&reply.headers),
    })
}

/// The jobs of the latest attempt of run `id` of `github` (at most [`PER_PAGE`]).
///
/// Errors: as [`list`].
pub async fn jobs(client: &Client, github: &str, id: u64) -> Result<Read<Vec<Job>>, DispatchError> {
    let route = format!("/repos/{github}/actions/runs/{id}/jobs?filter=latest&per_page={PER_PAGE}");
    let reply = read(client, github, &route).await?;
    let page: JobsPage = client.parse(github, "the jobs list", &reply)?;
    Ok(Read {
        data: page.jobs,
        budget: Budget::from_headers(&reply.headers),
    })
}

/// `GET route` for `github`, with a 403 or 404 told as what reading runs needs.
async fn read(client: &Client, github: &str, route: &str) -> Result<Reply, DispatchError> {
    match client.request(github, http::Method::GET, route, None).await {
        Err(DispatchError::NoAccess {
            repo,
            status,
            message,
        }) => Err(DispatchError::CannotReadRuns {
            repo,
            status,
            message,
        }),
        other => other,
    }
}

/// `unix` (seconds) as RFC 3339 UTC (`2024-05-01T12:00:00Z`), or `None` out of range.
pub fn rfc3339(unix: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp(unix).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

/// An RFC 3339 time from the API as Unix seconds, or `None` when it does not parse.
pub fn unix_time(text: &str) -> Option<i64> {
    time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_and_bad_ones_are_none() {
        assert_eq!(rfc3339(0).as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(unix_time("2024-05-01T12:00:05Z"), Some(1_714_564_805));
        assert_eq!(unix_time("2024-05-01T14:00:05+02:00"), Some(1_714_564_805));
        assert_eq!(unix_time("yesterday"), None);
    }

    #[test]
    fn a_run_reads_with_only_the_fields_used_and_tolerates_missing_ones() {
        let r: WorkflowRun = serde_json::from_str(
            r#"{"id": 7, "display_title": "bllvm-chain repository_dispatch c1", "status": "completed", "conclusion": null, "extra": {"x": 1}}"#,
        )
        .unwrap();
        assert_eq!(r.id, 7);
        assert_eq!(r.conclusion, None);
        assert_eq!(
            r.display_title.as_deref(),
            Some("bllvm-chain repository_dispatch c1")
        );
        assert!(serde_json::from_str::<WorkflowRun>(r#"{"display_title": "x"}"#).is_err());
    }
}
