//! Releasing a set in order (`cargo xtask chain --release VERSION --execute`): for each
//! repo of the set ([`crate::github::release::ReleaseStep`], in run order), dispatch the
//! release, wait for that dispatch's run to finish green ([`crate::github::follow`]),
//! wait for every crate the repo publishes to appear in the sparse index at the set's
//! version ([`crate::github::crates_index`]), then go on to the next repo. The first step
//! that does not get there stops the walk: the report says which repo and why, and the
//! repos after it are not sent.
//!
//! A dispatch's run is told from older ones of the same chain id by the run ids listed
//! just before the dispatch, and by its creation time (at most [`CLOCK_SKEW_SECS`] before
//! the dispatch by our clock). The plan of a dry run ([`plan_text`]) states the same
//! waits without sending anything.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::github::chain::{one_line, send_one, Status};
use crate::github::crates_index::{self, IndexWaitError};
use crate::github::dispatch::auth::Clients;
use crate::github::dispatch::runs;
use crate::github::dispatch::DispatchError;
use crate::github::follow::watch::{FollowOptions, Follower, Progress};
use crate::github::follow::{matches, RunInfo, Scope, ScopeRepo, Verdict};
use crate::github::release::ReleaseStep;
use crate::support::exit::Exit;

/// How far before the dispatch (by our clock) a run may have been created and still be
/// the dispatch's run: GitHub's clock and ours may differ by this much.
pub const CLOCK_SKEW_SECS: i64 = 120;

/// `schema_version` of the walk's `--format json`.
pub const SCHEMA_VERSION: u32 = 1;

/// How long to wait and where.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Longest wait for one repo's run to finish.
    pub run_timeout: Duration,
    /// Longest wait for one crate version to appear in the index.
    pub publish_timeout: Duration,
    /// First interval between polls (GitHub and the index).
    pub poll: Duration,
    /// The sparse index's base URL (ending in `/`).
    pub index_url: String,
}

/// How one step of the walk ended.
#[derive(Debug, Clone)]
pub enum StepResult {
    /// Its run finished green and its crates are in the index.
    Released {
        /// The run.
        run: RunInfo,
    },
    /// The walk stopped here: why, and the exit code.
    Stopped {
        /// What went wrong and what to look at.
        why: String,
        /// 1 (a run failed, a crate was yanked), 8 (a wait timed out), or a dispatch
        /// error's code (3 to 7).
        code: Exit,
    },
    /// Not sent, and why (an earlier step stopped the walk, or the event may not
    /// dispatch).
    NotSent(String),
}

/// Something the walk does, for the caller to show as it happens.
#[derive(Debug, Clone)]
pub enum WalkEvent {
    /// A repo's release was dispatched.
    Dispatched(String),
    /// Its run progressed.
    Run(Progress),
    /// Waiting for a crate version in the index.
    Index {
        /// Crate.
        krate: String,
        /// Version.
        version: String,
    },
}

/// The walk's outcome, one result per step.
#[derive(Debug)]
pub struct WalkReport {
    /// The chain id of every dispatch.
    pub chain_id: String,
    /// The set's name.
    pub set: String,
    /// Steps in order with how they ended.
    pub steps: Vec<(ReleaseStep, StepResult)>,
}

/// Walk `steps` in order (see the module docs). Steps whose target is marked skipped
/// (an event that may not dispatch) are not sent and do not stop the walk.
pub async fn walk(
    clients: &Clients,
    chain_id: &str,
    set: &str,
    steps: Vec<ReleaseStep>,
    opts: &WalkOptions,
    on: &mut dyn FnMut(WalkEvent),
) -> WalkReport {
    let mut out = Vec::new();
    let mut stopped: Option<String> = None;
    for step in steps {
        let result = if let Some(why) = &step.target.skip {
            StepResult::NotSent(why.clone())
        } else if let Some(at) = &stopped {
            StepResult::NotSent(format!("not sent: the walk stopped at `{at}`"))
        } else {
            match release_one(clients, chain_id, &step, opts, on).await {
                Ok(run) => StepResult::Released { run },
                Err((why, code)) => {
                    stopped = Some(step.target.repo.clone());
                    StepResult::Stopped { why, code }
                }
            }
        };
        out.push((step, result));
    }
    WalkReport {
        chain_id: chain_id.to_owned(),
        set: set.to_owned(),
        steps: out,
    }
}

/// One step: dispatch, wait for the run, wait for the crates. `Err((why, exit code))`.
async fn release_one(
    clients: &Clients,
    chain_id: &str,
    step: &ReleaseStep,
    opts: &WalkOptions,
    on: &mut dyn FnMut(WalkEvent),
) -> Result<RunInfo, (String, Exit)> {
    let t = &step.target;
    let dispatch_err = |e: DispatchError| (one_line(&e, &t.github), e.exit_code());
    let client = clients.for_repo(&t.github).await.map_err(dispatch_err)?;
    let before = runs::list(&client, &t.github, None)
        .await
        .map_err(dispatch_err)?;
    let known: BTreeSet<u64> = before
        .data
        .iter()
        .filter(|r| matches(r.display_title.as_deref(), chain_id))
        .map(|r| r.id)
        .collect();
    let since = crate::support::time::now_unix() as i64 - CLOCK_SKEW_SECS;
    match send_one(Some(clients), t).await {
        Status::Failed(e) => return Err(dispatch_err(e)),
        Status::Sent(_) => on(WalkEvent::Dispatched(t.repo.clone())),
        Status::DryRun | Status::Skipped(_) => {}
    }
    let run = wait_for_run(clients, chain_id, step, opts, since, known, on).await?;
    wait_for_crates(step, opts, on).await?;
    Ok(run)
}

/// Wait for every crate of `step` to appear in the index at its version.
/// `Err((why, exit code))`: yanked (1) or not there within the timeout (8).
async fn wait_for_crates(
    step: &ReleaseStep,
    opts: &WalkOptions,
    on: &mut dyn FnMut(WalkEvent),
) -> Result<(), (String, Exit)> {
    let v = &step.version;
    for krate in &step.crates {
        on(WalkEvent::Index {
            krate: krate.clone(),
            version: v.clone(),
        });
        let waited =
            crates_index::wait_for(&opts.index_url, krate, v, opts.publish_timeout, opts.poll)
                .await;
        match waited {
            Ok(()) => {}
            Err(IndexWaitError::Yanked) => return Err((
                format!("{krate} {v} is in the index but yanked: publish a new version and put it in the set"),
                Exit::Failed,
            )),
            Err(IndexWaitError::TimedOut(last)) => return Err((
                format!(
                    "{krate} {v} did not appear in the index within {}s ({last}): check the repo's publish step, or raise --publish-timeout",
                    opts.publish_timeout.as_secs()
                ),
                Exit::NotFinished,
            )),
        }
    }
    Ok(())
}

/// Follow the run the dispatch of `step` started until it finishes or the timeout.
async fn wait_for_run(
    clients: &Clients,
    chain_id: &str,
    step: &ReleaseStep,
    opts: &WalkOptions,
    since: i64,
    known: BTreeSet<u64>,
    on: &mut dyn FnMut(WalkEvent),
) -> Result<RunInfo, (String, Exit)> {
    let t = &step.target;
    let scope = Scope {
        repos: vec![ScopeRepo {
            name: t.repo.clone(),
            github: t.github.clone(),
            downstream: BTreeSet::new(),
        }],
    };
    let follow_opts = FollowOptions {
        watch: true,
        timeout: opts.run_timeout,
        poll: opts.poll,
        since_unix: Some(since),
        known: BTreeMap::from([(t.repo.clone(), known)]),
    };
    let follower = Follower::new(
        clients,
        &scope,
        chain_id,
        [t.repo.clone()].into(),
        follow_opts,
    );
    let status = follower
        .run(&mut |p| on(WalkEvent::Run(p)))
        .await
        .map_err(|e| (one_line(&e, &t.github), e.exit_code()))?;
    let run = status.rows.first().and_then(|r| r.run.clone());
    match (status.verdict(), run) {
        (Verdict::Green, Some(run)) => Ok(run),
        (Verdict::Failed(_), _) => Err((
            format!(
                "its run failed: {}",
                status.first_failure().unwrap_or_default()
            ),
            Exit::Failed,
        )),
        (_, run) => Err((
            format!(
                "its run {} within {}s: raise --timeout, or look at the repo's Actions page",
                match run {
                    Some(r) => format!("was still {} ({})", r.state.label(), r.url),
                    None => format!("did not appear (no run titled with chain id {chain_id}; the repo's workflow must put client_payload.chain_id in its run-name)"),
                },
                opts.run_timeout.as_secs()
            ),
            Exit::NotFinished,
        )),
    }
}

impl WalkReport {
    /// 0 when every step was released or not sent on purpose; else the stopping step's
    /// code.
    pub fn exit_code(&self) -> Exit {
        self.steps
            .iter()
            .find_map(|(_, r)| match r {
                StepResult::Stopped { code, .. } => Some(*code),
                _ => None,
            })
            .unwrap_or(Exit::Ok)
    }

    /// One line per repo: `released`, `stopped` (and why) or `not sent`.
    pub fn render(&self) -> String {
        let mut s = format!(
            "release {} (chain {}): {} repo(s), one at a time\n",
            self.set,
            self.chain_id,
            self.steps.len()
        );
        for (step, result) in &self.steps {
            let t = &step.target;
            let _ = match result {
                StepResult::Released { run } => writeln!(
                    s,
                    "released  {} {} ({}): run {} green{}",
                    t.repo,
                    step.version,
                    t.github,
                    run.url,
                    published(step)
                ),
                StepResult::Stopped { why, .. } => {
                    writeln!(
                        s,
                        "stopped   {} {} ({}): {why}",
                        t.repo, step.version, t.github
                    )
                }
                StepResult::NotSent(why) => {
                    writeln!(
                        s,
                        "not sent  {} {} ({}): {why}",
                        t.repo, step.version, t.github
                    )
                }
            };
        }
        s
    }

    /// `--format json` (`schema_version` 1).
    pub fn to_json(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct JsonStep<'a> {
            repo: &'a str,
            github: &'a str,
            version: &'a str,
            crates: &'a [String],
            /// `released`, `stopped` or `not-sent`.
            status: &'static str,
            run_url: Option<&'a str>,
            reason: Option<&'a str>,
            exit_code: Option<u8>,
        }
        let steps: Vec<JsonStep> = self
            .steps
            .iter()
            .map(|(step, r)| {
                let (status, run_url, reason, exit_code) = match r {
                    StepResult::Released { run } => {
                        ("released", Some(run.url.as_str()), None, None)
                    }
                    StepResult::Stopped { why, code } => {
                        ("stopped", None, Some(why.as_str()), Some(code.code()))
                    }
                    StepResult::NotSent(why) => ("not-sent", None, Some(why.as_str()), None),
                };
                JsonStep {
                    repo: &step.target.repo,
                    github: &step.target.github,
                    version: &step.version,
                    crates: &step.crates,
                    status,
                    run_url,
                    reason,
                    exit_code,
                }
            })
            .collect();
        serde_json::json!({
            "schema_version": SCHEMA_VERSION,
            "chain_id": self.chain_id,
            "release_set": self.set,
            "exit_code": self.exit_code().code(),
            "steps": steps,
        })
    }
}

/// `, then X 1.0 in the index` for a released step's crates, or that it publishes none.
fn published(step: &ReleaseStep) -> String {
    if step.crates.is_empty() {
        ", publishes no crate".into()
    } else {
        format!(", {} {} in the index", step.crates.join(", "), step.version)
    }
}

/// The plan a dry run prints: each step with the waits `--execute` would do.
pub fn plan_text(steps: &[ReleaseStep], opts: &WalkOptions, chain_id: &str) -> String {
    let mut s = String::from("release plan (--execute walks it one repo at a time):\n");
    for (i, step) in steps.iter().enumerate() {
        let t = &step.target;
        let crates = if step.crates.is_empty() {
            "publishes no crate: no index wait".to_owned()
        } else {
            format!(
                "then wait up to {}s for {} {} in {}",
                opts.publish_timeout.as_secs(),
                step.crates.join(", "),
                step.version,
                opts.index_url
            )
        };
        let _ = writeln!(
            s,
            "  {}. {} {}: dispatch {}, wait up to {}s for its run (chain {chain_id}) to finish green, {crates}",
            i + 1,
            t.repo,
            step.version,
            t.event_type,
            opts.run_timeout.as_secs()
        );
    }
    s
}
