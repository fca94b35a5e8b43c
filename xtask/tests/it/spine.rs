//! The spine (issue 2): chain order from `cargo metadata`, manifest errors, missing
//! checkouts, `checkout` from bare repos, the runner's failure and timeout handling, and
//! the local cache across two runs of the sample chain.

use std::fs;
use std::path::Path;

use predicates::prelude::*;

use crate::support::{self, levels, plan_json, repo, summary, write_chain, xtask};

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| (*x).to_owned()).collect()
}

#[test]
fn sample_chain_order_levels_and_edge_origins() {
    let t = tempfile::tempdir().unwrap();
    let manifest = support::copy_sample(&t.path().join("chain"));
    let plan = plan_json(&manifest, &t.path().join("cache"));
    assert_eq!(plan["schema_version"], 1);
    assert_eq!(
        levels(&plan),
        vec![
            s(&["bllvm-muhash", "bllvm-primitives", "bllvm-spec"]),
            s(&["bllvm-consensus"]),
            s(&["bllvm-protocol"]),
            s(&["bllvm-node"]),
            s(&["bllvm-sdk"]),
        ]
    );
    let consensus = plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "bllvm-consensus")
        .unwrap();
    let origins = |from: &str| -> Vec<String> {
        consensus["edges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["from"] == from)
            .unwrap_or_else(|| panic!("no edge from {from}: {consensus}"))["origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o.as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        origins("bllvm-muhash"),
        ["dev"],
        "muhash is only a dev-dependency of consensus"
    );
    assert_eq!(origins("bllvm-spec"), ["after"]);
    assert_eq!(origins("bllvm-primitives"), ["normal"]);
    assert_eq!(
        consensus["depends_on"],
        serde_json::json!(["bllvm-muhash", "bllvm-primitives", "bllvm-spec"])
    );
    assert!(consensus["cache_key"]
        .as_str()
        .unwrap()
        .starts_with("bllvm-consensus-base-"));
    assert_eq!(consensus["cache_hit"], false);
}

#[test]
fn diamond_and_build_edges_order_by_level_then_name() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[
            ("top", &[]),
            ("left", &[("top", "normal")]),
            ("right", &[("top", "build")]),
            ("bottom", &[("left", "normal"), ("right", "dev")]),
        ],
        &[],
    );
    let plan = plan_json(&m, &t.path().join("cache"));
    assert_eq!(
        levels(&plan),
        vec![s(&["top"]), s(&["left", "right"]), s(&["bottom"])]
    );
    let right = plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "right")
        .unwrap();
    assert_eq!(right["edges"][0]["origins"], serde_json::json!(["build"]));
}

#[test]
fn after_edge_orders_what_cargo_cannot_see() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("a", &[]), ("b", &[])],
        &[("a", "after = [\"b\"]")],
    );
    let plan = plan_json(&m, &t.path().join("cache"));
    assert_eq!(levels(&plan), vec![s(&["b"]), s(&["a"])]);
    // The fixture repos commit no Cargo.lock: the one generated for the plan is removed
    // again, so the checkouts are left as they were.
    assert!(!t.path().join("a/Cargo.lock").exists() && !t.path().join("b/Cargo.lock").exists());
}

#[test]
fn a_cycle_is_an_error_that_names_it() {
    let t = tempfile::tempdir().unwrap();
    // node depends on sdk through cargo, and the manifest says sdk comes after node.
    let m = write_chain(
        t.path(),
        &[("node", &[("sdk", "dev")]), ("sdk", &[])],
        &[("sdk", "after = [\"node\"]")],
    );
    xtask()
        .args(["plan", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "dependency cycle: node → sdk → node",
        ));
}

#[test]
fn every_manifest_error_names_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nbogus = 1\n", ":4:1: unknown field `bogus`"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nkind = \"rust\"\n", ":4:8: unknown variant `rust`"),
        ("[[repo]]\nname = \"a\"\n", "missing field `github`"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n[[repo]]\nname = \"a\"\ngithub = \"o/b\"\n", ":5:8: duplicate repo name `a`"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\npath = \"../x\"\n", ":4:8: `path`: `../x` leaves the checkout root"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\npath = \"/etc\"\n", ":4:8: `path`: `/etc` is absolute"),
        ("[[repo]]\nname = \"../a\"\ngithub = \"o/a\"\n", ":2:8: repo name `../a` may only use"),
        ("[[repo]]\nname = \"a\"\ngithub = \"nope\"\n", ":3:10: `github = \"nope\"` is not of the form"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nafter = [\"ghost\"]\n", ":4:10: `after = [\"ghost\"]` in repo `a` names no repo"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nsteps = [\"lint\"]\n", ":4:10: unknown step `lint`"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nsteps = [{ name = \"x\" }]\n", "step `x` is not built in"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nsteps = [{ name = \"t\", args = [\"test\"], timeout = 0 }]\n", "`timeout` must be at least 1 second"),
        ("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\ndeps = \"vendored\"\n", ":4:8: unknown variant `vendored`"),
        ("[defaults]\ntimeout = \"soon\"\n", ":2:11: invalid type: string \"soon\", expected u64"),
        ("[[repo]\nname = \"a\"\n", ":1:"),
        ("", "lists no repositories"),
    ];
    let t = tempfile::tempdir().unwrap();
    for (i, (text, want)) in cases.iter().enumerate() {
        let path = t.path().join(format!("m{i}.toml"));
        fs::write(&path, text).unwrap();
        let out = xtask()
            .args(["plan", "--manifest"])
            .arg(&path)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(
            stderr.contains(&format!("m{i}.toml")),
            "case {i} names the file: {stderr}"
        );
        assert!(stderr.contains(want), "case {i}: want {want:?} in {stderr}");
    }
}

#[test]
fn a_missing_checkout_says_where_and_how() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(t.path(), &[("here", &[])], &[]);
    fs::write(
        &m,
        fs::read_to_string(&m).unwrap() + "\n[[repo]]\nname = \"gone\"\ngithub = \"o/gone\"\n",
    )
    .unwrap();
    xtask()
        .args(["ci", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains(format!(
                "gone: expected a checkout at {}",
                t.path().join("gone").display()
            ))
            .and(predicate::str::contains("run `cargo xtask checkout`")),
        );
}

#[test]
fn checkout_clones_missing_repos_from_bare_repos() {
    let t = tempfile::tempdir().unwrap();
    let src = t.path().join("src");
    let m = write_chain(
        &src,
        &[("alpha", &[]), ("beta", &[("alpha", "normal")])],
        &[],
    );
    // Publish the fixture repos as bare repos under <base>/fixture/<name>.git.
    let base = t.path().join("base");
    for name in ["alpha", "beta"] {
        support::git_commit_all(&src.join(name));
        let bare = base.join("fixture").join(format!("{name}.git"));
        let st = std::process::Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(src.join(name))
            .arg(&bare)
            .status()
            .unwrap();
        assert!(st.success());
    }
    let root = t.path().join("checkouts");
    fs::create_dir_all(root.join("alpha")).unwrap(); // present: must be left alone
    fs::write(root.join("alpha/KEEP"), "mine").unwrap();
    xtask()
        .args(["checkout", "--manifest"])
        .arg(&m)
        .arg("--root")
        .arg(&root)
        .arg("--git-base")
        .arg(&base)
        .assert()
        .success()
        .stdout(predicate::str::contains("cloned 1 repo(s)"));
    assert_eq!(fs::read_to_string(root.join("alpha/KEEP")).unwrap(), "mine");
    assert!(root.join("beta/Cargo.toml").is_file());
    assert!(root.join("beta/.git").is_dir());

    // A repo the base does not have: a clear error, and no half checkout left behind.
    fs::write(
        &m,
        fs::read_to_string(&m).unwrap()
            + "\n[[repo]]\nname = \"ghost\"\ngithub = \"fixture/ghost\"\n",
    )
    .unwrap();
    xtask()
        .args(["checkout", "--manifest"])
        .arg(&m)
        .arg("--root")
        .arg(&root)
        .arg("--git-base")
        .arg(&base)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("ghost:").and(predicate::str::contains("fixture/ghost.git")),
        );
    assert!(!root.join("ghost").exists());
    assert!(!root.join(".ghost.bllvm-ci-clone").exists());
}

/// Run `ci` on a manifest with a private cache and cargo home; returns (exit code, stdout).
fn run_ci(
    manifest: &Path,
    cache: &Path,
    cargo_home: &Path,
    run_dir: &Path,
    extra: &[&str],
    offline: bool,
) -> (i32, String) {
    let mut cmd = xtask();
    cmd.args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir)
        .args(extra)
        .env("CARGO_HOME", cargo_home);
    if offline {
        cmd.env("CARGO_NET_OFFLINE", "true");
    }
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn log(run_dir: &Path, repo: &str, step: &str) -> String {
    fs::read_to_string(run_dir.join(repo).join(format!("{step}.log"))).unwrap()
}

#[test]
fn second_run_restores_every_stage_and_recompiles_no_dependency_crate() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let home1 = t.path().join("cargo-home-1");
    let chain = t.path().join("chain");
    let m = support::copy_sample(&chain);
    let (code, out) = run_ci(&m, &cache, &home1, &t.path().join("run1"), &[], false);
    assert_eq!(code, 0, "{out}");
    let s1 = summary(&t.path().join("run1"));
    assert_eq!(s1["chain_cache"][0]["stage"], "registry");
    assert_eq!(s1["chain_cache"][0]["save"]["status"], "saved");
    assert!(log(&t.path().join("run1"), "bllvm-primitives", "build").contains("Compiling itoa"));

    // A fresh job on the same runner: new checkouts (sources newer than any artifact, as
    // after a git clone), an empty cargo home, and no network.
    fs::remove_dir_all(&chain).unwrap();
    let m = support::copy_sample(&chain);
    for e in walkdir::WalkDir::new(&chain)
        .into_iter()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "rs"))
    {
        fs::File::options()
            .write(true)
            .open(e.path())
            .unwrap()
            .set_modified(std::time::SystemTime::now())
            .unwrap();
    }
    // Same cargo home path (as on every runner), emptied: cargo fingerprints registry
    // dependencies by their source path, so the path is part of the target key.
    fs::remove_dir_all(&home1).unwrap();
    let run2 = t.path().join("run2");
    // --force: the result cache would otherwise skip every repo (same fingerprints); this
    // test is about the cache stages.
    let (code, out) = run_ci(&m, &cache, &home1, &run2, &["--force"], true);
    assert_eq!(
        code, 0,
        "offline second run must build from the restored registry: {out}"
    );
    let s2 = summary(&run2);
    assert_eq!(s2["chain_cache"][0]["restore"]["status"], "hit", "{s2}");
    for r in s2["repos"].as_array().unwrap() {
        assert_eq!(r["status"], "ok", "{r}");
        if r["name"] != "bllvm-spec" {
            assert_eq!(r["cache"][0]["restore"]["status"], "hit", "{r}");
        }
    }
    for (repo, deps) in [
        ("bllvm-primitives", &["itoa"][..]),
        ("bllvm-protocol", &["itoa", "hex"][..]),
    ] {
        for step in ["clippy", "build", "test", "doc"] {
            let text = log(&run2, repo, step);
            for d in deps {
                assert!(
                    !text.contains(&format!("Compiling {d} ")),
                    "{repo} {step} recompiled {d}:\n{text}"
                );
                assert!(
                    !text.contains(&format!("Checking {d} ")),
                    "{repo} {step} rechecked {d}:\n{text}"
                );
            }
        }
    }
    // The repo's own crate was rebuilt (its sources are new), so the assertion above is
    // about dependencies, not about a build that did nothing.
    assert!(log(&run2, "bllvm-primitives", "build").contains("Compiling bllvm-primitives"));
}

#[test]
fn a_failing_step_skips_downstream_and_sets_the_exit_code() {
    let t = tempfile::tempdir().unwrap();
    let chain = t.path().join("chain");
    let m = support::copy_sample(&chain);
    fs::write(
        chain.join("bllvm-consensus/src/lib.rs"),
        "pub fn broken( {\n",
    )
    .unwrap();
    let home = t.path().join("home");
    let cache = t.path().join("cache");

    let run = t.path().join("keep-going");
    let (code, out) = run_ci(
        &m,
        &cache,
        &home,
        &run,
        &["--keep-going", "--no-save"],
        false,
    );
    assert_eq!(code, 1, "{out}");
    let s = summary(&run);
    assert_eq!(repo(&s, "bllvm-consensus")["status"], "failed");
    assert!(repo(&s, "bllvm-consensus")["reason"]
        .as_str()
        .unwrap()
        .contains("step `fmt-check` exited with code 1"));
    for down in ["bllvm-protocol", "bllvm-node", "bllvm-sdk"] {
        assert_eq!(repo(&s, down)["status"], "skipped", "{down}");
        assert!(repo(&s, down)["reason"]
            .as_str()
            .unwrap()
            .contains("upstream failed: bllvm-consensus"));
    }
    for indep in ["bllvm-muhash", "bllvm-primitives", "bllvm-spec"] {
        assert_eq!(repo(&s, indep)["status"], "ok", "{indep}");
    }
    assert!(out.contains("result: FAILED (bllvm-consensus)"), "{out}");

    // Without --keep-going the run stops at the first failure.
    fs::write(chain.join("bllvm-muhash/src/lib.rs"), "pub fn broken( {\n").unwrap();
    let run = t.path().join("stop");
    // A fresh cache root: the first run recorded bllvm-primitives' success, which would
    // otherwise make it `cached` rather than not run.
    let (code, _) = run_ci(
        &m,
        &t.path().join("cache2"),
        &home,
        &run,
        &["--no-save"],
        false,
    );
    assert_eq!(code, 1);
    let s = summary(&run);
    assert_eq!(repo(&s, "bllvm-muhash")["status"], "failed");
    assert!(repo(&s, "bllvm-primitives")["reason"]
        .as_str()
        .unwrap()
        .contains("stopped after a failure"));
}

#[test]
fn a_step_past_its_timeout_is_killed() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("slow", &[]), ("after-slow", &[("slow", "normal")])],
        &[(
            "slow",
            "steps = [{ name = \"hang\", command = [\"sleep\", \"600\"], timeout = 1 }]",
        )],
    );
    let run = t.path().join("run");
    let (code, out) = run_ci(
        &m,
        &t.path().join("cache"),
        &t.path().join("home"),
        &run,
        &["--keep-going"],
        false,
    );
    assert_eq!(code, 1, "{out}");
    let s = summary(&run);
    let slow = repo(&s, "slow");
    assert_eq!(slow["steps"][0]["timed_out"], true);
    assert!(slow["reason"]
        .as_str()
        .unwrap()
        .contains("timed out after 1 s"));
    assert!(fs::read_to_string(run.join("slow/hang.log"))
        .unwrap()
        .contains("killed after its timeout of 1 s"));
    assert_eq!(repo(&s, "after-slow")["status"], "skipped");
}

#[test]
fn an_unused_patch_is_a_warning() {
    let t = tempfile::tempdir().unwrap();
    let chain = t.path().join("chain");
    let m = support::copy_sample(&chain);
    // bllvm-node does not depend on bllvm-muhash, so this patch is never used.
    let node = chain.join("bllvm-node/Cargo.toml");
    fs::write(
        &node,
        fs::read_to_string(&node).unwrap() + "bllvm-muhash = { path = \"../bllvm-muhash\" }\n",
    )
    .unwrap();
    xtask()
        .args(["plan", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("warning: patch `bllvm-muhash v0.1.0")
                .and(predicate::str::contains("was not used in the crate graph")),
        );
}

#[test]
fn a_repo_whose_toolchain_is_missing_is_still_ordered_and_reported() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("base", &[]), ("pinned", &[("base", "normal")])],
        &[],
    );
    fs::write(
        t.path().join("pinned/rust-toolchain.toml"),
        "[toolchain]\nchannel = \"0.0.1-not-installed\"\n",
    )
    .unwrap();
    // Run as a plain binary (no `$CARGO` from `cargo run`), the harder case: the graph
    // fallback must not obey the pin that cannot run.
    let out = xtask()
        .args(["plan", "--format", "json", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .env_remove("CARGO")
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(levels(&plan), vec![s(&["base"]), s(&["pinned"])]);
    let pinned = plan["repos"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pinned")
        .unwrap();
    let err = pinned["error"].as_str().unwrap();
    assert!(
        err.contains("rust-toolchain.toml cannot run `rustc -vV`") && err.contains("--toolchain"),
        "{err}"
    );
}
