//! The subcommands: each wires the layers below (engine, GitHub, reports, the job) for one
//! `cargo xtask` command. Parsing stays in [`crate::flags`]; nothing here is called by a
//! lower layer.

#[cfg(feature = "dev")]
pub mod bench;
pub mod cache;
pub mod chain;
pub mod checkout;
pub mod ci;
pub mod demo;
#[cfg(not(feature = "dev"))]
mod dev;
pub mod explain;
pub mod matrix;
#[cfg(feature = "dev")]
pub mod mutants;
pub mod notify;
pub mod plan;
pub mod preflight;
pub mod report;
#[cfg(feature = "dev")]
pub mod stress;
pub mod workflows;

use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::engine::manifest::Manifest;
use crate::engine::plan::PlanOptions;
use crate::flags::{Cmd, Resolve, Xtask};

/// The program: drop the inherited `RUSTUP_TOOLCHAIN` (see [`crate::engine::toolchain`]),
/// parse the command line, run it, and map an error to exit code 2.
///
/// Call from `main` before any thread exists: it changes the process environment.
pub fn main() -> ExitCode {
    crate::engine::toolchain::take_inherited();
    let args = <Xtask as clap::Parser>::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run one parsed command line; `Err` is a run that could not start (exit 2).
pub fn run(args: Xtask) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Ci(a) => ci::run(a),
        Cmd::Matrix(a) => matrix::run(a),
        Cmd::Graph(a) => plan::graph(a),
        Cmd::Logs(a) => plan::logs(a),
        Cmd::Plan(a) => plan::plan(a),
        Cmd::Checkout(a) => checkout::run(a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Chain(a) => chain::run(&a),
        Cmd::Workflows(a) => workflows::run(a),
        Cmd::Explain(a) => explain::run(&a),
        Cmd::Preflight(a) => preflight::run(&a),
        Cmd::Notify(a) => notify::run(&a),
        Cmd::Report(a) => report::run(&a),
        #[cfg(feature = "dev")]
        Cmd::Stress(a) => stress::run(&a),
        #[cfg(not(feature = "dev"))]
        Cmd::Stress(a) => dev::unavailable("stress", &a.args),
        Cmd::Cache(c) => cache::cli(c),
        #[cfg(feature = "dev")]
        Cmd::Mutants(a) => mutants::run(&a),
        #[cfg(not(feature = "dev"))]
        Cmd::Mutants(a) => dev::unavailable("mutants", &a.args),
        #[cfg(feature = "dev")]
        Cmd::Bench(a) => bench::run(a),
        #[cfg(not(feature = "dev"))]
        Cmd::Bench(a) => dev::unavailable("bench", &a.args),
    }
}

/// Load the manifest, turn the flags into plan options, and open the cache.
pub fn open(r: &Resolve) -> Result<(Manifest, PlanOptions, Cache)> {
    let manifest = Manifest::load(&r.common.manifest)?;
    let opts = PlanOptions {
        root: r.common.root.clone(),
        only: r.common.only.clone(),
        variant: r.common.variant.clone(),
        toolchain: r.toolchain.clone(),
        cell_toolchain: None,
        deps: r.deps.map(Into::into),
        force: r.force.clone(),
        affected: affected_refs(r.affected.as_deref())?,
        skip_unavailable_toolchains: false,
        exec: crate::engine::steps::ExecContext::for_display(),
    };
    let root = crate::cache::resolve_root(r.cache_dir.as_deref(), manifest.cache.dir.as_deref());
    // The manifest's `[cache]` retention and disk guard apply to every run, not only to
    // the `cache` commands (issue 8: `ci` used the defaults whatever the manifest said).
    let cache = Cache::open(&root)
        .with_context(|| format!("open cache root {}", root.display()))?
        .with_policy(crate::cache::retention::Policy::from(&manifest.cache))
        // On a CI runner (`CI=true`, set by GitHub Actions and most CI systems) target dirs
        // move in and out of the cache in O(1); elsewhere they are copied and stay put.
        .with_keep_trees(std::env::var("CI").map_or(true, |v| v != "true"));
    Ok((manifest, opts, cache))
}

/// `--affected BASE..HEAD`, else `BLLVM_CI_BASE` and `BLLVM_CI_HEAD` when both are set.
fn affected_refs(flag: Option<&str>) -> Result<Option<(String, String)>> {
    if let Some(f) = flag {
        return match f.split_once("..") {
            Some((b, h)) if !b.is_empty() && !h.is_empty() && !h.starts_with('.') => {
                Ok(Some((b.to_owned(), h.to_owned())))
            }
            _ => anyhow::bail!("`--affected {f}` is not of the form BASE..HEAD (two git refs)"),
        };
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Ok(match (env("BLLVM_CI_BASE"), env("BLLVM_CI_HEAD")) {
        (Some(b), Some(h)) => Some((b, h)),
        _ => None,
    })
}
