//! `--affected BASE..HEAD`: which repos changed between two git refs, and everything
//! downstream of them.
//!
//! Fails closed: skipping a repo as "not affected" is a promise that nothing it builds
//! from changed, so a ref that does not resolve to a commit in a checkout (a shallow
//! clone that never fetched the base, a typo) is an error that stops the run, never a
//! run that builds nothing. Refs are checked before git sees them (one starting with `-`
//! would be read as an option: `--output=FILE` truncated FILE) and passed after
//! `--end-of-options`; the diff then runs on the resolved commit ids only.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::engine::graph::Graph;
use crate::engine::manifest::Manifest;

/// How to get refs that resolve, for every error of this module.
const FETCH_FIX: &str = "fetch the history first: in GitHub Actions use `actions/checkout` with `fetch-depth: 0`; elsewhere `git fetch origin <ref>` (or `git fetch --unshallow`) in each checkout, or run without --affected";

/// Check one git ref given to `--affected` (or `BLLVM_CI_BASE` / `BLLVM_CI_HEAD`, named
/// by `what`): not empty, not starting with `-` (git would read it as an option), and
/// without whitespace or control characters (no ref has them).
///
/// Errors: the ref is not of that form, saying why.
pub fn check_ref(what: &str, r: &str) -> Result<()> {
    if r.is_empty() {
        bail!("{what} is empty: give a git ref (branch, tag or commit)");
    }
    if r.starts_with('-') {
        bail!(
            "{what} `{r}` starts with `-`: a git ref never does (git would read it as an option)"
        );
    }
    if r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} `{r}` holds whitespace or a control character: a git ref never does");
    }
    Ok(())
}

/// Parse `BASE..HEAD` (two refs, each checked by [`check_ref`]).
///
/// Errors: not of that form, or a ref is not acceptable.
pub fn parse_range(spec: &str) -> Result<(String, String)> {
    match spec.split_once("..") {
        Some((b, h)) if !b.is_empty() && !h.is_empty() && !h.starts_with('.') => {
            check_ref("the base of --affected", b)?;
            check_ref("the head of --affected", h)?;
            Ok((b.to_owned(), h.to_owned()))
        }
        _ => bail!("`--affected {spec}` is not of the form BASE..HEAD (two git refs)"),
    }
}

/// The commit id `r` names in the git checkout `dir`.
///
/// Errors: `dir` is not in a git work tree, or `r` does not name a commit there; the
/// message says how to fetch it.
fn resolve_commit(dir: &Path, repo: &str, r: &str) -> Result<String> {
    check_ref("a ref of --affected", r)?;
    let out = Command::new("git")
        .args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
        .arg(format!("{r}^{{commit}}"))
        .current_dir(dir)
        .output()
        .with_context(|| format!("run git rev-parse in {}", dir.display()))?;
    if !out.status.success() {
        bail!(
            "--affected: `{r}` does not name a commit in the checkout of `{repo}` ({}): is it a shallow clone, or a git checkout at all?\nfix: {FETCH_FIX}",
            dir.display()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether anything under `dir` changed between two commit ids.
fn changed_between(dir: &Path, repo: &str, base: &str, head: &str) -> Result<bool> {
    let out = Command::new("git")
        .args([
            "diff",
            "--name-only",
            "--end-of-options",
            base,
            head,
            "--",
            ".",
        ])
        .current_dir(dir)
        .output()
        .with_context(|| format!("run git diff in {}", dir.display()))?;
    if !out.status.success() {
        bail!(
            "--affected: `git diff {base} {head}` failed in the checkout of `{repo}`: {}\nfix: {FETCH_FIX}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(out.stdout.iter().any(|b| !b.is_ascii_whitespace()))
}

/// The repos `--affected BASE..HEAD` selects: those whose checkout has changes between the
/// two refs (`git diff --name-only BASE HEAD -- .` in the checkout, so a repo that is a
/// subdirectory of a larger git repo counts only its own files), plus everything downstream
/// of them. Returns the set and, for every other repo, the reason it is skipped.
///
/// Errors: a ref does not resolve to a commit in some checkout, or git fails there: every
/// such checkout is named, with how to fix it.
pub(super) fn affected_repos(
    manifest: &Manifest,
    root: &Path,
    graph: &Graph,
    base: &str,
    head: &str,
) -> Result<(BTreeSet<String>, BTreeMap<String, String>)> {
    let mut changed = BTreeSet::new();
    let mut notes = BTreeMap::new();
    let mut errors = Vec::new();
    for r in &manifest.repos {
        let dir = Manifest::checkout_dir(root, r);
        let diff = resolve_commit(&dir, &r.name, base).and_then(|b| {
            let h = resolve_commit(&dir, &r.name, head)?;
            changed_between(&dir, &r.name, &b, &h)
        });
        match diff {
            Ok(true) => {
                changed.insert(r.name.clone());
            }
            Ok(false) => {
                notes.insert(
                    r.name.clone(),
                    format!("not affected: no change in {base}..{head} here or upstream"),
                );
            }
            Err(e) => errors.push(format!("{e:#}")),
        }
    }
    if !errors.is_empty() {
        bail!("{}", errors.join("\n"));
    }
    let names: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut set = graph.downstream_closure(&names);
    set.extend(changed.iter().cloned());
    notes.retain(|n, _| !set.contains(n));
    Ok((set, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_that_git_would_read_as_options_are_refused() {
        for bad in [
            "--output=/tmp/x..HEAD",
            "main..-x",
            "a b..HEAD",
            "main",
            "..HEAD",
            "a..",
            "a...b",
        ] {
            assert!(parse_range(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_range("origin/main..HEAD").unwrap(),
            ("origin/main".to_owned(), "HEAD".to_owned())
        );
        assert!(check_ref("x", "-").is_err());
        assert!(check_ref("x", "").is_err());
        assert!(check_ref("x", "v1.0^").is_ok());
    }

    #[test]
    fn a_ref_that_does_not_resolve_is_an_error_with_the_fix() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        let git = |args: &[&str]| {
            assert!(Command::new("git")
                .args(args)
                .current_dir(d)
                .status()
                .unwrap()
                .success());
        };
        git(&["init", "-q"]);
        std::fs::write(d.join("f"), "x").unwrap();
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
        let head = resolve_commit(d, "r", "HEAD").unwrap();
        assert_eq!(head.len(), 40);
        let e = format!("{:#}", resolve_commit(d, "r", "deadbeef").unwrap_err());
        assert!(e.contains("fetch-depth: 0") && e.contains("`r`"), "{e}");
        assert!(resolve_commit(d, "r", "--output=x").is_err());
        assert!(!d.join("x").exists());
        assert!(!changed_between(d, "r", &head, &head).unwrap());
    }
}
