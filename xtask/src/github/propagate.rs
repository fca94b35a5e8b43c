//! Downstream propagation, as a pure function: which repos a run of one repo tells to run
//! next (each a [`Target`] with its event type and payload, or the reason it is skipped).
//! [`crate::github::chain`] sends the targets; release sets
//! ([`crate::github::release`]) build theirs from the same [`Target`].
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

use anyhow::{bail, Result};
use serde::Serialize;

use crate::engine::graph::Graph;
use crate::engine::manifest::Manifest;
use crate::github::dispatch::payload::ChainPayload;
use crate::github::events::Incoming;

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
    let chosen = chosen(manifest, graph, req)?;
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
        let skip = skip_reason(req, name, hop, &path);
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

/// The repos to dispatch: `--to` (each checked to be downstream of `from`), else the whole
/// closure with `--transitive`, else the direct dependents.
fn chosen(manifest: &Manifest, graph: &Graph, req: &ChainRequest) -> Result<BTreeSet<String>> {
    let closure = graph.downstream_closure(&[req.from.as_str()]);
    if req.to.is_empty() {
        return Ok(if req.transitive {
            closure
        } else {
            direct_dependents(graph, &req.from).into_iter().collect()
        });
    }
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
    Ok(req.to.iter().cloned().collect())
}

/// Why `name` is not sent at hop `hop` of a chain that went through `path`: the request is
/// blocked, or the loop guard (already on the path, or past `[chain] max-hops`).
fn skip_reason(req: &ChainRequest, name: &str, hop: u32, path: &[String]) -> Option<String> {
    if let Some(why) = &req.blocked {
        Some(why.clone())
    } else if path.iter().any(|p| p == name) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::engine::graph::EdgeOrigin::Normal;
    use std::path::Path;

    /// The sample chain's shape, edges as cargo's resolved graph gives them.
    pub(crate) fn sample() -> (Manifest, Graph) {
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

    pub(crate) fn req(from: &str) -> ChainRequest {
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
            dispatch_id: None,
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
}
