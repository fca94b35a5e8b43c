//! Resolving a manifest into a [`Plan`], phase by phase: strip sibling patches (registry
//! mode), probe each repo's compiler and lockfile, compute the chain-wide keys (so the
//! caller can restore the registry before `cargo metadata` needs it), read the resolved
//! graphs, order them, hash the checkouts, then plan each repo in order.
//!
//! Every phase that runs a command runs one thread per repo. Nothing here builds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};

use super::affected::affected_repos;
use super::keys::{chain_keys, target_key, ChainKeys, TargetInputs};
use super::probe::{repo_env, toolchain_of, Probe, Prober};
use super::types::{
    default_target_dir, effective_root, Action, CheckoutAccess, EdgeView, Plan, PlanOptions,
    RepoPlan, Resolved,
};
use crate::cache::cargo_home::LockedPackages;
use crate::cache::{Cache, CacheKey};
use crate::engine::fingerprint::{self, build_env, BuildEnv, Fingerprint, RepoInputs};
use crate::engine::graph::Graph;
use crate::engine::manifest::{DepsMode, Manifest, Repo, RepoKind};
use crate::engine::metadata::{self, RepoMetadata};
use crate::engine::patches::{self, Leftover, StrippedManifest};
use crate::engine::resolution::ResolutionCache;
use crate::engine::results::Results;
use crate::engine::steps::{self, RepoSteps};
use crate::engine::toolchain::Choice;
use crate::support::dirlock::{self, DirLock};
use crate::support::fs::sha256_file;

/// Everything the per-repo planning needs, computed once for the whole chain.
struct Chain<'a> {
    manifest: &'a Manifest,
    opts: &'a PlanOptions,
    cache: &'a Cache,
    root: PathBuf,
    variant: String,
    profile: String,
    selected: BTreeSet<&'a str>,
    probes: BTreeMap<String, Probe>,
    graph: Graph,
    levels: Vec<Vec<String>>,
    contents: BTreeMap<String, String>,
    stripped: BTreeMap<String, Vec<String>>,
    affected: Option<(BTreeSet<String>, BTreeMap<String, String>)>,
    results: Results,
    /// The environment steps inherit (see [`resolve_in`]).
    process_env: Vec<(String, String)>,
    /// `$CARGO_HOME` as the steps see it.
    cargo_home: PathBuf,
    /// Every checkout of the chain, canonical: path packages under them are not
    /// `path dependency` inputs (their repo's own fingerprint covers them).
    checkouts: Vec<PathBuf>,
}

/// Resolve `manifest` into a plan.
///
/// Errors (the whole run cannot start): missing checkouts (all listed), a flag that names
/// something the manifest does not have (an `--only` or `--force` repo, a `--variant`), a
/// `--toolchain` that cannot run, `--affected` refs that do not resolve in a checkout, a
/// dependency cycle, a package claimed by two repos. Problems of one repo (its own
/// toolchain is not installed, `cargo metadata` fails) do not stop the plan: they are kept
/// in [`RepoPlan::error`] and that repo fails when run.
pub fn resolve(manifest: &Manifest, opts: &PlanOptions, cache: &Cache) -> Result<Resolved> {
    resolve_with(manifest, opts, cache, &mut |_| {})
}

/// [`resolve`], calling `before_metadata` with the chain-wide keys once the
/// lockfiles are known and before `cargo metadata` runs: `ci` restores the registry
/// there, so that a runner without network (or with an empty `$CARGO_HOME`) resolves from
/// the cache.
///
/// Errors as [`resolve`].
pub fn resolve_with(
    manifest: &Manifest,
    opts: &PlanOptions,
    cache: &Cache,
    before_metadata: &mut dyn FnMut(&ChainKeys),
) -> Result<Resolved> {
    let env = build_env::process_env();
    let cargo_home = crate::cache::cargo_home::cargo_home();
    resolve_in(manifest, opts, cache, (&env, &cargo_home), before_metadata)
}

/// [`resolve_with`] in a given environment: `machine` is the environment the steps will
/// inherit (as `(name, value)` pairs) and their `$CARGO_HOME`. The caller passes this
/// process's; tests pass others to see what each changes.
pub(super) fn resolve_in(
    manifest: &Manifest,
    opts: &PlanOptions,
    cache: &Cache,
    machine: (&[(String, String)], &Path),
    before_metadata: &mut dyn FnMut(&ChainKeys),
) -> Result<Resolved> {
    let root = effective_root(manifest, opts);
    check_flags(manifest, opts)?;
    metadata::check_checkouts(manifest, &root)?;
    // Locks first, then leftovers, then changes; dropped in the reverse order (the
    // changes are undone before the locks go).
    let locks = lock_checkouts(manifest, opts, &root)?;
    let notes = reconcile_leftovers(manifest, opts, &root)?;
    let may_generate = missing_lockfiles(manifest, &root);
    let (guards, stripped) = strip_registry_patches(manifest, opts, &root, &notes)?;
    let generated = Mutex::new(Vec::new());
    let resolution = ResolutionCache::open(cache.root(), !cache.is_read_only());
    let prober = Prober {
        manifest,
        opts,
        root: &root,
        inherited: machine.0,
        cargo_home: machine.1,
        may_generate: &may_generate,
        cache: &resolution,
        generated: &generated,
    };
    let selected = selected_repos(manifest, opts);
    let (probes, keys, locked) = probe_all(&prober, &selected, before_metadata)?;
    let metas: Vec<RepoMetadata> = probes
        .values()
        .filter_map(|p| p.meta.as_ref().ok().cloned().or_else(|| p.fallback.clone()))
        .collect();
    let graph = metadata::build_graph(manifest, &metas)?;
    let levels = graph.levels()?;
    let affected = match &opts.affected {
        Some((base, head)) => Some(affected_repos(manifest, &root, &graph, base, head)?),
        None => None,
    };
    let chain = Chain {
        contents: content_hashes(manifest, &root, &probes),
        results: opts
            .results
            .clone()
            .unwrap_or_else(|| Results::new(cache.root())),
        variant: opts
            .variant
            .clone()
            .unwrap_or_else(|| manifest.defaults.variant.clone()),
        profile: manifest.defaults.profile.clone(),
        checkouts: canonical_checkouts(manifest, &root),
        process_env: machine.0.to_vec(),
        cargo_home: machine.1.to_path_buf(),
        manifest,
        opts,
        cache,
        root,
        selected,
        probes,
        graph,
        levels,
        stripped,
        affected,
    };
    let repos = plan_repos(&chain)?;
    // Records the plan found damaged or hostile (or a shared remote that failed) were
    // ignored: say so.
    let mut notes = notes;
    notes.extend(
        chain
            .results
            .take_warnings()
            .into_iter()
            .chain(resolution.take_warnings())
            .map(|w| format!("warning: {w}")),
    );
    Ok(Resolved {
        plan: finish_plan(chain, repos, keys, locked),
        guards,
        generated_lockfiles: generated.into_inner().expect("lock list"),
        notes,
        locks,
        resolution: resolution.counts(),
    })
}

/// Take the checkout locks ([`CheckoutAccess`]): every checkout of the chain for `ci`;
/// for a read-only command only those it must change (a registry-mode strip, a lockfile
/// to generate), checked again once they are held (another run may have finished and
/// put its checkouts back meanwhile), so that every checkout changed is a locked one.
///
/// Errors: a checkout is busy and `--no-wait` was given (or the run was cancelled while
/// waiting), or a checkout cannot be opened.
fn lock_checkouts(manifest: &Manifest, opts: &PlanOptions, root: &Path) -> Result<Vec<DirLock>> {
    let CheckoutAccess::Exclusive { wait } = opts.checkout else {
        let mut want = to_change(manifest, opts, root);
        loop {
            let locks = dirlock::lock_all(&want, true)?;
            let now = to_change(manifest, opts, root);
            if now.iter().all(|d| want.contains(d)) {
                return Ok(locks);
            }
            // Locks are only ever taken in one sorted batch (no deadlock): let go, retry.
            drop(locks);
            want.extend(now);
        }
    };
    let dirs: Vec<PathBuf> = manifest
        .repos
        .iter()
        .map(|r| Manifest::checkout_dir(root, r))
        .collect();
    Ok(dirlock::lock_all(&dirs, wait)?)
}

/// The checkouts a read-only resolution would change now: a lockfile to generate, or a
/// registry-mode strip (not where a backup shows another run's strip or a leftover).
fn to_change(manifest: &Manifest, opts: &PlanOptions, root: &Path) -> Vec<PathBuf> {
    cargo_repos(manifest)
        .map(|r| (r, Manifest::checkout_dir(root, r)))
        .filter(|(r, dir)| {
            !dir.join("Cargo.lock").exists()
                || (opts.deps.unwrap_or(r.deps) == DepsMode::Registry
                    && !patches::has_backup(dir)
                    && patches::would_strip(dir, &sibling_dirs(manifest, root, dir))
                        .unwrap_or(false))
        })
        .map(|(_, dir)| dir)
        .collect()
}

/// The cargo repos without a `Cargo.lock` (whose checkouts are locked by now, so nobody
/// else creates one): they get a generated one.
fn missing_lockfiles(manifest: &Manifest, root: &Path) -> BTreeSet<String> {
    cargo_repos(manifest)
        .filter(|r| !Manifest::checkout_dir(root, r).join("Cargo.lock").exists())
        .map(|r| r.name.clone())
        .collect()
}

/// `ci` only: reconcile what a killed run left in each cargo checkout (see
/// [`patches::reconcile`]); returns what was done, for the user.
///
/// Errors: a leftover cannot be read, restored or removed.
fn reconcile_leftovers(
    manifest: &Manifest,
    opts: &PlanOptions,
    root: &Path,
) -> Result<Vec<String>> {
    if opts.checkout == CheckoutAccess::ReadOnly {
        return Ok(Vec::new());
    }
    let mut notes = Vec::new();
    for r in cargo_repos(manifest) {
        for done in patches::reconcile(&Manifest::checkout_dir(root, r))? {
            notes.push(match done {
                Leftover::Restored => format!(
                    "{}: put back the Cargo.toml a killed run left stripped (from its complete backup)",
                    r.name
                ),
                Leftover::Removed => format!("{}: removed what a killed run left (a Cargo.lock it generated, or a backup identical to Cargo.toml)", r.name),
                Leftover::Kept(why) => format!("warning: {}: {why}", r.name),
            });
        }
    }
    Ok(notes)
}

/// Every other checkout of the chain than `dir` (where a sibling patch may point).
fn sibling_dirs(manifest: &Manifest, root: &Path, dir: &Path) -> Vec<PathBuf> {
    manifest
        .repos
        .iter()
        .map(|r| Manifest::checkout_dir(root, r))
        .filter(|d| d != dir)
        .collect()
}

/// Fail closed on flags that name what the manifest does not have, or that cannot work
/// here: a flag that is wrong must stop the run, not make it a different run.
///
/// Errors: an `--only` or `--force` repo the manifest does not list, an unknown
/// `--variant` (the known ones listed), an `--affected` ref git would read as an option,
/// a `--toolchain` that cannot run `rustc -vV` (blamed on `--toolchain`).
fn check_flags(manifest: &Manifest, opts: &PlanOptions) -> Result<()> {
    for name in &opts.only {
        manifest.repo(name).context("--only")?;
    }
    for name in opts.force.iter().flatten() {
        manifest.repo(name).context("--force")?;
    }
    if let Some(v) = &opts.variant {
        manifest.check_variant(v)?;
    }
    if let Some((base, head)) = &opts.affected {
        super::affected::check_ref("the base of --affected", base)?;
        super::affected::check_ref("the head of --affected", head)?;
    }
    // A matrix cell's toolchain is above `--toolchain`; otherwise the flag applies to every
    // repo, and one that cannot run is the flag's fault, not each repo's.
    if let (Some(t), None) = (&opts.toolchain, &opts.cell_toolchain) {
        let choice = Choice::resolve(None, Some(t), None, Path::new("."));
        metadata::rustc_version(&std::env::temp_dir(), &choice)?;
    }
    Ok(())
}

/// Every checkout of the chain, canonical where it exists.
fn canonical_checkouts(manifest: &Manifest, root: &Path) -> Vec<PathBuf> {
    manifest
        .repos
        .iter()
        .map(|r| {
            let d = Manifest::checkout_dir(root, r);
            std::fs::canonicalize(&d).unwrap_or(d)
        })
        .collect()
}

/// The manifests registry mode stripped (restored when dropped), and the patch names
/// removed from each repo.
type Stripped = (Vec<StrippedManifest>, BTreeMap<String, Vec<String>>);

/// Registry mode: strip sibling patches before anything reads the manifests. A read-only
/// command leaves a repo that has a backup (another run's strip, or a killed run's
/// leftover) as it is. `notes` (what reconciling found) are added to an error: they
/// explain a strip that a kept backup blocks.
fn strip_registry_patches(
    manifest: &Manifest,
    opts: &PlanOptions,
    root: &Path,
    notes: &[String],
) -> Result<Stripped> {
    let mut guards = Vec::new();
    let mut stripped = BTreeMap::new();
    for r in manifest.repos.iter().filter(|r| r.kind == RepoKind::Cargo) {
        let dir = Manifest::checkout_dir(root, r);
        if opts.checkout == CheckoutAccess::ReadOnly && patches::has_backup(&dir) {
            continue;
        }
        if opts.deps.unwrap_or(r.deps) == DepsMode::Registry {
            let siblings = sibling_dirs(manifest, root, &dir);
            if let Some(g) = patches::strip_sibling_patches(&dir, &siblings)
                .with_context(|| format!("strip sibling patches of `{}`", r.name))
                .map_err(|e| match notes {
                    [] => e,
                    _ => anyhow::anyhow!("{e:#}\n{}", notes.join("\n")),
                })?
            {
                stripped.insert(r.name.clone(), g.removed.clone());
                guards.push(g);
            }
        }
    }
    Ok((guards, stripped))
}

fn cargo_repos(manifest: &Manifest) -> impl Iterator<Item = &Repo> {
    manifest.repos.iter().filter(|r| r.kind == RepoKind::Cargo)
}

fn selected_repos<'a>(manifest: &'a Manifest, opts: &'a PlanOptions) -> BTreeSet<&'a str> {
    if opts.only.is_empty() {
        manifest.repos.iter().map(|r| r.name.as_str()).collect()
    } else {
        opts.only.iter().map(String::as_str).collect()
    }
}

/// Probe every cargo repo (see [`super::probe`]): compilers, lockfiles, then, once the
/// chain-wide keys are known and `before_metadata` has seen them, the resolved graphs of
/// the repos the plan needs (with `--only`, the selected ones and their upstream closure,
/// see [`needed_repos`]); the others are placed by a recorded or declared graph.
///
/// Errors: the lockfiles of the selected repos cannot be read.
fn probe_all(
    prober: &Prober<'_>,
    selected: &BTreeSet<&str>,
    before_metadata: &mut dyn FnMut(&ChainKeys),
) -> Result<(BTreeMap<String, Probe>, ChainKeys, LockedPackages)> {
    let (manifest, opts) = (prober.manifest, prober.opts);
    let mut rustcs = prober.compilers();
    let declared = (!opts.only.is_empty()).then(|| prober.declared());
    let mut needed: BTreeSet<String> = match &declared {
        None => cargo_repos(manifest).map(|r| r.name.clone()).collect(),
        Some(d) => needed_repos(manifest, selected, d.values().flatten().cloned().collect())?,
    };
    prober.lockfiles(&needed, &mut rustcs);
    let (lock_hashes, locked) = lockfiles(manifest, prober.root, selected)?;
    let keys = chain_keys(&lock_hashes, locked.has_git);
    before_metadata(&keys);
    let mut probes = prober.metadata(&needed, &mut rustcs);
    let Some(mut declared) = declared else {
        return Ok((probes, keys, locked));
    };
    // `--only`: an upstream repo found only in a resolved graph is resolved too.
    loop {
        let metas = probes
            .values()
            .filter_map(|p| p.meta.as_ref().ok().cloned().or_else(|| p.fallback.clone()))
            .chain(
                declared
                    .iter()
                    .filter(|(n, _)| !probes.contains_key(*n))
                    .filter_map(|(_, m)| m.clone()),
            )
            .collect();
        let more: BTreeSet<String> = needed_repos(manifest, selected, metas)?
            .difference(&needed)
            .cloned()
            .collect();
        if more.is_empty() {
            break;
        }
        prober.lockfiles(&more, &mut rustcs);
        probes.extend(prober.metadata(&more, &mut rustcs));
        needed.extend(more);
    }
    for r in cargo_repos(manifest).filter(|r| !needed.contains(&r.name)) {
        let rustc = rustcs
            .remove(&r.name)
            .unwrap_or_else(|| Err(anyhow::anyhow!("not probed")));
        let probe = prober.unneeded(r, rustc, declared.remove(&r.name).flatten());
        probes.insert(r.name.clone(), probe);
    }
    Ok((probes, keys, locked))
}

/// The cargo repos `--only` needs resolved: the selected ones and every repo upstream of
/// them in the graph of `metas` (and the manifest's `after` edges).
///
/// Errors: as [`metadata::build_graph`].
fn needed_repos(
    manifest: &Manifest,
    selected: &BTreeSet<&str>,
    metas: Vec<RepoMetadata>,
) -> Result<BTreeSet<String>> {
    let graph = metadata::build_graph(manifest, &metas)?;
    let sel: Vec<&str> = selected.iter().copied().collect();
    let mut needed = graph.upstream_closure(&sel);
    needed.extend(sel.iter().map(|s| (*s).to_owned()));
    Ok(cargo_repos(manifest)
        .filter(|r| needed.contains(&r.name))
        .map(|r| r.name.clone())
        .collect())
}

/// The selected repos' lockfile hashes (sorted by repo) and the registry packages they
/// name: the inputs of the chain-wide keys.
fn lockfiles(
    manifest: &Manifest,
    root: &Path,
    selected: &BTreeSet<&str>,
) -> Result<(Vec<(String, String)>, LockedPackages)> {
    let mut locked = LockedPackages::default();
    let mut hashes = Vec::new();
    for r in cargo_repos(manifest).filter(|r| selected.contains(r.name.as_str())) {
        let lock_path = Manifest::checkout_dir(root, r).join("Cargo.lock");
        if let Ok(h) = sha256_file(&lock_path) {
            locked.add_lockfile(&lock_path)?;
            hashes.push((r.name.clone(), h));
        }
    }
    hashes.sort();
    Ok((hashes, locked))
}

/// Content hashes of every checkout, one thread each (git is the slow part). The target
/// dir `cargo metadata` reported for a repo is left out of its content.
fn content_hashes(
    manifest: &Manifest,
    root: &Path,
    probes: &BTreeMap<String, Probe>,
) -> BTreeMap<String, String> {
    std::thread::scope(|s| {
        let handles: Vec<_> = manifest
            .repos
            .iter()
            .map(|r| {
                let dir = Manifest::checkout_dir(root, r);
                let exclude: Vec<PathBuf> = probes
                    .get(&r.name)
                    .and_then(|p| p.meta.as_ref().ok())
                    .map(|m| vec![m.target_directory.clone()])
                    .unwrap_or_default();
                s.spawn(move || {
                    let h = fingerprint::content_hash(&dir, &exclude)
                        .unwrap_or_else(|e| format!("error: {e:#}"));
                    (r.name.clone(), h)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("content hash thread panicked"))
            .collect()
    })
}

/// Plan every repo in run order; upstream fingerprints feed downstream ones.
fn plan_repos(c: &Chain<'_>) -> Result<Vec<RepoPlan>> {
    let mut fingerprints: BTreeMap<String, String> = BTreeMap::new();
    let mut repos = Vec::new();
    for (level, names) in c.levels.iter().enumerate() {
        for name in names {
            let r = plan_repo(c, c.manifest.repo(name)?, level, &fingerprints);
            fingerprints.insert(name.clone(), r.fingerprint.hash.clone());
            repos.push(r);
        }
    }
    Ok(repos)
}

/// What [`plan_repo`] derives about one repo before its fingerprint and action.
struct Derived {
    features: Vec<String>,
    deps: DepsMode,
    toolchain: Choice,
    rustc: Option<String>,
    error: Option<String>,
    lock_sha256: Option<String>,
    env: BTreeMap<String, String>,
    build: BuildEnv,
}

/// The repo's toolchain, compiler, lockfile hash, environment and build environment.
fn derive(c: &Chain<'_>, r: &Repo, dir: &Path) -> Derived {
    let probe = c.probes.get(r.name.as_str());
    let toolchain = toolchain_of(c.opts, &c.root, r);
    let env = repo_env(c.manifest, r, &toolchain);
    Derived {
        features: r.variant_features(&c.variant).to_vec(),
        deps: c.opts.deps.unwrap_or(r.deps),
        rustc: probe.and_then(|p| p.rustc.as_ref().ok().cloned()),
        error: probe.and_then(|p| match (&p.rustc, &p.meta) {
            (Err(e), _) | (_, Err(e)) => Some(format!("{e:#}")),
            _ => None,
        }),
        // The repo's own lockfile: the one cargo reads when it builds in `dir`.
        lock_sha256: (r.kind == RepoKind::Cargo)
            .then(|| sha256_file(&dir.join("Cargo.lock")).ok())
            .flatten(),
        build: BuildEnv::capture(
            &c.process_env,
            dir,
            &env,
            &c.cargo_home,
            &c.manifest.defaults.build_env,
        ),
        toolchain,
        env,
    }
}

/// Plan one repo: toolchain, key, environment, fingerprint, prepared steps and action.
fn plan_repo(
    c: &Chain<'_>,
    r: &Repo,
    level: usize,
    upstream_fps: &BTreeMap<String, String>,
) -> RepoPlan {
    let name = r.name.as_str();
    let dir = Manifest::checkout_dir(&c.root, r);
    let probe = c.probes.get(name);
    let meta = probe.and_then(|p| p.meta.as_ref().ok());
    let d = derive(c, r, &dir);
    let cache_key = repo_key(c, r, &d);
    let fp = repo_fingerprint(c, r, &d, meta, upstream_fps);
    let target_dir = meta.map(|m| m.target_directory.clone());
    let withheld = steps::withheld_env_of(c.manifest);
    let env_remove = steps::repo_env_remove(&withheld, &r.pass_env, &d.env);
    let prepared = steps::prepare(
        &r.steps,
        &RepoSteps {
            repo: name,
            dir: &dir,
            target_dir: &target_dir
                .clone()
                .unwrap_or_else(|| default_target_dir(&dir)),
            features: &d.features,
            profile: &c.profile,
            env: &d.env,
            env_remove: &env_remove,
        },
        &c.opts.exec,
    );
    let action = decide_action(c, name, probe, &d.toolchain, d.error.as_deref(), &fp);
    RepoPlan {
        name: name.to_owned(),
        level,
        depends_on: c
            .graph
            .upstream(name)
            .into_iter()
            .map(str::to_owned)
            .collect(),
        edges: edges_into(&c.graph, name),
        selected: c.selected.contains(name),
        kind: r.kind,
        target_dir,
        toolchain: d.toolchain.override_name().map(str::to_owned),
        toolchain_source: d.toolchain.describe(),
        cache_hit: cache_key.as_ref().is_some_and(|k| c.cache.contains(k)),
        cache_key,
        steps: r.steps.clone(),
        prepared,
        env_remove,
        versions: meta.map(|m| m.versions.clone()).unwrap_or_default(),
        unused_patches: meta.map(|m| m.unused_patches.clone()).unwrap_or_default(),
        stripped_patches: c.stripped.get(name).cloned().unwrap_or_default(),
        fingerprint: fp,
        action,
        dir,
        rustc: d.rustc,
        features: d.features,
        deps: d.deps,
        lock_sha256: d.lock_sha256,
        env: d.env,
        error: d.error,
    }
}

/// The repo's target key (absent for docs repos and repos that cannot resolve).
fn repo_key(c: &Chain<'_>, r: &Repo, d: &Derived) -> Option<CacheKey> {
    match (&d.rustc, &d.lock_sha256, d.error.is_none()) {
        (Some(rustc), Some(lock), true) => Some(target_key(&TargetInputs {
            repo: r,
            variant: &c.variant,
            features: &d.features,
            profile: &c.profile,
            deps: d.deps,
            rustc,
            cargo_home: &c.cargo_home,
            build: &d.build,
            lock_sha256: lock,
        })),
        _ => None,
    }
}

/// The repo's fingerprint (see [`crate::engine::fingerprint`] for every input).
fn repo_fingerprint(
    c: &Chain<'_>,
    r: &Repo,
    d: &Derived,
    meta: Option<&RepoMetadata>,
    upstream_fps: &BTreeMap<String, String>,
) -> Fingerprint {
    let path_deps = outside_path_deps(c, meta);
    let upstream: Vec<(String, String)> = c
        .graph
        .upstream(&r.name)
        .into_iter()
        .map(|up| (up.to_owned(), upstream_fps[up].clone()))
        .collect();
    RepoInputs {
        content: &c.contents[r.name.as_str()],
        lock_sha256: d.lock_sha256.as_deref(),
        rustc: d.rustc.as_deref(),
        features: &d.features,
        profile: &c.profile,
        deps: d.deps,
        env: &d.env,
        build: &d.build,
        path_deps: &path_deps,
        steps: &r.steps,
        upstream: &upstream,
    }
    .fingerprint()
}

/// `(directory, content hash)` of every path package of the repo's resolve graph that lies
/// outside every checkout of the chain: its sources are read like the repo's own, and no
/// other fingerprint covers them.
fn outside_path_deps(c: &Chain<'_>, meta: Option<&RepoMetadata>) -> Vec<(String, String)> {
    let Some(meta) = meta else {
        return Vec::new();
    };
    meta.path_packages
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .filter(|p| !c.checkouts.iter().any(|co| p.starts_with(co)))
        .map(|p| {
            let h = fingerprint::content_hash(&p, &[]).unwrap_or_else(|e| format!("error: {e:#}"));
            (p.display().to_string(), h)
        })
        .collect()
}

/// What `ci` will do with the repo (see [`Action`]).
fn decide_action(
    c: &Chain<'_>,
    name: &str,
    probe: Option<&Probe>,
    toolchain: &Choice,
    error: Option<&str>,
    fp: &Fingerprint,
) -> Action {
    let forced = c
        .opts
        .force
        .as_ref()
        .is_some_and(|f| f.is_empty() || f.iter().any(|x| x == name));
    let toolchain_missing = probe.is_some_and(|p| p.rustc.is_err());
    let not_affected = c.affected.as_ref().and_then(|(set, notes)| {
        (!set.contains(name)).then(|| notes.get(name).cloned().unwrap_or_default())
    });
    if !c.selected.contains(name) {
        Action::NotSelected
    } else if toolchain_missing && c.opts.skip_unavailable_toolchains {
        Action::SkipUnavailable(format!(
            "toolchain `{}` is not installed here: {}",
            toolchain
                .name()
                .as_deref()
                .unwrap_or("(rust-toolchain.toml)"),
            error.and_then(|e| e.lines().next()).unwrap_or("")
        ))
    } else if let Some(reason) = not_affected {
        Action::SkipNotAffected(reason)
    } else if error.is_none()
        && !forced
        && fp.undecidable().is_none()
        && c.results.get(name, &fp.hash).is_some()
    {
        Action::SkipCached
    } else {
        Action::Run
    }
}

/// The direct upstream edges into `name`, for display.
fn edges_into(graph: &Graph, name: &str) -> Vec<EdgeView> {
    graph
        .edges()
        .filter(|(_, d, _)| *d == name)
        .map(|(u, _, o)| EdgeView {
            from: u.to_owned(),
            origins: o.iter().copied().collect(),
        })
        .collect()
}

/// Assemble the plan from the chain and its planned repos.
fn finish_plan(
    c: Chain<'_>,
    repos: Vec<RepoPlan>,
    keys: ChainKeys,
    locked: LockedPackages,
) -> Plan {
    let ChainKeys {
        registry: registry_key,
        git: git_key,
    } = keys;
    Plan {
        registry_hit: registry_key.as_ref().is_some_and(|k| c.cache.contains(k)),
        git_hit: git_key.as_ref().is_some_and(|k| c.cache.contains(k)),
        variant: c.variant,
        profile: c.profile,
        root: c.root,
        repos,
        levels: c.levels,
        registry_key,
        git_key,
        locked,
        graph: c.graph,
    }
}

#[cfg(test)]
#[path = "resolve_tests.rs"]
mod tests;
