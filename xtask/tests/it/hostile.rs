//! Issue 13 §3 through the binary: nothing outside the cache root, the run dir or the
//! checkout is touched, and nothing read back can wedge or crash a command. A hostile
//! `entry.json` under `cache list` (also read-only), a step name that climbs out of the
//! run dir, a FIFO and a symlink chain in a real `ci` run's target dir, a copy restore
//! killed halfway, a history line that is not UTF-8, and (with SeaweedFS) a damaged
//! remote object. The random version of the metadata cases is the `hostile` stress
//! scenario, run here small.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{self, xtask};

fn text(o: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Wait for `child` at most `bound` (a bound against hangs, not a timing assertion):
/// `None` when it had to be killed.
fn wait_bounded(child: &mut Child, bound: Duration) -> Option<Output> {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return Some(child_output(child));
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn child_output(child: &mut Child) -> Output {
    use std::io::Read;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).unwrap();
    }
    Output {
        status: child.wait().unwrap(),
        stdout,
        stderr,
    }
}

/// A manifest whose `[cache]` turns the disk guard off (a busy shared disk must not turn
/// these saves into `no-space`).
fn roomy_manifest(dir: &Path) -> PathBuf {
    let p = dir.join("roomy.toml");
    fs::write(
        &p,
        "[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n\n[[repo]]\nname = \"x\"\ngithub = \"x/x\"\nkind = \"docs\"\n",
    )
    .unwrap();
    p
}

fn cache_cmd(root: &Path, manifest: &Path, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.arg("cache")
        .args(&args[..1])
        .arg("--manifest")
        .arg(manifest)
        .arg("--cache-dir")
        .arg(root)
        .args(&args[1..])
        .env_remove("BLLVM_CI_CACHE_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    wait_bounded(&mut child, Duration::from_secs(120))
        .unwrap_or_else(|| panic!("`cache {}` hung", args.join(" ")))
}

fn put(root: &Path, manifest: &Path, key: &str, src: &Path) -> Output {
    cache_cmd(
        root,
        manifest,
        &["put", "--key", key, "--src", src.to_str().unwrap()],
    )
}

#[test]
fn a_key_in_entry_json_that_climbs_out_of_the_root_touches_nothing_outside() {
    let t = tempfile::tempdir().unwrap();
    let victim = t.path().join("victim");
    fs::create_dir_all(&victim).unwrap();
    fs::write(victim.join("precious"), "precious").unwrap();
    let root = t.path().join("a/b/c/cache");
    let m = roomy_manifest(t.path());
    let src = t.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    let key = "a.1.0-0123456789abcdef-0123456789abcdef";
    let o = put(&root, &m, key, &src);
    assert!(o.status.success(), "{}", text(&o));
    // The reproduction: the key in entry.json climbs to `victim`, and the data is
    // moved out (a stub, which `Cache::open` removes as a dead job's).
    let entry = root.join("entries/target").join(key);
    let p = entry.join("entry.json");
    let mut j: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    j["key"] = "a.1.0/../../../../../victim".into();
    fs::write(&p, j.to_string()).unwrap();
    fs::remove_dir_all(entry.join("data")).unwrap();
    // A read-only `cache get` (a pull request), then every command that opens the cache.
    let dst = t.path().join("dst");
    let o = cache_cmd(
        &root,
        &m,
        &[
            "get",
            "--key",
            key,
            "--read-only",
            "--dst",
            dst.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    for args in [
        &["list"][..],
        &["stats"],
        &["verify"],
        &["prune"],
        &["clear"],
    ] {
        let o = cache_cmd(&root, &m, args);
        assert!(
            matches!(o.status.code(), Some(0 | 1)),
            "`cache {}`: {}",
            args[0],
            text(&o)
        );
        assert_eq!(
            fs::read(victim.join("precious")).unwrap(),
            b"precious",
            "`cache {}` touched a directory outside the root",
            args[0]
        );
    }
    // The damaged directory is gone (clear, prune or verify), and the key saves again.
    let o = put(&root, &m, key, &src);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("\"saved\""),
        "{}",
        text(&o)
    );
    assert!(victim.join("precious").is_file());
}

#[test]
fn a_step_name_that_climbs_out_of_the_run_dir_is_a_manifest_error() {
    let t = tempfile::tempdir().unwrap();
    let manifest = support::write_chain(
        t.path(),
        &[("solo", &[])],
        &[(
            "solo",
            "steps = [{ name = \"../../escape\", command = [\"true\"] }]",
        )],
    );
    let run_dir = t.path().join("runs/1");
    let o = xtask()
        .args(["ci", "--quiet", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--run-dir")
        .arg(&run_dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let out = text(&o);
    // `chain.toml:<line>:<col>:` names the step, and nothing was written anywhere.
    assert!(
        out.contains("chain.toml:") && out.contains("step name"),
        "{out}"
    );
    assert!(!t.path().join("escape.log").exists());
    assert!(!t.path().join("runs/escape.log").exists());
}

/// `ci` of a one-repo fixture whose extra step runs `script` in the checkout after the
/// build (a real cargo build), with `CI=true` when `moved` (target dirs move in and out
/// of the cache) and bounded in time. Returns the output and the run dir.
fn ci_with(t: &Path, name: &str, script: &str, moved: bool) -> (Output, PathBuf) {
    let dir = t.join(name);
    let manifest = support::write_chain(
        &dir,
        &[("solo", &[])],
        &[(
            "solo",
            &format!(
                "steps = [\"build\", {{ name = \"plant\", command = [\"sh\", \"-c\", {script:?}] }}]"
            ),
        )],
    );
    let mut text = fs::read_to_string(&manifest).unwrap();
    text += "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n";
    fs::write(&manifest, text).unwrap();
    let run_dir = dir.join("run");
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.args(["ci", "--quiet", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--run-dir")
        .arg(&run_dir)
        .env("CI", if moved { "true" } else { "false" })
        .env_remove("BLLVM_CI_CACHE_DIR")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_EVENT_NAME")
        .env_remove("GITHUB_EVENT_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let o = wait_bounded(&mut child, Duration::from_secs(600))
        .unwrap_or_else(|| panic!("`ci` hung ({name}): a save opened a FIFO?"));
    (o, run_dir)
}

fn target_warning(run_dir: &Path) -> String {
    let s = support::summary(run_dir);
    let r = support::repo(&s, "solo");
    r["cache"][0]["warning"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn a_fifo_in_the_target_dir_is_left_out_of_the_save_with_a_warning() {
    let t = tempfile::tempdir().unwrap();
    for moved in [false, true] {
        let (o, run_dir) = ci_with(
            t.path(),
            &format!("fifo-{moved}"),
            "mkdir -p target/debug/build/zz-0/out && mkfifo target/debug/build/zz-0/out/pipe",
            moved,
        );
        assert!(o.status.success(), "{}", text(&o));
        let w = target_warning(&run_dir);
        assert!(
            w.contains("special file") && w.contains("out/pipe"),
            "{w}\n{}",
            text(&o)
        );
        let s = support::summary(&run_dir);
        let save = &support::repo(&s, "solo")["cache"][0]["save"]["status"];
        assert_eq!(save, "saved", "{s:#}");
    }
}

#[test]
fn a_target_dir_with_a_symlink_chain_out_through_dot_is_not_saved() {
    let t = tempfile::tempdir().unwrap();
    // Every link's text stays inside `target/` lexically; resolved, `out` is the
    // checkout's parent.
    let (o, run_dir) = ci_with(
        t.path(),
        "links",
        "mkdir -p target/debug/build/own-0 && ln -s . target/debug/build/own-0/dot && ln -s dot/dot/dot/../../../.. target/debug/build/own-0/out",
        true,
    );
    assert!(o.status.success(), "{}", text(&o));
    let w = target_warning(&run_dir);
    assert!(
        w.contains("point outside") && w.contains("own-0/out"),
        "{w}\n{}",
        text(&o)
    );
    let o = cache_cmd(
        &t.path().join("links/cache"),
        &roomy_manifest(t.path()),
        &["list", "--format", "json"],
    );
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let stages: Vec<&str> = list["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["info"]["stage"].as_str().unwrap())
        .collect();
    assert!(!stages.contains(&"target"), "{list:#}");
}

#[test]
fn a_copy_restore_killed_halfway_leaves_no_partial_target_dir() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let m = roomy_manifest(t.path());
    let src = t.path().join("src");
    for i in 0..600 {
        let p = src.join(format!("debug/deps/d{}/f{i}.rlib", i % 17));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, vec![(i % 251) as u8; 32 * 1024]).unwrap();
    }
    let key = "big-0123456789abcdef-0123456789abcdef";
    assert!(put(&root, &m, key, &src).status.success());
    let dst = t.path().join("w/target");
    let whole = |d: &Path| {
        walkdir::WalkDir::new(d)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .all(|e| fs::metadata(e.path()).unwrap().len() == 32 * 1024)
            && walkdir::WalkDir::new(d)
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .count()
                == 600
    };
    // Killed at increasing moments: before, during or after the copy. Whenever it dies,
    // `target/` is absent or whole, never partial.
    for delay_ms in [0u64, 5, 20, 60, 150, 400] {
        let _ = fs::remove_dir_all(&dst);
        let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["cache", "get", "--read-only", "--manifest"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(&root)
            .args(["--key", key, "--dst"])
            .arg(&dst)
            .env_remove("BLLVM_CI_CACHE_DIR")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        assert!(
            !dst.exists() || whole(&dst),
            "a killed restore left a partial target dir (killed after {delay_ms} ms)"
        );
    }
    // The next restore works and removes what the killed ones left beside `target/`.
    let _ = fs::remove_dir_all(&dst);
    let o = cache_cmd(
        &root,
        &m,
        &[
            "get",
            "--key",
            key,
            "--read-only",
            "--dst",
            dst.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(whole(&dst));
    let names: Vec<String> = fs::read_dir(t.path().join("w"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["target"]);
}

#[test]
fn report_reads_a_history_with_a_line_that_is_not_utf8() {
    let t = tempfile::tempdir().unwrap();
    // One real run of a docs-only chain (no cargo) appends a line to the history.
    fs::create_dir_all(t.path().join("d")).unwrap();
    let manifest = t.path().join("chain.toml");
    fs::write(
        &manifest,
        "root = \".\"\n[[repo]]\nname = \"d\"\ngithub = \"x/d\"\nkind = \"docs\"\n",
    )
    .unwrap();
    let cache = t.path().join("cache");
    let o = xtask()
        .args(["ci", "--quiet", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--run-dir")
        .arg(t.path().join("run"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let hist = cache.join("metrics/history.jsonl");
    let mut bytes = fs::read(&hist).unwrap();
    bytes.extend_from_slice(b"\xff\xfe not json\n");
    fs::write(&hist, bytes).unwrap();
    let o = xtask()
        .args(["report", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("skipped 1 line"), "{}", text(&o));
}

#[test]
fn a_symlinked_stage_dir_is_replaced_and_its_target_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("cache");
    let m = roomy_manifest(t.path());
    let outside = t.path().join("outside");
    fs::create_dir_all(outside.join("k-0-0/data")).unwrap();
    fs::write(outside.join("k-0-0/data/f"), "mine").unwrap();
    fs::create_dir_all(root.join("entries")).unwrap();
    symlink(&outside, root.join("entries/target")).unwrap();
    let o = cache_cmd(&root, &m, &["clear"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(fs::read(outside.join("k-0-0/data/f")).unwrap(), b"mine");
    assert!(fs::symlink_metadata(root.join("entries/target"))
        .unwrap()
        .is_dir());
}

#[cfg(feature = "dev")]
#[test]
fn hostile_metadata_stress_every_kind_passes() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args([
            "stress",
            "--format",
            "json",
            "--seed",
            "13",
            "--scenario",
            "hostile",
            "--hostile",
            "24",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text(&out)));
    let s = &report["scenarios"][0];
    assert_eq!(s["name"], "hostile");
    assert_eq!(s["problems"], serde_json::json!([]), "{report:#}");
    assert_eq!(out.status.code(), Some(0));
    // Every kind ran once, and every round checked every invariant.
    for k in [
        "entry-key-climbs-out",
        "data-link-chain-out",
        "entry-fifo",
        "tmp-dead-and-hostile",
        "stage-dir-symlink-out",
    ] {
        assert_eq!(s["ops"][k], 1, "{s:#}");
    }
    for inv in [
        "operations survived",
        "nothing outside the root touched",
        "next save works",
    ] {
        assert_eq!(s["ops"][inv], 24, "{s:#}");
    }
}

/// One damaged object in the bucket: reported and skipped, the remote stays on for the
/// rest of the run (the other repo still gets its remote hit), the entry is quarantined
/// and replaced by this run's upload, so the next runner hits again.
#[cfg(feature = "remote")]
#[test]
fn one_damaged_remote_object_is_quarantined_and_replaced_not_an_outage() {
    use crate::seaweed::{Seaweed, SECRET_KEY};
    let server = Seaweed::start();
    let env = server.env(SECRET_KEY);
    let t = tempfile::tempdir().unwrap();
    // Runners share the checkout and cargo home paths (both are part of target keys);
    // each has its own cache root.
    let chain = t.path().join("chain");
    let manifest = support::write_chain(&chain, &[("alpha", &[]), ("beta", &[])], &[]);
    let mut m = fs::read_to_string(&manifest).unwrap();
    m += "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n";
    fs::write(&manifest, m).unwrap();
    let ci = |runner: &str| {
        let run_dir = t.path().join(runner).join("run");
        let _ = fs::remove_dir_all(chain.join("alpha/target"));
        let _ = fs::remove_dir_all(chain.join("beta/target"));
        let o = xtask()
            // `--force`: build even though runner one shared its result records.
            .args(["ci", "--force", "--quiet", "--manifest"])
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(t.path().join(runner).join("cache"))
            .arg("--run-dir")
            .arg(&run_dir)
            .env("CARGO_HOME", t.path().join("home"))
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap();
        assert!(o.status.success(), "{runner}: {}", text(&o));
        let s = support::summary(&run_dir);
        let stage = |repo: &str| support::repo(&s, repo)["cache"][0].clone();
        (stage("alpha"), stage("beta"))
    };
    let (a, b) = ci("one");
    assert_eq!(a["remote"]["upload"], "uploaded", "{a:#}");
    assert_eq!(b["remote"]["upload"], "uploaded", "{b:#}");
    // Damage alpha's remote manifest (a line added: its hash no longer matches).
    let objects = server.objects();
    let manifest_obj = objects
        .iter()
        .find(|o| o.contains("target") && o.contains("alpha") && o.ends_with("manifest.tsv"))
        .unwrap_or_else(|| panic!("{objects:?}"));
    let mut bytes = server.read(manifest_obj);
    bytes.extend_from_slice(
        b"f\t1\t1\t0000000000000000000000000000000000000000000000000000000000000000\tx\n",
    );
    server.write(manifest_obj, bytes);

    let (a, b) = ci("two");
    assert_eq!(a["remote"]["restore"], "error", "{a:#}");
    let w = a["warning"].as_str().unwrap_or_default();
    assert!(w.contains("damaged") && w.contains("quarantined"), "{a:#}");
    assert!(
        !w.contains("running without it"),
        "the remote was switched off: {a:#}"
    );
    assert_eq!(
        b["remote"]["restore"], "hit",
        "the remote was off for the rest of the run: {b:#}"
    );
    assert_eq!(
        a["remote"]["upload"], "uploaded",
        "the damaged entry was not replaced: {a:#}"
    );
    assert!(
        server
            .objects()
            .iter()
            .any(|o| o.starts_with("quarantine/target/alpha")),
        "{:?}",
        server.objects()
    );

    let (a, b) = ci("three");
    assert_eq!(a["remote"]["restore"], "hit", "{a:#}");
    assert_eq!(b["remote"]["restore"], "hit", "{b:#}");
}
