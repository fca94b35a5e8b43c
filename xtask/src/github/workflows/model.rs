//! What the generator derives from the manifest before writing any YAML: the runner kind
//! and its labels, the xtask features a chain job needs, whether coverage is on, the
//! matrix cells, and the GitHub expressions every file shares.
//!
//! Pure data; no I/O. The other modules of the generator read from a [`Ctx`].

use crate::engine::manifest::{Manifest, RunnerKind, WorkflowSettings};
use crate::engine::matrix::Cell;

/// Where the orchestrator is checked out inside a job's workspace.
pub const ORCH_DIR: &str = "bllvm-ci";

/// The cache root of `hosted` and `remote` jobs, under the job's workspace (beside the
/// checkouts, on the same filesystem, so entries move by rename). `self-hosted` jobs use
/// the manifest's `cache-dir` instead.
pub const WORKSPACE_CACHE_DIR: &str = "${{ github.workspace }}/bllvm-ci-cache";

/// The run directory (`ci --run-dir`) of every chain job: logs, `summary.json`, JUnit,
/// coverage, release files and the HTML report, uploaded as the job's artifact. Not a
/// hidden name: `actions/upload-artifact` leaves hidden files out.
pub const RUN_DIR: &str = "${{ github.workspace }}/bllvm-ci-run";

/// The events whose runs may save caches, as `github/events.rs`'s `may_save` decides for
/// the engine: push to the default branch, release, repository_dispatch,
/// workflow_dispatch and schedule, never in a fork. Pull requests and pushes to other
/// branches restore only.
pub const TRUSTED: &str = "contains(fromJSON('[\"push\", \"release\", \"repository_dispatch\", \"workflow_dispatch\", \"schedule\"]'), github.event_name) && !github.event.repository.fork && (github.event_name != 'push' || github.ref == format('refs/heads/{0}', github.event.repository.default_branch))";

/// What the generator needs to know about one manifest.
#[derive(Debug, Clone)]
pub struct Ctx<'a> {
    /// The manifest.
    pub manifest: &'a Manifest,
    /// Its `[workflows]` table.
    pub settings: &'a WorkflowSettings,
    /// The manifest's path as written in the header (forward slashes).
    pub manifest_path: String,
    /// Matrix cells; the matrix variant of a workflow is written when there are two or
    /// more.
    pub cells: Vec<Cell>,
    /// With `fan-out`: every cargo repo's job and the jobs of its nearest cargo upstreams
    /// (docs repos have no job: an edge through one joins its two sides), in manifest
    /// order. Empty without `fan-out`.
    pub needs: Vec<(String, Vec<String>)>,
}

impl<'a> Ctx<'a> {
    /// The context of `manifest`.
    pub fn new(manifest: &'a Manifest) -> Ctx<'a> {
        Ctx {
            manifest,
            settings: &manifest.workflows,
            manifest_path: manifest.path.to_string_lossy().replace('\\', "/"),
            cells: crate::engine::matrix::cells(manifest),
            needs: Vec::new(),
        }
    }

    /// Whether the chain jobs run a matrix (two or more cells).
    pub fn matrix(&self) -> bool {
        self.cells.len() > 1
    }

    /// The runner kind.
    pub fn kind(&self) -> RunnerKind {
        self.settings.runner
    }

    /// The cargo feature of xtask a chain job needs: the remote cache's backend where a
    /// remote is configured (`runner = "remote"`, or a `[cache.remote]` bucket), `None`
    /// otherwise. Jobs that only dispatch or gather never need one.
    pub fn chain_features(&self) -> Option<String> {
        let remote = self.manifest.cache.remote.as_ref();
        let configured =
            self.kind() == RunnerKind::Remote || remote.is_some_and(|r| r.bucket.is_some());
        if !configured {
            return None;
        }
        Some(match remote.and_then(|r| r.service.as_deref()) {
            None | Some("s3") => "remote".to_owned(),
            Some(other) => format!("remote-{other}"),
        })
    }

    /// Whether any repo runs the opt-in `coverage` step (then cargo-tarpaulin is
    /// installed).
    pub fn coverage(&self) -> bool {
        self.manifest.repos.iter().any(|r| {
            r.steps
                .iter()
                .any(|s| s.name == crate::engine::coverage::STEP)
        })
    }

    /// `runs-on:` value: one label as a scalar, several as a flow sequence.
    pub fn runs_on(&self) -> String {
        match self.settings.labels.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        }
    }

    /// The cache root every job of this runner kind uses (`BLLVM_CI_CACHE_DIR`).
    pub fn cache_dir(&self) -> String {
        match &self.settings.cache_dir {
            Some(dir) if self.kind() == RunnerKind::SelfHosted => dir.clone(),
            _ => WORKSPACE_CACHE_DIR.to_owned(),
        }
    }

    /// The variables that hold secrets of the `[notify]` webhooks, sorted.
    pub fn webhook_vars(&self) -> Vec<&str> {
        let n = &self.manifest.notify;
        let mut v: Vec<&str> = [&n.slack_webhook_env, &n.discord_webhook_env]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// The command that runs xtask with `features`: `cargo xtask` (the workspace alias) for
/// the default build, `cargo run --package xtask --features F --` otherwise (an alias
/// cannot take features, and a `CARGO_ALIAS_*` variable would reach every step as a
/// build input).
pub fn xtask(features: Option<&str>) -> String {
    match features {
        None => "cargo xtask".to_owned(),
        Some(f) => format!("cargo run --package xtask --features {f} --"),
    }
}

/// The job id of `repo`'s fan-out job: `repo-` and the name with `.` as `_` (job ids take
/// letters, digits, `-` and `_`).
pub fn job_id(repo: &str) -> String {
    format!("repo-{}", repo.replace('.', "_"))
}
