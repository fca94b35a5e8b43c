//! Polling GitHub for a chain's runs until the chain finishes or a timeout: each round
//! lists the dispatched runs of every repo whose run is not found yet, reads each found
//! run that is still going, and reads the jobs of a run that failed (for the summary
//! line); between rounds it waits as [`super::pace`] says. Every request goes through
//! [`crate::github::dispatch`], with its retries of 5xx and rate-limited answers.
//!
//! What it reports along the way is a [`Progress`] passed to the caller, who prints.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::github::dispatch::auth::Clients;
use crate::github::dispatch::client::Budget;
use crate::github::dispatch::runs;
use crate::github::dispatch::DispatchError;

use super::pace::Pacer;
use super::{failure_line, pick, ChainStatus, RunInfo, Scope, Seen};

/// How to follow.
#[derive(Debug, Clone)]
pub struct FollowOptions {
    /// Keep polling until the chain finishes or `timeout`; else look once.
    pub watch: bool,
    /// Give up after this long (the status then says it timed out).
    pub timeout: Duration,
    /// First wait between rounds ([`Pacer`]).
    pub poll: Duration,
    /// Only runs created at or after this time (Unix seconds) count: a dispatch's time,
    /// less a margin for clock skew.
    pub since_unix: Option<i64>,
    /// Per repo, runs that existed before a dispatch and so are not its run.
    pub known: BTreeMap<String, BTreeSet<u64>>,
}

/// Something a follower noticed, for the caller to show.
#[derive(Debug, Clone)]
pub enum Progress {
    /// A repo's run appeared or changed state.
    Run {
        /// Manifest name.
        repo: String,
        /// The run now.
        run: RunInfo,
    },
    /// The next round waits longer than the backoff because of the rate limit.
    Wait {
        /// Seconds.
        secs: u64,
        /// Why, with the numbers.
        why: String,
    },
}

/// Follows one chain id over a [`Scope`].
pub struct Follower<'a> {
    clients: &'a Clients,
    scope: &'a Scope,
    chain_id: String,
    expected: BTreeSet<String>,
    opts: FollowOptions,
    seen: BTreeMap<String, Seen>,
    budget: Option<Budget>,
}

impl<'a> Follower<'a> {
    /// A follower of `chain_id` that expects runs of `expected` (plus what runs it finds
    /// reach downstream).
    pub fn new(
        clients: &'a Clients,
        scope: &'a Scope,
        chain_id: &str,
        expected: BTreeSet<String>,
        opts: FollowOptions,
    ) -> Follower<'a> {
        Follower {
            clients,
            scope,
            chain_id: chain_id.to_owned(),
            expected,
            opts,
            seen: BTreeMap::new(),
            budget: None,
        }
    }

    /// The status as last seen.
    pub fn status(&self) -> ChainStatus {
        let now = crate::support::time::now_unix() as i64;
        ChainStatus::build(self.scope, &self.chain_id, &self.expected, &self.seen, now)
    }

    /// Look once, or with `watch` until the chain finishes or the timeout, telling
    /// `progress` what changes.
    ///
    /// Errors: the first GitHub call that failed after its retries.
    pub async fn run(
        mut self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ChainStatus, DispatchError> {
        let deadline = Instant::now() + self.opts.timeout;
        let mut pacer = Pacer::new(self.opts.poll);
        loop {
            let (changed, requests) = self.round(progress).await?;
            let status = self.status();
            if !self.opts.watch || status.finished() {
                return Ok(status);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(ChainStatus {
                    timed_out: true,
                    ..status
                });
            }
            let now = crate::support::time::now_unix();
            let (wait, why) = pacer.next(changed, self.budget, requests.max(1), now);
            if let Some(why) = why {
                progress(Progress::Wait {
                    secs: wait.as_secs(),
                    why,
                });
            }
            tokio::time::sleep(wait.min(left)).await;
        }
    }

    /// One round (see the module docs). Returns whether anything changed and how many
    /// requests it made.
    async fn round(
        &mut self,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(bool, u64), DispatchError> {
        let mut changed = false;
        let mut requests = 0;
        let wanted = self.wanted();
        for repo in &self.scope.repos {
            let prev = self.seen.get(&repo.name).and_then(|s| s.run.clone());
            if prev.as_ref().is_some_and(|r| !r.state.is_active()) {
                continue;
            }
            if prev.is_none() && !wanted.contains(&repo.name) {
                continue;
            }
            let client = self.clients.for_repo(&repo.github).await?;
            requests += 1;
            let found = match &prev {
                Some(p) => {
                    let read = runs::get(&client, &repo.github, p.id).await?;
                    self.budget = read.budget.or(self.budget);
                    Some(RunInfo::from_api(&read.data))
                }
                None => {
                    let read = runs::list(&client, &repo.github, self.opts.since_unix).await?;
                    self.budget = read.budget.or(self.budget);
                    let known = self.opts.known.get(&repo.name).cloned().unwrap_or_default();
                    pick(&read.data, &self.chain_id, self.opts.since_unix, &known)
                        .map(RunInfo::from_api)
                }
            };
            let Some(run) = found else { continue };
            if prev.as_ref() == Some(&run) {
                continue;
            }
            if prev.as_ref().map(|p| &p.state) != Some(&run.state) {
                changed = true;
                progress(Progress::Run {
                    repo: repo.name.clone(),
                    run: run.clone(),
                });
            }
            let failure = if run.state.is_red() {
                requests += 1;
                Some(self.failure(&repo.name, &repo.github, &run).await)
            } else {
                None
            };
            self.seen.insert(
                repo.name.clone(),
                Seen {
                    run: Some(run),
                    failure,
                },
            );
        }
        Ok((changed, requests))
    }

    /// The repos whose run is looked for: while no run is found, every repo of the scope
    /// (a chain may have started anywhere); then the expected repos and those downstream
    /// of a found run.
    fn wanted(&self) -> BTreeSet<String> {
        let found: Vec<&str> = self
            .seen
            .iter()
            .filter(|(_, s)| s.run.is_some())
            .map(|(n, _)| n.as_str())
            .collect();
        if found.is_empty() && self.expected.is_empty() {
            return self.scope.repos.iter().map(|r| r.name.clone()).collect();
        }
        let mut wanted = self.expected.clone();
        for r in self
            .scope
            .repos
            .iter()
            .filter(|r| found.contains(&r.name.as_str()))
        {
            wanted.extend(r.downstream.iter().cloned());
        }
        wanted
    }

    /// The summary line of a red run, from its jobs; without them (the call failed), the
    /// run's conclusion alone.
    async fn failure(&mut self, repo: &str, github: &str, run: &RunInfo) -> String {
        let jobs = match self.clients.for_repo(github).await {
            Ok(client) => runs::jobs(&client, github, run.id).await.ok(),
            Err(_) => None,
        };
        if let Some(read) = &jobs {
            self.budget = read.budget.or(self.budget);
        }
        failure_line(repo, &jobs.map(|r| r.data).unwrap_or_default(), run)
    }
}
