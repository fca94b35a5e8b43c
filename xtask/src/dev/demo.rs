//! The demo behind `cargo xtask demo` (`commands::demo`), the newcomer's first command. Copies the embedded sample chain
//! (`ci/sample/`) to a scratch dir, runs `ci` on it, then throws the checkouts away, copies
//! them again (as a fresh CI job on the same runner would get them) and runs `ci` a second
//! time, which restores every cache stage and recompiles no dependency crate.
//!
//! Never writes inside `ci/sample/` itself, so the orchestrator checkout stays clean.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cache::{Cache, Tiered};
use crate::engine::manifest::Manifest;
use crate::engine::plan::PlanOptions;
use crate::engine::run::RunOptions;
use crate::engine::steps::ExecContext;
use crate::engine::summary::RunSummary;
use crate::job::Job;
use crate::support::exec::Echo;
use crate::support::exit::Exit;
use crate::support::fs as fsutil;

/// Where the sample chain lives in this repo, relative to the workspace root.
pub const SAMPLE_DIR: &str = "ci/sample";

/// Copy the sample chain's repos into `dst/chain` (fresh), returning the manifest path.
pub fn copy_sample(sample: &Path, dst: &Path) -> Result<PathBuf> {
    let chain = dst.join("chain");
    fsutil::remove_tree(&chain)?;
    crate::cache::transfer::par_copy(sample, &chain, false, &|rel| {
        rel.starts_with("target") || rel.ends_with("target")
    })
    .with_context(|| {
        format!(
            "copy the sample chain {} to {}",
            sample.display(),
            chain.display()
        )
    })?;
    Ok(chain.join("chain.toml"))
}

/// What `cargo xtask demo` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scratch directory the sample chain is copied into (default:
    /// `<workspace>/target/bllvm-ci/demo`).
    pub dir: Option<PathBuf>,
    /// Cache root (default: `<dir>/cache`, emptied first so run 1 is really cold).
    pub cache_dir: Option<PathBuf>,
    /// How step output is shown.
    pub echo: Echo,
}

/// The demo's rounds: what each shows, and whether it forces the repos to run.
const ROUNDS: [(&str, bool); 3] = [
    (
        "cold: fresh copy of the sample chain, builds what the cache lacks",
        true,
    ),
    (
        "a fresh job on the same runner, forced to run: every cache stage restores",
        true,
    ),
    (
        "nothing changed: every repo's fingerprint has a recorded success",
        false,
    ),
];

/// Run the demo (see the module docs): exit 0, or 1 when a round failed.
pub fn run(o: &Options) -> Result<ExitCode> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf();
    let sample = workspace.join(SAMPLE_DIR);
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| workspace.join("target/bllvm-ci/demo"));
    let cache_root = match &o.cache_dir {
        Some(c) => c.clone(),
        None => {
            // The demo's own cache starts empty every time, so run 1 is really cold.
            let c = dir.join("cache");
            fsutil::remove_tree(&c)?;
            c
        }
    };
    let store = Tiered::local(Cache::open(&cache_root)?);
    let mut summaries = Vec::new();
    for (i, (what, force)) in ROUNDS.iter().enumerate() {
        let round = i + 1;
        println!("\n######## demo run {round} of {}: {what}", ROUNDS.len());
        let manifest_path = copy_sample(&sample, &dir)?;
        let started = std::time::Instant::now();
        let manifest = Manifest::load(&manifest_path)?;
        let run_dir = dir.join(format!("runs/run{round}"));
        let summary = run_round(&manifest, &store, *force, &run_dir, o.echo)?;
        if summary.failed() {
            return Ok(Exit::Failed.into());
        }
        summaries.push((summary, started.elapsed().as_secs_f64()));
    }
    println!();
    print!("{}", totals(&summaries));
    println!("logs: {}", dir.join("runs").display());
    Ok(Exit::Ok.into())
}

/// One round: resolve (restoring the chain-wide stages), print the plan, run.
fn run_round(
    manifest: &Manifest,
    store: &Tiered,
    force: bool,
    run_dir: &Path,
    echo: Echo,
) -> Result<RunSummary> {
    Job {
        manifest,
        plan: PlanOptions {
            force: force.then(Vec::new),
            exec: ExecContext {
                run_dir: run_dir.to_path_buf(),
                ..ExecContext::default()
            },
            ..PlanOptions::default()
        },
        run: RunOptions {
            jobs: 1,
            keep_going: false,
            save: true,
            restore: true,
            run_dir: run_dir.to_path_buf(),
            release: None,
            echo,
            compiler_env: Default::default(),
        },
        store,
        print_plan: Some(false),
        extra: Vec::new(),
    }
    .run()
}

/// One line per round: its time, the cache stages it restored, the repos it skipped.
fn totals(summaries: &[(RunSummary, f64)]) -> String {
    let hits = |s: &RunSummary| {
        s.repos
            .iter()
            .flat_map(|r| &r.cache)
            .chain(&s.chain_cache)
            .filter(|c| c.restore_word() == "hit")
            .count()
    };
    let mut out = String::new();
    for (i, (s, secs)) in summaries.iter().enumerate() {
        let cached = s
            .repos
            .iter()
            .filter(|r| r.status.word() == "cached")
            .count();
        out += &format!(
            "run {}: {secs:.1} s (plan and run), {} cache stage(s) restored, {cached} repo(s) cached\n",
            i + 1,
            hits(s)
        );
    }
    out
}
