//! Skipping what did not change (issue 6): fingerprints, the result cache, `--affected`,
//! parallel levels, and the graph output.

use std::fs;
use std::path::Path;
use std::process::Command;

use predicates::prelude::*;

use crate::support::{self, plan_json, repo, summary, write_chain, xtask};

fn ci(manifest: &Path, cache: &Path, run_dir: &Path, extra: &[&str]) -> (i32, String) {
    let out = xtask()
        .args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn statuses(s: &serde_json::Value) -> Vec<(String, String)> {
    s["repos"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn fingerprint(plan: &serde_json::Value, name: &str) -> String {
    plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name)
        .unwrap()["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_change_reruns_exactly_the_repo_and_its_downstream() {
    let t = tempfile::tempdir().unwrap();
    let m = support::copy_sample(&t.path().join("chain"));
    let cache = t.path().join("cache");
    let (code, out) = ci(&m, &cache, &t.path().join("run1"), &[]);
    assert_eq!(code, 0, "{out}");

    let lib = t.path().join("chain/bllvm-protocol/src/lib.rs");
    let text = fs::read_to_string(&lib).unwrap();
    let text = text.replacen(
        "use bllvm_primitives::Height;",
        "use bllvm_primitives::Height;\n\n/// A change.\npub const CHANGED: u8 = 1;",
        1,
    );
    fs::write(&lib, text).unwrap();
    let (code, out) = ci(&m, &cache, &t.path().join("run2"), &[]);
    assert_eq!(code, 0, "{out}");
    let s = summary(&t.path().join("run2"));
    let expect = |name: &str| -> &str {
        if ["bllvm-protocol", "bllvm-node", "bllvm-sdk"].contains(&name) {
            "ok"
        } else {
            "cached"
        }
    };
    for (name, status) in statuses(&s) {
        assert_eq!(status, expect(&name), "{name}: {s}");
    }
    // A cached repo restores nothing and runs no step.
    let consensus = repo(&s, "bllvm-consensus");
    assert!(
        consensus["steps"].as_array().unwrap().is_empty()
            && consensus["cache"].as_array().unwrap().is_empty()
    );

    // `plan --explain` names the input that changed, and `logs` replays a cached repo.
    xtask()
        .args(["plan", "--explain", "bllvm-node", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "no input changed since the last recorded run",
        ));
    fs::write(
        &lib,
        fs::read_to_string(&lib).unwrap() + "pub const AGAIN: u8 = 2;\n",
    )
    .unwrap();
    xtask()
        .args(["plan", "--explain", "bllvm-node", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("upstream bllvm-protocol:")
                .and(predicate::str::contains("content").not()),
        );
    xtask()
        .args(["logs", "bllvm-consensus", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .assert()
        .success()
        .stdout(
            predicate::str::contains("test.log").and(predicate::str::contains("test result: ok")),
        );
}

#[test]
fn fingerprints_follow_uncommitted_edits_toolchain_and_features() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("up", &[]), ("down", &[("up", "normal")])],
        &[("down", "[repo.features]\nextra = [\"x\"]")],
    );
    // `down` gets a feature for the `extra` variant.
    let toml = t.path().join("down/Cargo.toml");
    fs::write(
        &toml,
        fs::read_to_string(&toml).unwrap() + "\n[features]\nx = []\n",
    )
    .unwrap();
    support::git_commit_all(&t.path().join("up"));
    support::git_commit_all(&t.path().join("down"));
    let cache = t.path().join("cache");
    let base = plan_json(&m, &cache);

    // An uncommitted edit in `up` changes `up` and, through it, `down`.
    fs::write(t.path().join("up/src/lib.rs"), "//! Edited.\n").unwrap();
    let edited = plan_json(&m, &cache);
    assert_ne!(fingerprint(&base, "up"), fingerprint(&edited, "up"));
    assert_ne!(fingerprint(&base, "down"), fingerprint(&edited, "down"));
    Command::new("git")
        .args(["checkout", "-q", "--", "."])
        .current_dir(t.path().join("up"))
        .status()
        .unwrap();
    assert_eq!(
        fingerprint(&base, "up"),
        fingerprint(&plan_json(&m, &cache), "up")
    );

    // Another variant's features change `down` only.
    let out = xtask()
        .args([
            "plan",
            "--format",
            "json",
            "--variant",
            "extra",
            "--manifest",
        ])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    let extra: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(fingerprint(&base, "up"), fingerprint(&extra, "up"));
    assert_ne!(fingerprint(&base, "down"), fingerprint(&extra, "down"));

    // A toolchain override changes both.
    let out = xtask()
        .args([
            "plan",
            "--format",
            "json",
            "--toolchain",
            "stable",
            "--manifest",
        ])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .output()
        .unwrap();
    let tc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_ne!(fingerprint(&base, "up"), fingerprint(&tc, "up"));
    assert_ne!(fingerprint(&base, "down"), fingerprint(&tc, "down"));
}

#[test]
fn failures_are_never_cached() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("flaky", &[])],
        &[(
            "flaky",
            "steps = [{ name = \"check\", command = [\"sh\", \"-c\", \"test -f ok\"] }]",
        )],
    );
    let cache = t.path().join("cache");
    assert_eq!(ci(&m, &cache, &t.path().join("r1"), &[]).0, 1);
    // Same inputs again: it must run again (and fail again), not be skipped.
    assert_eq!(ci(&m, &cache, &t.path().join("r2"), &[]).0, 1);
    assert_eq!(
        repo(&summary(&t.path().join("r2")), "flaky")["status"],
        "failed"
    );
    // Once it succeeds (the file `ok` is new content, so a new fingerprint) it is recorded...
    fs::write(t.path().join("flaky/ok"), "").unwrap();
    assert_eq!(ci(&m, &cache, &t.path().join("r3"), &[]).0, 0);
    assert_eq!(ci(&m, &cache, &t.path().join("r4"), &[]).0, 0);
    assert_eq!(
        repo(&summary(&t.path().join("r4")), "flaky")["status"],
        "cached"
    );
    // ...and --force re-runs it.
    assert_eq!(
        ci(&m, &cache, &t.path().join("r5"), &["--force", "flaky"]).0,
        0
    );
    assert_eq!(
        repo(&summary(&t.path().join("r5")), "flaky")["status"],
        "ok"
    );
}

#[test]
fn affected_picks_changed_repos_and_their_downstream_from_git_history() {
    let t = tempfile::tempdir().unwrap();
    // One git repository holding the whole chain (repos are subdirectories).
    let m = write_chain(
        t.path(),
        &[
            ("a", &[]),
            ("b", &[("a", "normal")]),
            ("c", &[("b", "normal")]),
            ("d", &[("a", "dev")]),
        ],
        &[],
    );
    support::git_commit_all(t.path());
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(args)
            .current_dir(t.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    let base = git(&["rev-parse", "HEAD"]);
    fs::write(t.path().join("b/src/lib.rs"), "//! Changed.\n").unwrap();
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@e.invalid",
        "commit",
        "-qam",
        "change b",
    ]);
    let head = git(&["rev-parse", "HEAD"]);

    let out = xtask()
        .args([
            "plan",
            "--format",
            "json",
            "--affected",
            &format!("{base}..{head}"),
            "--manifest",
        ])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let action = |n: &str| {
        plan["repos"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == n)
            .unwrap()["action"]
            .clone()
    };
    assert_eq!(action("a"), "skip-not-affected");
    assert_eq!(action("b"), "run");
    assert_eq!(action("c"), "run");
    assert_eq!(action("d"), "skip-not-affected");

    // The same through the environment variables workflows set, in a real run.
    let run = t.path().join("run");
    let out = xtask()
        .args(["ci", "--quiet", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--run-dir")
        .arg(&run)
        .env("BLLVM_CI_BASE", &base)
        .env("BLLVM_CI_HEAD", &head)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let s = summary(&run);
    assert_eq!(repo(&s, "a")["status"], "skipped");
    assert!(repo(&s, "a")["reason"]
        .as_str()
        .unwrap()
        .contains("not affected"));
    assert_eq!(repo(&s, "c")["status"], "ok");

    xtask()
        .args(["plan", "--affected", "main", "--manifest"])
        .arg(&m)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is not of the form BASE..HEAD"));
}

#[test]
fn independent_repos_of_a_level_run_concurrently() {
    let t = tempfile::tempdir().unwrap();
    // Each step announces itself, then waits (bounded) for the other one's announcement:
    // run one after the other, the first would time out and fail.
    let flags = t.path().join("flags");
    fs::create_dir_all(&flags).unwrap();
    let step = |me: &str, other: &str| {
        format!(
            "steps = [{{ name = \"meet\", command = [\"sh\", \"-c\", \"touch {f}/{me}; i=0; while [ ! -f {f}/{other} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done\"], timeout = 60 }}]",
            f = flags.display()
        )
    };
    let m = write_chain(
        t.path(),
        &[
            ("left", &[]),
            ("right", &[]),
            ("joined", &[("left", "normal"), ("right", "normal")]),
        ],
        &[
            ("left", &step("left", "right")),
            ("right", &step("right", "left")),
            ("joined", "steps = []"),
        ],
    );
    let run = t.path().join("run");
    let (code, out) = ci(&m, &t.path().join("cache"), &run, &["--jobs", "2"]);
    assert_eq!(code, 0, "{out}");
    let s = summary(&run);
    let (l, r) = (repo(&s, "left"), repo(&s, "right"));
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    assert!(
        f(l, "start_secs") < f(r, "end_secs") && f(r, "start_secs") < f(l, "end_secs"),
        "intervals overlap: {s}"
    );
    // The summary keeps plan order, and the level after them starts after both ended.
    let names: Vec<String> = statuses(&s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["left", "right", "joined"]);
    assert!(f(repo(&s, "joined"), "start_secs") >= f(l, "end_secs").max(f(r, "end_secs")));
}

#[test]
fn a_repo_starts_when_its_own_upstreams_are_done_not_its_whole_level() {
    // `slow` and `fast` are level 0, `after_fast` (level 1) depends on `fast` only. With
    // two workers, `after_fast` must start while `slow` still runs: `slow` waits (bounded)
    // for `after_fast`'s flag and fails if it never comes, which is what a level-by-level
    // scheduler does (it waits for `slow` before starting level 1).
    let t = tempfile::tempdir().unwrap();
    let flags = t.path().join("flags");
    fs::create_dir_all(&flags).unwrap();
    let wait_for = |other: &str| {
        format!(
            "steps = [{{ name = \"wait\", command = [\"sh\", \"-c\", \"i=0; while [ ! -f {f}/{other} ]; do i=$((i+1)); [ $i -gt 600 ] && exit 1; sleep 0.05; done\"], timeout = 60 }}]",
            f = flags.display()
        )
    };
    let touch = format!(
        "steps = [{{ name = \"touch\", command = [\"touch\", \"{}/after_fast\"], timeout = 60 }}]",
        flags.display()
    );
    let m = write_chain(
        t.path(),
        &[
            ("slow", &[]),
            ("fast", &[]),
            ("after_fast", &[("fast", "normal")]),
        ],
        &[
            ("slow", &wait_for("after_fast")),
            ("fast", "steps = []"),
            ("after_fast", &touch),
        ],
    );
    let run = t.path().join("run");
    let (code, out) = ci(&m, &t.path().join("cache"), &run, &["--jobs", "2"]);
    assert_eq!(code, 0, "{out}");
    let s = summary(&run);
    let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap();
    let (slow, after) = (repo(&s, "slow"), repo(&s, "after_fast"));
    assert!(f(after, "start_secs") < f(slow, "end_secs"), "{s}");
    // The summary keeps plan order.
    let names: Vec<String> = statuses(&s).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["fast", "slow", "after_fast"]);
}

fn sample_graph(format: &str) -> String {
    let t = tempfile::tempdir().unwrap();
    let m = support::copy_sample(&t.path().join("chain"));
    let out = xtask()
        .args(["graph", "--format", format, "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn graph_mermaid_snapshot_and_readme_agree() {
    let mermaid = sample_graph("mermaid");
    insta::assert_snapshot!("sample_graph_mermaid", mermaid);
    let readme = fs::read_to_string(support::workspace().join("README.md")).unwrap();
    assert!(
        readme.contains(&format!("```mermaid\n{mermaid}```")),
        "README's graph is stale: regenerate it with `cargo xtask graph --manifest ci/sample/chain.toml`"
    );
}

#[test]
fn graph_dot_snapshot() {
    insta::assert_snapshot!("sample_graph_dot", sample_graph("dot"));
}

#[test]
fn graph_json_snapshot() {
    let mut v: serde_json::Value = serde_json::from_str(&sample_graph("json")).unwrap();
    // Fingerprints depend on the compiler version: check their shape, snapshot the rest.
    for r in v["repos"].as_array_mut().unwrap() {
        let fp = r["fingerprint"].as_str().unwrap();
        assert!(
            fp.len() == 16 && fp.chars().all(|c| c.is_ascii_hexdigit()),
            "{fp}"
        );
        r["fingerprint"] = "[fingerprint]".into();
    }
    insta::assert_snapshot!(
        "sample_graph_json",
        serde_json::to_string_pretty(&v).unwrap()
    );
}
