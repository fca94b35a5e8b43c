//! The cache keys a plan computes: the chain-wide registry and git keys (over the selected
//! repos' lockfiles) and each repo's target key. The inputs are listed explicitly; see
//! [`crate::cache::key`] for `KEY_VERSION` and how a key is derived.

use std::path::Path;

use crate::cache::{CacheKey, Stage};
use crate::engine::fingerprint::BuildEnv;
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

/// Everything a repo's target key is derived from (see [`target_key`]).
#[derive(Debug, Clone, Copy)]
pub struct TargetInputs<'a> {
    /// The repo (its name is the key's prefix and an input).
    pub repo: &'a Repo,
    /// Variant name.
    pub variant: &'a str,
    /// The variant's features (order and duplicates do not matter).
    pub features: &'a [String],
    /// Cargo profile.
    pub profile: &'a str,
    /// Dependency mode.
    pub deps: DepsMode,
    /// `rustc -vV` of the repo's toolchain.
    pub rustc: &'a str,
    /// `$CARGO_HOME`, as the steps will see it.
    pub cargo_home: &'a Path,
    /// The build environment: the variables cargo and rustc read and cargo's config files.
    pub build: &'a BuildEnv,
    /// sha256 of the repo's own `Cargo.lock`.
    pub lock_sha256: &'a str,
}

/// The target dir key of a repo: KEY_VERSION, stage, repo, variant, features, profile,
/// dependency mode, `rustc -vV`, the `$CARGO_HOME` path and the build environment
/// (`env NAME` and `cargo config PATH`, as in the fingerprint: `RUSTFLAGS` or a config's
/// `rustflags` change every artifact, so an entry built under others must not match, not
/// even as a restore prefix) make the environment part; the lockfile hash the rest.
pub fn target_key(i: &TargetInputs<'_>) -> CacheKey {
    let mut sorted = i.features.to_vec();
    sorted.sort();
    sorted.dedup();
    let mut inputs: Vec<(String, String)> = vec![
        ("repo".into(), i.repo.name.clone()),
        ("variant".into(), i.variant.to_owned()),
        ("features".into(), sorted.join(",")),
        ("profile".into(), i.profile.to_owned()),
        ("deps".into(), i.deps.to_string()),
        ("rustc -vV".into(), i.rustc.to_owned()),
        // Cargo fingerprints registry dependencies by the path of their sources under
        // $CARGO_HOME ("PathToSourceChanged"): an entry built with another cargo home
        // would recompile every dependency, so it must not match.
        ("cargo home".into(), i.cargo_home.display().to_string()),
    ];
    inputs.extend(i.build.inputs());
    CacheKey::derive(
        Stage::Target,
        &format!("{}-{}", i.repo.name, i.variant),
        inputs,
        i.lock_sha256,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::manifest::Manifest;
    use crate::support::fs::sha256_hex;

    fn repo(name: &str) -> Repo {
        let text = format!("[[repo]]\nname = \"{name}\"\ngithub = \"o/{name}\"\n");
        Manifest::parse(&text, Path::new("chain.toml"))
            .unwrap()
            .repos
            .remove(0)
    }

    /// One change to the inputs, named.
    type Edit = fn(&mut Owned);

    /// Owned values a [`TargetInputs`] borrows, so each test can change one.
    #[derive(Clone)]
    struct Owned {
        repo: Repo,
        variant: String,
        features: Vec<String>,
        profile: String,
        deps: DepsMode,
        rustc: String,
        cargo_home: std::path::PathBuf,
        build: BuildEnv,
        lock: String,
    }

    impl Owned {
        fn key(&self) -> CacheKey {
            target_key(&TargetInputs {
                repo: &self.repo,
                variant: &self.variant,
                features: &self.features,
                profile: &self.profile,
                deps: self.deps,
                rustc: &self.rustc,
                cargo_home: &self.cargo_home,
                build: &self.build,
                lock_sha256: &self.lock,
            })
        }
    }

    #[test]
    fn each_input_alone_changes_the_target_key() {
        let base = Owned {
            repo: repo("node"),
            variant: "base".into(),
            features: vec!["a".into(), "b".into()],
            profile: "dev".into(),
            deps: DepsMode::Patched,
            rustc: "rustc 1.95.0".into(),
            cargo_home: "/home/u/.cargo".into(),
            build: BuildEnv::default(),
            lock: sha256_hex("lock"),
        };
        let k = base.key();
        let mut reordered = base.clone();
        reordered.features = vec!["b".into(), "a".into(), "a".into()];
        assert_eq!(
            reordered.key(),
            k,
            "feature order and duplicates do not matter"
        );
        let changes: Vec<(&str, Edit)> = vec![
            ("repo", |o| o.repo = repo("sdk")),
            ("variant", |o| o.variant = "experimental".into()),
            ("features", |o| o.features.push("c".into())),
            ("profile", |o| o.profile = "release".into()),
            ("deps", |o| o.deps = DepsMode::Registry),
            ("rustc", |o| o.rustc = "rustc 1.96.0".into()),
            ("cargo home", |o| o.cargo_home = "/other/.cargo".into()),
            ("an env variable", |o| {
                o.build.vars.push(("RUSTFLAGS".into(), "--cfg x".into()));
            }),
            ("a cargo config", |o| {
                o.build
                    .configs
                    .push(("/r/.cargo/config.toml".into(), sha256_hex("c")));
            }),
            ("lockfile", |o| o.lock = sha256_hex("lock2")),
        ];
        for (what, change) in changes {
            let mut o = base.clone();
            change(&mut o);
            assert_ne!(o.key().key, k.key, "{what} must change the target key");
            if what != "lockfile" {
                assert_ne!(
                    o.key().restore_prefix(),
                    k.restore_prefix(),
                    "{what} must change the restore prefix too"
                );
            }
        }
        // The lockfile input is exactly the hash given, under its own name.
        assert_eq!(
            k.inputs.last(),
            Some(&("lockfile-sha256".to_owned(), base.lock.clone()))
        );
    }

    #[test]
    fn chain_keys_hash_each_lockfile_under_its_repo() {
        let a = sha256_hex("a");
        let b = sha256_hex("b");
        let keys = chain_keys(&[("x".into(), a.clone()), ("y".into(), b.clone())], false);
        let reg = keys.registry.unwrap();
        assert!(keys.git.is_none());
        assert!(reg
            .inputs
            .contains(&("lockfile-sha256 x".to_owned(), a.clone())));
        assert!(reg
            .inputs
            .contains(&("lockfile-sha256 y".to_owned(), b.clone())));
        let other = chain_keys(&[("x".into(), a.clone()), ("y".into(), a.clone())], true);
        assert_ne!(other.registry.unwrap().key, reg.key);
        assert!(other.git.is_some());
        assert!(chain_keys(&[], true).registry.is_none());
    }
}
