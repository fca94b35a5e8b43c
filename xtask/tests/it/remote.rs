//! The remote cache against a real S3 server (SeaweedFS, see `seaweed.rs`): runners that
//! share entries through a bucket, first writer wins, faults that degrade to a clean
//! uncached build, read-only runs. Only the timeout uses a mock (a socket that never
//! answers), as a real server cannot be made to stall on demand.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::seaweed::{self, Seaweed, SECRET_KEY};
use crate::support;

/// One runner: its own cache root and run dirs under `dir`; the cargo home at `home`.
/// Fleet runners share the cargo home's *path* (it is part of target keys, as cargo
/// fingerprints registry crates by their source path), so tests give runners one path.
struct Runner {
    dir: PathBuf,
    home: PathBuf,
}

impl Runner {
    fn new(base: &Path, name: &str) -> Runner {
        Runner {
            dir: base.join(name),
            home: base.join("home"),
        }
    }
    fn cache(&self) -> PathBuf {
        self.dir.join("cache")
    }
    fn run_dir(&self, n: usize) -> PathBuf {
        self.dir.join(format!("run{n}"))
    }
    /// `ci` of `manifest` (already in place) with `env` (the remote), run `n`.
    fn ci(&self, manifest: &Path, env: &[(String, String)], n: usize, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.args(["ci", "--quiet", "--manifest"])
            .arg(manifest)
            .arg("--cache-dir")
            .arg(self.cache())
            .arg("--run-dir")
            .arg(self.run_dir(n))
            .args(extra)
            .env("CARGO_HOME", &self.home)
            .env_remove("BLLVM_CI_CACHE_DIR")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("GITHUB_EVENT_NAME")
            .env_remove("GITHUB_EVENT_PATH")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn run_ok(c: &mut Command) -> String {
    let o = c.output().unwrap();
    let t = text(&o);
    assert!(o.status.success(), "ci failed:\n{t}");
    t
}

/// The secret must be nowhere: not in output, not in the summary.
fn assert_no_secret(out: &str, run_dir: &Path, secret: &str) {
    assert!(!out.contains(secret), "the secret key was printed:\n{out}");
    let summary = fs::read_to_string(run_dir.join("summary.json")).unwrap_or_default();
    assert!(
        !summary.contains(secret),
        "the secret key is in summary.json"
    );
}

/// A one-repo fixture chain (no registry dependencies: quick to build).
fn small_at(r: &Runner) -> PathBuf {
    no_disk_guard(support::write_chain(
        &r.dir.join("chain"),
        &[("solo", &[])],
        &[],
    ))
}

/// Turn the local disk guard off in `manifest`: these tests are about the remote, and a
/// busy shared disk must not turn their saves into `no-space`.
fn no_disk_guard(manifest: PathBuf) -> PathBuf {
    let mut text = fs::read_to_string(&manifest).unwrap();
    text += "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n";
    fs::write(&manifest, text).unwrap();
    manifest
}

fn target_stages(summary: &serde_json::Value) -> Vec<(String, serde_json::Value)> {
    summary["repos"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let c = r["cache"].as_array()?.first()?.clone();
            Some((r["name"].as_str().unwrap().to_owned(), c))
        })
        .collect()
}

/// Concatenated step logs of a run.
fn logs(run_dir: &Path) -> String {
    walkdir::WalkDir::new(run_dir)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
        .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
        .collect()
}

fn verify_local(cache: &Path) {
    let o = support::xtask()
        .args(["cache", "verify", "--cache-dir"])
        .arg(cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "local cache damaged:\n{}", text(&o));
}

/// Every stage warning of a run (chain-wide stages and repos).
fn warnings(summary: &serde_json::Value) -> String {
    let mut w = String::new();
    let chain = summary["chain_cache"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let stages = chain
        .into_iter()
        .chain(target_stages(summary).into_iter().map(|(_, s)| s));
    for st in stages {
        if let Some(s) = st["warning"].as_str() {
            w += s;
            w.push('\n');
        }
    }
    w
}

#[test]
fn two_runners_share_entries_through_the_bucket() {
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let env = server.env(SECRET_KEY);

    // Two machines with the same layout, one after the other: each has the checkout at
    // `work/chain` and the cargo home at `work/home`; A's are moved away before B starts
    // (B's cargo home and checkout are fresh, its cache root empty).
    let work = t.path().join("work");
    let machine = |name: &str| Runner {
        dir: t.path().join(name),
        home: work.join("home"),
    };
    // Runner A builds the sample chain from nothing and uploads every entry.
    let a = machine("a");
    let ma = no_disk_guard(support::copy_sample(&work.join("chain")));
    let out_a = run_ok(&mut a.ci(&ma, &env, 0, &[]));
    assert_no_secret(&out_a, &a.run_dir(0), SECRET_KEY);
    assert!(
        out_a.contains("remote cache: s3://bllvm-ci-cache/"),
        "{out_a}"
    );
    let sa = support::summary(&a.run_dir(0));
    let stages_a = target_stages(&sa);
    assert!(stages_a.len() >= 4, "{sa}");
    for (name, st) in &stages_a {
        assert_eq!(st["remote"]["restore"], "miss", "{name}: {st}");
        assert_eq!(st["remote"]["upload"], "uploaded", "{name}: {st}");
        assert!(st["remote"]["upload_bytes"].as_u64().unwrap() > 0, "{st}");
    }
    let objects = server.objects();
    for (name, st) in &stages_a {
        let key = st["key"].as_str().unwrap();
        let marker = format!("target/{key}/entry.json");
        assert!(
            objects.contains(&marker),
            "{name}: {marker} not in {objects:?}"
        );
        assert!(
            objects
                .iter()
                .any(|o| o.starts_with(&format!("target/{key}/")) && o.ends_with("/data.tar.zst")),
            "{objects:?}"
        );
    }
    let logs_a = logs(&a.run_dir(0));
    assert!(
        logs_a.contains("Compiling itoa"),
        "runner A must build the registry crate: {logs_a}"
    );

    // Runner B: another machine (own cache root and cargo home, same checkout layout).
    // Its first build restores every target entry from the bucket and recompiles no
    // dependency crate. (`--force`: without it every repo is `cached` on A's shared
    // result records, `persistence.rs` shows that; here the target entries are tested.)
    fs::rename(&work, t.path().join("a-work")).unwrap();
    let b = machine("b");
    let mb = no_disk_guard(support::copy_sample(&work.join("chain")));
    let out_b = run_ok(&mut b.ci(&mb, &env, 0, &["--force"]));
    assert_no_secret(&out_b, &b.run_dir(0), SECRET_KEY);
    let sb = support::summary(&b.run_dir(0));
    for (name, st) in target_stages(&sb) {
        assert_eq!(st["remote"]["restore"], "hit", "{name}: {st}");
        assert_eq!(st["restore"]["status"], "hit", "{name}: {st}");
        assert!(st["remote"]["restore_bytes"].as_u64().unwrap() > 0, "{st}");
        assert!(st["warning"].is_null(), "{name}: {st}");
    }
    let logs_b = logs(&b.run_dir(0));
    assert!(
        !logs_b.contains("Compiling itoa"),
        "runner B recompiled a dependency crate after a remote hit:\n{logs_b}"
    );
    assert!(out_b.contains("(remote hit)"), "{out_b}");
    // The remote hits filled B's local cache with whole entries.
    verify_local(&b.cache());
    let o = support::xtask()
        .args(["cache", "stats", "--cache-dir"])
        .arg(b.cache())
        .output()
        .unwrap();
    let stats = text(&o);
    assert!(stats.contains("remote cache:"), "{stats}");
    let chain_hits = sb["chain_cache"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["remote"]["restore"] == "hit")
        .count();
    let remote_hits = target_stages(&sb).len() + chain_hits;
    assert!(
        stats.contains(&format!("remote: {remote_hits} hits, 0 misses, 0 errors")),
        "{stats}"
    );

    // B's second run is a local hit: no request reaches the remote (the server is gone).
    drop(server);
    let out_b2 = run_ok(&mut b.ci(&mb, &env, 1, &["--force"]));
    let sb2 = support::summary(&b.run_dir(1));
    for (name, st) in target_stages(&sb2) {
        assert_eq!(st["remote"]["restore"], "local-hit", "{name}: {st}");
        // Off CI the target dir stays in place between runs (`kept`); either way local.
        let status = st["restore"]["status"].as_str().unwrap();
        assert!(status == "hit" || status == "kept", "{name}: {st}");
    }
    assert!(!out_b2.contains("unavailable"), "{out_b2}");
}

#[test]
fn concurrent_saves_of_one_key_leave_one_whole_object() {
    let server = Seaweed::start();
    // The server honours the conditional write that commits an entry (first writer wins
    // even when two uploads pass the existence check at once).
    assert_eq!(
        server.write_if_absent("probe/marker", b"first".to_vec()),
        Ok(())
    );
    assert_eq!(
        server.write_if_absent("probe/marker", b"second".to_vec()),
        Err(opendal::ErrorKind::ConditionNotMatch)
    );
    assert_eq!(server.read("probe/marker"), b"first");
    let t = tempfile::tempdir().unwrap();
    let env = server.env(SECRET_KEY);
    let runners: Vec<Runner> = (0..3)
        .map(|i| Runner::new(t.path(), &format!("r{i}")))
        .collect();
    let manifests: Vec<PathBuf> = runners.iter().map(small_at).collect();
    // Two runners build the same chain at once and both upload the same key.
    let children: Vec<_> = runners[..2]
        .iter()
        .zip(&manifests)
        .map(|(r, m)| r.ci(m, &env, 0, &[]).spawn().unwrap())
        .collect();
    let mut uploaded = 0;
    let mut key = String::new();
    for (child, r) in children.into_iter().zip(&runners) {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", text(&o));
        let s = support::summary(&r.run_dir(0));
        let (_, st) = target_stages(&s).pop().unwrap();
        key = st["key"].as_str().unwrap().to_owned();
        match st["remote"]["upload"].as_str().unwrap() {
            "uploaded" => uploaded += 1,
            "exists" => {}
            other => panic!("unexpected upload outcome {other}: {st}"),
        }
    }
    assert_eq!(uploaded, 1, "exactly one writer wins");
    // One marker, one writer's objects (a loser deletes what it wrote).
    let objects: Vec<String> = server
        .objects()
        .into_iter()
        .filter(|o| o.starts_with(&format!("target/{key}/")))
        .collect();
    assert_eq!(
        objects.iter().filter(|o| o.ends_with("entry.json")).count(),
        1,
        "{objects:?}"
    );
    assert_eq!(
        objects
            .iter()
            .filter(|o| o.ends_with("data.tar.zst"))
            .count(),
        1,
        "{objects:?}"
    );
    // A third runner restores that entry whole (every file's hash checked); `--force`, as
    // the winner's shared result record would make it `cached`.
    let r2 = &runners[2];
    run_ok(&mut r2.ci(&manifests[2], &env, 0, &["--force"]));
    let s = support::summary(&r2.run_dir(0));
    let (_, st) = target_stages(&s).pop().unwrap();
    assert_eq!(st["remote"]["restore"], "hit", "{st}");
    verify_local(&r2.cache());
    // A second save of the key is a no-op.
    let again = run_ok(&mut runners[0].ci(&manifests[0], &env, 1, &["--force", "--no-restore"]));
    let s = support::summary(&runners[0].run_dir(1));
    let (_, st) = target_stages(&s).pop().unwrap();
    assert_ne!(st["remote"]["upload"], "uploaded", "{st}\n{again}");
    assert_eq!(
        server
            .objects()
            .iter()
            .filter(|o| o.starts_with(&format!("target/{key}/")))
            .count(),
        objects.len()
    );
}

#[test]
fn wrong_credentials_and_a_stopped_server_degrade_to_a_clean_uncached_build() {
    let mut server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let wrong = "wrong-secret-value-41b7c0d2";

    let r = Runner::new(t.path(), "denied");
    let m = small_at(&r);
    let out = run_ok(&mut r.ci(&m, &server.env(wrong), 0, &[]));
    assert_no_secret(&out, &r.run_dir(0), wrong);
    let s = support::summary(&r.run_dir(0));
    let w = warnings(&s);
    assert!(
        w.contains("remote cache") && w.contains("running without it"),
        "{s}"
    );
    assert!(
        w.contains("AWS_SECRET_ACCESS_KEY") || w.contains("denied") || w.contains("Denied"),
        "{w}"
    );
    assert!(
        out.contains("warning: cache registry: remote cache"),
        "{out}"
    );
    assert_eq!(support::repo(&s, "solo")["status"], "ok");
    assert!(
        server.objects().is_empty(),
        "nothing may be uploaded with wrong credentials"
    );
    verify_local(&r.cache());

    // The server goes away: the run goes on without it, warned once.
    let env = server.env(SECRET_KEY);
    server.stop();
    let r2 = Runner::new(t.path(), "stopped");
    let m2 = small_at(&r2);
    let out = run_ok(&mut r2.ci(&m2, &env, 0, &[]));
    let s = support::summary(&r2.run_dir(0));
    assert_eq!(support::repo(&s, "solo")["status"], "ok");
    let w = warnings(&s);
    assert!(w.contains("unavailable, running without it"), "{s}\n{out}");
    assert_no_secret(&out, &r2.run_dir(0), SECRET_KEY);
    // The local cache still works and holds only whole entries.
    verify_local(&r2.cache());
    assert!(r2.cache().join("entries/target").is_dir());
}

#[test]
fn a_missing_bucket_and_a_timeout_are_warnings() {
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let r = Runner::new(t.path(), "nobucket");
    let m = small_at(&r);
    let mut env = server.env(SECRET_KEY);
    env[0].1 = "no-such-bucket".into();
    let out = run_ok(&mut r.ci(&m, &env, 0, &[]));
    let w = warnings(&support::summary(&r.run_dir(0)));
    assert!(
        w.contains("no-such-bucket") || w.contains("bucket"),
        "{w}\n{out}"
    );
    drop(server);

    // A server that accepts connections and never answers (mock: a real server cannot be
    // made to stall on demand).
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = stall.local_addr().unwrap().port();
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in stall.incoming().take(4).flatten() {
            conns.push(c);
        }
        std::thread::sleep(std::time::Duration::from_secs(30));
    });
    let r2 = Runner::new(t.path(), "stalled");
    let m2 = small_at(&r2);
    let env = vec![
        ("BLLVM_CI_CACHE_BUCKET".to_owned(), "b".to_owned()),
        (
            "BLLVM_CI_CACHE_ENDPOINT".to_owned(),
            format!("http://127.0.0.1:{port}"),
        ),
        ("BLLVM_CI_CACHE_REMOTE_TIMEOUT".to_owned(), "2".to_owned()),
        ("AWS_ACCESS_KEY_ID".to_owned(), "AKID".to_owned()),
        (
            "AWS_SECRET_ACCESS_KEY".to_owned(),
            "stall-secret-value-1234".to_owned(),
        ),
    ];
    let out = run_ok(&mut r2.ci(&m2, &env, 0, &[]));
    let s = support::summary(&r2.run_dir(0));
    assert_eq!(support::repo(&s, "solo")["status"], "ok");
    let w = warnings(&s);
    assert!(w.contains("timed out"), "{w}\n{out}");
    assert_no_secret(&out, &r2.run_dir(0), "stall-secret-value-1234");
    drop(held);
}

#[test]
fn a_truncated_download_is_discarded_and_the_build_runs_clean() {
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let env = server.env(SECRET_KEY);
    let a = Runner::new(t.path(), "a");
    run_ok(&mut a.ci(&small_at(&a), &env, 0, &[]));
    // Cut the stored target archive in half (as a dropped connection would leave a
    // download).
    let archive = server
        .objects()
        .into_iter()
        .find(|o| o.starts_with("target/") && o.ends_with("data.tar.zst"))
        .unwrap();
    let bytes = server.read(&archive);
    server.write(&archive, bytes[..bytes.len() / 2].to_vec());

    // `--force`: A's shared result record (whole) would make `solo` `cached`.
    let b = Runner::new(t.path(), "b");
    let out = run_ok(&mut b.ci(&small_at(&b), &env, 0, &["--force"]));
    let s = support::summary(&b.run_dir(0));
    let (_, st) = target_stages(&s).pop().unwrap();
    assert_eq!(st["remote"]["restore"], "error", "{st}\n{out}");
    assert_eq!(st["restore"]["status"], "miss", "{st}");
    assert!(warnings(&s).contains("remote cache"), "{st}");
    assert_eq!(support::repo(&s, "solo")["status"], "ok");
    // Nothing damaged landed: no leftovers in tmp/, every entry whole.
    verify_local(&b.cache());
    assert!(seaweed::is_empty_or_missing(&b.cache().join("tmp")));
}

#[test]
fn a_read_only_run_writes_nothing() {
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let env = server.env(SECRET_KEY);

    // A pull_request run with an empty bucket: builds, uploads nothing, and leaves no
    // cache root behind.
    let pr = Runner::new(t.path(), "pr");
    let m = small_at(&pr);
    let out = run_ok(
        pr.ci(&m, &env, 0, &[])
            .env("GITHUB_EVENT_NAME", "pull_request"),
    );
    assert!(out.contains("read-only"), "{out}");
    assert!(server.objects().is_empty(), "{:?}", server.objects());
    assert!(seaweed::is_empty_or_missing(
        &pr.cache().join("entries/target")
    ));

    // `read-only = true` through the environment on a trusted run: same.
    let ro = Runner::new(t.path(), "ro");
    let mut env_ro = env.clone();
    env_ro.push(("BLLVM_CI_CACHE_READ_ONLY".into(), "1".into()));
    run_ok(&mut ro.ci(&small_at(&ro), &env_ro, 0, &[]));
    assert!(server.objects().is_empty(), "{:?}", server.objects());

    // Once a trusted runner has filled the bucket, a pull_request run gets a remote hit
    // straight into its target dir, and still writes nothing anywhere.
    let w = Runner::new(t.path(), "writer");
    run_ok(&mut w.ci(&small_at(&w), &env, 0, &[]));
    let before = server.objects();
    assert!(!before.is_empty());
    // `--force`: the writer's shared result record would make `solo` `cached`.
    let pr2 = Runner::new(t.path(), "pr2");
    run_ok(
        pr2.ci(&small_at(&pr2), &env, 0, &["--force"])
            .env("GITHUB_EVENT_NAME", "pull_request"),
    );
    let s = support::summary(&pr2.run_dir(0));
    let (_, st) = target_stages(&s).pop().unwrap();
    assert_eq!(st["remote"]["restore"], "hit", "{st}");
    assert_eq!(server.objects(), before);
    assert!(seaweed::is_empty_or_missing(
        &pr2.cache().join("entries/target")
    ));
}

#[test]
fn bench_remote_round_trips_a_multipart_entry() {
    // An entry whose archive spans several multipart parts (8 MiB each), saved and
    // restored through `bench remote` (which checks every file on the way back).
    let server = Seaweed::start();
    let t = tempfile::tempdir().unwrap();
    let o = support::xtask()
        .current_dir(t.path())
        .args([
            "bench", "remote", "--files", "200", "--mib", "48", "--reps", "1", "--dir",
        ])
        .arg(t.path().join("bench"))
        .envs(server.env(SECRET_KEY))
        .output()
        .unwrap();
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("| remote (S3 API) |"), "{out}");
    assert!(!out.contains(SECRET_KEY));
    let archives: Vec<String> = server
        .objects()
        .into_iter()
        .filter(|o| o.ends_with("data.tar.zst"))
        .collect();
    assert_eq!(archives.len(), 1, "{archives:?}");
    assert!(
        server.read(&archives[0]).len() > (8 << 20),
        "not a multipart upload"
    );
}

#[test]
fn the_real_server_is_installed() {
    // CI installs SeaweedFS (ci/requirements-test.txt); without it this panics with the
    // install command instead of letting the remote tests pass without a server.
    assert!(seaweed::weed().is_file());
}
