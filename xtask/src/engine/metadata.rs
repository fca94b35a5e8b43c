//! Reads every cargo repo's resolved graph with `cargo metadata` and turns it into repo
//! edges.
//!
//! `cargo metadata` runs with full resolution (not `--no-deps`), because `[patch]`
//! entries only show up in the resolve graph. All repos are read in parallel, one thread
//! each. This module owns the mapping "package name → repo"; it does not order anything
//! (that is [`crate::engine::graph`]) and does not build anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cargo_metadata::{DependencyKind, Metadata};

use crate::engine::graph::{EdgeOrigin, Graph};
use crate::engine::manifest::{Manifest, RepoKind};
use crate::engine::toolchain::{Choice, Source};

/// What `cargo metadata` told us about one cargo repo (also the shape the resolution
/// cache stores, `crate::engine::resolution`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RepoMetadata {
    /// Repo name from the manifest.
    pub repo: String,
    /// Names of the repo's own workspace member packages, sorted.
    pub members: BTreeSet<String>,
    /// Version of each member package (for release manifests and payloads).
    pub versions: BTreeMap<String, String>,
    /// Every package in the resolve graph with the dependency kinds it is reached by
    /// (from the edge that pulls it in), keyed by package name.
    pub resolved: BTreeMap<String, BTreeSet<EdgeOrigin>>,
    /// `[patch]` entries cargo reported as unused ("Patch `x` was not used in the crate
    /// graph"): each means a sibling checkout was silently not used.
    pub unused_patches: Vec<String>,
    /// Target directory cargo will use for this workspace.
    pub target_directory: PathBuf,
    /// Directory of every package built from a local path (no `source`): the workspace's
    /// members and its path dependencies, sorted. The plan hashes those outside the
    /// chain's checkouts as fingerprint inputs (their sources are read like the repo's).
    pub path_packages: Vec<PathBuf>,
}

/// Run `cargo generate-lockfile` when `dir` has no `Cargo.lock` (the real repos commit
/// none), so the cache key has a lockfile to hash. Returns whether one was generated.
pub fn ensure_lockfile(dir: &Path, env: &[(String, String)]) -> Result<bool> {
    if dir.join("Cargo.lock").exists() {
        return Ok(false);
    }
    // Tracked: an emergency stop kills it before it removes the lockfile it writes.
    let out = crate::support::exec::output_tracked(
        Command::new("cargo")
            .arg("generate-lockfile")
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k, v))),
    )
    .with_context(|| format!("run `cargo generate-lockfile` in {}", dir.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!(
            "`cargo generate-lockfile` failed in {}: {}\n{}",
            dir.display(),
            headline(&stderr),
            stderr.trim()
        );
    }
    Ok(true)
}

/// One line that says why cargo failed: its first `error:` line, and the last line of its
/// "Caused by" chain when that differs (the root cause, e.g. "failed to resolve address
/// for github.com").
pub fn headline(stderr: &str) -> String {
    let first = stderr
        .lines()
        .find(|l| l.starts_with("error"))
        .unwrap_or_else(|| stderr.lines().next().unwrap_or("no output"))
        .trim();
    let last = stderr
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    if last.is_empty() || last == first {
        first.to_owned()
    } else {
        format!("{first} (cause: {last})")
    }
}

/// Run `cargo metadata --format-version 1` (full resolution) in `dir`.
pub fn read_metadata(repo: &str, dir: &Path, env: &[(String, String)]) -> Result<RepoMetadata> {
    let out = Command::new("cargo")
        .args(["metadata", "--format-version", "1"])
        .current_dir(dir)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .with_context(|| format!("run `cargo metadata` in {}", dir.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "`cargo metadata` failed for repo `{repo}` in {}: {}\n{}",
            dir.display(),
            headline(&stderr),
            stderr.trim()
        );
    }
    let stdout = String::from_utf8(out.stdout).context("cargo metadata printed non-UTF-8")?;
    let meta = cargo_metadata::MetadataCommand::parse(stdout)
        .with_context(|| format!("parse `cargo metadata` output of repo `{repo}`"))?;
    Ok(from_metadata(repo, &meta, &stderr))
}

/// Build a [`RepoMetadata`] from parsed metadata and cargo's stderr (for the unused-patch
/// warnings, which cargo prints but does not put in the JSON).
pub fn from_metadata(repo: &str, meta: &Metadata, stderr: &str) -> RepoMetadata {
    let by_id: BTreeMap<_, _> = meta.packages.iter().map(|p| (&p.id, p)).collect();
    let members: BTreeSet<String> = meta
        .workspace_members
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|p| p.name.to_string())
        .collect();
    let versions = meta
        .workspace_members
        .iter()
        .filter_map(|id| by_id.get(id))
        .map(|p| (p.name.to_string(), p.version.to_string()))
        .collect();
    let mut resolved: BTreeMap<String, BTreeSet<EdgeOrigin>> = BTreeMap::new();
    if let Some(resolve) = &meta.resolve {
        for node in &resolve.nodes {
            for dep in &node.deps {
                let Some(pkg) = by_id.get(&dep.pkg) else {
                    continue;
                };
                let entry = resolved.entry(pkg.name.to_string()).or_default();
                for k in &dep.dep_kinds {
                    entry.insert(match k.kind {
                        DependencyKind::Development => EdgeOrigin::Dev,
                        DependencyKind::Build => EdgeOrigin::Build,
                        _ => EdgeOrigin::Normal,
                    });
                }
                if dep.dep_kinds.is_empty() {
                    entry.insert(EdgeOrigin::Normal);
                }
            }
        }
    }
    let unused_patches = stderr
        .lines()
        .filter(|l| l.contains("was not used in the crate graph"))
        .map(|l| {
            l.split('`')
                .nth(1)
                .map_or_else(|| l.trim().to_owned(), str::to_owned)
        })
        .collect();
    let mut path_packages: Vec<PathBuf> = meta
        .packages
        .iter()
        .filter(|p| p.source.is_none())
        .filter_map(|p| {
            p.manifest_path
                .parent()
                .map(|d| d.as_std_path().to_path_buf())
        })
        .collect();
    path_packages.sort();
    path_packages.dedup();
    RepoMetadata {
        repo: repo.to_owned(),
        members,
        versions,
        resolved,
        unused_patches,
        target_directory: meta.target_directory.clone().into_std_path_buf(),
        path_packages,
    }
}

/// Build the repo graph: an edge A → B (origin = how B reaches it) when B's resolved graph
/// contains a package that is a workspace member of A, whether it arrives by a patched
/// path or from the registry (packages are matched by name); plus the manifest's `after`
/// edges. Repos absent from `metas` (docs repos) take part through `after` only.
///
/// Errors when two repos claim a package of the same name: the mapping would be ambiguous.
pub fn build_graph(manifest: &Manifest, metas: &[RepoMetadata]) -> Result<Graph> {
    let mut owner: BTreeMap<&str, &str> = BTreeMap::new();
    for m in metas {
        for p in &m.members {
            if let Some(prev) = owner.insert(p, &m.repo) {
                bail!(
                    "package `{p}` is a workspace member of both `{prev}` and `{}`: each package must belong to one repo",
                    m.repo
                );
            }
        }
    }
    let mut g = Graph::new(manifest.repos.iter().map(|r| r.name.clone()));
    for m in metas {
        for (pkg, origins) in &m.resolved {
            if let Some(up) = owner.get(pkg.as_str()) {
                for o in origins {
                    g.add_edge(up, &m.repo, *o);
                }
            }
        }
    }
    for r in &manifest.repos {
        for a in &r.after {
            g.add_edge(a, &r.name, EdgeOrigin::After);
        }
    }
    Ok(g)
}

/// Check that every repo's checkout is present; the error lists every missing one with
/// the path that was expected and how to get it.
pub fn check_checkouts(manifest: &Manifest, root: &Path) -> Result<()> {
    let mut missing = Vec::new();
    for r in &manifest.repos {
        let dir = Manifest::checkout_dir(root, r);
        let ok = match r.kind {
            RepoKind::Cargo => dir.join("Cargo.toml").is_file(),
            RepoKind::Docs => dir.is_dir(),
        };
        if !ok {
            let what = if r.kind == RepoKind::Cargo && dir.is_dir() {
                format!(
                    "{} has no Cargo.toml (is `kind = \"docs\"` meant?)",
                    dir.display()
                )
            } else {
                format!("expected a checkout at {}", dir.display())
            };
            missing.push(format!("  - {}: {what}", r.name));
        }
    }
    if !missing.is_empty() {
        bail!(
            "missing checkouts:\n{}\nrun `cargo xtask checkout` to clone them from GitHub (or pass --root DIR where they live)",
            missing.join("\n")
        );
    }
    Ok(())
}

/// `rustc -vV` of the toolchain that will build the repo in `dir` under `choice` (the one
/// toolchain rule, [`crate::engine::toolchain`]): the real compiler identity, not the text
/// of a pin file, so two pins naming the same compiler share keys.
///
/// Errors: rustc cannot run, most often because the chosen toolchain is not installed; the
/// message blames where the choice came from ([`Choice::describe`]: `--toolchain`, the
/// matrix cell, the manifest, the pin file, rustup's default) and says how to fix it there.
pub fn rustc_version(dir: &Path, choice: &Choice) -> Result<String> {
    compiler_version(dir, choice, &BTreeMap::new())
}

/// [`rustc_version`] of the compiler cargo will really run for a repo whose steps see
/// `env` (the inherited variables that matter, and the repo's own): `$RUSTC` when `env`
/// sets it (cargo runs that instead of `rustc`), else `rustc` under the toolchain rule,
/// with `env` applied (a `RUSTUP_TOOLCHAIN` there is what the steps use).
///
/// Errors: as [`rustc_version`]; when `$RUSTC` is set, the message blames it.
pub fn compiler_version(
    dir: &Path,
    choice: &Choice,
    env: &BTreeMap<String, String>,
) -> Result<String> {
    // What `rustc -vV` can depend on: the directory (a pin file), the program, and what
    // rustup reads. Preflight and the plan probe the same compilers in one process: the
    // second asks the first's answer (a rustup proxy start costs tens of milliseconds).
    let memo_key = {
        let mut k = vec![
            dir.display().to_string(),
            choice.describe(),
            format!("{:?}", choice.name()),
        ];
        k.extend(choice.env().into_iter().map(|(n, v)| format!("{n}={v}")));
        k.extend(
            env.iter()
                .filter(|(n, _)| n.as_str() == "RUSTC" || n.starts_with("RUSTUP"))
                .map(|(n, v)| format!("{n}={v}")),
        );
        k.join("\n")
    };
    if let Some(v) = VERSIONS.lock().ok().and_then(|m| m.get(&memo_key).cloned()) {
        return Ok(v);
    }
    let v = probe_compiler(dir, choice, env)?;
    if let Ok(mut m) = VERSIONS.lock() {
        m.insert(memo_key, v.clone());
    }
    Ok(v)
}

/// The answers of [`compiler_version`] so far in this process (successes only: a
/// toolchain that cannot run is asked again, and blamed again).
static VERSIONS: std::sync::Mutex<BTreeMap<String, String>> =
    std::sync::Mutex::new(BTreeMap::new());

/// [`compiler_version`] without the memo: run `-vV`.
fn probe_compiler(dir: &Path, choice: &Choice, env: &BTreeMap<String, String>) -> Result<String> {
    let rustc = env.get("RUSTC").cloned().filter(|v| !v.is_empty());
    let out = Command::new(rustc.as_deref().unwrap_or("rustc"))
        .arg("-vV")
        .current_dir(dir)
        .envs(choice.env())
        .envs(env)
        // A probe never downloads a toolchain: a missing one is reported, with the fix.
        .env("RUSTUP_AUTO_INSTALL", "0")
        // rustup prints a backtrace of itself with its error when this is set (CI sets
        // it): noise in the message that names the missing toolchain.
        .env("RUST_BACKTRACE", "0")
        .output();
    let out = match (out, &rustc) {
        (Ok(o), _) => o,
        (Err(e), Some(r)) => {
            bail!("RUSTC={r} cannot run `-vV`: {e}\nfix: point RUSTC at a rustc, or unset it")
        }
        (Err(e), None) => {
            return Err(e).context("run `rustc -vV`: is a Rust toolchain installed and on PATH?")
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        if let Some(r) = &rustc {
            bail!(
                "RUSTC={r} cannot run `-vV`: {}\nfix: point RUSTC at a rustc, or unset it",
                stderr.trim()
            );
        }
        bail!(
            "{}: {}\n{}",
            toolchain_blame(choice),
            stderr.trim(),
            toolchain_fix(choice)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// The first words of a toolchain error: which choice cannot run.
fn toolchain_blame(choice: &Choice) -> String {
    match &choice.source {
        Source::Flag(_) => format!(
            "the toolchain given by {} cannot run `rustc -vV`",
            choice.describe()
        ),
        Source::Cell(_) | Source::Manifest(_) => {
            format!("{} cannot run `rustc -vV`", choice.describe())
        }
        Source::PinFile(_) => format!(
            "the toolchain pinned by {} cannot run `rustc -vV`",
            choice.describe()
        ),
        Source::Default => "rustup's default toolchain cannot run `rustc -vV`".to_owned(),
    }
}

/// How to fix a toolchain that cannot run, where it was chosen.
fn toolchain_fix(choice: &Choice) -> String {
    let install = choice.name().map_or_else(
        || "`rustup toolchain install <name>`".to_owned(),
        |n| format!("`rustup toolchain install {n}`"),
    );
    match &choice.source {
        Source::Flag(_) => format!("fix: install it ({install}) or pass another --toolchain"),
        Source::Cell(_) => format!(
            "fix: install it ({install}), or remove it from the repo's `toolchains` in the manifest"
        ),
        Source::Manifest(_) => format!(
            "fix: install it ({install}), change the repo's `toolchain` in the manifest, or pass --toolchain"
        ),
        Source::PinFile(_) => format!(
            "fix: install it ({install}) or set `toolchain = \"stable\"` for this repo in the manifest (or pass --toolchain)"
        ),
        Source::Default => "fix: set a default (`rustup default stable`) or pass --toolchain".to_owned(),
    }
}

/// The name of rustup's default toolchain (`rustup default`), if rustup is there.
fn rustup_default() -> Option<String> {
    let out = Command::new("rustup")
        .arg("default")
        .current_dir("/")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .next()
        .map(str::to_owned)
        .filter(|_| out.status.success())
}

/// Fallback when full resolution fails: members and *declared* dependencies from
/// `cargo metadata --no-deps`, so the repo can still be placed in the graph (direct edges
/// only) and reported as failed instead of aborting the whole run.
///
/// Runs the cargo that runs us (`$CARGO`, set by `cargo run`/`cargo xtask`) rather than the
/// rustup proxy, so a `rust-toolchain.toml` pin that is not installed cannot stop it:
/// `--no-deps` reads manifests only, which any recent cargo can do.
pub fn read_declared(repo: &str, dir: &Path, env: &[(String, String)]) -> Result<RepoMetadata> {
    let run = |cargo: &std::ffi::OsStr, extra: &[(&str, &str)]| {
        Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(dir)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .envs(extra.iter().copied())
            .output()
            .with_context(|| format!("run `cargo metadata --no-deps` in {}", dir.display()))
    };
    let mut out = match std::env::var_os("CARGO") {
        Some(cargo) => run(&cargo, &[])?,
        None => run("cargo".as_ref(), &[])?,
    };
    if !out.status.success() {
        // Run as a plain binary, `cargo` is the rustup proxy and obeys the pin that just
        // failed: try the machine's default toolchain instead.
        if let Some(default) = rustup_default() {
            out = run("cargo".as_ref(), &[("RUSTUP_TOOLCHAIN", default.as_str())])?;
        }
    }
    if !out.status.success() {
        bail!(
            "`cargo metadata --no-deps` failed for repo `{repo}`:\n{}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let meta = cargo_metadata::MetadataCommand::parse(String::from_utf8_lossy(&out.stdout))?;
    let mut rm = from_metadata(repo, &meta, "");
    for p in &meta.packages {
        for d in &p.dependencies {
            rm.resolved
                .entry(d.name.clone())
                .or_default()
                .insert(match d.kind {
                    DependencyKind::Development => EdgeOrigin::Dev,
                    DependencyKind::Build => EdgeOrigin::Build,
                    _ => EdgeOrigin::Normal,
                });
        }
    }
    Ok(rm)
}
