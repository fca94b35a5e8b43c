//! The result store: local records, shared records through a remote tier (a second
//! local cache root stands in for the bucket), and records that must be ignored.

use super::*;
use crate::cache::storage::{LocalStorage, Storage};
use crate::cache::Cache;

fn fp(content: &str) -> Fingerprint {
    Fingerprint::new(vec![("content".into(), content.into())])
}

fn record(repo: &str, fp: &Fingerprint, status: &str) -> Record {
    Record {
        schema_version: SCHEMA_VERSION,
        repo: repo.into(),
        fingerprint: fp.hash.clone(),
        inputs: fp.inputs.clone(),
        status: serde_json::from_value(serde_json::json!(status)).unwrap(),
        run_id: "run-1".into(),
        finished_unix: 1,
        steps: vec![RecordedStep {
            name: "build".into(),
            secs: 1.5,
        }],
    }
}

/// A step log file under `dir`.
fn log(dir: &Path) -> Vec<(String, PathBuf)> {
    fs::create_dir_all(dir).unwrap();
    let p = dir.join("build.log");
    fs::write(&p, "Compiling solo\n").unwrap();
    vec![("build".into(), p)]
}

/// A store in front of the "bucket" at `bucket`, its cache root at `root`.
fn tiered(root: &Path, bucket: &Path, writable: bool) -> Tiered {
    let local = if writable {
        Cache::open(root).unwrap()
    } else {
        Cache::open_read_only(root)
    };
    let remote: Box<dyn Storage> = Box::new(LocalStorage::new(Cache::open(bucket).unwrap()));
    let t = Tiered::new(LocalStorage::new(local), remote);
    if writable {
        t
    } else {
        t.into_read_only()
    }
}

#[test]
fn successes_are_recorded_and_failures_are_not() {
    let t = tempfile::tempdir().unwrap();
    let r = Results::new(t.path());
    let f = fp("a");
    let logs = log(&t.path().join("run"));
    r.record(&f, &record("solo", &f, "failed"), &logs).unwrap();
    assert!(r.get("solo", &f.hash).is_none());
    assert_eq!(r.last("solo").unwrap().status, RecordStatus::Failed);
    r.record(&f, &record("solo", &f, "ok"), &logs).unwrap();
    assert_eq!(r.get("solo", &f.hash).unwrap().steps[0].name, "build");
    assert_eq!(r.logs("solo", &f.hash).len(), 1);
    assert!(r.take_warnings().is_empty());
}

/// Write `rec` as the record of `solo` at `f` by hand, as a damaged or hostile cache root
/// would hold it.
fn plant(root: &Path, f: &Fingerprint, bytes: &[u8]) -> PathBuf {
    let dir = root.join("results/solo").join(&f.hash);
    fs::create_dir_all(dir.join("logs")).unwrap();
    fs::write(dir.join("record.json"), bytes).unwrap();
    dir
}

#[test]
fn damaged_and_hostile_records_are_ignored_with_a_warning() {
    let f = fp("a");
    let good = record("solo", &f, "ok");
    type Edit = Box<dyn Fn(&mut Record)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("another repo", Box::new(|r| r.repo = "other".into())),
        (
            "another fingerprint",
            Box::new(|r| r.fingerprint = fp("b").hash),
        ),
        ("a failure", Box::new(|r| r.status = RecordStatus::Failed)),
        (
            "inputs that hash elsewhere",
            Box::new(|r| r.inputs[1].1 = "b".into()),
        ),
        ("a newer format", Box::new(|r| r.schema_version = 99)),
        (
            "a step name that leaves the logs dir",
            Box::new(|r| r.steps[0].name = "../../../etc/passwd".into()),
        ),
    ];
    for (what, edit) in edits {
        let t = tempfile::tempdir().unwrap();
        let mut rec = good.clone();
        edit(&mut rec);
        plant(t.path(), &f, &serde_json::to_vec(&rec).unwrap());
        let r = Results::new(t.path());
        assert!(r.get("solo", &f.hash).is_none(), "{what}: believed");
        assert!(r.logs("solo", &f.hash).is_empty(), "{what}");
        let w = r.take_warnings();
        assert!(w.len() == 1 && w[0].contains("ignored"), "{what}: {w:?}");
    }
    // Not JSON, too large, or not a regular file.
    let t = tempfile::tempdir().unwrap();
    plant(t.path(), &f, b"{ not json");
    let r = Results::new(t.path());
    assert!(r.get("solo", &f.hash).is_none());
    assert!(r.take_warnings()[0].contains("parse"));
    let big = vec![b' '; MAX_RECORD_BYTES as usize + 1];
    plant(t.path(), &f, &big);
    assert!(r.get("solo", &f.hash).is_none());
    assert!(r.take_warnings()[0].contains("bytes (at most"));
    let dir = plant(t.path(), &f, b"");
    let elsewhere = t.path().join("elsewhere.json");
    fs::write(&elsewhere, serde_json::to_vec(&good).unwrap()).unwrap();
    fs::remove_file(dir.join("record.json")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("record.json")).unwrap();
    assert!(r.get("solo", &f.hash).is_none());
    // O_NOFOLLOW: the open itself refuses the link (ELOOP).
    assert!(r.take_warnings()[0].contains("symbolic links"));
    // A whole record whose log is a symlink to elsewhere: the record counts, the log is
    // never read through the link.
    fs::remove_file(dir.join("record.json")).unwrap();
    fs::write(dir.join("record.json"), serde_json::to_vec(&good).unwrap()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.join("logs/build.log")).unwrap();
    assert!(r.get("solo", &f.hash).is_some());
    assert!(r.logs("solo", &f.hash).is_empty());
    // A `last.json` of another repo is not this repo's last run.
    let mut other = good.clone();
    other.repo = "other".into();
    fs::write(
        t.path().join("results/solo/last.json"),
        serde_json::to_vec(&other).unwrap(),
    )
    .unwrap();
    assert!(r.last("solo").is_none());
}

#[test]
fn a_success_recorded_on_one_runner_is_found_by_every_runner_of_the_remote() {
    let t = tempfile::tempdir().unwrap();
    let bucket = t.path().join("bucket");
    let f = fp("a");
    let logs = log(&t.path().join("run"));

    // Runner A records a success and shares it; `finish` waits for the upload.
    let a = tiered(&t.path().join("a"), &bucket, true);
    let ra = Results::shared(&a);
    ra.record(&f, &record("solo", &f, "ok"), &logs).unwrap();
    assert_eq!(a.pending_uploads(), 1);
    assert!(
        a.finish(&mut []).iter().all(|l| !l.contains("warning")),
        "upload failed"
    );
    // A failure is never shared.
    let g = fp("b");
    ra.record(&g, &record("solo", &g, "failed"), &logs).unwrap();
    assert_eq!(a.pending_uploads(), 0);

    // Runner B (fresh cache root) finds it, keeps it, and can replay its logs.
    let b_root = t.path().join("b");
    let b = tiered(&b_root, &bucket, true);
    let rb = Results::shared(&b);
    assert_eq!(rb.get("solo", &f.hash).unwrap().run_id, "run-1");
    assert!(b_root
        .join("results/solo")
        .join(&f.hash)
        .join("record.json")
        .is_file());
    assert_eq!(rb.logs("solo", &f.hash).len(), 1);
    assert!(rb.get("solo", &g.hash).is_none());
    assert!(rb.take_warnings().is_empty());
    // Without the remote, B's cache root alone now answers.
    assert!(Results::new(&b_root).get("solo", &f.hash).is_some());

    // A read-only runner (an untrusted event) finds it too and writes nothing.
    let c_root = t.path().join("c");
    let c = tiered(&c_root, &bucket, false);
    let rc = Results::shared(&c);
    assert!(rc.get("solo", &f.hash).is_some());
    assert!(
        !c_root.exists(),
        "a read-only run wrote under its cache root"
    );
    // ... and shares nothing of its own.
    let h = fp("c");
    let rc_local = Results::shared(&c);
    let _ = rc_local.share("solo", &h.hash, &t.path().join("run"));
    assert_eq!(c.pending_uploads(), 0);
}

#[test]
fn a_hostile_shared_record_is_ignored_with_a_warning_and_never_kept() {
    let t = tempfile::tempdir().unwrap();
    let bucket = t.path().join("bucket");
    let f = fp("a");
    let writer = tiered(&t.path().join("w"), &bucket, true);
    // A writer of the bucket stores, under solo's key at `f`, a record of another
    // fingerprint; under `g`, a whole record with an extra executable beside it.
    let put = |fp: &Fingerprint, rec: &Record, extra: bool| {
        let src = t.path().join(format!("src-{}", fp.short()));
        fs::create_dir_all(src.join("logs")).unwrap();
        fs::write(src.join("record.json"), serde_json::to_vec(rec).unwrap()).unwrap();
        if extra {
            fs::write(src.join("logs/payload.sh"), "#!/bin/sh\n").unwrap();
        }
        let key = remote_key("solo", &fp.hash).unwrap();
        assert!(writer.share_tree(&key, &src).unwrap());
        writer.finish(&mut []);
    };
    put(&f, &record("solo", &fp("other"), "ok"), false);
    let g = fp("b");
    put(&g, &record("solo", &g, "ok"), true);

    let root = t.path().join("r");
    let r = Results::shared(&tiered(&root, &bucket, true));
    for (x, why) in [(&f, "fingerprint"), (&g, "payload.sh")] {
        assert!(r.get("solo", &x.hash).is_none());
        let w = r.take_warnings();
        assert!(w.len() == 1 && w[0].contains(why), "{w:?}");
        assert!(!root.join("results/solo").join(&x.hash).exists());
    }
    // The remote stays on: a bad record is the record's fault, not the store's.
    let h = fp("c");
    let logs = log(&t.path().join("run"));
    writer_record(&writer, &h, &logs);
    assert!(r.get("solo", &h.hash).is_some());
    // No temporary dirs are left under the results.
    let names: Vec<String> = fs::read_dir(root.join("results/solo"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec![h.hash.clone()], "{names:?}");
}

fn writer_record(writer: &Tiered, f: &Fingerprint, logs: &[(String, PathBuf)]) {
    let w = Results::shared(writer);
    w.record(f, &record("solo", f, "ok"), logs).unwrap();
    writer.finish(&mut []);
}

#[test]
fn remote_keys_are_only_made_of_valid_names_and_hex_fingerprints() {
    let f = fp("a");
    let k = remote_key("bllvm-node", &f.hash).unwrap();
    assert_eq!(k.stage, Stage::Result);
    assert_eq!(k.key, format!("bllvm-node-{}", f.hash));
    assert!(remote_key("bllvm-node", "../../x").is_none());
    assert!(remote_key("../x", &f.hash).is_none());
    assert!(remote_key(&"r".repeat(200), &f.hash).is_none());
}

fn with_steps(mut rec: Record, repo: &str, status: &str, steps: &[&str]) -> Record {
    rec.repo = repo.into();
    rec.status = serde_json::from_value(serde_json::json!(status)).unwrap();
    rec.steps = steps
        .iter()
        .map(|s| RecordedStep {
            name: (*s).into(),
            secs: 1.0,
        })
        .collect();
    rec
}

#[test]
fn a_record_counts_only_for_its_own_repo_fingerprint_and_safe_steps() {
    let t = tempfile::tempdir().unwrap();
    let store = Results::new(t.path());
    let f = fp("a");
    let logs = log(&t.path().join("run"));
    store.record(&f, &record("a", &f, "ok"), &logs).unwrap();
    assert!(store.get("a", &f.hash).is_some());
    assert_eq!(store.logs("a", &f.hash).len(), 1);
    let path = t.path().join("results/a").join(&f.hash).join("record.json");
    let write = |r: &Record| fs::write(&path, serde_json::to_vec(r).unwrap()).unwrap();
    // Another repo's record, another fingerprint, a failure, a hostile step name: no
    // record (the repo builds), and no path is built from the step name.
    let mut other_fp = record("a", &f, "ok");
    other_fp.fingerprint = "ffff".into();
    for bad in [
        with_steps(record("a", &f, "ok"), "b", "ok", &["build"]),
        other_fp,
        with_steps(record("a", &f, "ok"), "a", "failed", &["build"]),
        with_steps(
            record("a", &f, "ok"),
            "a",
            "ok",
            &["../../../../etc/passwd"],
        ),
        with_steps(record("a", &f, "ok"), "a", "ok", &["x/y"]),
    ] {
        write(&bad);
        assert!(store.get("a", &f.hash).is_none(), "{:?}", bad.steps);
        assert!(store.logs("a", &f.hash).is_empty());
    }
    // Garbage, non-UTF-8 and a FIFO: absent, never a panic or a hang.
    fs::write(&path, [0xff, 0xfe, b'{']).unwrap();
    assert!(store.get("a", &f.hash).is_none());
    fs::remove_file(&path).unwrap();
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    assert!(store.get("a", &f.hash).is_none());
    // A later successful run replaces the garbage instead of "existing" forever.
    store.record(&f, &record("a", &f, "ok"), &logs).unwrap();
    assert!(store.get("a", &f.hash).is_some());
    // Names that are not one safe component are never looked up or written.
    assert!(store.get("../x", &f.hash).is_none());
    assert!(store.last("..").is_none());
    assert!(store
        .record(&f, &record("a/../../x", &f, "ok"), &[])
        .is_err());
    assert!(!t.path().join("x").exists());
}

#[test]
fn a_symlinked_store_dir_is_replaced_not_written_through() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::create_dir_all(t.path().join("cache/results")).unwrap();
    std::os::unix::fs::symlink(&victim, t.path().join("cache/results/a")).unwrap();
    let store = Results::new(&t.path().join("cache"));
    let f = fp("a");
    store.record(&f, &record("a", &f, "ok"), &[]).unwrap();
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0);
    assert!(store.get("a", &f.hash).is_some());
}
