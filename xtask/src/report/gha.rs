//! GitHub Actions output, used when `GITHUB_ACTIONS=true`: log groups per repo and step,
//! `::error`/`::warning` annotations from cargo's JSON diagnostics, a Markdown summary
//! table appended to `$GITHUB_STEP_SUMMARY`, and step outputs in `$GITHUB_OUTPUT`.
//!
//! The formats are GitHub's "Workflow commands for GitHub Actions" (groups, annotations
//! and their escaping rules) and "Environment files" (`GITHUB_STEP_SUMMARY`,
//! `GITHUB_OUTPUT`). This module only formats and appends; it decides nothing.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::plan::Plan;
use crate::engine::summary::{RepoStatus, RunSummary};
use crate::engine::testing::FailedTest;
use crate::support::exec::Diagnostic;

/// Whether we run inside GitHub Actions (`GITHUB_ACTIONS=true`, set by the runner).
pub fn enabled() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// Escape a workflow command's message (GitHub: `%`, `\r`, `\n`).
pub fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a workflow command's property value (also `:` and `,`).
pub fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// `::group::title`.
pub fn group(title: &str) -> String {
    format!("::group::{}", escape_data(title))
}

/// `::endgroup::`.
pub const END_GROUP: &str = "::endgroup::";

/// The annotation for a diagnostic, or `None` for levels GitHub has no command for
/// (notes, help). `checkout` is the repo's checkout dir: relative paths in diagnostics
/// are relative to it, and the annotation's `file` is made relative to
/// `$GITHUB_WORKSPACE` (else the current directory) so GitHub can place it.
pub fn annotation(d: &Diagnostic, repo: &str, checkout: &Path) -> Option<String> {
    let cmd = match d.level.as_str() {
        "error" | "error: internal compiler error" => "error",
        "warning" => "warning",
        _ => return None,
    };
    let mut props = Vec::new();
    if let Some(f) = &d.file {
        let abs = if Path::new(f).is_absolute() {
            PathBuf::from(f)
        } else {
            checkout.join(f)
        };
        props.push(format!("file={}", escape_property(&display_path(&abs))));
        if let Some(l) = d.line {
            props.push(format!("line={l}"));
        }
        if let Some(c) = d.col {
            props.push(format!("col={c}"));
        }
    }
    let title = match &d.code {
        Some(code) => format!("{repo}: {cmd}[{code}]"),
        None => format!("{repo}: {cmd}"),
    };
    props.push(format!("title={}", escape_property(&title)));
    Some(format!(
        "::{cmd} {}::{}",
        props.join(","),
        escape_data(&d.message)
    ))
}

/// The `::error` annotation for a failing test: titled `<repo>: test <name> failed`, the
/// message its panic message, placed at the panic (or the doctest) when the test's output
/// names a place inside the repo's checkout. The `file` is relative to the repository
/// root (the checkout `checkout`), which is where GitHub looks for it on a pull request:
/// the repo's workflows check it out under a directory of its name, so a path relative to
/// `$GITHUB_WORKSPACE` would not attach. A place outside the checkout (a dependency, the
/// standard library) gives an annotation without a file.
pub fn test_annotation(t: &FailedTest, repo: &str, checkout: &Path) -> String {
    let mut props = Vec::new();
    if let Some(file) = t.file.as_deref().and_then(|f| repo_relative(f, checkout)) {
        props.push(format!("file={}", escape_property(&file)));
        if let Some(l) = t.line {
            props.push(format!("line={l}"));
        }
        if let Some(c) = t.col {
            props.push(format!("col={c}"));
        }
    }
    let title = format!("{repo}: test {} failed", t.name);
    props.push(format!("title={}", escape_property(&title)));
    let message = if t.message.is_empty() {
        "the test failed"
    } else {
        t.message.as_str()
    };
    format!("::error {}::{}", props.join(","), escape_data(message))
}

/// `file` (as rustc printed it: relative to the workspace root, which is the checkout, or
/// absolute) relative to the checkout, with `/` separators; `None` when it lies outside.
pub fn repo_relative(file: &str, checkout: &Path) -> Option<String> {
    let p = Path::new(file);
    let rel = if p.is_absolute() {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        canon(p).strip_prefix(canon(checkout)).ok()?.to_path_buf()
    } else {
        p.to_path_buf()
    };
    let parts: Vec<String> = rel
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .map(|c| match c {
            std::path::Component::Normal(n) => Some(n.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<Vec<_>>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn display_path(abs: &Path) -> String {
    let base = std::env::var_os("GITHUB_WORKSPACE")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok());
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let abs = canon(abs);
    if let Some(base) = base.map(|b| canon(&b)) {
        if let Ok(rel) = abs.strip_prefix(&base) {
            return rel.display().to_string();
        }
        // A sibling checkout beside the workspace: `../blvm-node/src/lib.rs`.
        if let Some(parent) = base.parent() {
            if let Ok(rel) = abs.strip_prefix(parent) {
                return Path::new("..").join(rel).display().to_string();
            }
        }
    }
    abs.display().to_string()
}

/// The Markdown table appended to `$GITHUB_STEP_SUMMARY`: one row per repo with status,
/// steps and their seconds, cache outcomes, and the reason of a failure or skip.
pub fn summary_markdown(s: &RunSummary) -> String {
    let mut md = format!(
        "### bllvm chain CI: {}\n\n",
        match &s.cancelled {
            Some(sig) => format!("cancelled by {sig}"),
            None if s.failed() => "failed".to_owned(),
            None => "ok".to_owned(),
        }
    );
    md += "| repo | status | steps | tests | cache | note |\n|---|---|---|---|---|---|\n";
    for r in &s.repos {
        let icon = match r.status {
            _ if r.cancelled => "⏹️ cancelled",
            RepoStatus::Ok => "✅ ok",
            RepoStatus::Failed(_) => "❌ failed",
            RepoStatus::Skipped(_) => "⏭️ skipped",
            RepoStatus::Cached(_) => "♻️ cached",
        };
        let steps: Vec<String> = r
            .steps
            .iter()
            .map(|st| {
                format!(
                    "{} {:.1}s{}",
                    st.name,
                    st.secs,
                    if st.cancelled {
                        " ⏹️"
                    } else if st.ok() {
                        ""
                    } else {
                        " ❌"
                    }
                )
            })
            .collect();
        let cache: Vec<String> = r
            .cache
            .iter()
            .map(|c| format!("{} {}", c.stage, c.restore_word()))
            .collect();
        let mut note = match &r.status {
            RepoStatus::Failed(w) | RepoStatus::Skipped(w) => {
                w.lines().next().unwrap_or("").to_owned()
            }
            _ => String::new(),
        };
        if let Some(c) = &r.coverage {
            note += &format!(" coverage {:.1}% of {} lines", c.line_percent, c.lines);
        }
        if let Some(rel) = &r.release {
            note += &format!(
                " release: {} file(s){}{}",
                rel.files.len(),
                if rel.reused { ", reused" } else { "" },
                match rel.deterministic {
                    Some(true) => ", deterministic",
                    Some(false) => ", NOT deterministic",
                    None => "",
                }
            );
        }
        let note = note.trim().to_owned();
        let tests = r.tests.map_or_else(String::new, |t| {
            format!(
                "{} passed, {} failed, {} skipped",
                t.passed, t.failed, t.skipped
            )
        });
        md += &format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.name,
            icon,
            steps.join(", "),
            tests,
            cache.join(", "),
            note.replace('|', "\\|")
        );
    }
    md += &failing_tests_and_hints(s);
    for c in &s.chain_cache {
        md += &format!("\nchain-wide cache `{}`: {}\n", c.stage, c.restore_word());
    }
    md.push_str(&format!("\nTotal: {:.1} s.\n", s.secs));
    md
}

/// The step summary's lists under the table: each failed repo's failing tests (name,
/// place, first line of the panic) and its suggested fixes.
fn failing_tests_and_hints(s: &RunSummary) -> String {
    let mut md = String::new();
    for r in s.repos.iter().filter(|r| !r.failed_tests.is_empty()) {
        md += &format!("\n**{}**: failing tests\n", r.name);
        for t in &r.failed_tests {
            md += &format!(
                "- `{}`: {}\n",
                t.title().replace('`', "'"),
                t.headline().replace('\n', " ")
            );
        }
        let total = r.tests.map_or(0, |t| t.failed);
        if total > r.failed_tests.len() as u64 {
            md += &format!(
                "- … and {} more (the run dir's `{}/junit.xml`)\n",
                total - r.failed_tests.len() as u64,
                r.name
            );
        }
    }
    for r in s.repos.iter().filter(|r| !r.hints.is_empty()) {
        md += &format!("\n**{}**: suggested fixes\n", r.name);
        for h in &r.hints {
            md += &format!("- {}\n", h.replace('\n', " "));
        }
    }
    md
}

/// `name=value` lines for `$GITHUB_OUTPUT`: `result`, `failed-repos` (comma separated),
/// and per repo `cache-key-<repo>` and `cache-hit-<repo>` (`true` only for an exact hit).
pub fn outputs(plan: &Plan, s: &RunSummary) -> Vec<(String, String)> {
    let failed: Vec<&str> = s
        .repos
        .iter()
        .filter(|r| matches!(r.status, RepoStatus::Failed(_)))
        .map(|r| r.name.as_str())
        .collect();
    let mut out = vec![
        (
            "result".to_owned(),
            if failed.is_empty() { "ok" } else { "failed" }.to_owned(),
        ),
        ("failed-repos".to_owned(), failed.join(",")),
    ];
    for r in plan.repos.iter().filter(|r| r.selected) {
        if let Some(k) = &r.cache_key {
            let hit = s
                .repos
                .iter()
                .find(|x| x.name == r.name)
                .and_then(|x| x.cache.first())
                .is_some_and(|c| c.restore_word() == "hit");
            out.push((format!("cache-key-{}", r.name), k.key.clone()));
            out.push((format!("cache-hit-{}", r.name), hit.to_string()));
        }
    }
    out
}

/// Append `text` to the file named by environment variable `var` (no-op when unset).
pub fn append_env_file(var: &str, text: &str) -> Result<()> {
    let Some(path) = std::env::var_os(var).filter(|v| !v.is_empty()) else {
        return Ok(());
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("open ${var} ({})", Path::new(&path).display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("append to ${var}"))
}

/// Write the step summary and the outputs at the end of a run.
///
/// Errors: the files named by `GITHUB_STEP_SUMMARY` / `GITHUB_OUTPUT` cannot be written.
pub fn finish(plan: &Plan, s: &RunSummary) -> Result<()> {
    // In GitHub Actions the table ends with a link to the run and its artifacts (logs,
    // JUnit, coverage, release files), which outlive the runner's paths.
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let link = crate::github::workflows::gather::run_link(&env)
        .map_or(String::new(), |l| format!("\n{l}\n"));
    append_env_file("GITHUB_STEP_SUMMARY", &(summary_markdown(s) + &link))?;
    let lines: String = outputs(plan, s)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect();
    append_env_file("GITHUB_OUTPUT", &lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape_and_place() {
        let d = Diagnostic {
            level: "error".into(),
            message: "mismatched types\nexpected `u32`, found `&str` (100%)".into(),
            code: Some("E0308".into()),
            file: Some("/abs/src/lib.rs".into()),
            line: Some(3),
            col: Some(9),
            package_dir: None,
        };
        let a = annotation(&d, "bllvm-node", Path::new("/abs")).unwrap();
        assert_eq!(
            a,
            "::error file=/abs/src/lib.rs,line=3,col=9,title=bllvm-node%3A error[E0308]::mismatched types%0Aexpected `u32`, found `&str` (100%25)"
        );
        let note = Diagnostic {
            level: "note".into(),
            ..d
        };
        assert!(annotation(&note, "x", Path::new("/")).is_none());
    }

    #[test]
    fn a_cancelled_run_says_so_instead_of_failed() {
        use crate::engine::summary::{RepoReport, StepReport};
        let mut r = RepoReport::not_run("a", RepoStatus::Skipped("cancelled by SIGINT".into()));
        r.cancelled = true;
        r.steps.push(StepReport {
            name: "test".into(),
            code: None,
            timed_out: false,
            secs: 1.0,
            log: "l".into(),
            errors: Vec::new(),
            cancelled: true,
        });
        let s = RunSummary {
            schema_version: 1,
            run_id: "r".into(),
            variant: "base".into(),
            chain_cache: Vec::new(),
            repos: vec![r],
            secs: 1.0,
            cancelled: Some("SIGINT".into()),
            warnings: Vec::new(),
            compiler_cache: None,
        };
        let md = summary_markdown(&s);
        assert!(md.contains("bllvm chain CI: cancelled by SIGINT"), "{md}");
        assert!(md.contains("| a | ⏹️ cancelled | test 1.0s ⏹️ |"), "{md}");
        assert!(!md.contains("❌"), "{md}");
    }
}
