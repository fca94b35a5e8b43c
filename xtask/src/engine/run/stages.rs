//! The cache stages around a run: restoring and saving one stage into a [`StageReport`]
//! (every cache problem becomes a warning, never an error), the chain-wide registry and
//! git stages, and waiting for the remote cache's uploads.

use std::path::Path;

use crate::cache::cargo_home::{self, skip_git_path};
use crate::cache::{Cache, CacheKey, Restore, Save};
use crate::engine::plan::{self, Plan};
use crate::engine::summary::StageReport;

/// Restore the chain-wide stages (registry, git) into `$CARGO_HOME`, merging (never
/// deleting). Called through [`plan::resolve_with`] before `cargo metadata` runs, so the
/// resolver finds the index and crates an earlier run saved. With `enabled` false the
/// stages are reported as misses and nothing is read.
pub fn restore_chain(cache: &Cache, keys: &plan::ChainKeys, enabled: bool) -> Vec<StageReport> {
    let cargo_home = cargo_home::cargo_home();
    let mut out = Vec::new();
    if let Some(k) = &keys.registry {
        out.push(restore_stage(
            cache,
            k,
            &cargo_home.join("registry"),
            true,
            enabled,
        ));
    }
    if let Some(k) = &keys.git {
        out.push(restore_stage(
            cache,
            k,
            &cargo_home.join("git"),
            true,
            enabled,
        ));
    }
    out
}

/// Save the chain-wide stages last, pruned to what the lockfiles name.
pub fn save_chain(plan: &Plan, cache: &Cache, save: bool, chain_cache: &mut [StageReport]) {
    let cargo_home = cargo_home::cargo_home();
    let locked = &plan.locked;
    for c in chain_cache {
        let is_registry = c.stage == "registry";
        let (src, key) = if is_registry {
            (cargo_home.join("registry"), plan.registry_key.as_ref())
        } else {
            (cargo_home.join("git"), plan.git_key.as_ref())
        };
        let Some(key) = key else { continue };
        let skip = |p: &Path| {
            if is_registry {
                locked.skip_registry_path(p)
            } else {
                skip_git_path(p)
            }
        };
        save_stage(cache, key, &src, &skip, save, c);
    }
}

/// Wait for the remote cache's background uploads; their outcomes go to the stages.
pub fn finish_uploads(
    chain_cache: &mut [StageReport],
    repos: &mut [crate::engine::summary::RepoReport],
) {
    let mut stages: Vec<&mut StageReport> = chain_cache.iter_mut().collect();
    stages.extend(repos.iter_mut().flat_map(|r| r.cache.iter_mut()));
    crate::cache::remote::finish(&mut stages);
}

pub fn restore_stage(
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
        remote: None,
    };
    if !enabled {
        return rep;
    }
    // The remote cache (cache/remote.rs) fills the local cache on a local miss, or
    // restores straight into `dst` for a read-only cache.
    let direct = crate::cache::remote::before_restore(cache, key, dst, merge, &mut rep);
    match direct.map_or_else(|| cache.restore(key, dst, merge), Ok) {
        Ok(r) => rep.restore = r,
        Err(e) => {
            // A failed restore may leave a partial tree; remove it so the build starts
            // clean rather than from a mix (only for trees we own outright).
            if !merge {
                let _ = crate::support::fs::remove_tree(dst);
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

/// Save one stage into `rep` (a skipped or failed save is recorded, never an error).
pub fn save_stage(
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
    // Upload to the remote cache in the background (`run` waits for it at the end).
    crate::cache::remote::after_save(cache, key, rep);
}
