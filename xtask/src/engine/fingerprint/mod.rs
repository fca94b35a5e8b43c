//! Input fingerprints: one sha256 per repo and variant over everything that can change a
//! repo's result, including the fingerprints of its upstream repos, so a change in
//! consensus changes protocol's, node's and sdk's fingerprints and nothing else (the
//! Turborepo/Bazel idea, applied to a chain of repositories). A success recorded under a
//! fingerprint makes the repo `cached`: a green result is only as good as this list, so
//! anything that can change a build or a test is on it.
//!
//! Inputs, in hashing order (all listed in [`Fingerprint::inputs`], printed by `plan -v`;
//! [`RepoInputs::fingerprint`] is the one place they are assembled):
//! - `FINGERPRINT_VERSION` (change it when the inputs change);
//! - `content`: every file of the checkout a build can read — the git tree of `HEAD`, the
//!   diff of tracked files, and every untracked or ignored file outside target dirs
//!   ([`content::content_hash`], which says why not cargo's dep-info);
//! - `lockfile-sha256` (the repo's own `Cargo.lock`), `rustc -vV`, the variant's features,
//!   the profile, the dependency mode, the repo's `env` (manifest env, toolchain override,
//!   `CARGO_INCREMENTAL`);
//! - the build environment ([`build_env`]): `env NAME` for every variable cargo, rustc and
//!   the C toolchain read, and `cargo config PATH` for every cargo config file;
//! - `path dependency DIR` for every path package outside the chain's checkouts;
//! - every step with its program, arguments, timeout and environment;
//! - the fingerprint of every direct upstream repo (which includes theirs).
//!
//! Not inputs: what the machine and the run add to a step's command (the run dir, nextest,
//! JSON diagnostics in GitHub Actions, `CARGO_BUILD_JOBS` from `--jobs`), so `cached`
//! means the same on a laptop and in CI. A secret-looking variable's value is an input by
//! its hash only ([`build_env::shown_value`]).

pub mod build_env;
pub mod content;

use std::collections::BTreeMap;

use serde::Serialize;

pub use build_env::BuildEnv;
pub use content::content_hash;

use crate::cache::key::hash_inputs;
use crate::engine::manifest::{DepsMode, Step};
use crate::engine::steps;

/// How an input that could not be computed starts (`error: …`, e.g. the content hash).
pub const UNDECIDABLE_ERROR: &str = "error:";
/// How an input whose file could not be read starts (`unreadable: …`).
pub const UNDECIDABLE_UNREADABLE: &str = "unreadable:";

/// Version of the fingerprint derivation; bump when its inputs change (2: the build
/// environment, cargo config files, ignored files and path dependencies became inputs).
pub const FINGERPRINT_VERSION: &str = "2";

/// Everything one repo's fingerprint is computed from, gathered by the plan
/// (`engine::plan::resolve`). Borrowed, so the plan keeps its own copies.
#[derive(Debug, Clone, Copy)]
pub struct RepoInputs<'a> {
    /// The checkout's content hash ([`content_hash`]), or `error: …` when it failed.
    pub content: &'a str,
    /// sha256 of the repo's own `Cargo.lock` (`None`: a docs repo, or no lockfile).
    pub lock_sha256: Option<&'a str>,
    /// `rustc -vV` of the repo's toolchain (`None`: it cannot run).
    pub rustc: Option<&'a str>,
    /// The variant's features (not its name: a repo that lists no features for two
    /// variants builds the same thing under both).
    pub features: &'a [String],
    /// Cargo profile.
    pub profile: &'a str,
    /// Dependency mode.
    pub deps: DepsMode,
    /// The environment every step of the repo runs with (manifest env, toolchain override,
    /// `CARGO_INCREMENTAL`).
    pub env: &'a BTreeMap<String, String>,
    /// The build environment (variables and cargo config files).
    pub build: &'a BuildEnv,
    /// `(directory, content hash)` of every path package outside the chain's checkouts.
    pub path_deps: &'a [(String, String)],
    /// The manifest's steps, as written.
    pub steps: &'a [Step],
    /// `(repo, fingerprint hash)` of every direct upstream repo.
    pub upstream: &'a [(String, String)],
}

impl RepoInputs<'_> {
    /// The named inputs, in hashing order (see the module docs).
    pub fn named(&self) -> Vec<(String, String)> {
        let none = || "none".to_owned();
        let mut inputs: Vec<(String, String)> = vec![
            ("content".into(), self.content.to_owned()),
            (
                "lockfile-sha256".into(),
                self.lock_sha256.map_or_else(none, str::to_owned),
            ),
            (
                "rustc -vV".into(),
                self.rustc.map_or_else(none, str::to_owned),
            ),
            ("features".into(), self.features.join(",")),
            ("profile".into(), self.profile.to_owned()),
            ("deps".into(), self.deps.to_string()),
            ("env".into(), build_env::shown_map(self.env)),
        ];
        inputs.extend(self.build.inputs());
        for (dir, h) in self.path_deps {
            inputs.push((format!("path dependency {dir}"), h.clone()));
        }
        for step in self.steps {
            inputs.push((
                format!("step {}", step.name),
                format!(
                    "{} {} timeout={} env={}",
                    step.program,
                    steps::step_args(step, self.features, self.profile).join(" "),
                    step.timeout_secs,
                    build_env::shown_map(&step.env)
                ),
            ));
        }
        for (up, fp) in self.upstream {
            inputs.push((format!("upstream {up}"), fp.clone()));
        }
        inputs
    }

    /// The fingerprint over [`RepoInputs::named`].
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::new(self.named())
    }
}

/// One input that differs between two fingerprints (`None`: absent on that side).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The input's name (`content`, `env RUSTFLAGS`, `upstream x`, …).
    pub name: String,
    /// Its value in the older fingerprint.
    pub old: Option<String>,
    /// Its value now.
    pub new: Option<String>,
}

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

    /// The first input whose value could not be determined (`content` when the checkout
    /// could not be hashed, a cargo config file that cannot be read), as `(name, why)`.
    /// Such a fingerprint cannot promise anything: the repo runs, never `cached`, until
    /// the input can be read (what cannot be decided fails closed).
    pub fn undecidable(&self) -> Option<(&str, &str)> {
        self.inputs
            .iter()
            .find(|(_, v)| {
                v.starts_with(UNDECIDABLE_ERROR) || v.starts_with(UNDECIDABLE_UNREADABLE)
            })
            .map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Every input whose value differs from `old`'s, added and removed ones too, in this
    /// fingerprint's order then `old`'s: what `plan --explain` prints.
    pub fn changes(&self, old: &[(String, String)]) -> Vec<Change> {
        let find = |list: &[(String, String)], k: &str| {
            list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let mut out: Vec<Change> = self
            .inputs
            .iter()
            .filter_map(|(k, v)| {
                let o = find(old, k);
                (o.as_ref() != Some(v)).then(|| Change {
                    name: k.clone(),
                    old: o,
                    new: Some(v.clone()),
                })
            })
            .collect();
        out.extend(
            old.iter()
                .filter(|(k, _)| find(&self.inputs, k).is_none())
                .map(|(k, v)| Change {
                    name: k.clone(),
                    old: Some(v.clone()),
                    new: None,
                }),
        );
        out
    }
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
        let names: Vec<(String, bool)> = b
            .changes(&a.inputs)
            .into_iter()
            .map(|c| (c.name, c.old.is_none()))
            .collect();
        assert_eq!(names, [("y".to_owned(), false), ("z".to_owned(), true)]);
        assert!(a.changes(&a.inputs).is_empty());
    }

    fn step(name: &str) -> Step {
        Step {
            name: name.into(),
            program: "cargo".into(),
            args: vec!["build".into(), "--workspace".into()],
            features: true,
            timeout_secs: 60,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
        }
    }

    /// One change to the inputs, named.
    type Edit = fn(&mut Owned);

    /// Owned values a [`RepoInputs`] borrows, so each test can change one.
    #[derive(Clone)]
    struct Owned {
        content: String,
        lock: Option<String>,
        rustc: Option<String>,
        features: Vec<String>,
        profile: String,
        deps: DepsMode,
        env: BTreeMap<String, String>,
        build: BuildEnv,
        path_deps: Vec<(String, String)>,
        steps: Vec<Step>,
        upstream: Vec<(String, String)>,
    }

    impl Owned {
        fn base() -> Owned {
            Owned {
                content: "git:abc".into(),
                lock: Some("11".repeat(32)),
                rustc: Some("rustc 1.95.0".into()),
                features: vec!["a".into()],
                profile: "dev".into(),
                deps: DepsMode::Patched,
                env: BTreeMap::from([("CARGO_INCREMENTAL".into(), "0".into())]),
                build: BuildEnv::default(),
                path_deps: Vec::new(),
                steps: vec![step("build")],
                upstream: vec![("up".into(), "22".repeat(32))],
            }
        }

        fn fingerprint(&self) -> Fingerprint {
            RepoInputs {
                content: &self.content,
                lock_sha256: self.lock.as_deref(),
                rustc: self.rustc.as_deref(),
                features: &self.features,
                profile: &self.profile,
                deps: self.deps,
                env: &self.env,
                build: &self.build,
                path_deps: &self.path_deps,
                steps: &self.steps,
                upstream: &self.upstream,
            }
            .fingerprint()
        }
    }

    #[test]
    fn each_input_alone_changes_the_fingerprint() {
        let base = Owned::base();
        let fp = base.fingerprint();
        assert_eq!(fp, base.fingerprint(), "a fingerprint is deterministic");
        let changes: Vec<(&str, Edit)> = vec![
            ("content", |o| o.content = "git:abd".into()),
            ("lockfile", |o| o.lock = Some("33".repeat(32))),
            ("no lockfile", |o| o.lock = None),
            ("rustc", |o| o.rustc = Some("rustc 1.96.0".into())),
            ("features", |o| o.features.push("b".into())),
            ("profile", |o| o.profile = "release".into()),
            ("deps", |o| o.deps = DepsMode::Registry),
            ("repo env", |o| {
                o.env.insert("RUSTFLAGS".into(), "--cfg x".into());
            }),
            ("build env var", |o| {
                o.build.vars.push(("RUSTFLAGS".into(), "--cfg x".into()));
            }),
            ("cargo config", |o| {
                o.build
                    .configs
                    .push(("/c/.cargo/config.toml".into(), "44".repeat(32)));
            }),
            ("path dependency", |o| {
                o.path_deps.push(("/elsewhere/dep".into(), "git:1".into()));
            }),
            ("step args", |o| o.steps[0].args.push("--locked".into())),
            ("step program", |o| o.steps[0].program = "cross".into()),
            ("step timeout", |o| o.steps[0].timeout_secs = 61),
            ("step env", |o| {
                o.steps[0].env.insert("X".into(), "1".into());
            }),
            ("another step", |o| o.steps.push(step("doc"))),
            ("upstream fingerprint", |o| {
                o.upstream[0].1 = "55".repeat(32)
            }),
            ("another upstream", |o| {
                o.upstream.push(("up2".into(), "66".repeat(32)));
            }),
        ];
        for (what, change) in changes {
            let mut o = base.clone();
            change(&mut o);
            assert_ne!(
                o.fingerprint().hash,
                fp.hash,
                "{what} must change the fingerprint"
            );
        }
    }

    #[test]
    fn secret_values_are_inputs_by_hash_only() {
        let mut o = Owned::base();
        o.env.insert("API_TOKEN".into(), "hunter2".into());
        o.steps[0]
            .env
            .insert("WEBHOOK_URL".into(), "https://hooks.invalid/s3cr3t".into());
        let fp = o.fingerprint();
        let all = format!("{:?}", fp.inputs);
        assert!(!all.contains("hunter2") && !all.contains("s3cr3t"), "{all}");
        o.env.insert("API_TOKEN".into(), "hunter3".into());
        assert_ne!(
            o.fingerprint().hash,
            fp.hash,
            "a secret's change is still seen"
        );
    }

    #[test]
    fn changes_name_added_changed_and_removed_inputs_with_both_values() {
        let a = Fingerprint::new(vec![("x".into(), "1".into()), ("gone".into(), "g".into())]);
        let b = Fingerprint::new(vec![
            ("x".into(), "2".into()),
            ("env RUSTFLAGS".into(), "--cfg x".into()),
        ]);
        let c = b.changes(&a.inputs);
        let v = |s: &str| Some(s.to_owned());
        assert_eq!(
            c,
            [
                Change {
                    name: "x".into(),
                    old: v("1"),
                    new: v("2")
                },
                Change {
                    name: "env RUSTFLAGS".into(),
                    old: None,
                    new: v("--cfg x")
                },
                Change {
                    name: "gone".into(),
                    old: v("g"),
                    new: None
                },
            ]
        );
        assert!(b.changes(&b.inputs).is_empty());
    }

    #[test]
    fn an_input_that_could_not_be_read_makes_the_fingerprint_undecidable() {
        let mut o = Owned::base();
        assert_eq!(o.fingerprint().undecidable(), None);
        o.content = "error: run git: permission denied".into();
        assert_eq!(
            o.fingerprint().undecidable(),
            Some(("content", "error: run git: permission denied"))
        );
        let mut o = Owned::base();
        o.build
            .configs
            .push(("/r/.cargo/config.toml".into(), "unreadable: denied".into()));
        assert!(o
            .fingerprint()
            .undecidable()
            .unwrap()
            .0
            .starts_with("cargo config"));
    }
}
