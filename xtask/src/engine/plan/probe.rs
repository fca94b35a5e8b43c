//! The probing phases of resolving a plan, through the resolution cache
//! ([`crate::engine::resolution`]): each cargo repo's compiler identity (`rustc -vV`), its
//! lockfile (generated when it commits none) and its resolved graph (`cargo metadata`).
//! A lockfile or graph recorded under the same inputs is reused instead of running cargo.
//!
//! With `--only`, a run resolves in full only what it needs for order and fingerprints:
//! the selected repos and everything upstream of them. The upstream set is first read
//! from every repo's declared dependencies (`cargo metadata --no-deps`, which needs
//! neither a lockfile nor the network), then checked against the resolved graphs of the
//! repos resolved: an upstream repo found only there (a sibling package reached through a
//! registry crate) is resolved too, until the set is closed. Every other repo is placed by
//! its recorded graph when one is current, else by its declared dependencies.
//!
//! Every phase that runs a command runs one thread per repo. Owns no checkout change but
//! the lockfiles it generates or writes back (recorded as [`GeneratedLockfile`]s).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{anyhow, Result};

use super::types::{GeneratedLockfile, PlanOptions};
use crate::engine::manifest::{Manifest, Repo, RepoKind};
use crate::engine::metadata::{self, RepoMetadata};
use crate::engine::resolution::{self, Context, Inputs, Outcome, ResolutionCache};
use crate::engine::toolchain::Choice;
use crate::support::fs::sha256_file;

/// What probing one cargo repo found.
pub(super) struct Probe {
    /// `rustc -vV`, or why the repo cannot be resolved (its toolchain cannot run, its
    /// lockfile cannot be generated).
    pub rustc: Result<String>,
    /// The resolved graph (or, for a repo `--only` does not need, the declared one).
    pub meta: Result<RepoMetadata>,
    /// The `--no-deps` fallback when full resolution failed.
    pub fallback: Option<RepoMetadata>,
}

/// What the probes of one plan share.
pub(super) struct Prober<'a> {
    pub manifest: &'a Manifest,
    pub opts: &'a PlanOptions,
    pub root: &'a Path,
    /// The environment the steps inherit.
    pub inherited: &'a [(String, String)],
    /// `$CARGO_HOME` as the steps see it.
    pub cargo_home: &'a Path,
    /// The repos without a `Cargo.lock` whose checkouts are locked: they get one.
    pub may_generate: &'a BTreeSet<String>,
    pub cache: &'a ResolutionCache,
    /// Lockfiles generated (or written back from a record) in this run.
    pub generated: &'a Mutex<Vec<GeneratedLockfile>>,
}

/// Per repo: the directory, the toolchain rule's choice and the repo's environment.
struct RepoCx {
    dir: PathBuf,
    choice: Choice,
    env: BTreeMap<String, String>,
}

impl Prober<'_> {
    fn cargo_repos(&self) -> impl Iterator<Item = &Repo> {
        self.manifest
            .repos
            .iter()
            .filter(|r| r.kind == RepoKind::Cargo)
    }

    fn repo_cx(&self, r: &Repo) -> RepoCx {
        let choice = toolchain_of(self.opts, self.root, r);
        RepoCx {
            dir: Manifest::checkout_dir(self.root, r),
            env: repo_env(self.manifest, r, &choice),
            choice,
        }
    }

    /// Whether a recorded failure of `repo` is not wanted (`--force` names it, or all).
    fn retry_failed(&self, repo: &str) -> bool {
        self.opts
            .force
            .as_ref()
            .is_some_and(|f| f.is_empty() || f.iter().any(|x| x == repo))
    }

    fn context<'b>(
        &'b self,
        rustc: &'b str,
        r: &Repo,
        env: &'b BTreeMap<String, String>,
    ) -> Context<'b> {
        Context {
            rustc,
            deps: self.opts.deps.unwrap_or(r.deps),
            env,
            inherited: self.inherited,
            cargo_home: self.cargo_home,
        }
    }

    /// Phase A, one thread per cargo repo: the compiler identity (`rustc -vV` of the
    /// compiler cargo will run: `$RUSTC` from the inherited environment or the repo's,
    /// else `rustc`).
    pub fn compilers(&self) -> BTreeMap<String, Result<String>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .cargo_repos()
                .map(|r| {
                    let mut cx = self.repo_cx(r);
                    // The probes run as the steps will: with the repo's environment, and
                    // the `RUSTC` the steps inherit (cargo runs it instead of `rustc`).
                    if let Some((_, v)) = self.inherited.iter().find(|(k, _)| k == "RUSTC") {
                        cx.env.entry("RUSTC".into()).or_insert_with(|| v.clone());
                    }
                    s.spawn(move || {
                        let v = metadata::compiler_version(&cx.dir, &cx.choice, &cx.env);
                        (r.name.clone(), v)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .collect()
        })
    }

    /// Give each repo of `repos` that may get one a lockfile, one thread each: written
    /// back from a current record, else generated (and recorded). A repo whose lockfile
    /// cannot be had gets the error in place of its compiler identity in `rustcs` (it
    /// cannot be resolved, as before).
    pub fn lockfiles(
        &self,
        repos: &BTreeSet<String>,
        rustcs: &mut BTreeMap<String, Result<String>>,
    ) {
        let wanted = |r: &&Repo| repos.contains(&r.name) && self.may_generate.contains(&r.name);
        // Read once for every repo that needs a lockfile (each lockfile key covers them).
        let chain = if self.cargo_repos().any(|r| wanted(&r)) {
            let dirs: Vec<PathBuf> = self
                .cargo_repos()
                .map(|r| Manifest::checkout_dir(self.root, r))
                .collect();
            resolution::chain_manifests(&dirs)
        } else {
            Vec::new()
        };
        let failed: Vec<(String, anyhow::Error)> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .cargo_repos()
                .filter(wanted)
                .filter_map(|r| {
                    let rustc = rustcs.get(&r.name)?.as_ref().ok()?.clone();
                    let chain = &chain;
                    Some(s.spawn(move || {
                        let cx = self.repo_cx(r);
                        let inputs = Inputs::lockfile(
                            &r.name,
                            &cx.dir,
                            &self.context(&rustc, r, &cx.env),
                            chain,
                        );
                        let env: Vec<(String, String)> = cx.env.clone().into_iter().collect();
                        self.lockfile(&inputs, &cx.dir, &env)
                            .err()
                            .map(|e| (r.name.clone(), e))
                    }))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().expect("probe thread panicked"))
                .collect()
        });
        for (name, e) in failed {
            rustcs.insert(name, Err(e));
        }
    }

    /// One repo's lockfile: reused from a record, else generated and recorded.
    fn lockfile(&self, inputs: &Inputs, dir: &Path, env: &[(String, String)]) -> Result<()> {
        if dir.join("Cargo.lock").exists() {
            return Ok(());
        }
        match self.cache.lookup(inputs, self.retry_failed(&inputs.repo)) {
            Some(Outcome::Generated { lockfile }) => {
                let g = write_lockfile(dir, &lockfile)?;
                self.generated.lock().expect("lock list").push(g);
                return Ok(());
            }
            Some(Outcome::Failed { error, .. }) => return Err(resolution::failure(&error)),
            _ => {}
        }
        self.cache.note_ran(inputs);
        match generate_lockfile(dir, env) {
            Ok(Some(g)) => {
                if let Ok(text) = std::fs::read_to_string(dir.join("Cargo.lock")) {
                    self.cache
                        .store(inputs, &Outcome::Generated { lockfile: text });
                }
                self.generated.lock().expect("lock list").push(g);
                Ok(())
            }
            Ok(None) => Ok(()),
            Err(e) => {
                let error = format!("{e:#}");
                self.cache.store(
                    inputs,
                    &Outcome::Failed {
                        error: error.clone(),
                        fallback: None,
                    },
                );
                Err(anyhow!("{error}"))
            }
        }
    }

    /// Phase B for `repos`, one thread each: the resolved graph (from a record when
    /// current), and the `--no-deps` fallback when full resolution failed. Takes their
    /// compiler identities out of `rustcs`.
    pub fn metadata(
        &self,
        repos: &BTreeSet<String>,
        rustcs: &mut BTreeMap<String, Result<String>>,
    ) -> BTreeMap<String, Probe> {
        let todo: Vec<(&Repo, Result<String>)> = self
            .cargo_repos()
            .filter(|r| repos.contains(&r.name))
            .map(|r| {
                let rustc = rustcs
                    .remove(&r.name)
                    .unwrap_or_else(|| Err(anyhow!("not probed")));
                (r, rustc)
            })
            .collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = todo
                .into_iter()
                .map(|(r, rustc)| s.spawn(move || (r.name.clone(), self.resolve_one(r, rustc))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .collect()
        })
    }

    /// One repo's graph, through the resolution cache.
    fn resolve_one(&self, r: &Repo, rustc: Result<String>) -> Probe {
        let cx = self.repo_cx(r);
        let env: Vec<(String, String)> = cx.env.clone().into_iter().collect();
        let Ok(v) = &rustc else {
            return Probe {
                rustc,
                meta: Err(anyhow!("not resolved: the toolchain cannot run")),
                fallback: metadata::read_declared(&r.name, &cx.dir, &env).ok(),
            };
        };
        let inputs = Inputs::metadata(&r.name, &cx.dir, &self.context(v, r, &cx.env));
        let (meta, fallback) = match self.cache.lookup(&inputs, self.retry_failed(&r.name)) {
            Some(Outcome::Resolved { metadata }) => (Ok(metadata), None),
            Some(Outcome::Failed { error, fallback }) => {
                (Err(resolution::failure(&error)), fallback)
            }
            _ => self.run_metadata(&inputs, r, &cx.dir, &env),
        };
        Probe {
            rustc,
            meta,
            fallback,
        }
    }

    /// Run `cargo metadata` (and the fallback when it fails) and record the outcome,
    /// unless cargo changed the lockfile meanwhile (see the resolution module's docs).
    fn run_metadata(
        &self,
        inputs: &Inputs,
        r: &Repo,
        dir: &Path,
        env: &[(String, String)],
    ) -> (Result<RepoMetadata>, Option<RepoMetadata>) {
        self.cache.note_ran(inputs);
        let lock = dir.join("Cargo.lock");
        let before = sha256_file(&lock).ok();
        let meta = metadata::read_metadata(&r.name, dir, env);
        let fallback = meta
            .is_err()
            .then(|| metadata::read_declared(&r.name, dir, env).ok())
            .flatten();
        if before.is_some() && sha256_file(&lock).ok() == before {
            let outcome = match &meta {
                Ok(m) => Outcome::Resolved {
                    metadata: m.clone(),
                },
                Err(e) => Outcome::Failed {
                    error: format!("{e:#}"),
                    fallback: fallback.clone(),
                },
            };
            self.cache.store(inputs, &outcome);
        }
        (meta, fallback)
    }

    /// The declared graphs (`cargo metadata --no-deps`) of every cargo repo, one thread
    /// each; `None` where even that fails.
    pub fn declared(&self) -> BTreeMap<String, Option<RepoMetadata>> {
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .cargo_repos()
                .map(|r| {
                    let cx = self.repo_cx(r);
                    s.spawn(move || {
                        let env: Vec<(String, String)> = cx.env.into_iter().collect();
                        (
                            r.name.clone(),
                            metadata::read_declared(&r.name, &cx.dir, &env).ok(),
                        )
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("probe thread panicked"))
                .collect()
        })
    }

    /// A repo `--only` does not need: placed by its current recorded graph, else by its
    /// declared one.
    pub fn unneeded(
        &self,
        r: &Repo,
        rustc: Result<String>,
        declared: Option<RepoMetadata>,
    ) -> Probe {
        let cx = self.repo_cx(r);
        let recorded = rustc.as_ref().ok().and_then(|v| {
            let inputs = Inputs::metadata(&r.name, &cx.dir, &self.context(v, r, &cx.env));
            match self.cache.lookup(&inputs, false) {
                Some(Outcome::Resolved { metadata }) => Some(metadata),
                _ => None,
            }
        });
        let meta = match recorded.or(declared) {
            Some(m) => Ok(m),
            None => Err(anyhow!(
                "not resolved (`--only` does not need it) and `cargo metadata --no-deps` failed"
            )),
        };
        Probe {
            rustc,
            meta,
            fallback: None,
        }
    }
}

/// Write a recorded lockfile back into `dir`, recorded like a generated one (removed after
/// the run, by an emergency stop, or by the next run if this one is killed).
///
/// Errors: the marker or the lockfile cannot be written.
fn write_lockfile(dir: &Path, text: &str) -> Result<GeneratedLockfile> {
    let g = GeneratedLockfile::begin(dir)?;
    // Written in place, as cargo writes it: while the marker says `pending`, a killed
    // run's lockfile (torn or whole) is removed by the next run.
    std::fs::write(dir.join("Cargo.lock"), text.as_bytes())
        .map_err(|e| anyhow!("write the recorded lockfile into {}: {e}", dir.display()))?;
    g.finish()?;
    Ok(g)
}

/// Generate `dir/Cargo.lock` when it is missing, recorded so that it is removed after the
/// run, by an emergency stop, or by the next run if this one is killed
/// ([`GeneratedLockfile`]). `None`: the repo has a lockfile.
///
/// Errors: the marker cannot be written, or `cargo generate-lockfile` fails.
fn generate_lockfile(dir: &Path, env: &[(String, String)]) -> Result<Option<GeneratedLockfile>> {
    if dir.join("Cargo.lock").exists() {
        return Ok(None);
    }
    let g = GeneratedLockfile::begin(dir)?;
    if metadata::ensure_lockfile(dir, env)? {
        g.finish()?;
        Ok(Some(g))
    } else {
        g.not_generated();
        Ok(None)
    }
}

/// The toolchain rule for `r` in this plan (see [`crate::engine::toolchain`]).
pub(super) fn toolchain_of(opts: &PlanOptions, root: &Path, r: &Repo) -> Choice {
    Choice::resolve(
        opts.cell_toolchain.as_deref(),
        opts.toolchain.as_deref(),
        r.toolchain.as_deref(),
        &Manifest::checkout_dir(root, r),
    )
}

/// The environment every step of `r` runs with: the manifest's `env`, the toolchain
/// override, and `CARGO_INCREMENTAL=0` unless the manifest keeps incremental builds.
pub(super) fn repo_env(
    manifest: &Manifest,
    r: &Repo,
    toolchain: &Choice,
) -> BTreeMap<String, String> {
    let mut env = r.env.clone();
    env.extend(toolchain.env());
    if !manifest.defaults.incremental {
        env.entry("CARGO_INCREMENTAL".into())
            .or_insert_with(|| "0".into());
    }
    env
}
