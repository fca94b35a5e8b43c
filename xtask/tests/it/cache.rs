//! The cache engine across processes: concurrent savers, readers during a write, a killed
//! saver, damaged entries, read-only restores, and concurrent `ci` runs sharing one cache
//! root. Real processes (the xtask binary's `cache put`/`cache get`/`ci`), real files.
//!
//! Savers are held at the point of publishing with a gate file
//! (`BLLVM_CI_CACHE_TEST_GATE`): each writes its whole entry under `tmp/`, creates
//! `<gate>.waiting.<pid>` and waits for `<gate>` to exist. The tests wait for those markers
//! (never for a duration), so every interleaving below is forced, not hoped for.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, xtask};

const GATE: &str = "BLLVM_CI_CACHE_TEST_GATE";

/// A tree of `n` files whose every byte is `fill`, in nested dirs, like a small target.
fn make_tree(dir: &Path, n: usize, fill: u8) {
    for i in 0..n {
        let p = dir.join(format!("debug/deps/d{}/f{i}.rlib", i % 13));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![fill; 100 + i * 7]).unwrap();
    }
}

/// `cache put` as a child process held at the gate.
fn spawn_put(root: &Path, key: &str, src: &Path, gate: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args([
            "cache",
            "put",
            "--manifest",
            "/nonexistent.toml",
            "--cache-dir",
        ])
        .arg(root)
        .args(["--key", key, "--src"])
        .arg(src)
        .env(GATE, gate)
        .env_remove("BLLVM_CI_CACHE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Wait until `n` savers are parked at `gate` (bounded, so a broken saver fails the test
/// instead of hanging it; the bound is generous and not what is tested).
fn wait_parked(gate: &Path, n: usize, children: &mut [&mut Child]) {
    let dir = gate.parent().unwrap();
    let prefix = format!("{}.waiting.", gate.file_name().unwrap().to_str().unwrap());
    let start = Instant::now();
    loop {
        let parked = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_str().unwrap().starts_with(&prefix))
            .count();
        if parked >= n {
            return;
        }
        for c in children.iter_mut() {
            if let Some(st) = c.try_wait().unwrap() {
                panic!("a saver exited before reaching the gate: {st}");
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "savers never reached the gate"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn get(root: &Path, key: &str, dst: &Path, read_only: bool) -> (serde_json::Value, String) {
    let mut c = xtask();
    c.args([
        "cache",
        "get",
        "--manifest",
        "/nonexistent.toml",
        "--cache-dir",
    ])
    .arg(root)
    .args(["--key", key, "--dst"])
    .arg(dst);
    if read_only {
        c.arg("--read-only");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn cache_cmd(root: &Path, args: &[&str]) -> (i32, String) {
    let out = xtask()
        .args(["cache"])
        .args(&args[..1])
        .args(["--manifest", "/nonexistent.toml", "--cache-dir"])
        .arg(root)
        .args(&args[1..])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn entry_dirs(root: &Path) -> Vec<PathBuf> {
    fs::read_dir(root.join("entries/target"))
        .map(|rd| rd.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

fn dir_names(p: &Path) -> Vec<String> {
    fs::read_dir(p)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir` with its bytes.
fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().to_path_buf(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn two_savers_of_one_key_publish_one_whole_entry() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    make_tree(&a, 400, b'a');
    make_tree(&b, 400, b'b');
    let gate = t.path().join("gate");
    let mut pa = spawn_put(&root, "r-base-env-lock", &a, &gate);
    let mut pb = spawn_put(&root, "r-base-env-lock", &b, &gate);
    // Both have written a complete entry under tmp/ and now race to publish it.
    wait_parked(&gate, 2, &mut [&mut pa, &mut pb]);
    assert!(
        entry_dirs(&root).is_empty(),
        "nothing is visible before a publish"
    );
    fs::write(&gate, b"").unwrap();
    let oa = pa.wait_with_output().unwrap();
    let ob = pb.wait_with_output().unwrap();
    assert!(oa.status.success() && ob.status.success());
    let mut outcomes: Vec<String> = [&oa, &ob]
        .iter()
        .map(|o| {
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            v["status"].as_str().unwrap().to_owned()
        })
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["exists", "saved"]);
    assert_eq!(entry_dirs(&root).len(), 1);
    assert!(
        dir_names(&root.join("tmp")).is_empty(),
        "the loser cleaned up its tmp dir"
    );
    let (code, out) = cache_cmd(&root, &["verify"]);
    assert_eq!(code, 0, "{out}");
    // The entry is one saver's tree, whole: never a mix of both.
    let dst = t.path().join("restored");
    let (r, _) = get(&root, "r-base-env-lock", &dst, true);
    assert_eq!(r["status"], "hit");
    let got = contents(&dst);
    assert!(
        got == contents(&a) || got == contents(&b),
        "the entry mixes both savers"
    );
}

#[test]
fn a_reader_during_a_write_sees_no_entry_then_the_whole_entry() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let src = t.path().join("src");
    make_tree(&src, 300, b'x');
    let gate = t.path().join("gate");
    let mut p = spawn_put(&root, "r-base-env-lock", &src, &gate);
    wait_parked(&gate, 1, &mut [&mut p]);
    // The whole entry is on disk under tmp/, one rename away from being published.
    assert_eq!(dir_names(&root.join("tmp")).len(), 1);
    let (r, _) = get(&root, "r-base-env-lock", &t.path().join("d1"), true);
    assert_eq!(
        r["status"], "miss",
        "a reader saw an entry before its publish"
    );
    let (_, list) = cache_cmd(&root, &["list"]);
    assert!(list.contains(": 0 entries"), "{list}");
    assert_eq!(
        dir_names(&root.join("tmp")).len(),
        1,
        "a live writer's tmp dir is kept"
    );
    fs::write(&gate, b"").unwrap();
    assert!(p.wait().unwrap().success());
    let dst = t.path().join("d2");
    let (r, _) = get(&root, "r-base-env-lock", &dst, true);
    assert_eq!(r["status"], "hit");
    assert_eq!(contents(&dst), contents(&src));
}

#[test]
fn a_killed_saver_leaves_no_entry_and_the_next_run_cleans_up() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let src = t.path().join("src");
    make_tree(&src, 300, b'k');
    let gate = t.path().join("gate");
    let mut p = spawn_put(&root, "r-base-env-lock", &src, &gate);
    wait_parked(&gate, 1, &mut [&mut p]);
    p.kill().unwrap(); // SIGKILL: no destructor, no cleanup of its own
    p.wait().unwrap();
    assert_eq!(
        dir_names(&root.join("tmp")).len(),
        1,
        "the killed saver left its tmp dir"
    );
    assert!(
        entry_dirs(&root).is_empty(),
        "a killed saver published nothing"
    );
    // The next command that opens the cache removes the dead writer's leftovers.
    let (code, out) = cache_cmd(&root, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(": 0 entries"), "{out}");
    assert!(
        dir_names(&root.join("tmp")).is_empty(),
        "leftovers survived: {:?}",
        dir_names(&root.join("tmp"))
    );
    let (r, _) = get(&root, "r-base-env-lock", &t.path().join("d"), false);
    assert_eq!(r["status"], "miss");
}

#[test]
fn a_damaged_entry_is_detected_and_discarded() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let src = t.path().join("src");
    make_tree(&src, 50, b'd');
    let out = xtask()
        .args([
            "cache",
            "put",
            "--manifest",
            "/nonexistent.toml",
            "--cache-dir",
        ])
        .arg(&root)
        .args(["--key", "r-base-env-lock", "--src"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(cache_cmd(&root, &["verify"]).0, 0);

    // Flip bytes without changing size or mtime: only the content check sees it.
    let entry = &entry_dirs(&root)[0];
    let f = entry.join("data/debug/deps/d3/f3.rlib");
    let mtime = fs::metadata(&f).unwrap().modified().unwrap();
    let mut bytes = fs::read(&f).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&f, &bytes).unwrap();
    fs::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (code, out) = cache_cmd(&root, &["verify"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("DAMAGED") && out.contains("f3.rlib"), "{out}");
    assert_eq!(
        cache_cmd(&root, &["verify", "--quick"]).0,
        0,
        "quick checks stat only"
    );

    // Truncation (an interrupted write, a full disk) is caught by every restore, which
    // discards the entry and reports a miss so the build starts clean.
    fs::write(entry.join("data/debug/deps/d4/f4.rlib"), b"short").unwrap();
    let dst = t.path().join("d");
    let (r, notes) = get(&root, "r-base-env-lock", &dst, false);
    assert_eq!(r["status"], "miss");
    assert!(
        notes.contains("damaged") && notes.contains("f4.rlib"),
        "{notes}"
    );
    assert!(
        entry_dirs(&root).is_empty(),
        "the damaged entry was not discarded"
    );
    assert!(
        !dst.join("debug").exists(),
        "nothing of the damaged entry was restored"
    );
}

#[test]
fn a_read_only_restore_never_writes_under_the_root() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let src = t.path().join("src");
    make_tree(&src, 50, b'r');
    let out = xtask()
        .args([
            "cache",
            "put",
            "--manifest",
            "/nonexistent.toml",
            "--cache-dir",
        ])
        .arg(&root)
        .args(["--key", "r-base-env-l1", "--src"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    let snapshot = |root: &Path| -> BTreeMap<PathBuf, (u64, std::time::SystemTime)> {
        walkdir::WalkDir::new(root)
            .into_iter()
            .flatten()
            .map(|e| {
                let m = e.metadata().unwrap();
                (e.path().to_path_buf(), (m.len(), m.modified().unwrap()))
            })
            .collect()
    };
    let before = snapshot(&root);
    // Exact miss, partial hit by copy: a writable cache would have moved the entry out,
    // recorded its use and logged the event.
    let dst = t.path().join("d");
    let (r, _) = get(&root, "r-base-env-l2", &dst, true);
    assert_eq!(r["status"], "partial");
    assert_eq!(r["strategy"], "copied");
    assert_eq!(contents(&dst), contents(&src));
    assert_eq!(
        snapshot(&root),
        before,
        "a read-only restore wrote under the cache root"
    );
}

/// `ci` on a fresh copy of the sample chain at `chain` with the cargo home `home`. Every
/// repo's `src/lib.rs` gets a comment naming the copy, so each job really builds (a run
/// whose sources match a recorded success may be skipped otherwise).
fn ci(chain: &Path, cache: &Path, home: &Path, run_dir: &Path) -> Command {
    let m = support::copy_sample(chain);
    for e in fs::read_dir(chain).unwrap().flatten() {
        let lib = e.path().join("src/lib.rs");
        if lib.is_file() {
            let mut text = fs::read_to_string(&lib).unwrap();
            text += &format!("\n// built as {}\n", chain.display());
            fs::write(&lib, text).unwrap();
        }
    }
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["ci", "--quiet", "--manifest"])
        .arg(m)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir)
        .env("CARGO_HOME", home)
        .env_remove("BLLVM_CI_CACHE_DIR")
        .env_remove("GITHUB_EVENT_NAME")
        .env_remove("GITHUB_ACTIONS")
        // A shared target dir from the caller would put every repo's build in one place.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

#[test]
fn concurrent_ci_runs_share_one_cache_root_without_damage() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let home = t.path().join("home");
    let out = ci(&t.path().join("c0"), &cache, &home, &t.path().join("r0"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s0 = support::summary(&t.path().join("r0"));
    let node = support::repo(&s0, "bllvm-node");
    let saved = &node["cache"][0]["save"];
    assert_eq!(saved["status"], "saved", "{node}");
    // Pruning: the entry keeps dependency artifacts only, a fraction of the raw tree.
    assert!(
        saved["bytes"].as_u64().unwrap() * 2 <= saved["raw_bytes"].as_u64().unwrap(),
        "{saved}"
    );

    // Two jobs of the same chain at once on one runner, sharing the cache root. The
    // checkouts sit at the same path relative to each job's dir, as on real runners,
    // but each job has its own.
    // Each job has its own cargo home (as separate runner users do); the cache root is
    // what they share.
    let a = ci(
        &t.path().join("ja/chain"),
        &cache,
        &t.path().join("ha"),
        &t.path().join("ra"),
    )
    .spawn()
    .unwrap();
    let b = ci(
        &t.path().join("jb/chain"),
        &cache,
        &t.path().join("hb"),
        &t.path().join("rb"),
    )
    .spawn()
    .unwrap();
    let (oa, ob) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(
        oa.status.success(),
        "{}",
        String::from_utf8_lossy(&oa.stdout)
    );
    assert!(
        ob.status.success(),
        "{}",
        String::from_utf8_lossy(&ob.stdout)
    );
    for run in ["ra", "rb"] {
        let s = support::summary(&t.path().join(run));
        for name in [
            "bllvm-primitives",
            "bllvm-consensus",
            "bllvm-protocol",
            "bllvm-node",
        ] {
            let r = support::repo(&s, name);
            assert_eq!(r["status"], "ok", "{r}");
            assert!(r["cache"][0]["save"]["status"].is_string(), "{r}");
        }
    }
    // Whatever the interleaving (one job moved an entry, the other copied it, missed,
    // or found it taken), every entry left is whole and nothing is half-written.
    let (code, out) = cache_cmd(&cache, &["verify"]);
    assert_eq!(code, 0, "{out}");
    assert!(
        !out.contains("held"),
        "a finished job still holds an entry: {out}"
    );
    assert!(dir_names(&cache.join("tmp")).is_empty());
    let targets = dir_names(&cache.join("entries/target"));
    assert!(
        targets.iter().any(|k| k.starts_with("bllvm-node-base-")),
        "{targets:?}"
    );
}

#[test]
fn a_job_that_dies_holding_a_moved_entry_frees_it_for_cleanup() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let src = t.path().join("src");
    make_tree(&src, 20, b'm');
    let out = xtask()
        .args([
            "cache",
            "put",
            "--manifest",
            "/nonexistent.toml",
            "--cache-dir",
        ])
        .arg(&root)
        .args(["--key", "r-base-env-lock", "--src"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success());
    // `get` moves the entry out under its exclusive lease and exits without saving, as a
    // job killed mid-build would: the OS drops the lease, the stub stays listed.
    let dst = t.path().join("d");
    let (r, _) = get(&root, "r-base-env-lock", &dst, false);
    assert_eq!(r["status"], "hit");
    assert_eq!(r["strategy"], "moved");
    assert_eq!(contents(&dst), contents(&src));
    let stub = &entry_dirs(&root)[0];
    assert!(stub.join("entry.json").is_file() && !stub.join("data").exists());
    // The next open sees a stub whose lease is free, so its holder is gone: removed.
    let (code, out) = cache_cmd(&root, &["list"]);
    assert_eq!(code, 0);
    assert!(out.contains(": 0 entries"), "{out}");
    assert!(entry_dirs(&root).is_empty());
}

#[test]
fn prune_applies_the_manifests_cache_settings() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    // The sample manifest with a `[cache]` table: one entry per stage.
    let manifest = t.path().join("chain.toml");
    let mut text = fs::read_to_string(support::workspace().join("ci/sample/chain.toml")).unwrap();
    text += "\n[cache]\nmax-entries-per-stage = 1\n";
    fs::write(&manifest, text).unwrap();
    let src = t.path().join("src");
    make_tree(&src, 5, b'p');
    for k in ["r-base-env-l1", "r-base-env-l2", "r-base-env-l3"] {
        // Saved without the manifest (defaults: 32 per stage), so all three stay.
        let out = xtask()
            .args([
                "cache",
                "put",
                "--manifest",
                "/nonexistent.toml",
                "--cache-dir",
            ])
            .arg(&root)
            .args(["--key", k, "--src"])
            .arg(&src)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    assert_eq!(entry_dirs(&root).len(), 3);
    let prune = |dry: bool| {
        let mut c = xtask();
        c.args(["cache", "prune", "--manifest"])
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(&root);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = prune(true);
    assert!(out.contains("would evict 2 entries"), "{out}");
    assert!(out.contains("over 1 entries in stage target"), "{out}");
    assert_eq!(entry_dirs(&root).len(), 3, "a dry run evicts nothing");
    let out = prune(false);
    assert!(out.contains("evicted 2 entries"), "{out}");
    assert_eq!(entry_dirs(&root).len(), 1);
}
