//! The cache stages around a run, through the [`Tiered`] store: the chain-wide registry
//! and git stages, and waiting for the remote cache's uploads. The store returns the
//! console lines of each stage; they become `Note` events here, so the runner still
//! prints nothing.

use crate::cache::Tiered;
use crate::engine::events::{Event, Reporter};
use crate::engine::plan::{ChainKeys, Plan};
use crate::engine::summary::{RepoReport, StageReport};

/// Restore the chain-wide stages (registry, git) into `$CARGO_HOME`, merging (never
/// deleting; see [`Tiered::restore_chain`]). Called through
/// [`crate::engine::plan::resolve_with`] before `cargo metadata` runs, so the resolver finds
/// the index and crates an earlier run saved. With `enabled` false the stages are
/// reported as misses and nothing is read.
pub fn restore_chain(
    store: &Tiered,
    keys: &ChainKeys,
    enabled: bool,
    reporter: &dyn Reporter,
) -> Vec<StageReport> {
    let (stages, lines) = store.restore_chain(keys.registry.as_ref(), keys.git.as_ref(), enabled);
    notes(reporter, &lines);
    stages
}

/// Save the chain-wide stages last, pruned to what the lockfiles name.
pub fn save_chain(
    plan: &Plan,
    store: &Tiered,
    save: bool,
    chain_cache: &mut [StageReport],
    reporter: &dyn Reporter,
) {
    let lines = store.save_chain(
        chain_cache,
        plan.registry_key.as_ref(),
        plan.git_key.as_ref(),
        &plan.locked,
        save,
    );
    notes(reporter, &lines);
}

/// Wait for the remote cache's background uploads; their outcomes go to the stages.
pub fn finish_uploads(
    store: &Tiered,
    chain_cache: &mut [StageReport],
    repos: &mut [RepoReport],
    reporter: &dyn Reporter,
) {
    let pending = store.pending_uploads();
    if pending > 0 {
        notes(
            reporter,
            &[format!("remote cache: waiting for {pending} upload(s)")],
        );
    }
    let mut stages: Vec<&mut StageReport> = chain_cache.iter_mut().collect();
    stages.extend(repos.iter_mut().flat_map(|r| r.cache.iter_mut()));
    let lines = store.finish(&mut stages);
    notes(reporter, &lines);
}

/// The store's console lines as run-wide notes.
pub fn notes(reporter: &dyn Reporter, lines: &[String]) {
    for l in lines {
        reporter.report(&Event::Note {
            repo: None,
            text: l,
        });
    }
}
