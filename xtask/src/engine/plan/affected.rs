//! `--affected BASE..HEAD`: which repos changed between two git refs, and everything
//! downstream of them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crate::engine::graph::Graph;
use crate::engine::manifest::Manifest;

/// The repos `--affected BASE..HEAD` selects: those whose checkout has changes between the
/// two refs (`git diff --name-only BASE HEAD -- .` in the checkout, so a repo that is a
/// subdirectory of a larger git repo counts only its own files), plus everything downstream
/// of them. Returns the set and, for every other repo, the reason it is skipped.
pub(super) fn affected_repos(
    manifest: &Manifest,
    root: &Path,
    graph: &Graph,
    base: &str,
    head: &str,
) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut changed = BTreeSet::new();
    let mut notes = BTreeMap::new();
    for r in &manifest.repos {
        let dir = Manifest::checkout_dir(root, r);
        let out = std::process::Command::new("git")
            .args(["diff", "--name-only", base, head, "--", "."])
            .current_dir(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                if o.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
                    changed.insert(r.name.clone());
                } else {
                    notes.insert(
                        r.name.clone(),
                        format!("not affected: no change in {base}..{head} here or upstream"),
                    );
                }
            }
            _ => {
                notes.insert(
                    r.name.clone(),
                    format!("not affected: {base}..{head} does not resolve in this checkout, and no upstream changed"),
                );
            }
        }
    }
    let names: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut set = graph.downstream_closure(&names);
    set.extend(changed.iter().cloned());
    notes.retain(|n, _| !set.contains(n));
    (set, notes)
}
