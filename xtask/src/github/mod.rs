//! Layer 4: everything GitHub — the event a run was started by, `repository_dispatch`
//! and the PR comment (the only code that talks to the GitHub API, in [`dispatch`]),
//! downstream propagation, following a chain's runs, release sets and their walk in
//! order, workflow generation, and the `actions/cache` key of the `hosted` runner kind.

pub mod actions_cache;
pub mod chain;
pub mod crates_index;
pub mod dedupe;
pub mod dispatch;
pub mod events;
pub mod follow;
pub mod propagate;
pub mod release;
pub mod walk;
pub mod workflows;
