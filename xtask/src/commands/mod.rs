//! The subcommands: each wires the layers below (engine, GitHub, reports, the job) for one
//! `cargo xtask` command. Parsing stays in [`crate::flags`]; nothing here is called by a
//! lower layer.

pub mod cache;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::dev::{bench, bench_noop, demo, stress};
use crate::engine::manifest::Manifest;
use crate::engine::plan::PlanOptions;
use crate::engine::run as ci;
use crate::engine::{checkout, matrix, plan, release_build, results};
use crate::flags::{self, CacheCmd, Cmd, Format, Resolve, Xtask};
use crate::github::{chain, events, workflows};
use crate::job::preflight;
use crate::report::{explain, graph as graph_out, metrics, notify, trends as report};
use crate::support::exec;

/// Run one parsed command line; `Err` is a run that could not start (exit 2).
pub fn run(args: Xtask) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Ci(a) => {
            // The GitHub event shapes the run: pull requests never save caches, a release
            // runs the full chain, a workflow_dispatch may pick repos (see `events`).
            let event = events::Event::from_env()?;
            let (manifest, mut opts, cache) = open(&a.resolve)?;
            if let Some(code) = preflight::gate(&manifest, &a.resolve, cache.root()) {
                return Ok(code);
            }
            let probe = metrics::Probe::start(cache.root());
            if let Some(note) = event.shape_only(&mut opts.only) {
                println!("{note}");
            }
            let untrusted = event.untrusted_source(&chain::repo_names(&manifest));
            if let Some(why) = &untrusted {
                println!("{why}: caches are not saved");
            }
            // A run that may not save opens the cache read-only: nothing at all is written
            // under the cache root (no entry, no usage record, no lease), so a pull request
            // from a fork cannot poison what trusted runs restore. The remote cache (if
            // configured) is read-only then too.
            let may_save = !a.no_save && event.may_save() && untrusted.is_none();
            if let Some(line) = crate::cache::remote::configure(
                manifest.cache.remote.as_ref(),
                may_save,
                a.no_remote,
            ) {
                println!("{line}");
            }
            let cache = if may_save {
                cache
            } else {
                cache.into_read_only()
            };
            let run_dir = a.run_dir.clone().unwrap_or_else(default_run_dir);
            let run_opts = ci::RunOptions {
                jobs: a.jobs,
                keep_going: a.keep_going,
                save: may_save,
                restore: !a.no_restore,
                run_dir: run_dir.clone(),
                // With --matrix, each cell builds its own artifacts and release manifest.
                release: (a.release || a.verify_deterministic).then(|| {
                    release_build::ReleaseOptions::from_manifest(&manifest, a.verify_deterministic)
                }),
                echo: if a.quiet {
                    exec::Echo::Quiet
                } else {
                    exec::Echo::Stream
                },
            };
            if a.matrix || a.cell.is_some() {
                return matrix::run_cells(&manifest, &opts, &cache, &run_opts, a.cell.as_deref());
            }
            let mut chain_cache = Vec::new();
            let resolved = plan::resolve_with(&manifest, &opts, &cache, &mut |keys| {
                chain_cache = ci::restore_chain(&cache, keys, !a.no_restore);
            })?;
            if a.resolve.verbose {
                print!("{}", resolved.plan.render(true));
            }
            let summary = ci::run(&resolved.plan, &cache, &run_opts, chain_cache)?;
            drop(resolved);
            print!("{}", summary.render());
            println!("logs: {}", run_dir.display());
            probe.finish(&summary, &cache, &run_dir);
            notify::after_run(&manifest, &summary, cache.root());
            if a.comment {
                chain::comment_on_pull_request(&event, &summary.render());
            }
            Ok(if summary.failed() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            })
        }
        Cmd::Matrix(a) => {
            let manifest = Manifest::load(&a.manifest)?;
            match a.format {
                Format::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&matrix::to_json(&manifest))?
                ),
                Format::Text => {
                    for c in matrix::to_json(&manifest).cells {
                        println!("{}: {}", c.name, c.repos.join(", "));
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Graph(a) => {
            let (manifest, opts, cache) = open(&a.resolve)?;
            let resolved = plan::resolve(&manifest, &opts, &cache)?;
            match a.format {
                flags::GraphFormat::Dot => print!("{}", graph_out::dot(&resolved.plan)),
                flags::GraphFormat::Mermaid => print!("{}", graph_out::mermaid(&resolved.plan)),
                flags::GraphFormat::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&graph_out::json(&resolved.plan))?
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Logs(a) => {
            let (manifest, opts, cache) = open(&a.resolve)?;
            manifest.repo(&a.repo)?;
            let resolved = plan::resolve(&manifest, &opts, &cache)?;
            let r = resolved
                .plan
                .repos
                .iter()
                .find(|r| r.name == a.repo)
                .expect("every manifest repo is planned");
            let store = results::Results::new(cache.root());
            let logs = store.logs(&r.name, &r.fingerprint.hash);
            if logs.is_empty() {
                anyhow::bail!(
                    "no recorded run of `{}` at its current fingerprint {}: run `cargo xtask ci` first (only successful runs are recorded)",
                    r.name,
                    r.fingerprint.short()
                );
            }
            for l in logs {
                println!("==> {}", l.display());
                print!("{}", std::fs::read_to_string(&l)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Plan(a) => {
            let (manifest, opts, cache) = open(&a.resolve)?;
            let resolved = plan::resolve(&manifest, &opts, &cache)?;
            if let Some(name) = &a.explain {
                manifest.repo(name)?;
                let r = resolved
                    .plan
                    .repos
                    .iter()
                    .find(|r| &r.name == name)
                    .expect("every manifest repo is planned");
                print!("{}", plan::explain(r, &results::Results::new(cache.root())));
                return Ok(ExitCode::SUCCESS);
            }
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
        Cmd::Chain(a) => chain::run(&a),
        Cmd::Workflows(a) => {
            let manifest = Manifest::load(&a.manifest)?;
            workflows::run(&manifest, &a.out, a.check)
        }
        Cmd::Explain(a) => explain::cli(&a),
        Cmd::Preflight(a) => preflight::cli(&a),
        Cmd::Notify(a) => notify::cli(&a),
        Cmd::Report(a) => report::cli(&a),
        Cmd::Stress(a) => stress::cli(&a),
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
            other => self::cache::run(other),
        },
        Cmd::Bench(a) => match a.cmd {
            flags::BenchCmd::Noop { dir, reps, record } => {
                bench_noop::run(&bench_noop::NoopOptions {
                    dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-noop")),
                    reps,
                    record,
                })
            }
            flags::BenchCmd::Remote {
                dir,
                files,
                mib,
                reps,
                record,
            } => crate::cache::remote::bench(
                &dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-remote")),
                files,
                mib,
                reps,
                record.as_deref(),
            ),
            other => bench::run(other),
        },
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
        deps: r.deps.map(Into::into),
        force: r.force.clone(),
        affected: affected_refs(r.affected.as_deref())?,
        skip_unavailable_toolchains: false,
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
