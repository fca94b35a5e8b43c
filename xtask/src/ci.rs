//! `cargo xtask ci`: execute a [`Plan`]: restore caches, run every repo's steps in plan
//! order, save caches (also after a failure, so the next run is faster), and report.
//!
//! Invariant: a build's result never depends on the cache. Every cache error becomes a
//! warning in the summary and the repo builds as if it had missed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cache::cargo_home::{self, skip_git_path};
use crate::cache::{Cache, CacheKey, Restore, Save};
use crate::exec::{self, Echo, StepCommand};
use crate::manifest::RepoKind;
use crate::plan::{self, Plan, RepoPlan};
use crate::summary::{RepoReport, RepoStatus, RunSummary, StageReport, StepReport};

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keep running repos that do not depend on a failed one.
    pub keep_going: bool,
    /// Save caches after the run (off for untrusted events).
    pub save: bool,
    /// Restore caches before the run.
    pub restore: bool,
    /// Where step logs and `summary.json` go.
    pub run_dir: PathBuf,
    /// Stream step output to stdout.
    pub echo: Echo,
}

/// Run `plan` with `cache`. Returns the summary; the caller prints it and sets the exit
/// code from [`RunSummary::failed`].
///
/// Errors only for problems outside any repo (the run directory cannot be created);
/// step failures are results, not errors.
pub fn run(plan: &Plan, cache: &Cache, opts: &RunOptions) -> Result<RunSummary> {
    let start = Instant::now();
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("create run dir {}", opts.run_dir.display()))?;
    let run_id = opts
        .run_dir
        .file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned());
    let cargo_home = cargo_home::cargo_home();

    // Chain-wide stages first: the registry and git dirs every repo shares.
    let mut chain_cache = Vec::new();
    if let Some(k) = &plan.registry_key {
        chain_cache.push(restore_stage(
            cache,
            k,
            &cargo_home.join("registry"),
            true,
            opts.restore,
        ));
    }
    if let Some(k) = &plan.git_key {
        chain_cache.push(restore_stage(
            cache,
            k,
            &cargo_home.join("git"),
            true,
            opts.restore,
        ));
    }

    let mut failed: BTreeSet<String> = BTreeSet::new();
    let mut stopped = false;
    let mut reports = Vec::new();
    for r in &plan.repos {
        if !r.selected {
            continue;
        }
        println!("==> {} (level {})", r.name, r.level);
        let failed_up: Vec<String> = plan
            .graph
            .upstream_closure(&[r.name.as_str()])
            .into_iter()
            .filter(|u| failed.contains(u))
            .collect();
        let status_skip = if !failed_up.is_empty() {
            Some(format!("upstream failed: {}", failed_up.join(", ")))
        } else if stopped {
            Some(
                "not run: stopped after a failure (pass --keep-going to run independent repos)"
                    .to_owned(),
            )
        } else {
            None
        };
        let report = match status_skip {
            Some(why) => {
                println!("    skipped: {why}");
                empty_report(r, RepoStatus::Skipped(why))
            }
            None => run_repo(plan, r, cache, opts)?,
        };
        if matches!(report.status, RepoStatus::Failed(_)) {
            failed.insert(r.name.clone());
            if !opts.keep_going {
                stopped = true;
            }
        }
        reports.push(report);
    }

    // Save the chain-wide stages last, pruned to what the lockfiles name.
    let locked = &plan.locked;
    for c in &mut chain_cache {
        let (src, is_registry) = if c.stage == "registry" {
            (cargo_home.join("registry"), true)
        } else {
            (cargo_home.join("git"), false)
        };
        let key = if is_registry {
            plan.registry_key.as_ref()
        } else {
            plan.git_key.as_ref()
        };
        let Some(key) = key else { continue };
        let skip = |p: &Path| {
            if is_registry {
                locked.skip_registry_path(p)
            } else {
                skip_git_path(p)
            }
        };
        save_stage(cache, key, &src, &skip, opts.save, c);
    }

    let summary = RunSummary {
        schema_version: 1,
        run_id,
        variant: plan.variant.clone(),
        chain_cache,
        repos: reports,
        secs: start.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&summary)?;
    std::fs::write(opts.run_dir.join("summary.json"), json)?;
    Ok(summary)
}

fn empty_report(r: &RepoPlan, status: RepoStatus) -> RepoReport {
    RepoReport {
        name: r.name.clone(),
        status,
        steps: Vec::new(),
        cache: Vec::new(),
        restore_secs: 0.0,
        restore_bytes: 0,
        save_secs: 0.0,
        save_bytes: 0,
        warnings: r
            .unused_patches
            .iter()
            .map(|p| format!("patch `{p}` was not used in the crate graph: the sibling checkout was silently not used"))
            .collect(),
    }
}

fn restore_stage(
    cache: &Cache,
    key: &CacheKey,
    dst: &Path,
    merge: bool,
    enabled: bool,
) -> StageReport {
    let mut rep = StageReport {
        stage: key.stage.to_string(),
        key: key.key.clone(),
        restore: Restore::Miss,
        save: None,
        warning: None,
    };
    if !enabled {
        return rep;
    }
    match cache.restore(key, dst, merge) {
        Ok(r) => rep.restore = r,
        Err(e) => {
            // A failed restore may leave a partial tree; remove it so the build starts
            // clean rather than from a mix (only for trees we own outright).
            if !merge {
                let _ = crate::fsutil::remove_tree(dst);
            }
            rep.warning = Some(format!("restore failed, building without cache: {e:#}"));
        }
    }
    // Damaged entries discarded, entries held by other jobs: say so in the summary.
    add_notes(cache, &mut rep);
    rep
}

/// Append the cache's notes (see `Cache::take_notes`) to a stage's warning.
fn add_notes(cache: &Cache, rep: &mut StageReport) {
    let notes = cache.take_notes();
    if notes.is_empty() {
        return;
    }
    let mut all: Vec<String> = rep.warning.take().into_iter().collect();
    all.extend(notes);
    rep.warning = Some(all.join("; "));
}

fn save_stage(
    cache: &Cache,
    key: &CacheKey,
    src: &Path,
    skip: &dyn Fn(&Path) -> bool,
    enabled: bool,
    rep: &mut StageReport,
) {
    if !enabled {
        rep.save = Some(Save::Skipped);
        return;
    }
    match cache.save(key, src, skip) {
        Ok(s) => rep.save = Some(s),
        Err(e) => {
            let w = format!("save failed (the build result stands): {e:#}");
            rep.warning = Some(match rep.warning.take() {
                Some(prev) => format!("{prev}; {w}"),
                None => w,
            });
        }
    }
    add_notes(cache, rep);
}

fn run_repo(plan: &Plan, r: &RepoPlan, cache: &Cache, opts: &RunOptions) -> Result<RepoReport> {
    let mut report = empty_report(r, RepoStatus::Ok);
    if let Some(e) = &r.error {
        println!("    error: {}", e.lines().next().unwrap_or(""));
        report.status = RepoStatus::Failed(e.clone());
        return Ok(report);
    }
    let target_dir = r
        .target_dir
        .clone()
        .unwrap_or_else(|| plan::default_target_dir(&r.dir));
    // A run that may not save must not move entries out either (a moved entry only goes
    // back through a save), so it restores through a read-only view of the cache.
    let tcache = if opts.save {
        cache.clone()
    } else {
        cache.clone().into_read_only()
    };
    if let Some(key) = &r.cache_key {
        let st = restore_stage(&tcache, key, &target_dir, false, opts.restore);
        let how = match &st.restore {
            Restore::Hit { strategy, secs, .. } => format!(", {} in {secs:.2}s", strategy.as_str()),
            Restore::Partial {
                from,
                strategy,
                secs,
                ..
            } => format!(" from {from}, {} in {secs:.2}s", strategy.as_str()),
            _ => String::new(),
        };
        if let Some((_, bytes, secs)) = st.restore.restored() {
            report.restore_bytes += bytes;
            report.restore_secs += secs;
        }
        println!("    cache target: {} ({}{how})", key.key, st.restore_word());
        report.cache.push(st);
    }
    let log_dir = opts.run_dir.join(&r.name);
    std::fs::create_dir_all(&log_dir)?;
    if r.kind == RepoKind::Docs && r.steps.is_empty() {
        println!("    docs repo: nothing to build");
    }
    for step in &r.steps {
        let args = plan::step_args(step, &r.features, &plan.profile);
        let mut env = r.env.clone();
        env.extend(step.env.clone());
        let cmd = StepCommand {
            program: step.program.clone(),
            args,
            dir: r.dir.clone(),
            env,
            timeout: Duration::from_secs(step.timeout_secs),
        };
        println!(
            "--> {} {}: {} {}",
            r.name,
            step.name,
            cmd.program,
            exec::shell_words(&cmd.args)
        );
        let log = log_dir.join(format!("{}.log", step.name));
        let outcome = match exec::run_step(&cmd, &log, opts.echo) {
            Ok(o) => o,
            Err(e) => {
                report.status =
                    RepoStatus::Failed(format!("step `{}` could not start: {e:#}", step.name));
                break;
            }
        };
        report.steps.push(StepReport {
            name: step.name.clone(),
            code: outcome.code,
            timed_out: outcome.timed_out,
            secs: outcome.secs,
            log: log.display().to_string(),
        });
        if outcome.timed_out {
            report.status = RepoStatus::Failed(format!(
                "step `{}` timed out after {} s and was killed with its process tree (log: {})",
                step.name,
                step.timeout_secs,
                log.display()
            ));
            break;
        }
        if !outcome.success() {
            report.status = RepoStatus::Failed(format!(
                "step `{}` exited with {} (log: {})",
                step.name,
                outcome
                    .code
                    .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")),
                log.display()
            ));
            break;
        }
    }
    if let Some(key) = &r.cache_key {
        let st = report
            .cache
            .last_mut()
            .expect("restore pushed a target stage");
        // Leave out what the next build redoes anyway: incremental data, and every unit
        // of the repo's own workspace; keep every dependency unit (see cache/prune.rs).
        let members: Vec<String> = r.versions.keys().cloned().collect();
        let prune = crate::cache::prune::target_prune(&target_dir, &members);
        let skip = |p: &Path| prune.skips(p);
        save_stage(&tcache, key, &target_dir, &skip, opts.save, st);
        match st.save {
            Some(Save::Saved {
                bytes,
                raw_bytes,
                secs,
                strategy,
                ..
            }) => {
                report.save_bytes += bytes;
                report.save_secs += secs;
                println!(
                    "    cache target saved ({}): {} pruned to {} in {secs:.2}s",
                    strategy.as_str(),
                    crate::fsutil::human_bytes(raw_bytes),
                    crate::fsutil::human_bytes(bytes)
                );
            }
            Some(Save::Unchanged {
                bytes,
                raw_bytes,
                secs,
                strategy,
            }) => {
                report.save_secs += secs;
                println!(
                    "    cache target unchanged ({}): {} pruned to {}, nothing written",
                    strategy.as_str(),
                    crate::fsutil::human_bytes(raw_bytes),
                    crate::fsutil::human_bytes(bytes)
                );
            }
            _ => {}
        }
        if let Some(w) = &st.warning {
            report.warnings.push(w.clone());
        }
    }
    Ok(report)
}
