//! Tests of the resolution cache: keys, reuse, TTLs, untrusted records, pruning.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use super::*;

/// A checkout with a workspace of two members, a lockfile and a cargo config.
fn checkout(root: &Path) -> PathBuf {
    let dir = root.join("repo");
    fs::create_dir_all(dir.join("member/src")).unwrap();
    fs::create_dir_all(dir.join(".cargo")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"member\"]\n",
    )
    .unwrap();
    fs::write(
        dir.join("member/Cargo.toml"),
        "[package]\nname = \"member\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    fs::write(dir.join("Cargo.lock"), "version = 4\n").unwrap();
    fs::write(dir.join(".cargo/config.toml"), "[build]\n").unwrap();
    dir
}

struct Setup {
    rustc: String,
    deps: DepsMode,
    env: BTreeMap<String, String>,
    inherited: Vec<(String, String)>,
    home: PathBuf,
}

impl Setup {
    fn new(root: &Path) -> Setup {
        Setup {
            rustc: "rustc 1.95.0 (abc 2026-01-01)".into(),
            deps: DepsMode::Patched,
            env: BTreeMap::from([("CARGO_INCREMENTAL".into(), "0".into())]),
            inherited: vec![("CARGO_NET_OFFLINE".into(), "true".into())],
            home: root.join("cargo-home"),
        }
    }

    fn cx(&self) -> Context<'_> {
        Context {
            rustc: &self.rustc,
            deps: self.deps,
            env: &self.env,
            inherited: &self.inherited,
            cargo_home: &self.home,
        }
    }

    fn key(&self, dir: &Path) -> String {
        Inputs::metadata("repo", dir, &self.cx()).key
    }
}

fn graph(dir: &Path, path_packages: Vec<PathBuf>) -> RepoMetadata {
    RepoMetadata {
        repo: "repo".into(),
        members: BTreeSet::from(["member".to_owned()]),
        versions: BTreeMap::from([("member".to_owned(), "0.1.0".to_owned())]),
        resolved: BTreeMap::new(),
        unused_patches: Vec::new(),
        target_directory: dir.join("target"),
        path_packages,
    }
}

#[test]
fn every_input_of_a_resolution_changes_its_key() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let mut s = Setup::new(tmp.path());
    let base = s.key(&dir);
    assert_eq!(base, s.key(&dir), "the key is stable");
    let mut seen = BTreeSet::from([base]);
    let mut changed = |what: &str, key: String| {
        assert!(seen.insert(key), "{what} did not change the key");
    };
    fs::write(
        dir.join("member/Cargo.toml"),
        "[package]\nname = \"member\"\nversion = \"0.2.0\"\n",
    )
    .unwrap();
    changed("a member's Cargo.toml", s.key(&dir));
    fs::write(dir.join("Cargo.lock"), "version = 3\n").unwrap();
    changed("the lockfile", s.key(&dir));
    fs::write(dir.join(".cargo/config.toml"), "[net]\noffline = true\n").unwrap();
    changed("a cargo config file", s.key(&dir));
    fs::create_dir_all(dir.join("new/src")).unwrap();
    fs::write(dir.join("new/Cargo.toml"), "[package]\nname = \"new\"\n").unwrap();
    changed("a new Cargo.toml", s.key(&dir));
    s.rustc = "rustc 1.96.0 (def 2026-02-01)".into();
    changed("the toolchain", s.key(&dir));
    s.deps = DepsMode::Registry;
    changed("the deps mode", s.key(&dir));
    s.env.insert("RUSTUP_TOOLCHAIN".into(), "nightly".into());
    changed("the repo's env", s.key(&dir));
    s.inherited
        .push(("CARGO_REGISTRIES_X_INDEX".into(), "sparse+https://x".into()));
    changed("an inherited cargo variable", s.key(&dir));
    // What cannot change a resolution does not change the key: a target dir's
    // manifests, output-only variables.
    fs::create_dir_all(dir.join("target/package/x")).unwrap();
    fs::write(
        dir.join("target/CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55",
    )
    .unwrap();
    fs::write(dir.join("target/package/x/Cargo.toml"), "[package]\n").unwrap();
    s.inherited
        .push(("CARGO_TERM_COLOR".into(), "always".into()));
    s.inherited
        .push(("CARGO_MAKEFLAGS".into(), "-j --jobserver-fds=3,4".into()));
    assert!(
        seen.contains(&s.key(&dir)),
        "a target dir or output variable changed the key"
    );
}

#[test]
fn a_stored_graph_is_reused_until_a_manifest_outside_the_checkout_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let sibling = tmp.path().join("sibling");
    fs::create_dir_all(&sibling).unwrap();
    fs::write(sibling.join("Cargo.toml"), "[package]\nname = \"sib\"\n").unwrap();
    let s = Setup::new(tmp.path());
    let inputs = Inputs::metadata("repo", &dir, &s.cx());
    let root = tmp.path().join("cache");
    let rc = ResolutionCache::open(&root, true);
    assert_eq!(rc.lookup(&inputs, false), None, "nothing recorded yet");
    let g = graph(
        &dir,
        vec![dir.join("member"), fs::canonicalize(&sibling).unwrap()],
    );
    rc.store(
        &inputs,
        &Outcome::Resolved {
            metadata: g.clone(),
        },
    );
    let again = ResolutionCache::open(&root, true);
    assert_eq!(
        again.lookup(&inputs, false),
        Some(Outcome::Resolved { metadata: g })
    );
    assert_eq!(again.counts().reused, vec!["repo metadata".to_owned()]);
    fs::write(
        sibling.join("Cargo.toml"),
        "[package]\nname = \"sib\"\nversion = \"2.0.0\"\n",
    )
    .unwrap();
    assert_eq!(
        again.lookup(&inputs, false),
        None,
        "the sibling's manifest changed"
    );
    assert!(
        again.take_warnings().is_empty(),
        "an outdated record is a quiet miss"
    );
}

#[test]
fn a_read_only_cache_records_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let s = Setup::new(tmp.path());
    let inputs = Inputs::metadata("repo", &dir, &s.cx());
    let root = tmp.path().join("cache");
    ResolutionCache::open(&root, false).store(
        &inputs,
        &Outcome::Resolved {
            metadata: graph(&dir, vec![]),
        },
    );
    assert!(!root.join("resolve").exists());
}

#[test]
fn failures_and_generated_lockfiles_are_reused_only_within_their_ttl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let s = Setup::new(tmp.path());
    let root = tmp.path().join("cache");
    let t0 = 1_800_000_000;
    let meta = Inputs::metadata("repo", &dir, &s.cx());
    let failed = Outcome::Failed {
        error: "failed to resolve address for github.com".into(),
        fallback: Some(graph(&dir, vec![])),
    };
    ResolutionCache::at(&root, true, t0).store(&meta, &failed);
    let within = ResolutionCache::at(&root, true, t0 + FAILURE_TTL_SECS - 1);
    match within.lookup(&meta, false) {
        Some(Outcome::Failed { error, fallback }) => {
            assert!(
                error.starts_with("failed to resolve address for github.com\n"),
                "{error}"
            );
            assert!(error.contains("pass --force"), "{error}");
            assert!(fallback.is_some());
        }
        other => panic!("expected the recorded failure, got {other:?}"),
    }
    assert_eq!(within.lookup(&meta, true), None, "--force resolves again");
    let after = ResolutionCache::at(&root, true, t0 + FAILURE_TTL_SECS);
    assert_eq!(
        after.lookup(&meta, false),
        None,
        "an expired failure is resolved again"
    );

    let lock = Inputs::lockfile("repo", &dir, &s.cx(), &chain_manifests(&[]));
    assert_ne!(lock.key, meta.key);
    let generated = Outcome::Generated {
        lockfile: "version = 4\n\n[[package]]\nname = \"member\"\nversion = \"0.1.0\"\n".into(),
    };
    ResolutionCache::at(&root, true, t0).store(&lock, &generated);
    let within = ResolutionCache::at(&root, true, t0 + GENERATED_TTL_SECS - 1);
    assert_eq!(within.lookup(&lock, true), Some(generated));
    let after = ResolutionCache::at(&root, true, t0 + GENERATED_TTL_SECS);
    assert_eq!(after.lookup(&lock, false), None);
}

#[test]
fn a_damaged_or_hostile_record_is_a_miss_with_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let s = Setup::new(tmp.path());
    let root = tmp.path().join("cache");
    let inputs = Inputs::metadata("repo", &dir, &s.cx());
    let good = Outcome::Resolved {
        metadata: graph(&dir, vec![]),
    };
    let path = root
        .join("resolve/repo")
        .join(format!("metadata-{}.json", inputs.key));
    let store = || ResolutionCache::open(&root, true).store(&inputs, &good);
    type Damage<'a> = Box<dyn Fn() + 'a>;
    let bad: Vec<(&str, Damage)> = vec![
        (
            "garbage",
            Box::new(|| fs::write(&path, "{not json").unwrap()),
        ),
        (
            "another key inside",
            Box::new(|| {
                let t = fs::read_to_string(&path)
                    .unwrap()
                    .replace(&inputs.key, &"0".repeat(64));
                fs::write(&path, t).unwrap();
            }),
        ),
        (
            "a relative path",
            Box::new(|| {
                let t = fs::read_to_string(&path).unwrap();
                let abs = serde_json::to_string(&dir.join("target")).unwrap();
                fs::write(&path, t.replace(&abs, "\"target\"")).unwrap();
            }),
        ),
        (
            "a symlink",
            Box::new(|| {
                let elsewhere = tmp.path().join("elsewhere.json");
                fs::rename(&path, &elsewhere).unwrap();
                std::os::unix::fs::symlink(&elsewhere, &path).unwrap();
            }),
        ),
    ];
    for (what, damage) in bad {
        let _ = fs::remove_file(&path);
        store();
        assert!(ResolutionCache::open(&root, true)
            .lookup(&inputs, false)
            .is_some());
        damage();
        let rc = ResolutionCache::open(&root, true);
        assert_eq!(rc.lookup(&inputs, false), None, "{what} was used");
        let w = rc.take_warnings();
        assert!(
            w.len() == 1 && w[0].contains("ignored the resolution record"),
            "{what}: {w:?}"
        );
    }
}

#[test]
fn only_the_newest_records_of_a_repo_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = checkout(tmp.path());
    let mut s = Setup::new(tmp.path());
    let root = tmp.path().join("cache");
    let rc = ResolutionCache::open(&root, true);
    for i in 0..KEEP_PER_REPO + 3 {
        s.rustc = format!("rustc 1.{i}.0");
        let inputs = Inputs::metadata("repo", &dir, &s.cx());
        rc.store(
            &inputs,
            &Outcome::Resolved {
                metadata: graph(&dir, vec![]),
            },
        );
    }
    let n = fs::read_dir(root.join("resolve/repo")).unwrap().count();
    assert_eq!(n, KEEP_PER_REPO);
}
