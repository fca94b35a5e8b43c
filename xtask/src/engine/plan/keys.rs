//! The cache keys a plan computes: the chain-wide registry and git keys (over the selected
//! repos' lockfiles) and each repo's target key. The inputs are listed explicitly; see
//! [`crate::cache::key`] for `KEY_VERSION` and how a key is derived.

use crate::cache::{CacheKey, Stage};
use crate::engine::manifest::{DepsMode, Repo};

/// The chain-wide cache keys (registry, git), known from the lockfiles before any
/// `cargo metadata` runs.
#[derive(Debug, Clone, Default)]
pub struct ChainKeys {
    /// Registry key over the selected repos' lockfiles (absent when none has one).
    pub registry: Option<CacheKey>,
    /// Git key, present only when some lockfile has a git dependency.
    pub git: Option<CacheKey>,
}

/// The registry and git keys: one input per repo lockfile (`lock_hashes` sorted by repo).
pub(super) fn chain_keys(lock_hashes: &[(String, String)], has_git: bool) -> ChainKeys {
    if lock_hashes.is_empty() {
        return ChainKeys::default();
    }
    let inputs: Vec<(String, String)> = lock_hashes
        .iter()
        .map(|(n, h)| (format!("lockfile-sha256 {n}"), h.clone()))
        .collect();
    let all = crate::cache::key::hash_inputs(&inputs);
    ChainKeys {
        registry: Some(CacheKey::derive(
            Stage::Registry,
            "registry",
            inputs.clone(),
            &all,
        )),
        git: has_git.then(|| CacheKey::derive(Stage::Git, "git", inputs, &all)),
    }
}

/// The target dir key of a repo: KEY_VERSION, stage, repo, variant, features, profile,
/// dependency mode, `rustc -vV` and the `$CARGO_HOME` path make the environment part; the
/// lockfile hash the rest.
pub fn target_key(
    r: &Repo,
    variant: &str,
    features: &[String],
    profile: &str,
    deps: DepsMode,
    rustc: &str,
    lock_sha256: &str,
) -> CacheKey {
    let mut sorted = features.to_vec();
    sorted.sort();
    sorted.dedup();
    CacheKey::derive(
        Stage::Target,
        &format!("{}-{variant}", r.name),
        vec![
            ("repo".into(), r.name.clone()),
            ("variant".into(), variant.to_owned()),
            ("features".into(), sorted.join(",")),
            ("profile".into(), profile.to_owned()),
            ("deps".into(), deps.to_string()),
            ("rustc -vV".into(), rustc.to_owned()),
            // Cargo fingerprints registry dependencies by the path of their sources under
            // $CARGO_HOME ("PathToSourceChanged"): an entry built with another cargo home
            // would recompile every dependency, so it must not match.
            (
                "cargo home".into(),
                crate::cache::cargo_home::cargo_home().display().to_string(),
            ),
        ],
        lock_sha256,
    )
}
