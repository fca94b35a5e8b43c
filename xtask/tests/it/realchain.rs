//! What the real chain taught (issue 16, items 4 to 6), on fixture chains built by real
//! cargo: a lint failure on a toolchain newer than the pin is a lint failure (not "did not
//! compile"), a compile failure against a registry release names the versions, resolution
//! failures get hints (and `explain RUN_DIR` covers them), a git source that cannot be
//! fetched is the network, failing tests and doctests are named with their panic and
//! place in the summary, the console, the step summary and the `::error` annotations, a
//! missing toolchain is one preflight problem, and the shipped manifest mirrors the repos'
//! own CI.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::{self, repo, summary, write_chain, xtask};

/// The output of a finished command, as text.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

fn run(cmd: &mut assert_cmd::Command) -> Out {
    let out = cmd.output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `cargo xtask ci --keep-going` on `manifest` with its own cache and run dir (in `root`),
/// plus `extra`.
fn ci(root: &Path, manifest: &Path, run_dir: &str, extra: &[&str]) -> assert_cmd::Command {
    let mut c = xtask();
    c.current_dir(root)
        .args(["ci", "--keep-going", "--manifest"])
        .arg(manifest)
        .args(["--cache-dir", "cache", "--run-dir", run_dir])
        .args(extra)
        // The fixtures decide where their steps look; the runner's own annotations and
        // summaries are what the tests read.
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("GITHUB_OUTPUT");
    c
}

/// `cargo xtask explain ARG`, its stdout.
fn explain(arg: &Path) -> String {
    let out = run(xtask().arg("explain").arg(arg));
    assert_eq!(out.code, 0, "{}", out.text());
    out.stdout
}

fn hints(r: &Value) -> Vec<String> {
    r["hints"]
        .as_array()
        .map(|a| a.iter().map(|h| h.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

/// Set `[defaults] toolchain` in a manifest `write_chain` wrote.
fn pin_toolchain(manifest: &Path, toolchain: &str) {
    let text = fs::read_to_string(manifest).unwrap().replacen(
        "[defaults]\n",
        &format!("[defaults]\ntoolchain = \"{toolchain}\"\n"),
        1,
    );
    fs::write(manifest, text).unwrap();
}

// ---- a lint failure is a lint failure, and on a newer toolchain it says so --------------

/// Compiles, but clippy's `needless_return` (a style lint every clippy has) fails under
/// `-D warnings`.
const NEEDLESS_RETURN: &str =
    "//! Fixture crate.\n\n/// A value.\npub fn value() -> u32 {\n    return 1;\n}\n";

#[test]
fn a_lint_failure_on_a_toolchain_newer_than_the_pin_names_the_pin_and_is_not_a_compile_error() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("lints", &[])],
        &[("lints", "steps = [\"clippy\"]")],
    );
    fs::write(t.path().join("lints/src/lib.rs"), NEEDLESS_RETURN).unwrap();
    // The repo is kept clean on 1.88.0 (not installed here); the run overrides it.
    pin_toolchain(&m, "1.88.0");
    let out = run(&mut ci(
        t.path(),
        &m,
        "run",
        &["--quiet", "--toolchain", "stable"],
    ));
    assert_eq!(out.code, 1, "{}", out.text());
    let run_dir = t.path().join("run");
    let s = summary(&run_dir);
    let r = repo(&s, "lints");
    let h = hints(r);
    assert!(
        h[0].starts_with("[lint-on-newer-toolchain] a lint fails on ")
            && h[0].contains("newer than the repo's pin 1.88.0")
            && h[0].contains("rustup toolchain install 1.88.0"),
        "{h:#?}"
    );
    assert!(
        h.iter().any(|x| x
            .starts_with("[clippy-denied-warning] clippy warning denied: clippy::needless-return")),
        "{h:#?}"
    );
    assert!(
        !h.iter().any(|x| x.contains("[could-not-compile]")),
        "a denied lint is not a compile failure: {h:#?}"
    );
    assert_eq!(r["hint_context"]["pinned_toolchain"], "1.88.0", "{r}");
    let used = r["hint_context"]["toolchain"].as_str().unwrap().to_owned();
    assert!(h[0].contains(&format!("fails on {used}")), "{h:#?}");
    // `explain` over the run, and over the step log the summary points at, gives the
    // run's hints: it reads the context the run recorded.
    let text = explain(&run_dir);
    assert!(text.contains("[lint-on-newer-toolchain]"), "{text}");
    assert!(!text.contains("[could-not-compile]"), "{text}");
    let text = explain(&run_dir.join("lints/clippy.log"));
    assert!(text.contains("[lint-on-newer-toolchain]"), "{text}");

    // The same failure on the toolchain the repo is kept on (no override, no pin older
    // than it): only the lint itself.
    let text = fs::read_to_string(&m)
        .unwrap()
        .replace("toolchain = \"1.88.0\"\n", "");
    fs::write(&m, text).unwrap();
    let out = run(&mut ci(
        t.path(),
        &m,
        "run2",
        &["--quiet", "--toolchain", "stable"],
    ));
    assert_eq!(out.code, 1, "{}", out.text());
    let s = summary(&t.path().join("run2"));
    let h = hints(repo(&s, "lints"));
    assert!(
        h[0].starts_with("[clippy-denied-warning]") && !h.iter().any(|x| x.contains("newer")),
        "{h:#?}"
    );
}

// ---- a compile failure against a registry release names the versions ------------------

/// A chain of `up` (a sibling checkout at 0.1.1, with `added_in_0_1_1`) and `down`, which
/// calls that function and depends on `up = "0.1"`, patched to the sibling. "crates.io"
/// is a vendored directory source holding `up` 0.1.0, which lacks it: registry mode
/// compiles `down` against 0.1.0 and fails with E0425.
fn skewed_registry_chain(root: &Path) -> PathBuf {
    let vendor = root.join("vendor/up");
    fs::create_dir_all(vendor.join("src")).unwrap();
    fs::write(
        vendor.join("Cargo.toml"),
        "[package]\nname = \"up\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(
        vendor.join("src/lib.rs"),
        "//! up 0.1.0, as released.\n\n/// A value.\npub fn value() -> u32 {\n    1\n}\n",
    )
    .unwrap();
    fs::write(
        vendor.join(".cargo-checksum.json"),
        "{\"files\":{},\"package\":null}",
    )
    .unwrap();
    fs::create_dir_all(root.join(".cargo")).unwrap();
    fs::write(
        root.join(".cargo/config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
            root.join("vendor").display()
        ),
    )
    .unwrap();
    let m = write_chain(
        root,
        &[("up", &[]), ("down", &[])],
        &[
            ("up", "steps = [\"build\"]"),
            ("down", "steps = [\"build\"]"),
        ],
    );
    let up_toml = root.join("up/Cargo.toml");
    let text = fs::read_to_string(&up_toml).unwrap().replacen(
        "version = \"0.1.0\"",
        "version = \"0.1.1\"",
        1,
    );
    fs::write(&up_toml, text).unwrap();
    fs::write(
        root.join("up/src/lib.rs"),
        "//! up 0.1.1, the checkout.\n\n/// A value.\npub fn value() -> u32 {\n    1\n}\n\n/// New in 0.1.1.\npub fn added_in_0_1_1() -> u32 {\n    2\n}\n",
    )
    .unwrap();
    let toml = root.join("down/Cargo.toml");
    let text = fs::read_to_string(&toml).unwrap().replacen(
        "[dependencies]\n",
        "[dependencies]\nup = \"0.1\"\n",
        1,
    );
    fs::write(
        &toml,
        text + "\n[patch.crates-io]\nup = { path = \"../up\" }\n",
    )
    .unwrap();
    fs::write(
        root.join("down/src/lib.rs"),
        "//! Fixture crate.\n\n/// Uses what only the checkout has.\npub fn value() -> u32 {\n    up::added_in_0_1_1()\n}\n",
    )
    .unwrap();
    m
}

#[test]
fn a_compile_failure_against_a_registry_release_names_its_version_beside_the_checkouts() {
    let t = tempfile::tempdir().unwrap();
    let m = skewed_registry_chain(t.path());
    let out = run(&mut ci(
        t.path(),
        &m,
        "run",
        &["--quiet", "--deps", "registry"],
    ));
    assert_eq!(out.code, 1, "{}", out.text());
    let run_dir = t.path().join("run");
    let s = summary(&run_dir);
    let down = repo(&s, "down");
    assert_eq!(down["status"], "failed", "{down}");
    let h = hints(down);
    assert!(
        h[0].starts_with(
            "[compiled-against-registry-release] compiled against crates.io releases, not the sibling checkouts: up 0.1.0 from crates.io (checkout up: 0.1.1)"
        ),
        "{h:#?}"
    );
    assert!(h[0].contains("cargo update -p <crate> --precise"), "{h:#?}");
    assert_eq!(
        down["hint_context"]["registry_versions"],
        "up 0.1.0 from crates.io (checkout up: 0.1.1)"
    );
    assert!(
        out.stdout
            .contains("hint: [compiled-against-registry-release]"),
        "{}",
        out.text()
    );
    let text = explain(&run_dir);
    assert!(
        text.contains("[compiled-against-registry-release]")
            && text.contains("first error: error[E0425]"),
        "{text}"
    );

    // Patched mode builds against the checkout: it compiles, nothing to explain.
    let out = run(&mut ci(
        t.path(),
        &m,
        "patched",
        &["--quiet", "--deps", "patched"],
    ));
    assert_eq!(out.code, 0, "{}", out.text());
}

// ---- resolution failures get hints, and the network is not a missing checkout ----------

#[test]
fn resolution_failures_get_hints_and_explain_run_dir_covers_them() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("unpublished", &[]), ("gitdep", &[])],
        &[
            ("unpublished", "steps = [\"build\"]"),
            ("gitdep", "steps = [\"build\"]"),
        ],
    );
    // "crates.io" is an empty vendored directory: nothing is published.
    fs::create_dir_all(t.path().join("vendor")).unwrap();
    fs::create_dir_all(t.path().join(".cargo")).unwrap();
    fs::write(
        t.path().join(".cargo/config.toml"),
        format!(
            "[source.crates-io]\nreplace-with = \"vendored\"\n\n[source.vendored]\ndirectory = \"{}\"\n",
            t.path().join("vendor").display()
        ),
    )
    .unwrap();
    let add_dep = |repo: &str, dep: &str| {
        let toml = t.path().join(repo).join("Cargo.toml");
        let text = fs::read_to_string(&toml).unwrap().replacen(
            "[dependencies]\n",
            &format!("[dependencies]\n{dep}\n"),
            1,
        );
        fs::write(&toml, text).unwrap();
    };
    add_dep("unpublished", "never-published-zz = \"0.1\"");
    // A git source on a port nothing listens on: the fetch fails like an unreachable host.
    add_dep(
        "gitdep",
        "remote-zz = { git = \"https://127.0.0.1:9/remote-zz.git\" }",
    );
    let out = run(ci(t.path(), &m, "run", &["--quiet"])
        .env("CARGO_NET_RETRY", "0")
        .env("CARGO_HTTP_TIMEOUT", "5"));
    assert_eq!(out.code, 1, "{}", out.text());
    let run_dir = t.path().join("run");
    let s = summary(&run_dir);
    let unpublished = repo(&s, "unpublished");
    assert_eq!(unpublished["status"], "failed", "{unpublished}");
    assert!(unpublished["steps"].as_array().unwrap().is_empty());
    let h = hints(unpublished);
    assert!(
        h.iter()
            .any(|x| x
                .starts_with("[registry-no-such-package] `never-published-zz` is not published")),
        "{h:#?}"
    );
    let gitdep = repo(&s, "gitdep");
    let h = hints(gitdep);
    assert!(
        h[0].starts_with(
            "[git-dependency-unreachable] cannot fetch the git dependency `remote-zz` from https://127.0.0.1:9/remote-zz.git: the network, not a missing checkout"
        ),
        "{h:#?}"
    );
    assert!(
        !h.iter().any(|x| x.contains("sibling-checkout-missing")),
        "{h:#?}"
    );
    // `explain RUN_DIR` covers repos that failed before any step.
    let text = explain(&run_dir);
    assert!(
        text.contains("unpublished (failed before any step: resolution)")
            && text.contains("[registry-no-such-package]")
            && text.contains("gitdep (failed before any step: resolution)")
            && text.contains("[git-dependency-unreachable]"),
        "{text}"
    );
    assert!(!text.contains("no failure in this run"), "{text}");
}

// ---- failing tests and doctests, named with their panic and place ---------------------

/// A workspace `t` whose member `crates/inner` has a failing test (an `assert_eq!` with a
/// message) and a passing one.
fn failing_test_repo(root: &Path) {
    let dir = root.join("t");
    fs::create_dir_all(dir.join("crates/inner/src")).unwrap();
    fs::write(
        dir.join("Cargo.toml"),
        "[workspace]\nmembers = [\"crates/inner\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    fs::write(
        dir.join("crates/inner/Cargo.toml"),
        "[package]\nname = \"inner\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n",
    )
    .unwrap();
    fs::write(
        dir.join("crates/inner/src/lib.rs"),
        "//! Fixture crate.\n\n/// The sum.\npub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn passes() {\n        assert_eq!(super::add(1, 1), 2);\n    }\n\n    #[test]\n    fn fails_on_purpose() {\n        assert_eq!(super::add(1, 2), 4, \"sums <differ> & more\");\n    }\n}\n",
    )
    .unwrap();
}

/// A crate `d` whose unit test passes and whose doctest (at line 3 of src/lib.rs) fails.
const FAILING_DOCTEST: &str = "//! Fixture crate.\n\n/// ```\n/// assert_eq!(d::add(1, 1), 3);\n/// ```\npub fn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn passes() {\n        assert_eq!(super::add(1, 1), 2);\n    }\n}\n";

#[test]
fn failing_tests_and_doctests_are_named_with_their_panic_and_place_everywhere() {
    if !support::have_cargo_subcommand(&support::NEXTEST, "nextest", Some([0, 9, 143])) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(t.path(), &[("d", &[])], &[("d", "steps = [\"test\"]")]);
    fs::write(t.path().join("d/src/lib.rs"), FAILING_DOCTEST).unwrap();
    failing_test_repo(t.path());
    let text = fs::read_to_string(&m).unwrap()
        + "\n[[repo]]\nname = \"t\"\ngithub = \"fixture/t\"\nsteps = [\"test\"]\n";
    fs::write(&m, text).unwrap();
    let step_summary = t.path().join("step-summary.md");
    let out = run(ci(t.path(), &m, "run", &[])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &step_summary));
    assert_eq!(out.code, 1, "{}", out.text());
    let s = summary(&t.path().join("run"));

    // The failing test: its name, its panic message, its place relative to the
    // repository root (the workspace member's path included).
    let tr = repo(&s, "t");
    assert_eq!(
        tr["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 0}),
        "{tr}"
    );
    let f = &tr["failed_tests"][0];
    assert_eq!(f["name"], "inner tests::fails_on_purpose", "{tr}");
    assert_eq!(
        f["message"],
        "assertion `left == right` failed: sums <differ> & more\n  left: 3\n right: 4",
        "{tr}"
    );
    assert_eq!(f["file"], "crates/inner/src/lib.rs", "{tr}");
    assert_eq!(f["line"], 17, "{tr}");
    let col = f["col"].as_u64().unwrap();

    // The doctest: counted with the unit test, named, placed at the doctest.
    let dr = repo(&s, "d");
    assert_eq!(
        dr["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 0}),
        "the doctest counts: {dr}"
    );
    let f = &dr["failed_tests"][0];
    assert_eq!(f["name"], "d src/lib.rs - add (line 3)", "{dr}");
    assert_eq!(f["file"], "src/lib.rs", "{dr}");
    assert_eq!(f["line"], 3, "{dr}");
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .starts_with("assertion `left == right` failed"),
        "{dr}"
    );
    assert!(
        hints(dr)
            .iter()
            .any(|h| h.starts_with("[tests-failed] 1 test(s) failed")),
        "{dr}"
    );

    // The console summary names them.
    assert!(
        out.stdout.contains(&format!(
            "test failed: inner tests::fails_on_purpose (crates/inner/src/lib.rs:17:{col}): assertion `left == right` failed: sums <differ> & more"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("test failed: d src/lib.rs - add (line 3) (src/lib.rs:3): assertion"),
        "{}",
        out.stdout
    );
    // One `::error` annotation per failing test, at its place, with GitHub's escaping.
    assert!(
        out.stdout.contains(&format!(
            "::error file=crates/inner/src/lib.rs,line=17,col={col},title=t%3A test inner tests%3A%3Afails_on_purpose failed::assertion `left == right` failed: sums <differ> & more%0A  left: 3%0A right: 4\n"
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "::error file=src/lib.rs,line=3,title=d%3A test d src/lib.rs - add (line 3) failed::assertion"
        ),
        "{}",
        out.stdout
    );
    // The step summary lists them.
    let md = fs::read_to_string(&step_summary).unwrap();
    assert!(
        md.contains("**t**: failing tests\n")
            && md.contains(&format!(
                "- `inner tests::fails_on_purpose (crates/inner/src/lib.rs:17:{col})`: assertion `left == right` failed: sums <differ> & more\n"
            )),
        "{md}"
    );
    assert!(md.contains("**d**: failing tests\n"), "{md}");
}

// ---- a missing toolchain is one preflight problem with the fix -------------------------

#[test]
fn a_toolchain_several_repos_need_and_that_is_missing_is_one_problem_with_the_fix() {
    if support::find_tool(&support::RUSTUP, &["rustup"]).is_none() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(t.path(), &[("a", &[]), ("b", &[]), ("c", &[])], &[]);
    pin_toolchain(&m, "0.0.1-not-installed");
    let out = run(xtask()
        .args(["preflight", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env("RUST_BACKTRACE", "1")
        .env_remove("RUSTUP_TOOLCHAIN"));
    assert_eq!(out.code, 2, "{}", out.text());
    let problems: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("preflight: error [toolchain]"))
        .collect();
    assert_eq!(problems.len(), 1, "{}", out.stderr);
    assert!(
        problems[0].contains(
            "toolchain 0.0.1-not-installed cannot run, and 3 repos build with it: a, b, c"
        ),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("chosen by: the manifest's `toolchain = \"0.0.1-not-installed\"` (a, b, c)")
            && out
                .stderr
                .contains("fix: install it (`rustup toolchain install 0.0.1-not-installed")
            && out.stderr.contains("or pass `--toolchain stable`"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Stack backtrace") && !out.stderr.contains("help: run `rustup"),
        "rustup's own noise is left out: {}",
        out.stderr
    );
    // With `--toolchain stable` the run can start.
    let out = run(xtask()
        .args(["preflight", "--toolchain", "stable", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .env_remove("RUSTUP_TOOLCHAIN"));
    assert_eq!(out.code, 0, "{}", out.text());
}

// ---- the shipped manifest mirrors the repos' own CI -----------------------------------

#[test]
fn the_shipped_manifest_mirrors_the_repos_own_ci() {
    let path = support::workspace().join("ci/chain.toml");
    let text = fs::read_to_string(&path).unwrap();
    let v: toml::Table = text.parse().unwrap();
    let d = &v["defaults"];
    assert_eq!(d["toolchain"].as_str(), Some("1.88.0"));
    assert_eq!(d["deps"].as_str(), Some("registry"));
    let repos = v["repo"].as_array().unwrap();
    let steps_of = |name: &str| -> Vec<String> {
        let r = repos
            .iter()
            .find(|r| r["name"].as_str() == Some(name))
            .unwrap();
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let args: Vec<&str> = s["args"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|a| a.as_str().unwrap())
                    .collect();
                format!("cargo {}", args.join(" "))
            })
            .collect()
    };
    assert_eq!(
        steps_of("blvm-primitives"),
        [
            "cargo build --release --all-features",
            "cargo test --all-features",
            "cargo clippy --all-features -- -D warnings",
            "cargo fmt -- --check"
        ]
    );
    assert_eq!(steps_of("blvm-consensus")[0], "cargo test --all-features");
    // Nothing stricter than their CI: no repo's clippy lints every target.
    for r in repos.iter().filter(|r| r.get("steps").is_some()) {
        let name = r["name"].as_str().unwrap();
        assert!(
            steps_of(name).iter().all(|s| !s.contains("--all-targets")),
            "{name}: {:?}",
            steps_of(name)
        );
    }
    // The known limits and the pins are written down where a maintainer reads them.
    for needle in [
        "github.com/quinn-rs/quinn",
        "libclang",
        "commits its `target/`",
        "[repo.pins]",
    ] {
        assert!(
            text.contains(needle),
            "ci/chain.toml does not mention {needle}"
        );
    }
    for pin in [
        r#"blvm-primitives\s*=\s*"=0\.1\.19""#,
        r#"blvm-consensus\s*=\s*"=0\.1\.20""#,
    ] {
        assert!(
            regex::Regex::new(pin).unwrap().is_match(&text),
            "ci/chain.toml does not pin {pin}"
        );
    }
    // And it resolves: `plan` reads it (the checkouts are not here, so with `--root` at an
    // empty directory it fails on the first missing checkout, by name).
    let t = tempfile::tempdir().unwrap();
    let out = run(xtask()
        .args(["plan", "--manifest"])
        .arg(&path)
        .arg("--root")
        .arg(t.path())
        .arg("--cache-dir")
        .arg(t.path().join("cache")));
    assert!(
        out.stderr.contains("blvm-") && !out.stderr.contains("chain.toml:"),
        "the manifest parses; only checkouts are missing: {}",
        out.text()
    );
}
