//! `cargo xtask cache <list|stats|prune|verify|clear|key|actions-key|warm|put|get>`: the
//! cache's command line. Each command opens the cache with the `[cache]` settings of the
//! manifest (when it exists) and prints for people, or JSON where asked; `actions-key`
//! opens no cache at all (it only names the cache root for `actions/cache`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use crate::cache::retention::Policy;
use crate::cache::settings::CacheSettings;
use crate::cache::{resolve_root, stats, Cache, CacheKey, Stage};
use crate::engine::manifest::Manifest;
use crate::flags::{CacheCmd, CacheRoot, Format, Resolve};
use crate::support::exit::Exit;
use crate::support::fs::human_bytes;

/// The `[cache]` settings of the manifest at `path`, or the defaults when there is none.
///
/// Errors: the manifest exists but does not parse.
fn settings(path: &Path) -> Result<CacheSettings> {
    if !path.exists() {
        return Ok(CacheSettings::default());
    }
    Ok(Manifest::load(path)?.cache)
}

fn open(r: &CacheRoot) -> Result<Cache> {
    let s = settings(&r.cache_manifest)?;
    let root = resolve_root(r.cache_dir.as_deref(), s.dir.as_deref());
    Ok(Cache::open(&root)
        .with_context(|| format!("open cache root {}", root.display()))?
        .with_policy(Policy::from(&s)))
}

fn stage_of(s: &str) -> Result<Stage> {
    Stage::ALL
        .into_iter()
        .find(|st| st.as_str() == s)
        .with_context(|| format!("unknown stage `{s}`: use registry, git or target"))
}

fn age(now: u64, then: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..=119 => format!("{d}s ago"),
        120..=7199 => format!("{}m ago", d / 60),
        7200..=172_799 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// `cache stats`' compiler cache section: sccache's hits and misses over the runs of the
/// metrics history that had one (empty when none did, or the history cannot be read).
fn compiler_cache_stats(root: &std::path::Path) -> String {
    let path = crate::report::metrics::history_path(root);
    let Ok((runs, _)) = crate::report::metrics::read_history(&path) else {
        return String::new();
    };
    let stats: Vec<_> = runs
        .iter()
        .filter_map(|r| r.compiler_cache.as_ref())
        .collect();
    crate::engine::compiler_cache::render_history(&stats)
}

/// Run one `cache` subcommand (`key` is handled by the caller, which resolves plans).
///
/// Errors: the cache cannot be opened, a flag is invalid, or an I/O error.
pub fn run(cmd: CacheCmd) -> Result<ExitCode> {
    match cmd {
        CacheCmd::List { root, format } => list(&open(&root)?, format),
        CacheCmd::Stats { root } => {
            let cache = open(&root)?;
            let events = stats::read_events(cache.root());
            print!("{}", stats::render(&events, &cache.list(), cache.policy()));
            print!("{}", stats::render_remote(&events));
            print!("{}", compiler_cache_stats(cache.root()));
            Ok(Exit::Ok.into())
        }
        CacheCmd::Prune { root, dry_run } => prune(&open(&root)?, dry_run),
        CacheCmd::Verify {
            root,
            quick,
            discard,
        } => verify(&open(&root)?, quick, discard),
        CacheCmd::Clear { root, stage } => clear(&open(&root)?, stage.as_deref()),
        CacheCmd::Put {
            root,
            stage,
            key,
            src,
        } => {
            let cache = open(&root)?;
            let k = CacheKey {
                stage: stage_of(&stage)?,
                key,
                inputs: vec![("put".into(), src.display().to_string())],
            };
            let s = cache.save(&k, &src, &|_| false)?;
            // stdout is the JSON outcome alone; notes go to stderr.
            for l in note_lines(&cache) {
                eprintln!("{}", l.trim_start());
            }
            println!("{}", serde_json::to_string(&s)?);
            Ok(Exit::Ok.into())
        }
        CacheCmd::Get {
            root,
            stage,
            key,
            dst,
            read_only,
        } => get(&root, &stage, key, &dst, read_only),
        CacheCmd::Warm { resolve } => warm(&resolve),
        CacheCmd::ActionsKey {
            common,
            toolchain,
            cache_dir,
        } => actions_key(&common, toolchain, cache_dir.as_deref()),
        CacheCmd::Key { .. } => bail!("`cache key` is handled by main"),
    }
}

/// `cache list`: every entry, as a table or JSON.
fn list(cache: &Cache, format: Format) -> Result<ExitCode> {
    let list = cache.list();
    if format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": 1,
                "root": cache.root(),
                "entries": list,
            }))?
        );
        return Ok(Exit::Ok.into());
    }
    let total: u64 = list.iter().map(|l| l.info.bytes).sum();
    println!(
        "cache root {}: {} entries, {}",
        cache.root().display(),
        list.len(),
        human_bytes(total)
    );
    let now = crate::support::time::now_unix();
    for l in list {
        println!(
            "  {:<8} {:<60} {:>10} {:>7} files  used {:<9} {:>3} hits{}",
            l.info.stage,
            l.info.key,
            human_bytes(l.info.bytes),
            l.info.files,
            age(now, l.usage.last_used_unix),
            l.usage.hits,
            if l.leased { "  (held by a job)" } else { "" }
        );
    }
    Ok(Exit::Ok.into())
}

/// `cache prune`: apply retention (or, with `dry_run`, say what it would evict), then
/// the disk guard.
fn prune(cache: &Cache, dry_run: bool) -> Result<ExitCode> {
    let ev = cache.apply_retention(dry_run);
    let verb = if dry_run { "would evict" } else { "evicted" };
    for e in &ev {
        println!(
            "{verb} {} {} ({}): {}",
            e.stage,
            e.key,
            human_bytes(e.bytes),
            e.reason
        );
    }
    if !dry_run {
        if let Some(why) = cache.guard(0, None) {
            println!("warning: the disk guard could not get under its limits: {why}");
        }
        for l in note_lines(cache) {
            println!("{l}");
        }
    }
    println!(
        "{verb} {} entries, {}",
        ev.len(),
        human_bytes(ev.iter().map(|e| e.bytes).sum())
    );
    Ok(Exit::Ok.into())
}

/// `cache verify`: check every entry (with `quick`, by `stat` only); exit 1 when one is
/// damaged, removing it with `discard`.
fn verify(cache: &Cache, quick: bool, discard: bool) -> Result<ExitCode> {
    let mut bad = 0;
    for (stage, key, damage) in cache.verify(!quick) {
        if damage.is_empty() {
            println!("ok       {stage} {key}");
            continue;
        }
        if damage.iter().all(|d| d.starts_with("leased")) {
            println!("held     {stage} {key}: {}", damage.join("; "));
            continue;
        }
        bad += 1;
        let fate = if discard && cache.remove(&stage, &key) {
            " (discarded)"
        } else {
            ""
        };
        println!("DAMAGED  {stage} {key}{fate}: {}", damage.join("; "));
    }
    if bad > 0 {
        println!(
            "{bad} damaged entries{}",
            if discard {
                ""
            } else {
                ": rerun with --discard to remove them (restores discard them anyway)"
            }
        );
        return Ok(Exit::Failed.into());
    }
    Ok(Exit::Ok.into())
}

/// `cache clear`: remove every entry (of `stage` only, when given) that no job holds.
fn clear(cache: &Cache, stage: Option<&str>) -> Result<ExitCode> {
    let only = stage.map(stage_of).transpose()?;
    let (mut n, mut held) = (0, 0);
    for l in cache.list() {
        if only.is_some_and(|s| s != l.info.stage) {
            continue;
        }
        if cache.remove(l.info.stage.as_str(), &l.info.key) {
            n += 1;
        } else {
            held += 1;
        }
    }
    println!("removed {n} entries; {held} held by running jobs were kept");
    Ok(Exit::Ok.into())
}

/// `cache get`: restore one entry into `dst` (through a read-only view with
/// `read_only`), printing the outcome as JSON and the cache's notes on stderr.
fn get(
    root: &CacheRoot,
    stage: &str,
    key: String,
    dst: &Path,
    read_only: bool,
) -> Result<ExitCode> {
    let cache = if read_only {
        let s = settings(&root.cache_manifest)?;
        Cache::open_read_only(&resolve_root(root.cache_dir.as_deref(), s.dir.as_deref()))
    } else {
        open(root)?
    };
    let k = CacheKey {
        stage: stage_of(stage)?,
        key,
        inputs: Vec::new(),
    };
    let r = cache.restore(&k, dst, false)?;
    // stdout is the JSON outcome alone; notes go to stderr.
    for l in note_lines(&cache) {
        eprintln!("{}", l.trim_start());
    }
    println!("{}", serde_json::to_string(&r)?);
    Ok(Exit::Ok.into())
}

/// What the cache noted on this thread, one line each: evictions, then warnings
/// prefixed with `note: `.
fn note_lines(cache: &Cache) -> Vec<String> {
    let notes = cache.drain_notes();
    let mut lines = notes.eviction_lines();
    lines.extend(notes.warnings.iter().map(|n| format!("    note: {n}")));
    lines
}

/// The arguments a warm-up runs for a step, or `None` for steps that compile nothing
/// (`fmt`, custom programs): `test` only builds (`--no-run`), `clippy` drops its lint
/// flags (dependencies are built the same, and a lint failure must not stop the warm-up).
fn warm_args(step: &crate::engine::manifest::Step) -> Option<Vec<String>> {
    if step.program != "cargo" {
        return None;
    }
    let cmd = step.args.first()?.as_str();
    let mut args: Vec<String> = step
        .args
        .iter()
        .take_while(|a| *a != "--")
        .cloned()
        .collect();
    match cmd {
        "build" | "check" | "clippy" | "doc" => {}
        "test" | "bench" => args.push("--no-run".into()),
        _ => return None,
    }
    Some(args)
}

/// `cache warm`: for each selected cargo repo, restore its target entry, run its compiling
/// steps, and save the entry pruned to dependency artifacts. Cargo has no
/// "dependencies only" build: building dependency packages alone (`-p dep`) would resolve
/// their features differently from the repo's own build and leave artifacts that build
/// never uses, so the repo's own steps run and pruning drops the workspace's units.
/// A step that fails (a lint, a compile error in the repo's own code) is reported and
/// the warm-up goes on: the dependencies it built are still saved.
fn warm(resolve: &Resolve) -> Result<ExitCode> {
    let (manifest, opts, cache) = crate::commands::open(resolve)?;
    let cache = cache.with_policy(Policy::from(&manifest.cache));
    let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
    let plan = &resolved.plan;
    for r in plan.repos.iter().filter(|r| r.selected) {
        let Some(key) = &r.cache_key else {
            println!(
                "{}: no target key ({}), skipped",
                r.name,
                r.error.as_deref().unwrap_or("docs repo")
            );
            continue;
        };
        let target = r
            .target_dir
            .clone()
            .unwrap_or_else(|| crate::engine::plan::default_target_dir(&r.dir));
        let restored = cache.restore(key, &target, false)?;
        for l in note_lines(&cache) {
            println!("{l}");
        }
        println!("{}: restore {:?}", r.name, restored);
        warm_steps(r, &plan.profile)?;
        let members: Vec<String> = r.versions.keys().cloned().collect();
        let prune = crate::cache::prune::target_prune(&target, &members);
        let saved = cache.save(key, &target, &|p| prune.skips(p))?;
        for l in note_lines(&cache) {
            println!("{l}");
        }
        println!("{}: save {:?}", r.name, saved);
    }
    Ok(Exit::Ok.into())
}

/// Run the compiling steps of `r` for a warm-up (see [`warm_args`]); a failed step is
/// reported and the next one runs.
///
/// Errors: cargo cannot be started.
fn warm_steps(r: &crate::engine::plan::RepoPlan, profile: &str) -> Result<()> {
    for step in &r.steps {
        let Some(base) = warm_args(step) else {
            continue;
        };
        let warm_step = crate::engine::manifest::Step {
            args: base,
            ..step.clone()
        };
        let args = crate::engine::plan::step_args(&warm_step, &r.features, profile);
        println!(
            "--> {} warm {}: cargo {}",
            r.name,
            step.name,
            args.join(" ")
        );
        let mut cargo = std::process::Command::new("cargo");
        // Build scripts run: without the secrets the repo's steps go without (issue 13).
        for k in &r.env_remove {
            cargo.env_remove(k);
        }
        let st = cargo
            .args(&args)
            .current_dir(&r.dir)
            .envs(r.env.iter().chain(step.env.iter()))
            .status()
            .with_context(|| format!("run cargo for {}", r.name))?;
        if !st.success() {
            println!(
                "    {} {} failed ({st}); dependencies built so far are kept",
                r.name, step.name
            );
        }
    }
    Ok(())
}

/// `cache actions-key`: the `actions/cache` key of the cache root (see
/// `github/actions_cache.rs`), appended to `$GITHUB_OUTPUT` when it is set and printed
/// (the outputs on stdout, every input on stderr, so a miss can be explained).
///
/// Errors: the manifest, an `--only` repo, the variant or a checkout is missing, or
/// `$GITHUB_OUTPUT` cannot be written.
fn actions_key(
    common: &crate::flags::Common,
    toolchain: Option<String>,
    cache_dir: Option<&Path>,
) -> Result<ExitCode> {
    use crate::github::actions_cache;
    let manifest = Manifest::load(&common.manifest)?;
    let inputs = actions_cache::gather(
        &manifest,
        &actions_cache::GatherOptions {
            root: common.root.clone(),
            only: common.only.clone(),
            variant: common.variant.clone(),
            toolchain,
        },
    )?;
    let key = actions_cache::derive(&inputs);
    let root = resolve_root(cache_dir, manifest.cache.dir.as_deref());
    let text = actions_cache::output_text(&key, &root)?;
    crate::report::gha::append_env_file("GITHUB_OUTPUT", &text)?;
    print!("{text}");
    for (n, v) in &key.inputs {
        eprintln!("  {n} = {}", v.replace('\n', "; "));
    }
    Ok(Exit::Ok.into())
}

/// `cargo xtask cache …`: `key` resolves a plan; the others work on the cache root alone.
pub fn cli(c: crate::flags::CacheArgs) -> Result<std::process::ExitCode> {
    match c.cmd {
        CacheCmd::Key { resolve, repo } => {
            let (manifest, mut opts, cache) = super::open(&resolve)?;
            manifest.repo(&repo)?;
            opts.only = vec![repo.clone()];
            let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
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
            Ok(Exit::Ok.into())
        }
        other => run(other),
    }
}
