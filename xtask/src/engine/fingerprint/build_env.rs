//! The build environment: what the machine adds to a build besides the checkout and the
//! chain manifest — the environment variables cargo, rustc, build scripts and the `cc`
//! crate read, and cargo's config files. Both a repo's fingerprint and its target key take
//! it (`engine::plan::keys`), so `RUSTFLAGS='--cfg x'` or a `[build] rustflags` line in a
//! parent directory's `.cargo/config.toml` makes the repo run again and restore another
//! entry, never `cached`.
//!
//! **Variables** (the rule of Swatinem/rust-cache, which hashes every variable whose name
//! starts with `CARGO`, `CC`, `CFLAGS`, `CXX`, `CMAKE` or `RUST`): a variable is an input
//! when its name starts with `CARGO`, `RUST`, `CC`, `CFLAGS`, `CXX`, `CMAKE`, `AR`
//! (exactly, or `AR_…`, `ARFLAGS…`), `LDFLAGS` or `PKG_CONFIG`, or is one of those with a
//! `TARGET_` or `HOST_` prefix (the `cc` crate reads `TARGET_CC`, `HOST_CFLAGS`, …).
//! Excluded, because they cannot change what is built or are decided elsewhere:
//! - what the run sets itself: `RUSTUP_TOOLCHAIN` (the toolchain rule, whose compiler
//!   identity `rustc -vV` is an input), `CARGO_BUILD_JOBS` (parallelism, `--jobs`), and any
//!   variable the repo's own environment sets (it overrides the inherited value, and is an
//!   input as part of the repo's `env`);
//! - what cargo and rustup set for the process that runs `cargo xtask` (they say where
//!   xtask was started from, not how the chain builds; cargo sets its own for every
//!   compilation it runs): `CARGO`, `CARGO_MANIFEST_DIR`, `CARGO_MANIFEST_PATH`,
//!   `CARGO_MANIFEST_LINKS`, `CARGO_PKG_*`, `CARGO_CRATE_NAME`, `CARGO_BIN_NAME`,
//!   `CARGO_BIN_EXE_*`, `CARGO_PRIMARY_PACKAGE`, `CARGO_TARGET_TMPDIR`,
//!   `CARGO_RUSTC_CURRENT_DIR`, `CARGO_MAKEFLAGS`, `CARGO_CFG_*`, `CARGO_FEATURE_*`,
//!   `RUSTUP_*` (which toolchain runs: its identity is `rustc -vV`), `RUST_RECURSION_COUNT`,
//!   `CARGO_HOME` (its config file is an input of its own, and the target key has the
//!   path);
//! - presentation: `CARGO_TERM_*`, `RUST_BACKTRACE`, `RUST_LIB_BACKTRACE`, `CARGO_LOG`;
//! - transport and credentials, which decide how cargo reaches a registry, never what it
//!   builds (the lockfile pins every package's checksum): `CARGO_NET_*` (`OFFLINE`,
//!   `RETRY`, `GIT_FETCH_WITH_CLI`, …), `CARGO_HTTP_*`, and a registry's token or
//!   credential provider (`CARGO_REGISTRY_TOKEN`, `CARGO_REGISTRIES_<NAME>_TOKEN`, any
//!   `CARGO_REGISTR…CREDENTIAL…`) — rotating a token must not re-run the chain;
//! - where the output goes, not what it is: `CARGO_TARGET_DIR`, `CARGO_BUILD_TARGET_DIR`.
//!
//! Variables a build script reads outside those prefixes (`PROTOC`, `OPENSSL_DIR`,
//! `LIBCLANG_PATH`, …) are inputs when the manifest's `[defaults] build-env` lists a prefix
//! of their name (as rust-cache's `env-vars` input does): a fixed list cannot know every
//! `-sys` crate, and cargo's record of what build scripts declared (`rerun-if-env-changed`
//! in `target/`) is absent from a fresh checkout, where the plan is made before any restore.
//!
//! **Config files**, as cargo discovers them ("Hierarchical structure" in the cargo
//! book): `.cargo/config.toml` and `.cargo/config` in the checkout and in every parent
//! directory, then `$CARGO_HOME/config.toml` and `$CARGO_HOME/config`. Each one that
//! exists is an input by its path and content hash.
//!
//! Secrets: a variable whose name looks secret (it contains `TOKEN`, `SECRET`, `KEY`,
//! `PASSWORD`, `PASSWD`, `CREDENTIAL` or `WEBHOOK`) is an input by a hash of its value
//! ([`shown_value`]), so `plan -v`, `plan --explain`, `cache key` and the result records
//! never hold the value itself.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::support::fs::{sha256_file, sha256_hex};

/// What the machine adds to one repo's build (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuildEnv {
    /// `(name, shown value)` of every variable that is an input, sorted by name; a
    /// secret-looking value is already replaced by its hash ([`shown_value`]).
    pub vars: Vec<(String, String)>,
    /// `(path, hex sha256)` of every cargo config file that exists, in cargo's discovery
    /// order (the checkout's directory first, `$CARGO_HOME` last).
    pub configs: Vec<(PathBuf, String)>,
}

impl BuildEnv {
    /// The build environment of the repo checked out in `dir`: the input variables of
    /// `process_env` (this process's environment, as steps inherit it; see [`process_env`])
    /// except those `repo_env` sets, and the cargo config files cargo would read from
    /// `dir` with `cargo_home` as `$CARGO_HOME`. A config file that exists but cannot be
    /// read is an input as `unreadable: <error>` (cargo would fail on it, and fixing it
    /// changes the input).
    /// `extra` are more name prefixes that are inputs (the manifest's `[defaults]
    /// build-env`).
    pub fn capture(
        process_env: &[(String, String)],
        dir: &Path,
        repo_env: &BTreeMap<String, String>,
        cargo_home: &Path,
        extra: &[String],
    ) -> BuildEnv {
        let wanted = |k: &str| is_build_var(k) || extra.iter().any(|p| k.starts_with(p.as_str()));
        let mut vars: Vec<(String, String)> = process_env
            .iter()
            .filter(|(k, _)| wanted(k) && !repo_env.contains_key(k))
            .map(|(k, v)| (k.clone(), shown_value(k, v)))
            .collect();
        vars.sort();
        vars.dedup_by(|a, b| a.0 == b.0);
        let configs = config_files(dir, cargo_home)
            .into_iter()
            .map(|p| {
                let h = sha256_file(&p).unwrap_or_else(|e| format!("unreadable: {e}"));
                (p, h)
            })
            .collect();
        BuildEnv { vars, configs }
    }

    /// The named inputs: `env NAME` = shown value, then `cargo config PATH` = sha256.
    pub fn inputs(&self) -> Vec<(String, String)> {
        let vars = self
            .vars
            .iter()
            .map(|(k, v)| (format!("env {k}"), v.clone()));
        let configs = self
            .configs
            .iter()
            .map(|(p, h)| (format!("cargo config {}", p.display()), h.clone()));
        vars.chain(configs).collect()
    }
}

/// This process's environment as `(name, value)` pairs; a name or value that is not UTF-8
/// is kept lossily (it still changes the input when it changes).
pub fn process_env() -> Vec<(String, String)> {
    std::env::vars_os()
        .map(|(k, v)| {
            (
                k.to_string_lossy().into_owned(),
                v.to_string_lossy().into_owned(),
            )
        })
        .collect()
}

/// Prefixes of the variables that are inputs (see the module docs).
const PREFIXES: &[&str] = &[
    "CARGO",
    "RUST",
    "CC",
    "CFLAGS",
    "CXX",
    "CMAKE",
    "AR_",
    "ARFLAGS",
    "LDFLAGS",
    "PKG_CONFIG",
];

/// Exact names that are not inputs (see the module docs for why).
const EXCLUDED: &[&str] = &[
    "RUSTUP_TOOLCHAIN",
    "CARGO_BUILD_JOBS",
    "CARGO",
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_MAKEFLAGS",
    "RUST_RECURSION_COUNT",
    "CARGO_HOME",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
    "CARGO_LOG",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET_DIR",
];

/// Prefixes of names that are not inputs.
const EXCLUDED_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_BIN_EXE_",
    "CARGO_CFG_",
    "CARGO_FEATURE_",
    "CARGO_TERM_",
    "CARGO_NET_",
    "CARGO_HTTP_",
    "RUSTUP_",
];

/// Whether the variable `name` is an input of a build (see the module docs).
pub fn is_build_var(name: &str) -> bool {
    if EXCLUDED.contains(&name) || EXCLUDED_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return false;
    }
    if name.starts_with("CARGO_REGISTR")
        && (name.ends_with("_TOKEN") || name.contains("CREDENTIAL"))
    {
        return false;
    }
    let base = name
        .strip_prefix("TARGET_")
        .or_else(|| name.strip_prefix("HOST_"))
        .unwrap_or(name);
    base == "AR" || PREFIXES.iter().any(|p| base.starts_with(p))
}

/// Whether a variable's name says it holds a secret (case-insensitive).
pub fn looks_secret(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "KEY",
        "PASSWORD",
        "PASSWD",
        "CREDENTIAL",
        "WEBHOOK",
    ]
    .iter()
    .any(|w| upper.contains(w))
}

/// The value an input shows for the variable `name`: the value itself, or
/// `sha256:<16 hex>` of it when the name looks secret ([`looks_secret`]), so a change is
/// still seen but the value is never printed or stored.
pub fn shown_value(name: &str, value: &str) -> String {
    if looks_secret(name) {
        format!("sha256:{}", &sha256_hex(value)[..16])
    } else {
        value.to_owned()
    }
}

/// An environment map as one input value, `{K: V, …}`, with secret-looking values hashed.
pub fn shown_map(env: &BTreeMap<String, String>) -> String {
    let shown: BTreeMap<&str, String> = env
        .iter()
        .map(|(k, v)| (k.as_str(), shown_value(k, v)))
        .collect();
    format!("{shown:?}")
}

/// The cargo config files cargo reads for a build started in `dir` that exist, in
/// cargo's discovery order, each path once.
pub fn config_files(dir: &Path, cargo_home: &Path) -> Vec<PathBuf> {
    let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let home = std::path::absolute(cargo_home).unwrap_or_else(|_| cargo_home.to_path_buf());
    let mut out: Vec<PathBuf> = Vec::new();
    let candidates = dir
        .ancestors()
        .flat_map(|d| [d.join(".cargo/config.toml"), d.join(".cargo/config")])
        .chain([home.join("config.toml"), home.join("config")]);
    for p in candidates {
        if p.is_file() && !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn the_variables_cargo_rustc_and_cc_read_are_inputs_and_nothing_else() {
        for name in [
            "RUSTFLAGS",
            "RUSTDOCFLAGS",
            "CARGO_ENCODED_RUSTFLAGS",
            "CARGO_BUILD_RUSTFLAGS",
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER",
            "CARGO_PROFILE_DEV_DEBUG",
            "CARGO_INCREMENTAL",
            "CARGO_REGISTRIES_MY_INDEX",
            "RUSTC_WRAPPER",
            "RUSTC",
            "RUSTC_BOOTSTRAP",
            "RUST_MIN_STACK",
            "CC",
            "CC_x86_64_unknown_linux_gnu",
            "CFLAGS",
            "CXX",
            "CXXFLAGS",
            "CMAKE_GENERATOR",
            "AR",
            "AR_x86_64_unknown_linux_gnu",
            "ARFLAGS",
            "TARGET_CC",
            "HOST_CFLAGS",
            "TARGET_AR",
            "LDFLAGS",
            "PKG_CONFIG_PATH",
        ] {
            assert!(is_build_var(name), "{name} must be an input");
        }
        for name in [
            "PATH",
            "HOME",
            "CI",
            "GITHUB_ACTIONS",
            "GITHUB_SHA",
            "RUNNER_TEMP",
            "ARCH",
            "HOSTNAME",
            "TARGET",
            "RUSTUP_TOOLCHAIN",
            "RUSTUP_HOME",
            "CARGO_BUILD_JOBS",
            "CARGO_TERM_COLOR",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_DIR",
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "RUST_BACKTRACE",
            "BLLVM_CI_CACHE_DIR",
            "CARGO_NET_OFFLINE",
            "CARGO_NET_RETRY",
            "CARGO_HTTP_TIMEOUT",
            "CARGO_REGISTRY_TOKEN",
            "CARGO_REGISTRIES_MY_TOKEN",
            "CARGO_REGISTRY_GLOBAL_CREDENTIAL_PROVIDERS",
        ] {
            assert!(!is_build_var(name), "{name} must not be an input");
        }
    }

    #[test]
    fn capture_keeps_build_variables_hides_secrets_and_yields_to_the_repo_env() {
        let t = tempfile::tempdir().unwrap();
        let repo_env = BTreeMap::from([("CARGO_INCREMENTAL".to_owned(), "0".to_owned())]);
        let b = BuildEnv::capture(
            &env(&[
                ("RUSTFLAGS", "--cfg x"),
                ("PATH", "/bin"),
                ("CARGO_INCREMENTAL", "1"),
                ("RUSTC_API_TOKEN", "hunter2-secret"),
                ("PROTOC", "/opt/protoc"),
                ("OPENSSL_DIR", "/opt/ssl"),
            ]),
            t.path(),
            &repo_env,
            &t.path().join("no-cargo-home"),
            &["PROTOC".to_owned()],
        );
        let shown = format!("{:?}", b.inputs());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert_eq!(
            b.vars,
            vec![
                ("PROTOC".to_owned(), "/opt/protoc".to_owned()),
                (
                    "RUSTC_API_TOKEN".to_owned(),
                    format!("sha256:{}", &sha256_hex("hunter2-secret")[..16])
                ),
                ("RUSTFLAGS".to_owned(), "--cfg x".to_owned()),
            ]
        );
        assert_eq!(b.inputs()[2], ("env RUSTFLAGS".into(), "--cfg x".into()));
    }

    #[test]
    fn config_files_of_the_checkout_its_parents_and_cargo_home_are_inputs() {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("root/repo");
        let home = t.path().join("cargo-home");
        for d in [
            repo.join(".cargo"),
            t.path().join("root/.cargo"),
            home.clone(),
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let none = BuildEnv::capture(&[], &repo, &BTreeMap::new(), &home, &[]);
        std::fs::write(repo.join(".cargo/config.toml"), "[build]\n").unwrap();
        std::fs::write(t.path().join("root/.cargo/config"), "[build]\n").unwrap();
        std::fs::write(home.join("config.toml"), "[net]\n").unwrap();
        let files = config_files(&repo, &home);
        assert_eq!(
            files,
            [
                repo.join(".cargo/config.toml"),
                t.path().join("root/.cargo/config"),
                home.join("config.toml"),
            ]
        );
        let before = BuildEnv::capture(&[], &repo, &BTreeMap::new(), &home, &[]);
        assert_ne!(none, before);
        for f in &files {
            std::fs::write(f, "[build]\nrustflags = [\"--cfg\", \"x\"]\n").unwrap();
            let after = BuildEnv::capture(&[], &repo, &BTreeMap::new(), &home, &[]);
            assert_ne!(before, after, "{} must be an input", f.display());
            std::fs::write(
                f,
                if f.ends_with("config.toml") && f.starts_with(&home) {
                    "[net]\n"
                } else {
                    "[build]\n"
                },
            )
            .unwrap();
            assert_eq!(
                before,
                BuildEnv::capture(&[], &repo, &BTreeMap::new(), &home, &[])
            );
        }
    }
}
