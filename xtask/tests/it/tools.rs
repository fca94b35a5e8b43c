//! The steps that run an external tool, with the tool and without it: the `coverage` step
//! with cargo-tarpaulin (lcov and Cobertura reports, per-repo and total percentages, the
//! summary's lines) and without it (the repo fails with the install command); the `test`
//! step with cargo-nextest (JUnit counts of passed, failed and skipped tests) and without
//! it (plain `cargo test`); and the suite's own rule for a missing tool (`support::skip`):
//! a failure with the install command under CI, a counted skip on the real stderr
//! elsewhere.
//!
//! A tool is hidden by a `cargo-<tool>` that fails first on `PATH`
//! (`support::path_hiding_cargo_subcommand`), which is what the tool check sees when the
//! tool is not installed.

use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::{self, repo, summary, write_chain, xtask};

/// A library with one function, half of whose lines its test reaches.
const HALF_TESTED: &str = "//! Fixture.\n\n/// Half of it is tested.\npub fn pick(x: u32) -> u32 {\n    if x > 10 {\n        x * 2\n    } else {\n        x + 1\n    }\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn small() {\n        assert_eq!(super::pick(1), 2);\n    }\n}\n";

/// A library whose test reaches every line.
const FULLY_TESTED: &str = "//! Fixture.\n\n/// All of it is tested.\npub fn double(x: u32) -> u32 {\n    x * 2\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn doubles() {\n        assert_eq!(super::double(2), 4);\n    }\n}\n";

/// `ci --quiet --keep-going` in `root` with a relative run dir (`run`, as `cargo xtask
/// ci` uses by default: reports must land in it, not in the checkout a tool runs in) and
/// a relative cache (`cache`), with `path` as `PATH` when given.
fn ci_in(root: &Path, manifest: &Path, path: Option<&std::ffi::OsStr>) -> std::process::Output {
    let mut c = xtask();
    c.current_dir(root)
        .args(["ci", "--quiet", "--keep-going", "--run-dir", "run"])
        .args(["--cache-dir", "cache", "--manifest"])
        .arg(manifest);
    if let Some(p) = path {
        c.env("PATH", p);
    }
    c.output().unwrap()
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// `(instrumented, hit)` lines of an lcov text, counted from its `DA:` lines: our own
/// count, to check the summary's numbers against (not the parser under test).
fn da_lines(lcov: &str) -> (u64, u64) {
    let da: Vec<u64> = lcov
        .lines()
        .filter_map(|l| l.strip_prefix("DA:"))
        .map(|v| v.split(',').nth(1).unwrap().trim().parse().unwrap())
        .collect();
    (
        da.len() as u64,
        da.iter().filter(|&&n| n > 0).count() as u64,
    )
}

/// The hit count lcov gives line `line` of the record for a file ending in `file`.
fn hits(lcov: &str, file: &str, line: u64) -> Option<u64> {
    let record = lcov
        .split("end_of_record")
        .find(|r| r.lines().any(|l| l.starts_with("SF:") && l.ends_with(file)))?;
    record
        .lines()
        .filter_map(|l| l.strip_prefix("DA:"))
        .find(|v| v.split(',').next() == Some(&line.to_string()))
        .map(|v| v.split(',').nth(1).unwrap().trim().parse().unwrap())
}

// ---------------------------------------------------------------------------------------
// coverage

/// Two repos with a `coverage` step, one half tested and one fully: each gets a real lcov
/// report (the untested branch's line has 0 hits, the tested one more) and a Cobertura
/// report; the summary's numbers are the lcov's; the run's total is the sum over both
/// (not an average of percentages) in `coverage/total.json`, the metrics and the
/// summary's closing line; each row shows its repo's percentage.
#[test]
fn coverage_step_writes_lcov_cobertura_and_the_totals() {
    if !support::have_cargo_subcommand(&support::TARPAULIN, "tarpaulin", None) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("cov", &[]), ("full", &[])],
        &[
            ("cov", "steps = [\"coverage\"]"),
            ("full", "steps = [\"coverage\"]"),
        ],
    );
    fs::write(t.path().join("cov/src/lib.rs"), HALF_TESTED).unwrap();
    fs::write(t.path().join("full/src/lib.rs"), FULLY_TESTED).unwrap();
    let out = ci_in(t.path(), &manifest, None);
    let run = t.path().join("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "coverage run failed:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = summary(&run);
    let mut total = (0, 0);
    for (name, file) in [("cov", "cov/src/lib.rs"), ("full", "full/src/lib.rs")] {
        let c = &repo(&s, name)["coverage"];
        let lcov_path = run.join(name).join("coverage/lcov.info");
        let lcov = fs::read_to_string(&lcov_path).unwrap();
        assert!(lcov.contains("SF:") && lcov.contains(file), "{lcov}");
        assert_eq!(c["lcov"], json!(lcov_path.display().to_string()), "{c}");
        let (lines, covered) = da_lines(&lcov);
        assert_eq!(
            (c["lines"].as_u64().unwrap(), c["covered"].as_u64().unwrap()),
            (lines, covered),
            "{name}: the summary's numbers are not the report's: {c}\n{lcov}"
        );
        let pct = c["line_percent"].as_f64().unwrap();
        assert!(
            (pct - covered as f64 * 100.0 / lines as f64).abs() < 1e-9,
            "{c}"
        );
        total = (total.0 + lines, total.1 + covered);
        let cob_path = run.join(name).join("coverage/cobertura.xml");
        let cob = fs::read_to_string(&cob_path).unwrap();
        assert!(
            cob.contains("<coverage") && cob.contains("lib.rs") && cob.contains("line-rate="),
            "{cob}"
        );
        assert!(
            cob.contains(&format!("lines-covered=\"{covered}\""))
                && cob.contains(&format!("lines-valid=\"{lines}\"")),
            "{name}: Cobertura disagrees with lcov ({covered}/{lines}): {cob}"
        );
        assert_eq!(c["cobertura"], json!(cob_path.display().to_string()), "{c}");
        assert!(
            stdout.contains(&format!("| coverage {pct:.1}% of {lines} lines")),
            "{name}'s row:\n{stdout}"
        );
    }
    // Measured, not made up: `x * 2` (line 6) never runs, `x + 1` (line 8) does; the
    // fully tested repo reaches every line.
    let cov_lcov = fs::read_to_string(run.join("cov/coverage/lcov.info")).unwrap();
    assert_eq!(hits(&cov_lcov, "cov/src/lib.rs", 6), Some(0), "{cov_lcov}");
    assert!(
        hits(&cov_lcov, "cov/src/lib.rs", 8).is_some_and(|n| n > 0),
        "{cov_lcov}"
    );
    let cov = &repo(&s, "cov")["coverage"];
    let pct = cov["line_percent"].as_f64().unwrap();
    assert!(
        pct > 0.0 && pct < 100.0,
        "half the branches are tested: {cov}"
    );
    assert_eq!(repo(&s, "full")["coverage"]["line_percent"], json!(100.0));
    // The run's total: lines and covered lines summed over both repos.
    let (lines, covered) = total;
    let pct = covered as f64 * 100.0 / lines as f64;
    let all = fs::read_to_string(run.join("coverage/lcov.info")).unwrap();
    assert_eq!(da_lines(&all), total, "the run's lcov holds both repos");
    let tj = json_file(&run.join("coverage/total.json"));
    assert_eq!(
        (tj["lines"].as_u64(), tj["covered"].as_u64()),
        (Some(lines), Some(covered)),
        "{tj}"
    );
    assert!(
        (tj["line_percent"].as_f64().unwrap() - pct).abs() < 1e-9,
        "{tj}"
    );
    assert_eq!(tj["repos"]["cov"], cov["line_percent"], "{tj}");
    let metrics = json_file(&run.join("build-metrics.json"));
    assert!(
        (metrics["coverage_line_percent"].as_f64().unwrap() - pct).abs() < 1e-9,
        "{metrics}"
    );
    assert!(
        stdout.contains(&format!("coverage: {pct:.1}% of lines ({covered}/{lines})")),
        "the summary prints the total:\n{stdout}"
    );
}

/// A failing test fails the coverage step, and so the repo: no report is collected.
#[test]
fn a_failing_test_fails_the_coverage_step() {
    if !support::have_cargo_subcommand(&support::TARPAULIN, "tarpaulin", None) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("cov", &[])],
        &[("cov", "steps = [\"coverage\"]")],
    );
    let failing = HALF_TESTED.replace("pick(1), 2", "pick(1), 3");
    fs::write(t.path().join("cov/src/lib.rs"), failing).unwrap();
    let out = ci_in(t.path(), &manifest, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let s = summary(&t.path().join("run"));
    let cov = repo(&s, "cov");
    assert_eq!(cov["status"], "failed", "{cov}");
    assert!(
        cov["reason"]
            .as_str()
            .unwrap()
            .contains("step `coverage` exited"),
        "{cov}"
    );
    assert!(cov.get("coverage").is_none(), "{cov}");
}

/// Without cargo-tarpaulin the coverage step does not pass silently: the repo fails with
/// the install command, and no report is claimed.
#[test]
fn coverage_without_cargo_tarpaulin_fails_the_repo_with_the_install_command() {
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("cov", &[])],
        &[("cov", "steps = [\"coverage\"]")],
    );
    fs::write(t.path().join("cov/src/lib.rs"), HALF_TESTED).unwrap();
    let path = support::path_hiding_cargo_subcommand("tarpaulin", &t.path().join("bin"));
    let out = ci_in(t.path(), &manifest, Some(&path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let cov = repo(&summary(&t.path().join("run")), "cov").clone();
    assert_eq!(cov["status"], "failed");
    let why = cov["reason"].as_str().unwrap();
    assert!(why.contains("needs cargo-tarpaulin"), "{why}");
    assert!(
        why.contains("cargo install cargo-tarpaulin --locked"),
        "{why}"
    );
    assert!(cov.get("coverage").is_none());
}

// ---------------------------------------------------------------------------------------
// nextest

/// A library with two passing tests, one failing and one ignored.
const FOUR_TESTS: &str = "//! Fixture.\n\n/// The answer.\npub fn answer() -> u32 {\n    42\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn passes() {\n        assert_eq!(super::answer(), 42);\n    }\n\n    #[test]\n    fn passes_too() {\n        assert!(super::answer() > 0);\n    }\n\n    #[test]\n    fn fails_on_purpose() {\n        assert_eq!(super::answer(), 41);\n    }\n\n    #[test]\n    #[ignore = \"skipped on purpose\"]\n    fn ignored_on_purpose() {}\n}\n";

/// With nextest the test step writes JUnit, and the summary's counts are the report's:
/// 2 passed, 1 failed, 1 skipped (the ignored test; nextest 0.9.143 and later list
/// skipped tests in JUnit when asked, as our tool config does).
#[test]
fn nextest_junit_counts_passed_failed_and_skipped_tests() {
    if !support::have_cargo_subcommand(&support::NEXTEST, "nextest", Some([0, 9, 143])) {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("four", &[])],
        &[("four", "steps = [\"test\"]")],
    );
    fs::write(t.path().join("four/src/lib.rs"), FOUR_TESTS).unwrap();
    let out = ci_in(t.path(), &manifest, None);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let run = t.path().join("run");
    let s = summary(&run);
    let four = repo(&s, "four");
    assert_eq!(
        four["tests"],
        json!({"passed": 2, "failed": 1, "skipped": 1}),
        "{four}"
    );
    assert_eq!(four["status"], "failed");
    let junit = fs::read_to_string(run.join("four/junit.xml")).unwrap();
    assert!(
        junit.contains("fails_on_purpose") && junit.contains("<failure"),
        "{junit}"
    );
    assert!(
        junit.contains("ignored_on_purpose") && junit.contains("<skipped"),
        "{junit}"
    );
    assert!(
        stdout.contains("tests 2 passed, 1 failed, 1 skipped"),
        "{stdout}"
    );
}

/// Without nextest the test step is the plain `cargo test` it names: no JUnit, no counts,
/// no separate doctest step, and a failing test still fails the repo.
#[test]
fn without_nextest_the_test_step_is_plain_cargo_test() {
    let t = tempfile::tempdir().unwrap();
    let manifest = write_chain(
        t.path(),
        &[("four", &[])],
        &[("four", "steps = [\"test\"]")],
    );
    fs::write(t.path().join("four/src/lib.rs"), FOUR_TESTS).unwrap();
    let path = support::path_hiding_cargo_subcommand("nextest", &t.path().join("bin"));
    let out = ci_in(t.path(), &manifest, Some(&path));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let run = t.path().join("run");
    let four = repo(&summary(&run), "four").clone();
    assert!(four["tests"].is_null(), "{four}");
    let steps: Vec<&str> = four["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["test"], "{four}");
    assert!(!run.join("four/junit.xml").exists());
    let log = fs::read_to_string(run.join("four/test.log")).unwrap();
    assert!(
        log.contains("fails_on_purpose") && log.contains("FAILED"),
        "{log}"
    );
}

// ---------------------------------------------------------------------------------------
// The suite's rule for a missing tool

/// A tool no machine has.
const NOWHERE: support::Need = support::Need {
    what: "bllvm-ci-no-such-tool",
    install: "apt-get install -y bllvm-ci-no-such-tool",
};

// Ignored: only run by `a_missing_tool_fails_under_ci_and_is_a_counted_skip_elsewhere`,
// which starts this binary on it with and without `CI` and checks what it reports.
#[test]
#[ignore = "a probe run by a_missing_tool_fails_under_ci_and_is_a_counted_skip_elsewhere"]
fn probe_a_missing_tool() {
    if support::find_tool(&NOWHERE, &["bllvm-ci-no-such-tool"]).is_some() {
        panic!("the probe's tool exists");
    }
}

/// `support::skip`, as every test that needs a tool uses it: under CI (`CI` set, and not
/// `false` or `0`) the test fails with the install command; elsewhere it passes, says so
/// on the real stderr (through cargo's output capture: the probe runs captured) and the
/// binary's closing lines count the skip.
#[test]
fn a_missing_tool_fails_under_ci_and_is_a_counted_skip_elsewhere() {
    let probe = |ci: Option<&str>| {
        let mut c = std::process::Command::new(std::env::current_exe().unwrap());
        c.args(["--ignored", "--exact", "tools::probe_a_missing_tool"])
            .args(["--test-threads", "1"]);
        match ci {
            Some(v) => c.env("CI", v),
            None => c.env_remove("CI"),
        };
        let o = c.output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    for ci in [Some("true"), Some("1"), Some("yes")] {
        let (code, out, err) = probe(ci);
        assert_eq!(code, Some(101), "CI={ci:?}: {out}{err}");
        assert!(
            out.contains("bllvm-ci-no-such-tool is missing under CI")
                && out.contains("install it with `apt-get install -y bllvm-ci-no-such-tool`"),
            "CI={ci:?}: {out}{err}"
        );
    }
    for ci in [None, Some(""), Some("false"), Some("0")] {
        let (code, out, err) = probe(ci);
        assert_eq!(code, Some(0), "CI={ci:?}: {out}{err}");
        assert!(
            err.contains(
                "SKIPPED part of tools::probe_a_missing_tool: bllvm-ci-no-such-tool is missing"
            ),
            "CI={ci:?}: {err}"
        );
        let closing = err.trim_end().lines().rev().take(2).collect::<Vec<_>>();
        assert_eq!(
            closing,
            [
                "  tools::probe_a_missing_tool: bllvm-ci-no-such-tool (none of [\"bllvm-ci-no-such-tool\"] is on PATH)",
                "1 test(s) skipped work because something was missing (under CI=true they fail instead):",
            ],
            "CI={ci:?}: {err}"
        );
        assert!(out.contains("test result: ok. 1 passed"), "{out}");
    }
}
