//! The `coverage` step: line coverage of a repo's tests with cargo-tarpaulin, which works
//! on stable Rust without downloading toolchain components (its `llvm` engine reads the
//! `-C instrument-coverage` profiles itself; the real blvm-sdk already uses it).
//!
//! `coverage` is a built-in step name (`steps = [..., "coverage"]`), not one of the
//! default steps: it runs `cargo tarpaulin --workspace --skip-clean --target-dir
//! target/tarpaulin --engine llvm --out Lcov --out Xml` with the variant's features. Its
//! own target dir keeps the instrumented units (built with other `RUSTFLAGS`) apart from
//! the build and test steps' units, which would otherwise be rebuilt after every coverage
//! run. The runner adds `--output-dir <run
//! dir>/<repo>/coverage` when it runs the step (not in the plan, so fingerprints do not
//! depend on the run dir): `lcov.info` and `cobertura.xml` land there. Any cargo step
//! whose first argument is `tarpaulin` is treated the same way. At the end of the run
//! [`write_total`] writes `<run dir>/coverage/lcov.info` (every repo's records: lcov
//! files concatenate) and `total.json`. The line percentages go into each repo's row of
//! the summary (`coverage`), the summary's last lines, and the metrics history
//! (`coverage_line_percent`, over all repos).
//!
//! A missing tool **fails** the step (and so the repo) with the install command, rather
//! than skipping it: a repo that asks for coverage in its `steps` should not pass
//! silently on a machine that cannot measure it. The check runs `cargo tarpaulin
//! --version` once per process, before the step would start.
//!
//! Owns the tool check, the report reading and the totals; it does not run the step
//! (that is the runner's `exec`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, Result};

use crate::engine::summary::{CoverageReport, RepoReport};

/// The command that installs the tool.
pub const INSTALL: &str = "cargo install cargo-tarpaulin --locked";

/// Name of the built-in step.
pub const STEP: &str = "coverage";

/// Arguments of the built-in `coverage` step (after `cargo`).
pub const ARGS: &[&str] = &[
    "tarpaulin",
    "--workspace",
    "--skip-clean",
    "--target-dir",
    "target/tarpaulin",
    "--engine",
    "llvm",
    "--out",
    "Lcov",
    "--out",
    "Xml",
];

/// Whether a step is a coverage step: a cargo step whose first argument is `tarpaulin`.
pub fn is_coverage(program: &str, args: &[String]) -> bool {
    program == "cargo" && args.first().is_some_and(|a| a == "tarpaulin")
}

/// Whether `cargo tarpaulin` runs here (checked once per process).
pub fn tool_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("cargo")
            .args(["tarpaulin", "--version"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// The failure reason of a coverage step when the tool is missing.
pub fn missing_tool_message(step: &str) -> String {
    format!(
        "step `{step}` needs cargo-tarpaulin, which is not installed: install it with `{INSTALL}` (or remove `{step}` from the repo's steps)"
    )
}

/// Where a repo's coverage reports go: `<log dir>/coverage`.
pub fn output_dir(log_dir: &Path) -> PathBuf {
    log_dir.join("coverage")
}

/// `(instrumented, covered)` lines of an lcov report: the sums of its `LF:` and `LH:`
/// lines (one pair per `SF:` record). Records without them count their `DA:` lines.
pub fn parse_lcov(text: &str) -> (u64, u64) {
    let (mut lf, mut lh) = (0u64, 0u64);
    // Per record: the summary lines when present, else the DA lines.
    let (mut rec_lf, mut rec_lh, mut da, mut da_hit) = (None, None, 0u64, 0u64);
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("LF:") {
            rec_lf = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("LH:") {
            rec_lh = v.trim().parse().ok();
        } else if let Some(v) = line.strip_prefix("DA:") {
            da += 1;
            if v.split(',')
                .nth(1)
                .and_then(|n| n.trim().parse::<u64>().ok())
                .is_some_and(|n| n > 0)
            {
                da_hit += 1;
            }
        } else if line == "end_of_record" {
            lf += rec_lf.unwrap_or(da);
            lh += rec_lh.unwrap_or(da_hit);
            (rec_lf, rec_lh, da, da_hit) = (None, None, 0, 0);
        }
    }
    (lf, lh)
}

/// Percent of `covered` over `lines`, 0 when `lines` is 0.
pub fn percent(lines: u64, covered: u64) -> f64 {
    if lines == 0 {
        0.0
    } else {
        covered as f64 * 100.0 / lines as f64
    }
}

/// Read the reports tarpaulin wrote into `out_dir`.
///
/// Errors: no `lcov.info` there (the step did not write one).
pub fn collect(out_dir: &Path) -> Result<CoverageReport> {
    let lcov = out_dir.join("lcov.info");
    let text = fs::read_to_string(&lcov).with_context(|| {
        format!(
            "the coverage step wrote no lcov report ({})",
            lcov.display()
        )
    })?;
    let (lines, covered) = parse_lcov(&text);
    let cob = out_dir.join("cobertura.xml");
    Ok(CoverageReport {
        line_percent: percent(lines, covered),
        lines,
        covered,
        lcov: lcov.display().to_string(),
        cobertura: cob.is_file().then(|| cob.display().to_string()),
    })
}

/// The run's total over every repo with a coverage report (lines and covered lines
/// summed, not percentages averaged), or `None` when no repo has one.
pub fn total(repos: &[RepoReport]) -> Option<(u64, u64, f64)> {
    let with: Vec<&CoverageReport> = repos.iter().filter_map(|r| r.coverage.as_ref()).collect();
    if with.is_empty() {
        return None;
    }
    let lines = with.iter().map(|c| c.lines).sum();
    let covered = with.iter().map(|c| c.covered).sum();
    Some((lines, covered, percent(lines, covered)))
}

/// Write `<run dir>/coverage/lcov.info` (every repo's lcov, concatenated) and
/// `total.json` (`{ "line_percent", "lines", "covered", "repos": {name: percent} }`) when
/// some repo has a coverage report. Returns the lcov path. A write error is a warning.
pub fn write_total(run_dir: &Path, repos: &[RepoReport]) -> Option<PathBuf> {
    let (lines, covered, pct) = total(repos)?;
    let dir = run_dir.join("coverage");
    let mut all = String::new();
    let mut per_repo = BTreeMap::new();
    for r in repos {
        if let Some(c) = &r.coverage {
            all += &fs::read_to_string(&c.lcov).unwrap_or_default();
            per_repo.insert(r.name.clone(), c.line_percent);
        }
    }
    let json = serde_json::json!({
        "line_percent": pct,
        "lines": lines,
        "covered": covered,
        "repos": per_repo,
    });
    let lcov = dir.join("lcov.info");
    let res = fs::create_dir_all(&dir)
        .and_then(|()| fs::write(&lcov, all))
        .and_then(|()| {
            fs::write(
                dir.join("total.json"),
                serde_json::to_vec_pretty(&json).unwrap_or_default(),
            )
        });
    match res {
        Ok(()) => Some(lcov),
        Err(e) => {
            eprintln!("warning: could not write the coverage total: {e}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lcov_sums_records_and_falls_back_to_da() {
        let text = "TN:\nSF:/a.rs\nDA:1,1\nDA:2,0\nLF:4\nLH:3\nend_of_record\nSF:/b.rs\nDA:1,5\nDA:2,0\nDA:3,0\nend_of_record\n";
        assert_eq!(parse_lcov(text), (7, 4));
        assert_eq!(parse_lcov(""), (0, 0));
        assert_eq!(percent(8, 2), 25.0);
        assert_eq!(percent(0, 0), 0.0);
    }

    #[test]
    fn coverage_steps_are_recognised() {
        assert!(is_coverage("cargo", &["tarpaulin".to_owned()]));
        assert!(!is_coverage("cargo", &["test".to_owned()]));
        assert!(!is_coverage("sh", &["tarpaulin".to_owned()]));
    }

    #[test]
    fn collect_reads_reports_and_total_sums_lines() {
        let t = tempfile::tempdir().unwrap();
        assert!(collect(t.path())
            .unwrap_err()
            .to_string()
            .contains("no lcov report"));
        fs::write(
            t.path().join("lcov.info"),
            "SF:/x.rs\nLF:10\nLH:5\nend_of_record\n",
        )
        .unwrap();
        let c = collect(t.path()).unwrap();
        assert_eq!((c.lines, c.covered, c.line_percent), (10, 5, 50.0));
        assert_eq!(c.cobertura, None);
    }
}
