//! `cargo xtask ci`: execute a [`Plan`]: restore caches, run every repo's steps in plan
//! order, save caches (also after a failure, so the next run is faster), and report.
//!
//! Invariant: a build's result never depends on the cache. Every cache error becomes a
//! warning in the summary and the repo builds as if it had missed.

use std::collections::BTreeSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::cache::{Cache, Restore, Save, Tiered};
use crate::engine::manifest::RepoKind;
use crate::engine::plan::{self, Action, Plan, RepoPlan};
use crate::engine::results::{Record, RecordedStep, Results};
use crate::engine::summary::{RepoReport, RepoStatus, RunSummary, StageReport, StepReport};
use crate::engine::testing;
use crate::report::gha;
use crate::support::exec::{self, Echo, StepCommand};

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
    /// Repos of one level run at once, at most this many (`--jobs`; 1 = one at a time).
    pub jobs: usize,
    /// `--release` (and `--verify-deterministic`): build and collect release artifacts
    /// after a repo's steps (see [`crate::engine::release_build`]); `None` for an ordinary run.
    pub release: Option<crate::engine::release_build::ReleaseOptions>,
}

/// Restore the chain-wide stages (registry, git) into `$CARGO_HOME`, merging (never
/// deleting; see [`Tiered::restore_chain`]). Called through [`plan::resolve_with`] before
/// `cargo metadata` runs, so the resolver finds the index and crates an earlier run saved.
/// With `enabled` false the stages are reported as misses and nothing is read.
pub fn restore_chain(store: &Tiered, keys: &plan::ChainKeys, enabled: bool) -> Vec<StageReport> {
    let (stages, lines) = store.restore_chain(keys.registry.as_ref(), keys.git.as_ref(), enabled);
    print_lines(&lines);
    stages
}

/// Print the console lines a cache stage returned.
fn print_lines(lines: &[String]) {
    for l in lines {
        println!("{l}");
    }
}

/// Run `plan` with `store`; `chain_cache` holds the chain-wide stages already restored by
/// [`restore_chain`] (they are saved again at the end). Returns the summary; the caller
/// prints it and sets the exit code from [`RunSummary::failed`].
///
/// Errors only for problems outside any repo (the run directory cannot be created);
/// step failures are results, not errors.
pub fn run(
    plan: &Plan,
    store: &Tiered,
    opts: &RunOptions,
    mut chain_cache: Vec<StageReport>,
) -> Result<RunSummary> {
    let cache = store.cache();
    let start = Instant::now();
    std::fs::create_dir_all(&opts.run_dir)
        .with_context(|| format!("create run dir {}", opts.run_dir.display()))?;
    let run_id = opts
        .run_dir
        .file_name()
        .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned());
    let results = Results::new(cache.root());
    let mut failed: BTreeSet<String> = BTreeSet::new();
    // Set when a repo fails without --keep-going: nothing else starts after that.
    let stop = AtomicBool::new(false);
    let mut reports: Vec<RepoReport> = Vec::new();
    for level in &plan.levels {
        // Decide every repo of the level first; run the runnable ones (concurrently with
        // --jobs); keep the reports in plan order.
        let mut runnable: Vec<&RepoPlan> = Vec::new();
        let mut level_reports: Vec<(String, RepoReport)> = Vec::new();
        for name in level {
            let r = plan
                .repos
                .iter()
                .find(|r| &r.name == name)
                .expect("levels name planned repos");
            if !r.selected {
                continue;
            }
            let failed_up: Vec<String> = plan
                .graph
                .upstream_closure(&[r.name.as_str()])
                .into_iter()
                .filter(|u| failed.contains(u))
                .collect();
            let skip = if !failed_up.is_empty() {
                Some(RepoStatus::Skipped(format!(
                    "upstream failed: {}",
                    failed_up.join(", ")
                )))
            } else if stop.load(Ordering::SeqCst) {
                Some(stopped_status())
            } else {
                match &r.action {
                    Action::SkipCached => Some(RepoStatus::Cached(format!(
                        "a successful run with fingerprint {} is recorded; `cargo xtask logs {}` replays it, --force re-runs",
                        r.fingerprint.short(),
                        r.name
                    ))),
                    Action::SkipNotAffected(why) | Action::SkipUnavailable(why) => {
                        Some(RepoStatus::Skipped(why.clone()))
                    }
                    Action::Run | Action::NotSelected => None,
                }
            };
            match skip {
                Some(status) => {
                    println!("==> {} (level {}): {}", r.name, r.level, status.describe());
                    let mut rep = empty_report(r, status);
                    // Release: a `cached` repo's artifacts come from the builds store
                    // (or a build when the store has none).
                    if matches!(rep.status, RepoStatus::Cached(_)) {
                        release_hook(plan, r, cache, opts, &mut rep);
                    }
                    level_reports.push((r.name.clone(), rep));
                }
                None => runnable.push(r),
            }
        }
        let parallel = opts.jobs > 1 && runnable.len() > 1;
        let workers = if parallel {
            opts.jobs.min(runnable.len())
        } else {
            1
        };
        // Share the machine's cores among the repos running at once (cargo's -j).
        let cargo_jobs = parallel.then(|| (num_cpus() / workers).max(1));
        let queue = std::sync::Mutex::new(
            runnable
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        );
        let done = std::sync::Mutex::new(Vec::new());
        let print_lock = std::sync::Mutex::new(());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some(r) = queue.lock().expect("queue lock").pop_front() else {
                        break;
                    };
                    if stop.load(Ordering::SeqCst) {
                        // An earlier repo failed without --keep-going: the rest of the
                        // queue is not started (repos already running finish).
                        let status = stopped_status();
                        println!("==> {} (level {}): {}", r.name, r.level, status.describe());
                        done.lock()
                            .expect("done lock")
                            .push((r.name.clone(), empty_report(r, status)));
                        continue;
                    }
                    let mut ropts = opts.clone();
                    if parallel {
                        // Step output is kept in the logs and printed as one block per
                        // repo when it ends, so concurrent repos never interleave.
                        ropts.echo = Echo::Quiet;
                    }
                    let t0 = start.elapsed().as_secs_f64();
                    println!("==> {} (level {})", r.name, r.level);
                    let mut report =
                        run_repo(plan, r, store, &ropts, cargo_jobs).unwrap_or_else(|e| {
                            let mut rep = empty_report(r, RepoStatus::Failed(format!("{e:#}")));
                            rep.warnings
                                .push("internal error while running the repo".into());
                            rep
                        });
                    report.start_secs = t0;
                    report.end_secs = start.elapsed().as_secs_f64();
                    if matches!(report.status, RepoStatus::Failed(_)) && !opts.keep_going {
                        stop.store(true, Ordering::SeqCst);
                    }
                    if parallel && opts.echo == Echo::Stream {
                        let _guard = print_lock.lock().expect("print lock");
                        for st in &report.steps {
                            let title = format!("{} {} ({})", r.name, st.name, st.log);
                            if gha::enabled() {
                                println!("{}", gha::group(&title));
                            } else {
                                println!("----- {title}");
                            }
                            if let Ok(text) = std::fs::read_to_string(&st.log) {
                                print!("{text}");
                            }
                            if gha::enabled() {
                                println!("{}", gha::END_GROUP);
                            }
                        }
                    }
                    done.lock()
                        .expect("done lock")
                        .push((r.name.clone(), report));
                });
            }
        });
        level_reports.extend(done.into_inner().expect("done lock"));
        // Plan order within the level, whatever order the workers finished in.
        level_reports.sort_by_key(|(n, _)| level.iter().position(|l| l == n));
        for (name, report) in level_reports {
            if matches!(report.status, RepoStatus::Failed(_)) {
                failed.insert(name.clone());
            }
            // A read-only cache (untrusted events, --no-save) writes nothing under its root,
            // results included: a trusted run must never skip a repo on the word of an
            // untrusted one (issue 8: a pull request recorded successes).
            if matches!(report.status, RepoStatus::Ok | RepoStatus::Failed(_))
                && !cache.is_read_only()
            {
                let r = plan.repos.iter().find(|r| r.name == name).expect("planned");
                record_result(&results, r, &report, &run_id);
            }
            reports.push(report);
        }
    }

    // Save the chain-wide stages last, pruned to what the lockfiles name.
    print_lines(&store.save_chain(
        &mut chain_cache,
        plan.registry_key.as_ref(),
        plan.git_key.as_ref(),
        &plan.locked,
        opts.save,
    ));

    // Wait for the remote cache's background uploads; their outcomes go to the stages.
    {
        let mut stages: Vec<&mut StageReport> = chain_cache.iter_mut().collect();
        stages.extend(reports.iter_mut().flat_map(|r| r.cache.iter_mut()));
        let pending = store.pending_uploads();
        if pending > 0 {
            println!("remote cache: waiting for {pending} upload(s)");
        }
        print_lines(&store.finish(&mut stages));
    }

    // Run-wide outputs of the release and coverage hooks.
    crate::engine::coverage::write_total(&opts.run_dir, &reports);
    if opts.release.is_some() {
        let path = crate::engine::release_build::write_release_manifest(
            &opts.run_dir,
            &run_id,
            &plan.variant,
            &reports,
        )?;
        println!("release manifest: {}", path.display());
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
    if gha::enabled() {
        if let Err(e) = gha::finish(plan, &summary) {
            eprintln!("warning: could not write the GitHub Actions summary and outputs: {e:#}");
        }
    }
    Ok(summary)
}

/// Record a finished repo in the result cache (success records skip it next time; the
/// last run's inputs feed `plan --explain`). A failure to record is only a warning.
fn record_result(results: &Results, r: &RepoPlan, report: &RepoReport, run_id: &str) {
    let ok = matches!(report.status, RepoStatus::Ok);
    let rec = Record {
        schema_version: 1,
        repo: r.name.clone(),
        fingerprint: r.fingerprint.hash.clone(),
        inputs: r.fingerprint.inputs.clone(),
        status: if ok { "ok" } else { "failed" }.to_owned(),
        run_id: run_id.to_owned(),
        finished_unix: crate::support::time::now_unix(),
        steps: report
            .steps
            .iter()
            .map(|s| RecordedStep {
                name: s.name.clone(),
                secs: s.secs,
            })
            .collect(),
    };
    let logs: Vec<(String, PathBuf)> = report
        .steps
        .iter()
        .map(|s| (s.name.clone(), PathBuf::from(&s.log)))
        .collect();
    if let Err(e) = results.record(&r.fingerprint, &rec, &logs) {
        eprintln!("warning: could not record the result of {}: {e:#}", r.name);
    }
}

fn stopped_status() -> RepoStatus {
    RepoStatus::Skipped(
        "not run: stopped after a failure (pass --keep-going to run independent repos)".to_owned(),
    )
}

/// Cores available to this process (for sharing cargo's -j between concurrent repos).
fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

fn empty_report(r: &RepoPlan, status: RepoStatus) -> RepoReport {
    RepoReport {
        name: r.name.clone(),
        status,
        start_secs: 0.0,
        end_secs: 0.0,
        tests: None,
        hints: Vec::new(),
        steps: Vec::new(),
        cache: Vec::new(),
        restore_secs: 0.0,
        restore_bytes: 0,
        save_secs: 0.0,
        save_bytes: 0,
        release: None,
        coverage: None,
        warnings: r
            .unused_patches
            .iter()
            .map(|p| format!("patch `{p}` was not used in the crate graph: the sibling checkout was silently not used"))
            .collect(),
    }
}

/// `--release`: build (or reuse) the repo's artifacts into the run dir; a failure marks
/// the report failed (see [`crate::engine::release_build::run_for_repo`]).
fn release_hook(
    plan: &Plan,
    r: &RepoPlan,
    cache: &Cache,
    opts: &RunOptions,
    report: &mut RepoReport,
) {
    if let Some(release) = &opts.release {
        let ctx = crate::engine::release_build::RepoContext {
            plan,
            repo: r,
            cache_root: cache.root(),
            save: opts.save,
            run_dir: &opts.run_dir,
            echo: opts.echo,
            opts: release,
        };
        crate::engine::release_build::run_for_repo(&ctx, report);
    }
}

fn run_repo(
    plan: &Plan,
    r: &RepoPlan,
    store: &Tiered,
    opts: &RunOptions,
    cargo_jobs: Option<usize>,
) -> Result<RepoReport> {
    let cache = store.cache();
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
    let tstore = if opts.save {
        store.clone()
    } else {
        store.clone().into_read_only()
    };
    if let Some(key) = &r.cache_key {
        let (st, lines) = tstore.restore_stage(key, &target_dir, false, opts.restore);
        print_lines(&lines);
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
    let gha = gha::enabled();
    let nextest = testing::nextest_available();
    // nextest wants an absolute path here, and the run dir may be relative (the default).
    let tool_config = std::path::absolute(log_dir.join("nextest.toml"))
        .with_context(|| format!("absolute path of {}", log_dir.display()))?;
    if nextest {
        testing::write_tool_config(&tool_config)?;
    }
    'steps: for step in &r.steps {
        let step_args = plan::step_args(step, &r.features, &plan.profile);
        for sub in testing::expand(
            &step.name,
            &step.program,
            &step_args,
            nextest,
            &tool_config,
            &target_dir,
        ) {
            let mut args = sub.args.clone();
            // In GitHub Actions, compiling cargo steps print JSON so errors become
            // annotations; exec shows each diagnostic's rendered text, so the log reads as
            // usual. Added here, not in the plan, so fingerprints are the same on a laptop
            // and in Actions.
            let json_diagnostics =
                gha && step.program == "cargo" && gha::takes_message_format(&args);
            if json_diagnostics {
                args.insert(1, "--message-format=json".to_owned());
            }
            // Coverage: the tool must be installed; its reports go to the run dir (added
            // here, not in the plan, so fingerprints do not depend on the run dir).
            let coverage_dir = crate::engine::coverage::output_dir(&log_dir);
            let is_coverage = crate::engine::coverage::is_coverage(&step.program, &args);
            if is_coverage {
                if let Err(why) =
                    crate::engine::coverage::prepare(&sub.name, &mut args, &coverage_dir)
                {
                    println!("    {why}");
                    report.status = RepoStatus::Failed(why);
                    break 'steps;
                }
            }
            let mut env = r.env.clone();
            if let Some(j) = cargo_jobs {
                env.insert("CARGO_BUILD_JOBS".into(), j.to_string());
            }
            env.extend(step.env.clone());
            let cmd = StepCommand {
                program: step.program.clone(),
                args,
                dir: r.dir.clone(),
                env,
                timeout: Duration::from_secs(step.timeout_secs),
                json_diagnostics,
            };
            println!(
                "--> {} {}: {} {}",
                r.name,
                sub.name,
                cmd.program,
                exec::shell_words(&cmd.args)
            );
            let log = log_dir.join(format!("{}.log", sub.name));
            if let Some(j) = &sub.junit {
                let _ = std::fs::remove_file(j);
            }
            let grouped = gha && opts.echo == Echo::Stream;
            if grouped {
                println!("{}", gha::group(&format!("{} {}", r.name, sub.name)));
            }
            // On a terminal with the output kept in logs (--quiet, or concurrent repos), a
            // spinner shows the repo, the step and its elapsed time; elsewhere plain lines.
            let spinner = (opts.echo == Echo::Quiet && !gha && std::io::stdout().is_terminal())
                .then(|| {
                    let pb = indicatif::ProgressBar::new_spinner();
                    pb.set_style(
                        indicatif::ProgressStyle::with_template("    {spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    pb.set_message(format!("{} {}", r.name, sub.name));
                    pb.enable_steady_tick(Duration::from_millis(120));
                    pb
                });
            let outcome = exec::run_step(&cmd, &log, opts.echo);
            if let Some(pb) = spinner {
                pb.finish_and_clear();
            }
            if grouped {
                println!("{}", gha::END_GROUP);
            }
            let mut outcome = match outcome {
                Ok(o) => o,
                Err(e) => {
                    report.status =
                        RepoStatus::Failed(format!("step `{}` could not start: {e:#}", sub.name));
                    break 'steps;
                }
            };
            if sub.lenient_no_lib
                && !outcome.success()
                && !outcome.timed_out
                && std::fs::read_to_string(&log)
                    .is_ok_and(|t| t.contains("no library targets found"))
            {
                // `cargo test --doc` in a workspace without a library: nothing to test.
                outcome.code = Some(0);
            }
            if gha {
                for d in &outcome.diagnostics {
                    if let Some(a) = gha::annotation(d, &r.name, &r.dir) {
                        println!("{a}");
                    }
                }
            }
            if is_coverage && outcome.success() {
                match crate::engine::coverage::collect(&coverage_dir) {
                    Ok(c) => report.coverage = Some(c),
                    Err(e) => report.warnings.push(format!("{e:#}")),
                }
            }
            if let Some(j) = &sub.junit {
                if let Ok(xml) = std::fs::read_to_string(j) {
                    let counts = testing::count_junit(&xml);
                    let _ = std::fs::copy(j, log_dir.join("junit.xml"));
                    let t = report.tests.get_or_insert_with(Default::default);
                    t.passed += counts.passed;
                    t.failed += counts.failed;
                    t.skipped += counts.skipped;
                }
            }
            report.steps.push(StepReport {
                name: sub.name.clone(),
                code: outcome.code,
                timed_out: outcome.timed_out,
                secs: outcome.secs,
                log: log.display().to_string(),
                errors: outcome
                    .diagnostics
                    .iter()
                    .filter(|d| d.level.starts_with("error"))
                    .take(20)
                    .cloned()
                    .collect(),
            });
            if opts.echo == Echo::Quiet {
                let word = if outcome.timed_out {
                    "timed out"
                } else if outcome.success() {
                    "ok"
                } else {
                    "FAILED"
                };
                println!(
                    "    {} {}: {word} in {:.1} s",
                    r.name, sub.name, outcome.secs
                );
            }
            if !outcome.success() {
                // What the knowledge base knows about this failure, for the summary.
                report.hints = crate::report::explain::hints(&log, 3);
            }
            if outcome.timed_out {
                report.status = RepoStatus::Failed(format!(
                    "step `{}` timed out after {} s and was killed with its process tree (log: {})",
                    sub.name,
                    step.timeout_secs,
                    log.display()
                ));
                break 'steps;
            }
            if !outcome.success() {
                report.status = RepoStatus::Failed(format!(
                    "step `{}` exited with {} (log: {})",
                    sub.name,
                    outcome
                        .code
                        .map_or_else(|| "a signal".to_owned(), |c| format!("code {c}")),
                    log.display()
                ));
                break 'steps;
            }
        }
    }
    // Release artifacts are built before the save, so the target entry keeps the release
    // dependency units too.
    if report.status == RepoStatus::Ok {
        release_hook(plan, r, cache, opts, &mut report);
    }
    if let Some(key) = &r.cache_key {
        let st = report
            .cache
            .last_mut()
            .expect("restore pushed a target stage");
        // For `cache stats`: how long the steps took after this kind of restore, so the
        // time a hit saves can be measured rather than guessed.
        let steps_secs = report.steps.iter().map(|s| s.secs).fold(0.0, |a, b| a + b);
        tstore.cache().log_build(key, st.restore_word(), steps_secs);
        // Leave out what the next build redoes anyway: incremental data, and every unit
        // of the repo's own workspace; keep every dependency unit (see cache/prune.rs).
        let members: Vec<String> = r.versions.keys().cloned().collect();
        let prune = crate::cache::prune::target_prune(&target_dir, &members);
        let skip = |p: &Path| prune.skips(p);
        print_lines(&tstore.save_stage(key, &target_dir, &skip, opts.save, st));
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
                    crate::support::fs::human_bytes(raw_bytes),
                    crate::support::fs::human_bytes(bytes)
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
                    crate::support::fs::human_bytes(raw_bytes),
                    crate::support::fs::human_bytes(bytes)
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
