//! Registry dependency mode: take a repo's sibling `[patch.crates-io]` entries out for the
//! duration of a run, as the real bllvm repos' CI does with `sed`, and put them back after.
//!
//! Only entries whose `path` points into another checkout of the chain are removed; git
//! patches (e.g. blvm-node's `quinn-proto`) and paths inside the repo stay. The original
//! `Cargo.toml` is kept beside it as `Cargo.toml.orig.bllvm-ci` until it is restored, so a
//! run killed half-way is repaired by the next one ([`restore_leftovers`]).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Suffix of the backup of a manifest whose patches were removed.
pub const BACKUP_SUFFIX: &str = "orig.bllvm-ci";

/// Restores the original `Cargo.toml` when dropped.
#[derive(Debug)]
pub struct StrippedManifest {
    manifest: PathBuf,
    backup: PathBuf,
    /// Names of the patch entries removed.
    pub removed: Vec<String>,
}

impl Drop for StrippedManifest {
    fn drop(&mut self) {
        if let Err(e) = std::fs::rename(&self.backup, &self.manifest) {
            eprintln!(
                "warning: could not restore {} from {}: {e}; move it back by hand",
                self.manifest.display(),
                self.backup.display()
            );
        }
    }
}

fn backup_path(manifest: &Path) -> PathBuf {
    manifest.with_extension(format!("toml.{BACKUP_SUFFIX}"))
}

/// Put back a `Cargo.toml` a killed run left stripped. Returns whether one was restored.
pub fn restore_leftovers(repo_dir: &Path) -> Result<bool> {
    let manifest = repo_dir.join("Cargo.toml");
    let backup = backup_path(&manifest);
    if backup.exists() {
        std::fs::rename(&backup, &manifest)
            .with_context(|| format!("restore {} from {}", manifest.display(), backup.display()))?;
        return Ok(true);
    }
    Ok(false)
}

/// Remove from `repo_dir/Cargo.toml` the `[patch.crates-io]` entries whose `path` resolves
/// into one of `sibling_dirs`. Returns `None` when there was nothing to remove (the file is
/// untouched), else a guard that restores the file when dropped.
///
/// Errors: the manifest cannot be read, parsed or written.
pub fn strip_sibling_patches(
    repo_dir: &Path,
    sibling_dirs: &[PathBuf],
) -> Result<Option<StrippedManifest>> {
    let manifest = repo_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("read {}", manifest.display()))?;
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parse {}", manifest.display()))?;
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let siblings: Vec<PathBuf> = sibling_dirs.iter().map(|d| canon(d)).collect();
    let mut removed = Vec::new();
    if let Some(patches) = doc
        .get_mut("patch")
        .and_then(|p| p.get_mut("crates-io"))
        .and_then(|c| c.as_table_like_mut())
    {
        let names: Vec<String> = patches.iter().map(|(k, _)| k.to_owned()).collect();
        for name in names {
            let path = patches
                .get(&name)
                .and_then(|v| v.get("path"))
                .and_then(|p| p.as_str())
                .map(|p| canon(&repo_dir.join(p)));
            if let Some(path) = path {
                if siblings.iter().any(|s| path.starts_with(s)) {
                    patches.remove(&name);
                    removed.push(name);
                }
            }
        }
    }
    if removed.is_empty() {
        return Ok(None);
    }
    let backup = backup_path(&manifest);
    std::fs::copy(&manifest, &backup).with_context(|| format!("back up {}", manifest.display()))?;
    std::fs::write(&manifest, doc.to_string())
        .with_context(|| format!("write {}", manifest.display()))?;
    Ok(Some(StrippedManifest {
        manifest,
        backup,
        removed,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_only_sibling_paths_and_restores() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("node");
        let sib = t.path().join("protocol");
        std::fs::create_dir_all(&repo).unwrap();
        std::fs::create_dir_all(&sib).unwrap();
        std::fs::create_dir_all(repo.join("vendored")).unwrap();
        let original = r#"[package]
name = "node"
version = "0.1.0"

[patch.crates-io]
quinn-proto = { git = "https://example.invalid/quinn", tag = "x" }
# sibling
protocol = { path = "../protocol" }
inner = { path = "vendored" }
"#;
        std::fs::write(repo.join("Cargo.toml"), original).unwrap();
        {
            let g = strip_sibling_patches(&repo, std::slice::from_ref(&sib))
                .unwrap()
                .unwrap();
            assert_eq!(g.removed, ["protocol"]);
            let now = std::fs::read_to_string(repo.join("Cargo.toml")).unwrap();
            assert!(
                !now.contains("../protocol")
                    && now.contains("quinn-proto")
                    && now.contains("vendored"),
                "{now}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(repo.join("Cargo.toml")).unwrap(),
            original
        );
        assert!(strip_sibling_patches(&repo, &[t.path().join("other")])
            .unwrap()
            .is_none());
    }
}
