//! The variant × toolchain matrix (`ci --matrix`, `ci --cell NAME`, `cargo xtask matrix`).
//!
//! A repo may list `toolchains` (e.g. its `rust-version` MSRV and `stable`) and `variants`
//! in the manifest. Every distinct (toolchain, variant) pair any repo lists is a *cell*;
//! a cell is run as its own job: a plan resolved with that toolchain and variant, holding
//! the repos that list both (others are not selected in it), with its own cache keys
//! (the target key holds `rustc -vV` and the variant) and its own run directory. A
//! toolchain that is not installed makes its repos `skipped` with the reason, never a
//! failure or a crash. The workflow generator turns the cells into a GitHub Actions
//! `strategy.matrix`.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::engine::manifest::{Manifest, Repo};

/// One matrix cell.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Cell {
    /// Toolchain for every repo of the cell (`RUSTUP_TOOLCHAIN`); `None` = each repo's own.
    pub toolchain: Option<String>,
    /// Variant.
    pub variant: String,
}

impl Cell {
    /// `<toolchain or "default">-<variant>`, used for `--cell`, run directories and
    /// workflow job names.
    pub fn name(&self) -> String {
        format!(
            "{}-{}",
            self.toolchain.as_deref().unwrap_or("default"),
            self.variant
        )
    }

    /// Whether `repo` takes part in this cell.
    pub fn has(&self, repo: &Repo, default_variant: &str) -> bool {
        let tc_ok = match &self.toolchain {
            None => repo.toolchains.is_empty(),
            Some(t) => repo.toolchains.iter().any(|x| x == t),
        };
        let v_ok = if repo.variants.is_empty() {
            self.variant == default_variant
        } else {
            repo.variants.contains(&self.variant)
        };
        tc_ok && v_ok
    }
}

/// Every cell of the manifest, sorted (default toolchain first).
pub fn cells(manifest: &Manifest) -> Vec<Cell> {
    let default_variant = &manifest.defaults.variant;
    let mut set = BTreeSet::new();
    for r in &manifest.repos {
        let tcs: Vec<Option<String>> = if r.toolchains.is_empty() {
            vec![None]
        } else {
            r.toolchains.iter().cloned().map(Some).collect()
        };
        let vs: Vec<String> = if r.variants.is_empty() {
            vec![default_variant.clone()]
        } else {
            r.variants.clone()
        };
        for t in &tcs {
            for v in &vs {
                set.insert(Cell {
                    toolchain: t.clone(),
                    variant: v.clone(),
                });
            }
        }
    }
    set.into_iter().collect()
}

/// The repos of `cell`, in manifest order.
pub fn members(manifest: &Manifest, cell: &Cell) -> Vec<String> {
    manifest
        .repos
        .iter()
        .filter(|r| cell.has(r, &manifest.defaults.variant))
        .map(|r| r.name.clone())
        .collect()
}

/// `cargo xtask matrix --format json`: the cells with their repos.
#[derive(Debug, Serialize)]
pub struct MatrixJson {
    /// Format version.
    pub schema_version: u32,
    /// Cells.
    pub cells: Vec<CellJson>,
}

/// One cell in [`MatrixJson`].
#[derive(Debug, Serialize)]
pub struct CellJson {
    /// `--cell` name.
    pub name: String,
    /// The cell.
    #[serde(flatten)]
    pub cell: Cell,
    /// Repos in it.
    pub repos: Vec<String>,
}

/// The matrix as data.
pub fn to_json(manifest: &Manifest) -> MatrixJson {
    MatrixJson {
        schema_version: 1,
        cells: cells(manifest)
            .into_iter()
            .map(|c| CellJson {
                name: c.name(),
                repos: members(manifest, &c),
                cell: c,
            })
            .collect(),
    }
}

/// Run every cell (or only `only_cell`) one after the other, each as its own job: its own
/// plan, cache keys, run directory (`<run dir>/<cell>`) and metrics record. Prints each
/// cell's summary, sends one notification for the matrix (the first failed cell's), and
/// returns exit code 1 when any repo of any cell failed.
///
/// Errors: an unknown `only_cell` (the message lists the cells), or a cell's plan cannot
/// be resolved.
pub fn run_cells(
    manifest: &Manifest,
    base: &crate::engine::plan::PlanOptions,
    store: &crate::cache::Tiered,
    run: &crate::engine::run::RunOptions,
    only_cell: Option<&str>,
) -> anyhow::Result<std::process::ExitCode> {
    let cache = store.cache();
    let all = cells(manifest);
    let chosen: Vec<&Cell> = match only_cell {
        Some(name) => {
            let c = all.iter().find(|c| c.name() == name).ok_or_else(|| {
                anyhow::anyhow!(
                    "no matrix cell `{name}` (cells: {})",
                    all.iter().map(Cell::name).collect::<Vec<_>>().join(", ")
                )
            })?;
            vec![c]
        }
        None => all.iter().collect(),
    };
    let mut failed = Vec::new();
    let mut notify_with: Option<crate::engine::summary::RunSummary> = None;
    for cell in chosen {
        let mut members = members(manifest, cell);
        if !base.only.is_empty() {
            members.retain(|m| base.only.contains(m));
        }
        println!(
            "\n######## matrix cell {} ({} repos: {})",
            cell.name(),
            members.len(),
            members.join(", ")
        );
        if members.is_empty() {
            continue;
        }
        let opts = crate::engine::plan::PlanOptions {
            toolchain: cell.toolchain.clone().or_else(|| base.toolchain.clone()),
            variant: Some(cell.variant.clone()),
            only: members,
            skip_unavailable_toolchains: true,
            ..base.clone()
        };
        let mut chain_cache = Vec::new();
        let resolved = crate::engine::plan::resolve_with(manifest, &opts, cache, &mut |keys| {
            chain_cache = crate::engine::run::restore_chain(store, keys, run.restore);
        })?;
        let mut ropts = run.clone();
        ropts.run_dir = run.run_dir.join(cell.name());
        // Each cell is a job of its own in the metrics history.
        let probe = crate::report::metrics::Probe::start(cache.root());
        let summary = crate::engine::run::run(&resolved.plan, store, &ropts, chain_cache)?;
        drop(resolved);
        print!("{}", summary.render());
        probe.finish(&summary, cache, &ropts.run_dir);
        if summary.failed() {
            failed.push(cell.name());
        }
        // One notification for the whole matrix: the first failed cell's, else the last.
        if notify_with
            .as_ref()
            .is_none_or(|s: &crate::engine::summary::RunSummary| !s.failed())
        {
            notify_with = Some(summary);
        }
    }
    if let Some(s) = &notify_with {
        crate::report::notify::after_run(manifest, s, cache.root());
    }
    println!("logs: {}", run.run_dir.display());
    if failed.is_empty() {
        println!("matrix: ok");
        Ok(std::process::ExitCode::SUCCESS)
    } else {
        println!("matrix: FAILED in {}", failed.join(", "));
        Ok(std::process::ExitCode::from(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn cells_and_members() {
        let m = Manifest::parse(
            r#"
[[repo]]
name = "a"
github = "o/a"
toolchains = ["1.85", "stable"]
variants = ["base", "experimental"]
[[repo]]
name = "b"
github = "o/b"
"#,
            Path::new("ci/chain.toml"),
        )
        .unwrap();
        let names: Vec<String> = cells(&m).iter().map(Cell::name).collect();
        assert_eq!(
            names,
            [
                "default-base",
                "1.85-base",
                "1.85-experimental",
                "stable-base",
                "stable-experimental"
            ]
        );
        let c = &cells(&m)[1];
        assert_eq!(members(&m, c), ["a"]);
        assert_eq!(members(&m, &cells(&m)[0]), ["b"]);
    }
}
