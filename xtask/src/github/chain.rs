//! `cargo xtask chain`: tell the repos downstream of one repo to run, by sending each a
//! `repository_dispatch` (through [`crate::github::dispatch`]), or walk a release set through the
//! whole chain in order (`--release`, with [`crate::github::release`]).
//!
//! Plan, then send: [`plan_targets`] is a pure function from the graph and the run's
//! context to the list of targets, each with its event type and payload or the reason it
//! is skipped; [`send_all`] sends them (or only prints them with `--dry-run`), and
//! [`Report`] renders one line per target.
//!
//! Which repos: "direct" dependents are the graph's downstream repos that are not also
//! reachable through another downstream repo (the transitive reduction): the graph's
//! edges come from resolved dependencies, so `bllvm-node` has an edge from
//! `bllvm-consensus` through `bllvm-protocol`, but the chain reaches it through
//! `bllvm-protocol`'s own dispatch. `--transitive` sends to the whole closure at once;
//! `--to` picks repos from the closure.
//!
//! Loop guard: a target already on the chain's path (the repos the chain went through,
//! carried in the payload) is skipped, and so is every target past `[chain] max-hops`.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::engine::graph::Graph;
use crate::engine::manifest::Manifest;
use crate::flags::{ChainArgs, Format};
use crate::github::dispatch::client::{Client, RetryPolicy};
use crate::github::dispatch::payload::{self, ChainPayload};
use crate::github::dispatch::{DispatchError, Token, DEFAULT_API_URL};
use crate::github::events::{Event, Incoming};

/// `schema_version` of `--format json`.
pub const SCHEMA_VERSION: u32 = 1;

/// Everything [`plan_targets`] needs besides the manifest and the graph.
#[derive(Debug, Clone)]
pub struct ChainRequest {
    /// The repo whose run propagates (`--from`).
    pub from: String,
    /// Send to the whole downstream closure, not only direct dependents.
    pub transitive: bool,
    /// Only these targets (`--to`); each must be downstream of `from`.
    pub to: Vec<String>,
    /// Event type sent (from `[chain.event-types]` or `--event-type`).
    pub event_type: String,
    /// The trigger that started the chain (`push`, `release`, ...).
    pub trigger: String,
    /// Commit of `from` that was built.
    pub sha: Option<String>,
    /// Git ref of `from`'s run.
    pub git_ref: Option<String>,
    /// Version of `from`.
    pub version: Option<String>,
    /// Correlation id of the chain run.
    pub chain_id: String,
    /// Chain state received from upstream (a `repository_dispatch`), if any.
    pub incoming: Option<Incoming>,
    /// `[chain] max-hops`.
    pub max_hops: u32,
    /// When set, every target is skipped for this reason (e.g. a pull request run).
    pub blocked: Option<String>,
}

/// One downstream repo and what to send it.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// Manifest name.
    pub repo: String,
    /// GitHub `owner/name`.
    pub github: String,
    /// `event_type` of the dispatch.
    pub event_type: String,
    /// `client_payload` of the dispatch.
    pub payload: ChainPayload,
    /// Why it is not sent, if it is not.
    pub skip: Option<String>,
}

/// Downstream repos of `from` that are not reachable through another downstream repo,
/// sorted by name.
pub fn direct_dependents(graph: &Graph, from: &str) -> Vec<String> {
    let down = graph.downstream(from);
    down.iter()
        .filter(|d| {
            !down
                .iter()
                .any(|o| o != *d && graph.downstream_closure(&[o]).contains(**d))
        })
        .map(|d| (*d).to_owned())
        .collect()
}

/// The targets of a propagation from `req.from`, in run order (pure: sends nothing).
///
/// Errors: `from` or a `--to` repo is not in the manifest, a `--to` repo is not
/// downstream of `from`, or the graph has a cycle.
pub fn plan_targets(manifest: &Manifest, graph: &Graph, req: &ChainRequest) -> Result<Vec<Target>> {
    manifest.repo(&req.from)?;
    let closure = graph.downstream_closure(&[req.from.as_str()]);
    let chosen: BTreeSet<String> = if !req.to.is_empty() {
        for t in &req.to {
            manifest.repo(t)?;
            if !closure.contains(t) {
                bail!(
                    "`{t}` is not downstream of `{}` (downstream: {}): pick --to from those",
                    req.from,
                    if closure.is_empty() {
                        "none".to_owned()
                    } else {
                        closure.iter().cloned().collect::<Vec<_>>().join(", ")
                    }
                );
            }
        }
        req.to.iter().cloned().collect()
    } else if req.transitive {
        closure
    } else {
        direct_dependents(graph, &req.from).into_iter().collect()
    };
    let (hop, mut path) = match &req.incoming {
        Some(i) => (i.hop.saturating_add(1), i.path.clone()),
        None => (1, Vec::new()),
    };
    if path.last() != Some(&req.from) {
        path.push(req.from.clone());
    }
    let order = graph.order()?;
    let mut targets = Vec::new();
    for name in order.iter().filter(|n| chosen.contains(*n)) {
        let repo = manifest.repo(name)?;
        let skip = if let Some(why) = &req.blocked {
            Some(why.clone())
        } else if path.contains(name) {
            Some(format!(
                "loop guard: `{name}` is already on the chain path {}",
                path.join(" → ")
            ))
        } else if hop > req.max_hops {
            Some(format!(
                "loop guard: hop {hop} is past [chain] max-hops = {}",
                req.max_hops
            ))
        } else {
            None
        };
        targets.push(Target {
            repo: name.clone(),
            github: repo.github.clone(),
            event_type: req.event_type.clone(),
            payload: ChainPayload {
                source: req.from.clone(),
                sha: req.sha.clone(),
                git_ref: req.git_ref.clone(),
                version: req.version.clone(),
                event: req.trigger.clone(),
                chain_id: req.chain_id.clone(),
                hop,
                path: path.clone(),
                dispatch_id: format!("{}:{hop}:{name}", req.chain_id),
                release_set: None,
            },
            skip,
        });
    }
    Ok(targets)
}

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

/// Send (or with `client == None`, only validate: a dry run) every target in order.
/// With `stop_on_failure`, the targets after a failure are skipped (release order).
pub async fn send_all(
    client: Option<&Client>,
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
            let value = serde_json::to_value(&t.payload).expect("payload serializes");
            match payload::validate(&t.github, &t.event_type, &value) {
                Err(e) => Status::Failed(e),
                Ok(()) => match client {
                    None => Status::DryRun,
                    Some(c) => match c.dispatch(&t.github, &t.event_type, &value).await {
                        Ok(n) => Status::Sent(n),
                        Err(e) => Status::Failed(e),
                    },
                },
            }
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
    pub fn exit_code(&self) -> u8 {
        self.outcomes
            .iter()
            .find_map(|o| match &o.status {
                Status::Failed(e) => Some(e.exit_code()),
                _ => None,
            })
            .unwrap_or(0)
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
                        Some(e.exit_code()),
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
        serde_json::to_value(JsonReport {
            schema_version: SCHEMA_VERSION,
            chain_id: &self.chain_id,
            from: &self.from,
            dry_run: self.dry_run,
            exit_code: self.exit_code(),
            targets,
        })
        .expect("report serializes")
    }
}

/// The chain run's correlation id: `--chain-id`, else the one received from upstream,
/// else `gh-<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>` in Actions, else
/// `local-<UTC time>-<pid>`.
pub fn chain_id(flag: Option<&str>, incoming: Option<&Incoming>) -> String {
    if let Some(f) = flag.filter(|f| !f.is_empty()) {
        return f.to_owned();
    }
    if let Some(id) = incoming
        .and_then(|i| i.chain_id.clone())
        .filter(|i| !i.is_empty())
    {
        return id;
    }
    if let Ok(run) = std::env::var("GITHUB_RUN_ID") {
        if !run.is_empty() {
            let attempt = std::env::var("GITHUB_RUN_ATTEMPT").unwrap_or_else(|_| "1".into());
            return format!("gh-{run}-{attempt}");
        }
    }
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "now".into());
    format!("local-{stamp}-{}", std::process::id())
}

/// The names of the manifest's repos (the sources a `repository_dispatch` may claim).
pub fn repo_names(manifest: &Manifest) -> Vec<&str> {
    manifest.repos.iter().map(|r| r.name.as_str()).collect()
}

/// `cargo xtask chain`.
pub fn run(args: &ChainArgs) -> Result<ExitCode> {
    let (manifest, opts, cache) = crate::commands::open(&args.resolve)?;
    let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
    let event = Event::from_env()?;
    let incoming = event.incoming();
    let chain_id = chain_id(args.chain_id.as_deref(), incoming.as_ref());
    let api_url = args
        .api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());

    let (from, targets, dry_run, stop_on_failure) = if let Some(set) = &args.release {
        let versions_path = args
            .versions
            .clone()
            .unwrap_or_else(|| crate::github::release::default_versions_path(&manifest));
        let file = crate::github::release::VersionsFile::load(&versions_path)?;
        let targets = crate::github::release::plan_release(
            &manifest,
            &resolved.plan,
            &file,
            set,
            args.event_type.as_deref(),
            &chain_id,
        )
        .with_context(|| format!("release set `{set}` from {}", versions_path.display()))?;
        let mut targets = targets;
        if !event.may_dispatch() {
            for t in &mut targets {
                t.skip = Some(format!("{} events never dispatch", event.name()));
            }
        } else if let Some(why) = event.untrusted_source(&repo_names(&manifest)) {
            // An untrusted repository_dispatch never propagates (issue 8).
            for t in &mut targets {
                t.skip = Some(why.clone());
            }
        }
        (format!("release {set}"), targets, !args.execute, true)
    } else {
        let Some(from) = args.from.clone() else {
            bail!(
                "say which repo's dependents to dispatch: pass --from REPO (or --release VERSION)"
            );
        };
        let trigger = args.trigger.clone().unwrap_or_else(|| event.trigger());
        let event_type = args
            .event_type
            .clone()
            .unwrap_or_else(|| manifest.chain.event_type(&trigger));
        let version = resolved
            .plan
            .repos
            .iter()
            .find(|r| r.name == from)
            .and_then(|r| {
                r.versions
                    .get(&from)
                    .or_else(|| r.versions.values().next())
                    .cloned()
            });
        let req = ChainRequest {
            from: from.clone(),
            transitive: args.transitive,
            to: args.to.clone(),
            event_type,
            trigger,
            sha: args.sha.clone().or_else(|| env_nonempty("GITHUB_SHA")),
            git_ref: args.git_ref.clone().or_else(|| env_nonempty("GITHUB_REF")),
            version,
            chain_id: chain_id.clone(),
            incoming,
            max_hops: manifest.chain.max_hops,
            blocked: (!event.may_dispatch())
                .then(|| format!("{} events never dispatch", event.name()))
                // An untrusted repository_dispatch never propagates (issue 8).
                .or_else(|| event.untrusted_source(&repo_names(&manifest))),
        };
        let targets = plan_targets(&manifest, &resolved.plan.graph, &req)?;
        (from, targets, args.dry_run, false)
    };
    drop(resolved);

    // octocrab spawns its buffer task when built: build it inside the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let _entered = rt.enter();
    let needs_client = !dry_run && targets.iter().any(|t| t.skip.is_none());
    let client = if needs_client {
        let (token, var) = match Token::from_env(manifest.chain.token_env.as_deref()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(e.exit_code()));
            }
        };
        if let Some(named) = manifest.chain.token_env.as_deref().filter(|n| *n != var) {
            // Only names are printed, never the token.
            eprintln!(
                "note: {named} ([chain] token-env) is not set; using {var}, which may only reach its own repository"
            );
        }
        Some(Client::new(
            &api_url,
            &token,
            RetryPolicy {
                attempts: args.retries.saturating_add(1),
                base_delay: Duration::from_millis(args.retry_delay_ms),
                max_wait: Duration::from_secs(args.max_wait),
            },
        )?)
    } else {
        None
    };
    let outcomes = rt.block_on(send_all(
        client.as_ref(),
        &api_url,
        targets,
        stop_on_failure,
    ));
    let report = Report {
        chain_id,
        from,
        dry_run,
        outcomes,
    };
    match args.format {
        Format::Text => print!("{}", report.render()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
    }
    Ok(ExitCode::from(report.exit_code()))
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
    let github = env_nonempty("GITHUB_REPOSITORY").context(
        "GITHUB_REPOSITORY is not set: run inside GitHub Actions or set it to owner/name",
    )?;
    let (token, _) = Token::from_env(None)?;
    let api_url = env_nonempty("GITHUB_API_URL").unwrap_or_else(|| DEFAULT_API_URL.to_owned());
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
fn one_line(e: &DispatchError, github: &str) -> String {
    let text = e.to_string();
    let text = text.strip_prefix(&format!("{github}: ")).unwrap_or(&text);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn env_nonempty(var: &str) -> Option<String> {
    std::env::var(var).ok().filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::EdgeOrigin::Normal;
    use std::path::Path;

    /// The sample chain's shape, edges as cargo's resolved graph gives them.
    fn sample() -> (Manifest, Graph) {
        let names = ["spec", "prim", "cons", "proto", "node", "sdk"];
        let mut text = String::new();
        for n in names {
            text.push_str(&format!("[[repo]]\nname = \"{n}\"\ngithub = \"o/{n}\"\n"));
        }
        let m = Manifest::parse(&text, Path::new("ci/chain.toml")).unwrap();
        let mut g = Graph::new(names);
        for (u, d) in [
            ("spec", "cons"),
            ("prim", "cons"),
            ("prim", "proto"),
            ("cons", "proto"),
            ("cons", "node"),
            ("cons", "sdk"),
            ("proto", "node"),
            ("proto", "sdk"),
            ("node", "sdk"),
        ] {
            g.add_edge(u, d, Normal);
        }
        (m, g)
    }

    fn req(from: &str) -> ChainRequest {
        ChainRequest {
            from: from.into(),
            transitive: false,
            to: vec![],
            event_type: "bllvm-upstream-push".into(),
            trigger: "push".into(),
            sha: Some("abc".into()),
            git_ref: None,
            version: Some("0.1.0".into()),
            chain_id: "c1".into(),
            incoming: None,
            max_hops: 8,
            blocked: None,
        }
    }

    fn names(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.repo.as_str()).collect()
    }

    #[test]
    fn direct_is_the_transitive_reduction() {
        let (m, g) = sample();
        let t = plan_targets(&m, &g, &req("cons")).unwrap();
        assert_eq!(names(&t), ["proto"]);
        assert_eq!(t[0].payload.hop, 1);
        assert_eq!(t[0].payload.path, ["cons"]);
        assert_eq!(t[0].payload.dispatch_id, "c1:1:proto");
        let t = plan_targets(
            &m,
            &g,
            &ChainRequest {
                transitive: true,
                ..req("cons")
            },
        )
        .unwrap();
        assert_eq!(names(&t), ["proto", "node", "sdk"]);
        let t = plan_targets(&m, &g, &req("prim")).unwrap();
        assert_eq!(names(&t), ["cons"]);
        assert!(plan_targets(&m, &g, &req("sdk")).unwrap().is_empty());
    }

    #[test]
    fn to_picks_from_the_closure() {
        let (m, g) = sample();
        let t = plan_targets(
            &m,
            &g,
            &ChainRequest {
                to: vec!["sdk".into()],
                ..req("cons")
            },
        )
        .unwrap();
        assert_eq!(names(&t), ["sdk"]);
        let e = plan_targets(
            &m,
            &g,
            &ChainRequest {
                to: vec!["prim".into()],
                ..req("cons")
            },
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("`prim` is not downstream of `cons`"),
            "{e}"
        );
        assert!(plan_targets(&m, &g, &req("nope")).is_err());
    }

    #[test]
    fn loop_guard_skips_repos_on_the_path_and_past_max_hops() {
        let (m, g) = sample();
        let incoming = Incoming {
            source: "proto".into(),
            chain_id: Some("c0".into()),
            hop: 2,
            path: vec!["sdk".into(), "proto".into()],
            event: Some("push".into()),
            release_set: None,
        };
        let t = plan_targets(
            &m,
            &g,
            &ChainRequest {
                incoming: Some(incoming.clone()),
                transitive: true,
                ..req("node")
            },
        )
        .unwrap();
        assert_eq!(names(&t), ["sdk"]);
        assert!(t[0]
            .skip
            .as_deref()
            .unwrap()
            .contains("already on the chain path sdk → proto → node"));
        assert_eq!(t[0].payload.hop, 3);
        let t = plan_targets(
            &m,
            &g,
            &ChainRequest {
                incoming: Some(Incoming {
                    path: vec![],
                    ..incoming
                }),
                max_hops: 2,
                ..req("node")
            },
        )
        .unwrap();
        assert!(t[0]
            .skip
            .as_deref()
            .unwrap()
            .contains("hop 3 is past [chain] max-hops = 2"));
    }

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
        assert_eq!(r.exit_code(), 3);
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
