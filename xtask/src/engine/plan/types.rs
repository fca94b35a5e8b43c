//! The plan's data: what `ci` needs to know about the chain and each repo before running
//! anything. Produced only by [`super::resolve`]; read by the runner, `plan`, `graph` and
//! the reports.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::cache::cargo_home::LockedPackages;
use crate::cache::CacheKey;
use crate::engine::fingerprint::Fingerprint;
use crate::engine::graph::{EdgeOrigin, Graph};
use crate::engine::manifest::{DepsMode, Manifest, RepoKind, Step};
use crate::engine::patches::StrippedManifest;
use crate::engine::steps::{ExecContext, PreparedStep};

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
    /// The matrix cell's toolchain, above `--toolchain` (see [`crate::engine::toolchain`]).
    pub cell_toolchain: Option<String>,
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
    /// How step commands are prepared (run dir, GitHub Actions, nextest, shared cores).
    pub exec: ExecContext,
    /// How the checkouts may be locked and changed (read-only unless `ci`).
    pub checkout: CheckoutAccess,
    /// The result store that decides `cached` (`None`: the cache root's, local only).
    /// `ci` passes [`crate::engine::results::Results::shared`], which also asks the
    /// remote cache, so a success recorded on another runner counts.
    pub results: Option<crate::engine::results::Results>,
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
    /// Where the toolchain comes from (see [`crate::engine::toolchain::Choice::describe`]).
    pub toolchain_source: String,
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
    /// The manifest's steps (their text is part of the fingerprint).
    #[serde(skip)]
    pub steps: Vec<Step>,
    /// The exact commands `ci` runs for those steps, in order.
    #[serde(skip)]
    pub prepared: Vec<PreparedStep>,
    /// Environment for every step (manifest env plus what the run adds).
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// Inherited secrets every command of the repo goes without (the release build's
    /// too; see `steps::repo_env_remove`).
    #[serde(skip)]
    pub env_remove: Vec<String>,
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

/// A plan together with what keeps the checkouts as the plan saw them: the checkout
/// locks, the stripped registry-mode manifests and the generated lockfiles. Drop it to put
/// the checkouts back and then release the locks (fields drop in declaration order).
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
    /// What reconciling a killed run's leftovers did or could not do, for the user.
    pub notes: Vec<String>,
    /// The checkout locks ([`CheckoutAccess`]), released last.
    #[allow(dead_code)]
    pub locks: Vec<crate::support::dirlock::DirLock>,
    /// Which resolutions were reused from the resolution cache and which ran
    /// (`crate::engine::resolution`).
    pub resolution: crate::engine::resolution::Counts,
}

pub use crate::engine::patches::GeneratedLockfile;

/// How a command may treat the checkouts (`PlanOptions::checkout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CheckoutAccess {
    /// `plan`, `graph`, `cache key`, ...: never reconcile a killed run's leftovers, leave a
    /// repo whose manifest is stripped by another run as it is, and lock only the
    /// checkouts that must change for the plan (a registry-mode strip, a lockfile to
    /// generate), waiting for them; undone when the plan is dropped.
    #[default]
    ReadOnly,
    /// `ci`: lock every checkout of the chain before anything changes (waiting, or
    /// failing at once with `wait: false`, `--no-wait`), reconcile leftovers, then strip
    /// and generate.
    Exclusive {
        /// Wait for a checkout another run holds (else fail at once).
        wait: bool,
    },
}

/// The effective checkout root: `--root`, else the manifest's.
pub fn effective_root(manifest: &Manifest, opts: &PlanOptions) -> PathBuf {
    opts.root
        .as_deref()
        .map_or_else(|| manifest.root.clone(), crate::support::fs::normalize)
}

impl Plan {
    /// The planned repo called `name`, if the plan has it.
    pub fn repo(&self, name: &str) -> Option<&RepoPlan> {
        self.repos.iter().find(|r| r.name == name)
    }
}

/// Directory name of a repo's target dir relative to its checkout, for messages.
pub fn default_target_dir(dir: &Path) -> PathBuf {
    dir.join("target")
}
