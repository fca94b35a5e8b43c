//! `cargo xtask demo`: the newcomer's first command. Copies the embedded sample chain
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
use crate::engine::{plan, run as ci};
use crate::flags::DemoArgs;
use crate::support::{exec, fs as fsutil};

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

/// Run the demo (see the module docs).
pub fn demo(a: &DemoArgs) -> Result<ExitCode> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf();
    let sample = workspace.join(SAMPLE_DIR);
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| workspace.join("target/bllvm-ci/demo"));
    let cache_root = match &a.cache_dir {
        Some(c) => c.clone(),
        None => {
            // The demo's own cache starts empty every time, so run 1 is really cold.
            let c = dir.join("cache");
            fsutil::remove_tree(&c)?;
            c
        }
    };
    let store = Tiered::local(Cache::open(&cache_root)?);
    let cache = store.cache();
    let rounds = [
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
    let mut summaries = Vec::new();
    for (i, (what, force)) in rounds.iter().enumerate() {
        let round = i + 1;
        println!("\n######## demo run {round} of {}: {what}", rounds.len());
        let manifest_path = copy_sample(&sample, &dir)?;
        let started = std::time::Instant::now();
        let manifest = Manifest::load(&manifest_path)?;
        let opts = PlanOptions {
            force: force.then(Vec::new),
            ..PlanOptions::default()
        };
        let mut chain_cache = Vec::new();
        let resolved = plan::resolve_with(&manifest, &opts, cache, &mut |keys| {
            chain_cache = ci::restore_chain(&store, keys, true);
        })?;
        print!("{}", resolved.plan.render(false));
        let summary = ci::run(
            &resolved.plan,
            &store,
            &ci::RunOptions {
                jobs: 1,
                keep_going: false,
                save: true,
                restore: true,
                run_dir: dir.join(format!("runs/run{round}")),
                release: None,
                echo: if a.quiet {
                    exec::Echo::Quiet
                } else {
                    exec::Echo::Stream
                },
            },
            chain_cache,
        )?;
        print!("{}", summary.render());
        if summary.failed() {
            return Ok(ExitCode::from(1));
        }
        summaries.push((summary, started.elapsed().as_secs_f64()));
    }
    let hits = |s: &crate::engine::summary::RunSummary| {
        s.repos
            .iter()
            .flat_map(|r| &r.cache)
            .chain(&s.chain_cache)
            .filter(|c| c.restore_word() == "hit")
            .count()
    };
    println!();
    for (i, (s, secs)) in summaries.iter().enumerate() {
        let cached = s
            .repos
            .iter()
            .filter(|r| r.status.word() == "cached")
            .count();
        println!(
            "run {}: {secs:.1} s (plan and run), {} cache stage(s) restored, {cached} repo(s) cached",
            i + 1,
            hits(s)
        );
    }
    println!("logs: {}", dir.join("runs").display());
    Ok(ExitCode::SUCCESS)
}
