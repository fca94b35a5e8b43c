//! Issue 5, debugging aids, through the CLI: `explain` (error knowledge base), `preflight`,
//! notifications and `report`.

use assert_cmd::Command;

fn xtask() -> Command {
    Command::cargo_bin("xtask").expect("xtask binary")
}

/// A cargo log as a failed `build` step writes it: a missing sibling and a real compile
/// error, with cargo's colours on.
const FAILED_BUILD_LOG: &str =
    "   \x1b[1m\x1b[32mCompiling\x1b[0m bllvm-node v0.1.0 (/ci/bllvm-node)\n\
\x1b[1m\x1b[91merror[E0425]\x1b[0m: cannot find value `genesis` in this scope\n\
  --> src/lib.rs:3:5\n\
\x1b[1m\x1b[91merror\x1b[0m: could not compile `bllvm-node` (lib) due to 1 previous error\n";

#[test]
fn explain_reads_stdin_and_prints_matches_with_their_lines_and_the_first_error() {
    let out = xtask()
        .args(["explain", "-"])
        .write_stdin(FAILED_BUILD_LOG)
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("[could-not-compile] `bllvm-node` did not compile"),
        "{text}"
    );
    assert!(
        text.contains("    4 | error: could not compile `bllvm-node` (lib)"),
        "{text}"
    );
    assert!(
        text.contains(
            "first error: error[E0425]: cannot find value `genesis` in this scope (src/lib.rs:3:5)"
        ),
        "{text}"
    );
}

#[test]
fn explain_reads_a_file_as_json_and_says_so_when_nothing_matches() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    std::fs::write(
        &log,
        "error: toolchain '1.70.0-x86_64-unknown-linux-gnu' is not installed\n",
    )
    .unwrap();
    let out = xtask()
        .args(["explain", "--format", "json"])
        .arg(&log)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["id"], "toolchain-not-installed");
    assert!(v[0]["fix"]
        .as_str()
        .unwrap()
        .contains("rustup toolchain install 1.70.0-x86_64-unknown-linux-gnu"));

    let out = xtask()
        .args(["explain", "-"])
        .write_stdin("all good\n")
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("no known error pattern matched"), "{text}");

    xtask()
        .args(["explain"])
        .arg(dir.path().join("missing.log"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot read log"));
}

/// A chain with planted problems: `a` pins a toolchain nobody has, `b` has no checkout,
/// the dispatch token is missing, a release without a version, a Discord webhook variable
/// unset (a warning) and a Slack one set to a fake URL that must never be printed.
#[test]
fn preflight_lists_every_planted_problem_at_once_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("chain.toml"),
        r#"root = "."
[preflight]
min-free-gb = 0.001
[notify]
slack-webhook-env = "BLLVM_TEST_SLACK_HOOK"
discord-webhook-env = "BLLVM_TEST_DISCORD_HOOK"
[[repo]]
name = "a"
github = "o/a"
[[repo]]
name = "b"
github = "o/b"
[[repo]]
name = "spec"
github = "o/spec"
kind = "docs"
"#,
    )
    .unwrap();
    std::fs::create_dir_all(root.join("a/src")).unwrap();
    std::fs::create_dir_all(root.join("spec")).unwrap();
    std::fs::write(
        root.join("a/Cargo.toml"),
        "[package]\nname = \"a\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(root.join("a/src/lib.rs"), "").unwrap();
    std::fs::write(
        root.join("a/rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.0.0\"\n",
    )
    .unwrap();
    const FAKE_HOOK: &str = "https://hooks.example.invalid/services/T000/B000/fake-secret-path";
    let out = xtask()
        .current_dir(root)
        .args([
            "preflight",
            "--manifest",
            "chain.toml",
            "--cache-dir",
            "cache",
        ])
        .args([
            "--chain",
            "--token-env",
            "BLLVM_TEST_TOKEN",
            "--release",
            "--ref",
            "v1",
        ])
        .env_remove("GITHUB_TOKEN")
        .env_remove("BLLVM_TEST_TOKEN")
        .env_remove("BLLVM_TEST_DISCORD_HOOK")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("BLLVM_TEST_SLACK_HOOK", FAKE_HOOK)
        .assert()
        .code(2);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let all = format!("{stdout}{stderr}");
    assert!(
        !all.contains(FAKE_HOOK) && !all.contains("fake-secret-path"),
        "secret printed:\n{all}"
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("preflight: error") || l.starts_with("preflight: warning"))
        .collect();
    let has = |needle: &str| problems.iter().any(|l| l.contains(needle));
    assert!(has("error [checkout] b: no checkout at"), "{stderr}");
    assert!(has("error [secret] no token for dispatching"), "{stderr}");
    assert!(has("BLLVM_TEST_TOKEN or GITHUB_TOKEN"), "{stderr}");
    assert!(has("error [inputs] a release needs a version"), "{stderr}");
    assert!(
        has("warning [secret] BLLVM_TEST_DISCORD_HOOK is unset"),
        "{stderr}"
    );
    assert!(
        !has("BLLVM_TEST_SLACK_HOOK"),
        "a set webhook is not a problem:\n{stderr}"
    );
    assert!(!has("spec"), "a docs repo needs no Cargo.toml:\n{stderr}");
    if which("rustup") {
        assert!(
            has("error [toolchain] a: the toolchain pinned by"),
            "{stderr}"
        );
        assert!(has("rust-toolchain.toml"), "{stderr}");
    } else {
        println!(
            "rustup is not on PATH: rust-toolchain.toml pins are not checked, skipping that part"
        );
    }
    assert!(
        stderr.contains("fatal problem(s)") && stderr.contains("the run was not started"),
        "{stderr}"
    );
}

#[test]
fn preflight_passes_on_the_sample_chain() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/sample/chain.toml");
    let dir = tempfile::tempdir().unwrap();
    xtask()
        .args(["preflight", "--manifest", manifest, "--cache-dir"])
        .arg(dir.path())
        .env_remove("RUSTUP_TOOLCHAIN")
        .assert()
        .success()
        .stderr(predicates::str::contains("preflight: ok"));
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}
