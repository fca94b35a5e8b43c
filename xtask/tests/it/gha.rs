//! GitHub Actions output (issue 5, part 2): groups, annotations from cargo's JSON
//! diagnostics for a planted compile error, the step summary and the outputs.

use std::fs;

use crate::support::{self, xtask};

#[test]
fn a_planted_compile_error_becomes_an_annotation_and_a_summary_row() {
    let t = tempfile::tempdir().unwrap();
    let chain = t.path().join("chain");
    let m = support::copy_sample(&chain);
    // Formatted (fmt-check passes), but does not type-check: clippy fails with E0308.
    let lib = chain.join("bllvm-protocol/src/lib.rs");
    let text = fs::read_to_string(&lib).unwrap().replacen(
        "use bllvm_primitives::Height;",
        "use bllvm_primitives::Height;\n\n/// Broken on purpose.\npub fn broken() -> u32 {\n    \"not a number\"\n}",
        1,
    );
    fs::write(&lib, text).unwrap();
    let step_summary = t.path().join("step-summary.md");
    let outputs = t.path().join("outputs.txt");
    let run = t.path().join("run");
    let out = xtask()
        .args(["ci", "--keep-going", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(t.path().join("cache"))
        .arg("--run-dir")
        .arg(&run)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_WORKSPACE", &chain)
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .env("GITHUB_OUTPUT", &outputs)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);

    // One group per repo and step, closed.
    assert!(
        stdout.contains("::group::bllvm-protocol clippy\n"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("::group::").count(),
        stdout.matches("::endgroup::").count()
    );

    // The annotation points at the planted line, with GitHub's escaping.
    let annotations: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("::error "))
        .collect();
    insta::assert_snapshot!("planted_error_annotations", annotations.join("\n"));

    // The human output is still there, in the terminal and in the log.
    assert!(
        stdout.contains("error[E0308]: mismatched types"),
        "{stdout}"
    );
    let log = fs::read_to_string(run.join("bllvm-protocol/clippy.log")).unwrap();
    assert!(
        log.contains("error[E0308]: mismatched types")
            && !log.contains("\"reason\":\"compiler-message\""),
        "{log}"
    );

    // The step summary table, with durations masked.
    let md = fs::read_to_string(&step_summary).unwrap();
    let md = regex::Regex::new(r"\d+\.\d+s")
        .unwrap()
        .replace_all(&md, "N.Ns");
    let md = regex::Regex::new(r"Total: \d+\.\d+ s")
        .unwrap()
        .replace_all(&md, "Total: N s");
    let md = md.replace(&run.display().to_string(), "[run]");
    // Whether cargo-nextest is installed changes the test steps and counts (tested in
    // `testing`); keep this snapshot about the table itself.
    let md = md.replace(", test-doc N.Ns", "");
    let md = regex::Regex::new(r"\| \d+ passed, \d+ failed, \d+ skipped \|")
        .unwrap()
        .replace_all(&md, "| [tests] |");
    insta::assert_snapshot!("planted_error_step_summary", md);

    // Outputs for later workflow steps.
    let o = fs::read_to_string(&outputs).unwrap();
    assert!(
        o.contains("result=failed\n") && o.contains("failed-repos=bllvm-protocol\n"),
        "{o}"
    );
    assert!(o.contains("cache-hit-bllvm-primitives=false\n"), "{o}");
    assert!(
        o.lines()
            .any(|l| l.starts_with("cache-key-bllvm-protocol=bllvm-protocol-base-")),
        "{o}"
    );
    let s = support::summary(&run);
    let clippy = &support::repo(&s, "bllvm-protocol")["steps"][1];
    assert_eq!(clippy["errors"][0]["code"], "E0308");
}
