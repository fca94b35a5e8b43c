//! The whole command line, in one place (clap derive). Every flag has a `///` help line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::manifest::DepsMode;

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
    /// Benchmarks (`bench cache`: restore and save against rsync and tar + zstd).
    Bench(BenchArgs),
}

/// Flags shared by `ci`, `plan` and `checkout`.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Chain manifest to read.
    #[arg(long, default_value = crate::manifest::DEFAULT_MANIFEST, global = true)]
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
    /// Print every cache key input.
    #[arg(short, long)]
    pub verbose: bool,
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
    /// Directory for step logs and summary.json (default: target/bllvm-ci/runs/<run id>).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Only log step output, do not stream it.
    #[arg(short, long)]
    pub quiet: bool,
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
}

/// `cargo xtask checkout`.
#[derive(Debug, Clone, Args)]
pub struct CheckoutArgs {
    /// Shared flags.
    #[command(flatten)]
    pub common: Common,
    /// Base URL repos are cloned from, as `<base>/<owner>/<name>.git` (a mirror or a dir of bare repos).
    #[arg(long, default_value = "https://github.com", value_name = "URL")]
    pub git_base: String,
    /// Shallow clone depth (default: full history).
    #[arg(long)]
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
    #[arg(long = "manifest", value_name = "PATH", default_value = crate::manifest::DEFAULT_MANIFEST)]
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
    /// Restore an entry into a directory (scripts and tests; prints the outcome as JSON).
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
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// What to measure.
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

/// Benchmarks.
#[derive(Debug, Clone, Subcommand)]
pub enum BenchCmd {
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
        #[arg(long, default_value_t = 3)]
        reps: usize,
        /// Write the figures into this Markdown file (replacing its `<!-- bench:cache -->` section).
        #[arg(long, value_name = "FILE")]
        record: Option<PathBuf>,
    },
}
