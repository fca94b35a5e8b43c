//! Unit tests of the cache engine on real files in temp dirs (one process; the
//! multi-process tests are in `xtask/tests/it/cache.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use super::*;

fn key(k: &str) -> CacheKey {
    CacheKey {
        stage: Stage::Target,
        key: k.into(),
        inputs: vec![("x".into(), "y".into())],
    }
}

fn tree(dir: &Path, files: &[(&str, &str)]) {
    for (p, c) in files {
        let p = dir.join(p);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, c).unwrap();
    }
}

/// Every path under `root` with its size and mtime, to prove nothing changed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.path().to_path_buf(), (m.len(), m.modified().unwrap()))
        })
        .collect()
}

fn no_skip(_: &Path) -> bool {
    false
}

#[test]
fn copy_save_then_restore_and_first_writer_wins() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::open(&t.path().join("c")).unwrap();
    let src = t.path().join("target");
    tree(
        &src,
        &[
            ("debug/libx.rlib", "rlib"),
            ("debug/incremental/junk", "junk"),
        ],
    );
    let k = key("a-1-2");
    assert_eq!(
        cache.restore(&k, &t.path().join("r"), false).unwrap(),
        Restore::Miss
    );
    let skip = |p: &Path| p.ends_with("incremental");
    // `src` was not created through this cache's restore: it is copied, not moved.
    assert!(matches!(
        cache.save(&k, &src, &skip).unwrap(),
        Save::Saved {
            files: 1,
            raw_bytes: 8,
            strategy: Strategy::Copied,
            ..
        }
    ));
    assert!(
        src.join("debug/incremental/junk").exists(),
        "a copy save never prunes the source"
    );
    assert_eq!(cache.save(&k, &src, &skip).unwrap(), Save::Exists);
    let other = Cache::open(cache.root()).unwrap();
    let dst = t.path().join("r2");
    assert!(matches!(
        other.restore(&k, &dst, false).unwrap(),
        Restore::Hit {
            files: 1,
            strategy: Strategy::Moved,
            ..
        }
    ));
    assert_eq!(fs::read(dst.join("debug/libx.rlib")).unwrap(), b"rlib");
    assert_eq!(other.restore(&k, &dst, false).unwrap(), Restore::Kept);
    assert_eq!(other.info(&k).unwrap().inputs, k.inputs);
}

#[test]
fn move_restore_leases_and_unchanged_save_returns_the_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let a = Cache::open(&root).unwrap();
    let k = key("r-base-env-lock");
    let built = t.path().join("w1/target");
    assert_eq!(a.restore(&k, &built, false).unwrap(), Restore::Miss);
    tree(
        &built,
        &[("debug/deps/liba.rlib", "aaaa"), ("debug/my-bin", "bin")],
    );
    let skip = |p: &Path| p == Path::new("debug/my-bin");
    // A tree this job created is moved into the cache, pruned first.
    assert!(matches!(
        a.save(&k, &built, &skip).unwrap(),
        Save::Saved {
            files: 1,
            bytes: 4,
            raw_bytes: 7,
            strategy: Strategy::Moved,
            ..
        }
    ));
    assert!(!built.exists());

    let dst = t.path().join("w2/target");
    assert!(matches!(
        a.restore(&k, &dst, false).unwrap(),
        Restore::Hit {
            strategy: Strategy::Moved,
            ..
        }
    ));
    // While job A holds the entry, it is listed as leased, and job B (another cache
    // handle, so another open file description: flock sees it as another holder) cannot
    // take it: it misses and says why.
    assert!(a.contains(&k));
    assert!(a.list()[0].leased);
    let b = Cache::open(&root).unwrap();
    assert!(
        b.contains(&k),
        "open() must not take a live job's stub for a dead one"
    );
    assert_eq!(
        b.restore(&k, &t.path().join("w3/target"), false).unwrap(),
        Restore::Miss
    );
    assert!(b.take_notes()[0].contains("held by other jobs"));
    assert!(b.apply_retention(false).is_empty());

    // The build adds a file that pruning drops: nothing else changed, so the save is
    // O(1): renamed back, no new entry.
    tree(&dst, &[("debug/my-bin", "bin2")]);
    assert!(matches!(
        a.save(&k, &dst, &skip).unwrap(),
        Save::Unchanged {
            strategy: Strategy::Moved,
            bytes: 4,
            ..
        }
    ));
    assert!(!dst.exists());
    assert!(!a.list()[0].leased);
    assert_eq!(a.list()[0].usage.hits, 1);
    assert!(a.verify(true).iter().all(|(_, _, d)| d.is_empty()));
}

#[test]
fn partial_hit_restores_nearest_older_and_saves_a_new_entry() {
    let t = tempfile::tempdir().unwrap();
    let clock = Arc::new(AtomicU64::new(1_000));
    let c2 = clock.clone();
    let cache = Cache::open(&t.path().join("c"))
        .unwrap()
        .with_clock(Arc::new(move || c2.load(Ordering::SeqCst)));
    let src = t.path().join("s");
    for (i, lock) in ["l1", "l2"].iter().enumerate() {
        tree(&src, &[("f", lock)]);
        clock.store(1_000 + i as u64 * 10, Ordering::SeqCst);
        cache
            .save(&key(&format!("r-base-env-{lock}")), &src, &no_skip)
            .unwrap();
    }
    // Another toolchain (env hash) never matches.
    cache.save(&key("r-base-other-l9"), &src, &no_skip).unwrap();
    let want = key("r-base-env-l3");
    let dst = t.path().join("d");
    let r = cache.restore(&want, &dst, false).unwrap();
    assert!(
        matches!(&r, Restore::Partial { from, strategy: Strategy::Moved, .. } if from == "r-base-env-l2"),
        "{r:?}"
    );
    assert_eq!(fs::read(dst.join("f")).unwrap(), b"l2");
    assert!(matches!(
        cache.save(&want, &dst, &no_skip).unwrap(),
        Save::Saved { .. }
    ));
    let keys: Vec<String> = cache.entries().into_iter().map(|e| e.key.into()).collect();
    // The moved-out entry was consumed and replaced by the new key.
    assert_eq!(keys, ["r-base-env-l1", "r-base-env-l3", "r-base-other-l9"]);
}

#[test]
fn damaged_entry_is_discarded_and_the_next_candidate_used() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::open(&t.path().join("c")).unwrap();
    let src = t.path().join("s");
    tree(&src, &[("deps/a.rlib", "aaaa"), ("deps/b.rlib", "bbbb")]);
    let old = key("r-base-env-l1");
    let new = key("r-base-env-l2");
    cache.save(&old, &src, &no_skip).unwrap();
    cache.save(&new, &src, &no_skip).unwrap();
    // Truncate a file of the newer entry, as a full disk or a crash would.
    fs::write(cache.entry_dir(&new).join("data/deps/a.rlib"), "a").unwrap();
    let v = cache.verify(false);
    assert!(
        v.iter().any(|(_, k, d)| k == &new.key && !d.is_empty()),
        "{v:?}"
    );
    let dst = t.path().join("d");
    let r = cache.restore(&new, &dst, false).unwrap();
    assert!(
        matches!(&r, Restore::Partial { from, .. } if from == &old.key),
        "{r:?}"
    );
    assert!(!cache.contains(&new), "the damaged entry is discarded");
    let notes = cache.take_notes();
    assert!(
        notes[0].contains("damaged") && notes[0].contains("a.rlib"),
        "{notes:?}"
    );
    assert_eq!(fs::read(dst.join("deps/a.rlib")).unwrap(), b"aaaa");
}

#[test]
fn read_only_cache_never_writes_under_its_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let w = Cache::open(&root).unwrap();
    let src = t.path().join("s");
    tree(&src, &[("deps/a.rlib", "aaaa")]);
    w.save(&key("r-base-env-l1"), &src, &no_skip).unwrap();
    w.save(&key("r-base-env-l2"), &src, &no_skip).unwrap();
    // Damage one entry: even then a read-only cache must not discard it.
    fs::write(
        w.entry_dir(&key("r-base-env-l2")).join("data/deps/a.rlib"),
        "x",
    )
    .unwrap();
    let before = snapshot(&root);

    let ro = Cache::open_read_only(&root).with_fs_stats(Arc::new(|_| {
        Ok(FsUsage {
            total: 100,
            available: 1,
        })
    }));
    assert!(ro.is_read_only());
    let dst = t.path().join("d");
    let r = ro.restore(&key("r-base-env-l2"), &dst, false).unwrap();
    assert!(
        matches!(
            r,
            Restore::Partial {
                strategy: Strategy::Copied,
                ..
            }
        ),
        "{r:?}"
    );
    tree(&dst, &[("deps/new.rlib", "n")]);
    assert_eq!(
        ro.save(&key("r-base-env-l3"), &dst, &no_skip).unwrap(),
        Save::Skipped
    );
    assert!(ro.apply_retention(false).len() <= 2);
    assert!(ro.guard(0, None).is_none());
    assert!(!ro.remove("target", "r-base-env-l1"));
    assert_eq!(
        snapshot(&root),
        before,
        "a read-only cache wrote under its root"
    );
    assert!(
        dst.join("deps/new.rlib").exists(),
        "the source tree is left alone"
    );

    // A read-only cache over a root that does not exist creates nothing.
    let none = t.path().join("none");
    let ro = Cache::open_read_only(&none);
    assert_eq!(
        ro.restore(&key("k-a-b"), &t.path().join("d2"), false)
            .unwrap(),
        Restore::Miss
    );
    assert_eq!(
        ro.save(&key("k-a-b"), &dst, &no_skip).unwrap(),
        Save::Skipped
    );
    assert!(!none.exists());
}

#[test]
fn retention_by_last_use_with_an_injected_clock() {
    const DAY: u64 = 86_400;
    let t = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(100 * DAY));
    let n2 = now.clone();
    let cache = Cache::open(&t.path().join("c"))
        .unwrap()
        .with_clock(Arc::new(move || n2.load(Ordering::SeqCst)))
        .with_policy(Policy {
            max_entries_per_stage: 3,
            max_age_days: 7,
            max_bytes: 0,
            disk_max_used_percent: 100,
            disk_min_free_bytes: 0,
        });
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    // Saved on days 100..=103; entry 0 is restored (used) on day 104.
    for i in 0..4u64 {
        now.store((100 + i) * DAY, Ordering::SeqCst);
        cache
            .save(&key(&format!("r-v-e-{i}")), &src, &no_skip)
            .unwrap();
    }
    // The fourth save already applied retention: the least recently used went.
    let keys = |c: &Cache| c.entries().into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(&cache), ["r-v-e-1", "r-v-e-2", "r-v-e-3"]);
    now.store(104 * DAY, Ordering::SeqCst);
    let d = t.path().join("d");
    cache.restore(&key("r-v-e-1"), &d, false).unwrap();
    cache.save(&key("r-v-e-1"), &d, &no_skip).unwrap();
    // Day 110: entries 2 and 3 were last used on days 102 and 103 (8 and 7 days ago);
    // entry 1 on day 104 (6 days ago).
    now.store(110 * DAY, Ordering::SeqCst);
    let planned = cache.apply_retention(true);
    assert_eq!(
        planned.iter().map(|e| e.key.as_str()).collect::<Vec<_>>(),
        ["r-v-e-3", "r-v-e-2"]
    );
    assert_eq!(keys(&cache).len(), 3, "a dry run removes nothing");
    cache.apply_retention(false);
    assert_eq!(keys(&cache), ["r-v-e-1"]);
}

#[test]
fn disk_guard_evicts_lru_until_under_the_threshold() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    // A filesystem of 10,000 bytes whose only other user takes 7,000: each entry's data
    // bytes count as used, so evicting one frees its bytes.
    fn data_bytes(root: &Path) -> u64 {
        walkdir::WalkDir::new(root.join("entries"))
            .into_iter()
            .flatten()
            .filter(|e| {
                e.file_type().is_file() && e.path().components().any(|c| c.as_os_str() == "data")
            })
            .map(|e| e.metadata().unwrap().len())
            .sum()
    }
    let used_base = 7_000u64;
    let r2 = root.clone();
    let stats: FsStatsFn = Arc::new(move |_| {
        let used = used_base + data_bytes(&r2);
        Ok(FsUsage {
            total: 10_000,
            available: 10_000u64.saturating_sub(used),
        })
    });
    let clock = Arc::new(AtomicU64::new(1));
    let c2 = clock.clone();
    let cache = Cache::open(&root)
        .unwrap()
        .with_fs_stats(stats)
        .with_clock(Arc::new(move || c2.load(Ordering::SeqCst)))
        .with_policy(Policy {
            max_entries_per_stage: 100,
            max_age_days: 0,
            max_bytes: 0,
            disk_max_used_percent: 80,
            disk_min_free_bytes: 0,
        });
    let src = t.path().join("s");
    tree(&src, &[("f", &"x".repeat(300))]);
    // Entries land while under 80% (7,000 + 3 × ~300 + metadata).
    for i in 0..3u64 {
        clock.store(10 + i, Ordering::SeqCst);
        assert!(matches!(
            cache
                .save(&key(&format!("r-v-e-{i}")), &src, &no_skip)
                .unwrap(),
            Save::Saved { .. }
        ));
    }
    // Now a 500-byte save would go over 80% (7,900 + 500): the guard evicts the least
    // recently used entries first, and stops as soon as the new one fits (7,300 + 500).
    tree(&src, &[("f", &"x".repeat(500))]);
    clock.store(20, Ordering::SeqCst);
    assert!(matches!(
        cache.save(&key("r-v-e-big"), &src, &no_skip).unwrap(),
        Save::Saved { .. }
    ));
    let keys = |c: &Cache| c.entries().into_iter().map(|e| e.key).collect::<Vec<_>>();
    assert_eq!(keys(&cache), ["r-v-e-2", "r-v-e-big"]);
    let used = used_base + data_bytes(&root);
    assert!(
        used * 100 <= 10_000 * 80,
        "still over the threshold: {used}"
    );

    // A save that cannot fit even in an empty cache is skipped with a warning.
    tree(&src, &[("f", &"x".repeat(5_000))]);
    assert_eq!(
        cache.save(&key("r-v-e-huge"), &src, &no_skip).unwrap(),
        Save::NoSpace
    );
    assert!(cache.take_notes().iter().any(|n| n.contains("not saved")));
    assert!(!cache.contains(&key("r-v-e-huge")));
    // Evicting everything would not have made room, so nothing was evicted for it.
    assert_eq!(keys(&cache), ["r-v-e-2", "r-v-e-big"]);
}

/// A cache root as the code before the storage split (main at 9399d39) wrote it, built by
/// hand here so a change of the entry layout, of `entry.json`'s fields, of the manifest
/// format or of the key derivation fails this test: `entries/<stage>/<key>/entry.json`,
/// `manifest.tsv` (`kind \t size \t mtime_ns \t sha256 \t path`, sorted), `data/`.
#[test]
fn a_cache_root_written_in_the_previous_format_still_hits() {
    use sha2::Digest;
    let sha = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    // The key of a target entry, derived as today (KEY_VERSION "1"): a change of the
    // derivation makes every existing entry miss, so it must be deliberate.
    let k = CacheKey::derive(
        Stage::Target,
        "old-repo",
        vec![
            ("repo".into(), "old-repo".into()),
            ("toolchain".into(), "rustc 1.85.0".into()),
        ],
        &sha(b"Cargo.lock contents"),
    );
    assert_eq!(key::KEY_VERSION, "1");
    assert_eq!(k.key, "old-repo-3a1f30f253172764-9d0366867a3ff9b5");

    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let entry = root.join("entries/target").join(&k.key);
    let files: [(&str, &[u8], i64, u32); 2] = [
        (
            "debug/deps/libold.rlib",
            b"old rlib bytes",
            1_700_000_000,
            123_456_789,
        ),
        ("debug/deps/old.d", b"dep info", 1_700_000_100, 0),
    ];
    let mut tsv = String::new();
    for (rel, body, secs, nanos) in files {
        let p = entry.join("data").join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, body).unwrap();
        let mtime = std::time::UNIX_EPOCH + std::time::Duration::new(secs as u64, nanos);
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let ns = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        tsv += &format!("f\t{}\t{ns}\t{}\t{rel}\n", body.len(), sha(body));
    }
    fs::write(entry.join("manifest.tsv"), &tsv).unwrap();
    fs::write(
        entry.join("entry.json"),
        format!(
            r#"{{
  "schema_version": 2,
  "stage": "target",
  "key": "{}",
  "inputs": [["key-version", "1"], ["stage", "target"]],
  "created_unix": 1700000200,
  "files": 2,
  "bytes": 22,
  "raw_bytes": 4096,
  "content_hash": "{}"
}}"#,
            k.key,
            sha(tsv.as_bytes())
        ),
    )
    .unwrap();

    let cache = Cache::open(&root).unwrap();
    assert_eq!(cache.entries().len(), 1);
    let whole = cache.verify(true);
    assert!(whole.iter().all(|(_, _, d)| d.is_empty()), "{whole:?}");
    let dst = t.path().join("target");
    let r = Tiered::local(cache.clone())
        .restore_stage(&k, &dst, false, true)
        .0;
    assert!(
        matches!(
            r.restore,
            Restore::Hit {
                files: 2,
                bytes: 22,
                ..
            }
        ),
        "{r:?}"
    );
    assert_eq!(r.warning, None);
    assert_eq!(
        fs::read(dst.join("debug/deps/libold.rlib")).unwrap(),
        b"old rlib bytes"
    );
    // The restored file keeps its recorded mtime (cargo's freshness depends on it).
    assert_eq!(
        fs::metadata(dst.join("debug/deps/libold.rlib"))
            .unwrap()
            .modified()
            .unwrap(),
        std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789)
    );
}

#[test]
fn notes_belong_to_the_handle_that_made_them() {
    let t = tempfile::tempdir().unwrap();
    let cache = Cache::open(&t.path().join("c")).unwrap();
    let src = t.path().join("src");
    tree(&src, &[("debug/libx.rlib", "rlib")]);
    let k = key("a-1-2");
    cache.save(&k, &src, &no_skip).unwrap();
    // Damage the entry: the next restore discards it and notes why.
    fs::write(cache.entry_dir(&k).join("data/debug/libx.rlib"), "changed").unwrap();
    let stage = cache.with_own_notes();
    assert_eq!(
        stage.restore(&k, &t.path().join("r"), false).unwrap(),
        Restore::Miss
    );
    assert!(
        cache.take_notes().is_empty(),
        "another handle's notes leaked"
    );
    let notes = stage.take_notes();
    assert!(notes.iter().any(|n| n.contains("damaged")), "{notes:?}");
    assert!(stage.take_notes().is_empty(), "notes are drained once");
}
