//! No false green (issue 13, section 1; issue 15, item 2): everything cargo and rustc read
//! is an input of the fingerprint, `--affected` and bad flags fail closed, every built-in
//! step's failure is reported as a failure, and registry mode builds with the sibling
//! patches stripped and puts the manifest back byte for byte. Real cargo builds of small
//! fixture crates, real git repositories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, repo, summary, write_chain, xtask};

/// What one `cargo xtask` invocation did.
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn text(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
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

/// `cargo xtask ci --quiet` on `manifest` with its own cache and run dir, plus `extra`.
fn ci(manifest: &Path, cache: &Path, run_dir: &Path, extra: &[&str]) -> assert_cmd::Command {
    let mut c = xtask();
    c.args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir)
        .args(extra);
    c
}

/// `cargo xtask plan` on `manifest` with `args`.
fn plan(manifest: &Path, cache: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = xtask();
    c.arg("plan")
        .args(args)
        .arg("--manifest")
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache);
    c
}

/// A one-repo chain under `root`: crate `r` with `lib_rs` as its library and `manifest_extra`
/// appended to its table in `chain.toml`; the checkout is a committed git repository.
fn one_crate(root: &Path, lib_rs: &str, manifest_extra: &str) -> PathBuf {
    let m = write_chain(root, &[("r", &[])], &[("r", manifest_extra)]);
    fs::write(root.join("r/src/lib.rs"), lib_rs).unwrap();
    fs::write(root.join("r/.gitignore"), "/target\n").unwrap();
    m
}

fn append(path: &Path, text: &str) {
    let old = fs::read_to_string(path).unwrap();
    fs::write(path, old + text).unwrap();
}

fn status(run_dir: &Path, name: &str) -> String {
    repo(&summary(run_dir), name)["status"]
        .as_str()
        .unwrap()
        .to_owned()
}

// ---- 1. everything cargo and rustc read is an input ------------------------------------

const CFG_X_LIB: &str = "//! Fixture crate.\n\n#[cfg(x)]\ncompile_error!(\"built with --cfg x\");\n\n/// A value.\npub fn value() -> u32 {\n    1\n}\n";

#[test]
fn rustflags_turning_on_a_compile_error_make_a_recorded_success_run_and_fail() {
    let t = tempfile::tempdir().unwrap();
    let m = one_crate(t.path(), CFG_X_LIB, "steps = [\"build\"]");
    append(
        &t.path().join("r/Cargo.toml"),
        "\n[lints.rust]\nunexpected_cfgs = { level = \"warn\", check-cfg = [\"cfg(x)\"] }\n",
    );
    support::git_commit_all(&t.path().join("r"));
    let cache = t.path().join("cache");
    let first = run(ci(&m, &cache, &t.path().join("run1"), &[]).env_remove("RUSTFLAGS"));
    assert_eq!(first.code, 0, "{}", first.text());
    let again = run(ci(&m, &cache, &t.path().join("run2"), &[]).env_remove("RUSTFLAGS"));
    assert_eq!(again.code, 0, "{}", again.text());
    assert_eq!(status(&t.path().join("run2"), "r"), "cached");

    // `plan --explain` names the variable and both values, and hides a secret's value.
    let explain = run(plan(&m, &cache, &["--explain", "r"])
        .env("RUSTFLAGS", "--cfg x")
        .env("RUST_SIGNING_API_TOKEN", "hunter2-do-not-print"));
    assert_eq!(explain.code, 0, "{}", explain.text());
    assert!(
        explain.stdout.contains("env RUSTFLAGS: (unset) -> --cfg x"),
        "{}",
        explain.text()
    );
    assert!(
        explain
            .stdout
            .contains("env RUST_SIGNING_API_TOKEN: (unset) -> sha256:"),
        "{}",
        explain.text()
    );
    let verbose =
        run(plan(&m, &cache, &["-v"]).env("RUST_SIGNING_API_TOKEN", "hunter2-do-not-print"));
    assert!(
        verbose
            .stdout
            .contains("env RUST_SIGNING_API_TOKEN = sha256:"),
        "{}",
        verbose.text()
    );
    assert!(!format!("{}{}", explain.text(), verbose.text()).contains("hunter2"));

    let flagged = run(ci(&m, &cache, &t.path().join("run3"), &[])
        .env("RUSTFLAGS", "--cfg x")
        .env("RUST_SIGNING_API_TOKEN", "hunter2-do-not-print"));
    assert_eq!(flagged.code, 1, "{}", flagged.text());
    let run3 = t.path().join("run3");
    assert_eq!(status(&run3, "r"), "failed");
    let log = fs::read_to_string(run3.join("r/build.log")).unwrap();
    assert!(log.contains("built with --cfg x"), "{log}");
    // No record under the cache root holds the secret's value.
    for e in walkdir::WalkDir::new(&cache).into_iter().flatten() {
        if e.file_type().is_file() {
            let bytes = fs::read(e.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("hunter2"),
                "{} holds the secret",
                e.path().display()
            );
        }
    }
}

#[test]
fn an_ignored_file_the_crate_includes_is_an_input() {
    let t = tempfile::tempdir().unwrap();
    let lib = "//! Fixture crate.\n\ninclude!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/generated.rs\"));\n";
    let m = one_crate(t.path(), lib, "steps = [\"build\"]");
    fs::write(t.path().join("r/.gitignore"), "/target\n/generated.rs\n").unwrap();
    let generated = t.path().join("r/generated.rs");
    fs::write(&generated, "/// A value.\npub const V: u32 = 1;\n").unwrap();
    support::git_commit_all(&t.path().join("r"));
    let tracked = Command::new("git")
        .args(["ls-files", "generated.rs"])
        .current_dir(t.path().join("r"))
        .output()
        .unwrap();
    assert!(
        tracked.stdout.is_empty(),
        "the fixture's file is ignored by git"
    );
    let cache = t.path().join("cache");
    assert_eq!(
        run(&mut ci(&m, &cache, &t.path().join("run1"), &[])).code,
        0
    );
    assert_eq!(
        run(&mut ci(&m, &cache, &t.path().join("run2"), &[])).code,
        0
    );
    assert_eq!(status(&t.path().join("run2"), "r"), "cached");

    fs::write(
        &generated,
        "compile_error!(\"the ignored file was read\");\n",
    )
    .unwrap();
    let explain = run(&mut plan(&m, &cache, &["--explain", "r"]));
    assert!(explain.stdout.contains("content:"), "{}", explain.text());
    let edited = run(&mut ci(&m, &cache, &t.path().join("run3"), &[]));
    assert_eq!(edited.code, 1, "{}", edited.text());
    assert_eq!(status(&t.path().join("run3"), "r"), "failed");
    let log = fs::read_to_string(t.path().join("run3/r/build.log")).unwrap();
    assert!(log.contains("the ignored file was read"), "{log}");
}

#[test]
fn a_parent_directorys_cargo_config_is_an_input() {
    let t = tempfile::tempdir().unwrap();
    let m = one_crate(t.path(), CFG_X_LIB, "steps = [\"build\"]");
    append(
        &t.path().join("r/Cargo.toml"),
        "\n[lints.rust]\nunexpected_cfgs = { level = \"warn\", check-cfg = [\"cfg(x)\"] }\n",
    );
    support::git_commit_all(&t.path().join("r"));
    let cache = t.path().join("cache");
    assert_eq!(
        run(ci(&m, &cache, &t.path().join("run1"), &[]).env_remove("RUSTFLAGS")).code,
        0
    );
    // The chain root is the checkout's parent: its `.cargo/config.toml` applies to it.
    fs::create_dir_all(t.path().join(".cargo")).unwrap();
    fs::write(
        t.path().join(".cargo/config.toml"),
        "[build]\nrustflags = [\"--cfg\", \"x\"]\n",
    )
    .unwrap();
    let out = run(ci(&m, &cache, &t.path().join("run2"), &[]).env_remove("RUSTFLAGS"));
    assert_eq!(out.code, 1, "{}", out.text());
    assert_eq!(status(&t.path().join("run2"), "r"), "failed");
}

// ---- 2. `--affected` fails closed ------------------------------------------------------

/// A chain of two repos, `a` and `b` (b depends on a), each its own git repository with two
/// commits; returns the manifest.
fn two_repo_history(root: &Path) -> PathBuf {
    let m = write_chain(root, &[("a", &[]), ("b", &[("a", "normal")])], &[]);
    for name in ["a", "b"] {
        let dir = root.join(name);
        support::git_commit_all(&dir);
        append(
            &dir.join("src/lib.rs"),
            "\n/// Another.\npub const TWO: u8 = 2;\n",
        );
        let st = Command::new("git")
            .args([
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e.invalid",
                "commit",
                "-qam",
                "two",
            ])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success());
    }
    m
}

#[test]
fn affected_refs_that_do_not_resolve_stop_the_run_with_the_fix() {
    let t = tempfile::tempdir().unwrap();
    let m = two_repo_history(t.path());
    let cache = t.path().join("cache");
    let run_dir = t.path().join("run");
    // What a shallow checkout gives when the base was never fetched.
    let out = run(&mut ci(
        &m,
        &cache,
        &run_dir,
        &["--affected", "deadbeef..HEAD"],
    ));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(
        out.stderr.contains("`deadbeef` does not name a commit")
            && out.stderr.contains("fetch-depth: 0")
            && out.stderr.contains("git fetch"),
        "{}",
        out.text()
    );
    assert!(!run_dir.join("summary.json").exists(), "nothing ran");
    // The same through the variables workflows set.
    let out = run(ci(&m, &cache, &run_dir, &[])
        .env("BLLVM_CI_BASE", "deadbeef")
        .env("BLLVM_CI_HEAD", "HEAD"));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("fetch-depth: 0"), "{}", out.text());
    // One of the two set is not a run of everything.
    let out = run(ci(&m, &cache, &run_dir, &[])
        .env("BLLVM_CI_BASE", "HEAD~1")
        .env_remove("BLLVM_CI_HEAD"));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("BLLVM_CI_HEAD"), "{}", out.text());
    // Refs that resolve everywhere still work: `a` and `b` both changed.
    let out = run(&mut plan(
        &m,
        &cache,
        &["--format", "json", "--affected", "HEAD~1..HEAD"],
    ));
    assert_eq!(out.code, 0, "{}", out.text());
    let p: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for r in p["repos"].as_array().unwrap() {
        assert_eq!(r["action"], "run", "{r}");
    }
    // A real shallow clone of one checkout: HEAD~1 is not there.
    let shallow = t.path().join("shallow");
    fs::create_dir_all(&shallow).unwrap();
    for name in ["a", "b"] {
        let st = Command::new("git")
            .args(["clone", "-q", "--depth", "1"])
            .arg(format!("file://{}", t.path().join(name).display()))
            .arg(shallow.join(name))
            .status()
            .unwrap();
        assert!(st.success());
    }
    fs::copy(&m, shallow.join("chain.toml")).unwrap();
    let out = run(&mut ci(
        &shallow.join("chain.toml"),
        &cache,
        &run_dir,
        &["--affected", "HEAD~1..HEAD"],
    ));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(
        out.stderr
            .contains("`HEAD~1` does not name a commit in the checkout of `a`")
            && out.stderr.contains("fetch-depth: 0"),
        "{}",
        out.text()
    );
}

#[test]
fn affected_refs_are_never_git_options() {
    let t = tempfile::tempdir().unwrap();
    let m = two_repo_history(t.path());
    let cache = t.path().join("cache");
    let victim = t.path().join("victim.txt");
    fs::write(&victim, "precious\n").unwrap();
    let spec = format!("--output={}..HEAD", victim.display());
    let out = run(&mut ci(
        &m,
        &cache,
        &t.path().join("run"),
        &[&format!("--affected={spec}")],
    ));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("starts with `-`"), "{}", out.text());
    let out = run(ci(&m, &cache, &t.path().join("run"), &[])
        .env("BLLVM_CI_BASE", format!("--output={}", victim.display()))
        .env("BLLVM_CI_HEAD", "HEAD"));
    assert_eq!(out.code, 2, "{}", out.text());
    let out = run(ci(&m, &cache, &t.path().join("run"), &[])
        .env("BLLVM_CI_BASE", "HEAD~1")
        .env("BLLVM_CI_HEAD", format!("--output={}", victim.display())));
    assert_eq!(out.code, 2, "{}", out.text());
    assert_eq!(fs::read_to_string(&victim).unwrap(), "precious\n");
}

// ---- 3. bad flags are errors, not a different run -------------------------------------

#[test]
fn flags_naming_what_does_not_exist_are_errors_that_list_what_does() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(
        t.path(),
        &[("a", &[]), ("b", &[("a", "normal")])],
        &[(
            "b",
            "variants = [\"base\", \"experimental\"]\n[repo.features]\nexperimental = []",
        )],
    );
    let cache = t.path().join("cache");
    let run_dir = t.path().join("run");
    let cases: Vec<(&[&str], &str)> = vec![
        (
            &["--variant", "experimentl"],
            "unknown variant `experimentl`",
        ),
        (&["--only", "c"], "(known: a, b)"),
        (&["--force", "c"], "(known: a, b)"),
        (&["--jobs", "0"], "must be at least 1"),
        (
            &["--cell", "default-base", "--variant", "experimental"],
            "cannot be used with",
        ),
        (
            &["--matrix", "--variant", "experimental"],
            "cannot be used with",
        ),
        (&["--cell", "nightly-nope"], "no matrix cell `nightly-nope`"),
    ];
    for (args, says) in cases {
        let out = run(&mut ci(&m, &cache, &run_dir, args));
        assert_eq!(out.code, 2, "{args:?}: {}", out.text());
        assert!(out.stderr.contains(says), "{args:?}: {}", out.text());
        assert!(!run_dir.join("summary.json").exists(), "{args:?} ran");
    }
    let out = run(&mut ci(&m, &cache, &run_dir, &["--variant", "experimentl"]));
    assert!(
        out.stderr.contains("`base`, `experimental`"),
        "the known variants are listed: {}",
        out.text()
    );
    // The default variant and a listed one are fine, in `plan` too.
    for v in ["base", "experimental"] {
        let out = run(&mut plan(&m, &cache, &["--variant", v]));
        assert_eq!(out.code, 0, "{v}: {}", out.text());
    }
    assert_eq!(
        run(&mut plan(&m, &cache, &["--variant", "experimentl"])).code,
        2
    );

    // Commands that would ignore `--only` and `--variant` do not take them.
    for cmd in ["checkout", "notify"] {
        for flag in ["--only", "--variant"] {
            let out = run(xtask().args([cmd, flag, "a", "--manifest"]).arg(&m));
            assert_eq!(out.code, 2, "{cmd} {flag}: {}", out.text());
            assert!(out.stderr.contains("unexpected argument"), "{}", out.text());
        }
    }

    // A chain whose repos list no variant knows only its default.
    let plain = t.path().join("plain");
    let pm = write_chain(&plain, &[("x", &[])], &[]);
    assert_eq!(run(&mut plan(&pm, &cache, &["--variant", "base"])).code, 0);
    let out = run(&mut plan(&pm, &cache, &["--variant", "experimental"]));
    assert_eq!(out.code, 2, "{}", out.text());
    assert!(out.stderr.contains("knows `base`"), "{}", out.text());
}

#[test]
fn a_toolchain_flag_that_is_not_installed_is_blamed_on_the_flag() {
    let t = tempfile::tempdir().unwrap();
    let m = write_chain(t.path(), &[("a", &[])], &[]);
    let cache = t.path().join("cache");
    for cmd in ["plan", "ci"] {
        let mut c = xtask();
        c.args([cmd, "--toolchain", "0.0.1-not-installed", "--manifest"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(&cache)
            .env("RUSTUP_AUTO_INSTALL", "0");
        if cmd == "ci" {
            c.arg("--run-dir").arg(t.path().join("run"));
        }
        let out = run(&mut c);
        assert_eq!(out.code, 2, "{cmd}: {}", out.text());
        assert!(
            out.stderr
                .contains("the toolchain given by --toolchain 0.0.1-not-installed cannot run")
                && out
                    .stderr
                    .contains("rustup toolchain install 0.0.1-not-installed")
                && !out.stderr.contains("manifest"),
            "{cmd}: {}",
            out.text()
        );
    }
}

// ---- 4. a step that fails is never reported as success ---------------------------------

/// A directory of links to every program on `PATH` except `hidden`, and an empty
/// `$CARGO_HOME`: run under them, cargo finds no `cargo-<hidden>` subcommand (it looks in
/// `$CARGO_HOME/bin`, then `PATH`). Everything else (cargo, rustc, rustup, git, sh) works.
fn without_tools(t: &Path, hidden: &[&str]) -> (PathBuf, PathBuf) {
    let bin = t.join("path-without-tools");
    let home = t.join("empty-cargo-home");
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(home.join("bin")).unwrap();
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let to = bin.join(&name);
            if hidden.iter().any(|h| name == *h) || to.symlink_metadata().is_ok() {
                continue;
            }
            let _ = std::os::unix::fs::symlink(e.path(), &to);
        }
    }
    (bin, home)
}

/// Whether `cargo <sub> --version` runs here; under CI a missing tool fails the test with
/// its install command, elsewhere the caller skips that part and says so.
fn tool(sub: &str, install: &str) -> bool {
    let ok = Command::new("cargo")
        .args([sub, "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-{sub} is not installed: install it with `{install}`"
        );
        eprintln!("cargo-{sub} is not installed ({install}): skipping the part that needs it");
    }
    ok
}

/// How a fixture is run: with every tool this machine has, or with nextest hidden.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Tools {
    All,
    NoNextest,
}

/// Run the one-crate chain `lib_rs` (with `manifest_extra`) and check that it fails at the
/// step `step` (every step before it passed) with `code`, the repo `failed`, exit 1.
fn fails_exactly(lib_rs: &str, manifest_extra: &str, tools: Tools, step: &str, code: Option<i64>) {
    let t = tempfile::tempdir().unwrap();
    let m = one_crate(t.path(), lib_rs, manifest_extra);
    support::git_commit_all(&t.path().join("r"));
    let run_dir = t.path().join("run");
    let mut c = ci(&m, &t.path().join("cache"), &run_dir, &[]);
    if tools == Tools::NoNextest {
        let (bin, home) = without_tools(t.path(), &["cargo-nextest"]);
        c.env("PATH", bin).env("CARGO_HOME", home);
    }
    let out = run(&mut c);
    let s = summary(&run_dir);
    let r = repo(&s, "r");
    assert_eq!(out.code, 1, "{tools:?} {step}: {}\n{r}", out.text());
    assert_eq!(r["status"], "failed", "{r}");
    let steps = r["steps"].as_array().unwrap();
    let last = steps.last().unwrap();
    assert_eq!(last["name"], step, "{r}");
    assert_eq!(last["code"].as_i64(), code, "{r}");
    for s in &steps[..steps.len() - 1] {
        assert_eq!(s["code"], 0, "only `{step}` fails: {r}");
    }
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains(&format!("step `{step}`")),
        "{r}"
    );
    assert!(out.stdout.contains("result: FAILED"), "{}", out.text());
}

const UNFORMATTED: &str = "//! Fixture crate.\n\n/// A value.\npub fn value()->u32{1}\n";

const CLIPPY_LINT: &str =
    "//! Fixture crate.\n\n/// Whether `v` is empty.\npub fn empty(v: &[u32]) -> bool {\n    v.len() == 0\n}\n";

// Clippy checks with `--cfg clippy`; a build does not.
const BUILD_ONLY_ERROR: &str =
    "//! Fixture crate.\n\n#[cfg(not(clippy))]\ncompile_error!(\"fails the build step only\");\n";

const FAILING_TEST: &str = "//! Fixture crate.\n\n/// A value.\npub fn value() -> u32 {\n    1\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn fails() {\n        assert_eq!(super::value(), 2);\n    }\n}\n";

const FAILING_DOCTEST: &str = "//! Fixture crate.\n\n/// A value.\n///\n/// ```\n/// assert_eq!(r::value(), 2);\n/// ```\npub fn value() -> u32 {\n    1\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn passes() {\n        assert_eq!(super::value(), 1);\n    }\n}\n";

// Rustdoc's lints run in `cargo doc` only.
const BROKEN_DOC_LINK: &str = "//! Fixture crate.\n\n#![deny(rustdoc::broken_intra_doc_links)]\n\n/// A value, unlike [`Missing`].\npub fn value() -> u32 {\n    1\n}\n";

// A test binary that dies on a signal (SIGABRT).
const ABORTING_TEST: &str = "//! Fixture crate.\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn dies_on_a_signal() {\n        std::process::abort();\n    }\n}\n";

#[test]
fn a_failing_fmt_check_fails_the_repo() {
    fails_exactly(UNFORMATTED, "", Tools::All, "fmt-check", Some(1));
}

#[test]
fn a_failing_clippy_fails_the_repo() {
    fails_exactly(CLIPPY_LINT, "", Tools::All, "clippy", Some(101));
}

#[test]
fn a_failing_build_fails_the_repo() {
    fails_exactly(BUILD_ONLY_ERROR, "", Tools::All, "build", Some(101));
}

#[test]
fn a_failing_test_fails_the_repo_with_and_without_nextest() {
    fails_exactly(FAILING_TEST, "", Tools::NoNextest, "test", Some(101));
    if tool("nextest", "cargo install cargo-nextest --locked") {
        fails_exactly(FAILING_TEST, "", Tools::All, "test", Some(100));
    }
}

#[test]
fn a_failing_doctest_fails_the_repo_with_and_without_nextest() {
    // Without nextest, `cargo test` runs the doctests itself.
    fails_exactly(FAILING_DOCTEST, "", Tools::NoNextest, "test", Some(101));
    if tool("nextest", "cargo install cargo-nextest --locked") {
        fails_exactly(FAILING_DOCTEST, "", Tools::All, "test-doc", Some(101));
    }
}

#[test]
fn a_failing_doc_fails_the_repo() {
    fails_exactly(BROKEN_DOC_LINK, "", Tools::All, "doc", Some(101));
}

#[test]
fn a_test_binary_killed_by_a_signal_fails_the_repo() {
    fails_exactly(ABORTING_TEST, "", Tools::NoNextest, "test", Some(101));
    if tool("nextest", "cargo install cargo-nextest --locked") {
        fails_exactly(ABORTING_TEST, "", Tools::All, "test", Some(100));
    }
    // The step's own process killed by a signal has no exit code: a failure too.
    fails_exactly(
        "//! Fixture crate.\n",
        "steps = [{ name = \"killed\", command = [\"sh\", \"-c\", \"kill -KILL $$\"] }]",
        Tools::All,
        "killed",
        None,
    );
}

#[test]
fn coverage_without_tarpaulin_fails_the_repo_with_the_install_command() {
    let t = tempfile::tempdir().unwrap();
    let m = one_crate(
        t.path(),
        "//! Fixture crate.\n",
        "steps = [\"build\", \"coverage\"]",
    );
    support::git_commit_all(&t.path().join("r"));
    let run_dir = t.path().join("run");
    let (bin, home) = without_tools(t.path(), &["cargo-tarpaulin"]);
    let out = run(ci(&m, &t.path().join("cache"), &run_dir, &[])
        .env("PATH", bin)
        .env("CARGO_HOME", home));
    assert_eq!(out.code, 1, "{}", out.text());
    let s = summary(&run_dir);
    let r = repo(&s, "r");
    assert_eq!(r["status"], "failed", "{r}");
    let steps = r["steps"].as_array().unwrap();
    assert_eq!(steps[0]["code"], 0, "{r}");
    assert_eq!(steps[1]["name"], "coverage", "{r}");
    assert!(steps[1]["code"].is_null(), "never started: {r}");
    assert!(
        r["reason"]
            .as_str()
            .unwrap()
            .contains("cargo install cargo-tarpaulin --locked"),
        "{r}"
    );
}

// ---- 5. registry mode strips the sibling patches and restores the manifest ------------

/// A chain of `up` and `down`, where `down` depends on `up = "0.1"` from crates.io and
/// patches it to the sibling checkout. "crates.io" is a vendored directory source (a
/// `.cargo/config.toml` in the chain root replaces it), so registry mode builds offline; its
/// `up` says `registry`, the sibling's says `sibling`. `down`'s steps record the manifest
/// cargo saw and `cargo metadata`'s view of `up`, and its test asserts where `up` came from
/// (`EXPECT_ORIGIN`).
fn registry_chain(root: &Path, seen: &Path) -> PathBuf {
    let vendor = root.join("vendor/up");
    fs::create_dir_all(vendor.join("src")).unwrap();
    fs::write(
        vendor.join("Cargo.toml"),
        "[package]\nname = \"up\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    fs::write(
        vendor.join("src/lib.rs"),
        "//! The registry's up.\n\n/// Where this crate comes from.\npub fn origin() -> &'static str {\n    \"registry\"\n}\n",
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
    let record = format!(
        "cp Cargo.toml {seen}/seen.toml && cargo metadata --format-version 1 --offline > {seen}/metadata.json",
        seen = seen.display()
    );
    let down_steps = format!(
        "steps = [\"build\", {{ name = \"record\", command = [\"sh\", \"-c\", {record:?}] }}, \"test\"]"
    );
    let m = write_chain(
        root,
        &[("up", &[]), ("down", &[])],
        &[("down", &down_steps)],
    );
    fs::write(
        root.join("up/src/lib.rs"),
        "//! The sibling up.\n\n/// Where this crate comes from.\npub fn origin() -> &'static str {\n    \"sibling\"\n}\n",
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
        "//! Fixture crate.\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn up_comes_from_the_expected_place() {\n        assert_eq!(up::origin(), env!(\"EXPECT_ORIGIN\"));\n    }\n}\n",
    )
    .unwrap();
    m
}

#[test]
fn registry_mode_builds_with_the_sibling_patch_stripped_and_restores_the_manifest() {
    let t = tempfile::tempdir().unwrap();
    let seen = t.path().join("seen");
    fs::create_dir_all(&seen).unwrap();
    let m = registry_chain(t.path(), &seen);
    let down_toml = t.path().join("down/Cargo.toml");
    let original = fs::read(&down_toml).unwrap();
    let cache = t.path().join("cache");

    let p = run(plan(&m, &cache, &[]).args(["--deps", "registry"]));
    assert_eq!(p.code, 0, "{}", p.text());
    assert!(
        p.stdout.contains("registry mode: removed patches up"),
        "{}",
        p.text()
    );
    assert_eq!(
        fs::read(&down_toml).unwrap(),
        original,
        "plan restores it too"
    );

    let run_dir = t.path().join("run");
    let out =
        run(ci(&m, &cache, &run_dir, &["--deps", "registry"]).env("EXPECT_ORIGIN", "registry"));
    assert_eq!(out.code, 0, "{}", out.text());
    assert_eq!(status(&run_dir, "down"), "ok");
    // The manifest cargo built with had no sibling patch...
    let seen_toml = fs::read_to_string(seen.join("seen.toml")).unwrap();
    assert!(
        seen_toml.contains("up = \"0.1\"") && !seen_toml.contains("../up"),
        "{seen_toml}"
    );
    // ...so `up` came from the registry, not from the sibling checkout.
    let meta: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(seen.join("metadata.json")).unwrap()).unwrap();
    let up = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "up")
        .unwrap();
    assert!(
        up["source"]
            .as_str()
            .is_some_and(|s| s.starts_with("registry+")),
        "{up}"
    );
    // And the checkout is as it was: the manifest byte for byte, no backup, no lockfile.
    assert_eq!(fs::read(&down_toml).unwrap(), original);
    assert!(!t.path().join("down/Cargo.toml.orig.bllvm-ci").exists());
    assert!(!t.path().join("down/Cargo.lock").exists());

    // The same chain in patched mode builds against the sibling: the fixture tells them
    // apart.
    let run_dir = t.path().join("patched");
    let out = run(ci(&m, &cache, &run_dir, &[]).env("EXPECT_ORIGIN", "sibling"));
    assert_eq!(out.code, 0, "{}", out.text());
    assert!(fs::read_to_string(seen.join("seen.toml"))
        .unwrap()
        .contains("../up"));
    assert_eq!(fs::read(&down_toml).unwrap(), original);
}
