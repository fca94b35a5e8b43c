//! Release outputs of `cargo xtask ci --release`: each cargo repo is built with
//! `cargo build --release --locked` and its variant's features, the binaries its manifest
//! entry lists in `artifacts` are collected into `<run dir>/artifacts/<repo>/` with a
//! `SHA256SUMS` file (the format of `sha256sum`, so `sha256sum -c SHA256SUMS` verifies it
//! in that directory), and one `<run dir>/artifacts/release-manifest.json` describes the
//! whole chain ([`ReleaseManifest`]).
//!
//! # The builds store
//!
//! Artifacts are kept per key in `<cache root>/builds/<repo>/<key>/` (`entry.json` and
//! `files/`), written under `<cache root>/tmp/` and published with one `rename(2)`, like
//! cache entries (a `tmp/` leftover of a dead writer is removed by the next
//! `Cache::open`). The key ([`builds_key`]) covers the repo's target cache key (toolchain,
//! variant features, profile, dependency mode, lockfile), the word `release` (with
//! `--verify-deterministic`, `release+remap-target`: other rustflags), the repo's input
//! fingerprint and the artifact names. The target key alone does not cover the
//! sources (it is meant to be reused across commits), so the fingerprint, which covers
//! the checkout's content and every upstream repo's fingerprint, is what makes "unchanged
//! repo" exact. A hit copies the files out (after checking every sha256) instead of
//! building; a `cached` repo (its steps are skipped) gets its artifacts the same way.
//! Only the 3 newest entries per repo are kept.
//!
//! # Deterministic builds (`--verify-deterministic`)
//!
//! The repo is built a second time from an empty target dir,
//! `CARGO_TARGET_DIR=<run dir>/verify/<repo>` (the first build's target dir and its cache
//! entry are untouched), and the sha256 of every artifact is compared with the first
//! build's; any difference fails the repo and names the files. The verify target dir is
//! removed when the builds agree and kept for inspection (e.g. with diffoscope) when they
//! do not.
//!
//! What makes two Rust builds of the same source differ
//! (<https://reproducible-builds.org/docs/>):
//!
//! - absolute paths: `file!()`, panic locations, `debuginfo` and some build scripts embed
//!   the path of the checkout, of `$CARGO_HOME/registry/src` and of `OUT_DIR` (inside the
//!   target dir);
//! - timestamps: a build script that bakes in the current time (`cargo:rustc-env=
//!   BUILT_AT=...`, `chrono::Utc::now()` in `build.rs`);
//! - randomness: a build script that generates random seeds or uses a `HashMap`'s
//!   iteration order to write code;
//! - codegen-units ordering: rustc splits a crate into codegen units and links them in a
//!   fixed order, so this is stable today, but a linker or a `-C` flag that is not
//!   (e.g. parallel LTO in some linkers) shows up here;
//! - the environment: a different toolchain, linker or `RUSTFLAGS`.
//!
//! What the release build sets so that the first two do not differ between the two
//! builds (see [`rustflags`]): `--remap-path-prefix` (through `CARGO_ENCODED_RUSTFLAGS`,
//! after any `RUSTFLAGS` the repo or the caller sets) mapping the checkout root to
//! `/chain`, `$CARGO_HOME` to `/cargo` and, with `--verify-deterministic`, both target
//! dirs to `/target`; and `SOURCE_DATE_EPOCH` ([`source_date_epoch`]: the commit time of
//! the checkout, 0 outside git), the variable reproducible-builds.org defines for tools
//! and build scripts that want a timestamp. A build script that reads the clock anyway is
//! caught, which is the point. Because the remapped target dirs include the run dir, a
//! `--verify-deterministic` run rebuilds the release units of the first build as well.
//!
//! This module owns the release build, the store and the manifest; it never touches the
//! target cache and runs cargo only through [`crate::support::exec`].

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::engine::events::{Event, Reporter};
use crate::engine::manifest::{Manifest, RepoKind};
use crate::engine::plan::{Plan, RepoPlan};
use crate::engine::steps::PreparedStep;
use crate::engine::summary::{ArtifactFile, ReleaseRepo, ReleaseStatus, RepoReport, RepoStatus};
use crate::support::fs as fsutil;
use crate::support::publish;

/// Version of the builds store's key derivation and `entry.json`; change it when either
/// changes, so old entries are never mistaken for new ones.
pub const STORE_VERSION: &str = "1";

/// Format version of `release-manifest.json`.
pub const MANIFEST_SCHEMA: u32 = 1;

/// Entries kept per repo in the builds store (newest first).
pub const KEEP_PER_REPO: usize = 3;

/// What `--release` / `--verify-deterministic` ask of a run, with the manifest's
/// `artifacts` lists (so the runner needs no manifest).
#[derive(Debug, Clone, Default)]
pub struct ReleaseOptions {
    /// Build every repo a second time from a clean target dir and compare the hashes.
    pub verify_deterministic: bool,
    /// Binary names to collect, per repo name (the manifest's `artifacts`).
    pub artifacts: BTreeMap<String, Vec<String>>,
}

impl ReleaseOptions {
    /// The options for `manifest`'s repos.
    pub fn from_manifest(manifest: &Manifest, verify_deterministic: bool) -> ReleaseOptions {
        ReleaseOptions {
            verify_deterministic,
            artifacts: manifest
                .repos
                .iter()
                .map(|r| (r.name.clone(), r.artifacts.clone()))
                .collect(),
        }
    }
}

/// `<run dir>/artifacts/release-manifest.json`: every repo of the run, in plan order.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseManifest {
    /// [`MANIFEST_SCHEMA`].
    pub schema_version: u32,
    /// Run id (the run directory's name).
    pub run_id: String,
    /// Variant built.
    pub variant: String,
    /// One entry per repo of the run.
    pub repos: Vec<ReleaseRepo>,
}

/// `SHA256SUMS` text for `files`: one `<sha256>  <name>` line each (two spaces: the text
/// mode marker of GNU `sha256sum`, which `sha256sum -c` reads), sorted by name.
pub fn sha256sums(files: &[ArtifactFile]) -> String {
    let mut sorted: Vec<&ArtifactFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    sorted
        .iter()
        .map(|f| format!("{}  {}\n", f.sha256, f.name))
        .collect()
}

/// Names whose hashes differ between two builds, or that only one build has, each with
/// both hashes (`name: <first> (first build) vs <second> (clean rebuild)`), sorted.
pub fn differing(first: &[ArtifactFile], second: &[ArtifactFile]) -> Vec<String> {
    let a: BTreeMap<&str, &str> = first
        .iter()
        .map(|f| (f.name.as_str(), f.sha256.as_str()))
        .collect();
    let b: BTreeMap<&str, &str> = second
        .iter()
        .map(|f| (f.name.as_str(), f.sha256.as_str()))
        .collect();
    let mut names: Vec<&str> = a.keys().chain(b.keys()).copied().collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter(|n| a.get(n) != b.get(n))
        .map(|n| {
            format!(
                "{n}: {} (first build) vs {} (clean rebuild)",
                a.get(n).copied().unwrap_or("missing"),
                b.get(n).copied().unwrap_or("missing")
            )
        })
        .collect()
}

/// The rustflags of a release build, one argument each (for `CARGO_ENCODED_RUSTFLAGS`,
/// joined by `\x1f`): `existing` first (the `RUSTFLAGS` in force, split on whitespace as
/// cargo does), then `--remap-path-prefix=FROM=TO` for every `(FROM, TO)` of `maps`.
/// rustc applies the last matching mapping, so callers list general prefixes first.
pub fn rustflags(existing: Option<&str>, maps: &[(PathBuf, String)]) -> Vec<String> {
    let mut out: Vec<String> = existing
        .map(|s| s.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    for (from, to) in maps {
        out.push(format!("--remap-path-prefix={}={to}", from.display()));
    }
    out
}

/// `path` made absolute, and its canonical form when that differs (a symlinked checkout
/// may reach rustc either way).
fn path_forms(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(a) = std::path::absolute(path) {
        out.push(fsutil::normalize(&a));
    }
    if let Ok(c) = path.canonicalize() {
        if !out.contains(&c) {
            out.push(c);
        }
    }
    out
}

/// `SOURCE_DATE_EPOCH` for a checkout: the committer time of `HEAD` in seconds since the
/// Unix epoch (`git log -1 --format=%ct`), or 0 outside git, as reproducible-builds.org's
/// specification asks ("the last modification of the source").
pub fn source_date_epoch(dir: &Path) -> u64 {
    git_out(dir, &["log", "-1", "--format=%ct"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// `git rev-parse HEAD` in `dir`, or `None` outside git.
pub fn git_commit(dir: &Path) -> Option<String> {
    git_out(dir, &["rev-parse", "HEAD"])
}

fn git_out(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

/// The builds store key of a repo: 16 hex chars of the sha256 (see
/// [`crate::cache::key::hash_inputs`]) over [`STORE_VERSION`], the target key, `release`
/// (`release+remap-target` with `verify`: those builds get other rustflags, see
/// [`rustflags`], so their bytes may differ), the input fingerprint and the artifact
/// names, prefixed with the repo name.
pub fn builds_key(
    repo: &str,
    target_key: &str,
    fingerprint: &str,
    artifacts: &[String],
    verify: bool,
) -> String {
    let kind = if verify {
        "release+remap-target"
    } else {
        "release"
    };
    let inputs = vec![
        ("store-version".to_owned(), STORE_VERSION.to_owned()),
        ("target-key".to_owned(), target_key.to_owned()),
        ("kind".to_owned(), kind.to_owned()),
        ("fingerprint".to_owned(), fingerprint.to_owned()),
        ("artifacts".to_owned(), artifacts.join(",")),
    ];
    format!("{repo}-{}", &crate::cache::key::hash_inputs(&inputs)[..16])
}

/// The version a repo is released at (see [`ReleaseRepo::version`]).
pub fn repo_version(repo: &str, packages: &BTreeMap<String, String>) -> Option<String> {
    let mut vs = packages.values();
    let first = vs.next()?;
    if vs.all(|v| v == first) {
        return Some(first.clone());
    }
    packages.get(repo).cloned()
}

/// Hash the files `names` in `dir` (each must exist).
///
/// Errors: a file is missing (with the fix: the name must be a `[[bin]]` the build
/// produces) or unreadable.
fn hash_files(repo: &str, dir: &Path, names: &[String]) -> Result<Vec<ArtifactFile>> {
    let mut out = Vec::new();
    for n in names {
        let p = dir.join(n);
        if !p.is_file() {
            bail!(
                "artifact `{n}` of repo `{repo}` was not built ({} does not exist): `artifacts` lists binary names, check them against the repo's [[bin]] targets and their required-features",
                p.display()
            );
        }
        out.push(ArtifactFile {
            name: n.clone(),
            path: format!("{repo}/{n}"),
            size: fs::metadata(&p)?.len(),
            sha256: fsutil::sha256_file(&p).with_context(|| format!("hash {}", p.display()))?,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// What `entry.json` of a builds store entry holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoreEntry {
    store_version: String,
    repo: String,
    key: String,
    created_unix: u64,
    files: Vec<ArtifactFile>,
}

/// The builds store under a cache root.
#[derive(Debug, Clone)]
pub struct BuildsStore {
    root: PathBuf,
}

impl BuildsStore {
    /// The store of cache root `cache_root` (`<cache_root>/builds`).
    pub fn new(cache_root: &Path) -> BuildsStore {
        BuildsStore {
            root: cache_root.to_path_buf(),
        }
    }

    fn entry_dir(&self, repo: &str, key: &str) -> PathBuf {
        self.root.join("builds").join(repo).join(key)
    }

    /// Read entry `key` of `repo` back and check it (`cache::untrusted`): `entry.json`
    /// read bounded without following a symlink, of this store's version, naming this
    /// repo and key; each file a safe single file name with its `repo/name` path, listed
    /// once, a regular file under `files/` (never a symlink out of the store) whose
    /// sha256 matches. `Err(why)` when damaged.
    fn read_checked(&self, repo: &str, key: &str) -> std::result::Result<StoreEntry, String> {
        use crate::cache::untrusted;
        let dir = self.entry_dir(repo, key);
        let text = untrusted::read_meta(&dir.join("entry.json")).map_err(|e| e.to_string())?;
        let entry: StoreEntry = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        if entry.store_version != STORE_VERSION || entry.repo != repo || entry.key != key {
            return Err("of another version, repo or key".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for f in &entry.files {
            if !untrusted::is_safe_name(&f.name) || f.path != format!("{repo}/{}", f.name) {
                return Err(format!("file name `{}` is not a plain file name", f.name));
            }
            if !names.insert(f.name.as_str()) {
                return Err(format!("file `{}` is listed twice", f.name));
            }
            let p = dir.join("files").join(&f.name);
            let mut file = untrusted::open_regular(&p).map_err(|e| e.to_string())?;
            let mut h = <sha2::Sha256 as sha2::Digest>::new();
            std::io::copy(&mut file, &mut h).map_err(|e| e.to_string())?;
            if hex::encode(sha2::Digest::finalize(h)) != f.sha256 {
                return Err(format!("`{}` does not match its sha256", f.name));
            }
        }
        Ok(entry)
    }

    /// Copy the files of entry `key` into `dst` after checking it ([`Self::read_checked`]).
    /// Returns the files, or `None` on a miss. A damaged entry is a miss, and is removed
    /// when `writable` (a read-only run, e.g. an untrusted event, changes nothing).
    pub fn restore(
        &self,
        repo: &str,
        key: &str,
        dst: &Path,
        writable: bool,
    ) -> Option<Vec<ArtifactFile>> {
        use crate::cache::untrusted::is_safe_name;
        if !is_safe_name(repo) || !is_safe_name(key) {
            return None;
        }
        let dir = self.entry_dir(repo, key);
        if fs::symlink_metadata(dir.join("entry.json")).is_err() {
            return None;
        }
        let entry = match self.read_checked(repo, key) {
            Ok(e) => e,
            Err(why) => {
                eprintln!(
                    "warning: builds store entry {key} is damaged ({why}): not used, building"
                );
                if writable {
                    self.discard(&dir);
                }
                return None;
            }
        };
        // Only the listed files, checked above: nothing else in `files/` is copied.
        let names: Vec<&str> = entry.files.iter().map(|f| f.name.as_str()).collect();
        crate::cache::transfer::par_copy(&dir.join("files"), dst, false, &|p| {
            !names.iter().any(|n| Path::new(n) == p)
        })
        .ok()?;
        Some(entry.files)
    }

    /// Publish `files` (in `src`) as entry `key`: written under `<cache root>/tmp/`, then
    /// renamed into place; an entry that already exists is kept (first writer wins).
    /// Then only the [`KEEP_PER_REPO`] newest entries of the repo are kept.
    ///
    /// Errors: I/O while writing (the caller turns it into a warning).
    pub fn save(&self, repo: &str, key: &str, src: &Path, files: &[ArtifactFile]) -> Result<()> {
        let dst = self.entry_dir(repo, key);
        if dst.join("entry.json").is_file() {
            return Ok(());
        }
        // Real directories: a symlink in their place would put the entry outside the
        // cache root.
        for d in [
            self.root.join("builds"),
            self.root.join("builds").join(repo),
        ] {
            crate::cache::untrusted::ensure_real_dir(&d)?;
        }
        // A leased path under the cache's `tmp/` (`cache::scratch`): `Cache::open` removes
        // it only once this writer is gone; dropping the lease removes what is left.
        let lease = crate::cache::scratch::Scratch::in_root(&self.root, &format!("builds-{key}"))?;
        let tmp = lease.path();
        let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
        fs::create_dir_all(tmp.join("files"))?;
        if !files.is_empty() {
            crate::cache::transfer::par_copy(src, &tmp.join("files"), false, &|p| {
                !names.iter().any(|n| Path::new(n) == p)
            })?;
        }
        let entry = StoreEntry {
            store_version: STORE_VERSION.to_owned(),
            repo: repo.to_owned(),
            key: key.to_owned(),
            created_unix: crate::support::time::now_unix(),
            files: files.to_vec(),
        };
        fs::write(tmp.join("entry.json"), serde_json::to_vec_pretty(&entry)?)?;
        // Another job may have published the same key first: its entry stands.
        publish::publish_dir(tmp, &dst)?;
        self.prune(repo);
        Ok(())
    }

    fn discard(&self, dir: &Path) {
        let Ok(trash) = crate::cache::scratch::Scratch::in_root(&self.root, "builds-trash") else {
            return;
        };
        // Dropping the lease deletes what was moved there (a symlink as a link).
        let _ = fs::rename(dir, trash.path());
    }

    /// Keep the newest [`KEEP_PER_REPO`] entries of `repo` (by `created_unix`).
    fn prune(&self, repo: &str) {
        let dir = self.root.join("builds").join(repo);
        if !crate::cache::untrusted::is_real_dir(&dir) {
            return;
        }
        let mut entries: Vec<(u64, PathBuf)> = fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let entry: StoreEntry =
                    serde_json::from_slice(&fs::read(e.path().join("entry.json")).ok()?).ok()?;
                Some((entry.created_unix, e.path()))
            })
            .collect();
        entries.sort_by(|a, b| b.cmp(a));
        for (_, dir) in entries.into_iter().skip(KEEP_PER_REPO) {
            self.discard(&dir);
        }
    }
}

/// How the release hook of the runner is set up for one repo.
#[derive(Clone, Copy)]
pub struct RepoContext<'a> {
    /// The plan (for the checkout root).
    pub plan: &'a Plan,
    /// The repo.
    pub repo: &'a RepoPlan,
    /// Cache root (for the builds store).
    pub cache_root: &'a Path,
    /// Publish new entries to the builds store (off for untrusted events, `--no-save`).
    pub save: bool,
    /// The run directory.
    pub run_dir: &'a Path,
    /// Where the release steps' events go.
    pub reporter: &'a dyn Reporter,
    /// Release options of the run.
    pub opts: &'a ReleaseOptions,
}

impl RepoContext<'_> {
    fn note(&self, text: &str) {
        self.reporter.report(&Event::Note {
            repo: Some(self.repo),
            text,
        });
    }
}

/// The runner's hook: build (or reuse) `ctx.repo`'s release artifacts, check determinism
/// when asked, and record the outcome in `report` (`release`, the `release` and
/// `verify-deterministic` steps, and a `Failed` status when a build fails, an artifact is
/// missing or the builds differ). Called for repos whose steps succeeded and for `cached`
/// repos.
pub fn run_for_repo(ctx: &RepoContext<'_>, report: &mut RepoReport) {
    let r = ctx.repo;
    let mut rel = ReleaseRepo {
        repo: r.name.clone(),
        status: ReleaseStatus::Ok,
        version: repo_version(&r.name, &r.versions),
        packages: r.versions.clone(),
        commit: git_commit(&r.dir),
        toolchain: r
            .rustc
            .as_deref()
            .and_then(|v| v.lines().next())
            .map(str::to_owned),
        features: r.features.clone(),
        key: None,
        reused: false,
        deterministic: None,
        source_date_epoch: None,
        files: Vec::new(),
    };
    if r.kind == RepoKind::Docs {
        report.release = Some(rel);
        return;
    }
    if let Err(e) = build_repo(ctx, report, &mut rel) {
        rel.status = ReleaseStatus::Failed;
        ctx.note(&format!(
            "release: {}",
            format!("{e:#}").lines().next().unwrap_or("")
        ));
        report.status = RepoStatus::Failed(format!("release: {e:#}"));
    }
    report.release = Some(rel);
}

/// Where one repo's release build reads and writes, and how it runs cargo.
struct Build {
    /// `<run dir>/artifacts/<repo>`: the artifacts and SHA256SUMS.
    out_dir: PathBuf,
    /// `<run dir>/<repo>`: the step logs.
    log_dir: PathBuf,
    /// The repo's target dir (absolute).
    target_dir: PathBuf,
    /// `<run dir>/verify/<repo>`: the clean rebuild's target dir.
    verify_dir: PathBuf,
    /// The binaries to ship.
    names: Vec<String>,
    /// Rebuild from clean and compare.
    verify: bool,
    /// `cargo build --release ...` arguments.
    args: Vec<String>,
    /// Environment of both builds (reproducibility flags).
    env: BTreeMap<String, String>,
    /// Timeout of each build, in seconds (the repo's longest step timeout).
    timeout: u64,
}

fn build_repo(ctx: &RepoContext<'_>, report: &mut RepoReport, rel: &mut ReleaseRepo) -> Result<()> {
    let r = ctx.repo;
    let Some(target_key) = &r.cache_key else {
        bail!("repo `{}` has no target key (it did not resolve)", r.name);
    };
    let b = prepare_build(ctx, rel)?;
    let key = builds_key(
        &r.name,
        &target_key.key,
        &r.fingerprint.hash,
        &b.names,
        b.verify,
    );
    rel.key = Some(key.clone());
    let store = BuildsStore::new(ctx.cache_root);
    let first = match store.restore(&r.name, &key, &b.out_dir, ctx.save) {
        Some(files) => {
            ctx.note(&format!(
                "release: {} file(s) reused from the builds store ({key})",
                files.len()
            ));
            rel.reused = true;
            files
        }
        None => build_artifacts(ctx, report, &b)?,
    };
    if first.is_empty() {
        // Nothing to list: no directory (an empty SHA256SUMS is not a valid one).
        let _ = fs::remove_dir(&b.out_dir);
    } else {
        fs::write(b.out_dir.join("SHA256SUMS"), sha256sums(&first))?;
    }
    rel.files = first.clone();
    if b.verify {
        verify_rebuild(ctx, report, &b, &first, rel)?;
    }
    if !rel.reused && ctx.save {
        if let Err(e) = store.save(&r.name, &key, &b.out_dir, &first) {
            report.warnings.push(format!(
                "builds store: save failed (the build result stands): {e:#}"
            ));
        }
    }
    Ok(())
}

/// Directories, arguments and the reproducible environment of a repo's release build.
fn prepare_build(ctx: &RepoContext<'_>, rel: &mut ReleaseRepo) -> Result<Build> {
    let r = ctx.repo;
    let names = ctx.opts.artifacts.get(&r.name).cloned().unwrap_or_default();
    let verify = ctx.opts.verify_deterministic && !names.is_empty();
    let run_dir = std::path::absolute(ctx.run_dir).context("absolute run dir")?;
    let out_dir = run_dir.join("artifacts").join(&r.name);
    fsutil::remove_tree(&out_dir)?;
    fs::create_dir_all(&out_dir).with_context(|| format!("create {}", out_dir.display()))?;
    let log_dir = run_dir.join(&r.name);
    fs::create_dir_all(&log_dir)?;
    let target_dir = r
        .target_dir
        .clone()
        .unwrap_or_else(|| crate::engine::plan::default_target_dir(&r.dir));
    let target_dir = std::path::absolute(&target_dir)?;
    let verify_dir = run_dir.join("verify").join(&r.name);
    let epoch = source_date_epoch(&r.dir);
    rel.source_date_epoch = Some(epoch);
    let mut maps: Vec<(PathBuf, String)> = Vec::new();
    for p in path_forms(&ctx.plan.root) {
        maps.push((p, "/chain".into()));
    }
    for p in path_forms(&crate::cache::cargo_home::cargo_home()) {
        maps.push((p, "/cargo".into()));
    }
    if verify {
        // Both target dirs, in both builds: the flags must be the same for the two builds
        // to be comparable, and OUT_DIR paths then read `/target/...` in either.
        fs::create_dir_all(&verify_dir)?;
        for d in [&target_dir, &verify_dir] {
            for p in path_forms(d) {
                maps.push((p, "/target".into()));
            }
        }
    }
    let existing = r
        .env
        .get("RUSTFLAGS")
        .cloned()
        .or_else(|| std::env::var("RUSTFLAGS").ok());
    let mut env = r.env.clone();
    env.insert(
        "CARGO_ENCODED_RUSTFLAGS".into(),
        rustflags(existing.as_deref(), &maps).join("\x1f"),
    );
    env.insert("SOURCE_DATE_EPOCH".into(), epoch.to_string());
    let mut args: Vec<String> = ["build", "--release", "--locked", "--workspace"]
        .map(str::to_owned)
        .to_vec();
    if !r.features.is_empty() {
        args.push("--features".into());
        args.push(r.features.join(","));
    }
    for n in &names {
        args.push("--bin".into());
        args.push(n.clone());
    }
    Ok(Build {
        timeout: r.steps.iter().map(|s| s.timeout_secs).max().unwrap_or(3600),
        out_dir,
        log_dir,
        target_dir,
        verify_dir,
        names,
        verify,
        args,
        env,
    })
}

/// Build the release binaries and copy them into the artifacts dir; their hashes.
fn build_artifacts(
    ctx: &RepoContext<'_>,
    report: &mut RepoReport,
    b: &Build,
) -> Result<Vec<ArtifactFile>> {
    run_cargo(ctx, report, b, "release", &b.env)?;
    let built = hash_files(&ctx.repo.name, &b.target_dir.join("release"), &b.names)?;
    for f in &built {
        let to = b.out_dir.join(&f.name);
        fs::copy(b.target_dir.join("release").join(&f.name), &to)
            .with_context(|| format!("copy {} into {}", f.name, b.out_dir.display()))?;
    }
    Ok(built)
}

/// `--verify-deterministic`: rebuild from a clean target dir and compare every artifact's
/// hash with the first build's.
fn verify_rebuild(
    ctx: &RepoContext<'_>,
    report: &mut RepoReport,
    b: &Build,
    first: &[ArtifactFile],
    rel: &mut ReleaseRepo,
) -> Result<()> {
    fsutil::remove_tree(&b.verify_dir)?;
    let mut venv = b.env.clone();
    venv.insert(
        "CARGO_TARGET_DIR".into(),
        b.verify_dir.display().to_string(),
    );
    run_cargo(ctx, report, b, "verify-deterministic", &venv)?;
    let second = hash_files(&ctx.repo.name, &b.verify_dir.join("release"), &b.names)?;
    let diff = differing(first, &second);
    rel.deterministic = Some(diff.is_empty());
    if !diff.is_empty() {
        bail!(
            "the build is not deterministic: a clean rebuild (target dir {}, kept for inspection) gave different bytes for:\n{}\n(see the module docs of release_build for the usual causes: absolute paths, timestamps or randomness in build scripts)",
            b.verify_dir.display(),
            diff.join("\n")
        );
    }
    ctx.note(&format!(
        "release: deterministic ({} file(s) identical in a clean rebuild)",
        second.len()
    ));
    let _ = fsutil::remove_tree(&b.verify_dir);
    // `verify/` itself, once the last repo's tree is gone.
    let _ = b.verify_dir.parent().map(fs::remove_dir);
    Ok(())
}

/// Run one cargo command as a step of the repo, through the runner's step executor
/// (logged in `<log dir>/<name>.log`, shown in the summary). Errors when it does not
/// succeed.
fn run_cargo(
    ctx: &RepoContext<'_>,
    report: &mut RepoReport,
    b: &Build,
    name: &str,
    env: &BTreeMap<String, String>,
) -> Result<()> {
    let prepared = PreparedStep {
        name: name.to_owned(),
        step: name.to_owned(),
        program: "cargo".into(),
        args: b.args.clone(),
        env: env.clone(),
        env_remove: ctx.repo.env_remove.clone(),
        dir: ctx.repo.dir.clone(),
        timeout_secs: b.timeout,
        json_diagnostics: false,
        log: b.log_dir.join(format!("{name}.log")),
        junit: None,
        lenient_no_lib: false,
        coverage_dir: None,
        blocked: None,
    };
    let run = crate::engine::step::execute(ctx.repo, &prepared, ctx.reporter);
    report.steps.push(run.report);
    match run.failure {
        None => Ok(()),
        Some(why) => bail!("`{}`: {why}", prepared.command_line()),
    }
}

/// Write `<run dir>/artifacts/release-manifest.json` for the run's `repos` (in plan
/// order): a repo with a release entry gets it, any other (skipped, failed before its
/// release build) an entry with its status and no files. Returns the file's path.
///
/// Errors: the file cannot be written.
pub fn write_release_manifest(
    run_dir: &Path,
    run_id: &str,
    variant: &str,
    repos: &[RepoReport],
) -> Result<PathBuf> {
    let rows: Vec<(&str, &RepoStatus, Option<&ReleaseRepo>)> = repos
        .iter()
        .map(|r| (r.name.as_str(), &r.status, r.release.as_ref()))
        .collect();
    let manifest = release_manifest(run_id, variant, &rows);
    let dir = run_dir.join("artifacts");
    fs::create_dir_all(&dir)?;
    let path = dir.join("release-manifest.json");
    fs::write(&path, serde_json::to_vec_pretty(&manifest)?)
        .with_context(|| format!("write {}", path.display()))?;
    Ok(path)
}

/// The [`ReleaseManifest`] of a run's repos, given as `(name, status, release entry)` in
/// plan order.
pub fn release_manifest(
    run_id: &str,
    variant: &str,
    repos: &[(&str, &RepoStatus, Option<&ReleaseRepo>)],
) -> ReleaseManifest {
    ReleaseManifest {
        schema_version: MANIFEST_SCHEMA,
        run_id: run_id.to_owned(),
        variant: variant.to_owned(),
        repos: repos
            .iter()
            .map(|(name, status, release)| match release {
                Some(rel) => (*rel).clone(),
                None => ReleaseRepo {
                    repo: (*name).to_owned(),
                    status: match status {
                        RepoStatus::Failed(_) => ReleaseStatus::Failed,
                        _ => ReleaseStatus::Skipped,
                    },
                    version: None,
                    packages: BTreeMap::new(),
                    commit: None,
                    toolchain: None,
                    features: Vec::new(),
                    key: None,
                    reused: false,
                    deterministic: None,
                    source_date_epoch: None,
                    files: Vec::new(),
                },
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, sha: &str) -> ArtifactFile {
        ArtifactFile {
            name: name.into(),
            path: format!("r/{name}"),
            size: 3,
            sha256: sha.into(),
        }
    }

    #[test]
    fn sha256sums_is_sorted_with_two_spaces() {
        let s = sha256sums(&[file("b", "22"), file("a", "11")]);
        assert_eq!(s, "11  a\n22  b\n");
        assert_eq!(sha256sums(&[]), "");
    }

    #[test]
    fn differing_names_changed_and_one_sided_files() {
        let first = [file("a", "11"), file("b", "22"), file("c", "33")];
        let second = [file("a", "11"), file("b", "99"), file("d", "44")];
        assert_eq!(
            differing(&first, &second),
            [
                "b: 22 (first build) vs 99 (clean rebuild)",
                "c: 33 (first build) vs missing (clean rebuild)",
                "d: missing (first build) vs 44 (clean rebuild)",
            ]
        );
        assert!(differing(&first, &first).is_empty());
    }

    #[test]
    fn rustflags_keep_existing_then_remap_in_order() {
        let f = rustflags(
            Some(" -C  target-cpu=native "),
            &[
                (PathBuf::from("/w/chain"), "/chain".into()),
                (PathBuf::from("/home/u/.cargo"), "/cargo".into()),
            ],
        );
        assert_eq!(
            f,
            [
                "-C",
                "target-cpu=native",
                "--remap-path-prefix=/w/chain=/chain",
                "--remap-path-prefix=/home/u/.cargo=/cargo",
            ]
        );
        assert!(rustflags(None, &[]).is_empty());
    }

    #[test]
    fn builds_key_changes_with_every_input() {
        let k = builds_key("node", "node-base-1-2", "fp", &["node".into()], false);
        assert!(
            k.starts_with("node-") && k.len() == "node-".len() + 16,
            "{k}"
        );
        assert_eq!(
            k,
            builds_key("node", "node-base-1-2", "fp", &["node".into()], false)
        );
        assert_ne!(
            k,
            builds_key("node", "node-base-1-3", "fp", &["node".into()], false)
        );
        assert_ne!(
            k,
            builds_key("node", "node-base-1-2", "fp2", &["node".into()], false)
        );
        assert_ne!(k, builds_key("node", "node-base-1-2", "fp", &[], false));
        assert_ne!(
            k,
            builds_key("node", "node-base-1-2", "fp", &["node".into()], true)
        );
    }

    #[test]
    fn version_is_shared_or_the_repos_own() {
        let mut p = BTreeMap::new();
        assert_eq!(repo_version("r", &p), None);
        p.insert("a".to_owned(), "1.0.0".to_owned());
        p.insert("r".to_owned(), "1.0.0".to_owned());
        assert_eq!(repo_version("r", &p).as_deref(), Some("1.0.0"));
        p.insert("r".to_owned(), "2.0.0".to_owned());
        assert_eq!(repo_version("r", &p).as_deref(), Some("2.0.0"));
        assert_eq!(repo_version("x", &p), None);
    }

    #[test]
    fn source_date_epoch_is_zero_outside_git() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(source_date_epoch(t.path()), 0);
        assert_eq!(git_commit(t.path()), None);
    }

    #[test]
    fn manifest_shape_lists_every_repo() {
        let rel = ReleaseRepo {
            repo: "node".into(),
            status: ReleaseStatus::Ok,
            version: Some("0.1.0".into()),
            packages: BTreeMap::from([("node".to_owned(), "0.1.0".to_owned())]),
            commit: None,
            toolchain: Some("rustc 1.95.0".into()),
            features: vec!["x".into()],
            key: Some("node-0123456789abcdef".into()),
            reused: false,
            deterministic: Some(true),
            source_date_epoch: Some(0),
            files: vec![file("node", "11")],
        };
        let failed = RepoStatus::Failed("x".into());
        let m = release_manifest(
            "run1",
            "base",
            &[
                ("node", &RepoStatus::Ok, Some(&rel)),
                ("sdk", &failed, None),
            ],
        );
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["repos"][0]["repo"], "node");
        assert_eq!(v["repos"][0]["version"], "0.1.0");
        assert_eq!(v["repos"][0]["commit"], serde_json::Value::Null);
        assert_eq!(v["repos"][0]["toolchain"], "rustc 1.95.0");
        assert_eq!(v["repos"][0]["features"], serde_json::json!(["x"]));
        assert_eq!(
            v["repos"][0]["files"][0],
            serde_json::json!({"name": "node", "path": "r/node", "size": 3, "sha256": "11"})
        );
        assert_eq!(v["repos"][1]["repo"], "sdk");
        assert_eq!(v["repos"][1]["status"], "failed");
        assert_eq!(v["repos"][1]["files"], serde_json::json!([]));
    }

    #[test]
    fn manifest_artifacts_and_the_coverage_step() {
        let m = Manifest::parse(
            "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nartifacts = [\"x\", \"y\"]\nsteps = [\"test\", \"coverage\"]\n[[repo]]\nname = \"b\"\ngithub = \"o/b\"\n",
            Path::new("chain.toml"),
        )
        .unwrap();
        let o = ReleaseOptions::from_manifest(&m, true);
        assert_eq!(o.artifacts["a"], ["x", "y"]);
        assert!(o.artifacts["b"].is_empty(), "artifacts default to none");
        let cov = &m.repos[0].steps[1];
        assert_eq!(cov.name, "coverage");
        assert!(crate::engine::coverage::is_coverage(
            &cov.program,
            &cov.args
        ));
        assert!(cov.features, "coverage takes the variant's features");
        // Not a default step.
        assert!(!m.repos[1].steps.iter().any(|s| s.name == "coverage"));
    }

    #[test]
    fn store_round_trip_checks_hashes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("bin"), b"abc").unwrap();
        fs::write(src.join("SHA256SUMS"), b"ignored").unwrap();
        let files = hash_files("r", &src, &["bin".into()]).unwrap();
        assert_eq!(files[0].size, 3);
        let store = BuildsStore::new(&t.path().join("cache"));
        assert!(store
            .restore("r", "r-k", &t.path().join("x"), true)
            .is_none());
        store.save("r", "r-k", &src, &files).unwrap();
        let dst = t.path().join("dst");
        assert_eq!(store.restore("r", "r-k", &dst, true).unwrap(), files);
        assert_eq!(fs::read(dst.join("bin")).unwrap(), b"abc");
        assert!(
            !dst.join("SHA256SUMS").exists(),
            "only listed files are stored"
        );
        // A changed byte is a damaged entry: discarded, a miss.
        fs::write(t.path().join("cache/builds/r/r-k/files/bin"), b"abd").unwrap();
        assert!(store
            .restore("r", "r-k", &t.path().join("dst2"), true)
            .is_none());
        assert!(!t.path().join("cache/builds/r/r-k").exists());
        // A repo without artifacts still gets an entry (its release build is skipped).
        store
            .save("r", "r-empty", &t.path().join("gone"), &[])
            .unwrap();
        assert_eq!(
            store.restore("r", "r-empty", &t.path().join("dst3"), true),
            Some(vec![])
        );
        let e = hash_files("r", &src, &["nope".into()]).unwrap_err();
        assert!(
            e.to_string()
                .contains("artifact `nope` of repo `r` was not built"),
            "{e}"
        );
    }

    #[test]
    fn builds_store_entries_read_back_are_checked_before_any_path_is_built() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        fs::create_dir_all(&src).unwrap();
        fs::write(src.join("bin"), b"abc").unwrap();
        let files = hash_files("r", &src, &["bin".into()]).unwrap();
        let store = BuildsStore::new(&t.path().join("cache"));
        let outside = t.path().join("outside");
        fs::write(&outside, b"abc").unwrap();
        let entry = t.path().join("cache/builds/r/r-k");
        let json = entry.join("entry.json");
        type Edit<'a> = (&'a str, &'a dyn Fn(&mut serde_json::Value));
        let edits: [Edit; 4] = [
            ("a name that climbs out", &|j| {
                j["files"][0]["name"] = "../../../../outside".into();
                j["files"][0]["path"] = "r/../../../../outside".into();
            }),
            ("another repo", &|j| j["repo"] = "q".into()),
            ("another key", &|j| j["key"] = "r-other".into()),
            ("a file listed twice", &|j| {
                let f = j["files"][0].clone();
                j["files"].as_array_mut().unwrap().push(f);
            }),
        ];
        for (what, edit) in edits {
            store.save("r", "r-k", &src, &files).unwrap();
            let mut j: serde_json::Value =
                serde_json::from_slice(&fs::read(&json).unwrap()).unwrap();
            edit(&mut j);
            fs::write(&json, j.to_string()).unwrap();
            let dst = t.path().join("dst");
            assert!(store.restore("r", "r-k", &dst, true).is_none(), "{what}");
            assert!(!entry.exists(), "{what}: the damaged entry is kept");
            assert!(!dst.exists(), "{what}");
        }
        // A listed file that is a symlink out of the store, with the right hash.
        store.save("r", "r-k", &src, &files).unwrap();
        fs::remove_file(entry.join("files/bin")).unwrap();
        std::os::unix::fs::symlink(&outside, entry.join("files/bin")).unwrap();
        assert!(store
            .restore("r", "r-k", &t.path().join("dst"), false)
            .is_none());
        // Names that are not one path component are never looked up.
        assert!(store
            .restore("../r", "r-k", &t.path().join("dst"), true)
            .is_none());
        assert_eq!(fs::read(&outside).unwrap(), b"abc");
    }
}
