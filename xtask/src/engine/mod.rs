//! Layer 3: the chain engine. The manifest and what `cargo metadata` says about each
//! checkout become a graph, fingerprints and cache keys, then a [`plan::Plan`]; the runner
//! ([`run`]) executes it and produces a [`summary::RunSummary`]. May use `support` and
//! `cache`; knows nothing of GitHub, reports or the command line.

pub mod checkout;
pub mod compiler_cache;
pub mod coverage;
pub mod events;
pub mod fingerprint;
pub mod graph;
pub mod manifest;
pub mod matrix;
pub mod metadata;
pub mod patches;
pub mod plan;
pub mod release_build;
pub mod resolution;
pub mod results;
pub mod run;
pub mod step;
pub mod steps;
pub mod summary;
pub mod testing;
pub mod toolchain;
