//! Wall-clock time as Unix timestamps: the one place the crate reads `SystemTime` for a
//! timestamp that is recorded (cache usage, result records, metrics, unique names).
//!
//! Owns no policy: a clock before 1970 reads as 0 rather than failing, because every
//! caller records the time and none decides a build on it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// When the process started ([`mark_process_start`]).
static PROCESS_START: OnceLock<Instant> = OnceLock::new();

/// Whether a run already measured itself from [`PROCESS_START`].
static START_TAKEN: AtomicBool = AtomicBool::new(false);

/// Note now as the process's start (the first call counts; `commands::main` makes it
/// first thing).
pub fn mark_process_start() {
    PROCESS_START.get_or_init(Instant::now);
}

/// Where a run's wall time starts: the process's start for the first run of the process
/// (so `ci`'s time covers its preflight and start-up too), now for any later one (each
/// matrix cell measures itself).
pub fn run_start() -> Instant {
    match PROCESS_START.get() {
        Some(t) if !START_TAKEN.swap(true, Ordering::Relaxed) => *t,
        _ => Instant::now(),
    }
}

/// Seconds since the Unix epoch (0 when the clock is before it).
pub fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Nanoseconds since the Unix epoch (0 when the clock is before it), for names and seeds
/// that must differ between two calls in the same second (only the `dev` commands need it).
#[cfg(feature = "dev")]
pub fn now_unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
