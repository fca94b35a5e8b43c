//! Unit tests of the engine against hostile and corrupt metadata under its root (issue
//! 13 §3): each class at the place it is produced. The same classes run at random in
//! `cargo xtask stress` (`hostile`), and through the binary in `tests/it/hostile.rs`.

use std::os::unix::fs::symlink;
use std::sync::atomic::{AtomicU64, Ordering};

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

fn no_skip(_: &Path) -> bool {
    false
}

fn mkfifo(p: &Path) {
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
}

/// A cache at `root` whose disk guard never fires (the machine's disk is not the subject).
fn roomy(root: &Path) -> Cache {
    Cache::open(root).unwrap().with_policy(Policy {
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
        ..Policy::default()
    })
}

/// A victim directory outside the cache root, and a check that it is untouched.
fn victim(base: &Path) -> (PathBuf, impl Fn()) {
    let v = base.join("victim");
    fs::create_dir_all(v.join("sub")).unwrap();
    fs::write(v.join("sub/precious"), "precious").unwrap();
    let v2 = v.clone();
    (v, move || {
        assert_eq!(
            fs::read(v2.join("sub/precious")).unwrap(),
            b"precious",
            "a file outside the cache root was touched"
        );
    })
}

#[test]
fn a_key_read_back_from_entry_json_never_becomes_a_path() {
    let t = tempfile::tempdir().unwrap();
    let (_v, untouched) = victim(t.path());
    let root = t.path().join("a/b/c/c");
    let cache = roomy(&root);
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    let k = key("a.1.0-0123-4567");
    cache.save(&k, &src, &no_skip).unwrap();
    // The example: `entries/target/<k>/entry.json` naming a key that climbs out
    // of the root to `victim`, plus a stage that is not one.
    let p = cache.entry_dir(&k).join("entry.json");
    let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    j["key"] = "a.1.0/../../../../../../victim/sub".into();
    fs::write(&p, j.to_string()).unwrap();
    // Opening (which cleans dead stubs), listing, retention, the guard, verify and
    // clear: nothing outside the root is renamed or deleted.
    let again = Cache::open(&root).unwrap();
    assert!(again.list().is_empty());
    let un = again.unlisted();
    assert_eq!(un.len(), 1, "{un:?}");
    assert_eq!(un[0].name, k.key);
    assert!(
        un[0].why.contains("check_key") || un[0].why.contains("parse"),
        "{un:?}"
    );
    let v = again.verify(true);
    assert!(
        v.iter().any(|(_, key, d)| *key == k.key && !d.is_empty()),
        "{v:?}"
    );
    untouched();
    // Retention removes the unlisted directory (inside the root), and the key is
    // usable again.
    let ev = again.apply_retention(false);
    assert!(
        ev.iter()
            .any(|e| e.key == k.key && e.reason.contains("not a valid entry")),
        "{ev:?}"
    );
    assert!(fs::symlink_metadata(again.entry_dir(&k)).is_err());
    untouched();
    assert!(matches!(
        again.save(&k, &src, &no_skip).unwrap(),
        Save::Saved { .. }
    ));
    // A stage that is not one, and a key of another entry, are damage too.
    for (field, value) in [("stage", "../target"), ("key", "a.1.0-0123-9999")] {
        let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
        j[field] = value.into();
        fs::write(&p, j.to_string()).unwrap();
        assert!(again.list().is_empty(), "{field}");
        assert!(!again.contains(&k), "{field}");
        assert!(
            matches!(again.save(&k, &src, &no_skip).unwrap(), Save::Saved { .. }),
            "{field}"
        );
        assert!(
            again.take_notes().iter().any(|n| n.contains("damaged")),
            "{field}"
        );
    }
    untouched();
}

#[test]
fn huge_numbers_missing_or_garbage_metadata_never_panic_nor_wedge_a_key() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let cache = roomy(&root).with_policy(Policy {
        max_bytes: 1,
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
        ..Policy::default()
    });
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    let k = key("r-huge-1");
    let other = key("r-other-1");
    for (what, edit) in [
        ("huge bytes", "bytes"),
        ("huge files", "files"),
        ("huge created", "created_unix"),
        ("missing", "-"),
        ("garbage", "!"),
        ("a directory", "/"),
        ("a FIFO", "|"),
    ] {
        cache.save(&k, &src, &no_skip).unwrap();
        let p = cache.entry_dir(&k).join("entry.json");
        match edit {
            "-" => fs::remove_file(&p).unwrap(),
            "!" => fs::write(&p, b"\xff{\"schema_version\": 2,").unwrap(),
            "/" => {
                fs::remove_file(&p).unwrap();
                fs::create_dir(&p).unwrap();
            }
            "|" => {
                fs::remove_file(&p).unwrap();
                mkfifo(&p);
            }
            field => {
                let mut j: serde_json::Value =
                    serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
                j[field] = serde_json::json!(u64::MAX);
                fs::write(&p, j.to_string()).unwrap();
            }
        }
        // Every later operation works: listing, restoring, saving the key again,
        // retention (the overflow panic of issue 13), the guard.
        assert!(!cache.contains(&k), "{what}");
        let dst = t.path().join("d");
        assert_eq!(
            cache.restore(&k, &dst, false).unwrap(),
            Restore::Miss,
            "{what}"
        );
        fs::remove_dir_all(&dst).ok();
        assert!(
            matches!(cache.save(&k, &src, &no_skip).unwrap(), Save::Saved { .. }),
            "{what}: the key is wedged"
        );
        cache.take_notes();
        // A second entry triggers retention over the byte budget: no panic, the
        // least recently used goes.
        cache.save(&other, &src, &no_skip).unwrap();
        assert_eq!(cache.guard(u64::MAX, None), None);
        cache.remove("target", &k.key);
        cache.remove("target", &other.key);
        assert!(
            cache.list().is_empty() && cache.unlisted().is_empty(),
            "{what}"
        );
    }
}

#[test]
fn usage_records_out_of_range_do_not_keep_an_entry_forever() {
    const DAY: u64 = 86_400;
    let t = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicU64::new(100 * DAY));
    let n2 = now.clone();
    let cache = roomy(&t.path().join("c"))
        .with_clock(Arc::new(move || n2.load(Ordering::SeqCst)))
        .with_policy(Policy {
            max_age_days: 7,
            disk_max_used_percent: 100,
            disk_min_free_bytes: 0,
            ..Policy::default()
        });
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    let k = key("r-age-1");
    cache.save(&k, &src, &no_skip).unwrap();
    // A use claimed far in the future, and a hit count at the top of u64.
    let u = cache.usage_path(Stage::Target, &k.key);
    fs::write(
        &u,
        format!(
            "{{\"last_used_unix\": {}, \"hits\": {}}}",
            u64::MAX,
            u64::MAX
        ),
    )
    .unwrap();
    assert_eq!(cache.list()[0].usage.last_used_unix, 100 * DAY);
    // A restore counts the hit without overflowing (the record out of range starts over).
    let dst = t.path().join("d");
    assert!(matches!(
        cache.restore(&k, &dst, false).unwrap(),
        Restore::Hit { .. }
    ));
    cache.save(&k, &dst, &no_skip).unwrap();
    assert_eq!(cache.list()[0].usage.hits, 1);
    // Ten days later the entry ages out like any other.
    now.store(110 * DAY, Ordering::SeqCst);
    assert_eq!(cache.apply_retention(false).len(), 1);
}

#[test]
fn special_files_are_left_out_of_a_save_never_opened() {
    let t = tempfile::tempdir().unwrap();
    let cache = roomy(&t.path().join("c"));
    let k = key("r-fifo-1");
    // Both strategies: a tree this cache created (moved) and one it did not (copied).
    for moved in [true, false] {
        let src = t.path().join(format!("target{moved}"));
        if moved {
            assert_eq!(cache.restore(&k, &src, false).unwrap(), Restore::Miss);
        }
        tree(&src, &[("debug/libx.rlib", "rlib")]);
        fs::create_dir_all(src.join("tmp")).unwrap();
        // A FIFO no one writes to: opening it to hash it would block forever.
        mkfifo(&src.join("tmp/pipe"));
        let sock = std::os::unix::net::UnixListener::bind(src.join("tmp/sock")).unwrap();
        let s = cache.save(&k, &src, &no_skip).unwrap();
        assert!(matches!(s, Save::Saved { files: 1, .. }), "{s:?}");
        drop(sock);
        let notes = cache.take_notes();
        assert!(
            notes
                .iter()
                .any(|n| n.contains("special file") && n.contains("tmp/pipe")),
            "{notes:?}"
        );
        assert!(cache.verify(true).iter().all(|(_, _, d)| d.is_empty()));
        let dst = t.path().join(format!("d{moved}"));
        assert!(matches!(
            cache.restore(&k, &dst, false).unwrap(),
            Restore::Hit { .. }
        ));
        assert!(fs::symlink_metadata(dst.join("tmp/pipe")).is_err());
        cache.save(&k, &dst, &no_skip).unwrap();
        cache.remove("target", &k.key);
    }
    // An entry holding a FIFO (planted) is damaged for restores and verify alike,
    // found without opening it.
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    cache.save(&k, &src, &no_skip).unwrap();
    mkfifo(&cache.entry_dir(&k).join("data/fifo"));
    let v = cache.verify(true);
    assert!(
        v.iter()
            .any(|(_, _, d)| d.iter().any(|x| x.contains("special file"))),
        "{v:?}"
    );
    assert_eq!(
        cache.restore(&k, &t.path().join("d3"), false).unwrap(),
        Restore::Miss
    );
}

/// A tree whose links all look inside when their text is read, but one of which
/// resolves outside through a link to `.`.
fn escaping_tree(dir: &Path) {
    tree(dir, &[("debug/f", "f")]);
    symlink(".", dir.join("debug/dot")).unwrap();
    symlink("dot/dot/dot/../../..", dir.join("debug/out")).unwrap();
}

#[test]
fn symlink_containment_is_decided_by_resolving() {
    let t = tempfile::tempdir().unwrap();
    let (_v, untouched) = victim(t.path());
    let root = t.path().join("c");
    let cache = roomy(&root);
    let k = key("r-link-1");
    // Save refuses the tree (the lexical check of issue 8 let it through).
    let src = t.path().join("s");
    escaping_tree(&src);
    let e = cache.save(&k, &src, &no_skip).unwrap_err();
    assert!(format!("{e:#}").contains("debug/out"), "{e:#}");
    assert!(!cache.contains(&k));
    // An entry that holds such a link (planted after the save, manifest and content hash
    // rewritten to match, as a hostile writer would) is damaged for a move restore, a
    // copy restore, verify, and the import of a download.
    let src = t.path().join("s2");
    tree(&src, &[("debug/f", "f")]);
    cache.save(&k, &src, &no_skip).unwrap();
    let dir = cache.entry_dir(&k);
    symlink(".", dir.join("data/debug/dot")).unwrap();
    symlink(
        "dot/dot/dot/../../../../../victim",
        dir.join("data/debug/out"),
    )
    .unwrap();
    rewrite_manifest(&dir);
    let v = cache.verify(true);
    assert!(
        v.iter()
            .any(|(_, _, d)| d.iter().any(|x| x.contains("resolves outside"))),
        "{v:?}"
    );
    let copy = Cache::open_read_only(&root);
    assert_eq!(
        copy.restore(&k, &t.path().join("d1"), false).unwrap(),
        Restore::Miss
    );
    assert!(copy.take_notes()[0].contains("resolves outside"));
    let c2 = roomy(&t.path().join("c2"));
    let lease = c2.scratch_dir("in").unwrap();
    crate::support::fs::par_copy(&dir, lease.path(), false, &|_| false).unwrap();
    assert!(c2.import(&k, lease.path()).is_err());
    assert!(!c2.contains(&k));
    assert_eq!(
        cache.restore(&k, &t.path().join("d2"), false).unwrap(),
        Restore::Miss
    );
    assert!(!cache.contains(&k), "the damaged entry is discarded");
    untouched();
}

/// Rebuild `manifest.tsv` of the entry at `dir` from its data and put its hash into
/// `entry.json`, as someone tampering with the whole entry would.
fn rewrite_manifest(dir: &Path) {
    let m = Manifest::build(&dir.join("data"), None).unwrap();
    let tsv = m.to_tsv();
    fs::write(dir.join("manifest.tsv"), &tsv).unwrap();
    let p = dir.join("entry.json");
    let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    j["content_hash"] = fsutil::sha256_hex(&tsv).into();
    fs::write(&p, j.to_string()).unwrap();
}

#[test]
fn restore_checks_the_manifest_against_the_content_hash() {
    // A data file changed (same size, same mtime) together with its hash line in the
    // manifest: file set, sizes and mtimes all match, so only the check of the manifest
    // against the entry's content hash catches it. Each restore path must.
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let cache = roomy(&root);
    let src = t.path().join("s");
    tree(&src, &[("deps/liba.rlib", "good"), ("deps/b", "b")]);
    let k = key("r-tamper-1");
    for path in ["move", "copy", "verify", "import", "local get"] {
        cache.save(&k, &src, &no_skip).unwrap();
        let dir = cache.entry_dir(&k);
        let f = dir.join("data/deps/liba.rlib");
        let mtime = fs::metadata(&f).unwrap().modified().unwrap();
        fs::write(&f, "evil").unwrap();
        fs::File::options()
            .write(true)
            .open(&f)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        let tsv = fs::read_to_string(dir.join("manifest.tsv")).unwrap();
        let good = fsutil::sha256_hex("good");
        assert!(tsv.contains(&good));
        fs::write(
            dir.join("manifest.tsv"),
            tsv.replace(&good, &fsutil::sha256_hex("evil")),
        )
        .unwrap();
        let dst = t.path().join(format!("d-{path}"));
        match path {
            "move" => {
                assert_eq!(cache.restore(&k, &dst, false).unwrap(), Restore::Miss);
                assert!(cache.take_notes()[0].contains("content hash"));
                assert!(!dst.join("deps/liba.rlib").exists());
            }
            "copy" => {
                let ro = Cache::open_read_only(&root);
                assert_eq!(ro.restore(&k, &dst, false).unwrap(), Restore::Miss);
                assert!(ro.take_notes()[0].contains("content hash"));
                assert!(!dst.join("deps/liba.rlib").exists());
            }
            "verify" => {
                let v = cache.verify(false);
                assert!(
                    v.iter()
                        .any(|(_, _, d)| d.iter().any(|x| x.contains("content hash"))),
                    "{v:?}"
                );
            }
            "import" => {
                let c2 = roomy(&t.path().join("c2"));
                let lease = c2.scratch_dir("in").unwrap();
                crate::support::fs::par_copy(&dir, lease.path(), false, &|_| false).unwrap();
                let e = c2.import(&k, lease.path()).unwrap_err();
                assert!(format!("{e:#}").contains("content hash"), "{e:#}");
                assert!(!c2.contains(&k));
            }
            _ => {
                let local = storage::LocalStorage::new(cache.clone());
                let e = storage::Storage::get(&local, &k, &dst).unwrap_err();
                assert!(storage::Damaged::is_in(&e), "{e:#}");
                assert!(!dst.exists());
            }
        }
        cache.remove("target", &k.key);
    }
}

#[test]
fn temp_dirs_live_as_long_as_their_lease_not_their_pid() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let cache = roomy(&root);
    // A live writer in another PID namespace: its pid (in the name) means nothing here,
    // its lease is held (by this open file description, standing in for its process).
    let live = scratch::Scratch::in_root(&root, "target-k").unwrap();
    fs::create_dir_all(live.path().join("data")).unwrap();
    // A pid that is alive here but whose writer is gone: its lease is free.
    let dead = root.join(format!("tmp/target-j.{}.99", std::process::id()));
    fs::create_dir_all(&dead).unwrap();
    fs::write(
        root.join(format!(
            "locks/tmp/target-j.{}.99.lease",
            std::process::id()
        )),
        "",
    )
    .unwrap();
    let _ = Cache::open(&root).unwrap();
    assert!(
        live.path().join("data").is_dir(),
        "a live writer's temp dir was deleted"
    );
    assert!(!dead.exists(), "a dead writer's temp dir was kept");
    drop(live);
    drop(cache);
    let _ = Cache::open(&root).unwrap();
    assert_eq!(fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}

#[test]
fn a_killed_copy_restore_leaves_no_partial_tree() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let cache = roomy(&root);
    let src = t.path().join("s");
    tree(&src, &[("a", "1"), ("b/c", "2")]);
    let k = key("r-copy-1");
    cache.save(&k, &src, &no_skip).unwrap();
    // What a restore killed halfway leaves: its sibling, partly copied, lease free;
    // the destination itself does not exist.
    let dst = t.path().join("w/target");
    let left = t.path().join("w/.target.restore.12345.0");
    tree(&left, &[("a", "")]);
    fs::write(t.path().join("w/.target.restore.12345.0.lease"), "").unwrap();
    assert!(!dst.exists());
    let ro = Cache::open_read_only(&root);
    assert!(matches!(
        ro.restore(&k, &dst, false).unwrap(),
        Restore::Hit {
            strategy: Strategy::Copied,
            ..
        }
    ));
    assert_eq!(fs::read(dst.join("b/c")).unwrap(), b"2");
    // The leftover is gone, and nothing else is beside the destination.
    let names: Vec<String> = fs::read_dir(t.path().join("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["target"]);
}

#[test]
fn lock_files_and_layout_dirs_that_are_not_what_we_wrote_never_hang_or_escape() {
    let t = tempfile::tempdir().unwrap();
    let (v, untouched) = victim(t.path());
    let root = t.path().join("c");
    let cache = roomy(&root);
    let src = t.path().join("s");
    tree(&src, &[("f", "x")]);
    let k = key("r-lock-1");
    cache.save(&k, &src, &no_skip).unwrap();
    // The entry's lock file replaced by a FIFO: a read-only open of it would block.
    let lock = cache.lock_path(Stage::Target, &k.key);
    let _ = fs::remove_file(&lock);
    mkfifo(&lock);
    let ro = Cache::open_read_only(&root);
    let _ = ro.restore(&k, &t.path().join("d0"), false).unwrap();
    // A writable cache replaces it and uses the entry.
    assert!(matches!(
        cache.restore(&k, &t.path().join("d1"), false).unwrap(),
        Restore::Hit { .. }
    ));
    cache.save(&k, &t.path().join("d1"), &no_skip).unwrap();
    // Layout dirs that are symlinks to a victim: opening replaces them, the victim
    // keeps its files, and every operation after works inside the root.
    for d in ["tmp", "usage/target", "locks/target", "log"] {
        let p = root.join(d);
        fs::remove_dir_all(&p).unwrap();
        symlink(&v, &p).unwrap();
    }
    let again = roomy(&root);
    assert!(again
        .take_notes()
        .iter()
        .any(|n| n.contains("not a directory")));
    assert!(matches!(
        again.restore(&k, &t.path().join("d2"), false).unwrap(),
        Restore::Hit { .. }
    ));
    again.save(&k, &t.path().join("d2"), &no_skip).unwrap();
    again.apply_retention(false);
    untouched();
    assert_eq!(fs::read_dir(v.join("sub")).unwrap().count(), 1);
    assert_eq!(fs::read_dir(&v).unwrap().count(), 1);
    // An entry dir that is a symlink to a directory laid out as an entry: never
    // listed, never moved out of (that would move the victim's data), discarded as a
    // link.
    let fake = t.path().join("fake");
    crate::support::fs::par_copy(&again.entry_dir(&k), &fake, false, &|_| false).unwrap();
    again.remove("target", &k.key);
    symlink(&fake, again.entry_dir(&k)).unwrap();
    assert!(again.list().is_empty());
    assert_eq!(
        again.restore(&k, &t.path().join("d3"), false).unwrap(),
        Restore::Miss
    );
    assert!(
        fake.join("data/f").is_file(),
        "data was moved out of a symlinked entry"
    );
    assert!(matches!(
        again.save(&k, &src, &no_skip).unwrap(),
        Save::Saved { .. }
    ));
    assert!(fake.join("data/f").is_file());
}

#[test]
fn the_guard_evicts_least_recently_used_first() {
    const DAY: u64 = 86_400;
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("c");
    let now = Arc::new(AtomicU64::new(10 * DAY));
    let n2 = now.clone();
    // The filesystem is "full" while more than 2 entries of 100 bytes are cached.
    let r2 = root.clone();
    let cache = Cache::open(&root)
        .unwrap()
        .with_fs_stats(Arc::new(|_| {
            Ok(FsUsage {
                total: 1000,
                available: 1000,
            })
        }))
        .with_clock(Arc::new(move || n2.load(Ordering::SeqCst)))
        .with_policy(Policy {
            max_entries_per_stage: 100,
            max_age_days: 0,
            max_bytes: 0,
            disk_max_used_percent: 90,
            disk_min_free_bytes: 0,
        });
    let src = t.path().join("s");
    tree(&src, &[("f", &"x".repeat(100))]);
    // Saved in order k0..k4, then used in another order: k3, k0, k4, k1, k2 (oldest
    // first), with the fs stats off so no eviction happens yet.
    for i in 0..5 {
        cache
            .save(&key(&format!("r-g-{i}")), &src, &no_skip)
            .unwrap();
    }
    for (n, i) in [3, 0, 4, 1, 2].into_iter().enumerate() {
        now.store(20 * DAY + n as u64, Ordering::SeqCst);
        cache.touch(Stage::Target, &format!("r-g-{i}"), false);
    }
    let cache = cache.with_fs_stats(Arc::new(move |_| {
        let n = fs::read_dir(r2.join("entries/target")).map_or(0, |d| d.count()) as u64;
        // 1000 bytes in all; each entry uses 100 of them, 650 are used otherwise.
        Ok(FsUsage {
            total: 1000,
            available: 350u64.saturating_sub(100 * n),
        })
    }));
    // 650 + 500 > 900: evict until 650 + 100n <= 900, i.e. n = 2: three go.
    assert_eq!(cache.guard(0, None), None);
    let left: Vec<String> = cache
        .list()
        .into_iter()
        .map(|l| l.info.key.into())
        .collect();
    assert_eq!(left, ["r-g-1", "r-g-2"]);
    let evicted: Vec<String> = cache
        .drain_notes()
        .evicted
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(evicted, ["r-g-3", "r-g-0", "r-g-4"]);
}
