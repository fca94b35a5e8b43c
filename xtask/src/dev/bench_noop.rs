//! `cargo xtask bench noop`: the cost of `cargo xtask ci` on a chain where nothing changed,
//! against the bare loop of cargo commands it would otherwise run (fmt --check, clippy,
//! build, test, doc in every repo, all already fresh).
//!
//! Both sides run as a user runs them: the `ci` side is this very binary as a child
//! process (plan resolution, fingerprints, the result cache, the summary); the loop side
//! is each step's exact cargo command (the same arguments `ci` would use) run in order.
//! Medians over `--reps` repetitions; the ratio is loop / ci. A benchmark, never a test:
//! nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cache::Cache;
use crate::engine::manifest::Manifest;
use crate::engine::plan::{self, PlanOptions};
use crate::support::exit::Exit;

/// Options of `bench noop`.
#[derive(Debug, Clone)]
pub struct NoopOptions {
    /// Scratch dir (the sample chain is copied into it).
    pub dir: PathBuf,
    /// Repetitions of each side.
    pub reps: usize,
    /// Markdown file whose `<!-- bench:noop -->` section receives the figures.
    pub record: Option<PathBuf>,
}

fn run_ci(exe: &Path, manifest: &Path, cache: &Path, run_dir: &Path) -> Result<f64> {
    let t = Instant::now();
    let st = Command::new(exe)
        .args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir)
        .stdout(Stdio::null())
        .status()
        .context("run `xtask ci`")?;
    if !st.success() {
        bail!(
            "`xtask ci` failed on the sample chain (see {})",
            run_dir.display()
        );
    }
    Ok(t.elapsed().as_secs_f64())
}

/// One step's command as `ci` would run it: (checkout dir, program, arguments, env).
pub(crate) type LoopCommand = (
    PathBuf,
    String,
    Vec<String>,
    std::collections::BTreeMap<String, String>,
);

/// Run the benchmark and print (and optionally record) the figures.
///
/// Errors: the sample chain cannot be copied or built, or a command fails.
pub fn run(o: &NoopOptions) -> Result<ExitCode> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf();
    let exe = std::env::current_exe().context("find the xtask binary")?;
    crate::support::fs::remove_tree(&o.dir)?;
    let manifest_path =
        crate::dev::demo::copy_sample(&workspace.join(crate::dev::demo::SAMPLE_DIR), &o.dir)?;
    let cache_dir = o.dir.join("cache");
    println!("bench noop: sample chain in {}", o.dir.display());

    // One full run, so every repo is built and its success recorded.
    let cold = run_ci(&exe, &manifest_path, &cache_dir, &o.dir.join("runs/cold"))?;
    println!("  first (cold) ci run: {cold:.2} s");

    let manifest = Manifest::load(&manifest_path)?;
    let commands = loop_commands(&manifest, &cache_dir)?;
    // Warm the loop once (doc and test outputs the ci run may not have left fresh).
    run_loop(&commands)?;

    let mut ci_times = Vec::new();
    let mut loop_times = Vec::new();
    for i in 0..o.reps.max(1) {
        let run_dir = o.dir.join(format!("runs/noop{i}"));
        ci_times.push(run_ci(&exe, &manifest_path, &cache_dir, &run_dir)?);
        loop_times.push(run_loop(&commands)?);
    }
    let summary: serde_json::Value = serde_json::from_slice(
        &std::fs::read(o.dir.join("runs/noop0/summary.json"))
            .context("read the noop run's summary")?,
    )?;
    let cached = summary["repos"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|r| r["status"] == "cached").count());
    let body = render(
        &manifest,
        cached,
        commands.len(),
        &ci_times,
        &loop_times,
        o.reps.max(1),
    );
    println!("{body}");
    if let Some(path) = &o.record {
        crate::dev::bench::record_section(path, "noop", &body)?;
        println!("recorded in {}", path.display());
    }
    Ok(Exit::Ok.into())
}

/// The loop side: every step's exact command, as `ci` would run it, in plan order.
pub(crate) fn loop_commands(manifest: &Manifest, cache_dir: &Path) -> Result<Vec<LoopCommand>> {
    let cache = Cache::open(cache_dir)?;
    let resolved = plan::resolve(manifest, &PlanOptions::default(), &cache)?;
    let mut commands = Vec::new();
    for r in &resolved.plan.repos {
        for step in &r.steps {
            let args = plan::step_args(step, &r.features, &resolved.plan.profile);
            commands.push((r.dir.clone(), step.program.clone(), args, r.env.clone()));
        }
    }
    Ok(commands)
}

/// Run every command in order; the wall time in seconds.
fn run_loop(commands: &[LoopCommand]) -> Result<f64> {
    let t = Instant::now();
    for (dir, program, args, env) in commands {
        let out = Command::new(program)
            .args(args)
            .current_dir(dir)
            .envs(env)
            .output()
            .with_context(|| format!("run {program} in {}", dir.display()))?;
        if !out.status.success() {
            bail!("`{program} {}` failed in {}", args.join(" "), dir.display());
        }
    }
    Ok(t.elapsed().as_secs_f64())
}

/// The figures as Markdown: both medians and the ratio loop / ci.
fn render(
    manifest: &Manifest,
    cached: usize,
    commands: usize,
    ci_times: &[f64],
    loop_times: &[f64],
    reps: usize,
) -> String {
    let (ci_m, loop_m) = (
        crate::dev::bench::median(ci_times),
        crate::dev::bench::median(loop_times),
    );
    format!(
        "| what | median (s) |\n|---|---|\n| `cargo xtask ci` on the unchanged sample chain ({} repos {cached} cached) | {ci_m:.3} |\n| bare loop of the {commands} cargo commands it would otherwise run (all fresh) | {loop_m:.3} |\n\nRatio loop / ci: **{:.1}×** (target: ci ≤ 2 s and faster than the loop). Reps: {reps}. Command: `cargo xtask bench noop --record BENCHMARKS.md`.\n",
        manifest.repos.len(),
        loop_m / ci_m,
    )
}
