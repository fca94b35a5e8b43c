//! `cargo xtask checkout`: clone every repo whose checkout is missing, from its `github`
//! field, with `--git-base` pointing at GitHub, a mirror, or a directory of bare repos.

use std::path::Path;

use anyhow::{bail, Result};
use xshell::{cmd, Shell};

use crate::engine::manifest::Manifest;

/// Clone the missing checkouts under `root`; existing ones are left alone. Returns the
/// names cloned. Every repo is attempted; the error lists all that failed.
pub fn checkout(
    sh: &Shell,
    manifest: &Manifest,
    root: &Path,
    git_base: &str,
    depth: Option<u32>,
) -> Result<Vec<String>> {
    let mut cloned = Vec::new();
    let mut failed = Vec::new();
    std::fs::create_dir_all(root)?;
    for r in &manifest.repos {
        let dir = Manifest::checkout_dir(root, r);
        if dir.exists() {
            println!("{}: present at {}", r.name, dir.display());
            continue;
        }
        let url = format!("{}/{}.git", git_base.trim_end_matches('/'), r.github);
        let depth_args: Vec<String> = depth
            .map(|d| vec!["--depth".to_owned(), d.to_string()])
            .unwrap_or_default();
        println!("{}: cloning {url} into {}", r.name, dir.display());
        // Clone beside the final path and rename, so a failed or killed clone never
        // leaves a half checkout that a later run would take for a present one.
        let tmp = dir.with_file_name(format!(
            ".{}.bllvm-ci-clone",
            dir.file_name()
                .map_or_else(|| r.name.clone(), |n| n.to_string_lossy().into_owned())
        ));
        let _ = crate::support::fs::remove_tree(&tmp);
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let out = cmd!(sh, "git clone --quiet {depth_args...} {url} {tmp}")
            .quiet()
            .ignore_status()
            .output()?;
        if out.status.success() {
            std::fs::rename(&tmp, &dir)?;
            cloned.push(r.name.clone());
        } else {
            let _ = crate::support::fs::remove_tree(&tmp);
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why
                .lines()
                .find(|l| l.starts_with("fatal") || l.starts_with("error"))
                .unwrap_or("git clone failed");
            failed.push(format!("  - {}: {url}: {why}", r.name));
        }
    }
    if !failed.is_empty() {
        bail!(
            "could not clone:\n{}\ncheck the network and --git-base (clones come from <git-base>/<owner>/<name>.git)",
            failed.join("\n")
        );
    }
    Ok(cloned)
}
