//! The fan-out summary job's data: the repo jobs' `summary.json` files (downloaded
//! artifacts, so untrusted input: parsed into a small view, a file that does not parse is
//! a missing summary), rendered as one Markdown table; and the link to the workflow run
//! and its artifacts that step summaries and PR comments carry instead of runner paths.
//!
//! Pure: the command (`commands/workflows.rs`) reads the files and writes the outputs.

use serde::Deserialize;

/// The part of a repo job's `summary.json` (schema 1) the summary job reads.
#[derive(Debug, Clone, Deserialize)]
pub struct JobSummary {
    /// Format version; only 1 is read.
    pub schema_version: u32,
    /// The repos the job ran (one with `--only`).
    pub repos: Vec<JobRepo>,
    /// The signal that cancelled the job's run, if one did.
    #[serde(default)]
    pub cancelled: Option<String>,
}

/// One repo of a [`JobSummary`].
#[derive(Debug, Clone, Deserialize)]
pub struct JobRepo {
    /// Repo name.
    pub name: String,
    /// `ok`, `failed`, `skipped` or `cached`.
    pub status: String,
    /// Why it failed, was skipped or cached.
    #[serde(default)]
    pub reason: Option<String>,
    /// Steps that ran.
    #[serde(default)]
    pub steps: Vec<JobStep>,
    /// Test counts of a nextest test step.
    #[serde(default)]
    pub tests: Option<JobTests>,
}

/// One step of a [`JobRepo`].
#[derive(Debug, Clone, Deserialize)]
pub struct JobStep {
    /// Step name.
    pub name: String,
    /// Exit code (`None` when killed).
    #[serde(default)]
    pub code: Option<i32>,
    /// Wall-clock seconds.
    #[serde(default)]
    pub secs: f64,
}

/// Test counts of a [`JobRepo`].
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct JobTests {
    /// Passed tests.
    pub passed: u64,
    /// Failed tests.
    pub failed: u64,
    /// Skipped tests.
    pub skipped: u64,
}

impl JobSummary {
    /// Parse `text` as a summary, or say why it is not one.
    pub fn parse(text: &str) -> Result<JobSummary, String> {
        let s: JobSummary = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if s.schema_version != 1 {
            return Err(format!(
                "schema_version {} (this xtask reads 1)",
                s.schema_version
            ));
        }
        Ok(s)
    }

    /// Whether a repo of the job failed or the job was cancelled.
    pub fn failed(&self) -> bool {
        self.cancelled.is_some() || self.repos.iter().any(|r| r.status == "failed")
    }
}

/// The markdown of the whole fan-out run: one row per repo of every job's summary, one
/// row per expected summary that is missing (`missing`: artifact names with why), and
/// the link to the run's artifacts when known.
pub fn markdown(jobs: &[JobSummary], missing: &[(String, String)], link: Option<&str>) -> String {
    let failed = !missing.is_empty() || jobs.iter().any(JobSummary::failed);
    let mut md = format!(
        "### bllvm chain CI: {} ({} job summaries)\n\n| repo | status | steps | tests | note |\n|---|---|---|---|---|\n",
        if failed { "failed" } else { "ok" },
        jobs.len()
    );
    for r in jobs.iter().flat_map(|j| &j.repos) {
        md += &row(r);
    }
    for (name, why) in missing {
        md += &format!("| {} | ❌ no summary | | | {} |\n", cell(name), cell(why));
    }
    if let Some(l) = link {
        md += &format!("\n{l}\n");
    }
    md
}

/// One table row.
fn row(r: &JobRepo) -> String {
    let icon = match r.status.as_str() {
        "ok" => "✅ ok",
        "failed" => "❌ failed",
        "cached" => "♻️ cached",
        "skipped" => "⏭️ skipped",
        _ => "❔ unknown",
    };
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|s| {
            let mark = if s.code == Some(0) { "" } else { " ❌" };
            format!("{} {:.1}s{mark}", s.name, s.secs)
        })
        .collect();
    let tests = r.tests.map_or_else(String::new, |t| {
        format!(
            "{} passed, {} failed, {} skipped",
            t.passed, t.failed, t.skipped
        )
    });
    let note = r
        .reason
        .as_deref()
        .and_then(|w| w.lines().next())
        .unwrap_or("");
    format!(
        "| {} | {icon} | {} | {tests} | {} |\n",
        cell(&r.name),
        cell(&steps.join(", ")),
        cell(note)
    )
}

/// Text made safe for one table cell: no line breaks, no column separators, no HTML.
fn cell(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
        .replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The Markdown line linking to the workflow run's page and its artifacts (logs,
/// `summary.json`, JUnit, coverage, release files, the HTML report), from GitHub's
/// `GITHUB_SERVER_URL`, `GITHUB_REPOSITORY` and `GITHUB_RUN_ID` (looked up with `env`);
/// `None` outside GitHub Actions or when a value is not what GitHub sets.
pub fn run_link(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let server = env("GITHUB_SERVER_URL")?;
    let repo = env("GITHUB_REPOSITORY")?;
    let run = env("GITHUB_RUN_ID")?;
    let server_ok = server.starts_with("https://")
        && server[8..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c));
    let repo_ok = repo.split('/').count() == 2
        && repo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    if !server_ok || !repo_ok || run.is_empty() || !run.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let url = format!("{server}/{repo}/actions/runs/{run}");
    Some(format!(
        "Logs, summary.json, JUnit, coverage, release files and the HTML report: [the run's artifacts]({url}#artifacts) of [run {run}]({url})."
    ))
}

/// `text` with the run dir's absolute path (`BLLVM_CI_RUN_DIR`, set by the generated
/// workflows) removed, so paths read relative to the uploaded run artifact instead of
/// naming a directory on a runner that is gone.
pub fn relative_to_run_dir(text: &str, env: &dyn Fn(&str) -> Option<String>) -> String {
    match env("BLLVM_CI_RUN_DIR").filter(|d| d.len() > 1) {
        Some(dir) => text.replace(&format!("{}/", dir.trim_end_matches('/')), ""),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn the_run_link_needs_githubs_values_and_refuses_odd_ones() {
        let ok = [
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
            ("GITHUB_RUN_ID", "12"),
        ];
        let l = run_link(&env(&ok)).unwrap();
        assert!(
            l.contains("(https://github.com/o/r/actions/runs/12#artifacts)"),
            "{l}"
        );
        assert!(run_link(&env(&ok[..2])).is_none());
        for (k, v) in [
            ("GITHUB_SERVER_URL", "javascript:alert(1)"),
            ("GITHUB_REPOSITORY", "o/r)[x](y"),
            ("GITHUB_RUN_ID", "12abc"),
        ] {
            let mut bad = ok.to_vec();
            bad.retain(|(n, _)| *n != k);
            bad.push((k, v));
            assert!(run_link(&env(&bad)).is_none(), "{k}={v}");
        }
    }

    #[test]
    fn runner_paths_become_artifact_paths() {
        let vars = [("BLLVM_CI_RUN_DIR", "/home/runner/work/x/bllvm-ci-run")];
        let t =
            "hint: details with `cargo xtask explain /home/runner/work/x/bllvm-ci-run/a/test.log`";
        assert_eq!(
            relative_to_run_dir(t, &env(&vars)),
            "hint: details with `cargo xtask explain a/test.log`"
        );
        assert_eq!(relative_to_run_dir(t, &env(&[])), t);
    }

    #[test]
    fn table_cells_cannot_break_the_table() {
        let s = JobSummary::parse(
            r#"{"schema_version": 1, "repos": [{"name": "a", "status": "failed", "reason": "x | y\n<b>z</b>"}]}"#,
        )
        .unwrap();
        let md = markdown(&[s], &[], None);
        assert!(md.contains("| a | ❌ failed |  |  | x \\| y |\n"), "{md}");
        assert!(md.starts_with("### bllvm chain CI: failed"), "{md}");
        assert!(JobSummary::parse(r#"{"schema_version": 2, "repos": []}"#).is_err());
    }
}
