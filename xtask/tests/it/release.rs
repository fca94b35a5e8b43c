//! Release outputs (issue 9, parts 1-3): `ci --release` artifacts with `SHA256SUMS` that
//! the real `sha256sum -c` accepts and a release manifest listing every repo, reused from
//! the builds store when nothing changed; `--verify-deterministic` catching a build script
//! that embeds the time while the sample node passes. (The `coverage` step's tests, which
//! need cargo-tarpaulin, are in tools.rs.)

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::{self, git_commit_all, repo, summary, write_chain, xtask};

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap()
}

/// `sha256sum -c SHA256SUMS` in `dir`, asserting it succeeds; returns its stdout.
fn sha256sum_check(dir: &Path) -> String {
    let out = Command::new("sha256sum")
        .args(["-c", "SHA256SUMS"])
        .current_dir(dir)
        .output()
        .expect("sha256sum (coreutils) must be installed");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sha256sum -c failed in {}: {stdout}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn ci(manifest: &Path, cache: &Path, run: &Path, extra: &[&str]) -> std::process::Output {
    xtask()
        .arg("ci")
        .arg("--manifest")
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run)
        .arg("--quiet")
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn sample_release_artifacts_verify_with_sha256sum_and_are_reused_when_unchanged() {
    let t = tempfile::tempdir().unwrap();
    let manifest = support::copy_sample(&t.path().join("chain"));
    let cache = t.path().join("cache");
    let run1 = t.path().join("run1");
    let out = ci(
        &manifest,
        &cache,
        &run1,
        &["--release", "--verify-deterministic"],
    );
    assert!(
        out.status.success(),
        "release run failed:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // The node's binary, with a SHA256SUMS the real tool accepts.
    let node_dir = run1.join("artifacts/bllvm-node");
    assert_eq!(sha256sum_check(&node_dir), "bllvm-node: OK\n");
    let bin = node_dir.join("bllvm-node");
    let printed = Command::new(&bin).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&printed.stdout).trim(),
        "tip 0 303a35303030303030303030"
    );

    // The release manifest lists every repo of the chain, in plan order, with versions,
    // toolchain and each file's size and hash.
    let m = json(&run1.join("artifacts/release-manifest.json"));
    assert_eq!(m["schema_version"], 1);
    assert_eq!(m["variant"], "base");
    let names: Vec<&str> = m["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["repo"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "bllvm-muhash",
            "bllvm-primitives",
            "bllvm-spec",
            "bllvm-consensus",
            "bllvm-protocol",
            "bllvm-node",
            "bllvm-sdk"
        ]
    );
    let node = m["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "bllvm-node")
        .unwrap();
    assert_eq!(node["status"], "ok");
    assert_eq!(node["version"], "0.1.0");
    assert_eq!(
        node["commit"],
        serde_json::Value::Null,
        "the copy is not a git checkout"
    );
    assert_eq!(node["source_date_epoch"], 0);
    assert!(
        node["toolchain"].as_str().unwrap().starts_with("rustc "),
        "{node}"
    );
    assert_eq!(node["features"], serde_json::json!([]));
    assert_eq!(
        node["deterministic"], true,
        "the sample node builds reproducibly: {node}"
    );
    assert_eq!(node["reused"], false);
    let f = &node["files"][0];
    assert_eq!(f["name"], "bllvm-node");
    assert_eq!(f["path"], "bllvm-node/bllvm-node");
    assert_eq!(
        f["size"].as_u64().unwrap(),
        fs::metadata(&bin).unwrap().len()
    );
    let sums = fs::read_to_string(node_dir.join("SHA256SUMS")).unwrap();
    assert_eq!(
        sums,
        format!("{}  bllvm-node\n", f["sha256"].as_str().unwrap())
    );
    let sdk = m["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "bllvm-sdk")
        .unwrap();
    assert_eq!(
        sdk["files"],
        serde_json::json!([]),
        "the sdk lists no artifacts"
    );
    assert!(
        !run1.join("verify").exists(),
        "verify dirs are removed when the builds agree"
    );
    let s1 = summary(&run1);
    assert_eq!(repo(&s1, "bllvm-node")["release"]["deterministic"], true);
    for r in s1["repos"].as_array().unwrap() {
        assert_eq!(
            r["warnings"],
            serde_json::json!([]),
            "no builds-store warning: {r}"
        );
    }
    assert!(run1.join("bllvm-node/release.log").is_file());
    assert!(run1.join("bllvm-node/verify-deterministic.log").is_file());

    // Unchanged: every repo is `cached`, and the artifacts come from the builds store,
    // byte for byte, without a release build (only the clean rebuild of the check).
    let run2 = t.path().join("run2");
    let out = ci(&manifest, &cache, &run2, &["--verify-deterministic"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s2 = summary(&run2);
    assert_eq!(repo(&s2, "bllvm-node")["status"], "cached");
    let m2 = json(&run2.join("artifacts/release-manifest.json"));
    let node2 = m2["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["repo"] == "bllvm-node")
        .unwrap();
    assert_eq!(node2["reused"], true, "{node2}");
    assert_eq!(
        node2["deterministic"], true,
        "stored bytes equal a clean rebuild"
    );
    assert_eq!(node2["files"], node["files"]);
    assert!(
        !run2.join("bllvm-node/release.log").exists(),
        "a reused repo is not rebuilt"
    );
    assert_eq!(
        sha256sum_check(&run2.join("artifacts/bllvm-node")),
        "bllvm-node: OK\n"
    );

    // A changed source is a new key: the node is rebuilt (the target key alone, which
    // does not cover sources, would have handed back the old binary).
    let main_rs = t.path().join("chain/bllvm-node/src/bin/bllvm-node.rs");
    let text = fs::read_to_string(&main_rs).unwrap();
    fs::write(&main_rs, text.replace("status(0)", "status(7)")).unwrap();
    let run3 = t.path().join("run3");
    let out = ci(&manifest, &cache, &run3, &["--release"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let m3 = json(&run3.join("artifacts/release-manifest.json"));
    let by_name = |m: &serde_json::Value, n: &str| -> serde_json::Value {
        m["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["repo"] == n)
            .unwrap()
            .clone()
    };
    let node3 = by_name(&m3, "bllvm-node");
    assert_eq!(node3["reused"], false, "{node3}");
    assert_ne!(node3["key"], node["key"]);
    assert_ne!(node3["files"][0]["sha256"], node["files"][0]["sha256"]);
    assert_eq!(
        by_name(&m3, "bllvm-protocol")["reused"],
        true,
        "upstream repos are unchanged"
    );
    let printed = Command::new(run3.join("artifacts/bllvm-node/bllvm-node"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&printed.stdout).starts_with("tip 7 "));
    sha256sum_check(&run3.join("artifacts/bllvm-node"));
}

/// A repo whose build script bakes the current time into its binary.
fn write_clock_repo(root: &Path) -> std::path::PathBuf {
    let m = write_chain(
        root,
        &[("clock", &[])],
        &[("clock", "steps = [\"build\"]\nartifacts = [\"clock\"]")],
    );
    let dir = root.join("clock");
    fs::write(
        dir.join("build.rs"),
        "fn main() {\n    let now = std::time::SystemTime::now()\n        .duration_since(std::time::UNIX_EPOCH)\n        .unwrap()\n        .as_nanos();\n    println!(\"cargo:rustc-env=BUILT_AT={now}\");\n    println!(\"cargo:rerun-if-changed=build.rs\");\n}\n",
    )
    .unwrap();
    fs::write(
        dir.join("src/main.rs"),
        "fn main() {\n    println!(\"built at {}\", env!(\"BUILT_AT\"));\n}\n",
    )
    .unwrap();
    fs::write(dir.join(".gitignore"), "/target\n").unwrap();
    m
}

#[test]
fn verify_deterministic_catches_a_build_script_that_embeds_the_time() {
    let t = tempfile::tempdir().unwrap();
    let manifest = write_clock_repo(t.path());
    let dir = t.path().join("clock");
    // A lockfile first (`--locked`), then a git checkout, so the manifest has a commit.
    let st = Command::new("cargo")
        .arg("generate-lockfile")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(st.success());
    git_commit_all(&dir);
    let head = String::from_utf8(
        Command::new("git")
            .args(["rev-parse", "HEAD"])
            .current_dir(&dir)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let epoch: u64 = String::from_utf8(
        Command::new("git")
            .args(["log", "-1", "--format=%ct"])
            .current_dir(&dir)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();

    let run = t.path().join("run");
    let out = ci(
        &manifest,
        &t.path().join("cache"),
        &run,
        &["--verify-deterministic"],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a non-deterministic build fails the run:\n{stdout}"
    );
    let s = summary(&run);
    let clock = repo(&s, "clock");
    assert_eq!(clock["status"], "failed");
    let why = clock["reason"].as_str().unwrap();
    assert!(why.contains("the build is not deterministic"), "{why}");
    assert!(
        why.contains("clock: "),
        "the differing file is named: {why}"
    );
    assert!(why.contains("(first build) vs "), "{why}");
    assert!(
        stdout.contains("release: the build is not deterministic"),
        "{stdout}"
    );

    let m = json(&run.join("artifacts/release-manifest.json"));
    let r = &m["repos"][0];
    assert_eq!(r["repo"], "clock");
    assert_eq!(r["status"], "failed");
    assert_eq!(r["deterministic"], false);
    assert_eq!(r["commit"].as_str().unwrap(), head.trim());
    assert_eq!(
        r["source_date_epoch"].as_u64().unwrap(),
        epoch,
        "SOURCE_DATE_EPOCH is the commit time"
    );
    // The two binaries really differ, and the clean rebuild is kept for inspection.
    let first = run.join("artifacts/clock/clock");
    let second = run.join("verify/clock/release/clock");
    assert!(
        second.is_file(),
        "the verify target dir is kept on a mismatch"
    );
    assert_ne!(fs::read(&first).unwrap(), fs::read(&second).unwrap());
    // The first build's checksums are still valid for what was collected.
    sha256sum_check(&run.join("artifacts/clock"));
}

#[test]
fn unknown_artifact_name_fails_the_repo_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("lib", &[])],
        &[("lib", "steps = [\"fmt-check\"]\nartifacts = [\"nope\"]")],
    );
    let run = t.path().join("run");
    let out = ci(&manifest, &t.path().join("cache"), &run, &["--release"]);
    assert_eq!(out.status.code(), Some(1));
    let why = repo(&summary(&run), "lib")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    // cargo itself rejects an unknown `--bin`; the reason points at the release log.
    assert!(
        why.starts_with("release: `cargo build --release --locked --workspace --bin nope`"),
        "{why}"
    );
    assert!(why.contains("release.log"), "{why}");
}
