//! A plan for people and machines: `plan` (text, `-v` with every key input, fingerprint
//! input and prepared command), `plan --format json`, and `plan --explain REPO`.

use serde::Serialize;

use super::types::{Action, EdgeView, Plan, RepoPlan};
use crate::cache::CacheKey;
use crate::engine::fingerprint::build_env::shown_value;
use crate::engine::manifest::RepoKind;
use crate::engine::results::Results;

/// `{"schema_version":1,"repos":[...]}` as printed by `plan --format json`.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// Format version.
    pub schema_version: u32,
    /// Variant built.
    pub variant: &'a str,
    /// Repos in run order.
    pub repos: Vec<PlanJsonRepo<'a>>,
}

/// One repo in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct PlanJsonRepo<'a> {
    /// Repo name.
    pub name: &'a str,
    /// Topological level.
    pub level: usize,
    /// Direct upstream repos.
    pub depends_on: &'a [String],
    /// Direct upstream edges with origins.
    pub edges: &'a [EdgeView],
    /// Whether it runs (`--only`).
    pub selected: bool,
    /// Target dir cache key.
    pub cache_key: Option<&'a str>,
    /// Whether that key has an entry.
    pub cache_hit: bool,
    /// Why it cannot run, if so.
    pub error: Option<&'a str>,
    /// Input fingerprint (hex sha256).
    pub fingerprint: &'a str,
    /// What `ci` will do: `run`, `restore`, `skip-cached`, `skip-not-affected`, `not-selected`.
    pub action: &'static str,
}

impl Plan {
    /// The machine-readable form printed by `plan --format json`.
    pub fn to_json(&self) -> PlanJson<'_> {
        PlanJson {
            schema_version: 1,
            variant: &self.variant,
            repos: self
                .repos
                .iter()
                .map(|r| PlanJsonRepo {
                    name: &r.name,
                    level: r.level,
                    depends_on: &r.depends_on,
                    edges: &r.edges,
                    selected: r.selected,
                    cache_key: r.cache_key.as_ref().map(|k| k.key.as_str()),
                    cache_hit: r.cache_hit,
                    error: r.error.as_deref(),
                    fingerprint: &r.fingerprint.hash,
                    action: r.action.word(r.cache_hit),
                })
                .collect(),
        }
    }

    /// Human-readable plan; with `verbose`, every cache key input.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = format!(
            "plan: {} repos in {} levels, variant `{}`, profile `{}`, root {}\n",
            self.repos.len(),
            self.levels.len(),
            self.variant,
            self.profile,
            self.root.display()
        );
        let hit = |h: bool| if h { "hit" } else { "miss" };
        if let Some(k) = &self.registry_key {
            s += &format!("  cache registry: {} ({})\n", k.key, hit(self.registry_hit));
            if verbose {
                s += &render_inputs(k);
            }
        }
        if let Some(k) = &self.git_key {
            s += &format!("  cache git: {} ({})\n", k.key, hit(self.git_hit));
        }
        for (i, level) in self.levels.iter().enumerate() {
            s += &format!("level {i}:\n");
            for name in level {
                let r = self
                    .repos
                    .iter()
                    .find(|r| &r.name == name)
                    .expect("levels name planned repos");
                let mark = if r.selected { "" } else { " (not selected)" };
                s += &format!("  {}{mark}\n", r.name);
                if !r.edges.is_empty() {
                    let e: Vec<String> = r
                        .edges
                        .iter()
                        .map(|e| {
                            let o: Vec<String> =
                                e.origins.iter().map(ToString::to_string).collect();
                            format!("{} ({})", e.from, o.join(", "))
                        })
                        .collect();
                    s += &format!("    upstream: {}\n", e.join(", "));
                }
                s += &format!(
                    "    action: {} (fingerprint {})\n",
                    r.action.word(r.cache_hit),
                    r.fingerprint.short()
                );
                if let Action::SkipNotAffected(why) = &r.action {
                    s += &format!("    {why}\n");
                }
                if verbose {
                    for (n, v) in &r.fingerprint.inputs {
                        s += &format!("      fingerprint {n} = {}\n", v.replace('\n', "; "));
                    }
                }
                if let Some(k) = &r.cache_key {
                    s += &format!("    cache target: {} ({})\n", k.key, hit(r.cache_hit));
                    if verbose {
                        s += &render_inputs(k);
                    }
                }
                if !r.features.is_empty() {
                    s += &format!("    features: {}\n", r.features.join(","));
                }
                if !r.stripped_patches.is_empty() {
                    s += &format!(
                        "    registry mode: removed patches {}\n",
                        r.stripped_patches.join(", ")
                    );
                }
                for p in &r.unused_patches {
                    s += &format!("    warning: patch `{p}` was not used in the crate graph\n");
                }
                if let Some(e) = &r.error {
                    s += &format!("    error: {}\n", e.lines().next().unwrap_or(""));
                }
                if verbose && r.kind == RepoKind::Cargo {
                    s += &format!("    toolchain: {}\n", r.toolchain_source);
                    s += &render_steps(r);
                }
            }
        }
        s
    }
}

/// `plan --explain REPO`: the repo's action, and which fingerprint inputs changed since its
/// last recorded run (or that there is none).
pub fn explain(r: &RepoPlan, results: &Results) -> String {
    let mut s = format!(
        "{}: {} (fingerprint {})\n",
        r.name,
        r.action.word(r.cache_hit),
        r.fingerprint.short()
    );
    if let Action::SkipNotAffected(why) = &r.action {
        s += &format!("  {why}\n");
    }
    if let Some((name, why)) = r.fingerprint.undecidable() {
        s += &format!(
            "  input `{name}` could not be determined ({why}): the repo runs every time until it can\n"
        );
    }
    match results.last(&r.name) {
        None => s += "  no recorded run yet: every input is new\n",
        Some(last) if last.fingerprint == r.fingerprint.hash => {
            s += &format!(
                "  no input changed since the last recorded run ({}, {})\n",
                last.run_id, last.status
            );
        }
        Some(last) => {
            s += &format!(
                "  changed since the last recorded run ({}, {}):\n",
                last.run_id, last.status
            );
            for ch in r.fingerprint.changes(&last.inputs) {
                // An absent environment variable reads as unset; any other absent input
                // was not an input on that side.
                let absent = if ch.name.starts_with("env ") {
                    "(unset)"
                } else {
                    "(not an input)"
                };
                let show = |v: &Option<String>| {
                    v.as_deref()
                        .map_or_else(|| absent.to_owned(), |v| v.replace('\n', "; "))
                };
                s += &format!("    {}: {} -> {}\n", ch.name, show(&ch.old), show(&ch.new));
            }
        }
    }
    s
}

fn render_inputs(k: &CacheKey) -> String {
    k.inputs
        .iter()
        .map(|(n, v)| {
            let v = v.replace('\n', "; ");
            format!("      {n} = {v}\n")
        })
        .collect()
}

/// The repo's steps and, under them, exactly what `ci` will spawn for each: command line,
/// working directory, timeout and the environment it adds.
fn render_steps(r: &RepoPlan) -> String {
    let names: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
    let mut s = format!("    steps: {}\n", names.join(", "));
    for p in &r.prepared {
        s += &format!(
            "      run {}: {} (in {}, timeout {} s)\n",
            p.name,
            p.command_line(),
            p.dir.display(),
            p.timeout_secs
        );
        if !p.env.is_empty() {
            let env: Vec<String> = p
                .env
                .iter()
                .map(|(k, v)| format!("{k}={}", shown_value(k, v)))
                .collect();
            s += &format!("        env: {}\n", env.join(" "));
        }
        if !p.env_remove.is_empty() {
            // Names only: the values are secrets the step was not given.
            s += &format!("        env withheld: {}\n", p.env_remove.join(" "));
        }
        if let Some(why) = &p.blocked {
            s += &format!("        blocked: {why}\n");
        }
    }
    s
}
