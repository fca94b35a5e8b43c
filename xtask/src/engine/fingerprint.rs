//! Input fingerprints: one sha256 per repo and variant over everything that can change a
//! repo's result, including the fingerprints of its upstream repos, so a change in
//! consensus changes protocol's, node's and sdk's fingerprints and nothing else (the
//! Turborepo/Bazel idea, applied to a chain of repositories).
//!
//! Inputs (all listed in [`Fingerprint::inputs`], printed by `plan -v`):
//! - `FINGERPRINT_VERSION` (change it when the inputs change);
//! - the checkout's content: the git tree of `HEAD` plus a hash of uncommitted changes
//!   (tracked diffs and untracked, non-ignored files), so local runs are correct; a
//!   checkout that is not a git repository is hashed file by file;
//! - the `Cargo.lock` hash, `rustc -vV`, variant features, profile, dependency mode;
//! - every step with its program, arguments, timeout and environment, and the repo env;
//! - the fingerprint of every direct upstream repo (which includes theirs).
//!
//! Pure except for [`content_hash`], which asks git (or walks the tree).

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cache::key::hash_inputs;
use crate::support::fs::{sha256_file, sha256_hex};

/// Version of the fingerprint derivation; bump when its inputs change.
pub const FINGERPRINT_VERSION: &str = "1";

/// A repo's fingerprint and the inputs it was computed from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// Hex sha256 over `inputs`.
    pub hash: String,
    /// `(name, value)` in hashing order.
    pub inputs: Vec<(String, String)>,
}

impl Fingerprint {
    /// Hash `inputs` (prefixed with [`FINGERPRINT_VERSION`]).
    pub fn new(mut inputs: Vec<(String, String)>) -> Fingerprint {
        inputs.insert(
            0,
            ("fingerprint-version".into(), FINGERPRINT_VERSION.into()),
        );
        Fingerprint {
            hash: hash_inputs(&inputs),
            inputs,
        }
    }

    /// The first 16 hex characters, for display.
    pub fn short(&self) -> &str {
        &self.hash[..16]
    }

    /// Names of the inputs whose value differs from `old` (added and removed ones too),
    /// in order: the answer to "why does this repo run again?".
    pub fn changed_inputs(&self, old: &[(String, String)]) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.inputs {
            match old.iter().find(|(ok, _)| ok == k) {
                Some((_, ov)) if ov == v => {}
                Some(_) => out.push(k.clone()),
                None => out.push(format!("{k} (new input)")),
            }
        }
        for (k, _) in old {
            if !self.inputs.iter().any(|(nk, _)| nk == k) {
                out.push(format!("{k} (no longer an input)"));
            }
        }
        out
    }
}

/// Content hash of a checkout: `git:<tree>` plus `+dirty:<hash>` for uncommitted changes,
/// or `files:<hash>` over every file (path and content) when `dir` is not inside a git
/// work tree. `target/` and `.git/` are never part of it.
///
/// Errors: git fails in an unexpected way, or a file cannot be read.
pub fn content_hash(dir: &Path) -> Result<String> {
    let git = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .with_context(|| format!("run git {} in {}", args.join(" "), dir.display()))
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() || String::from_utf8_lossy(&inside.stdout).trim() != "true" {
        return files_hash(dir);
    }
    // The tree of this directory at HEAD (a subdirectory of a larger repo hashes only its
    // own subtree). A repo without commits has no tree: everything is "dirty".
    let tree = git(&["rev-parse", "HEAD:./"])?;
    let tree = if tree.status.success() {
        String::from_utf8_lossy(&tree.stdout).trim().to_owned()
    } else {
        "none".to_owned()
    };
    let diff = git(&[
        "diff",
        "HEAD",
        "--binary",
        "--no-ext-diff",
        "--",
        ".",
        ":(exclude)target",
    ])?;
    let untracked = git(&[
        "ls-files",
        "--others",
        "--exclude-standard",
        "-z",
        "--",
        ".",
    ])?;
    let mut dirty = Vec::new();
    if !diff.stdout.is_empty() {
        dirty.push(("diff".to_owned(), sha256_hex(&diff.stdout)));
    }
    for rel in untracked
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
    {
        let rel = String::from_utf8_lossy(rel).into_owned();
        if rel.starts_with("target/") {
            continue;
        }
        let h = sha256_file(&dir.join(&rel)).unwrap_or_else(|_| "unreadable".into());
        dirty.push((rel, h));
    }
    if dirty.is_empty() {
        Ok(format!("git:{tree}"))
    } else {
        Ok(format!("git:{tree}+dirty:{}", &hash_inputs(&dirty)[..16]))
    }
}

fn files_hash(dir: &Path) -> Result<String> {
    let mut files = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || (e.file_name() != "target" && e.file_name() != ".git"))
    {
        let e = e.with_context(|| format!("walk {}", dir.display()))?;
        if e.file_type().is_file() {
            let rel = e
                .path()
                .strip_prefix(dir)
                .expect("under dir")
                .display()
                .to_string();
            files.push((rel, sha256_file(e.path())?));
        }
    }
    Ok(format!("files:{}", &hash_inputs(&files)[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_inputs_names_what_moved() {
        let a = Fingerprint::new(vec![("x".into(), "1".into()), ("y".into(), "2".into())]);
        let b = Fingerprint::new(vec![
            ("x".into(), "1".into()),
            ("y".into(), "3".into()),
            ("z".into(), "0".into()),
        ]);
        assert_ne!(a.hash, b.hash);
        assert_eq!(b.changed_inputs(&a.inputs), ["y", "z (new input)"]);
        assert!(a.changed_inputs(&a.inputs).is_empty());
    }

    #[test]
    fn content_hash_sees_uncommitted_and_untracked_changes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        let plain = content_hash(d).unwrap();
        assert!(plain.starts_with("files:"));
        let git = |args: &[&str]| {
            assert!(Command::new("git")
                .args(args)
                .current_dir(d)
                .status()
                .unwrap()
                .success());
        };
        git(&["init", "-q"]);
        git(&["add", "-A"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e.invalid",
            "commit",
            "-qm",
            "x",
        ]);
        let clean = content_hash(d).unwrap();
        assert!(
            clean.starts_with("git:") && !clean.contains("dirty"),
            "{clean}"
        );
        std::fs::write(d.join("a.rs"), "fn a() { 1; }").unwrap();
        let edited = content_hash(d).unwrap();
        assert!(edited.contains("+dirty:"), "{edited}");
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        assert_eq!(content_hash(d).unwrap(), clean);
        std::fs::write(d.join("new.rs"), "").unwrap();
        assert_ne!(content_hash(d).unwrap(), clean);
        std::fs::remove_file(d.join("new.rs")).unwrap();
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("target/junk"), "x").unwrap();
        assert_eq!(content_hash(d).unwrap(), clean, "target/ is not an input");
    }
}
