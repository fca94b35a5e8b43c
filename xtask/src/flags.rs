//! The whole command line, in one place (clap derive). Every flag has a `///` help line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::engine::manifest::DepsMode;

/// bllvm chain CI: build a chain of cargo repositories in dependency order, with caches.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version, about)]
pub struct Xtask {
    /// What to do.
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the chain: restore caches, run every repo's steps in order, save caches, report.
    Ci(CiArgs),
    /// Print what `ci` would do (order, levels, edges, cache keys and hits) without running steps.
    Plan(PlanArgs),
    /// Clone every repo of the manifest whose checkout is missing.
    Checkout(CheckoutArgs),
    /// Run `ci` twice on the embedded sample chain (copied to a scratch dir) to show the caches at work.
    Demo(DemoArgs),
    /// Inspect the local cache.
    Cache(CacheArgs),
    /// List the variant × toolchain matrix cells and their repos.
    Matrix(MatrixArgs),
    /// Print the repo graph with edge origins, levels and what `ci` would do per repo.
    Graph(GraphArgs),
    /// Replay the step logs recorded for a repo's current fingerprint (a `cached` repo).
    Logs(LogsArgs),
    /// Benchmarks (`bench cache`: restore and save against rsync and tar + zstd). Development build only (`--features dev`).
    Bench(BenchArgs),
    /// Dispatch `repository_dispatch` events to the repos downstream of one repo (`--wait`: and follow their runs), walk a release set through the chain in order, or show where a chain run is (`chain status`).
    Chain(Box<ChainArgs>),
    /// Generate the GitHub Actions workflows from the manifest (`--check`: fail if they drifted).
    Workflows(WorkflowsArgs),
    /// Explain a failed step's log: the known errors it shows, what they mean, how to fix them.
    Explain(ExplainArgs),
    /// Check in a second or two what a run needs (checkouts, toolchains, disk, secrets, inputs), listing every problem.
    Preflight(PreflightArgs),
    /// Send a test message to the webhooks the manifest's `[notify]` names (to check the secrets).
    Notify(NotifyArgs),
    /// Print build trends from the metrics history, or write them as an HTML page with SVG charts (--html).
    Report(ReportArgs),
    /// Reliability scenarios of the cache at larger counts: concurrent processes, killed savers, damaged entries, a full disk. Development build only (`--features dev`).
    Stress(StressArgs),
    /// Mutation testing of the engine's pure modules with their unit tests (cargo-mutants), scored per module. Development build only (`--features dev`).
    Mutants(MutantsArgs),
}

/// Flags shared by the commands that resolve a plan (`ci`, `plan`, `graph`, `logs`,
/// `chain`, `preflight`, `cache key`, `cache warm`). Commands that would ignore `--only`
/// or `--variant` do not take them: a flag that is accepted must change the run.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Chain manifest to read.
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST, global = true)]
    pub manifest: PathBuf,
    /// Directory holding the checkouts (default: the manifest's `root`, itself `..` by default).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Only run this repo (repeatable); the graph still comes from every repo.
    #[arg(long = "only", value_name = "REPO")]
    pub only: Vec<String>,
    /// Variant (feature set) to build; default: the manifest's `[defaults] variant`.
    #[arg(long)]
    pub variant: Option<String>,
}

/// Flags of commands that resolve a plan.
#[derive(Debug, Clone, Args)]
pub struct Resolve {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Toolchain for every repo (sets RUSTUP_TOOLCHAIN), over the manifest and rust-toolchain.toml.
    #[arg(long)]
    pub toolchain: Option<String>,
    /// Dependency mode for every repo: keep sibling patches (`patched`) or strip them (`registry`).
    #[arg(long, value_enum)]
    pub deps: Option<DepsArg>,
    /// Cache root (default: $BLLVM_CI_CACHE_DIR, else the manifest's `[cache] dir`, else the per-user cache dir).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Print every cache key and fingerprint input.
    #[arg(short, long)]
    pub verbose: bool,
    /// Re-run repos whose fingerprint has a recorded success: all of them, or the named one (repeatable).
    #[arg(long, value_name = "REPO", num_args = 0..=1)]
    pub force: Option<Vec<String>>,
    /// Only run repos changed between two git refs, and their downstream (BASE..HEAD; or set BLLVM_CI_BASE and BLLVM_CI_HEAD).
    #[arg(long, value_name = "BASE..HEAD")]
    pub affected: Option<String>,
}

/// A count that must be at least 1 (`--jobs 0` would run nothing, or hang).
fn at_least_one(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `--deps` values.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DepsArg {
    /// Keep `[patch.crates-io]` sibling paths.
    Patched,
    /// Strip them and build against crates.io.
    Registry,
}

impl From<DepsArg> for DepsMode {
    fn from(d: DepsArg) -> DepsMode {
        match d {
            DepsArg::Patched => DepsMode::Patched,
            DepsArg::Registry => DepsMode::Registry,
        }
    }
}

/// `cargo xtask ci`.
#[derive(Debug, Clone, Args)]
pub struct CiArgs {
    /// Plan flags.
    #[command(flatten)]
    pub resolve: Resolve,
    /// After a failure, keep running the repos that do not depend on the failed one.
    #[arg(long)]
    pub keep_going: bool,
    /// Do not save caches after the run.
    #[arg(long)]
    pub no_save: bool,
    /// Do not restore caches before the run (build cold).
    #[arg(long)]
    pub no_restore: bool,
    /// Do not use the remote cache (`[cache.remote]`, `BLLVM_CI_CACHE_BUCKET`) in this run.
    #[arg(long)]
    pub no_remote: bool,
    /// Fail at once (exit 2) when another run holds a checkout, instead of waiting for it.
    #[arg(long)]
    pub no_wait: bool,
    /// Directory for step logs and summary.json (default: target/bllvm-ci/runs/<run id>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Only log step output, do not stream it.
    #[arg(short, long)]
    pub quiet: bool,
    /// After each repo's steps, build it with `--release --locked` and collect the binaries its `artifacts` lists into <run dir>/artifacts/<repo>/ with SHA256SUMS, plus artifacts/release-manifest.json.
    #[arg(long)]
    pub release: bool,
    /// Build each repo's release a second time from a clean target dir (<run dir>/verify/<repo>) and fail it if any artifact's bytes differ (implies --release).
    #[arg(long)]
    pub verify_deterministic: bool,
    /// Run every cell of the variant × toolchain matrix (repos' `toolchains` and `variants`), each as its own job.
    #[arg(long, conflicts_with_all = ["cell", "variant"])]
    pub matrix: bool,
    /// Run one matrix cell (`<toolchain|default>-<variant>`, as `cargo xtask matrix` lists them).
    #[arg(long, value_name = "NAME", conflicts_with = "variant")]
    pub cell: Option<String>,
    /// Repos of one level run at once, N at a time (cargo's own jobs are shared out so the
    /// machine is not oversubscribed). Default 1.
    #[arg(short, long, default_value_t = 1, value_name = "N", value_parser = at_least_one)]
    pub jobs: usize,
    /// On pull_request events, post (or update) one PR comment with the run summary (GITHUB_TOKEN with pull-requests: write).
    #[arg(long)]
    pub comment: bool,
}

/// Output formats.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// For people.
    #[default]
    Text,
    /// For machines (`schema_version` 1).
    Json,
}

/// `cargo xtask plan`.
#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// Plan flags.
    #[command(flatten)]
    pub resolve: Resolve,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Say which fingerprint inputs of REPO changed since its last recorded run.
    #[arg(long, value_name = "REPO")]
    pub explain: Option<String>,
}

/// `cargo xtask graph`.
#[derive(Debug, Clone, Args)]
pub struct GraphArgs {
    /// Plan flags.
    #[command(flatten)]
    pub resolve: Resolve,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

/// `graph --format` values.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum GraphFormat {
    /// Graphviz dot.
    Dot,
    /// A mermaid flowchart (renders on GitHub).
    Mermaid,
    /// JSON (`schema_version` 1).
    Json,
}

/// `cargo xtask matrix`.
#[derive(Debug, Clone, Args)]
pub struct MatrixArgs {
    /// Chain manifest to read.
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `cargo xtask logs`.
#[derive(Debug, Clone, Args)]
pub struct LogsArgs {
    /// Plan flags (the fingerprint is computed as `ci` would).
    #[command(flatten)]
    pub resolve: Resolve,
    /// The repo whose recorded logs to print.
    pub repo: String,
}

/// `cargo xtask checkout`.
#[derive(Debug, Clone, Args)]
pub struct CheckoutArgs {
    /// Chain manifest to read.
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Directory the checkouts go under (default: the manifest's `root`, itself `..` by default).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// Base URL repos are cloned from, as `<base>/<owner>/<name>.git` (a mirror or a dir of bare repos).
    #[arg(long, default_value = "https://github.com", value_name = "URL")]
    pub git_base: String,
    /// Shallow clone depth (default: full history).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub depth: Option<u32>,
}

/// `cargo xtask demo`.
#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Scratch directory (default: target/bllvm-ci/demo); the sample chain is copied into it.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Cache root for the demo (default: <dir>/cache, so the demo never touches your real cache).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Only log step output, do not stream it.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `cargo xtask cache`.
#[derive(Debug, Clone, Args)]
pub struct CacheArgs {
    /// What to do with the cache.
    #[command(subcommand)]
    pub cmd: CacheCmd,
}

/// Where the cache is and which `[cache]` settings apply, for `cache` subcommands.
#[derive(Debug, Clone, Args)]
pub struct CacheRoot {
    /// Cache root (default: $BLLVM_CI_CACHE_DIR, else the manifest's `[cache] dir`, else the per-user cache dir).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Chain manifest whose `[cache]` table gives the root and retention (defaults apply when it does not exist).
    #[arg(long = "manifest", value_name = "PATH", default_value = crate::engine::manifest::DEFAULT_MANIFEST)]
    pub cache_manifest: PathBuf,
}

/// Cache subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum CacheCmd {
    /// List entries: stage, key, size, files, last use, hits, and whether a job holds it.
    List {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Output format.
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
    /// Hit rate per repo and stage over the recorded runs, bytes and time saved, the largest entries, recommendations.
    Stats {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
    },
    /// Apply retention now (max entries per stage, max age by last use, byte budget, disk guard).
    Prune {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Only print what would be evicted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check every entry against its manifest (file list, sizes, mtimes, sha256 of every byte); exit 1 if any is damaged.
    Verify {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Only check the file list, sizes and mtimes (what every restore checks), not the bytes.
        #[arg(long)]
        quick: bool,
        /// Discard damaged entries.
        #[arg(long)]
        discard: bool,
    },
    /// Remove every entry no job holds (with --stage, only that stage's).
    Clear {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Only this stage (registry, git, target).
        #[arg(long)]
        stage: Option<String>,
    },
    /// Print a repo's target key and every input that went into it.
    Key {
        /// Plan flags.
        #[command(flatten)]
        resolve: Resolve,
        /// The repo.
        #[arg(long)]
        repo: String,
    },
    /// The actions/cache key of the cache root (runner kind `hosted`): writes `key`, `restore-keys` and `path` to $GITHUB_OUTPUT and prints them. Run it after `cargo xtask checkout`.
    ActionsKey {
        /// Manifest, checkout root, selected repos (`--only`: the key's selection) and variant, as given to `ci`.
        #[command(flatten)]
        common: Common,
        /// Toolchain for every repo, as given to `ci --toolchain` (part of the key).
        #[arg(long)]
        toolchain: Option<String>,
        /// Cache root (default as for `ci`): the `path` output.
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Build each selected repo's dependencies (its compiling steps: clippy, build, test --no-run, doc) and save the target entries, pruned to dependency artifacts.
    Warm {
        /// Plan flags.
        #[command(flatten)]
        resolve: Resolve,
    },
    /// Save a directory as an entry (scripts and tests; prints the outcome as JSON).
    #[command(hide = true)]
    Put {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Stage (registry, git, target).
        #[arg(long, default_value = "target")]
        stage: String,
        /// Key.
        #[arg(long)]
        key: String,
        /// Directory to save.
        #[arg(long)]
        src: PathBuf,
    },
    /// Restore an entry into a directory (scripts and tests; prints the outcome as JSON). Without --read-only a moved entry is consumed: `cache put` it back.
    #[command(hide = true)]
    Get {
        /// Cache root and settings.
        #[command(flatten)]
        root: CacheRoot,
        /// Stage (registry, git, target).
        #[arg(long, default_value = "target")]
        stage: String,
        /// Key.
        #[arg(long)]
        key: String,
        /// Directory to restore into.
        #[arg(long)]
        dst: PathBuf,
        /// Open the cache read-only (as an untrusted event would): copy, never write.
        #[arg(long)]
        read_only: bool,
    },
}

/// `cargo xtask bench`.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

/// `cargo xtask bench` in a build without the `dev` feature: takes any arguments, and the
/// command says how to get a build that has it.
#[cfg(not(feature = "dev"))]
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// The benchmark's arguments (not compiled into this build: see `--features dev`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Benchmarks.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCmd {
    /// `ci` on the unchanged sample chain against the bare loop of cargo commands it would run.
    Noop {
        /// Scratch dir (default: target/bllvm-ci/bench-noop); the sample chain is copied into it.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Repetitions of each side (medians are reported).
        #[arg(long, default_value_t = 5, value_parser = at_least_one)]
        reps: usize,
        /// Write the figures into this Markdown file (replacing its `<!-- bench:noop -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// The sample chain cold, warm after a one-line change upstream, and unchanged: `ci` with per-repo target dirs, the same with the shared compiler cache (sccache), and the bare loop of cargo commands; crate compilations, CPU and wall seconds.
    Chain {
        /// Scratch dir (default: target/bllvm-ci/bench-chain); removed first.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Write the table into this Markdown file (replacing its `<!-- bench:chain -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// Restore and save of a target dir: our engine (move and copy) against `rsync -a --delete` and `tar` + `zstd`.
    Cache {
        /// A real target dir to measure (default: a generated one with a real target's shape).
        #[arg(long, value_name = "DIR")]
        target_dir: Option<PathBuf>,
        /// Build the sample chain (`ci/sample`) and measure its largest target dir instead.
        #[arg(long, conflicts_with = "target_dir")]
        sample: bool,
        /// Scratch dir on the filesystem to measure (default: target/bllvm-ci/bench).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Generated tree: number of files.
        #[arg(long, default_value_t = 24_000)]
        files: usize,
        /// Generated tree: total size in MiB.
        #[arg(long, default_value_t = 1200)]
        mib: u64,
        /// Repetitions of each measurement (medians are reported).
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        reps: usize,
        /// Write the figures into this Markdown file (replacing its `<!-- bench:cache -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// First and second runner on the sample chain per runner kind (self-hosted, hosted through actions/cache's tar + zstd, remote through the configured bucket): wall time, crates compiled, repos cached.
    Runners {
        /// Scratch dir (default: target/bllvm-ci/bench-runners); removed first and at the end.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Only this runner kind (repeatable; default: every kind, remote only when a remote is configured).
        #[arg(long = "kind", value_enum, value_name = "KIND")]
        kinds: Vec<RunnerKindArg>,
        /// Write the figures into this Markdown file (replacing its `<!-- bench:runners -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
    /// Remote cache save and restore throughput (the remote from `[cache.remote]` and the environment) next to the local engine's.
    Remote {
        /// Scratch dir (default: target/bllvm-ci/bench-remote).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        /// Generated tree: number of files.
        #[arg(long, default_value_t = 4_000)]
        files: usize,
        /// Generated tree: total size in MiB.
        #[arg(long, default_value_t = 200)]
        mib: u64,
        /// Repetitions of each measurement (medians are reported).
        #[arg(long, default_value_t = 3, value_parser = at_least_one)]
        reps: usize,
        /// Write the figures into this Markdown file (replacing its `<!-- bench:remote -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
}

/// `bench runners --kind` values.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RunnerKindArg {
    /// GitHub-hosted: the cache root through actions/cache.
    Hosted,
    /// Self-hosted: the cache root on the runner's persistent disk.
    SelfHosted,
    /// A fleet sharing an S3-compatible bucket.
    Remote,
}

/// `cargo xtask explain`.
#[derive(Debug, Clone, Args)]
pub struct ExplainArgs {
    /// A step log, or a run directory (every failed step in its summary.json); `-` or nothing reads stdin.
    #[arg(value_name = "LOG")]
    pub log: Option<PathBuf>,
    /// Knowledge base to use instead of the one built in (ci/error-patterns.toml).
    #[arg(long, value_name = "FILE")]
    pub patterns: Option<PathBuf>,
    /// Output format (`json`: the matches as an array).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `cargo xtask chain`: tell downstream repos to run (`repository_dispatch`), follow a
/// chain run (`chain status`), or release a set in order (`--release`).
///
/// Credentials: a GitHub App when `[chain] app-id-env` and `private-key-env` are both set,
/// else the token in the variable `[chain] token-env` names, else `GITHUB_TOKEN`; never
/// printed. Exit codes: 0 all sent or skipped (with `--wait` or a release walk: and every
/// run green); 1 a run failed (`--wait`, a release walk); 2 the run could not start (no
/// credentials, bad flags); 3 bad credentials (401); 4 the token or app cannot reach a
/// repo (403/404); 5 invalid dispatch (422); 6 rate limited past --max-wait; 7 server or
/// network errors after retries; 8 a wait gave up at its timeout before runs finished.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ChainArgs {
    /// `status`: where a chain run is; without it, dispatch.
    #[command(subcommand)]
    pub cmd: Option<ChainCmd>,
    /// Plan flags (the graph the targets come from).
    #[command(flatten)]
    pub resolve: Resolve,
    /// The repo whose run propagates: its downstream repos are dispatched.
    #[arg(long, value_name = "REPO", required_unless_present = "release")]
    pub from: Option<String>,
    /// Dispatch the whole downstream closure of --from, not only its direct dependents.
    #[arg(long)]
    pub transitive: bool,
    /// Only dispatch this repo (repeatable; must be downstream of --from).
    #[arg(long = "to", value_name = "REPO")]
    pub to: Vec<String>,
    /// Event type to send, over the manifest's `[chain.event-types]` entry for the trigger.
    #[arg(long, value_name = "TYPE")]
    pub event_type: Option<String>,
    /// Trigger being propagated (push, release, develop, ...; default: from GITHUB_EVENT_NAME, else push).
    #[arg(long, value_name = "NAME")]
    pub trigger: Option<String>,
    /// Commit of --from that was built (default: $GITHUB_SHA).
    #[arg(long)]
    pub sha: Option<String>,
    /// Git ref of --from's run (default: $GITHUB_REF).
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Correlation id of the chain run (default: the one received upstream, else gh-<run id>-<attempt>, else local-<time>-<pid>).
    #[arg(long, value_name = "ID")]
    pub chain_id: Option<String>,
    /// Print each request (URL, event type, payload) and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// After dispatching, follow the runs of the chain (the targets and what they dispatch) until they finish or --timeout.
    #[arg(long, conflicts_with_all = ["dry_run", "release"])]
    pub wait: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Walk release set VERSION (from ci/versions.toml) through the whole chain in order, each repo's run green and crates published before the next; a dry run unless --execute.
    #[arg(long, value_name = "VERSION", conflicts_with_all = ["from", "transitive", "to", "dry_run"])]
    pub release: Option<String>,
    /// With --release: release for real (default: print the plan only).
    #[arg(long, requires = "release")]
    pub execute: bool,
    /// With --release --execute: send the dispatches in order without waiting for runs or the index.
    #[arg(long, requires = "release")]
    pub no_wait: bool,
    /// Release sets file (default: versions.toml beside the manifest).
    #[arg(long, value_name = "PATH")]
    pub versions: Option<PathBuf>,
    /// Sparse index a release walk waits on for published crates (default: [chain] index-url, else https://index.crates.io/).
    #[arg(long, value_name = "URL", requires = "release")]
    pub index_url: Option<String>,
    /// With --release: longest wait, in seconds, for one crate version to appear in the index.
    #[arg(
        long,
        default_value_t = 1800,
        value_name = "SECS",
        requires = "release"
    )]
    pub publish_timeout: u64,
    /// How to reach GitHub.
    #[command(flatten)]
    pub api: ApiArgs,
    /// How long and how often to look at runs.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// `chain` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum ChainCmd {
    /// Where a chain run is: each repo's run for CHAIN_ID (state, conclusion, duration, link) in the chain's order, and the first failure. Exit 0 finished green, 1 a run failed, 8 not finished.
    Status(Box<ChainStatusArgs>),
}

/// `cargo xtask chain status CHAIN_ID`.
#[derive(Debug, Clone, Args)]
pub struct ChainStatusArgs {
    /// The chain id (a dispatched run's title ends with it; `chain` prints it).
    #[arg(value_name = "CHAIN_ID")]
    pub chain_id: String,
    /// Keep looking until the chain finishes or --timeout, printing each change.
    #[arg(long)]
    pub watch: bool,
    /// Output format (`json`: `schema_version` 1).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Plan flags (the chain's order and graph).
    #[command(flatten)]
    pub resolve: Resolve,
    /// How to reach GitHub.
    #[command(flatten)]
    pub api: ApiArgs,
    /// How long and how often to look at runs.
    #[command(flatten)]
    pub follow: FollowArgs,
}

/// How `chain` reaches GitHub.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// GitHub REST API base (GitHub Enterprise: https://HOST/api/v3).
    #[arg(long, env = "GITHUB_API_URL", value_name = "URL")]
    pub api_url: Option<String>,
    /// Retries after a 5xx or network error (each dispatch carries the same dispatch_id).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// Backoff before the first retry, in milliseconds; doubles after each.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_delay_ms: u64,
    /// Longest wait, in seconds, for a rate limit (Retry-After / x-ratelimit-reset) or a backoff.
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub max_wait: u64,
}

/// How `chain --wait`, `chain status --watch` and a release walk follow runs.
#[derive(Debug, Clone, Args)]
pub struct FollowArgs {
    /// Longest wait, in seconds, for the runs followed (with --release: for each repo's run) to finish.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub timeout: u64,
    /// First interval between looks at the runs, in milliseconds; doubles while nothing changes (up to 8x) and stretches to stay within GitHub's rate limit.
    #[arg(long, default_value_t = 15_000, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    pub poll_ms: u64,
}

/// `cargo xtask workflows`: write (or `--check`) the GitHub Actions workflows generated
/// from the manifest. Exit codes: 0 written or up to date; 1 `--check` found a file that
/// differs; 2 the manifest cannot be read.
#[derive(Debug, Clone, Args)]
pub struct WorkflowsArgs {
    /// Chain manifest to read.
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST, global = true)]
    pub manifest: PathBuf,
    /// Compare the files on disk with what the manifest generates; exit 1 if one differs.
    #[arg(long)]
    pub check: bool,
    /// Directory the `.github/` files go under (default: the current directory).
    #[arg(long, default_value = ".", value_name = "DIR")]
    pub out: PathBuf,
    /// What the generated jobs run besides generation (none: generate or --check).
    #[command(subcommand)]
    pub action: Option<WorkflowsAction>,
}

/// The parts of `cargo xtask workflows` the generated jobs call.
#[derive(Debug, Clone, Subcommand)]
pub enum WorkflowsAction {
    /// Print the toolchains a job must install, one a line: the manifest's and the checkouts' rust-toolchain.toml pins.
    Toolchains {
        /// Only for this repo (repeatable).
        #[arg(long = "only", value_name = "REPO")]
        only: Vec<String>,
        /// Only for this matrix cell (as `cargo xtask matrix` lists them).
        #[arg(long, value_name = "NAME")]
        cell: Option<String>,
    },
    /// Turn the fan-out jobs' summary.json artifacts under DIR into one step summary (and PR comment); exit 1 when a repo failed or a summary is missing.
    Gather {
        /// Directory holding the downloaded summary artifacts, one directory each.
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// An artifact directory that must hold a summary.json (repeatable).
        #[arg(long, value_name = "NAME")]
        expect: Vec<String>,
        /// Post or update the pull request's summary comment.
        #[arg(long)]
        comment: bool,
    },
}

/// `cargo xtask preflight`. Exit codes: 0 nothing fatal (warnings may be printed); 2 a
/// fatal problem (the same checks `ci` runs before it starts).
#[derive(Debug, Clone, Args)]
pub struct PreflightArgs {
    /// Plan flags (manifest, root, only, variant, toolchain, cache dir).
    #[command(flatten)]
    pub resolve: Resolve,
    /// Also check what `cargo xtask chain` needs: a dispatch token (--token-env, then `[chain] token-env`, then GITHUB_TOKEN).
    #[arg(long)]
    pub chain: bool,
    /// Variable holding the dispatch token, tried before GITHUB_TOKEN (with --chain).
    #[arg(long, value_name = "VAR")]
    pub token_env: Option<String>,
    /// Check release inputs: --release-version and --ref must be given and valid.
    #[arg(long)]
    pub release: bool,
    /// Version being released (X.Y.Z), with --release.
    #[arg(long, value_name = "X.Y.Z")]
    pub release_version: Option<String>,
    /// Git ref (tag, branch, commit) a release builds from, with --release.
    #[arg(long = "ref", value_name = "REF")]
    pub git_ref: Option<String>,
    /// Output format (`json`: `schema_version` 1, the problems as an array).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
}

/// `cargo xtask notify`. Exit codes: 0 every webhook answered; 1 one failed (a warning
/// says why, never with the URL); 2 no webhook is configured and set.
#[derive(Debug, Clone, Args)]
pub struct NotifyArgs {
    /// Chain manifest whose `[notify]` table names the webhook variables.
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Seconds one webhook call may take, over the manifest's `[notify] timeout`.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: Option<u64>,
}

/// `cargo xtask report`. Exit codes: 0 printed or written; 2 no history or unreadable.
#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// Chain manifest (only its `[cache] dir` is read, to find the cache root).
    #[arg(long, default_value = crate::engine::manifest::DEFAULT_MANIFEST)]
    pub manifest: PathBuf,
    /// Cache root holding metrics/history.jsonl (default as for `ci`).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// History file to read instead of <cache root>/metrics/history.jsonl.
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
    /// How many of the latest runs to show.
    #[arg(long, default_value_t = 30, value_name = "N", value_parser = at_least_one)]
    pub last: usize,
    /// Write a self-contained HTML page with SVG charts to FILE instead of printing text.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// `cargo xtask stress`: the reliability scenarios (`xtask/src/dev/stress/`); `cargo test`
/// runs the same code with small counts. Exit codes: 0 every scenario that could run
/// passed; 1 one failed; 2 the run could not start.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Args)]
pub struct StressArgs {
    /// Scratch dir (default: target/bllvm-ci/stress); every scenario starts from an empty subdir.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Only this scenario (repeatable; default: all).
    #[arg(long, value_enum)]
    pub scenario: Vec<StressScenario>,
    /// Concurrent worker processes (concurrency).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub procs: usize,
    /// Operations per worker process (concurrency).
    #[arg(long, default_value_t = 300, value_name = "N")]
    pub rounds: usize,
    /// Keys the workers share (concurrency).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub keys: usize,
    /// Savers killed with SIGKILL (crash).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub crashes: usize,
    /// Entries damaged per kind of damage (corruption).
    #[arg(long, default_value_t = 50, value_name = "N")]
    pub corruptions: usize,
    /// Rounds of the full-disk cases (full-disk).
    #[arg(long, default_value_t = 20, value_name = "N")]
    pub full_disk: usize,
    /// Runs of ci sent SIGINT, SIGTERM or SIGKILL at a random moment (signals).
    #[arg(long, default_value_t = 30, value_name = "N")]
    pub signal_rounds: usize,
    /// Rounds of two ci runs started together on one checkout (shared-checkout).
    #[arg(long, default_value_t = 10, value_name = "N")]
    pub shared_rounds: usize,
    /// Rounds of random corruption of the cache's metadata (hostile).
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub hostile: usize,
    /// Seed of every random choice (default: from the clock; printed, so a run can be replayed).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Output format (`json`: `schema_version` 1, one object per scenario).
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Run as concurrency worker N (internal: the scenario starts these processes itself).
    #[arg(long, hide = true, value_name = "N")]
    pub worker: Option<usize>,
}

/// `cargo xtask stress` in a build without the `dev` feature: takes any arguments, and
/// the command says how to get a build that has it.
#[cfg(not(feature = "dev"))]
#[derive(Debug, Clone, Args)]
pub struct StressArgs {
    /// The scenarios' arguments (not compiled into this build: see `--features dev`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `cargo xtask mutants`: cargo-mutants over the engine's pure modules with their unit
/// tests (`xtask/src/dev/mutants.rs`); not part of CI (it takes tens of minutes).
/// Exit codes: 0 every module at or above `--min-score`; 1 one below; 2 could not run.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Args)]
pub struct MutantsArgs {
    /// Source file to mutate, relative to the workspace (repeatable; default: the pure modules listed in BENCHMARKS.md).
    #[arg(long = "file", value_name = "FILE")]
    pub files: Vec<String>,
    /// Parallel builds (each in its own copy of the tree).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub jobs: usize,
    /// Where cargo-mutants writes `mutants.out/` (default: target/mutants).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Only list the mutants, do not build or test them.
    #[arg(long)]
    pub list: bool,
    /// Lowest score (caught / viable, percent) a module may have (issue 15: 90).
    #[arg(long, default_value_t = 90, value_name = "PERCENT")]
    pub min_score: u8,
}

/// `cargo xtask mutants` in a build without the `dev` feature.
#[cfg(not(feature = "dev"))]
#[derive(Debug, Clone, Args)]
pub struct MutantsArgs {
    /// The command's arguments (not compiled into this build: see `--features dev`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// `stress --scenario` values.
#[cfg(feature = "dev")]
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum StressScenario {
    /// Worker processes saving, restoring, verifying and pruning the same keys.
    Concurrency,
    /// Savers killed with SIGKILL before, during and after publishing.
    Crash,
    /// Entries damaged in six ways, then verified and restored.
    Corruption,
    /// Saves into a small tmpfs that fills up (root, CAP_SYS_ADMIN or an unprivileged user namespace).
    FullDisk,
    /// ci sent SIGINT, SIGTERM or SIGKILL at random moments: no orphaned process, checkout as committed.
    Signals,
    /// Two ci runs on one checkout at once: both pass, the checkout keeps its [patch].
    SharedCheckout,
    /// The cache's metadata corrupted at random (hostile keys, garbage, FIFOs, symlinks), then used.
    Hostile,
}
