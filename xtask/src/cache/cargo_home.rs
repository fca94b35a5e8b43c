//! The chain-wide cargo stages: `$CARGO_HOME/registry` and `$CARGO_HOME/git/db`.
//!
//! Like rust-cache, only what the lockfiles need is saved: the `.crate` files and sparse
//! index cache files of the packages the chain's `Cargo.lock` files name, never the
//! extracted `registry/src` (cargo re-extracts it from the `.crate` in milliseconds) nor
//! `git/checkouts`. Restores merge into `$CARGO_HOME` and never delete a file there, so a
//! laptop's own cargo home is safe.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `$CARGO_HOME`, else `~/.cargo` (cargo's own rule).
pub fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| dirs::home_dir().map(|h| h.join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

/// The registry packages a set of lockfiles names.
#[derive(Debug, Clone, Default)]
pub struct LockedPackages {
    /// `name-version.crate` file names of registry packages.
    pub crate_files: BTreeSet<String>,
    /// Lowercased package names (sparse index cache files are named after them).
    pub names: BTreeSet<String>,
    /// Whether any package comes from git.
    pub has_git: bool,
    /// Paths under a sparse index's `.cache/` that the locked packages use (see
    /// [`index_cache_paths`]).
    index_paths: BTreeSet<String>,
}

impl LockedPackages {
    /// Add the packages of the `Cargo.lock` at `path`.
    ///
    /// Errors: the file cannot be read or is not TOML.
    pub fn add_lockfile(&mut self, path: &Path) -> Result<()> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
        let lock: toml::Table = text
            .parse()
            .with_context(|| format!("parse {}", path.display()))?;
        let Some(pkgs) = lock.get("package").and_then(|p| p.as_array()) else {
            return Ok(());
        };
        for p in pkgs {
            let (Some(name), Some(version)) = (
                p.get("name").and_then(|v| v.as_str()),
                p.get("version").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            match p.get("source").and_then(|v| v.as_str()) {
                Some(s) if s.starts_with("registry+") || s.starts_with("sparse+") => {
                    self.crate_files.insert(format!("{name}-{version}.crate"));
                    let lower = name.to_lowercase();
                    self.index_paths.extend(index_cache_paths(&lower));
                    self.names.insert(lower);
                }
                Some(s) if s.starts_with("git+") => self.has_git = true,
                _ => {}
            }
        }
        Ok(())
    }

    /// Whether a path relative to `$CARGO_HOME/registry` is left out of the registry entry.
    /// Kept: `index/<registry>/config.json`, index cache files of locked packages, and
    /// `cache/<registry>/<locked crate file>`. Everything else (sources, other crates, git
    /// index clones) is pruned.
    pub fn skip_registry_path(&self, rel: &Path) -> bool {
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        match parts.as_slice() {
            ["index"] | ["cache"] | ["index", _] | ["cache", _] => false,
            ["index", _, "config.json"] => false,
            ["index", _, ".cache"] => false,
            ["index", _, ".cache", rest @ ..] => !self.index_paths.contains(&rest.join("/")),
            ["cache", _, file] => !self.crate_files.contains(*file),
            _ => true,
        }
    }
}

/// The paths under a sparse index's `.cache/` that package `name` (lowercase) uses, with
/// their parent directories, following cargo's index layout (`1/a`, `2/ab`, `3/a/abc`,
/// `it/oa/itoa`).
fn index_cache_paths(name: &str) -> Vec<String> {
    let n = name;
    let mut dirs: Vec<String> = match n.chars().count() {
        1 => vec!["1".into()],
        2 => vec!["2".into()],
        3 => vec!["3".into(), format!("3/{}", &n[..1])],
        _ => vec![n[..2].to_owned(), format!("{}/{}", &n[..2], &n[2..4])],
    };
    let leaf = format!("{}/{n}", dirs.last().expect("at least one dir"));
    dirs.push(leaf);
    dirs
}

/// Whether a path relative to `$CARGO_HOME/git` is left out of the git entry: only `db/`
/// (bare clones) is kept; `checkouts/` is rebuilt by cargo from it.
pub fn skip_git_path(rel: &Path) -> bool {
    !rel.starts_with("db")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_filter_keeps_only_locked() {
        let t = tempfile::tempdir().unwrap();
        let lock = t.path().join("Cargo.lock");
        std::fs::write(
            &lock,
            r#"
version = 4
[[package]]
name = "itoa"
version = "1.0.11"
source = "registry+https://github.com/rust-lang/crates.io-index"
[[package]]
name = "local"
version = "0.1.0"
"#,
        )
        .unwrap();
        let mut l = LockedPackages::default();
        l.add_lockfile(&lock).unwrap();
        let skip = |p: &str| l.skip_registry_path(Path::new(p));
        assert!(!skip(
            "cache/index.crates.io-1949cf8c6b5b557f/itoa-1.0.11.crate"
        ));
        assert!(skip(
            "cache/index.crates.io-1949cf8c6b5b557f/serde-1.0.0.crate"
        ));
        assert!(skip("src/index.crates.io-1949cf8c6b5b557f/itoa-1.0.11"));
        assert!(!skip("index/index.crates.io-1949cf8c6b5b557f/config.json"));
        assert!(!skip(
            "index/index.crates.io-1949cf8c6b5b557f/.cache/it/oa/itoa"
        ));
        assert!(!skip("index/index.crates.io-1949cf8c6b5b557f/.cache/it"));
        assert!(skip(
            "index/index.crates.io-1949cf8c6b5b557f/.cache/se/rd/serde"
        ));
        assert!(!l.has_git);
        assert!(skip_git_path(Path::new("checkouts/x")));
        assert!(!skip_git_path(Path::new("db/x")));
    }
}
