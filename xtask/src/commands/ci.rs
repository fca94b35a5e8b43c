//! `cargo xtask ci`: one CI job over the chain, or one per matrix cell (see [`crate::job`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cache::Tiered;
use crate::engine::plan::CheckoutAccess;
use crate::engine::run::RunOptions;
use crate::engine::steps::{self, ExecContext};
use crate::engine::{release_build, testing};
use crate::flags::CiArgs;
use crate::github::{chain, dedupe, events};
use crate::job::{self, preflight, Job};
use crate::support::exec::Echo;
use crate::support::signals;

use super::open_with;
use crate::support::exit::Exit;

/// `cargo xtask ci`: exit 0 when every selected repo passed, 1 when one failed, 2 when the
/// run could not start (including a checkout in use with `--no-wait`), 128 + the signal
/// number when it was cancelled (130 SIGINT, 143 SIGTERM; see `support::signals`).
pub fn run(a: CiArgs) -> Result<ExitCode> {
    // Before anything can change a checkout: a cancel from here on stops the steps, puts
    // the checkouts back and still writes the summary.
    signals::install_graceful();
    // The GitHub event shapes the run: pull requests never save caches, a release
    // runs the full chain, a workflow_dispatch may pick repos (see `events`).
    let event = events::Event::from_env()?;
    let (manifest, mut opts, cache) = open_with(&a.resolve, |m| {
        !a.no_save && event.untrusted(&chain::repo_names(m)).is_none()
    })?;
    if let Some(code) = preflight::gate(&manifest, &a.resolve, cache.root()) {
        return Ok(code);
    }
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
    let _dispatch = match dedupe::gate(&event, cache.root(), may_save) {
        Ok(handled) => handled,
        Err(code) => return Ok(code),
    };
    let cache = if may_save {
        cache
    } else {
        cache.into_read_only()
    };
    let (store, line) = Tiered::open(cache, manifest.cache.remote.as_ref(), may_save, a.no_remote);
    if let Some(line) = line {
        println!("{line}");
    }
    let cache = store.cache();
    let run_dir = a.run_dir.clone().unwrap_or_else(default_run_dir);
    opts.exec = ExecContext {
        run_dir: run_dir.clone(),
        github_actions: steps::github_actions(),
        nextest: testing::nextest_available(),
        // Repos that build at once share the machine's cores (cargo's -j).
        cargo_jobs: (a.jobs > 1).then(|| (num_cpus() / a.jobs).max(1)),
    };
    // Every checkout is locked for the run (two runs on one checkout would strip, build
    // and move target dirs under each other's feet).
    opts.checkout = CheckoutAccess::Exclusive { wait: !a.no_wait };
    let job = Job {
        manifest: &manifest,
        plan: opts,
        run: RunOptions {
            jobs: a.jobs,
            keep_going: a.keep_going,
            save: may_save,
            restore: !a.no_restore,
            run_dir: run_dir.clone(),
            // With --matrix, each cell builds its own artifacts and release manifest.
            release: (a.release || a.verify_deterministic).then(|| {
                release_build::ReleaseOptions::from_manifest(&manifest, a.verify_deterministic)
            }),
            echo: if a.quiet { Echo::Quiet } else { Echo::Stream },
            compiler_env: Default::default(),
        },
        store: &store,
        print_plan: a.resolve.verbose.then_some(true),
        extra: Vec::new(),
    };
    let summaries = if a.matrix || a.cell.is_some() {
        job::matrix::run_cells(&job, a.cell.as_deref())
    } else {
        job.run().map(|s| vec![s])
    };
    let summaries = match (summaries, signals::cancelled()) {
        (Ok(s), None) => s,
        (Err(e), None) => return Err(e),
        (res, Some(sig)) => {
            if let Err(e) = res {
                eprintln!("error: {e:#}");
            }
            // Cancelled: no notification and no PR comment about a run that did not end.
            println!("logs: {}", run_dir.display());
            return Ok(Exit::Signal(sig).into());
        }
    };
    println!("logs: {}", run_dir.display());
    job::after_jobs(&manifest, cache.root(), &summaries, &event, a.comment);
    Ok(job::exit_code(&summaries))
}

/// Cores available to this process (for sharing cargo's -j between concurrent repos).
fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
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
