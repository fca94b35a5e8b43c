//! The test step with cargo-nextest (issue 5, part 6): JUnit per repo, test counts in the
//! summary, doctests still run.

use std::fs;

use crate::support::{self, repo, summary, xtask};

#[test]
fn nextest_writes_junit_and_the_summary_counts_tests() {
    // Without nextest: a counted skip, or under CI a failure with the install command.
    // The plain `cargo test` fallback has its own test (tools.rs), with nextest hidden.
    if !support::have_cargo_subcommand(&support::NEXTEST, "nextest", None) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let chain = t.path().join("chain");
    let m = support::copy_sample(&chain);
    // One failing test in consensus (formatted, so fmt-check and clippy pass).
    let lib = chain.join("bllvm-consensus/src/lib.rs");
    let text = fs::read_to_string(&lib).unwrap().replacen(
        "    #[test]\n    fn halving() {",
        "    #[test]\n    fn fails_on_purpose() {\n        assert_eq!(super::subsidy(0), 1);\n    }\n\n    #[test]\n    fn halving() {",
        1,
    );
    fs::write(&lib, text).unwrap();
    let run = t.path().join("run");
    let out = xtask()
        .args([
            "ci",
            "--quiet",
            "--keep-going",
            "--only",
            "bllvm-primitives",
            "--only",
            "bllvm-consensus",
            "--manifest",
        ])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        // A relative run dir, as the default one is: nextest needs its config file path
        // absolute (found by `bench noop`).
        .arg("--run-dir")
        .arg("run")
        .current_dir(t.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let s = summary(&run);
    let prim = repo(&s, "bllvm-primitives");
    let cons = repo(&s, "bllvm-consensus");
    let steps = |r: &serde_json::Value| -> Vec<String> {
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        prim["tests"],
        serde_json::json!({"passed": 1, "failed": 0, "skipped": 0}),
        "{prim}"
    );
    assert!(
        steps(prim).contains(&"test-doc".to_owned()),
        "doctests still run: {:?}",
        steps(prim)
    );
    assert!(run.join("bllvm-primitives/junit.xml").is_file());
    assert_eq!(
        cons["tests"],
        serde_json::json!({"passed": 1, "failed": 1, "skipped": 0}),
        "{cons}"
    );
    assert_eq!(cons["status"], "failed");
    assert!(cons["reason"]
        .as_str()
        .unwrap()
        .contains("step `test` exited"));
    let junit = fs::read_to_string(run.join("bllvm-consensus/junit.xml")).unwrap();
    assert!(
        junit.contains("fails_on_purpose") && junit.contains("<failure"),
        "{junit}"
    );
    assert!(
        stdout.contains("tests 1 passed, 1 failed, 0 skipped"),
        "{stdout}"
    );
}
