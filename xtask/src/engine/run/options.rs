//! The options of one run (what `ci`'s flags and the event decided).

use std::path::PathBuf;

use crate::support::exec::Echo;

/// Options of one run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Keep running repos that do not depend on a failed one.
    pub keep_going: bool,
    /// Save caches after the run (off for untrusted events).
    pub save: bool,
    /// Restore caches before the run.
    pub restore: bool,
    /// Where step logs and `summary.json` go.
    pub run_dir: PathBuf,
    /// Stream step output to stdout.
    pub echo: Echo,
    /// Repos of one level run at once, at most this many (`--jobs`; 1 = one at a time).
    pub jobs: usize,
    /// `--release` (and `--verify-deterministic`): build and collect release artifacts
    /// after a repo's steps (see [`crate::engine::release_build`]); `None` for an ordinary run.
    pub release: Option<crate::engine::release_build::ReleaseOptions>,
    /// The shared compiler cache's variables for every cargo step (`RUSTC_WRAPPER`,
    /// `SCCACHE_*`; see [`crate::engine::compiler_cache::apply`]); empty without one. Set
    /// by the job once the server runs; release builds never get them.
    pub compiler_env: std::collections::BTreeMap<String, String>,
}
