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
