//! Test steps with cargo-nextest: when `cargo nextest` is installed, a `cargo test` step
//! runs as `cargo nextest run` (same arguments) with a JUnit report, followed by
//! `cargo test --doc` (nextest does not run doctests), and the JUnit XML gives the
//! passed/failed/skipped counts for the summary.
//!
//! Our nextest settings come in through `--tool-config-file bllvm-ci:<file>`, which nextest
//! layers under the repo's own `.config/nextest.toml`, so a repo's settings still apply;
//! the profile is `bllvm-ci` (no fail-fast, JUnit at
//! `<target dir>/nextest/bllvm-ci/junit.xml`). Without nextest the step runs unchanged.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Serialize;

/// The nextest profile our tool config defines.
pub const PROFILE: &str = "bllvm-ci";

/// Whether `cargo nextest` runs here (checked once per process).
pub fn nextest_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        std::process::Command::new("cargo")
            .args(["nextest", "--version"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// One command a manifest step expands to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubStep {
    /// Name in the summary (`test`, `doctest`, or the step's own name).
    pub name: String,
    /// Cargo (or the step program's) arguments.
    pub args: Vec<String>,
    /// JUnit file the command writes, to read counts from afterwards.
    pub junit: Option<PathBuf>,
    /// A failure that only means "no library target" is not a failure (doctests of a
    /// binary-only workspace).
    pub lenient_no_lib: bool,
}

/// Expand a step's final arguments: a `cargo test` without `--doc` becomes nextest plus
/// doctests when `nextest` is true; anything else stays one command. `tool_config` is
/// where our nextest config is written (see [`write_tool_config`]); `target_dir` is the
/// repo's cargo target dir.
pub fn expand(
    name: &str,
    program: &str,
    args: &[String],
    nextest: bool,
    tool_config: &Path,
    target_dir: &Path,
) -> Vec<SubStep> {
    let is_cargo_test = program == "cargo"
        && args.first().is_some_and(|a| a == "test")
        && !args.iter().any(|a| a == "--doc");
    if !is_cargo_test || !nextest {
        return vec![SubStep {
            name: name.to_owned(),
            args: args.to_vec(),
            junit: None,
            lenient_no_lib: false,
        }];
    }
    let (before, after) = match args.iter().position(|a| a == "--") {
        Some(i) => (&args[1..i], &args[i..]),
        None => (&args[1..], &args[args.len()..]),
    };
    let mut nx = vec!["nextest".to_owned(), "run".to_owned()];
    let mut it = before.iter();
    let mut doc = vec!["test".to_owned(), "--doc".to_owned()];
    while let Some(a) = it.next() {
        // nextest's `--profile` is its own; cargo's profile is `--cargo-profile`.
        if a == "--profile" {
            if let Some(p) = it.next() {
                nx.extend(["--cargo-profile".to_owned(), p.clone()]);
                doc.extend(["--profile".to_owned(), p.clone()]);
            }
            continue;
        }
        // Target selection flags do not apply to doctests.
        if !matches!(
            a.as_str(),
            "--all-targets" | "--tests" | "--lib" | "--bins" | "--examples" | "--benches"
        ) {
            doc.push(a.clone());
        }
        nx.push(a.clone());
    }
    nx.extend([
        "--tool-config-file".to_owned(),
        format!("bllvm-ci:{}", tool_config.display()),
        "--profile".to_owned(),
        PROFILE.to_owned(),
        "--no-tests=pass".to_owned(),
    ]);
    nx.extend(after.iter().cloned());
    vec![
        SubStep {
            name: name.to_owned(),
            args: nx,
            junit: Some(target_dir.join("nextest").join(PROFILE).join("junit.xml")),
            lenient_no_lib: false,
        },
        SubStep {
            name: format!("{name}-doc"),
            args: doc,
            junit: None,
            lenient_no_lib: true,
        },
    ]
}

/// Write our nextest tool config (profile [`PROFILE`]: no fail-fast, JUnit report).
///
/// The report lists skipped tests too (`report-skipped = "all"`, nextest 0.9.143 and
/// later; by default nextest leaves them out of the JUnit XML, so `skipped` would always
/// read 0). An older nextest warns about the key and ignores it.
///
/// Errors: the file cannot be written.
pub fn write_tool_config(path: &Path) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!("[profile.{PROFILE}]\nfail-fast = false\n\n[profile.{PROFILE}.junit]\npath = \"junit.xml\"\nreport-skipped = \"all\"\n"),
    )
}

/// Test counts of a run, from its JUnit report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (failures and errors).
    pub failed: u64,
    /// Tests skipped (ignored or filtered and reported as skipped).
    pub skipped: u64,
}

/// Count the `<testcase>` elements of a JUnit report: a case with a `<failure` or
/// `<error` child failed, one with `<skipped` was skipped, the others passed.
pub fn count_junit(xml: &str) -> TestCounts {
    let mut c = TestCounts::default();
    for case in xml.split("<testcase").skip(1) {
        // The case's body ends at its closing tag, or at the self-closing `/>`.
        let end = case
            .find("</testcase>")
            .or_else(|| case.find("/>"))
            .unwrap_or(case.len());
        let body = &case[..end];
        if body.contains("<failure") || body.contains("<error") {
            c.failed += 1;
        } else if body.contains("<skipped") {
            c.skipped += 1;
        } else {
            c.passed += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cargo_test_becomes_nextest_and_doctests() {
        let args: Vec<String> = [
            "test",
            "--workspace",
            "--features",
            "a",
            "--profile",
            "release",
            "--",
            "--nocapture",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let subs = expand(
            "test",
            "cargo",
            &args,
            true,
            Path::new("/r/nextest.toml"),
            Path::new("/t"),
        );
        assert_eq!(
            subs[0].args,
            [
                "nextest",
                "run",
                "--workspace",
                "--features",
                "a",
                "--cargo-profile",
                "release",
                "--tool-config-file",
                "bllvm-ci:/r/nextest.toml",
                "--profile",
                "bllvm-ci",
                "--no-tests=pass",
                "--",
                "--nocapture"
            ]
        );
        assert_eq!(
            subs[0].junit.as_deref(),
            Some(Path::new("/t/nextest/bllvm-ci/junit.xml"))
        );
        assert_eq!(
            subs[1].args,
            [
                "test",
                "--doc",
                "--workspace",
                "--features",
                "a",
                "--profile",
                "release"
            ]
        );
        assert_eq!(subs[1].name, "test-doc");
        assert_eq!(
            expand(
                "test",
                "cargo",
                &args,
                false,
                Path::new("/x"),
                Path::new("/t")
            )
            .len(),
            1
        );
        assert_eq!(
            expand(
                "build",
                "cargo",
                &["build".into()],
                true,
                Path::new("/x"),
                Path::new("/t")
            )
            .len(),
            1
        );
    }

    #[test]
    fn junit_counts() {
        let xml = r#"<testsuites tests="4" failures="1"><testsuite name="x">
<testcase name="a" classname="x" time="0.1"/>
<testcase name="b" classname="x" time="0.1"><failure message="boom"/></testcase>
<testcase name="c" classname="x" time="0.1"><skipped/></testcase>
<testcase name="d" classname="x" time="0.1"><system-out>ok</system-out></testcase>
</testsuite></testsuites>"#;
        assert_eq!(
            count_junit(xml),
            TestCounts {
                passed: 2,
                failed: 1,
                skipped: 1
            }
        );
    }
}
