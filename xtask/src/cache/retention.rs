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
        // In u128: sizes come from records read back from disk, and their sum must
        // neither overflow nor saturate (a saturated sum would stop evicting too soon).
        let mut total: u128 = kept.iter().map(|e| u128::from(e.bytes)).sum();
        for e in kept.iter().rev() {
            if total <= u128::from(p.max_bytes) {
                break;
            }
            if e.leased {
                continue;
            }
            total -= u128::from(e.bytes);
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
    /// when it stays within the policy. The limits are inclusive: exactly
    /// `disk_max_used_percent` used, or exactly `disk_min_free_bytes` free, is within
    /// them. The percentage is compared in integers (`used × 100 > limit × total`), so
    /// the answer at the limit does not depend on float rounding.
    pub fn too_full(&self, p: &Policy, extra: u64) -> Option<String> {
        let avail = self.available.saturating_sub(extra);
        let used = self.total.saturating_sub(avail);
        let over =
            u128::from(used) * 100 > u128::from(p.disk_max_used_percent) * u128::from(self.total);
        if over {
            let pct = used as f64 * 100.0 / self.total.max(1) as f64;
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

/// Properties of order and of exact limits (issue 15): what retention and the guard
/// evict is always the least recently used, and the guard's limits are inclusive to the
/// byte.
#[cfg(test)]
mod props {
    use proptest::prelude::*;

    use super::*;

    const DAY: u64 = 86_400;
    const NOW: u64 = 1_000 * DAY;

    fn uses() -> impl Strategy<Value = Vec<EntryUse>> {
        proptest::collection::vec(
            (
                prop_oneof![Just("registry"), Just("git"), Just("target")],
                0u64..(1 << 20),
                // Few distinct ages, so ties (broken by key) are common.
                0u64..12,
                proptest::bool::weighted(0.15),
            ),
            0..40,
        )
        .prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, (stage, bytes, age, leased))| EntryUse {
                    stage: stage.into(),
                    key: format!("k{:02}", (i * 7) % 41),
                    bytes,
                    last_used_unix: NOW - age * DAY,
                    leased,
                })
                .collect()
        })
    }

    /// Least recently used first, exactly as retention breaks ties (it keeps the most
    /// recently used first, ties by key ascending).
    fn lru(entries: &[&EntryUse]) -> Vec<String> {
        let mut v: Vec<&EntryUse> = entries.to_vec();
        v.sort_by(|a, b| {
            a.last_used_unix
                .cmp(&b.last_used_unix)
                .then_with(|| b.key.cmp(&a.key))
        });
        v.into_iter().map(|e| e.key.clone()).collect()
    }

    fn unique(entries: &[EntryUse]) -> bool {
        let keys: std::collections::BTreeSet<&str> =
            entries.iter().map(|e| e.key.as_str()).collect();
        keys.len() == entries.len()
    }

    proptest! {
        /// Within each stage, the evicted entries are a prefix of its unleased entries
        /// in least-recently-used order: no entry goes while an older one stays.
        #[test]
        fn evicted_set_is_a_prefix_of_lru_order_per_stage(
            entries in uses(),
            n in 1usize..8,
            days in 0u64..10,
            budget in prop_oneof![Just(0u64), 1u64..(8 << 20)],
        ) {
            prop_assume!(unique(&entries));
            let p = Policy { max_entries_per_stage: n, max_age_days: days, max_bytes: budget, ..Policy::default() };
            let victims: Vec<String> = retention_victims(&entries, &p, NOW).into_iter().map(|v| v.key).collect();
            for stage in ["registry", "git", "target"] {
                let unleased: Vec<&EntryUse> = entries.iter().filter(|e| e.stage == stage && !e.leased).collect();
                let order = lru(&unleased);
                let evicted = order.iter().filter(|k| victims.contains(k)).count();
                prop_assert_eq!(
                    &order[..evicted].iter().filter(|k| victims.contains(k)).count(),
                    &evicted,
                    "stage {}: evicted {:?} is not a prefix of {:?}", stage, victims, order
                );
            }
        }

        /// Without a per-stage limit, the evicted set is a prefix of the global
        /// least-recently-used order (age and byte budget both take the oldest first).
        #[test]
        fn evicted_set_is_a_prefix_of_global_lru_order(
            entries in uses(),
            days in 0u64..10,
            budget in prop_oneof![Just(0u64), 1u64..(8 << 20)],
        ) {
            prop_assume!(unique(&entries));
            let p = Policy { max_entries_per_stage: usize::MAX, max_age_days: days, max_bytes: budget, ..Policy::default() };
            let victims: Vec<String> = retention_victims(&entries, &p, NOW).into_iter().map(|v| v.key).collect();
            let unleased: Vec<&EntryUse> = entries.iter().filter(|e| !e.leased).collect();
            let order = lru(&unleased);
            let mut sorted_victims = victims.clone();
            sorted_victims.sort();
            let mut prefix = order[..victims.len()].to_vec();
            prefix.sort();
            prop_assert_eq!(sorted_victims, prefix);
        }

        /// The guard's order is the least-recently-used order, ties by key.
        #[test]
        fn guard_order_is_least_recently_used_first(entries in uses()) {
            let order = guard_order(&entries);
            for w in order.windows(2) {
                let (a, b) = (&entries[w[0]], &entries[w[1]]);
                prop_assert!((a.last_used_unix, &a.key) <= (b.last_used_unix, &b.key));
            }
            let mut seen = order.clone();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..entries.len()).collect::<Vec<_>>());
        }

        /// Too full by percentage exactly when used × 100 > limit × total, whatever the
        /// sizes (no float rounding at the limit), and by the floor exactly when fewer
        /// bytes than it stay free.
        #[test]
        fn the_guard_decides_exactly_at_its_limits(
            total in 0u64..u64::MAX,
            avail_frac in 0u64..=1000,
            extra in prop_oneof![Just(0u64), 0u64..u64::MAX],
            pct in 0u8..=100,
            floor in prop_oneof![Just(0u64), 0u64..u64::MAX],
        ) {
            let available = ((u128::from(total) * u128::from(avail_frac)) / 1000) as u64;
            let fs = FsUsage { total, available };
            let p = Policy { disk_max_used_percent: pct, disk_min_free_bytes: floor, ..Policy::default() };
            let avail = available.saturating_sub(extra);
            let used = total - avail;
            let want = u128::from(used) * 100 > u128::from(pct) * u128::from(total) || avail < floor;
            prop_assert_eq!(fs.too_full(&p, extra).is_some(), want);
        }
    }

    #[test]
    fn the_guard_at_just_below_and_just_above_its_limits() {
        let p = Policy {
            disk_max_used_percent: 80,
            disk_min_free_bytes: 0,
            ..Policy::default()
        };
        // 80% used exactly is within the limit; one byte more is over.
        let at = FsUsage {
            total: 1000,
            available: 200,
        };
        assert_eq!(at.too_full(&p, 0), None);
        assert!(at.too_full(&p, 1).is_some());
        assert_eq!(
            FsUsage {
                total: 1000,
                available: 201
            }
            .too_full(&p, 0),
            None
        );
        assert!(FsUsage {
            total: 1000,
            available: 199
        }
        .too_full(&p, 0)
        .is_some());
        // On a large disk a float would round 80% + 1 byte down to 80%: integers do not.
        let big = FsUsage {
            total: 5 << 60,
            available: 1 << 60,
        };
        assert_eq!(big.too_full(&p, 0), None);
        assert!(big.too_full(&p, 1).is_some());
        // The floor: exactly the floor free is enough, one byte less is not.
        let f = Policy {
            disk_max_used_percent: 100,
            disk_min_free_bytes: 500,
            ..Policy::default()
        };
        let fs = FsUsage {
            total: 10_000,
            available: 600,
        };
        assert_eq!(fs.too_full(&f, 100), None);
        assert!(fs.too_full(&f, 101).unwrap().contains("free"));
        assert_eq!(
            FsUsage {
                total: 10_000,
                available: 501
            }
            .too_full(&f, 0),
            None
        );
        assert_eq!(
            FsUsage {
                total: 10_000,
                available: 500
            }
            .too_full(&f, 0),
            None
        );
        assert!(FsUsage {
            total: 10_000,
            available: 499
        }
        .too_full(&f, 0)
        .is_some());
        // 100% never trips by percentage, 0% trips on any byte used.
        let full = FsUsage {
            total: 10,
            available: 0,
        };
        assert_eq!(full.too_full(&f, 0).map(|w| w.contains('%')), Some(false));
        let zero = Policy {
            disk_max_used_percent: 0,
            disk_min_free_bytes: 0,
            ..Policy::default()
        };
        assert_eq!(
            FsUsage {
                total: 10,
                available: 10
            }
            .too_full(&zero, 0),
            None
        );
        assert!(FsUsage {
            total: 10,
            available: 9
        }
        .too_full(&zero, 0)
        .is_some());
    }

    #[test]
    fn sizes_read_back_never_overflow() {
        let huge = |k: &str, last| EntryUse {
            stage: "target".into(),
            key: k.into(),
            bytes: u64::MAX,
            last_used_unix: last,
            leased: false,
        };
        let p = Policy {
            max_entries_per_stage: 10,
            max_age_days: 0,
            max_bytes: 1,
            ..Policy::default()
        };
        let v = retention_victims(&[huge("a", 1), huge("b", 2), huge("c", 3)], &p, NOW);
        let keys: Vec<&str> = v.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }
}
