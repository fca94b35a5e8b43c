//! The bllvm chain CI engine as a library; `main.rs` only parses the command line and calls
//! [`commands::run`].
//!
//! Layers, each a folder, each importing only the layers below it (a tidy test,
//! `xtask/tests/it/tidy.rs`, parses the `crate::` paths and fails on an upward import or an
//! import cycle; ARCHITECTURE.md draws the map):
//!
//! 1. [`support`]: filesystem, hashing, time and process helpers. Knows nothing of CI.
//! 2. [`cache`]: the cache engine and its storage tiers, with its own settings types.
//! 3. [`engine`]: manifest, metadata, graph, fingerprints, result records, the plan and the
//!    runner that executes it.
//! 4. [`github`]: event context, dispatch, propagation, release sets, workflow generation.
//! 5. [`report`]: what a finished or running job is turned into: console text, GitHub
//!    Actions annotations and step summary, metrics, notifications, error hints, trends.
//! 6. [`job`]: one CI job end to end (preflight, resolve, restore, run, report).
//! 7. [`dev`]: benchmarks, stress scenarios, the demo, property tests.
//! 8. [`commands`] and [`flags`]: one thin module per subcommand, and the command line.

pub mod flags;

pub mod commands;

mod cache;
mod dev;
mod engine;
mod github;
mod job;
mod report;
mod support;
