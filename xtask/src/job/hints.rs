//! The hints of a finished job: for every failed repo, the error knowledge base
//! (`ci/error-patterns.toml`, [`crate::report::explain`]) over the log of its failing step,
//! or over its failure reason when it failed before any step (a `cargo metadata` or
//! `cargo generate-lockfile` resolution error), with what the run knows beyond the log
//! ([`HintContext`]): the toolchain the steps ran with against the repo's pin, and in
//! registry mode the crates.io versions its lockfile took for sibling crates against the
//! checkouts' versions.
//!
//! This module reads the plan, the manifest, the checkouts' lockfiles and pin files and the
//! step logs; it writes only into the summary (`hints`, `hint_context`).

use std::collections::BTreeMap;
use std::path::Path;

use crate::engine::manifest::{DepsMode, Manifest};
use crate::engine::plan::{Plan, RepoPlan};
use crate::engine::summary::{RepoStatus, RunSummary};
use crate::engine::toolchain;
use crate::report::explain::{self, HintContext};

/// Knowledge-base hints kept per failed repo.
pub const MAX_HINTS: usize = 3;

/// What the error knowledge base suggests for each failed repo (at most [`MAX_HINTS`]),
/// from the log of its failing step or, when no step failed, its failure reason; the
/// context the hints were computed with is recorded beside them (`hint_context`), so
/// `explain` over the run gives the same hints. A log that cannot be read gives no hints
/// (a hint is never an error).
pub fn add_hints(summary: &mut RunSummary, plan: &Plan, manifest: &Manifest) {
    for r in &mut summary.repos {
        let RepoStatus::Failed(why) = &r.status else {
            continue;
        };
        let text = match r.steps.iter().rev().find(|s| !s.ok()) {
            Some(step) => match std::fs::read(Path::new(&step.log)) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(_) => continue,
            },
            None => why.clone(),
        };
        let cx = plan
            .repos
            .iter()
            .find(|p| p.name == r.name)
            .map(|p| context(plan, p, manifest, &text))
            .unwrap_or_default();
        r.hints = explain::hints_in(&text, &cx, MAX_HINTS);
        r.hint_context = cx.0;
    }
}

/// What the run knows about repo `r` beyond `log`, the text its hints come from (see
/// [`explain::CONTEXT_NAMES`] for each name). Of the sibling crates taken from crates.io
/// at another version than their checkout's, those the log names come first (a compile
/// error names the crate whose API it trips on), and only those when it names any.
pub fn context(plan: &Plan, r: &RepoPlan, manifest: &Manifest, log: &str) -> HintContext {
    let mut cx = HintContext::default();
    let used = r.rustc.as_deref().and_then(rustc_release);
    if let Some(used) = &used {
        cx.set("toolchain", used);
    }
    if let (Some(used), Some(pin)) = (&used, pin_of(r, manifest)) {
        if let (Some(u), Some(p)) = (version_of(used), version_of(&pin)) {
            if u > p {
                cx.set("pinned_toolchain", pin);
            }
        }
    }
    if r.deps == DepsMode::Registry {
        let skew = registry_skew(plan, r);
        let shown = named_in(&skew, log);
        if !shown.is_empty() {
            cx.set("registry_versions", shown.join("; "));
        }
    }
    cx
}

/// The lines of `skew` whose crate `log` names (as `blvm-x` or as the path `blvm_x`), or
/// every line when it names none.
fn named_in<'a>(skew: &'a [(String, String)], log: &str) -> Vec<&'a str> {
    let named: Vec<&str> = skew
        .iter()
        .filter(|(krate, _)| log.contains(krate.as_str()) || log.contains(&krate.replace('-', "_")))
        .map(|(_, line)| line.as_str())
        .collect();
    if named.is_empty() {
        skew.iter().map(|(_, line)| line.as_str()).collect()
    } else {
        named
    }
}

/// The `release:` line of `rustc -vV` (`1.95.0`).
fn rustc_release(verbose: &str) -> Option<String> {
    verbose
        .lines()
        .find_map(|l| l.strip_prefix("release: "))
        .map(|v| v.trim().to_owned())
}

/// The toolchain the repo is kept clean on: the manifest's `toolchain` for it (or
/// `[defaults]`), else its pin file's channel.
fn pin_of(r: &RepoPlan, manifest: &Manifest) -> Option<String> {
    manifest
        .repo(&r.name)
        .ok()
        .and_then(|m| m.toolchain.clone())
        .or_else(|| toolchain::pin_file(&r.dir).and_then(|p| toolchain::pin_channel(&p)))
}

/// `1.88.0` or `1.88` as numbers (a missing patch is 0); `None` for a channel name
/// (`stable`, `nightly-2025-01-01`) or anything else.
fn version_of(v: &str) -> Option<(u64, u64, u64)> {
    let core = v.split(['-', '+']).next()?;
    let mut parts = core.split('.').map(|p| p.parse::<u64>().ok());
    let (major, minor) = (parts.next()??, parts.next()??);
    let patch = match parts.next() {
        Some(p) => p?,
        None => 0,
    };
    parts.next().is_none().then_some((major, minor, patch))
}

/// The sibling crates repo `r`'s lockfile takes from a registry at a version other than
/// their checkout's, each `(crate, "crate 0.1.30 from crates.io (checkout repo: 0.1.19)")`,
/// sorted by crate. Empty when the lockfile cannot be read.
pub fn registry_skew(plan: &Plan, r: &RepoPlan) -> Vec<(String, String)> {
    let checkouts: BTreeMap<&str, (&str, &str)> = plan
        .repos
        .iter()
        .filter(|q| q.name != r.name)
        .flat_map(|q| {
            q.versions
                .iter()
                .map(move |(krate, v)| (krate.as_str(), (q.name.as_str(), v.as_str())))
        })
        .collect();
    let mut out: Vec<(String, String)> = registry_packages(&r.dir.join("Cargo.lock"))
        .into_iter()
        .filter_map(|(krate, version)| {
            let (repo, at) = checkouts.get(krate.as_str())?;
            let line = format!("{krate} {version} from crates.io (checkout {repo}: {at})");
            (version != *at).then_some((krate, line))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// `(name, version)` of every package the lockfile at `path` takes from a registry
/// (`source = "registry+…"` or `"sparse+…"`); empty when it cannot be read or parsed.
fn registry_packages(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(lock) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    lock.get("package")
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let source = p.get("source")?.as_str()?;
            if !(source.starts_with("registry+") || source.starts_with("sparse+")) {
                return None;
            }
            Some((
                p.get("name")?.as_str()?.to_owned(),
                p.get("version")?.as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers_and_channels_do_not() {
        assert!(version_of("1.95.0") > version_of("1.88.0"));
        assert!(version_of("1.100") > version_of("1.95.0"));
        assert_eq!(version_of("1.88"), Some((1, 88, 0)));
        assert_eq!(version_of("stable"), None);
        assert_eq!(version_of("nightly-2025-01-01"), None);
        assert_eq!(version_of("1.2.3.4"), None);
    }

    #[test]
    fn the_release_comes_from_rustc_verbose_output() {
        let v = "rustc 1.95.0 (59807616e 2026-04-14)\nbinary: rustc\ncommit-hash: 5980\nhost: x86_64-unknown-linux-gnu\nrelease: 1.95.0\nLLVM version: 20.1.1\n";
        assert_eq!(rustc_release(v).as_deref(), Some("1.95.0"));
        assert_eq!(rustc_release("rustc 1.95.0"), None);
    }

    #[test]
    fn registry_packages_of_a_lockfile() {
        let dir = tempfile::tempdir().unwrap();
        let lock = dir.path().join("Cargo.lock");
        std::fs::write(
            &lock,
            "version = 4\n\n[[package]]\nname = \"blvm-consensus\"\nversion = \"0.1.34\"\n\n[[package]]\nname = \"blvm-primitives\"\nversion = \"0.1.30\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n\n[[package]]\nname = \"quinn-proto\"\nversion = \"0.11.15\"\nsource = \"git+https://github.com/quinn-rs/quinn?tag=quinn-proto-0.11.15#abc\"\n",
        )
        .unwrap();
        assert_eq!(
            registry_packages(&lock),
            [("blvm-primitives".to_owned(), "0.1.30".to_owned())]
        );
        std::fs::write(&lock, "not toml [").unwrap();
        assert!(registry_packages(&lock).is_empty());
        assert!(registry_packages(&dir.path().join("none")).is_empty());
    }

    #[test]
    fn the_crates_a_log_names_come_alone_else_all() {
        let skew = vec![
            ("blvm-muhash".to_owned(), "muhash line".to_owned()),
            ("blvm-primitives".to_owned(), "primitives line".to_owned()),
        ];
        let log = "error[E0004]: pattern `blvm_primitives::Network::Testnet4` not covered";
        assert_eq!(named_in(&skew, log), ["primitives line"]);
        assert_eq!(
            named_in(&skew, "error: linker failed"),
            ["muhash line", "primitives line"]
        );
        assert!(named_in(&[], log).is_empty());
    }
}
