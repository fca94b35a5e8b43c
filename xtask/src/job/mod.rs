//! Layer 6: one CI job end to end, the same for `ci`, every matrix cell and `demo`:
//! resolve the plan (restoring the chain-wide cache stages before `cargo metadata`), run
//! it, then finish the summary — knowledge-base hints, `summary.json`, the GitHub Actions
//! step summary and outputs — and report it (console, metrics). [`after_jobs`] does what
//! comes once per invocation over the finished summaries: the notification and the PR
//! comment.

pub mod hints;
pub mod matrix;
pub mod preflight;

use std::path::Path;

use anyhow::{Context, Result};

use crate::cache::settings::RemoteConfig;
use crate::cache::Tiered;
use crate::engine::compiler_cache;
use crate::engine::events::{Event, Fanout, Reporter};
use crate::engine::manifest::Manifest;
use crate::engine::plan::{self, PlanOptions};
use crate::engine::results::Results;
use crate::engine::run::{self, RunOptions};
use crate::engine::summary::{RepoReport, RepoStatus, RunSummary};
use crate::github::events::Event as GithubEvent;
use crate::report::console::{render_summary, Console};
use crate::report::{gha, metrics, notify};
use crate::support::exit::Exit;
use crate::support::signals;
pub use hints::add_hints;

/// One job: what to resolve and how to run it.
pub struct Job<'a> {
    /// The chain manifest.
    pub manifest: &'a Manifest,
    /// How the plan is resolved (selection, toolchain, variant, step preparation).
    pub plan: PlanOptions,
    /// How it runs (save, restore, jobs, run dir, release).
    pub run: RunOptions,
    /// The cache store (read-only for runs that may not save).
    pub store: &'a Tiered,
    /// Print the plan before running: `Some(true)` with every input (`-v`), `Some(false)`
    /// the short form, `None` not at all.
    pub print_plan: Option<bool>,
    /// Reporters besides the console (tests, progress displays).
    pub extra: Vec<&'a dyn Reporter>,
}

impl Job<'_> {
    /// Resolve, run and finish the job; returns its summary (already printed, written to
    /// `<run dir>/summary.json` and recorded in the metrics history).
    ///
    /// A cancel (`support::signals`) is a result, not an error: the summary is marked
    /// [`RunSummary::cancelled`], every repo that did not finish is `skipped` with
    /// `cancelled` set, the checkouts are put back, and the summary is written and printed
    /// (not recorded in the metrics history). A `summary.json` that cannot be written is a
    /// warning in the printed summary.
    ///
    /// Errors: the plan cannot be resolved (bad `--only`, missing checkout, cycle, a
    /// checkout in use with `--no-wait`), the release manifest cannot be written.
    pub fn run(&self) -> Result<RunSummary> {
        let cache = self.store.cache();
        let probe = metrics::Probe::start(cache.root());
        // The summary's time is the run's wall time: start-up and preflight (the first
        // job of the process), resolution, restores, steps, saves.
        let started = crate::support::time::run_start();
        let console = Console::new(self.run.echo, self.run.jobs)
            .with_expected(crate::report::progress::Expected::load(cache.root()));
        let mut all: Vec<&dyn Reporter> = vec![&console];
        all.extend(self.extra.iter().copied());
        let reporter = Fanout(all);
        if let Some(sig) = signals::cancelled() {
            // Cancelled before it began (a cancel during start-up): change nothing in the
            // checkouts.
            let why = anyhow::anyhow!("the run had not started");
            return Ok(self.cancelled_before_plan(sig, &why, &reporter));
        }
        let mut chain_cache = Vec::new();
        // Results shared through the store's remote count as this runner's own.
        let opts = PlanOptions {
            results: Some(Results::shared(self.store)),
            ..self.plan.clone()
        };
        let resolved = match plan::resolve_with(self.manifest, &opts, cache, &mut |keys| {
            chain_cache = run::restore_chain(self.store, keys, self.run.restore, &reporter);
        }) {
            Ok(r) => r,
            // A terminal's Ctrl-C also stops `cargo metadata`, and a cancel stops a wait
            // for a checkout: the run was cancelled, it did not fail to start.
            Err(e) => match signals::cancelled() {
                Some(sig) => return Ok(self.cancelled_before_plan(sig, &e, &reporter)),
                None => return Err(e),
            },
        };
        for note in &resolved.notes {
            reporter.report(&Event::Note {
                repo: None,
                text: note,
            });
        }
        if let Some(verbose) = self.print_plan {
            print!("{}", resolved.plan.render(verbose));
        }
        // One compiler cache server for the run, stopped below (or by an emergency stop);
        // none when no repo will build (an unchanged chain stays as fast as it was).
        let builds = resolved
            .plan
            .repos
            .iter()
            .any(|r| r.selected && matches!(r.action, plan::Action::Run));
        let (server, run_opts) = if builds {
            self.start_compiler_cache(&reporter)?
        } else {
            (None, self.run.clone())
        };
        let run_result = run::run(
            &resolved.plan,
            self.store,
            &run_opts,
            chain_cache,
            &reporter,
        );
        let compiler_cache = finish_compiler_cache(server, &reporter);
        let mut summary = run_result?;
        summary.compiler_cache = compiler_cache;
        add_hints(&mut summary, &resolved.plan, self.manifest);
        summary.secs = started.elapsed().as_secs_f64();
        write_summary(&self.run.run_dir, &mut summary);
        if gha::enabled() {
            if let Err(e) = gha::finish(&resolved.plan, &summary) {
                eprintln!("warning: could not write the GitHub Actions summary and outputs: {e:#}");
            }
        }
        // The stripped manifests and generated lockfiles go back now, before the summary
        // is printed, so an interrupted print cannot leave them behind; then the checkout
        // locks are released.
        drop(resolved);
        reporter.report(&Event::RunFinished { summary: &summary });
        if summary.cancelled.is_none() {
            probe.finish(&summary, cache, &self.run.run_dir);
        }
        Ok(summary)
    }

    /// Decide the run's compiler cache ([`compiler_cache::decide`]) and start its server;
    /// returns the server (`None`: off) and the run options with its variables for the
    /// cargo steps. A note says why it is off when that is worth knowing; a server that
    /// cannot start is a note too, and the run builds without it.
    ///
    /// Errors: `[cache] compiler-cache = "sccache"` and sccache is not installed (preflight
    /// reports the same before anything starts).
    fn start_compiler_cache(
        &self,
        reporter: &dyn Reporter,
    ) -> Result<(Option<compiler_cache::Server>, RunOptions)> {
        let cache = self.store.cache();
        let env = |k: &str| std::env::var(k).ok();
        let remote = self
            .store
            .has_remote()
            .then(|| {
                let may_save = !cache.is_read_only();
                RemoteConfig::resolve(self.manifest.cache.remote.as_ref(), may_save, &env)
            })
            .flatten();
        let decision = compiler_cache::decide(&compiler_cache::Inputs {
            mode: self.manifest.cache.compiler_cache,
            max_bytes: self.manifest.cache.compiler_cache_max_bytes,
            cache_root: cache.root(),
            read_only: cache.is_read_only(),
            remote: remote.as_ref(),
            program: compiler_cache::find_sccache(),
            caller_wrapper: compiler_cache::caller_wrapper(&env),
        })?;
        let note = |text: &str| reporter.report(&Event::Note { repo: None, text });
        let mut opts = self.run.clone();
        match decision {
            compiler_cache::Decision::Off { note: why } => {
                if let Some(why) = why {
                    note(&why);
                }
                Ok((None, opts))
            }
            compiler_cache::Decision::On {
                program,
                env,
                location,
            } => match compiler_cache::Server::start(&program, &env, &location) {
                Ok(server) => {
                    opts.compiler_env = env;
                    Ok((Some(server), opts))
                }
                Err(e) => {
                    note(&format!("compiler cache off: {e:#}"));
                    Ok((None, opts))
                }
            },
        }
    }

    /// The summary of a run cancelled by `sig` before its plan was resolved (`why`: the
    /// error resolution stopped with): every selected repo `skipped`, marked `cancelled`;
    /// written and printed like any summary.
    fn cancelled_before_plan(
        &self,
        sig: i32,
        why: &anyhow::Error,
        reporter: &dyn Reporter,
    ) -> RunSummary {
        let reason = format!(
            "cancelled by {} before the plan was resolved ({})",
            signals::name(sig),
            format!("{why:#}").lines().next().unwrap_or("")
        );
        let repos = self
            .manifest
            .repos
            .iter()
            .filter(|r| self.plan.only.is_empty() || self.plan.only.contains(&r.name))
            .map(|r| {
                let mut rep = RepoReport::not_run(&r.name, RepoStatus::Skipped(reason.clone()));
                rep.cancelled = true;
                rep
            })
            .collect();
        let mut summary = RunSummary {
            schema_version: 1,
            run_id: self
                .run
                .run_dir
                .file_name()
                .map_or_else(|| "run".to_owned(), |n| n.to_string_lossy().into_owned()),
            variant: self
                .plan
                .variant
                .clone()
                .unwrap_or_else(|| self.manifest.defaults.variant.clone()),
            chain_cache: Vec::new(),
            repos,
            secs: 0.0,
            cancelled: Some(signals::name(sig)),
            warnings: Vec::new(),
            compiler_cache: None,
        };
        write_summary(&self.run.run_dir, &mut summary);
        reporter.report(&Event::RunFinished { summary: &summary });
        summary
    }
}

/// Read the compiler cache's statistics for the summary, note them, and stop its server
/// (dropping it runs `sccache --stop-server`). Statistics that cannot be read are a note,
/// never a failed run.
fn finish_compiler_cache(
    server: Option<compiler_cache::Server>,
    reporter: &dyn Reporter,
) -> Option<compiler_cache::CompilerCacheStats> {
    let server = server?;
    let stats = server.stats();
    drop(server);
    let text = match &stats {
        Ok(s) => s.line(),
        Err(e) => format!("compiler cache: no statistics ({e:#})"),
    };
    reporter.report(&Event::Note {
        repo: None,
        text: &text,
    });
    stats.ok()
}

/// `<run dir>/summary.json` (schema 1). A run dir that cannot take it (a full disk) does
/// not change the run's result: the failure becomes a warning of the summary (printed
/// with it), naming the path and the operation.
fn write_summary(run_dir: &Path, summary: &mut RunSummary) {
    let path = run_dir.join("summary.json");
    let res = serde_json::to_vec_pretty(&*summary)
        .map_err(anyhow::Error::from)
        .and_then(|json| {
            std::fs::create_dir_all(run_dir)
                .with_context(|| format!("create run dir {}", run_dir.display()))?;
            std::fs::write(&path, json).with_context(|| format!("write summary {}", path.display()))
        });
    if let Err(e) = res {
        summary.warnings.push(format!(
            "{e:#}; summary.json is missing, the summary below is the run's record"
        ));
    }
}

/// Once per invocation, over the jobs' summaries (one, or one per matrix cell): send the
/// notification (the first failed job's, else the last's) and, with `comment`, post every
/// summary as the pull request's comment.
pub fn after_jobs(
    manifest: &Manifest,
    cache_root: &Path,
    summaries: &[RunSummary],
    event: &GithubEvent,
    comment: bool,
) {
    let notify_with = summaries
        .iter()
        .find(|s| s.failed())
        .or_else(|| summaries.last());
    if let Some(s) = notify_with {
        notify::after_run(manifest, s, cache_root);
    }
    if comment && !summaries.is_empty() {
        let text: String = summaries.iter().map(render_summary).collect();
        crate::github::chain::comment_on_pull_request(event, &text);
    }
}

/// The process exit code for finished jobs: 1 when any repo of any job failed.
pub fn exit_code(summaries: &[RunSummary]) -> std::process::ExitCode {
    if summaries.iter().any(RunSummary::failed) {
        Exit::Failed.into()
    } else {
        Exit::Ok.into()
    }
}
