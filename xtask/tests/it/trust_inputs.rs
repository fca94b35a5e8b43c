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
        .env("CARGO_REGISTRY_TOKEN", "hunter2-do-not-print"));
    assert_eq!(explain.code, 0, "{}", explain.text());
    assert!(
        explain.stdout.contains("env RUSTFLAGS: (unset) -> --cfg x"),
        "{}",
        explain.text()
    );
    assert!(
        explain
            .stdout
            .contains("env CARGO_REGISTRY_TOKEN: (unset) -> sha256:"),
        "{}",
        explain.text()
    );
    let verbose =
        run(plan(&m, &cache, &["-v"]).env("CARGO_REGISTRY_TOKEN", "hunter2-do-not-print"));
    assert!(
        verbose
            .stdout
            .contains("env CARGO_REGISTRY_TOKEN = sha256:"),
        "{}",
        verbose.text()
    );
    assert!(!format!("{}{}", explain.text(), verbose.text()).contains("hunter2"));

    let flagged = run(ci(&m, &cache, &t.path().join("run3"), &[])
        .env("RUSTFLAGS", "--cfg x")
        .env("CARGO_REGISTRY_TOKEN", "hunter2-do-not-print"));
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
