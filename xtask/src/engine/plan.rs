//! Plan, then run: resolve the manifest and the checkouts into a [`Plan`] — run order,
//! levels, edges with their origin, cache keys and whether each would hit — without
//! running any step. `cargo xtask plan` prints it; `cargo xtask ci` executes it.
//!
//! Resolving does run read-only helpers (`rustc -vV`, `cargo metadata`, and
//! `cargo generate-lockfile` for repos that commit no lockfile), in parallel, one thread
//! per repo. In registry mode it also holds the stripped manifests ([`Resolved::guards`])
//! until the caller is done.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::cache::cargo_home::LockedPackages;
use crate::cache::{Cache, CacheKey, Stage};
use crate::engine::fingerprint::{self, Fingerprint};
use crate::engine::graph::{EdgeOrigin, Graph};
use crate::engine::manifest::{DepsMode, Manifest, Repo, RepoKind, Step};
use crate::engine::metadata::{self, RepoMetadata};
use crate::engine::patches::{self, StrippedManifest};
use crate::engine::results::Results;
use crate::support::fs::sha256_file;

/// Options that shape a plan (the common flags of `ci`, `plan` and `checkout`).
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Checkout root override (`--root`).
    pub root: Option<PathBuf>,
    /// Only these repos run (`--only`, repeatable); empty = all.
    pub only: Vec<String>,
    /// Variant override (`--variant`).
    pub variant: Option<String>,
    /// Toolchain override for every repo (`--toolchain`).
    pub toolchain: Option<String>,
    /// Dependency mode override for every repo (`--deps`).
    pub deps: Option<DepsMode>,
    /// Re-run repos even when the result cache has their fingerprint (`--force`): `Some`
    /// with an empty list forces every repo, a list forces those repos.
    pub force: Option<Vec<String>>,
    /// Only run repos changed between two refs, and their downstream (`--affected
    /// BASE..HEAD`).
    pub affected: Option<(String, String)>,
    /// A repo whose toolchain is not installed is skipped with the reason instead of
    /// failing (matrix cells: an MSRV toolchain a machine lacks is not a build failure).
    pub skip_unavailable_toolchains: bool,
}

/// What `ci` will do with a repo, as `graph` and `plan` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "reason")]
pub enum Action {
    /// Run its steps (with a cache restore if its key hits).
    Run,
    /// Skip: a successful run with the same fingerprint is recorded (`cached`).
    SkipCached,
    /// Skip: `--affected` found no change in it or upstream of it (reason given).
    SkipNotAffected(String),
    /// Skip: not named by `--only`.
    NotSelected,
    /// Skip: its toolchain is not installed here (matrix runs; reason given).
    SkipUnavailable(String),
}

impl Action {
    /// The word `graph` prints: `run`, `restore` (run with a cache hit), `skip-cached`,
    /// `skip-not-affected`, `not-selected`.
    pub fn word(&self, cache_hit: bool) -> &'static str {
        match self {
            Action::Run if cache_hit => "restore",
            Action::Run => "run",
            Action::SkipCached => "skip-cached",
            Action::SkipNotAffected(_) => "skip-not-affected",
            Action::NotSelected => "not-selected",
            Action::SkipUnavailable(_) => "skip-unavailable",
        }
    }
}

/// One edge into a repo, for display.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeView {
    /// The upstream repo.
    pub from: String,
    /// Why the edge exists.
    pub origins: Vec<EdgeOrigin>,
}

/// Everything `ci` needs to know about one repo before running it.
#[derive(Debug, Clone, Serialize)]
pub struct RepoPlan {
    /// Repo name.
    pub name: String,
    /// Topological level (0 = no upstream).
    pub level: usize,
    /// Direct upstream repos, sorted.
    pub depends_on: Vec<String>,
    /// Direct upstream edges with their origins.
    pub edges: Vec<EdgeView>,
    /// Whether this repo runs (`--only`).
    pub selected: bool,
    /// Cargo workspace or documents.
    pub kind: RepoKind,
    /// Checkout directory.
    pub dir: PathBuf,
    /// Cargo target directory (from `cargo metadata`).
    pub target_dir: Option<PathBuf>,
    /// Toolchain override (`RUSTUP_TOOLCHAIN`), if any.
    pub toolchain: Option<String>,
    /// `rustc -vV` of the toolchain that builds the repo.
    pub rustc: Option<String>,
    /// Variant features passed to cargo.
    pub features: Vec<String>,
    /// Dependency mode.
    pub deps: DepsMode,
    /// sha256 of the repo's `Cargo.lock`.
    pub lock_sha256: Option<String>,
    /// The target dir cache key (absent for docs repos and repos that failed to resolve).
    pub cache_key: Option<CacheKey>,
    /// Whether the target key has an entry now.
    pub cache_hit: bool,
    /// Steps to run.
    #[serde(skip)]
    pub steps: Vec<Step>,
    /// Environment for every step (manifest env plus what the run adds).
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// Version of each workspace member package.
    pub versions: BTreeMap<String, String>,
    /// `[patch]` entries cargo reported unused.
    pub unused_patches: Vec<String>,
    /// Sibling patches removed for registry mode.
    pub stripped_patches: Vec<String>,
    /// Why the repo cannot run (toolchain missing, `cargo metadata` failed), if so.
    pub error: Option<String>,
    /// Input fingerprint (see [`crate::engine::fingerprint`]).
    pub fingerprint: Fingerprint,
    /// What `ci` will do with it.
    pub action: Action,
}

/// The resolved plan for a run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Variant built.
    pub variant: String,
    /// Cargo profile.
    pub profile: String,
    /// Checkout root.
    pub root: PathBuf,
    /// Repos in run order (levels flattened, ties by name).
    pub repos: Vec<RepoPlan>,
    /// Repo names per level.
    pub levels: Vec<Vec<String>>,
    /// Chain-wide registry key (over the selected repos' lockfiles).
    pub registry_key: Option<CacheKey>,
    /// Chain-wide git key (present only when some lockfile uses a git dependency).
    pub git_key: Option<CacheKey>,
    /// Whether each chain-wide key has an entry now.
    pub registry_hit: bool,
    /// See `registry_hit`.
    pub git_hit: bool,
    /// The registry packages the selected lockfiles name (for pruning the registry entry).
    #[serde(skip)]
    pub locked: LockedPackages,
    /// The graph the order came from.
    #[serde(skip)]
    pub graph: Graph,
}

/// A plan together with the guards that keep registry-mode manifests stripped; drop it to
/// restore them.
#[derive(Debug)]
pub struct Resolved {
    /// The plan.
    pub plan: Plan,
    /// Stripped manifests, restored on drop (held only for that).
    #[allow(dead_code)]
    pub guards: Vec<StrippedManifest>,
    /// Lockfiles generated for repos that commit none, removed on drop (held only for
    /// that).
    #[allow(dead_code)]
    pub generated_lockfiles: Vec<GeneratedLockfile>,
}

/// A `Cargo.lock` this run generated (the repo commits none); removed when dropped, so
/// the checkout is left as it was found and the next run resolves afresh. Kept, it would
/// also poison a later run in the other dependency mode: a lockfile resolved against
/// crates.io pins versions newer than a sibling checkout's, and cargo then reports the
/// sibling `[patch]` as unused (seen on the real chain).
#[derive(Debug)]
pub struct GeneratedLockfile(pub PathBuf);

impl Drop for GeneratedLockfile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The effective checkout root: `--root`, else the manifest's.
pub fn effective_root(manifest: &Manifest, opts: &PlanOptions) -> PathBuf {
    opts.root
        .as_deref()
        .map_or_else(|| manifest.root.clone(), crate::support::fs::normalize)
}

struct Probe {
    rustc: Result<String>,
    meta: Result<RepoMetadata>,
    fallback: Option<RepoMetadata>,
}

/// Resolve `manifest` into a plan.
///
/// Errors (the whole run cannot start): missing checkouts (all listed), an `--only` name
/// that is not in the manifest, a dependency cycle, a package claimed by two repos.
/// Problems of one repo (its toolchain is not installed, `cargo metadata` fails) do not
/// stop the plan: they are kept in [`RepoPlan::error`] and that repo fails when run.
pub fn resolve(manifest: &Manifest, opts: &PlanOptions, cache: &Cache) -> Result<Resolved> {
    resolve_with(manifest, opts, cache, &mut |_| {})
}

/// The chain-wide cache keys (registry, git), known from the lockfiles before any
/// `cargo metadata` runs.
#[derive(Debug, Clone, Default)]
pub struct ChainKeys {
    /// Registry key over the selected repos' lockfiles (absent when none has one).
    pub registry: Option<CacheKey>,
    /// Git key, present only when some lockfile has a git dependency.
    pub git: Option<CacheKey>,
}

/// The registry and git keys: one input per repo lockfile (`lock_hashes` sorted by repo).
fn chain_keys(lock_hashes: &[(String, String)], has_git: bool) -> ChainKeys {
    if lock_hashes.is_empty() {
        return ChainKeys::default();
    }
    let inputs: Vec<(String, String)> = lock_hashes
        .iter()
        .map(|(n, h)| (format!("lockfile-sha256 {n}"), h.clone()))
        .collect();
    let all = crate::cache::key::hash_inputs(&inputs);
    ChainKeys {
        registry: Some(CacheKey::derive(
            Stage::Registry,
            "registry",
            inputs.clone(),
            &all,
        )),
        git: has_git.then(|| CacheKey::derive(Stage::Git, "git", inputs, &all)),
    }
}

/// [`resolve`], calling `before_metadata` with the chain-wide keys once the lockfiles are
/// known and before `cargo metadata` runs: `ci` restores the registry there, so that a
/// runner without network (or with an empty `$CARGO_HOME`) resolves from the cache.
pub fn resolve_with(
    manifest: &Manifest,
    opts: &PlanOptions,
    cache: &Cache,
    before_metadata: &mut dyn FnMut(&ChainKeys),
) -> Result<Resolved> {
    let root = effective_root(manifest, opts);
    for name in &opts.only {
        manifest.repo(name)?;
    }
    metadata::check_checkouts(manifest, &root)?;
    let variant = opts
        .variant
        .clone()
        .unwrap_or_else(|| manifest.defaults.variant.clone());
    let profile = manifest.defaults.profile.clone();

    // Registry mode: strip sibling patches before anything reads the manifests.
    let all_dirs: Vec<PathBuf> = manifest
        .repos
        .iter()
        .map(|r| Manifest::checkout_dir(&root, r))
        .collect();
    let mut guards = Vec::new();
    let mut stripped: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in manifest.repos.iter().filter(|r| r.kind == RepoKind::Cargo) {
        let dir = Manifest::checkout_dir(&root, r);
        patches::restore_leftovers(&dir)?;
        if opts.deps.unwrap_or(r.deps) == DepsMode::Registry {
            let siblings: Vec<PathBuf> = all_dirs.iter().filter(|d| **d != dir).cloned().collect();
            if let Some(g) = patches::strip_sibling_patches(&dir, &siblings)
                .with_context(|| format!("strip sibling patches of `{}`", r.name))?
            {
                stripped.insert(r.name.clone(), g.removed.clone());
                guards.push(g);
            }
        }
    }

    let toolchain_of = |r: &Repo| opts.toolchain.clone().or_else(|| r.toolchain.clone());
    let selected: BTreeSet<&str> = if opts.only.is_empty() {
        manifest.repos.iter().map(|r| r.name.as_str()).collect()
    } else {
        opts.only.iter().map(String::as_str).collect()
    };
    let cargo_repos: Vec<&Repo> = manifest
        .repos
        .iter()
        .filter(|r| r.kind == RepoKind::Cargo)
        .collect();

    let generated = std::sync::Mutex::new(Vec::new());
    // Phase A, one thread per repo: the compiler identity and a lockfile. Nothing here
    // needs the registry when the repo commits its Cargo.lock.
    let rustcs: BTreeMap<String, Result<String>> = std::thread::scope(|s| {
        let handles: Vec<_> = cargo_repos
            .iter()
            .map(|r| {
                let dir = Manifest::checkout_dir(&root, r);
                let env = metadata::toolchain_env(toolchain_of(r).as_deref());
                let name = r.name.clone();
                let generated = &generated;
                s.spawn(move || {
                    let rustc = metadata::rustc_version(&dir, &env).and_then(|v| {
                        if metadata::ensure_lockfile(&dir, &env)? {
                            generated
                                .lock()
                                .expect("lock list")
                                .push(GeneratedLockfile(dir.join("Cargo.lock")));
                        }
                        Ok(v)
                    });
                    (name, rustc)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread panicked"))
            .collect()
    });

    // The chain-wide keys come from the lockfiles alone, so the registry can be restored
    // before `cargo metadata` needs it (an offline runner resolves from the restored index).
    let mut locked = LockedPackages::default();
    let mut lock_hashes = Vec::new();
    for r in &cargo_repos {
        let lock_path = Manifest::checkout_dir(&root, r).join("Cargo.lock");
        if selected.contains(r.name.as_str()) {
            if let Ok(h) = sha256_file(&lock_path) {
                locked.add_lockfile(&lock_path)?;
                lock_hashes.push((r.name.clone(), h));
            }
        }
    }
    lock_hashes.sort();
    let chain_keys = chain_keys(&lock_hashes, locked.has_git);
    before_metadata(&chain_keys);

    // Phase B, one thread per repo: the resolved graph (and the fallback when it fails).
    let probes: BTreeMap<String, Probe> = std::thread::scope(|s| {
        let handles: Vec<_> = cargo_repos
            .iter()
            .map(|r| {
                let dir = Manifest::checkout_dir(&root, r);
                let env = metadata::toolchain_env(toolchain_of(r).as_deref());
                let name = r.name.clone();
                let rustc = match &rustcs[&r.name] {
                    Ok(v) => Ok(v.clone()),
                    Err(e) => Err(anyhow::anyhow!("{e:#}")),
                };
                s.spawn(move || {
                    let meta = if rustc.is_ok() {
                        metadata::read_metadata(&name, &dir, &env)
                    } else {
                        Err(anyhow::anyhow!("not resolved: the toolchain cannot run"))
                    };
                    let fallback = if meta.is_err() {
                        metadata::read_declared(&name, &dir, &env).ok()
                    } else {
                        None
                    };
                    (
                        name,
                        Probe {
                            rustc,
                            meta,
                            fallback,
                        },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("probe thread panicked"))
            .collect()
    });

    let metas: Vec<RepoMetadata> = probes
        .values()
        .filter_map(|p| p.meta.as_ref().ok().cloned().or_else(|| p.fallback.clone()))
        .collect();
    let graph = metadata::build_graph(manifest, &metas)?;
    let levels = graph.levels()?;
    let level_of: BTreeMap<&str, usize> = levels
        .iter()
        .enumerate()
        .flat_map(|(i, l)| l.iter().map(move |n| (n.as_str(), i)))
        .collect();

    // Content hashes of every checkout, one thread each (git is the slow part).
    let contents: BTreeMap<String, String> = std::thread::scope(|s| {
        let handles: Vec<_> = manifest
            .repos
            .iter()
            .map(|r| {
                let dir = Manifest::checkout_dir(&root, r);
                let name = r.name.clone();
                s.spawn(move || {
                    let h =
                        fingerprint::content_hash(&dir).unwrap_or_else(|e| format!("error: {e:#}"));
                    (name, h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("content hash thread panicked"))
            .collect()
    });
    let results = Results::new(cache.root());
    let affected = opts
        .affected
        .as_ref()
        .map(|(base, head)| affected_repos(manifest, &root, &graph, base, head));
    let mut fingerprints: BTreeMap<String, Fingerprint> = BTreeMap::new();

    let mut repos = Vec::new();
    for name in levels.iter().flatten() {
        let r = manifest.repo(name)?;
        let dir = Manifest::checkout_dir(&root, r);
        let probe = probes.get(name);
        let features = r.variant_features(&variant).to_vec();
        let deps = opts.deps.unwrap_or(r.deps);
        let toolchain = toolchain_of(r);
        let meta = probe.and_then(|p| p.meta.as_ref().ok());
        let error = probe.and_then(|p| match (&p.rustc, &p.meta) {
            (Err(e), _) => Some(format!("{e:#}")),
            (_, Err(e)) => Some(format!("{e:#}")),
            _ => None,
        });
        let rustc = probe.and_then(|p| p.rustc.as_ref().ok().cloned());
        let lock_path = dir.join("Cargo.lock");
        let lock_sha256 = if r.kind == RepoKind::Cargo {
            sha256_file(&lock_path).ok()
        } else {
            None
        };
        let is_selected = selected.contains(name.as_str());
        let cache_key = match (&rustc, &lock_sha256, error.is_none()) {
            (Some(rustc), Some(lock), true) => Some(target_key(
                r, &variant, &features, &profile, deps, rustc, lock,
            )),
            _ => None,
        };
        let cache_hit = cache_key.as_ref().is_some_and(|k| cache.contains(k));
        let mut env = r.env.clone();
        if let Some(t) = &toolchain {
            env.insert("RUSTUP_TOOLCHAIN".into(), t.clone());
        }
        if !manifest.defaults.incremental {
            env.entry("CARGO_INCREMENTAL".into())
                .or_insert_with(|| "0".into());
        }
        let mut inputs: Vec<(String, String)> = vec![
            ("content".into(), contents[name.as_str()].clone()),
            (
                "lockfile-sha256".into(),
                lock_sha256.clone().unwrap_or_else(|| "none".into()),
            ),
            (
                "rustc -vV".into(),
                rustc.clone().unwrap_or_else(|| "none".into()),
            ),
            // The variant's features, not its name: a repo that lists no features for two
            // variants builds the same thing under both.
            ("features".into(), features.join(",")),
            ("profile".into(), profile.clone()),
            ("deps".into(), deps.to_string()),
            ("env".into(), format!("{env:?}")),
        ];
        for step in &r.steps {
            inputs.push((
                format!("step {}", step.name),
                format!(
                    "{} {} timeout={} env={:?}",
                    step.program,
                    step_args(step, &features, &profile).join(" "),
                    step.timeout_secs,
                    step.env
                ),
            ));
        }
        for up in graph.upstream(name) {
            inputs.push((format!("upstream {up}"), fingerprints[up].hash.clone()));
        }
        let fingerprint = Fingerprint::new(inputs);
        fingerprints.insert(name.clone(), fingerprint.clone());
        let forced = opts
            .force
            .as_ref()
            .is_some_and(|f| f.is_empty() || f.contains(name));
        let toolchain_missing = probe.is_some_and(|p| p.rustc.is_err());
        let action = if !is_selected {
            Action::NotSelected
        } else if toolchain_missing && opts.skip_unavailable_toolchains {
            Action::SkipUnavailable(format!(
                "toolchain `{}` is not installed here: {}",
                toolchain.as_deref().unwrap_or("(rust-toolchain.toml)"),
                error
                    .as_deref()
                    .and_then(|e| e.lines().next())
                    .unwrap_or("")
            ))
        } else if let Some(reason) = affected.as_ref().and_then(|(set, notes)| {
            (!set.contains(name)).then(|| notes.get(name).cloned().unwrap_or_default())
        }) {
            Action::SkipNotAffected(reason)
        } else if error.is_none() && !forced && results.get(name, &fingerprint.hash).is_some() {
            Action::SkipCached
        } else {
            Action::Run
        };
        let edges = graph
            .edges()
            .filter(|(_, d, _)| *d == name)
            .map(|(u, _, o)| EdgeView {
                from: u.to_owned(),
                origins: o.iter().copied().collect(),
            })
            .collect();
        repos.push(RepoPlan {
            name: name.clone(),
            level: level_of[name.as_str()],
            depends_on: graph
                .upstream(name)
                .into_iter()
                .map(str::to_owned)
                .collect(),
            edges,
            selected: is_selected,
            kind: r.kind,
            dir,
            target_dir: meta.map(|m| m.target_directory.clone()),
            toolchain,
            rustc,
            features,
            deps,
            lock_sha256,
            cache_key,
            cache_hit,
            steps: r.steps.clone(),
            env,
            versions: meta.map(|m| m.versions.clone()).unwrap_or_default(),
            unused_patches: meta.map(|m| m.unused_patches.clone()).unwrap_or_default(),
            stripped_patches: stripped.get(name).cloned().unwrap_or_default(),
            error,
            fingerprint,
            action,
        });
    }

    let ChainKeys {
        registry: registry_key,
        git: git_key,
    } = chain_keys;
    let registry_hit = registry_key.as_ref().is_some_and(|k| cache.contains(k));
    let git_hit = git_key.as_ref().is_some_and(|k| cache.contains(k));
    Ok(Resolved {
        plan: Plan {
            variant,
            profile,
            root,
            repos,
            levels,
            registry_key,
            git_key,
            registry_hit,
            git_hit,
            locked,
            graph,
        },
        guards,
        generated_lockfiles: generated.into_inner().expect("lock list"),
    })
}

/// The repos `--affected BASE..HEAD` selects: those whose checkout has changes between the
/// two refs (`git diff --name-only BASE HEAD -- .` in the checkout, so a repo that is a
/// subdirectory of a larger git repo counts only its own files), plus everything downstream
/// of them. Returns the set and, for every other repo, the reason it is skipped.
fn affected_repos(
    manifest: &Manifest,
    root: &Path,
    graph: &Graph,
    base: &str,
    head: &str,
) -> (BTreeSet<String>, BTreeMap<String, String>) {
    let mut changed = BTreeSet::new();
    let mut notes = BTreeMap::new();
    for r in &manifest.repos {
        let dir = Manifest::checkout_dir(root, r);
        let out = std::process::Command::new("git")
            .args(["diff", "--name-only", base, head, "--", "."])
            .current_dir(&dir)
            .output();
        match out {
            Ok(o) if o.status.success() => {
                if o.stdout.iter().any(|b| !b.is_ascii_whitespace()) {
                    changed.insert(r.name.clone());
                } else {
                    notes.insert(
                        r.name.clone(),
                        format!("not affected: no change in {base}..{head} here or upstream"),
                    );
                }
            }
            _ => {
                notes.insert(
                    r.name.clone(),
                    format!("not affected: {base}..{head} does not resolve in this checkout, and no upstream changed"),
                );
            }
        }
    }
    let names: Vec<&str> = changed.iter().map(String::as_str).collect();
    let mut set = graph.downstream_closure(&names);
    set.extend(changed.iter().cloned());
    notes.retain(|n, _| !set.contains(n));
    (set, notes)
}

/// The target dir key of a repo: KEY_VERSION, stage, repo, variant, features, profile,
/// dependency mode, `rustc -vV` and the `$CARGO_HOME` path make the environment part; the
/// lockfile hash the rest.
pub fn target_key(
    r: &Repo,
    variant: &str,
    features: &[String],
    profile: &str,
    deps: DepsMode,
    rustc: &str,
    lock_sha256: &str,
) -> CacheKey {
    let mut sorted = features.to_vec();
    sorted.sort();
    sorted.dedup();
    CacheKey::derive(
        Stage::Target,
        &format!("{}-{variant}", r.name),
        vec![
            ("repo".into(), r.name.clone()),
            ("variant".into(), variant.to_owned()),
            ("features".into(), sorted.join(",")),
            ("profile".into(), profile.to_owned()),
            ("deps".into(), deps.to_string()),
            ("rustc -vV".into(), rustc.to_owned()),
            // Cargo fingerprints registry dependencies by the path of their sources under
            // $CARGO_HOME ("PathToSourceChanged"): an entry built with another cargo home
            // would recompile every dependency, so it must not match.
            (
                "cargo home".into(),
                crate::cache::cargo_home::cargo_home().display().to_string(),
            ),
        ],
        lock_sha256,
    )
}

/// `{"schema_version":1,"repos":[...]}` as printed by `plan --format json`.
#[derive(Debug, Serialize)]
pub struct PlanJson<'a> {
    /// Format version.
    pub schema_version: u32,
    /// Variant built.
    pub variant: &'a str,
    /// Repos in run order.
    pub repos: Vec<PlanJsonRepo<'a>>,
}

/// One repo in [`PlanJson`].
#[derive(Debug, Serialize)]
pub struct PlanJsonRepo<'a> {
    /// Repo name.
    pub name: &'a str,
    /// Topological level.
    pub level: usize,
    /// Direct upstream repos.
    pub depends_on: &'a [String],
    /// Direct upstream edges with origins.
    pub edges: &'a [EdgeView],
    /// Whether it runs (`--only`).
    pub selected: bool,
    /// Target dir cache key.
    pub cache_key: Option<&'a str>,
    /// Whether that key has an entry.
    pub cache_hit: bool,
    /// Why it cannot run, if so.
    pub error: Option<&'a str>,
    /// Input fingerprint (hex sha256).
    pub fingerprint: &'a str,
    /// What `ci` will do: `run`, `restore`, `skip-cached`, `skip-not-affected`, `not-selected`.
    pub action: &'static str,
}

impl Plan {
    /// The machine-readable form printed by `plan --format json`.
    pub fn to_json(&self) -> PlanJson<'_> {
        PlanJson {
            schema_version: 1,
            variant: &self.variant,
            repos: self
                .repos
                .iter()
                .map(|r| PlanJsonRepo {
                    name: &r.name,
                    level: r.level,
                    depends_on: &r.depends_on,
                    edges: &r.edges,
                    selected: r.selected,
                    cache_key: r.cache_key.as_ref().map(|k| k.key.as_str()),
                    cache_hit: r.cache_hit,
                    error: r.error.as_deref(),
                    fingerprint: &r.fingerprint.hash,
                    action: r.action.word(r.cache_hit),
                })
                .collect(),
        }
    }

    /// Human-readable plan; with `verbose`, every cache key input.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = format!(
            "plan: {} repos in {} levels, variant `{}`, profile `{}`, root {}\n",
            self.repos.len(),
            self.levels.len(),
            self.variant,
            self.profile,
            self.root.display()
        );
        let hit = |h: bool| if h { "hit" } else { "miss" };
        if let Some(k) = &self.registry_key {
            s += &format!("  cache registry: {} ({})\n", k.key, hit(self.registry_hit));
            if verbose {
                s += &render_inputs(k);
            }
        }
        if let Some(k) = &self.git_key {
            s += &format!("  cache git: {} ({})\n", k.key, hit(self.git_hit));
        }
        for (i, level) in self.levels.iter().enumerate() {
            s += &format!("level {i}:\n");
            for name in level {
                let r = self
                    .repos
                    .iter()
                    .find(|r| &r.name == name)
                    .expect("levels name planned repos");
                let mark = if r.selected { "" } else { " (not selected)" };
                s += &format!("  {}{mark}\n", r.name);
                if !r.edges.is_empty() {
                    let e: Vec<String> = r
                        .edges
                        .iter()
                        .map(|e| {
                            let o: Vec<String> =
                                e.origins.iter().map(ToString::to_string).collect();
                            format!("{} ({})", e.from, o.join(", "))
                        })
                        .collect();
                    s += &format!("    upstream: {}\n", e.join(", "));
                }
                s += &format!(
                    "    action: {} (fingerprint {})\n",
                    r.action.word(r.cache_hit),
                    r.fingerprint.short()
                );
                if let Action::SkipNotAffected(why) = &r.action {
                    s += &format!("    {why}\n");
                }
                if verbose {
                    for (n, v) in &r.fingerprint.inputs {
                        s += &format!("      fingerprint {n} = {}\n", v.replace('\n', "; "));
                    }
                }
                if let Some(k) = &r.cache_key {
                    s += &format!("    cache target: {} ({})\n", k.key, hit(r.cache_hit));
                    if verbose {
                        s += &render_inputs(k);
                    }
                }
                if !r.features.is_empty() {
                    s += &format!("    features: {}\n", r.features.join(","));
                }
                if !r.stripped_patches.is_empty() {
                    s += &format!(
                        "    registry mode: removed patches {}\n",
                        r.stripped_patches.join(", ")
                    );
                }
                for p in &r.unused_patches {
                    s += &format!("    warning: patch `{p}` was not used in the crate graph\n");
                }
                if let Some(e) = &r.error {
                    s += &format!("    error: {}\n", e.lines().next().unwrap_or(""));
                }
                if verbose && r.kind == RepoKind::Cargo {
                    let steps: Vec<&str> = r.steps.iter().map(|s| s.name.as_str()).collect();
                    s += &format!("    steps: {}\n", steps.join(", "));
                }
            }
        }
        s
    }
}

/// `plan --explain REPO`: the repo's action, and which fingerprint inputs changed since its
/// last recorded run (or that there is none).
pub fn explain(r: &RepoPlan, results: &Results) -> String {
    let mut s = format!(
        "{}: {} (fingerprint {})\n",
        r.name,
        r.action.word(r.cache_hit),
        r.fingerprint.short()
    );
    if let Action::SkipNotAffected(why) = &r.action {
        s += &format!("  {why}\n");
    }
    match results.last(&r.name) {
        None => s += "  no recorded run yet: every input is new\n",
        Some(last) if last.fingerprint == r.fingerprint.hash => {
            s += &format!(
                "  no input changed since the last recorded run ({}, {})\n",
                last.run_id, last.status
            );
        }
        Some(last) => {
            s += &format!(
                "  changed since the last recorded run ({}, {}):\n",
                last.run_id, last.status
            );
            for name in r.fingerprint.changed_inputs(&last.inputs) {
                let old = last
                    .inputs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_str());
                let new = r
                    .fingerprint
                    .inputs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.as_str());
                match (old, new) {
                    (Some(o), Some(n)) => {
                        s += &format!(
                            "    {name}: {} -> {}\n",
                            o.replace('\n', "; "),
                            n.replace('\n', "; ")
                        )
                    }
                    _ => s += &format!("    {name}\n"),
                }
            }
        }
    }
    s
}

fn render_inputs(k: &CacheKey) -> String {
    k.inputs
        .iter()
        .map(|(n, v)| {
            let v = v.replace('\n', "; ");
            format!("      {n} = {v}\n")
        })
        .collect()
}

/// Cargo arguments for `step` with the variant's features and the profile spliced in
/// before any `--` (so `clippy -- -D warnings` keeps its lint flags last).
pub fn step_args(step: &Step, features: &[String], profile: &str) -> Vec<String> {
    if !step.features || step.program != "cargo" {
        return step.args.clone();
    }
    let mut extra = Vec::new();
    if !features.is_empty() {
        extra.push("--features".to_owned());
        extra.push(features.join(","));
    }
    if profile != "dev" {
        extra.push("--profile".to_owned());
        extra.push(profile.to_owned());
    }
    let mut args = step.args.clone();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, extra);
    args
}

/// Directory name of a repo's target dir relative to its checkout, for messages.
pub fn default_target_dir(dir: &Path) -> PathBuf {
    dir.join("target")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_go_before_double_dash() {
        let step = crate::engine::manifest::BUILTIN_STEPS
            .iter()
            .find(|s| s.0 == "clippy")
            .map(|(n, a, f)| Step {
                name: (*n).into(),
                program: "cargo".into(),
                args: a.iter().map(|s| (*s).into()).collect(),
                features: *f,
                timeout_secs: 1,
                env: BTreeMap::new(),
            })
            .unwrap();
        let args = step_args(&step, &["a".into(), "b".into()], "release");
        assert_eq!(
            args,
            [
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "a,b",
                "--profile",
                "release",
                "--",
                "-D",
                "warnings"
            ]
        );
    }
}
