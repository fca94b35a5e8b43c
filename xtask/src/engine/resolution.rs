//! The resolution cache: what `cargo metadata` and `cargo generate-lockfile` said about a
//! repo, recorded under the cache root and keyed by every input they read, so that an
//! unchanged repo is not resolved again and a repo whose resolution needs the network
//! (a lockfile to generate, a git dependency) asks it once.
//!
//! Layout under the cache root:
//!
//! ```text
//! resolve/<repo>/metadata-<key>.json   the resolved graph (or the failure) of the repo
//! resolve/<repo>/lockfile-<key>.json   the Cargo.lock generated for a repo that commits
//!                                      none (or the failure)
//! ```
//!
//! # What a key covers ([`Inputs`])
//!
//! [`KEY_VERSION`]; the repo and its canonical checkout dir (the metadata holds absolute
//! paths); every `Cargo.toml` under the checkout (not below `.git` or a directory holding
//! cargo's `CACHEDIR.TAG`, i.e. a target dir) and every `Cargo.toml` in the checkout's
//! ancestors (workspace discovery), present or absent; the `Cargo.lock` (metadata only);
//! `rustc -vV` of the compiler the steps use (the toolchain, so also its cargo); the deps
//! mode (registry mode strips sibling patches first, so the hashed manifests are the
//! stripped ones); the cargo config files cargo reads from the checkout (ancestors and
//! `$CARGO_HOME`); `$CARGO_HOME`; the repo's environment from the manifest and toolchain
//! rule; and every inherited variable named `CARGO*`, `RUSTUP*` or `RUSTC*` (cargo's
//! configuration by environment), secret-looking values hashed. A metadata record also
//! lists the manifests outside the checkout its resolution read (every path package
//! elsewhere, a sibling checkout in patched mode, and their ancestors' `Cargo.toml`) with
//! their sha256: a record whose list no longer matches the files is a miss. A lockfile
//! key also covers every `Cargo.toml` of every checkout of the chain (a sibling path
//! dependency's version goes into the lockfile).
//!
//! # When a record is reused (invariant: a record can only save a resolution, never change
//! # what a build reads)
//!
//! - A resolved graph is reused whenever its key and outside manifests match: `cargo
//!   metadata` with a lockfile that satisfies the manifests reads nothing else. It is
//!   recorded only when `cargo metadata` left the `Cargo.lock` as it was; when cargo had to
//!   update the lockfile (which reads the registry index), nothing is recorded and the
//!   next run, keyed by the new lockfile, records it.
//! - A generated lockfile is reused for [`GENERATED_TTL_SECS`] (6 hours): it is a
//!   resolution against the registry index of that time, as valid as one generated now
//!   but older, and the build keys hash the lockfile itself, so a reused one is never
//!   confused with another. After the TTL it is generated again. A repo that commits its
//!   `Cargo.lock` never depends on this TTL.
//! - A failed resolution (most often a git dependency on a host that cannot be reached)
//!   is reused for [`FAILURE_TTL_SECS`] (30 minutes), so an offline runner does not wait
//!   for the same DNS timeout on every run; the repo fails as it would, with the cached
//!   error and its age. `--force` (all repos, or the named ones) resolves them again at
//!   once, and so does any change of an input.
//!
//! # Records are untrusted
//!
//! The cache root may come from an `actions/cache` tarball. Records are read as
//! `cache::untrusted` reads metadata: bounded ([`MAX_RECORD_BYTES`]), never through a
//! symlink or from a FIFO, under real directories; a record counts only when it parses,
//! has this [`SCHEMA_VERSION`], names this repo, kind and key, claims a sane creation
//! time, holds absolute paths only, and (a lockfile) parses as TOML. Anything else is a
//! miss with a warning. Records are written by publish-by-rename (`support::publish`) and
//! at most [`KEEP_PER_REPO`] are kept per repo (the oldest are removed).
//!
//! Owns `resolve/` under the cache root; never touches a checkout (the caller writes a
//! reused lockfile, through `patches::GeneratedLockfile`) and never runs cargo.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Result};
use serde::{Deserialize, Serialize};

use crate::cache::key::hash_inputs;
use crate::cache::untrusted::{self, MAX_UNIX};
use crate::engine::fingerprint::build_env::{config_files, shown_value};
use crate::engine::manifest::DepsMode;
use crate::engine::metadata::RepoMetadata;
use crate::support::fs::sha256_file;
use crate::support::publish;
use crate::support::time::now_unix;

/// Version of the key's inputs: change it when the inputs change.
pub const KEY_VERSION: &str = "resolve-1";

/// Format version of a record.
pub const SCHEMA_VERSION: u32 = 1;

/// Largest record read back, in bytes: a resolved graph of a few hundred packages is some
/// 50 kB and a large lockfile some 300 kB; anything near this is not one of ours.
pub const MAX_RECORD_BYTES: u64 = 16 << 20;

/// How long a failed resolution is reused, in seconds (see the module docs).
pub const FAILURE_TTL_SECS: u64 = 30 * 60;

/// How long a generated lockfile is reused, in seconds (see the module docs).
pub const GENERATED_TTL_SECS: u64 = 6 * 3600;

/// Records kept per repo; the oldest beyond this are removed when one is written.
pub const KEEP_PER_REPO: usize = 32;

/// The longest error text a failure record keeps, in bytes.
const MAX_ERROR_BYTES: usize = 64 << 10;

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// `cargo metadata` (full resolution).
    Metadata,
    /// `cargo generate-lockfile`.
    Lockfile,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Metadata => "metadata",
            Kind::Lockfile => "lockfile",
        }
    }
}

/// What one resolution gave, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum Outcome {
    /// `cargo metadata` succeeded.
    Resolved {
        /// The repo's resolved graph.
        metadata: RepoMetadata,
    },
    /// `cargo generate-lockfile` wrote this `Cargo.lock` (its whole text).
    Generated {
        /// The lockfile's text.
        lockfile: String,
    },
    /// The resolution failed.
    Failed {
        /// Cargo's error, as the plan shows it.
        error: String,
        /// The `--no-deps` fallback (members and declared dependencies), when it worked.
        fallback: Option<RepoMetadata>,
    },
}

/// One record, `resolve/<repo>/<kind>-<key>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    schema_version: u32,
    kind: Kind,
    repo: String,
    key: String,
    /// When the resolution ran, Unix seconds.
    created_unix: u64,
    /// Manifests outside the checkout the resolution read, with their sha256 (or
    /// `absent`).
    outside: Vec<(PathBuf, String)>,
    outcome: Outcome,
}

/// What a key of one repo's resolution is computed from, besides its files.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    /// `rustc -vV` of the compiler the steps use.
    pub rustc: &'a str,
    /// The repo's dependency mode.
    pub deps: DepsMode,
    /// The repo's environment (manifest `env`, toolchain rule).
    pub env: &'a BTreeMap<String, String>,
    /// The environment the steps inherit, as `(name, value)` pairs.
    pub inherited: &'a [(String, String)],
    /// `$CARGO_HOME` as the steps see it.
    pub cargo_home: &'a Path,
}

/// The named inputs of one resolution and their key (see the module docs).
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The repo.
    pub repo: String,
    /// What the record holds.
    pub kind: Kind,
    /// The canonical checkout dir.
    pub dir: PathBuf,
    /// sha256 of every input, `(name, value)` in a stable order, in hex.
    pub key: String,
}

impl Inputs {
    /// The inputs of `cargo metadata` in `dir` (its lockfile included).
    pub fn metadata(repo: &str, dir: &Path, cx: &Context<'_>) -> Inputs {
        let mut pairs = common(repo, Kind::Metadata, dir, cx);
        pairs.push(("lockfile".into(), file_hash(&dir.join("Cargo.lock"))));
        Inputs::new(repo, Kind::Metadata, dir, pairs)
    }

    /// The inputs of `cargo generate-lockfile` in `dir`, which also reads every checkout
    /// of the chain (sibling path dependencies): `chain` is [`chain_manifests`] of them,
    /// read once for every repo that needs a lockfile.
    pub fn lockfile(repo: &str, dir: &Path, cx: &Context<'_>, chain: &[ChainManifests]) -> Inputs {
        let mut pairs = common(repo, Kind::Lockfile, dir, cx);
        let own = canonical(dir);
        for (other, manifests) in chain.iter().filter(|(d, _)| *d != own) {
            for (rel, h) in manifests {
                pairs.push((
                    format!("chain manifest {}/{rel}", other.display()),
                    h.clone(),
                ));
            }
        }
        Inputs::new(repo, Kind::Lockfile, dir, pairs)
    }

    fn new(repo: &str, kind: Kind, dir: &Path, pairs: Vec<(String, String)>) -> Inputs {
        Inputs {
            repo: repo.to_owned(),
            kind,
            dir: canonical(dir),
            key: hash_inputs(&pairs),
        }
    }
}

/// The inputs both kinds share.
fn common(repo: &str, kind: Kind, dir: &Path, cx: &Context<'_>) -> Vec<(String, String)> {
    let dir = canonical(dir);
    let mut pairs = vec![
        ("version".to_owned(), KEY_VERSION.to_owned()),
        ("kind".to_owned(), kind.name().to_owned()),
        ("repo".to_owned(), repo.to_owned()),
        ("dir".to_owned(), dir.display().to_string()),
        ("rustc".to_owned(), cx.rustc.to_owned()),
        ("deps".to_owned(), cx.deps.to_string()),
        ("cargo home".to_owned(), cx.cargo_home.display().to_string()),
    ];
    for (rel, h) in checkout_manifests(&dir) {
        pairs.push((format!("manifest {rel}"), h));
    }
    for a in dir.ancestors().skip(1) {
        let m = a.join("Cargo.toml");
        pairs.push((format!("ancestor manifest {}", m.display()), file_hash(&m)));
    }
    for c in config_files(&dir, cx.cargo_home) {
        let h = file_hash(&c);
        pairs.push((format!("cargo config {}", c.display()), h));
    }
    for (k, v) in cx.env {
        pairs.push((format!("env {k}"), shown_value(k, v)));
    }
    let mut inherited: Vec<&(String, String)> = cx
        .inherited
        .iter()
        .filter(|(k, _)| is_cargo_var(k))
        .collect();
    inherited.sort();
    for (k, v) in inherited {
        pairs.push((format!("inherited {k}"), shown_value(k, v)));
    }
    pairs
}

/// Whether an inherited variable can change what cargo resolves: cargo reads its
/// configuration from `CARGO_*`, rustup picks the cargo by `RUSTUP_*`, and `RUSTC*`
/// changes the compiler whose version the resolver may consult. Output-only variables
/// (`CARGO_TERM_*`, `CARGO_LOG`) and the jobserver (`CARGO_MAKEFLAGS`, different in every
/// process) are left out so they do not make every run a miss.
fn is_cargo_var(name: &str) -> bool {
    (name.starts_with("CARGO") || name.starts_with("RUSTUP") || name.starts_with("RUSTC"))
        && !name.starts_with("CARGO_TERM_")
        && !matches!(name, "CARGO_LOG" | "CARGO_MAKEFLAGS")
}

/// A checkout's canonical dir and its [`checkout_manifests`].
pub type ChainManifests = (PathBuf, Vec<(String, String)>);

/// [`checkout_manifests`] of every dir of `dirs`, each under its canonical path.
pub fn chain_manifests(dirs: &[PathBuf]) -> Vec<ChainManifests> {
    dirs.iter()
        .map(|d| {
            let d = canonical(d);
            let m = checkout_manifests(&d);
            (d, m)
        })
        .collect()
}

/// `path` made canonical where it exists.
fn canonical(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

/// sha256 of a file, or `absent`.
fn file_hash(path: &Path) -> String {
    sha256_file(path).unwrap_or_else(|_| "absent".to_owned())
}

/// Every `Cargo.toml` under `dir` as `(relative path, sha256)`, sorted; `.git` and cargo
/// target dirs (holding `CACHEDIR.TAG`) are not entered, symlinks not followed.
pub fn checkout_manifests(dir: &Path) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .into_iter()
        .filter_entry(|e| {
            !(e.file_type().is_dir()
                && (e.file_name() == ".git" || e.path().join("CACHEDIR.TAG").exists()))
        })
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file() && e.file_name() == "Cargo.toml")
        .map(|e| {
            let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
            (rel.display().to_string(), file_hash(e.path()))
        })
        .collect();
    out.sort();
    out
}

/// The manifests outside `dir` that a resolved graph read: each path package elsewhere
/// and every ancestor's `Cargo.toml` of it, with sha256 or `absent`, sorted.
fn outside_manifests(dir: &Path, meta: &RepoMetadata) -> Vec<(PathBuf, String)> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for p in meta.path_packages.iter().map(|p| canonical(p)) {
        if p.starts_with(dir) {
            continue;
        }
        for a in p.ancestors() {
            let m = a.join("Cargo.toml");
            if !paths.contains(&m) {
                paths.push(m);
            }
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|m| {
            let h = file_hash(&m);
            (m, h)
        })
        .collect()
}

/// How many resolutions a run reused and ran, by repo.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// `<repo> <kind>` reused from a record.
    pub reused: Vec<String>,
    /// `<repo> <kind>` run (a miss).
    pub ran: Vec<String>,
}

/// The resolution cache of one run (see the module docs).
#[derive(Debug)]
pub struct ResolutionCache {
    /// `<cache root>/resolve`.
    dir: PathBuf,
    writable: bool,
    now: u64,
    warnings: Mutex<Vec<String>>,
    counts: Mutex<Counts>,
}

impl ResolutionCache {
    /// The cache under `cache_root`; `writable: false` (a read-only cache root) reads
    /// records but never writes one.
    pub fn open(cache_root: &Path, writable: bool) -> ResolutionCache {
        ResolutionCache::at(cache_root, writable, now_unix())
    }

    /// [`ResolutionCache::open`] at a given time (Unix seconds), for tests of the TTLs.
    pub fn at(cache_root: &Path, writable: bool, now: u64) -> ResolutionCache {
        ResolutionCache {
            dir: cache_root.join("resolve"),
            writable,
            now,
            warnings: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    /// The records that were ignored, as warnings (taken once).
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut self.warnings.lock().expect("warnings"))
    }

    /// What was reused and what ran so far.
    pub fn counts(&self) -> Counts {
        self.counts.lock().expect("counts").clone()
    }

    /// Note that the resolution of `inputs` ran (a miss, or a record not wanted).
    pub fn note_ran(&self, inputs: &Inputs) {
        let what = format!("{} {}", inputs.repo, inputs.kind.name());
        self.counts.lock().expect("counts").ran.push(what);
    }

    fn record_path(&self, inputs: &Inputs) -> Option<PathBuf> {
        untrusted::is_safe_name(&inputs.repo).then(|| {
            self.dir
                .join(&inputs.repo)
                .join(format!("{}-{}.json", inputs.kind.name(), inputs.key))
        })
    }

    /// The outcome recorded for `inputs`, if a valid, current record has one.
    /// `retry_failed`: a recorded failure is not wanted (`--force`). A damaged or hostile
    /// record is a miss with a warning; an expired or outdated one is a quiet miss.
    pub fn lookup(&self, inputs: &Inputs, retry_failed: bool) -> Option<Outcome> {
        let path = self.record_path(inputs)?;
        let parent = path.parent()?;
        if !untrusted::is_real_dir(&self.dir) || !untrusted::is_real_dir(parent) {
            return None;
        }
        let text = match untrusted::read_bounded(&path, MAX_RECORD_BYTES) {
            Ok(b) => String::from_utf8(b).map_err(|_| "it is not UTF-8".to_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => Err(e.to_string()),
        };
        let rec = text.and_then(|t| {
            let rec: Record = serde_json::from_str(&t).map_err(|e| e.to_string())?;
            validate(&rec, inputs, self.now).map(|()| rec)
        });
        let rec = match rec {
            Ok(r) => r,
            Err(why) => {
                self.warn(format!(
                    "ignored the resolution record {}: {why}; the repo is resolved again",
                    path.display()
                ));
                return None;
            }
        };
        let age = self.now.saturating_sub(rec.created_unix);
        let fresh = match &rec.outcome {
            Outcome::Resolved { .. } => true,
            Outcome::Generated { .. } => age < GENERATED_TTL_SECS,
            Outcome::Failed { .. } => !retry_failed && age < FAILURE_TTL_SECS,
        };
        let current = rec.outside.iter().all(|(p, h)| file_hash(p) == *h);
        (fresh && current).then(|| {
            let what = format!("{} {}", inputs.repo, inputs.kind.name());
            self.counts.lock().expect("counts").reused.push(what);
            with_age(rec.outcome, age)
        })
    }

    /// Record `outcome` for `inputs` (a no-op on a read-only cache). For a resolved
    /// graph, `dir`'s outside manifests are recorded with it. A write that fails is a
    /// warning: the run goes on without the record.
    pub fn store(&self, inputs: &Inputs, outcome: &Outcome) {
        if !self.writable {
            return;
        }
        let Some(path) = self.record_path(inputs) else {
            return;
        };
        let outside = match outcome {
            Outcome::Resolved { metadata } => outside_manifests(&inputs.dir, metadata),
            _ => Vec::new(),
        };
        let mut outcome = outcome.clone();
        if let Outcome::Failed { error, .. } = &mut outcome {
            truncate(error, MAX_ERROR_BYTES);
        }
        let rec = Record {
            schema_version: SCHEMA_VERSION,
            kind: inputs.kind,
            repo: inputs.repo.clone(),
            key: inputs.key.clone(),
            created_unix: self.now,
            outside,
            outcome,
        };
        let written = serde_json::to_vec(&rec)
            .map_err(std::io::Error::other)
            .and_then(|bytes| {
                untrusted::ensure_real_dir(&self.dir)?;
                untrusted::ensure_real_dir(path.parent().expect("record dir"))?;
                publish::write_file(&path, &bytes)
            });
        match written {
            Ok(()) => self.prune(path.parent().expect("record dir")),
            Err(e) => self.warn(format!(
                "could not record the resolution of `{}` in {}: {e}",
                inputs.repo,
                path.display()
            )),
        }
    }

    /// Keep the newest [`KEEP_PER_REPO`] records of a repo.
    fn prune(&self, repo_dir: &Path) {
        let mut recs: Vec<(std::time::SystemTime, PathBuf)> = fs::read_dir(repo_dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if recs.len() <= KEEP_PER_REPO {
            return;
        }
        recs.sort();
        for (_, p) in &recs[..recs.len() - KEEP_PER_REPO] {
            let _ = untrusted::remove_any(p);
        }
    }

    fn warn(&self, w: String) {
        self.warnings.lock().expect("warnings").push(w);
    }
}

/// Cut `s` to at most `max` bytes, at a char boundary.
fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
}

/// A reused failure says it is one, how old, and how to retry now.
fn with_age(outcome: Outcome, age: u64) -> Outcome {
    match outcome {
        Outcome::Failed { error, fallback } => Outcome::Failed {
            error: format!(
                "{error}\n(this failure was recorded {} min ago and is reused for {} min while the repo's inputs are unchanged: pass --force to resolve again now)",
                age / 60,
                FAILURE_TTL_SECS / 60
            ),
            fallback,
        },
        o => o,
    }
}

/// Check a record read back against what was asked (see the module docs).
fn validate(rec: &Record, inputs: &Inputs, now: u64) -> Result<(), String> {
    if rec.schema_version != SCHEMA_VERSION {
        return Err(format!("schema_version {}", rec.schema_version));
    }
    if rec.kind != inputs.kind || rec.repo != inputs.repo || rec.key != inputs.key {
        return Err("it names another repo, kind or key than its path".to_owned());
    }
    // A minute of clock skew between runners sharing a cache root is tolerated.
    if rec.created_unix > MAX_UNIX || rec.created_unix > now.saturating_add(60) {
        return Err(format!(
            "its creation time {} is in the future",
            rec.created_unix
        ));
    }
    if rec.outside.iter().any(|(p, _)| !p.is_absolute()) {
        return Err("it lists a relative outside manifest".to_owned());
    }
    match (&rec.outcome, inputs.kind) {
        (Outcome::Resolved { metadata }, Kind::Metadata) => check_metadata(metadata, inputs),
        (Outcome::Failed { fallback, .. }, _) => fallback
            .as_ref()
            .map_or(Ok(()), |m| check_metadata(m, inputs)),
        (Outcome::Generated { lockfile }, Kind::Lockfile) => {
            toml::from_str::<toml::Table>(lockfile)
                .map(|_| ())
                .map_err(|e| format!("its lockfile is not TOML: {e}"))
        }
        _ => Err("its outcome does not fit its kind".to_owned()),
    }
}

/// A stored graph names this repo and holds absolute paths only.
fn check_metadata(m: &RepoMetadata, inputs: &Inputs) -> Result<(), String> {
    if m.repo != inputs.repo {
        return Err(format!("its metadata is of repo `{}`", m.repo));
    }
    if !m.target_directory.is_absolute() || m.path_packages.iter().any(|p| !p.is_absolute()) {
        return Err("its metadata holds a relative path".to_owned());
    }
    Ok(())
}

/// The error of a failed outcome as an error again.
pub fn failure(error: &str) -> anyhow::Error {
    anyhow!("{error}")
}

#[cfg(test)]
#[path = "resolution_tests.rs"]
mod tests;
