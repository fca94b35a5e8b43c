//! Retention and the disk-space guard, as pure functions over entry usage records, so the
//! rules are tested with an injected clock and injected filesystem numbers.
//!
//! Entries age by *last use* (the last restore or save that touched them, recorded in
//! `usage/<stage>/<key>.json`), not by file mtime: cargo and `cp` both touch mtimes, and
//! an entry restored every day is valuable however old its files are. This is
//! actions/cache's rule ("entries not accessed in over 7 days are removed") with
//! rust-cache's default budget in mind.

use serde::Serialize;

use super::settings::CacheSettings;

/// Retention and guard settings (from the manifest's `[cache]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// At most this many entries per stage, the most recently used kept.
    pub max_entries_per_stage: usize,
    /// Entries unused for more than this many days are evicted (0 = no age limit).
    pub max_age_days: u64,
    /// The whole cache root stays under this many bytes (least recently used evicted
    /// first; 0 = no budget).
    pub max_bytes: u64,
    /// Evict while the cache's filesystem is used above this percentage (100 = never).
    pub disk_max_used_percent: u8,
    /// Evict while the cache's filesystem has less than this many bytes available.
    pub disk_min_free_bytes: u64,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy::from(&CacheSettings::default())
    }
}

impl From<&CacheSettings> for Policy {
    fn from(s: &CacheSettings) -> Policy {
        Policy {
            max_entries_per_stage: s.max_entries_per_stage,
            max_age_days: s.max_age_days,
            max_bytes: s.max_bytes,
            disk_max_used_percent: s.disk_max_used_percent,
            disk_min_free_bytes: s.disk_min_free_bytes,
        }
    }
}

/// One entry as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryUse {
    /// Stage name.
    pub stage: String,
    /// Key.
    pub key: String,
    /// Bytes of the entry's data.
    pub bytes: u64,
    /// Seconds since the Unix epoch of the last restore or save that used it.
    pub last_used_unix: u64,
    /// Held by a job right now (restoring, or moved out): never evicted.
    pub leased: bool,
}

/// An entry retention removes, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Eviction {
    /// Stage name.
    pub stage: String,
    /// Key.
    pub key: String,
    /// Bytes freed.
    pub bytes: u64,
    /// `over N entries`, `unused for D days`, `over the byte budget`.
    pub reason: String,
}

/// Which entries the policy removes at time `now_unix`: per stage, those beyond the
/// `max_entries_per_stage` most recently used and those unused for over `max_age_days`;
/// then, least recently used first, until the rest fits `max_bytes`. Leased entries are
/// never chosen, but their bytes count.
pub fn retention_victims(entries: &[EntryUse], p: &Policy, now_unix: u64) -> Vec<Eviction> {
    let mut sorted: Vec<&EntryUse> = entries.iter().collect();
    // Most recently used first; ties by key so the result is deterministic.
    sorted.sort_by(|a, b| {
        b.last_used_unix
            .cmp(&a.last_used_unix)
            .then_with(|| a.key.cmp(&b.key))
    });
    let mut out = Vec::new();
    let mut kept = Vec::new();
    let mut per_stage: std::collections::BTreeMap<&str, usize> = Default::default();
    for e in sorted {
        let n = per_stage.entry(e.stage.as_str()).or_default();
        *n += 1;
        let age_days = now_unix.saturating_sub(e.last_used_unix) / 86_400;
        let reason = if e.leased {
            None
        } else if *n > p.max_entries_per_stage {
            Some(format!(
                "over {} entries in stage {}",
                p.max_entries_per_stage, e.stage
            ))
        } else if p.max_age_days > 0 && age_days >= p.max_age_days {
            Some(format!(
                "unused for {age_days} days (limit {})",
                p.max_age_days
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => out.push(Eviction {
                stage: e.stage.clone(),
                key: e.key.clone(),
                bytes: e.bytes,
                reason,
            }),
            None => kept.push(e),
        }
    }
    if p.max_bytes > 0 {
        let mut total: u64 = kept.iter().map(|e| e.bytes).sum();
        for e in kept.iter().rev() {
            if total <= p.max_bytes {
                break;
            }
            if e.leased {
                continue;
            }
            total -= e.bytes;
            out.push(Eviction {
                stage: e.stage.clone(),
                key: e.key.clone(),
                bytes: e.bytes,
                reason: format!(
                    "over the byte budget of {}",
                    crate::support::fs::human_bytes(p.max_bytes)
                ),
            });
        }
    }
    out
}

/// The order in which the disk guard evicts `entries`: least recently used first, ties
/// by key (indices into `entries`). Leased entries are the caller's to leave out.
pub fn guard_order(entries: &[EntryUse]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..entries.len()).collect();
    order.sort_by(|&a, &b| {
        let (x, y) = (&entries[a], &entries[b]);
        x.last_used_unix
            .cmp(&y.last_used_unix)
            .then_with(|| x.key.cmp(&y.key))
    });
    order
}

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    /// Bytes that count for "percent used", as `df` counts them: used plus available to
    /// unprivileged users (blocks reserved for root are left out, so the percentage is
    /// the one `df` prints and the seeds' scripts read).
    pub total: u64,
    /// Bytes available to unprivileged users.
    pub available: u64,
}

impl FsUsage {
    /// The filesystem holding `path`, from `statvfs(3)` through fs4.
    ///
    /// Errors: `statvfs` fails (the path does not exist).
    pub fn of(path: &std::path::Path) -> std::io::Result<FsUsage> {
        let s = fs4::statvfs(path)?;
        // df's Use%: used / (used + available), with used = total - free. Taking
        // statvfs's raw total instead counts root's reserved blocks as used, which read
        // 79% on a disk `df` shows 41% full and made the 80% guard refuse saves.
        let used = s.total_space().saturating_sub(s.free_space());
        Ok(FsUsage {
            total: used + s.available_space(),
            available: s.available_space(),
        })
    }

    /// Why the filesystem would be too full after writing `extra` more bytes, or `None`
    /// when it stays within the policy.
    pub fn too_full(&self, p: &Policy, extra: u64) -> Option<String> {
        let avail = self.available.saturating_sub(extra);
        let used = self.total.saturating_sub(avail);
        let pct = if self.total == 0 {
            0.0
        } else {
            used as f64 * 100.0 / self.total as f64
        };
        if pct > f64::from(p.disk_max_used_percent) {
            Some(format!(
                "filesystem {pct:.0}% used (limit {}%)",
                p.disk_max_used_percent
            ))
        } else if avail < p.disk_min_free_bytes {
            Some(format!(
                "only {} free (floor {})",
                crate::support::fs::human_bytes(avail),
                crate::support::fs::human_bytes(p.disk_min_free_bytes)
            ))
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn e(stage: &str, key: &str, bytes: u64, last: u64) -> EntryUse {
        EntryUse {
            stage: stage.into(),
            key: key.into(),
            bytes,
            last_used_unix: last,
            leased: false,
        }
    }

    #[test]
    fn keeps_exactly_what_the_policy_says() {
        let now = 100 * DAY;
        let p = Policy {
            max_entries_per_stage: 2,
            max_age_days: 7,
            max_bytes: 250,
            disk_max_used_percent: 80,
            disk_min_free_bytes: 0,
        };
        let mut es = vec![
            e("target", "t1", 100, now - DAY),
            e("target", "t2", 100, now - 2 * DAY),
            e("target", "t3", 100, now - 3 * DAY),
            e("registry", "r-old", 10, now - 8 * DAY),
            e("registry", "r-new", 10, now),
            e("git", "g", 40, now - 6 * DAY),
        ];
        let v = retention_victims(&es, &p, now);
        let keys: Vec<&str> = v.iter().map(|x| x.key.as_str()).collect();
        // t3: third in its stage; r-old: 8 days unused; then kept = t1 t2 r-new g = 250.
        assert_eq!(keys, ["t3", "r-old"]);
        // A leased entry is never evicted, even when it is the oldest.
        es[2].leased = true;
        let v = retention_victims(&es, &p, now);
        let keys: Vec<&str> = v.iter().map(|x| x.key.as_str()).collect();
        // t3 stays (leased) and counts: 350 > 250, so the least recently used
        // unleased entries go until it fits: g (40) then t2 (100) → 210.
        assert_eq!(keys, ["r-old", "g", "t2"]);
    }

    #[test]
    fn too_full_by_percent_and_floor() {
        let p = Policy {
            disk_max_used_percent: 80,
            disk_min_free_bytes: 100,
            ..Policy::default()
        };
        let fs = FsUsage {
            total: 1000,
            available: 300,
        };
        assert!(fs.too_full(&p, 0).is_none());
        assert!(fs.too_full(&p, 150).unwrap().contains("85%"));
        let small = FsUsage {
            total: 100_000,
            available: 50,
        };
        assert!(small
            .too_full(
                &Policy {
                    disk_max_used_percent: 100,
                    ..p
                },
                0
            )
            .unwrap()
            .contains("free"));
    }
}
