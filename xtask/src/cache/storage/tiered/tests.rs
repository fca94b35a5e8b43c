//! The two-level logic of [`Tiered`] with local stores only: a second [`LocalStorage`]
//! stands in for the remote (wrapped to count its requests, to hold an upload, or
//! replaced by a store that fails), so every rule is checked without a server. The
//! SeaweedFS tests (`xtask/tests/it/remote.rs`) check the same end to end over S3.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Result};

use super::*;
use crate::cache::retention::Policy;
use crate::cache::Stage;

const SECRET: &str = "fake-secret-4d1c9a";

fn key(k: &str) -> CacheKey {
    CacheKey {
        stage: Stage::Target,
        key: k.into(),
        inputs: vec![("test".into(), "1".into())],
    }
}

/// A cache at `root` whose disk guard never refuses (the machine's disk is not the
/// subject here).
fn cache_at(root: &Path) -> Cache {
    Cache::open(root).unwrap().with_policy(Policy {
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
        ..Policy::default()
    })
}

/// A small target dir at `dir`.
fn tree(dir: &Path, body: &str) {
    std::fs::create_dir_all(dir.join("debug/deps")).unwrap();
    std::fs::write(dir.join("debug/deps/libx.rlib"), body).unwrap();
    std::fs::write(dir.join("debug/deps/x.d"), "dep info").unwrap();
}

/// `cache` with an entry for `k` saved from a fresh tree holding `body`.
fn with_entry(cache: &Cache, scratch: &Path, k: &CacheKey, body: &str) {
    tree(scratch, body);
    let s = cache.save(k, scratch, &|_| false).unwrap();
    assert!(matches!(s, Save::Saved { .. }), "{s:?}");
}

/// Every path under `root` with its size and mtime, to prove nothing was written.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            (e.path().to_path_buf(), (m.len(), m.modified().unwrap()))
        })
        .collect()
}

/// The requests a store received, by method name.
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<&'static str>>>);

impl Log {
    fn push(&self, what: &'static str) {
        self.0.lock().unwrap().push(what);
    }
    fn calls(&self) -> Vec<&'static str> {
        self.0.lock().unwrap().clone()
    }
}

/// `S`, logging every request that would reach a remote (`probe`, `contains`, `get`,
/// `put`), and holding each `put` until `gate` (when set) lets it through.
struct Counting<S> {
    inner: S,
    log: Log,
    gate: Option<Mutex<mpsc::Receiver<()>>>,
}

impl<S: Storage> Counting<S> {
    fn new(inner: S, log: &Log) -> Counting<S> {
        Counting {
            inner,
            log: log.clone(),
            gate: None,
        }
    }
}

impl<S: Storage> Storage for Counting<S> {
    fn describe(&self) -> String {
        format!("fake remote ({})", self.inner.describe())
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn probe(&self) -> Result<()> {
        self.log.push("probe");
        self.inner.probe()
    }
    fn contains(&self, key: &CacheKey) -> Result<bool> {
        self.log.push("contains");
        self.inner.contains(key)
    }
    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        self.log.push("get");
        self.inner.get(key, into)
    }
    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        self.log.push("put");
        if let Some(g) = &self.gate {
            g.lock().unwrap().recv().unwrap();
        }
        self.inner.put(key, entry)
    }
    fn quarantine(&self, key: &CacheKey) -> Result<bool> {
        self.log.push("quarantine");
        self.inner.quarantine(key)
    }
}

/// A remote that answers every transfer with an error naming a credential (as an HTTP
/// stack might echo it), and whose probe fails when `probe_fails`.
struct Failing {
    probe_fails: bool,
    log: Log,
}

impl Failing {
    fn err(&self) -> anyhow::Error {
        anyhow!("connection refused by http://AKID:{SECRET}@127.0.0.1:9")
    }
}

impl Storage for Failing {
    fn describe(&self) -> String {
        "s3://fake/".into()
    }
    fn probe(&self) -> Result<()> {
        self.log.push("probe");
        if self.probe_fails {
            Err(self.err())
        } else {
            Ok(())
        }
    }
    fn redact(&self, text: &str) -> String {
        text.replace(SECRET, "***")
    }
    fn contains(&self, _: &CacheKey) -> Result<bool> {
        self.log.push("contains");
        Err(self.err())
    }
    fn get(&self, _: &CacheKey, _: &Path) -> Result<Option<Transfer>> {
        self.log.push("get");
        Err(self.err())
    }
    fn put(&self, _: &CacheKey, _: &Path) -> Result<Put> {
        self.log.push("put");
        Err(self.err())
    }
}

#[test]
fn a_remote_hit_fills_the_local_cache_and_is_restored_from_it() {
    let t = tempfile::tempdir().unwrap();
    let (local, remote) = (cache_at(&t.path().join("a")), cache_at(&t.path().join("b")));
    let k = key("repo-0123456789abcdef-0123456789abcdef");
    with_entry(&remote, &t.path().join("src"), &k, "from the fleet");
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(local.clone()),
        Box::new(Counting::new(LocalStorage::new(remote), &log)),
    );

    let dst = t.path().join("target");
    let (rep, lines) = store.restore_stage(&k, &dst, false, true);
    assert!(matches!(rep.restore, Restore::Hit { .. }), "{rep:?}");
    let st = rep.remote.as_ref().unwrap();
    assert_eq!(st.restore, "hit");
    assert!(st.restore_bytes > 0);
    assert_eq!(rep.warning, None);
    assert!(lines.iter().any(|l| l.contains("remote hit")), "{lines:?}");
    assert_eq!(
        std::fs::read_to_string(dst.join("debug/deps/libx.rlib")).unwrap(),
        "from the fleet"
    );
    // The entry was published in the local cache (and the restore took it from there).
    assert!(local.contains(&k));
    assert_eq!(log.calls(), ["probe", "get"]);
    let events = crate::cache::stats::read_events(local.root());
    assert!(events.iter().any(|e| e.outcome == "remote-hit"));
}

#[test]
fn a_local_hit_sends_no_request_to_the_remote() {
    let t = tempfile::tempdir().unwrap();
    let local = cache_at(&t.path().join("a"));
    let k = key("repo-0123456789abcdef-0123456789abcdef");
    with_entry(&local, &t.path().join("src"), &k, "built here");
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(local),
        Box::new(Counting::new(
            LocalStorage::new(cache_at(&t.path().join("b"))),
            &log,
        )),
    );

    let dst = t.path().join("target");
    let (mut rep, _) = store.restore_stage(&k, &dst, false, true);
    assert!(matches!(rep.restore, Restore::Hit { .. }), "{rep:?}");
    assert_eq!(rep.remote.as_ref().unwrap().restore, "local-hit");
    // Nothing changed: the save writes nothing and uploads nothing.
    let lines = store.save_stage(&k, &dst, &|_| false, true, &mut rep);
    assert!(matches!(rep.save, Some(Save::Unchanged { .. })), "{rep:?}");
    assert_eq!(rep.remote.as_ref().unwrap().upload, "");
    assert!(lines.is_empty(), "{lines:?}");
    assert!(store.finish(&mut [&mut rep]).is_empty());
    assert!(log.calls().is_empty(), "{:?}", log.calls());
}

#[test]
fn a_read_only_store_never_writes_either_tier() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let (local, remote) = (cache_at(&a), cache_at(&b));
    let k = key("repo-0123456789abcdef-0123456789abcdef");
    with_entry(&remote, &t.path().join("src"), &k, "from the fleet");
    // The fake remote's reads take a lease, whose lock file is created on first use (an S3
    // read writes nothing): create it before the snapshot.
    drop(LocalStorage::new(remote.clone()).lend(&k).unwrap());
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(local),
        Box::new(Counting::new(LocalStorage::new(remote), &log)),
    )
    .into_read_only();
    let (before_a, before_b) = (snapshot(&a), snapshot(&b));

    // A remote hit goes straight into the target dir, not into the local cache.
    let dst = t.path().join("target");
    let (mut rep, _) = store.restore_stage(&k, &dst, false, true);
    assert!(matches!(rep.restore, Restore::Hit { .. }), "{rep:?}");
    assert_eq!(rep.remote.as_ref().unwrap().restore, "hit");
    assert!(dst.join("debug/deps/libx.rlib").is_file());
    // A changed tree under a new key, saved as a trusted run would: nothing is written.
    std::fs::write(dst.join("debug/deps/new.rlib"), "new").unwrap();
    let k2 = key("repo-0123456789abcdef-fedcba9876543210");
    let mut rep2 = StageReport::new(&k2);
    let _ = store.save_stage(&k2, &dst, &|_| false, true, &mut rep2);
    assert_eq!(rep2.save, Some(Save::Skipped));
    assert!(store.finish(&mut [&mut rep, &mut rep2]).is_empty());

    assert_eq!(snapshot(&a), before_a, "the local cache was written");
    assert_eq!(snapshot(&b), before_b, "the remote was written");
    assert!(!log.calls().contains(&"put"), "{:?}", log.calls());
    // No download dir is left beside the target dir either.
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".bllvm-remote-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_remote_error_is_one_warning_and_later_stages_skip_the_remote() {
    let t = tempfile::tempdir().unwrap();
    let local = cache_at(&t.path().join("a"));
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(local.clone()),
        Box::new(Failing {
            probe_fails: false,
            log: log.clone(),
        }),
    );
    let (k1, k2) = (key("one-0-0"), key("two-0-0"));

    let (rep1, lines1) = store.restore_stage(&k1, &t.path().join("t1"), false, true);
    assert_eq!(rep1.restore, Restore::Miss);
    assert_eq!(rep1.remote.as_ref().unwrap().restore, "error");
    let w = rep1.warning.clone().unwrap();
    assert!(w.contains("failed, running without it"), "{w}");
    assert!(!w.contains(SECRET) && w.contains("***"), "{w}");
    assert!(lines1.iter().all(|l| !l.contains(SECRET)), "{lines1:?}");
    assert_eq!(lines1.len(), 1, "{lines1:?}");

    // The next stage does not ask again and says nothing more.
    let dst = t.path().join("t2");
    let (mut rep2, lines2) = store.restore_stage(&k2, &dst, false, true);
    assert_eq!(rep2.remote.as_ref().unwrap().restore, "off");
    assert_eq!(rep2.warning, None);
    assert!(lines2.is_empty(), "{lines2:?}");
    // Its save is local only: no upload to a remote that is off.
    tree(&dst, "built");
    let _ = store.save_stage(&k2, &dst, &|_| false, true, &mut rep2);
    assert!(matches!(rep2.save, Some(Save::Saved { .. })), "{rep2:?}");
    assert_eq!(rep2.remote.as_ref().unwrap().upload, "");
    assert!(store.finish(&mut [&mut rep2]).is_empty());
    assert_eq!(log.calls(), ["probe", "get"]);
    assert!(local.contains(&k2));
}

#[test]
fn a_remote_that_fails_its_probe_is_off_with_one_warning() {
    let t = tempfile::tempdir().unwrap();
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(cache_at(&t.path().join("a"))),
        Box::new(Failing {
            probe_fails: true,
            log: log.clone(),
        }),
    );
    let (rep1, _) = store.restore_stage(&key("one-0-0"), &t.path().join("t1"), false, true);
    let (rep2, _) = store.restore_stage(&key("two-0-0"), &t.path().join("t2"), false, true);
    assert_eq!(rep1.remote.as_ref().unwrap().restore, "off");
    let w = rep1.warning.unwrap();
    assert!(w.contains("unavailable, running without it"), "{w}");
    assert!(!w.contains(SECRET), "{w}");
    assert_eq!(rep2.remote.as_ref().unwrap().restore, "off");
    assert_eq!(rep2.warning, None);
    assert_eq!(log.calls(), ["probe"]);
}

#[test]
fn uploads_run_in_the_background_and_finish_waits_for_them() {
    let t = tempfile::tempdir().unwrap();
    let remote = cache_at(&t.path().join("b"));
    let log = Log::default();
    let (open, gate) = mpsc::channel();
    let mut fake = Counting::new(LocalStorage::new(remote.clone()), &log);
    fake.gate = Some(Mutex::new(gate));
    let store = Tiered::new(
        LocalStorage::new(cache_at(&t.path().join("a"))),
        Box::new(fake),
    );
    let k = key("repo-0123456789abcdef-0123456789abcdef");
    let dst = t.path().join("target");
    let (mut rep, _) = store.restore_stage(&k, &dst, false, true);
    assert_eq!(rep.remote.as_ref().unwrap().restore, "miss");

    tree(&dst, "built here");
    let _ = store.save_stage(&k, &dst, &|_| false, true, &mut rep);
    assert!(matches!(rep.save, Some(Save::Saved { .. })), "{rep:?}");
    // The save returned while the upload is still held at the gate.
    assert_eq!(rep.remote.as_ref().unwrap().upload, "pending");
    assert!(!remote.contains(&k));

    assert_eq!(store.pending_uploads(), 1);
    open.send(()).unwrap();
    let lines = store.finish(&mut [&mut rep]);
    assert_eq!(store.pending_uploads(), 0);
    assert!(
        lines[0].starts_with("remote cache: uploaded 1 entries"),
        "{lines:?}"
    );
    let st = rep.remote.as_ref().unwrap();
    assert_eq!(st.upload, "uploaded");
    assert!(st.upload_bytes > 0);
    assert!(remote.contains(&k));
    assert_eq!(log.calls(), ["probe", "get", "put"]);
}

#[test]
fn without_the_backend_a_configured_remote_is_one_warning_saying_how_to_build_it() {
    let s = crate::cache::settings::RemoteSettings {
        bucket: Some("b".into()),
        ..Default::default()
    };
    let cfg = RemoteConfig::resolve(Some(&s), true, &|_| None).unwrap();
    let line = without_remote_feature(&cfg);
    assert!(line.starts_with("warning: remote cache s3://b/"), "{line}");
    assert!(line.contains("--features remote"), "{line}");
    assert_eq!(line.lines().count(), 1);
    // Without the feature, `open` gives exactly that line and a local-only store.
    #[cfg(not(feature = "remote"))]
    {
        let t = tempfile::tempdir().unwrap();
        let (store, got) = Tiered::open(cache_at(t.path()), Some(&s), true, false);
        assert_eq!(got.as_deref(), Some(line.as_str()));
        assert!(store.remote.is_none());
    }
}

#[test]
fn a_damaged_remote_entry_is_quarantined_and_the_remote_stays_on() {
    let t = tempfile::tempdir().unwrap();
    let (local, remote) = (cache_at(&t.path().join("a")), cache_at(&t.path().join("b")));
    let bad = key("bad-0123456789abcdef-0123456789abcdef");
    let good = key("good-0123456789abcdef-0123456789abcdef");
    with_entry(&remote, &t.path().join("s1"), &bad, "tampered");
    with_entry(&remote, &t.path().join("s2"), &good, "whole");
    // Same size, same mtime, other bytes: only the content check of a download sees it.
    let f = remote.entry_dir(&bad).join("data/debug/deps/libx.rlib");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, "TAMPERED").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let log = Log::default();
    let store = Tiered::new(
        LocalStorage::new(local.clone()),
        Box::new(Counting::new(LocalStorage::new(remote.clone()), &log)),
    );
    let (rep, lines) = store.restore_stage(&bad, &t.path().join("t1"), false, true);
    assert_eq!(rep.restore, Restore::Miss);
    assert_eq!(rep.remote.as_ref().unwrap().restore, "error");
    let w = rep.warning.clone().unwrap_or_default();
    assert!(w.contains("damaged") && w.contains("quarantined"), "{w}");
    assert!(lines.iter().any(|l| l.contains("quarantined")), "{lines:?}");
    assert!(!remote.contains(&bad), "the damaged entry is still served");
    assert!(!local.contains(&bad), "nothing damaged lands locally");
    // The remote is still on: the next stage's key is fetched from it.
    let (rep, _) = store.restore_stage(&good, &t.path().join("t2"), false, true);
    assert!(matches!(rep.restore, Restore::Hit { .. }), "{rep:?}");
    assert_eq!(rep.remote.as_ref().unwrap().restore, "hit");
    assert_eq!(log.calls(), ["probe", "get", "quarantine", "get"]);
    // The build's save uploads a fresh entry under the key.
    let mut rep = crate::cache::report::StageReport::new(&bad);
    tree(&t.path().join("t1"), "rebuilt");
    store.save_stage(&bad, &t.path().join("t1"), &|_| false, true, &mut rep);
    store.finish(&mut [&mut rep]);
    assert_eq!(rep.remote.as_ref().unwrap().upload, "uploaded", "{rep:?}");
    assert!(remote.contains(&bad));

    // A read-only run reports it and changes nothing on the remote.
    let f = remote.entry_dir(&good).join("data/debug/deps/libx.rlib");
    let mtime = std::fs::metadata(&f).unwrap().modified().unwrap();
    std::fs::write(&f, "WHOLE").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let ro = Tiered::new(
        LocalStorage::new(cache_at(&t.path().join("c"))),
        Box::new(LocalStorage::new(remote.clone())),
    )
    .into_read_only();
    let (rep, _) = ro.restore_stage(&good, &t.path().join("t3"), false, true);
    assert!(rep.warning.unwrap_or_default().contains("read-only"));
    assert!(remote.contains(&good));
}
