//! The GitHub Actions event a run was started by (`GITHUB_EVENT_NAME`, and the webhook
//! payload at `GITHUB_EVENT_PATH`), and what each event allows.
//!
//! | event | `ci` | caches | chain |
//! |---|---|---|---|
//! | `push` | runs | saved | propagates the `push` trigger |
//! | `pull_request`, `pull_request_target` | runs | never saved | never dispatches |
//! | `release` | runs the full chain (`--only` dropped) | saved | propagates the `release` trigger |
//! | `repository_dispatch` | runs | saved | continues the chain of `client_payload` (source, chain_id, hop, path) |
//! | `workflow_dispatch` | runs the `only` input's repos, if given | saved | trigger from the `trigger` input (default `push`) |
//! | none (a laptop) | runs | saved | trigger `push` |
//!
//! A run is untrusted ([`Event::untrusted`]) when it may not save: a pull request, a run
//! in a fork (`repository.fork` in the payload), a push to a branch other than the
//! default one, an event not listed above, and a `repository_dispatch` whose payload is
//! missing, malformed or names a source outside the chain. An untrusted run writes
//! nothing under the cache root (no entry, result, metrics history, notification state
//! or dispatch record), dispatches nothing, and its failure is not the chain's: it sends
//! no notification and a later success is no "recovery".
//!
//! Reading only: this module never runs anything and never talks to the API.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

/// Which event started the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// No `GITHUB_EVENT_NAME`: a local run.
    Local,
    /// `push`.
    Push,
    /// `pull_request` or `pull_request_target`.
    PullRequest,
    /// `release`.
    Release,
    /// `repository_dispatch`: an upstream repo of the chain asked for this run.
    RepositoryDispatch,
    /// `workflow_dispatch`: started by hand.
    WorkflowDispatch,
    /// Any other event, by name (`schedule`, `merge_group`, ...): treated like `push`.
    Other(String),
}

/// The chain state a `repository_dispatch` carries in `client_payload`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Incoming {
    /// The repo that sent the dispatch.
    #[serde(default)]
    pub source: String,
    /// The chain run's correlation id.
    #[serde(default)]
    pub chain_id: Option<String>,
    /// Hops so far (1 for a direct dependent of the repo that started the chain).
    #[serde(default)]
    pub hop: u32,
    /// Repos the chain went through, the source last.
    #[serde(default)]
    pub path: Vec<String>,
    /// The trigger that started the chain.
    #[serde(default)]
    pub event: Option<String>,
    /// The release set, when propagating a release.
    #[serde(default)]
    pub release_set: Option<String>,
    /// `<chain_id>:<hop>:<target>`, the same on every retry of one dispatch: the
    /// receiving run acts on one id once (see [`crate::github::dedupe`]).
    #[serde(default)]
    pub dispatch_id: Option<String>,
}

/// The event of this run.
#[derive(Debug, Clone)]
pub struct Event {
    /// Which event.
    pub kind: EventKind,
    /// The webhook payload (`null` when there is none).
    pub payload: serde_json::Value,
}

impl Event {
    /// Read `GITHUB_EVENT_NAME` and the JSON file at `GITHUB_EVENT_PATH`.
    ///
    /// Errors: the event file is named but cannot be read or is not JSON.
    pub fn from_env() -> Result<Event> {
        let name = std::env::var("GITHUB_EVENT_NAME").ok();
        let path = std::env::var_os("GITHUB_EVENT_PATH");
        let text = match path.as_deref().map(Path::new) {
            Some(p) if !p.as_os_str().is_empty() && name.is_some() => {
                Some(std::fs::read_to_string(p).with_context(|| {
                    format!(
                        "read GITHUB_EVENT_PATH {}: unset it for a local run",
                        p.display()
                    )
                })?)
            }
            _ => None,
        };
        Event::parse(name.as_deref(), text.as_deref())
    }

    /// Build the event from its name and payload text (tests and [`Event::from_env`]).
    pub fn parse(name: Option<&str>, payload: Option<&str>) -> Result<Event> {
        let kind = match name.map(str::trim) {
            None | Some("") => EventKind::Local,
            Some("push") => EventKind::Push,
            Some("pull_request") | Some("pull_request_target") => EventKind::PullRequest,
            Some("release") => EventKind::Release,
            Some("repository_dispatch") => EventKind::RepositoryDispatch,
            Some("workflow_dispatch") => EventKind::WorkflowDispatch,
            Some(other) => EventKind::Other(other.to_owned()),
        };
        let payload = match payload {
            Some(t) => serde_json::from_str(t).context("GITHUB_EVENT_PATH is not JSON")?,
            None => serde_json::Value::Null,
        };
        Ok(Event { kind, payload })
    }

    /// Whether caches may be saved. Trusted events save: a push to the default branch,
    /// release, schedule, workflow_dispatch, repository_dispatch, and local runs. A pull
    /// request never does (its code is not trusted to write what later trusted runs
    /// restore; GitHub scopes actions/cache the same way), nor does a push to another
    /// branch (`ref` is not `refs/heads/<repository.default_branch>`; when the payload does
    /// not say which branch is the default, the push is trusted). Other events
    /// (`merge_group`, ...) are not in the list and do not save.
    pub fn may_save(&self) -> bool {
        if self.in_fork() {
            return false;
        }
        match &self.kind {
            EventKind::PullRequest => false,
            EventKind::Push => {
                let default = self
                    .payload
                    .pointer("/repository/default_branch")
                    .and_then(|v| v.as_str());
                let r#ref = self.payload.get("ref").and_then(|v| v.as_str());
                match (default, r#ref) {
                    (Some(d), Some(r)) => r == format!("refs/heads/{d}"),
                    _ => true,
                }
            }
            EventKind::Other(name) => name == "schedule",
            EventKind::Local
            | EventKind::Release
            | EventKind::RepositoryDispatch
            | EventKind::WorkflowDispatch => true,
        }
    }

    /// Whether the chain may be propagated: never from a pull request, nor from a run in
    /// a fork (its dispatches would carry the fork's code into the chain).
    pub fn may_dispatch(&self) -> bool {
        self.kind != EventKind::PullRequest && !self.in_fork()
    }

    /// Whether the run belongs to a fork: the payload's repository (or, for a pull
    /// request, its head repository) says `"fork": true`.
    pub fn in_fork(&self) -> bool {
        let fork = |p: &str| self.payload.pointer(p).and_then(serde_json::Value::as_bool);
        fork("/repository/fork") == Some(true) || fork("/pull_request/head/repo/fork") == Some(true)
    }

    /// Why this run is not trusted to speak for the chain, or `None` when it is (see the
    /// module docs): `repos` are the chain's repo names, the sources a
    /// `repository_dispatch` may claim. The one rule `ci`, `chain` and the notifications
    /// apply.
    pub fn untrusted(&self, repos: &[&str]) -> Option<String> {
        if let Some(why) = self.untrusted_source(repos) {
            return Some(why);
        }
        if self.may_save() {
            return None;
        }
        Some(if self.kind == EventKind::PullRequest {
            format!("{} event", self.name())
        } else if self.in_fork() {
            format!("{} event in a fork", self.name())
        } else if self.kind == EventKind::Push {
            let r#ref = self.payload.get("ref").and_then(|v| v.as_str());
            format!(
                "push to {}, not the default branch",
                r#ref.unwrap_or("another branch")
            )
        } else {
            format!("{} event (not one that may save)", self.name())
        })
    }

    /// Why a `repository_dispatch` is not to be trusted: its `client_payload` is missing
    /// or malformed, or its `source` is neither a repo of the chain (`repos`) nor a
    /// release walk (`release`). Such a run still builds, but like a pull request it
    /// saves no cache and dispatches nothing. `None` for every other event. (Issue 8: a
    /// dispatch claiming an unknown source used to save caches and propagate.)
    pub fn untrusted_source(&self, repos: &[&str]) -> Option<String> {
        if self.kind != EventKind::RepositoryDispatch {
            return None;
        }
        let source = match self.payload.get("client_payload") {
            None => return Some("repository_dispatch without a client_payload".into()),
            // GitHub refuses a dispatch with more: such a payload was not delivered by it.
            Some(cp)
                if cp.as_object().is_some_and(|o| {
                    o.len() > crate::github::dispatch::payload::MAX_TOP_LEVEL_PROPERTIES
                }) =>
            {
                return Some(format!(
                    "repository_dispatch client_payload has {} top-level properties (GitHub delivers at most {})",
                    cp.as_object().map_or(0, |o| o.len()),
                    crate::github::dispatch::payload::MAX_TOP_LEVEL_PROPERTIES
                ))
            }
            Some(cp) => match serde_json::from_value::<Incoming>(cp.clone()) {
                Ok(i) => i.source,
                Err(e) => {
                    return Some(format!(
                        "repository_dispatch with a malformed client_payload ({e})"
                    ))
                }
            },
        };
        if source == "release" || repos.contains(&source.as_str()) {
            return None;
        }
        Some(format!(
            "repository_dispatch from unknown source `{source}` (not a repo of the chain)"
        ))
    }

    /// The chain state of a `repository_dispatch` (`None` for any other event).
    pub fn incoming(&self) -> Option<Incoming> {
        if self.kind != EventKind::RepositoryDispatch {
            return None;
        }
        let cp = self.payload.get("client_payload")?;
        serde_json::from_value(cp.clone()).ok()
    }

    /// The chain trigger this run propagates: `push`, `release`, the trigger carried by
    /// a `repository_dispatch`, or a `workflow_dispatch`'s `trigger` input.
    pub fn trigger(&self) -> String {
        match &self.kind {
            EventKind::Release => "release".into(),
            EventKind::RepositoryDispatch => self
                .incoming()
                .and_then(|i| i.event)
                .unwrap_or_else(|| "push".into()),
            EventKind::WorkflowDispatch => self
                .input("trigger")
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "push".into()),
            _ => "push".into(),
        }
    }

    /// A `workflow_dispatch` input by name (inputs arrive as strings).
    pub fn input(&self, name: &str) -> Option<String> {
        if self.kind != EventKind::WorkflowDispatch {
            return None;
        }
        match self.payload.get("inputs")?.get(name)? {
            serde_json::Value::String(s) => Some(s.clone()),
            v => Some(v.to_string()),
        }
    }

    /// Shape the repos a `ci` run builds (`--only`) to the event: a `release` runs the
    /// full chain, so any `--only` is dropped; a `workflow_dispatch` whose `only` input
    /// names repos (separated by commas or spaces) runs those when no `--only` was given.
    /// Returns a line for the log when it changed anything.
    pub fn shape_only(&self, only: &mut Vec<String>) -> Option<String> {
        match self.kind {
            EventKind::Release if !only.is_empty() => {
                let dropped = std::mem::take(only).join(", ");
                Some(format!(
                    "event release: running the full chain (ignoring --only {dropped})"
                ))
            }
            EventKind::WorkflowDispatch if only.is_empty() => {
                let input = self.input("only")?;
                only.extend(
                    input
                        .split(|c: char| c == ',' || c.is_whitespace())
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                );
                (!only.is_empty())
                    .then(|| format!("event workflow_dispatch: only {}", only.join(", ")))
            }
            _ => None,
        }
    }

    /// The event's name as GitHub spells it (`local` for none).
    pub fn name(&self) -> &str {
        match &self.kind {
            EventKind::Local => "local",
            EventKind::Push => "push",
            EventKind::PullRequest => "pull_request",
            EventKind::Release => "release",
            EventKind::RepositoryDispatch => "repository_dispatch",
            EventKind::WorkflowDispatch => "workflow_dispatch",
            EventKind::Other(n) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_requests_never_save_or_dispatch() {
        let e = Event::parse(Some("pull_request"), Some(r#"{"number": 3}"#)).unwrap();
        assert!(!e.may_save() && !e.may_dispatch());
        let e = Event::parse(Some("push"), Some("{}")).unwrap();
        assert!(e.may_save() && e.may_dispatch());
        assert_eq!(e.trigger(), "push");
        let e = Event::parse(None, None).unwrap();
        assert_eq!(e.kind, EventKind::Local);
        assert!(e.may_save());
        // Only the default branch's pushes save; a schedule does, a merge queue does not.
        let push = |r: &str| {
            Event::parse(
                Some("push"),
                Some(&format!(
                    r#"{{"ref": "{r}", "repository": {{"default_branch": "main"}}}}"#
                )),
            )
            .unwrap()
            .may_save()
        };
        assert!(push("refs/heads/main"));
        assert!(!push("refs/heads/feature"));
        assert!(Event::parse(Some("schedule"), Some("{}"))
            .unwrap()
            .may_save());
        assert!(!Event::parse(Some("merge_group"), Some("{}"))
            .unwrap()
            .may_save());
    }

    #[test]
    fn repository_dispatch_continues_the_chain() {
        let e = Event::parse(
            Some("repository_dispatch"),
            Some(
                r#"{"action": "bllvm-upstream-release", "client_payload": {"source": "bllvm-consensus",
                "chain_id": "c-1", "hop": 2, "path": ["bllvm-primitives", "bllvm-consensus"],
                "event": "release", "dispatch_id": "x", "version": "0.2.0"}}"#,
            ),
        )
        .unwrap();
        let i = e.incoming().unwrap();
        assert_eq!(i.source, "bllvm-consensus");
        assert_eq!(i.chain_id.as_deref(), Some("c-1"));
        assert_eq!(i.hop, 2);
        assert_eq!(i.path, ["bllvm-primitives", "bllvm-consensus"]);
        assert_eq!(e.trigger(), "release");
    }

    #[test]
    fn workflow_dispatch_inputs() {
        let e = Event::parse(
            Some("workflow_dispatch"),
            Some(r#"{"inputs": {"trigger": "develop", "only": "bllvm-node"}}"#),
        )
        .unwrap();
        assert_eq!(e.trigger(), "develop");
        assert_eq!(e.input("only").as_deref(), Some("bllvm-node"));
        assert!(e.incoming().is_none());
        assert!(Event::parse(Some("push"), Some("not json")).is_err());
    }

    #[test]
    fn release_runs_the_full_chain_and_workflow_dispatch_picks_repos() {
        let mut only = vec!["bllvm-node".to_owned()];
        let e = Event::parse(Some("release"), Some("{}")).unwrap();
        assert!(e.shape_only(&mut only).unwrap().contains("full chain"));
        assert!(only.is_empty());
        let e = Event::parse(
            Some("workflow_dispatch"),
            Some(r#"{"inputs": {"only": "bllvm-node, bllvm-sdk"}}"#),
        )
        .unwrap();
        assert!(e.shape_only(&mut only).is_some());
        assert_eq!(only, ["bllvm-node", "bllvm-sdk"]);
        // An explicit --only wins over the input.
        let mut only = vec!["bllvm-spec".to_owned()];
        assert!(e.shape_only(&mut only).is_none());
        assert_eq!(only, ["bllvm-spec"]);
        let e = Event::parse(Some("push"), Some("{}")).unwrap();
        assert!(e.shape_only(&mut only).is_none());
    }

    /// Issue 13: pull requests, forks, other branches, unlisted events and unknown
    /// dispatch sources are untrusted, with the reason; the trusted events are not.
    #[test]
    fn untrusted_runs_are_named_with_their_reason() {
        let repos = ["a", "b"];
        let ev = |name: &str, payload: &str| Event::parse(Some(name), Some(payload)).unwrap();
        for (name, payload, want) in [
            ("pull_request", r#"{"number": 1}"#, "pull_request event"),
            ("pull_request_target", "{}", "pull_request event"),
            ("push", r#"{"repository": {"fork": true}}"#, "in a fork"),
            (
                "push",
                r#"{"ref": "refs/heads/x", "repository": {"default_branch": "main"}}"#,
                "push to refs/heads/x",
            ),
            ("merge_group", "{}", "merge_group event"),
            ("repository_dispatch", "{}", "without a client_payload"),
            (
                "repository_dispatch",
                r#"{"client_payload": {"source": "evil"}}"#,
                "unknown source `evil`",
            ),
        ] {
            let why = ev(name, payload).untrusted(&repos);
            assert!(
                why.as_deref().is_some_and(|w| w.contains(want)),
                "{name} {payload}: {why:?}"
            );
        }
        assert!(!ev("push", r#"{"repository": {"fork": true}}"#).may_dispatch());
        for (name, payload) in [
            (
                "push",
                r#"{"ref": "refs/heads/main", "repository": {"default_branch": "main"}}"#,
            ),
            ("release", "{}"),
            ("schedule", "{}"),
            ("workflow_dispatch", "{}"),
            (
                "repository_dispatch",
                r#"{"client_payload": {"source": "a", "dispatch_id": "c:1:b"}}"#,
            ),
        ] {
            assert_eq!(ev(name, payload).untrusted(&repos), None, "{name}");
        }
        assert_eq!(Event::parse(None, None).unwrap().untrusted(&repos), None);
    }
}
