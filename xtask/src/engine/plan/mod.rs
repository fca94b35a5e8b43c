//! Plan, then run: resolve the manifest and the checkouts into a [`Plan`] — run order,
//! levels, edges with their origin, cache keys and whether each would hit — without
//! running any step. `cargo xtask plan` prints it; `cargo xtask ci` executes it.
//!
//! Resolving does run read-only helpers (`rustc -vV`, `cargo metadata`, and
//! `cargo generate-lockfile` for repos that commit no lockfile), in parallel, one thread
//! per repo. In registry mode it also holds the stripped manifests ([`Resolved::guards`])
//! until the caller is done.

mod affected;
mod keys;
mod probe;
mod render;
mod resolve;
mod types;

pub use affected::{check_ref as check_affected_ref, parse_range as parse_affected};
pub use keys::ChainKeys;
#[cfg(test)]
pub use keys::{target_key, TargetInputs};
pub use render::explain;
pub use resolve::{resolve, resolve_with};
// Kept here for the callers that prepare a one-off command (`cache warm`, `bench noop`).
pub use crate::engine::steps::step_args;
pub use types::*;
