//! Layer 1, the bottom: helpers with no knowledge of CI — filesystem trees, hashing,
//! publish-by-rename, timestamps, process spawning with process groups and timeouts.
//! Imports nothing from the crate.

pub mod dirlock;
pub mod disk;
pub mod env;
pub mod exec;
pub mod exit;
pub mod fs;
pub mod http;
pub mod par;
pub mod publish;
pub mod signals;
pub mod time;
pub mod watchdog;
