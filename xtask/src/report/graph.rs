//! `cargo xtask graph`: the plan's repo graph as Graphviz dot, a mermaid flowchart, or
//! JSON, with edges labelled by origin (normal, dev, build, after), levels, and what the
//! next `ci` would do per repo (run, restore, skip-cached, skip-not-affected).
//!
//! Rendering only: the graph and the actions come from [`crate::engine::plan::Plan`].

use serde::Serialize;

use crate::engine::plan::{Plan, RepoPlan};

fn origins(r: &RepoPlan, from: &str) -> String {
    r.edges
        .iter()
        .find(|e| e.from == from)
        .map(|e| {
            e.origins
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

fn node_id(name: &str) -> String {
    name.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// Graphviz dot: one cluster-free digraph, nodes ranked by level, labels `name\naction`.
pub fn dot(plan: &Plan) -> String {
    let mut s = String::from("digraph chain {\n  rankdir=LR;\n  node [shape=box];\n");
    for (i, level) in plan.levels.iter().enumerate() {
        let ids: Vec<String> = level.iter().map(|n| format!("\"{n}\"")).collect();
        s += &format!("  {{ rank=same; /* level {i} */ {}; }}\n", ids.join("; "));
    }
    for r in &plan.repos {
        s += &format!(
            "  \"{}\" [label=\"{}\\n{}\"];\n",
            r.name,
            r.name,
            r.action.word(r.cache_hit)
        );
    }
    for r in &plan.repos {
        for e in &r.edges {
            s += &format!(
                "  \"{}\" -> \"{}\" [label=\"{}\"];\n",
                e.from,
                r.name,
                origins(r, &e.from)
            );
        }
    }
    s.push_str("}\n");
    s
}

/// A mermaid flowchart (GitHub renders it in Markdown), one subgraph per level.
pub fn mermaid(plan: &Plan) -> String {
    let mut s = String::from("flowchart LR\n");
    for (i, level) in plan.levels.iter().enumerate() {
        s += &format!("  subgraph level{i}[\"level {i}\"]\n");
        for name in level {
            let r = plan
                .repos
                .iter()
                .find(|r| &r.name == name)
                .expect("levels name planned repos");
            s += &format!(
                "    {}[\"{}<br/>{}\"]\n",
                node_id(name),
                name,
                r.action.word(r.cache_hit)
            );
        }
        s.push_str("  end\n");
    }
    for r in &plan.repos {
        for e in &r.edges {
            s += &format!(
                "  {} -->|{}| {}\n",
                node_id(&e.from),
                origins(r, &e.from),
                node_id(&r.name)
            );
        }
    }
    s
}

/// `graph --format json`.
#[derive(Debug, Serialize)]
pub struct GraphJson<'a> {
    /// Format version.
    pub schema_version: u32,
    /// Repo names per level.
    pub levels: &'a [Vec<String>],
    /// Repos in run order.
    pub repos: Vec<GraphJsonRepo<'a>>,
    /// Every edge.
    pub edges: Vec<GraphJsonEdge<'a>>,
}

/// A repo in [`GraphJson`].
#[derive(Debug, Serialize)]
pub struct GraphJsonRepo<'a> {
    /// Repo name.
    pub name: &'a str,
    /// Level.
    pub level: usize,
    /// `run`, `restore`, `skip-cached`, `skip-not-affected` or `not-selected`.
    pub action: &'static str,
    /// Fingerprint (first 16 hex characters).
    pub fingerprint: &'a str,
}

/// An edge in [`GraphJson`].
#[derive(Debug, Serialize)]
pub struct GraphJsonEdge<'a> {
    /// Upstream repo.
    pub from: &'a str,
    /// Downstream repo.
    pub to: &'a str,
    /// Origins (`normal`, `dev`, `build`, `after`).
    pub origins: &'a [crate::engine::graph::EdgeOrigin],
}

/// The JSON form.
pub fn json(plan: &Plan) -> GraphJson<'_> {
    GraphJson {
        schema_version: 1,
        levels: &plan.levels,
        repos: plan
            .repos
            .iter()
            .map(|r| GraphJsonRepo {
                name: &r.name,
                level: r.level,
                action: r.action.word(r.cache_hit),
                fingerprint: r.fingerprint.short(),
            })
            .collect(),
        edges: plan
            .repos
            .iter()
            .flat_map(|r| {
                r.edges.iter().map(move |e| GraphJsonEdge {
                    from: &e.from,
                    to: &r.name,
                    origins: &e.origins,
                })
            })
            .collect(),
    }
}
