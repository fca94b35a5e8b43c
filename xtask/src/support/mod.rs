//! Layer 1, the bottom: helpers with no knowledge of CI — filesystem trees, hashing,
//! process spawning with process groups and timeouts. Imports nothing from the crate.

pub mod dirlock;
pub mod exec;
pub mod fs;
pub mod signals;
pub mod watchdog;
