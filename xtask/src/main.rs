//! `cargo xtask`: the CI of the bllvm chain of repositories (spec → consensus → protocol →
//! node/sdk), as one program that runs the same in GitHub Actions and on a laptop.
//!
//! Data flow: the chain manifest ([`manifest`]) and every checkout's `cargo metadata`
//! ([`metadata`]) give a repo graph ([`graph`]); [`plan`] turns it into run order, levels
//! and cache keys without running anything; [`ci`] executes the plan step by step
//! ([`exec`]), restoring and saving the local [`cache`]; [`summary`] reports.
//!
//! Exit codes: 0 success; 1 a repo failed (a step failed, timed out, or the repo could not
//! be resolved); 2 the run could not start (bad manifest, missing checkout, cycle, bad
//! flags).

mod bench;
mod cache;
mod checkout;
mod ci;
mod demo;
mod exec;
mod flags;
mod fsutil;
mod graph;
mod manifest;
mod metadata;
mod patches;
mod plan;
mod summary;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cache::Cache;
use crate::flags::{CacheCmd, Cmd, Format, Resolve, Xtask};
use crate::manifest::Manifest;
use crate::plan::PlanOptions;

fn main() -> ExitCode {
    let args = Xtask::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Xtask) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Ci(a) => {
            let (manifest, opts, cache) = open(&a.resolve)?;
            let resolved = plan::resolve(&manifest, &opts, &cache)?;
            if a.resolve.verbose {
                print!("{}", resolved.plan.render(true));
            }
            let run_dir = a.run_dir.unwrap_or_else(|| default_run_dir());
            let summary = ci::run(
                &resolved.plan,
                &cache,
                &ci::RunOptions {
                    keep_going: a.keep_going,
                    save: !a.no_save,
                    restore: !a.no_restore,
                    run_dir: run_dir.clone(),
                    echo: if a.quiet {
                        exec::Echo::Quiet
                    } else {
                        exec::Echo::Stream
                    },
                },
            )?;
            drop(resolved);
            print!("{}", summary.render());
            println!("logs: {}", run_dir.display());
            Ok(if summary.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Plan(a) => {
            let (manifest, opts, cache) = open(&a.resolve)?;
            let resolved = plan::resolve(&manifest, &opts, &cache)?;
            match a.format {
                Format::Text => print!("{}", resolved.plan.render(a.resolve.verbose)),
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&resolved.plan.to_json())?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Checkout(a) => {
            let manifest = Manifest::load(&a.common.manifest)?;
            let root = a
                .common
                .root
                .clone()
                .unwrap_or_else(|| manifest.root.clone());
            let sh = xshell::Shell::new()?;
            let cloned = checkout::checkout(&sh, &manifest, &root, &a.git_base, a.depth)?;
            println!("cloned {} repo(s)", cloned.len());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Demo(a) => demo::demo(&a),
        Cmd::Cache(c) => match c.cmd {
            CacheCmd::Key { resolve, repo } => {
                let (manifest, mut opts, cache) = open(&resolve)?;
                manifest.repo(&repo)?;
                opts.only = vec![repo.clone()];
                let resolved = plan::resolve(&manifest, &opts, &cache)?;
                let r = resolved
                    .plan
                    .repos
                    .iter()
                    .find(|r| r.name == repo)
                    .expect("resolved repos include --only");
                match &r.cache_key {
                    Some(k) => {
                        println!("{} ({})", k.key, if r.cache_hit { "hit" } else { "miss" });
                        for (n, v) in &k.inputs {
                            println!("  {n} = {}", v.replace('\n', "; "));
                        }
                    }
                    None => println!(
                        "{repo} has no target key: {}",
                        r.error.as_deref().unwrap_or("docs repo")
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
            other => cache::cli::run(other),
        },
        Cmd::Bench(a) => bench::run(a.cmd),
    }
}

/// Load the manifest, turn the flags into plan options, and open the cache.
fn open(r: &Resolve) -> Result<(Manifest, PlanOptions, Cache)> {
    let manifest = Manifest::load(&r.common.manifest)?;
    let opts = PlanOptions {
        root: r.common.root.clone(),
        only: r.common.only.clone(),
        variant: r.common.variant.clone(),
        toolchain: r.toolchain.clone(),
        deps: r.deps.map(Into::into),
    };
    let root = cache::resolve_root(r.cache_dir.as_deref(), manifest.cache.dir.as_deref());
    let cache =
        Cache::open(&root).with_context(|| format!("open cache root {}", root.display()))?;
    Ok((manifest, opts, cache))
}

/// `target/bllvm-ci/runs/<UTC timestamp>-<pid>` under the current directory.
fn default_run_dir() -> PathBuf {
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| "run".into());
    PathBuf::from("target/bllvm-ci/runs").join(format!("{stamp}-{}", std::process::id()))
}
