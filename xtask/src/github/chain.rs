//! Sending a propagation: the `repository_dispatch` of every [`Target`] planned by
//! [`crate::github::propagate`] (or by a release set, [`crate::github::release`]), through
//! [`crate::github::dispatch`], and the [`Report`] of what happened, one line per target.
//! Also the PR comment `ci --comment` posts. `cargo xtask chain` itself is
//! `commands::chain`, which plans and then calls [`send_all`].

use crate::engine::manifest::Manifest;
use anyhow::{Context, Result};
use serde::Serialize;

use crate::github::dispatch::auth::Clients;
use crate::github::dispatch::client::{Client, RetryPolicy};
use crate::github::dispatch::payload::{self, ChainPayload};
use crate::github::dispatch::{DispatchError, Token, DEFAULT_API_URL};
use crate::github::events::Event;
use crate::github::propagate::Target;
use crate::support::env::process_env;
use crate::support::exit::Exit;

/// `schema_version` of `--format json`.
pub const SCHEMA_VERSION: u32 = 1;

/// What happened to one target.
#[derive(Debug)]
pub enum Status {
    /// Sent; GitHub answered 204 after this many attempts.
    Sent(u32),
    /// `--dry-run`: printed, not sent.
    DryRun,
    /// Not sent, and why.
    Skipped(String),
    /// Sending failed.
    Failed(DispatchError),
}

/// A target with its URL and what happened.
#[derive(Debug)]
pub struct Outcome {
    /// The target.
    pub target: Target,
    /// `POST` URL.
    pub url: String,
    /// What happened.
    pub status: Status,
}

/// The `POST` URL of a dispatch to `github` (`owner/name`) under `api_url`.
pub fn dispatch_url(api_url: &str, github: &str) -> String {
    format!(
        "{}/repos/{github}/dispatches",
        api_url.trim_end_matches('/')
    )
}

/// Send (or with `clients == None`, only validate: a dry run) every target in order.
/// With `stop_on_failure`, the targets after a failure are skipped (release order).
pub async fn send_all(
    clients: Option<&Clients>,
    api_url: &str,
    targets: Vec<Target>,
    stop_on_failure: bool,
) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut failed: Option<String> = None;
    for t in targets {
        let url = dispatch_url(api_url, &t.github);
        let status = if let Some(why) = &t.skip {
            Status::Skipped(why.clone())
        } else if let Some(f) = &failed {
            Status::Skipped(format!("not sent: the dispatch to `{f}` before it failed"))
        } else {
            send_one(clients, &t).await
        };
        if stop_on_failure && matches!(status, Status::Failed(_)) {
            failed = Some(t.repo.clone());
        }
        out.push(Outcome {
            target: t,
            url,
            status,
        });
    }
    out
}

/// Validate one target's dispatch and, with `clients`, send it.
pub async fn send_one(clients: Option<&Clients>, t: &Target) -> Status {
    let value = serde_json::to_value(&t.payload).map_err(|e| DispatchError::Invalid {
        repo: t.github.clone(),
        reason: format!("client_payload cannot be written as JSON: {e}"),
    });
    let value =
        match value.and_then(|v| payload::validate(&t.github, &t.event_type, &v).map(|()| v)) {
            Err(e) => return Status::Failed(e),
            Ok(v) => v,
        };
    let Some(clients) = clients else {
        return Status::DryRun;
    };
    let sent = match clients.for_repo(&t.github).await {
        Ok(c) => c.dispatch(&t.github, &t.event_type, &value).await,
        Err(e) => Err(e),
    };
    match sent {
        Ok(n) => Status::Sent(n),
        Err(e) => Status::Failed(e),
    }
}

/// The outcomes of one `chain` run, for printing.
#[derive(Debug)]
pub struct Report {
    /// Correlation id.
    pub chain_id: String,
    /// The repo propagating (or `release <set>`).
    pub from: String,
    /// Whether nothing was sent on purpose.
    pub dry_run: bool,
    /// One per target.
    pub outcomes: Vec<Outcome>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    schema_version: u32,
    chain_id: &'a str,
    from: &'a str,
    dry_run: bool,
    exit_code: u8,
    targets: Vec<JsonTarget<'a>>,
}

#[derive(Serialize)]
struct JsonTarget<'a> {
    repo: &'a str,
    github: &'a str,
    url: &'a str,
    event_type: &'a str,
    client_payload: &'a ChainPayload,
    /// `sent`, `dry-run`, `skipped` or `failed`.
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<u8>,
}

impl Report {
    /// 0 when nothing failed, else the exit code of the first failure
    /// ([`DispatchError::exit_code`]).
    pub fn exit_code(&self) -> Exit {
        self.outcomes
            .iter()
            .find_map(|o| match &o.status {
                Status::Failed(e) => Some(e.exit_code()),
                _ => None,
            })
            .unwrap_or(Exit::Ok)
    }

    /// Text for people: with `--dry-run` each request in full, then one summary line
    /// per target (`sent`, `dry-run`, `skipped (why)`, `failed (why)`).
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "chain {} from {}: {} target(s){}",
            self.chain_id,
            self.from,
            self.outcomes.len(),
            if self.dry_run {
                " (dry run: nothing is sent)"
            } else {
                ""
            }
        );
        for o in &self.outcomes {
            if let Status::DryRun = o.status {
                let _ = writeln!(s, "  POST {}", o.url);
                let _ = writeln!(s, "    event_type: {}", o.target.event_type);
                let _ = writeln!(
                    s,
                    "    client_payload: {}",
                    serde_json::to_string(&o.target.payload).unwrap_or_default()
                );
            }
        }
        for o in &self.outcomes {
            let t = &o.target;
            let _ = match &o.status {
                Status::Sent(n) => writeln!(
                    s,
                    "sent     {} ({}) {}, {n} attempt(s)",
                    t.repo, t.github, t.event_type
                ),
                Status::DryRun => {
                    writeln!(s, "dry-run  {} ({}) {}", t.repo, t.github, t.event_type)
                }
                Status::Skipped(why) => writeln!(s, "skipped  {} ({}): {why}", t.repo, t.github),
                Status::Failed(e) => writeln!(
                    s,
                    "failed   {} ({}): {}",
                    t.repo,
                    t.github,
                    one_line(e, &t.github)
                ),
            };
        }
        if self.outcomes.is_empty() {
            let _ = if self.from.starts_with("release ") {
                writeln!(
                    s,
                    "nothing to dispatch: the {} set lists no repo",
                    self.from
                )
            } else {
                writeln!(s, "nothing to dispatch: no repo depends on {}", self.from)
            };
        }
        s
    }

    /// `--format json` (`schema_version` 1).
    pub fn to_json(&self) -> serde_json::Value {
        let targets = self
            .outcomes
            .iter()
            .map(|o| {
                let (status, attempts, reason, kind, code) = match &o.status {
                    Status::Sent(n) => ("sent", Some(*n), None, None, None),
                    Status::DryRun => ("dry-run", None, None, None, None),
                    Status::Skipped(w) => ("skipped", None, Some(w.clone()), None, None),
                    Status::Failed(e) => (
                        "failed",
                        None,
                        Some(e.to_string()),
                        Some(e.kind()),
                        Some(e.exit_code().code()),
                    ),
                };
                JsonTarget {
                    repo: &o.target.repo,
                    github: &o.target.github,
                    url: &o.url,
                    event_type: &o.target.event_type,
                    client_payload: &o.target.payload,
                    status,
                    attempts,
                    reason,
                    error_kind: kind,
                    exit_code: code,
                }
            })
            .collect();
        // Strings, numbers and the payload (itself a JSON object): nothing here can fail
        // to serialize; should it, the report says so rather than panicking.
        serde_json::to_value(JsonReport {
            schema_version: SCHEMA_VERSION,
            chain_id: &self.chain_id,
            from: &self.from,
            dry_run: self.dry_run,
            exit_code: self.exit_code().code(),
            targets,
        })
        .unwrap_or_else(
            |e| serde_json::json!({ "schema_version": SCHEMA_VERSION, "error": e.to_string() }),
        )
    }
}

/// The names of the manifest's repos (the sources a `repository_dispatch` may claim).
pub fn repo_names(manifest: &Manifest) -> Vec<&str> {
    manifest.repos.iter().map(|r| r.name.as_str()).collect()
}

/// `cargo xtask ci --comment`: on a `pull_request` run, post or update the one summary
/// comment of the pull request (see [`crate::github::dispatch::comment`]). The repo comes from
/// `GITHUB_REPOSITORY`, the number from the event, the token from `GITHUB_TOKEN`, the API
/// from `GITHUB_API_URL`. Never fails the run: a comment that cannot be posted (a fork's
/// read-only token) is a warning on stderr.
pub fn comment_on_pull_request(event: &Event, summary: &str) {
    if event.kind != crate::github::events::EventKind::PullRequest {
        println!(
            "comment: not a pull_request run ({}), nothing posted",
            event.name()
        );
        return;
    }
    match post_comment(event, summary) {
        Ok(crate::github::dispatch::comment::Action::Created(id)) => {
            println!("comment: posted the run summary (comment {id})")
        }
        Ok(crate::github::dispatch::comment::Action::Updated(id)) => {
            println!("comment: updated the run summary (comment {id})")
        }
        Err(e) => eprintln!("warning: no PR comment: {e:#}"),
    }
}

fn post_comment(event: &Event, summary: &str) -> Result<crate::github::dispatch::comment::Action> {
    let number = event
        .payload
        .get("number")
        .or_else(|| {
            event
                .payload
                .get("pull_request")
                .and_then(|p| p.get("number"))
        })
        .and_then(|n| n.as_u64())
        .context("the pull_request event has no `number`")?;
    let github = process_env("GITHUB_REPOSITORY").context(
        "GITHUB_REPOSITORY is not set: run inside GitHub Actions or set it to owner/name",
    )?;
    let (token, _) = Token::from_env(None)?;
    let api_url = process_env("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let _entered = rt.enter();
    let client = Client::new(&api_url, &token, RetryPolicy::default())?;
    rt.block_on(crate::github::dispatch::comment::upsert(
        &client, &github, number, summary,
    ))
}

/// An error as one summary line: without the `owner/name: ` prefix the line already
/// shows, and with GitHub's multi-line messages folded.
pub fn one_line(e: &DispatchError, github: &str) -> String {
    let text = e.to_string();
    let text = text.strip_prefix(&format!("{github}: ")).unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::propagate::plan_targets;
    use crate::github::propagate::tests::{req, sample};
    use crate::github::propagate::ChainRequest;

    #[test]
    fn report_exit_code_is_the_first_failure() {
        let (m, g) = sample();
        let mut t = plan_targets(
            &m,
            &g,
            &ChainRequest {
                transitive: true,
                ..req("cons")
            },
        )
        .unwrap();
        let mk = |t: Target, status| Outcome {
            url: dispatch_url("http://x/", &t.github),
            target: t,
            status,
        };
        let r = Report {
            chain_id: "c1".into(),
            from: "cons".into(),
            dry_run: false,
            outcomes: vec![
                mk(t.remove(0), Status::Sent(1)),
                mk(
                    t.remove(0),
                    Status::Failed(DispatchError::BadCredentials {
                        repo: "o/node".into(),
                    }),
                ),
                mk(
                    t.remove(0),
                    Status::Failed(DispatchError::Server {
                        repo: "o/sdk".into(),
                        status: 502,
                        attempts: 4,
                    }),
                ),
            ],
        };
        assert_eq!(r.exit_code(), Exit::BadCredentials);
        assert_eq!(r.outcomes[0].url, "http://x/repos/o/proto/dispatches");
        let text = r.render();
        assert!(
            text.contains("sent     proto (o/proto) bllvm-upstream-push, 1 attempt(s)"),
            "{text}"
        );
        assert!(
            text.contains("failed   node (o/node): bad credentials (401)"),
            "{text}"
        );
        assert_eq!(r.to_json()["targets"][2]["error_kind"], "server");
    }
}
