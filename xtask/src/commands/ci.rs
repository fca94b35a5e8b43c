//! `cargo xtask ci`: one CI job over the chain (see [`crate::engine::run`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::cache::Tiered;
use crate::engine::{matrix, plan, release_build, run as ci};
use crate::flags::CiArgs;
use crate::github::{chain, events};
use crate::job::preflight;
use crate::report::{metrics, notify};
use crate::support::exec;

use super::open;

/// `cargo xtask ci`: exit 0 when every selected repo passed, 1 when one failed.
pub fn run(a: CiArgs) -> Result<ExitCode> {
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
        return matrix::run_cells(&manifest, &opts, &store, &run_opts, a.cell.as_deref());
    }
    let mut chain_cache = Vec::new();
    let resolved = plan::resolve_with(&manifest, &opts, cache, &mut |keys| {
        chain_cache = ci::restore_chain(&store, keys, !a.no_restore);
    })?;
    if a.resolve.verbose {
        print!("{}", resolved.plan.render(true));
    }
    let summary = ci::run(&resolved.plan, &store, &run_opts, chain_cache)?;
    drop(resolved);
    print!("{}", summary.render());
    println!("logs: {}", run_dir.display());
    probe.finish(&summary, cache, &run_dir);
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
