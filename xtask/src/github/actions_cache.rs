//! The `actions/cache` key of a cache root, for the `hosted` runner kind: GitHub-hosted
//! runners start empty, so the generated workflow restores the whole cache root with
//! `actions/cache/restore` before `cargo xtask ci` and saves it with `actions/cache/save`
//! after (trusted events only), under the key `cargo xtask cache actions-key` computes
//! here.
//!
//! The scheme is rust-cache's (Swatinem/rust-cache), with one change for immutable
//! entries:
//!
//! ```text
//! bllvm-ci-v1-linux-x86_64-<selection>-<variant>-<hash>-<run>
//! └──────────── stable prefix ──────────────────┘ │      └ unique per run (GITHUB_RUN_ID-GITHUB_RUN_ATTEMPT)
//!                                                 └ 16 hex of sha256 over what the cache root should hold
//! ```
//!
//! - The stable prefix names what can never be shared: the key scheme's version, the OS
//!   and architecture, the selected repos (`all`, the one repo of a fanned-out job, or a
//!   hash of several) and the variant.
//! - The hash covers what the cache root's entries are built from: for each selected
//!   cargo repo its `Cargo.lock`, the `rustc -vV` of the toolchain the one toolchain rule
//!   picks for it (`engine/toolchain.rs`), its features in the variant and its
//!   dependency mode, and the profile. A change of any of them changes the hash.
//! - The run part makes every trusted run's key new: GitHub's cache entries are
//!   immutable, so a key that repeated would never be saved again and the cache root would
//!   freeze at its first state.
//!
//! The restore keys are the key without its run part, then the stable prefix alone: a run
//! restores the newest cache root of exactly its inputs, else the newest of its selection
//! and variant (a near miss: another lockfile or toolchain still gives the registry and
//! most dependency artifacts; the engine's own keys decide what is used). Nothing here
//! decides correctness: every entry of a restored cache root is checked and keyed by the
//! engine as if it had been there all along.
//!
//! Owns the key and the `$GITHUB_OUTPUT` text; the workflow text is `workflows.rs`'s.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::cache::key::hash_inputs;
use crate::engine::manifest::{Manifest, RepoKind};
use crate::engine::metadata;
use crate::engine::toolchain::Choice;
use crate::support::fs::{sha256_file, sha256_hex};

/// Version of the key scheme; change it when the inputs or the layout of the key change,
/// so that old cache roots are never restored under new rules.
pub const ACTIONS_KEY_VERSION: &str = "1";

/// GitHub's limit on a cache key's length, in characters.
pub const MAX_KEY_CHARS: usize = 512;

/// What a key is derived from: gathered by [`gather`], turned into a key by [`derive`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInputs {
    /// `std::env::consts::OS` of the runner (`linux`).
    pub os: String,
    /// `std::env::consts::ARCH` of the runner (`x86_64`).
    pub arch: String,
    /// The selected repos (`--only`), sorted; empty = every repo.
    pub selection: Vec<String>,
    /// The variant.
    pub variant: String,
    /// `(name, value)` of everything the cache root's entries are built from, in order.
    pub hashed: Vec<(String, String)>,
    /// The part unique to the run ([`run_part`]).
    pub run: String,
}

/// A computed key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionsKey {
    /// The key `actions/cache/save` stores under (and `restore` tries first).
    pub key: String,
    /// The prefixes `actions/cache/restore` falls back to, nearest first.
    pub restore_keys: Vec<String>,
    /// Every input, for the log: the prefix parts, then the hashed ones.
    pub inputs: Vec<(String, String)>,
}

/// How [`gather`] reads the chain (the flags of `cache actions-key`).
#[derive(Debug, Clone, Default)]
pub struct GatherOptions {
    /// Checkout root override (`--root`).
    pub root: Option<PathBuf>,
    /// The selected repos (`--only`); empty = all.
    pub only: Vec<String>,
    /// Variant override (`--variant`).
    pub variant: Option<String>,
    /// Toolchain for every repo (`--toolchain`), as `ci` will be given it.
    pub toolchain: Option<String>,
}

/// A name as a key part: letters, digits, `.`, `_` and `-` kept, anything else `_`
/// (GitHub refuses commas in keys, and a key must stay one readable token).
fn part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The selection as a key part: `all`, the one repo's name, or `sel` and 12 hex of the
/// sorted names (several repos would make the key too long to read).
fn selection_part(selection: &[String]) -> String {
    match selection {
        [] => "all".to_owned(),
        [one] => part(one),
        many => format!("sel{}", &sha256_hex(many.join(","))[..12]),
    }
}

/// Derive the key and restore keys from `i` (pure; see the module docs).
pub fn derive(i: &KeyInputs) -> ActionsKey {
    let prefix = format!(
        "bllvm-ci-v{ACTIONS_KEY_VERSION}-{}-{}-{}-{}-",
        part(&i.os),
        part(&i.arch),
        selection_part(&i.selection),
        part(&i.variant)
    );
    let hash = &hash_inputs(&i.hashed)[..16];
    let with_hash = format!("{prefix}{hash}-");
    let mut key = format!("{with_hash}{}", part(&i.run));
    key.truncate(MAX_KEY_CHARS);
    let mut inputs = vec![
        ("key-version".to_owned(), ACTIONS_KEY_VERSION.to_owned()),
        ("os".to_owned(), i.os.clone()),
        ("arch".to_owned(), i.arch.clone()),
        (
            "selection".to_owned(),
            if i.selection.is_empty() {
                "all".to_owned()
            } else {
                i.selection.join(" ")
            },
        ),
        ("variant".to_owned(), i.variant.clone()),
    ];
    inputs.extend(i.hashed.iter().cloned());
    inputs.push(("run".to_owned(), i.run.clone()));
    ActionsKey {
        key,
        restore_keys: vec![with_hash, prefix],
        inputs,
    }
}

/// The run part of a key: `<GITHUB_RUN_ID>-<GITHUB_RUN_ATTEMPT>` in GitHub Actions (a
/// re-run attempt saves its own entry), else `local-<unix seconds>-<pid>-<n>`. `env`
/// looks a variable up.
pub fn run_part(env: &dyn Fn(&str) -> Option<String>) -> String {
    let get = |k: &str| env(k).filter(|v| !v.is_empty());
    match get("GITHUB_RUN_ID") {
        Some(id) => format!(
            "{id}-{}",
            get("GITHUB_RUN_ATTEMPT").unwrap_or_else(|| "1".to_owned())
        ),
        None => {
            static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            format!(
                "local-{}-{}-{}",
                crate::support::time::now_unix(),
                std::process::id(),
                SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            )
        }
    }
}

/// Read what the key needs from `manifest` and its checkouts: every selected cargo repo's
/// lockfile, toolchain (`rustc -vV`; a toolchain that cannot run is keyed by where the
/// choice comes from, as the run will fail or install it), features and dependency mode.
///
/// Errors: an `--only` repo or a variant the manifest does not have, a missing checkout
/// (run `cargo xtask checkout` first).
pub fn gather(manifest: &Manifest, o: &GatherOptions) -> Result<KeyInputs> {
    for name in &o.only {
        manifest.repo(name)?;
    }
    let variant = o
        .variant
        .clone()
        .unwrap_or_else(|| manifest.defaults.variant.clone());
    manifest.check_variant(&variant)?;
    let root = o
        .root
        .as_deref()
        .map_or_else(|| manifest.root.clone(), crate::support::fs::normalize);
    metadata::check_checkouts(manifest, &root)?;
    let mut selection = o.only.clone();
    selection.sort();
    selection.dedup();
    let mut hashed = vec![("profile".to_owned(), manifest.defaults.profile.clone())];
    for r in manifest.repos.iter().filter(|r| r.kind == RepoKind::Cargo) {
        if !selection.is_empty() && !selection.contains(&r.name) {
            continue;
        }
        let dir = Manifest::checkout_dir(&root, r);
        hashed.extend(repo_inputs(r, &dir, &variant, o.toolchain.as_deref()));
    }
    Ok(KeyInputs {
        os: std::env::consts::OS.to_owned(),
        arch: std::env::consts::ARCH.to_owned(),
        selection,
        variant,
        hashed,
        run: run_part(&|k| std::env::var(k).ok()),
    })
}

/// The hashed inputs of one cargo repo checked out at `dir`.
fn repo_inputs(
    r: &crate::engine::manifest::Repo,
    dir: &Path,
    variant: &str,
    toolchain: Option<&str>,
) -> Vec<(String, String)> {
    let lock = sha256_file(&dir.join("Cargo.lock")).unwrap_or_else(|_| "none".to_owned());
    let choice = Choice::resolve(None, toolchain, r.toolchain.as_deref(), dir);
    let rustc = metadata::rustc_version(dir, &choice)
        .unwrap_or_else(|_| format!("unavailable: {}", choice.describe()));
    let n = &r.name;
    vec![
        (format!("lockfile-sha256 {n}"), lock),
        (format!("rustc -vV {n}"), rustc),
        (
            format!("features {n}"),
            r.variant_features(variant).join(","),
        ),
        (format!("deps {n}"), r.deps.to_string()),
    ]
}

/// The `$GITHUB_OUTPUT` text for `k`: `key=…`, then `restore-keys` and `path` in the
/// multi-line syntax (`name<<DELIMITER`, one value per line, `DELIMITER`). `path` is what
/// to save: everything in the cache root but its `tmp/` (what a run was still deleting
/// is never worth saving, and its leftovers are named by pids that mean nothing on the
/// next runner), as `<root>/*` and `!<root>/tmp`: `actions/cache` ignores an exclusion
/// below a directory it includes whole (actions/toolkit#713), so both patterns are of
/// one level. The delimiter is derived from the values (a hash of them), so no value
/// line can be the delimiter and end the block early.
///
/// Errors: the cache root's path holds a newline or is not UTF-8 (it could not be one
/// line of the output).
pub fn output_text(k: &ActionsKey, cache_root: &Path) -> Result<String> {
    let Some(root) = cache_root.to_str().filter(|r| !r.contains(['\n', '\r'])) else {
        anyhow::bail!(
            "the cache root {} cannot be an output of a step (not UTF-8, or a newline in it): pass --cache-dir with a plain path",
            cache_root.display()
        );
    };
    let delimiter = format!(
        "ghadelimiter_{}",
        &sha256_hex(format!("{}\n{}\n{root}", k.key, k.restore_keys.join("\n")))[..32]
    );
    Ok(format!(
        "key={}\nrestore-keys<<{delimiter}\n{}\n{delimiter}\npath<<{delimiter}\n{root}/*\n!{root}/tmp\n{delimiter}\n",
        k.key,
        k.restore_keys.join("\n"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> KeyInputs {
        KeyInputs {
            os: "linux".into(),
            arch: "x86_64".into(),
            selection: Vec::new(),
            variant: "base".into(),
            hashed: vec![
                ("profile".into(), "dev".into()),
                ("lockfile-sha256 node".into(), sha256_hex("lock")),
                ("rustc -vV node".into(), "rustc 1.88.0".into()),
                ("features node".into(), "".into()),
                ("deps node".into(), "patched".into()),
            ],
            run: "123-1".into(),
        }
    }

    #[test]
    fn the_key_is_prefix_hash_run_and_its_restore_keys_are_its_prefixes() {
        let k = derive(&base());
        assert!(
            k.key.starts_with("bllvm-ci-v1-linux-x86_64-all-base-"),
            "{}",
            k.key
        );
        assert!(k.key.ends_with("-123-1"), "{}", k.key);
        assert_eq!(k.restore_keys.len(), 2);
        assert!(k.key.starts_with(&k.restore_keys[0]));
        assert!(k.restore_keys[0].starts_with(&k.restore_keys[1]));
        assert_eq!(k.restore_keys[1], "bllvm-ci-v1-linux-x86_64-all-base-");
        assert!(!k.key.contains(','));
        // Every input is listed for the log.
        for (n, _) in &base().hashed {
            assert!(k.inputs.iter().any(|(m, _)| m == n), "{n}");
        }
    }

    #[test]
    fn each_input_alone_changes_the_key_where_it_should() {
        let k = derive(&base());
        type Edit = fn(&mut KeyInputs);
        // (what, edit, changes the stable prefix)
        let edits: Vec<(&str, Edit, bool)> = vec![
            ("os", |i| i.os = "macos".into(), true),
            ("arch", |i| i.arch = "aarch64".into(), true),
            ("selection", |i| i.selection = vec!["node".into()], true),
            ("variant", |i| i.variant = "experimental".into(), true),
            ("a lockfile", |i| i.hashed[1].1 = sha256_hex("lock2"), false),
            (
                "a toolchain",
                |i| i.hashed[2].1 = "rustc 1.89.0".into(),
                false,
            ),
            ("features", |i| i.hashed[3].1 = "x".into(), false),
            ("deps", |i| i.hashed[4].1 = "registry".into(), false),
            ("profile", |i| i.hashed[0].1 = "release".into(), false),
            (
                "another repo",
                |i| i.hashed.push(("lockfile-sha256 sdk".into(), "h".into())),
                false,
            ),
        ];
        for (what, edit, prefix) in edits {
            let mut i = base();
            edit(&mut i);
            let o = derive(&i);
            assert_ne!(o.restore_keys[0], k.restore_keys[0], "{what}");
            assert_eq!(o.restore_keys[1] != k.restore_keys[1], prefix, "{what}");
        }
        // The run part changes the key only: a new entry per run, restored by prefix.
        let mut i = base();
        i.run = "124-1".into();
        let o = derive(&i);
        assert_ne!(o.key, k.key);
        assert_eq!(o.restore_keys, k.restore_keys);
    }

    #[test]
    fn selections_and_odd_names_stay_one_readable_token() {
        let mut i = base();
        i.selection = vec!["bllvm-node".into()];
        assert!(derive(&i).key.contains("-bllvm-node-base-"));
        i.selection = vec!["a".into(), "b".into()];
        let two = derive(&i).key;
        assert!(two.contains("-sel"), "{two}");
        i.variant = "we,ird var".into();
        i.run = "1/2".into();
        let k = derive(&i).key;
        assert!(!k.contains([',', ' ', '/']), "{k}");
        assert!(k.len() <= MAX_KEY_CHARS);
    }

    #[test]
    fn the_run_part_is_the_run_and_attempt_in_actions() {
        let env = |k: &str| match k {
            "GITHUB_RUN_ID" => Some("987".to_owned()),
            "GITHUB_RUN_ATTEMPT" => Some("2".to_owned()),
            _ => None,
        };
        assert_eq!(run_part(&env), "987-2");
        let local = run_part(&|_| None);
        assert!(local.starts_with("local-"), "{local}");
        assert_ne!(local, run_part(&|_| None));
    }

    #[test]
    fn the_output_uses_githubs_multi_line_syntax() {
        let k = derive(&base());
        let text = output_text(&k, Path::new("/home/runner/.cache/bllvm-ci")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("key={}", k.key));
        let delim = lines[1].strip_prefix("restore-keys<<").unwrap();
        assert!(delim.starts_with("ghadelimiter_"));
        assert_eq!(lines[2], k.restore_keys[0]);
        assert_eq!(lines[3], k.restore_keys[1]);
        assert_eq!(lines[4], delim);
        assert_eq!(lines[5], format!("path<<{delim}"));
        assert_eq!(lines[6], "/home/runner/.cache/bllvm-ci/*");
        assert_eq!(lines[7], "!/home/runner/.cache/bllvm-ci/tmp");
        assert_eq!(lines[8], delim);
        assert!(!text.contains(&format!("{delim}{delim}")));
        assert!(output_text(&k, Path::new("/a\nkey=evil")).is_err());
    }
}
