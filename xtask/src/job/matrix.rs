//! `ci --matrix` and `ci --cell NAME`: each cell of the variant × toolchain matrix (see
//! [`crate::engine::matrix`]) run as a [`Job`] of its own — its own plan, cache keys, run
//! directory (`<run dir>/<cell>`) and metrics record.

use anyhow::{anyhow, Result};

use super::Job;
use crate::engine::matrix::{cells, members, Cell};
use crate::engine::summary::RunSummary;

/// Run every cell (or only `only_cell`) one after the other, each as `base` with the
/// cell's toolchain, variant and repos. Returns the summaries of the cells that had repos.
///
/// Errors: an unknown `only_cell` (the message lists the cells), or a cell's plan cannot
/// be resolved.
pub fn run_cells(base: &Job<'_>, only_cell: Option<&str>) -> Result<Vec<RunSummary>> {
    let all = cells(base.manifest);
    let chosen: Vec<&Cell> = match only_cell {
        Some(name) => vec![all.iter().find(|c| c.name() == name).ok_or_else(|| {
            anyhow!(
                "no matrix cell `{name}` (cells: {})",
                all.iter().map(Cell::name).collect::<Vec<_>>().join(", ")
            )
        })?],
        None => all.iter().collect(),
    };
    let mut summaries = Vec::new();
    for cell in chosen {
        let mut repos = members(base.manifest, cell);
        if !base.plan.only.is_empty() {
            repos.retain(|m| base.plan.only.contains(m));
        }
        println!(
            "\n######## matrix cell {} ({} repos: {})",
            cell.name(),
            repos.len(),
            repos.join(", ")
        );
        if repos.is_empty() {
            continue;
        }
        let mut job = Job {
            manifest: base.manifest,
            plan: base.plan.clone(),
            run: base.run.clone(),
            store: base.store,
            print_plan: base.print_plan,
            extra: base.extra.clone(),
        };
        job.plan.cell_toolchain = cell.toolchain.clone();
        job.plan.variant = Some(cell.variant.clone());
        job.plan.only = repos;
        job.plan.skip_unavailable_toolchains = true;
        job.run.run_dir = base.run.run_dir.join(cell.name());
        job.plan.exec.run_dir = job.run.run_dir.clone();
        summaries.push(job.run()?);
        if crate::support::signals::cancelled().is_some() {
            // A cancelled run starts no further cell.
            break;
        }
    }
    let failed: Vec<&str> = summaries
        .iter()
        .filter(|s| s.failed())
        .map(|s| s.run_id.as_str())
        .collect();
    if let Some(sig) = crate::support::signals::cancelled() {
        println!(
            "matrix: CANCELLED by {}",
            crate::support::signals::name(sig)
        );
    } else if failed.is_empty() {
        println!("matrix: ok");
    } else {
        println!("matrix: FAILED in {}", failed.join(", "));
    }
    Ok(summaries)
}
