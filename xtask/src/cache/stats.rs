//! `cache stats`: what the recorded restores and saves (`log/events.jsonl`, one JSON
//! object per line, appended by every restore and save) say about the cache: hit rate per
//! repo and stage, bytes restored and kept out by pruning, time spent, the largest
//! entries, and recommendations.
//!
//! Owns the event record and its aggregation; reading the entries is `Cache::list`'s.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Listed, Policy, Strategy};
use crate::support::fs::human_bytes;

/// One restore or save, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Event {
    /// Format version.
    pub schema_version: u32,
    /// Seconds since the Unix epoch.
    pub unix: u64,
    /// Stage name.
    pub stage: String,
    /// The key asked for.
    pub key: String,
    /// The key without its two hash parts (`<repo>-<variant>` for target keys).
    pub repo: String,
    /// Restores: `hit`, `partial`, `miss`. Saves: `saved`, `unchanged`, `exists`,
    /// `no-space`, `skipped`.
    pub outcome: String,
    /// How the data moved, for hits and saves.
    pub strategy: Option<Strategy>,
    /// Bytes restored or stored.
    pub bytes: u64,
    /// Saves: bytes of the tree before pruning.
    pub raw_bytes: u64,
    /// Wall-clock seconds.
    pub secs: f64,
}

impl Event {
    /// An event for `key` (the repo part is derived from it).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        unix: u64,
        stage: &str,
        key: &str,
        outcome: &str,
        strategy: Option<Strategy>,
        bytes: u64,
        raw_bytes: u64,
        secs: f64,
    ) -> Event {
        let mut parts: Vec<&str> = key.rsplitn(3, '-').collect();
        let repo = if parts.len() == 3 {
            parts.pop().unwrap_or(key).to_owned()
        } else {
            key.to_owned()
        };
        Event {
            schema_version: 1,
            unix,
            stage: stage.to_owned(),
            key: key.to_owned(),
            repo,
            outcome: outcome.to_owned(),
            strategy,
            bytes,
            raw_bytes,
            secs,
        }
    }

    /// Whether its numbers are ones a run can record (sizes at most
    /// [`super::untrusted::MAX_COUNT`], seconds finite and under a year).
    fn in_range(&self) -> bool {
        use super::untrusted::MAX_COUNT;
        self.bytes <= MAX_COUNT
            && self.raw_bytes <= MAX_COUNT
            && self.secs.is_finite()
            && (0.0..=3.2e7).contains(&self.secs)
    }

    fn is_restore(&self) -> bool {
        matches!(self.outcome.as_str(), "hit" | "partial" | "miss")
    }

    fn is_save(&self) -> bool {
        matches!(
            self.outcome.as_str(),
            "saved" | "unchanged" | "exists" | "no-space" | "skipped"
        )
    }
}

/// Size past which `log/events.jsonl` is rotated to `events.1.jsonl`, in bytes.
pub const LOG_ROTATE_BYTES: u64 = 8 << 20;

/// Read the event log of the cache at `root`, the previous generation first. Malformed
/// lines (a writer killed mid-line, bytes that are not UTF-8, numbers out of range) are
/// skipped; a log that is not a regular file, or is far larger than rotation allows, is
/// read as empty.
pub fn read_events(root: &Path) -> Vec<Event> {
    ["log/events.1.jsonl", "log/events.jsonl"]
        .iter()
        .flat_map(|p| {
            super::untrusted::read_bounded(&root.join(p), 8 * LOG_ROTATE_BYTES)
                .unwrap_or_default()
                .split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice::<Event>(l).ok())
                .filter(Event::in_range)
                .collect::<Vec<Event>>()
        })
        .collect()
}

#[derive(Default)]
struct Row {
    hits: u64,
    partials: u64,
    misses: u64,
    bytes: u64,
}

/// The `cache stats` report over `events` and the current `entries`.
pub fn render(events: &[Event], entries: &[Listed], policy: &Policy) -> String {
    let mut s = String::new();
    let mut recs = Vec::new();
    let restores = events.iter().filter(|e| e.is_restore()).count();
    let saves = events.iter().filter(|e| e.is_save()).count();
    let _ = writeln!(s, "{restores} restores and {saves} saves recorded");
    s += &hit_rates(events, &mut recs);
    s += &build_time_saved(events);
    s += &transfers(events, &mut recs);
    s += &largest_entries(entries, policy, &mut recs);
    s += "\nrecommendations:\n";
    if recs.is_empty() {
        s += "  none: the cache is doing its job\n";
    }
    for r in recs {
        let _ = writeln!(s, "  - {r}");
    }
    s
}

/// The table of hits, partial hits and misses per stage and repo; recommends where the
/// hit rate is low or most hits are partial.
fn hit_rates(events: &[Event], recs: &mut Vec<String>) -> String {
    let mut s = String::new();
    let mut rows: BTreeMap<(String, String), Row> = BTreeMap::new();
    for e in events.iter().filter(|e| e.is_restore()) {
        let r = rows.entry((e.stage.clone(), e.repo.clone())).or_default();
        match e.outcome.as_str() {
            "hit" => r.hits += 1,
            "partial" => r.partials += 1,
            _ => r.misses += 1,
        }
        r.bytes = r.bytes.saturating_add(e.bytes);
    }
    let _ = writeln!(
        s,
        "\n{:<9} {:<40} {:>5} {:>7} {:>5} {:>9} {:>10}",
        "stage", "repo", "hits", "partial", "miss", "hit rate", "restored"
    );
    for ((stage, repo), r) in &rows {
        let n = r.hits + r.partials + r.misses;
        let rate = (r.hits + r.partials) as f64 * 100.0 / n.max(1) as f64;
        let _ = writeln!(
            s,
            "{stage:<9} {repo:<40} {:>5} {:>7} {:>5} {:>8.0}% {:>10}",
            r.hits,
            r.partials,
            r.misses,
            rate,
            human_bytes(r.bytes)
        );
        if n >= 4 && rate < 50.0 {
            recs.push(format!(
                "{stage} {repo}: hit rate {rate:.0}% over {n} restores: its key changes on most \
                 runs; check `cargo xtask cache key --repo` inputs (toolchain, features) between runs"
            ));
        }
        if n >= 4 && r.partials * 2 > n {
            recs.push(format!(
                "{stage} {repo}: most hits are partial (the lockfile changes between runs): \
                 expected while dependencies move; pin them to get exact hits"
            ));
        }
    }
    s
}

/// Build time saved: per repo, the steps' mean duration after a miss against after a hit
/// (exact or partial), over the builds `ci` recorded (`log_build`).
fn build_time_saved(events: &[Event]) -> String {
    let mut builds: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for e in events {
        let b = builds.entry(e.repo.as_str());
        match e.outcome.as_str() {
            "build-after-miss" => b.or_default().0.push(e.secs),
            "build-after-hit" | "build-after-partial-hit" => b.or_default().1.push(e.secs),
            _ => {}
        }
    }
    let mean = |v: &[f64]| v.iter().fold(0.0, |a, b| a + b) / v.len().max(1) as f64;
    let mut saved_total = 0.0;
    let mut measured = Vec::new();
    for (repo, (miss, hit)) in &builds {
        if miss.is_empty() || hit.is_empty() {
            continue;
        }
        let per_hit = mean(miss) - mean(hit);
        saved_total += per_hit * hit.len() as f64;
        measured.push(format!(
            "{repo}: {:.1} s after a miss, {:.1} s after a hit",
            mean(miss),
            mean(hit)
        ));
    }
    let mut s = String::new();
    if measured.is_empty() {
        let _ = writeln!(
            s,
            "\nbuild time saved: not measured yet (needs a recorded build after a miss and \
             one after a hit of the same repo)"
        );
    } else {
        let _ = writeln!(s, "\nbuild time saved by hits: {saved_total:.1} s");
        for m in measured {
            let _ = writeln!(s, "  {m}");
        }
    }
    s
}

/// Time and bytes of moved and copied restores, the time moving saved, and pruning per
/// stage; recommends on skipped saves and on copies outnumbering moves.
fn transfers(events: &[Event], recs: &mut Vec<String>) -> String {
    let mut s = String::new();
    let restored = |strategy| -> Vec<&Event> {
        events
            .iter()
            .filter(|e| e.is_restore() && e.strategy == Some(strategy))
            .collect()
    };
    let (moved, copied) = (restored(Strategy::Moved), restored(Strategy::Copied));
    // A fold from +0.0: an empty float `sum()` is -0.0 and would print as "-0.00 s".
    let secs = |v: &[&Event]| v.iter().map(|e| e.secs).fold(0.0, |a, b| a + b);
    let bytes = |v: &[&Event]| v.iter().fold(0u64, |a, e| a.saturating_add(e.bytes));
    let _ = writeln!(
        s,
        "\nrestores: {} moved ({} in {:.2} s), {} copied ({} in {:.2} s)",
        moved.len(),
        human_bytes(bytes(&moved)),
        secs(&moved),
        copied.len(),
        human_bytes(bytes(&copied)),
        secs(&copied)
    );
    // Time saved by moving: what copying the moved bytes would have cost at the copy
    // throughput this cache measured (or 500 MB/s when it never copied).
    let copy_rate = if secs(&copied) > 0.0 && bytes(&copied) > 0 {
        bytes(&copied) as f64 / secs(&copied)
    } else {
        500e6
    };
    let saved_secs = (bytes(&moved) as f64 / copy_rate - secs(&moved)).max(0.0);
    let _ = writeln!(
        s,
        "time saved by moving instead of copying: {saved_secs:.1} s (at {}/s copy throughput)",
        human_bytes(copy_rate as u64)
    );
    s += &pruning(events, recs);
    if copied.len() > moved.len() && !copied.is_empty() {
        recs.push(
            "most restores copied instead of moving: put the cache root on the same filesystem \
             as the checkouts, and avoid running two jobs of the same repo at once"
                .into(),
        );
    }
    s
}

/// Pruning per stage (the registry's "raw" is the whole of `$CARGO_HOME/registry`, which
/// says little about a target dir's pruning); recommends on saves skipped for space.
fn pruning(events: &[Event], recs: &mut Vec<String>) -> String {
    let mut s = String::new();
    let saves: Vec<&Event> = events.iter().filter(|e| e.is_save()).collect();
    let mut pruning: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in saves
        .iter()
        .filter(|e| matches!(e.outcome.as_str(), "saved" | "unchanged"))
    {
        let p = pruning.entry(e.stage.as_str()).or_default();
        p.0 = p.0.saturating_add(e.bytes);
        p.1 = p.1.saturating_add(e.raw_bytes);
    }
    for (stage, (stored, raw)) in pruning.into_iter().filter(|(_, (_, raw))| *raw > 0) {
        let _ = writeln!(
            s,
            "pruning ({stage}): saves kept {} of {} raw ({:.0}%)",
            human_bytes(stored),
            human_bytes(raw),
            stored as f64 * 100.0 / raw as f64
        );
    }
    let no_space = saves.iter().filter(|e| e.outcome == "no-space").count();
    if no_space > 0 {
        recs.push(format!(
            "{no_space} saves were skipped for lack of disk space: free space on the cache's \
             filesystem or move the cache root (--cache-dir)"
        ));
    }
    s
}

/// The entries' total against the budget and the five largest; recommends when the
/// budget is nearly used or most entries were never restored.
fn largest_entries(entries: &[Listed], policy: &Policy, recs: &mut Vec<String>) -> String {
    let mut s = String::new();
    let total = entries
        .iter()
        .fold(0u64, |a, l| a.saturating_add(l.info.bytes));
    let _ = writeln!(
        s,
        "\n{} entries, {} (budget {})",
        entries.len(),
        human_bytes(total),
        human_bytes(policy.max_bytes)
    );
    let mut largest: Vec<&Listed> = entries.iter().collect();
    largest.sort_by_key(|l| std::cmp::Reverse(l.info.bytes));
    for l in largest.iter().take(5) {
        let _ = writeln!(
            s,
            "  {:<9} {:<60} {:>10} {:>5} hits",
            l.info.stage,
            l.info.key,
            human_bytes(l.info.bytes),
            l.usage.hits
        );
    }
    if policy.max_bytes > 0 && total * 10 > policy.max_bytes * 8 {
        recs.push(format!(
            "the cache uses {:.0}% of its byte budget: raise [cache] max-bytes or lower \
             max-entries-per-stage",
            total as f64 * 100.0 / policy.max_bytes as f64
        ));
    }
    let never = entries.iter().filter(|l| l.usage.hits == 0).count();
    if entries.len() >= 4 && never * 2 > entries.len() {
        recs.push(format!(
            "{never} of {} entries were never restored: lower [cache] max-age-days to evict them sooner",
            entries.len()
        ));
    }
    s
}

/// The remote lines of `cache stats`: remote hits, misses and errors (local hits are
/// counted by the local report; a remote hit is also restored locally afterwards),
/// uploads, and transfer rates (bytes over the wire per second).
pub fn render_remote(events: &[Event]) -> String {
    let count = |o: &str| events.iter().filter(|e| e.outcome == o).count();
    let sum = |o: &str| -> (u64, u64, f64) {
        events
            .iter()
            .filter(|e| e.outcome == o)
            .fold((0, 0, 0.0), |(b, r, s), e| {
                (
                    b.saturating_add(e.bytes),
                    r.saturating_add(e.raw_bytes),
                    s + e.secs,
                )
            })
    };
    let (hits, misses, errors) = (
        count("remote-hit"),
        count("remote-miss"),
        count("remote-error"),
    );
    let (ups, exists, up_err) = (
        count("uploaded"),
        count("upload-exists"),
        count("upload-error"),
    );
    if hits + misses + errors + ups + exists + up_err == 0 {
        return String::new();
    }
    let local_hits = events.iter().filter(|e| e.outcome == "hit").count();
    let rate = |(b, _, s): (u64, u64, f64)| {
        if s > 0.0 {
            format!("{}/s", human_bytes((b as f64 / s) as u64))
        } else {
            "-".into()
        }
    };
    let (down, up) = (sum("remote-hit"), sum("uploaded"));
    let mut s = String::from("\nremote cache:\n");
    s += &format!(
        "  restores: {local_hits} local hits; remote: {hits} hits, {misses} misses, {errors} errors\n"
    );
    s += &format!(
        "  downloads: {} over the wire ({} unpacked), {}\n",
        human_bytes(down.0),
        human_bytes(down.1),
        rate(down)
    );
    s += &format!(
        "  uploads: {ups} stored, {exists} already there, {up_err} failed; {} over the wire, {}\n",
        human_bytes(up.0),
        rate(up)
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_part_and_hit_rates() {
        let e = Event::new(
            1,
            "target",
            "bllvm-node-base-0123-4567",
            "hit",
            None,
            1,
            0,
            0.1,
        );
        assert_eq!(e.repo, "bllvm-node-base");
        let mut evs = vec![e];
        for _ in 0..4 {
            evs.push(Event::new(
                1,
                "target",
                "r-base-aa-bb",
                "miss",
                None,
                0,
                0,
                0.1,
            ));
        }
        evs.push(Event::new(
            1,
            "target",
            "r-base-aa-bb",
            "build-after-miss",
            None,
            0,
            0,
            30.0,
        ));
        evs.push(Event::new(
            1,
            "target",
            "r-base-aa-cc",
            "build-after-hit",
            None,
            0,
            0,
            10.0,
        ));
        evs.push(Event::new(
            1,
            "target",
            "r-base-aa-cc",
            "build-after-hit",
            None,
            0,
            0,
            6.0,
        ));
        let out = render(&evs, &[], &Policy::default());
        assert!(out.contains("build time saved by hits: 44.0 s"), "{out}");
        assert!(
            out.contains("r-base: 30.0 s after a miss, 8.0 s after a hit"),
            "{out}"
        );
        assert!(out.contains("bllvm-node-base"), "{out}");
        assert!(out.contains("r-base: hit rate 0% over 4 restores"), "{out}");
    }
}
