//! Wall-clock time as Unix timestamps: the one place the crate reads `SystemTime` for a
//! timestamp that is recorded (cache usage, result records, metrics, unique names).
//!
//! Owns no policy: a clock before 1970 reads as 0 rather than failing, because every
//! caller records the time and none decides a build on it.

use std::time::{SystemTime, UNIX_EPOCH};

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
