//! Property tests (proptest) of the pure parts the reliability suite leans on (issue 8):
//!
//! - [`crate::engine::graph::Graph::levels`]: for random DAGs every edge goes from a lower level
//!   to a higher one, every node appears exactly once, levels are sorted and each node
//!   sits at its longest-path depth; for graphs with a planted cycle an error is always
//!   returned, and the cycle it names is a real cycle of the graph.
//! - [`crate::cache::key`] and [`crate::engine::plan::target_key`]: keys are stable under the
//!   reorderings that must not matter (feature order, duplicate features) and change for
//!   every input that must matter (each env input, the lockfile, the stage).
//! - [`crate::cache::retention::retention_victims`]: what it keeps never exceeds its
//!   limits (entries per stage, age, bytes) unless only leased entries are left, it never
//!   evicts a leased entry, and it evicts nothing when every limit is already met.
//!
//! Only compiled for `cargo test`; case counts are proptest's default (256 per property).

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use crate::cache::key::{CacheKey, Stage};
use crate::cache::retention::{retention_victims, EntryUse, Policy};
use crate::engine::graph::{EdgeOrigin, Graph};
use crate::engine::manifest::{DepsMode, Manifest};

fn name(i: usize) -> String {
    format!("r{i:02}")
}

/// A random DAG: `n` nodes, edges only from a lower index to a higher one (so acyclic),
/// node names shuffled by a permutation so index order is not name order.
fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<usize>)> {
    (1usize..14).prop_flat_map(|n| {
        let edges = proptest::collection::vec((0..n, 0..n), 0..n * 3).prop_map(|es| {
            es.into_iter()
                .filter(|(a, b)| a != b)
                .map(|(a, b)| (a.min(b), a.max(b)))
                .collect::<Vec<_>>()
        });
        let perm = Just((0..n).collect::<Vec<usize>>()).prop_shuffle();
        (Just(n), edges, perm)
    })
}

fn build(n: usize, edges: &[(usize, usize)], perm: &[usize]) -> Graph {
    let mut g = Graph::new((0..n).map(|i| name(perm[i])));
    for &(a, b) in edges {
        g.add_edge(&name(perm[a]), &name(perm[b]), EdgeOrigin::Normal);
    }
    g
}

/// Longest path (in edges) from any source to each node, by index (edges go up in index).
fn depths(n: usize, edges: &[(usize, usize)]) -> Vec<usize> {
    let mut d = vec![0usize; n];
    for b in 0..n {
        for &(x, y) in edges {
            if y == b {
                d[b] = d[b].max(d[x] + 1);
            }
        }
    }
    d
}

proptest! {
    #[test]
    fn levels_are_a_valid_topological_layering((n, edges, perm) in dag()) {
        let g = build(n, &edges, &perm);
        let levels = g.levels().expect("a DAG has no cycle");
        let mut at = BTreeMap::new();
        for (l, level) in levels.iter().enumerate() {
            prop_assert!(!level.is_empty());
            let mut sorted = level.clone();
            sorted.sort();
            prop_assert_eq!(&sorted, level, "a level is sorted by name");
            for r in level {
                prop_assert!(at.insert(r.clone(), l).is_none(), "{} appears twice", r);
            }
        }
        prop_assert_eq!(at.len(), n, "every node is placed");
        let d = depths(n, &edges);
        for i in 0..n {
            prop_assert_eq!(at[&name(perm[i])], d[i], "longest-path level of {}", name(perm[i]));
        }
        for &(a, b) in &edges {
            prop_assert!(at[&name(perm[a])] < at[&name(perm[b])]);
        }
        let order = g.order().unwrap();
        prop_assert_eq!(order.len(), n);
    }

    #[test]
    fn a_planted_cycle_is_always_found_and_is_real(
        (n, edges, perm) in dag(),
        cyc in proptest::collection::vec(0usize..14, 1..6),
    ) {
        // Plant a cycle through distinct nodes (a self-loop is ignored by design, so at
        // least two), closing it with a back edge.
        let mut nodes: Vec<usize> = Vec::new();
        for c in cyc.into_iter().map(|c| c % n) {
            if !nodes.contains(&c) {
                nodes.push(c);
            }
        }
        prop_assume!(nodes.len() >= 2);
        let mut g = build(n, &edges, &perm);
        for w in nodes.windows(2) {
            g.add_edge(&name(perm[w[0]]), &name(perm[w[1]]), EdgeOrigin::After);
        }
        g.add_edge(&name(perm[*nodes.last().unwrap()]), &name(perm[nodes[0]]), EdgeOrigin::After);
        let err = g.levels().expect_err("a graph with a cycle has no order");
        let cycle = err.0;
        prop_assert!(cycle.len() >= 3, "closed cycle of at least two nodes: {:?}", cycle);
        prop_assert_eq!(cycle.first(), cycle.last());
        let edges: BTreeSet<(String, String)> =
            g.edges().map(|(a, b, _)| (a.to_owned(), b.to_owned())).collect();
        for w in cycle.windows(2) {
            prop_assert!(
                edges.contains(&(w[0].clone(), w[1].clone())),
                "{} → {} in {:?} is not an edge", w[0], w[1], cycle
            );
        }
        prop_assert!(err_text_names(&cycle));
    }
}

fn err_text_names(cycle: &[String]) -> bool {
    let text = crate::engine::graph::Cycle(cycle.to_vec()).to_string();
    cycle.iter().all(|c| text.contains(c.as_str()))
}

// ---------------------------------------------------------------------------------------
// keys

fn inputs() -> impl Strategy<Value = Vec<(String, String)>> {
    proptest::collection::btree_map("[a-z]{1,6}", "[ -~]{0,12}", 1..6)
        .prop_map(|m| m.into_iter().collect())
}

/// A one-repo manifest, parsed as `ci` reads it, so the repo has every field it needs.
/// The target key with an empty build environment and a fixed cargo home.
fn target_key(
    repo: &crate::engine::manifest::Repo,
    variant: &str,
    features: &[String],
    profile: &str,
    deps: DepsMode,
    rustc: &str,
    lock: &str,
) -> CacheKey {
    crate::engine::plan::target_key(&crate::engine::plan::TargetInputs {
        repo,
        variant,
        features,
        profile,
        deps,
        rustc,
        cargo_home: std::path::Path::new("/cargo-home"),
        build: &crate::engine::fingerprint::BuildEnv::default(),
        lock_sha256: lock,
    })
}

fn one_repo(name: &str) -> crate::engine::manifest::Repo {
    let text = format!("[[repo]]\nname = \"{name}\"\ngithub = \"o/{name}\"\n");
    Manifest::parse(&text, std::path::Path::new("chain.toml"))
        .expect("a minimal manifest parses")
        .repos
        .remove(0)
}

proptest! {
    #[test]
    fn a_key_changes_with_every_input_and_only_with_them(
        env in inputs(),
        lock in "[0-9a-f]{64}",
        other_lock in "[0-9a-f]{64}",
        which in 0usize..6,
        extra in "[ -~]{1,4}",
    ) {
        let k = CacheKey::derive(Stage::Target, "r-base", env.clone(), &lock);
        prop_assert_eq!(&k, &CacheKey::derive(Stage::Target, "r-base", env.clone(), &lock));
        // Each env input's value matters.
        let i = which % env.len();
        let mut changed = env.clone();
        changed[i].1.push_str(&extra);
        let k2 = CacheKey::derive(Stage::Target, "r-base", changed, &lock);
        prop_assert_ne!(&k.key, &k2.key);
        prop_assert_ne!(k.restore_prefix(), k2.restore_prefix());
        // Moving a character from one value to the next name must matter too (no
        // ambiguity by concatenation).
        let mut shifted = env.clone();
        if let Some(c) = shifted[i].1.pop() {
            shifted[i].0.insert(0, c);
            prop_assert_ne!(&k.key, &CacheKey::derive(Stage::Target, "r-base", shifted, &lock).key);
        }
        // The lockfile changes the key but not its restore prefix.
        if other_lock[..16] != lock[..16] {
            let k3 = CacheKey::derive(Stage::Target, "r-base", env.clone(), &other_lock);
            prop_assert_ne!(&k.key, &k3.key);
            prop_assert_eq!(k.restore_prefix(), k3.restore_prefix());
        }
        // So does the stage.
        prop_assert_ne!(&k.key, &CacheKey::derive(Stage::Git, "r-base", env, &lock).key);
    }

    #[test]
    fn target_keys_ignore_feature_order_and_duplicates_but_not_features(
        features in proptest::collection::vec("[a-z]{1,5}", 0..6),
        seed in any::<u64>(),
        newfeat in "[A-Z]{1,3}",
        profile in prop_oneof![Just("dev"), Just("release")],
        rustc in "rustc 1\\.[0-9]{2}\\.0",
        lock in "[0-9a-f]{64}",
    ) {
        let repo = one_repo("node");
        let key = |f: &[String], p: &str, d: DepsMode, r: &str, l: &str, v: &str| {
            target_key(&repo, v, f, p, d, r, l)
        };
        let base = key(&features, profile, DepsMode::Patched, &rustc, &lock, "base");
        // Shuffle and duplicate: the same key.
        let mut shuffled = features.clone();
        let mut rng = crate::dev::rng::Rng::new(seed);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        if let Some(f) = features.first() {
            shuffled.push(f.clone());
        }
        prop_assert_eq!(&base.key, &key(&shuffled, profile, DepsMode::Patched, &rustc, &lock, "base").key);
        // Every input that matters changes it.
        let mut more = features.clone();
        more.push(newfeat);
        let other_profile = if profile == "dev" { "release" } else { "dev" };
        for (what, k) in [
            ("features", key(&more, profile, DepsMode::Patched, &rustc, &lock, "base")),
            ("profile", key(&features, other_profile, DepsMode::Patched, &rustc, &lock, "base")),
            ("deps", key(&features, profile, DepsMode::Registry, &rustc, &lock, "base")),
            ("rustc", key(&features, profile, DepsMode::Patched, &format!("{rustc}-nightly"), &lock, "base")),
            ("variant", key(&features, profile, DepsMode::Patched, &rustc, &lock, "experimental")),
        ] {
            prop_assert_ne!(&base.key, &k.key, "{} must change the key", what);
        }
        let mut other_lock = lock.clone();
        other_lock.replace_range(0..1, if lock.starts_with('0') { "1" } else { "0" });
        prop_assert_ne!(&base.key, &key(&features, profile, DepsMode::Patched, &rustc, &other_lock, "base").key);
        let other_repo = one_repo("sdk");
        prop_assert_ne!(
            &base.key,
            &target_key(&other_repo, "base", &features, profile, DepsMode::Patched, &rustc, &lock).key
        );
    }
}

// ---------------------------------------------------------------------------------------
// retention

const DAY: u64 = 86_400;
const NOW: u64 = 1_000 * DAY;

fn uses() -> impl Strategy<Value = Vec<EntryUse>> {
    proptest::collection::vec(
        (
            prop_oneof![Just("registry"), Just("git"), Just("target")],
            0u64..(1 << 20),
            0u64..(20 * DAY),
            proptest::bool::weighted(0.15),
        ),
        0..40,
    )
    .prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (stage, bytes, age, leased))| EntryUse {
                stage: stage.into(),
                key: format!("k{i:02}"),
                bytes,
                last_used_unix: NOW - age,
                leased,
            })
            .collect()
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        1usize..8,
        0u64..10,
        prop_oneof![Just(0u64), 1u64..(8 << 20)],
    )
        .prop_map(|(n, days, bytes)| Policy {
            max_entries_per_stage: n,
            max_age_days: days,
            max_bytes: bytes,
            disk_max_used_percent: 100,
            disk_min_free_bytes: 0,
        })
}

proptest! {
    #[test]
    fn retention_never_keeps_more_than_its_limits(entries in uses(), p in policy()) {
        let victims = retention_victims(&entries, &p, NOW);
        let evicted: BTreeSet<&str> = victims.iter().map(|v| v.key.as_str()).collect();
        prop_assert_eq!(evicted.len(), victims.len(), "each entry is evicted at most once");
        let kept: Vec<&EntryUse> = entries.iter().filter(|e| !evicted.contains(e.key.as_str())).collect();
        for v in &victims {
            let e = entries.iter().find(|e| e.key == v.key).unwrap();
            prop_assert!(!e.leased, "leased entry {} evicted", e.key);
            prop_assert_eq!(v.bytes, e.bytes);
        }
        for stage in ["registry", "git", "target"] {
            let in_stage: Vec<&&EntryUse> = kept.iter().filter(|e| e.stage == stage).collect();
            let unleased = in_stage.iter().filter(|e| !e.leased).count();
            let leased = in_stage.len() - unleased;
            // Leased entries are never evicted (they may push the total over), but the
            // unleased entries kept never exceed the limit.
            prop_assert!(
                unleased <= p.max_entries_per_stage,
                "stage {}: {} unleased + {} leased kept, limit {}",
                stage, unleased, leased, p.max_entries_per_stage
            );
            if leased == 0 {
                prop_assert!(in_stage.len() <= p.max_entries_per_stage);
            }
        }
        if p.max_age_days > 0 {
            for e in kept.iter().filter(|e| !e.leased) {
                prop_assert!((NOW - e.last_used_unix) / DAY < p.max_age_days, "{} kept past the age limit", e.key);
            }
        }
        if p.max_bytes > 0 {
            let total: u64 = kept.iter().map(|e| e.bytes).sum();
            let leased: u64 = kept.iter().filter(|e| e.leased).map(|e| e.bytes).sum();
            prop_assert!(total <= p.max_bytes.max(leased), "kept {} bytes, budget {}", total, p.max_bytes);
        }
    }

    #[test]
    fn retention_evicts_nothing_when_every_limit_is_met(entries in uses()) {
        let mut per_stage: BTreeMap<&str, usize> = BTreeMap::new();
        for e in &entries {
            *per_stage.entry(e.stage.as_str()).or_default() += 1;
        }
        let p = Policy {
            max_entries_per_stage: per_stage.values().copied().max().unwrap_or(0).max(1),
            max_age_days: 0,
            max_bytes: entries.iter().map(|e| e.bytes).sum::<u64>().max(1),
            disk_max_used_percent: 100,
            disk_min_free_bytes: 0,
        };
        prop_assert_eq!(retention_victims(&entries, &p, NOW), vec![]);
    }
}
