//! `cargo xtask workflows`: generate the GitHub Actions workflows from the manifest, so
//! they never drift from it; `--check` fails when a file on disk differs (the tests run
//! it, so a hand edit is caught).
//!
//! Two files:
//! - `.github/workflows/ci.yml`, this orchestrator's CI ([`ci`]): the whole chain on
//!   `push`, `pull_request`, `release`, `repository_dispatch` (the event types of
//!   `[chain.event-types]`) and `workflow_dispatch` — one job, one per matrix cell, or
//!   with `[workflows] fan-out` one per repo ([`fanout`]) — then `propagate`: after a
//!   successful `release` run the release set of the release's tag is walked through the
//!   chain; after a successful `workflow_dispatch` with a `from` input, that repo's
//!   dependents are dispatched.
//! - `.github/chain-template/bllvm-chain.yml` ([`template`]), the workflow each chain repo
//!   copies to take part.
//!
//! What the runner kind (`[workflows] runner`) changes is where the cache root lives
//! between runs ([`steps`]): `hosted` restores and saves it with `actions/cache` around
//! the run (keys from `cargo xtask cache actions-key`; saved on trusted events only, also
//! after a failed run); `self-hosted` keeps it on the runner's disk (`cache-dir`);
//! `remote` shares an S3-compatible bucket (settings from repository variables and
//! secrets, read-only on untrusted events). In every kind the xtask build is compiled
//! once per `Cargo.lock`, toolchain and feature set and restored elsewhere; the
//! toolchains the manifest and the pins name are installed with clippy and rustfmt, and
//! cargo-nextest (and cargo-tarpaulin where coverage is on) through a pinned, checksummed
//! install; the run dir is uploaded as an artifact.
//!
//! Hygiene (checked by actionlint and zizmor in `tests/it/workflows.rs`): every `uses:`
//! is pinned to a commit ([`pins`]); checkouts never persist credentials; workflows grant
//! no permission and each job asks for its own; a secret appears only in the step that
//! needs it, the dispatch token only in the `propagate` jobs' environment; expressions
//! reach `run:` scripts only through `env:`. Every job has a `timeout-minutes`, and the
//! workflows have `concurrency` groups keyed on a `repository_dispatch`'s `dispatch_id`
//! (see [`shared::concurrency`] and `github/dedupe.rs`).
//!
//! The YAML is written as text, not through a YAML library: the files are fixed in shape,
//! and text keeps the comments.

mod ci;
mod fanout;
pub mod gather;
mod model;
pub mod pins;
mod shared;
mod steps;
mod template;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::engine::graph::Graph;
use crate::engine::manifest::{Manifest, RepoKind};
use crate::support::exit::Exit;

pub use model::job_id;

/// Path of the orchestrator's workflow, relative to the output root.
pub const CI_WORKFLOW: &str = ".github/workflows/ci.yml";
/// Path of the chain repos' template, relative to the output root.
pub const CHAIN_TEMPLATE: &str = ".github/chain-template/bllvm-chain.yml";

/// The generated files: `(path relative to the output root, contents)`. `graph` is the
/// repo graph, required with `[workflows] fan-out` (the jobs' `needs:`) and unused
/// otherwise.
///
/// Errors: fan-out without a graph; a matrix cell or repo whose name cannot be a job
/// name or id (letters, digits, `-_.`), or two repos whose job ids collide.
pub fn generate(manifest: &Manifest, graph: Option<&Graph>) -> Result<Vec<(&'static str, String)>> {
    let mut cx = model::Ctx::new(manifest);
    check_names(&cx)?;
    if cx.settings.fan_out {
        let Some(g) = graph else {
            bail!("[workflows] fan-out needs the repo graph: generate from a directory with the chain's checkouts (`cargo xtask checkout`)");
        };
        cx.needs = fan_out_needs(manifest, g);
    }
    Ok(vec![
        (CI_WORKFLOW, ci::workflow(&cx)),
        (CHAIN_TEMPLATE, template::workflow(&cx)),
    ])
}

/// Cell names and repo job ids go into YAML keys and values unquoted.
fn check_names(cx: &model::Ctx) -> Result<()> {
    let plain = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    if cx.matrix() {
        if let Some(c) = cx.cells.iter().find(|c| !plain(&c.name())) {
            bail!(
                "matrix cell `{}` cannot be a workflow job name: use only letters, digits, `-`, `_` and `.` in the manifest's `toolchains` and `variants`",
                c.name()
            );
        }
    }
    let mut seen = BTreeMap::new();
    for r in &cx.manifest.repos {
        if let Some(other) = seen.insert(job_id(&r.name), &r.name) {
            bail!(
                "repos `{other}` and `{}` get the same job id `{}`: rename one (`.` and `_` are the same in job ids)",
                r.name,
                job_id(&r.name)
            );
        }
    }
    Ok(())
}

/// Every cargo repo with its nearest cargo upstreams in `graph` (an edge through a docs
/// repo, which gets no job, joins its two sides), both in manifest order.
fn fan_out_needs(manifest: &Manifest, graph: &Graph) -> Vec<(String, Vec<String>)> {
    let docs: BTreeSet<&str> = manifest
        .repos
        .iter()
        .filter(|r| r.kind == RepoKind::Docs)
        .map(|r| r.name.as_str())
        .collect();
    let order = |n: &str| manifest.repos.iter().position(|r| r.name == n);
    let mut out = Vec::new();
    for r in manifest.repos.iter().filter(|r| r.kind == RepoKind::Cargo) {
        let mut found = BTreeSet::new();
        let mut todo: Vec<&str> = graph.upstream(&r.name);
        let mut seen = BTreeSet::new();
        while let Some(u) = todo.pop() {
            if !seen.insert(u) {
                continue;
            }
            if docs.contains(u) {
                todo.extend(graph.upstream(u));
            } else {
                found.insert(u.to_owned());
            }
        }
        let mut needs: Vec<String> = found.into_iter().collect();
        needs.sort_by_key(|n| order(n));
        out.push((r.name.clone(), needs));
    }
    out
}

/// The graph fan-out needs, read from the checkouts under the manifest's root with
/// `cargo metadata --no-deps` (declared dependencies: direct edges, offline, fast) plus
/// the manifest's `after` edges; `None` without `fan-out`.
///
/// Errors: a checkout is missing (the message lists them and says to run `cargo xtask
/// checkout`); `cargo metadata` fails in one.
pub fn graph_for(manifest: &Manifest) -> Result<Option<Graph>> {
    if !manifest.workflows.fan_out {
        return Ok(None);
    }
    crate::engine::metadata::check_checkouts(manifest, &manifest.root).context(
        "[workflows] fan-out takes the jobs' `needs:` from the repo graph, read from the checkouts",
    )?;
    let metas = manifest
        .repos
        .iter()
        .filter(|r| r.kind == RepoKind::Cargo)
        .map(|r| {
            let dir = Manifest::checkout_dir(&manifest.root, r);
            crate::engine::metadata::read_declared(&r.name, &dir, &[])
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(crate::engine::metadata::build_graph(
        manifest, &metas,
    )?))
}

/// `cargo xtask workflows [--check] [--out DIR]`: write the files under `out`, or with
/// `check`, compare and exit 1 naming every file that differs.
///
/// Errors: as [`generate`] and [`graph_for`]; a file cannot be written.
pub fn run(manifest: &Manifest, out: &Path, check: bool) -> Result<ExitCode> {
    let graph = graph_for(manifest)?;
    let mut stale: Vec<PathBuf> = Vec::new();
    for (rel, text) in generate(manifest, graph.as_ref())? {
        let path = out.join(rel);
        let current = std::fs::read_to_string(&path).ok();
        if current.as_deref() == Some(text.as_str()) {
            continue;
        }
        if check {
            stale.push(path);
        } else {
            write_file(&path, &text)?;
        }
    }
    if stale.is_empty() {
        if check {
            println!("workflows are up to date with {}", manifest.path.display());
        }
        return Ok(Exit::Ok.into());
    }
    for p in &stale {
        eprintln!(
            "error: {} is missing or differs from what {} generates: run `cargo xtask workflows` (never edit it by hand)",
            p.display(),
            manifest.path.display()
        );
    }
    Ok(Exit::Failed.into())
}

/// Write one generated file, creating its directory.
fn write_file(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("write {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}
