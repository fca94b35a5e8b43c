//! The error knowledge base: known failures recognised in a step's log, each with an
//! explanation and a fix (`ci/error-patterns.toml`, embedded at build time).
//!
//! `cargo xtask explain LOG` (`commands::explain`) prints what a log matches; the runner and [`crate::report::notify`]
//! call [`suggest`] and [`first_error`] for a failed step. This module only reads text: it
//! never runs a process and never touches a checkout.
//!
//! Matching rules (the TOML file's header says the same for its authors): a log is
//! normalised first (ANSI colour codes and `\r` removed), then every pattern's regex runs
//! over the whole text with multi-line mode on, so one pattern may span lines (a panic
//! message is two lines since Rust 1.73). Results come in the knowledge base's order,
//! which lists specific causes before generic ones.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anyhow::{bail, Context, Result};
use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

/// The knowledge base shipped with the binary (`ci/error-patterns.toml`).
pub const EMBEDDED: &str = include_str!("../../../ci/error-patterns.toml");

/// Format version of `ci/error-patterns.toml` this code reads.
pub const SCHEMA_VERSION: u32 = 1;

/// Most matched lines kept per pattern (a log with 300 `error[E0277]` lines shows 5).
pub const MAX_LINES: usize = 5;

/// One `[[pattern]]` entry as written in the TOML file (see its header for every field).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PatternSpec {
    /// Unique kebab-case id.
    pub id: String,
    /// Rust `regex` syntax, multi-line mode on.
    pub regex: String,
    /// One-line title; `${group}` expands to a named capture.
    pub title: String,
    /// What happened and why; `${group}` expands to a named capture.
    pub explanation: String,
    /// What to do; `${group}` expands to a named capture.
    pub fix: String,
    /// Where to read more.
    #[serde(default)]
    pub link: Option<String>,
    /// Also extract the first real compiler error from the log.
    #[serde(default)]
    pub first_error: bool,
    /// A log excerpt the regex must match (checked by tests).
    #[allow(dead_code)] // read by the tests only
    pub example: String,
    /// A similar excerpt the regex must not match (checked by tests).
    #[allow(dead_code)] // read by the tests only
    pub counter_example: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKb {
    schema_version: u32,
    #[serde(default)]
    pattern: Vec<PatternSpec>,
}

/// A parsed knowledge base: every entry with its compiled regex.
#[derive(Debug)]
pub struct KnowledgeBase {
    /// Entries in file order, each with its compiled regex.
    pub patterns: Vec<(PatternSpec, Regex)>,
}

/// One knowledge-base entry found in a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Match {
    /// The entry's id.
    pub id: String,
    /// Title, with named captures of the first match expanded.
    pub title: String,
    /// What happened and why, with named captures of the first match expanded.
    pub explanation: String,
    /// What to do, with named captures of the first match expanded.
    pub fix: String,
    /// Where to read more.
    pub link: Option<String>,
    /// The matched lines as (1-based line number, text), at most [`MAX_LINES`].
    pub lines: Vec<(usize, String)>,
    /// The first real compiler error, for entries with `first-error = true`.
    pub first_error: Option<String>,
}

impl KnowledgeBase {
    /// Parse a knowledge base from TOML `text`; `origin` names it in errors.
    ///
    /// Errors: TOML syntax or unknown fields, a `schema_version` other than
    /// [`SCHEMA_VERSION`], a duplicate id, or a regex that does not compile.
    pub fn parse(text: &str, origin: &str) -> Result<KnowledgeBase> {
        let raw: RawKb = toml::from_str(text)
            .with_context(|| format!("{origin}: not a valid error knowledge base"))?;
        if raw.schema_version != SCHEMA_VERSION {
            bail!(
                "{origin}: schema_version {} is not supported (this xtask reads {SCHEMA_VERSION})",
                raw.schema_version
            );
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut patterns = Vec::new();
        for p in raw.pattern {
            if !seen.insert(p.id.clone()) {
                bail!(
                    "{origin}: duplicate pattern id `{}`: give every [[pattern]] its own id",
                    p.id
                );
            }
            let re = RegexBuilder::new(&p.regex)
                .multi_line(true)
                .build()
                .with_context(|| format!("{origin}: pattern `{}` has an invalid regex", p.id))?;
            patterns.push((p, re));
        }
        Ok(KnowledgeBase { patterns })
    }

    /// Read and parse the knowledge base at `path`.
    pub fn load(path: &Path) -> Result<KnowledgeBase> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read error patterns {}", path.display()))?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The knowledge base embedded in the binary, parsed once.
    ///
    /// Panics only if the embedded file is invalid, which the tidy test rules out.
    pub fn embedded() -> &'static KnowledgeBase {
        static KB: OnceLock<KnowledgeBase> = OnceLock::new();
        KB.get_or_init(|| {
            KnowledgeBase::parse(EMBEDDED, "ci/error-patterns.toml (embedded)")
                .expect("the embedded knowledge base is checked by tests")
        })
    }

    /// Every entry `log` matches, in knowledge-base order.
    pub fn scan(&self, log: &str) -> Vec<Match> {
        let text = normalize(log);
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let line_of = |at: usize| line_starts.partition_point(|&s| s <= at); // 1-based
        let all_lines: Vec<&str> = text.split('\n').collect();
        let mut out = Vec::new();
        for (spec, re) in &self.patterns {
            let mut caps_iter = re.captures_iter(&text).peekable();
            let Some(first) = caps_iter.peek() else {
                continue;
            };
            let mut title = String::new();
            first.expand(&spec.title, &mut title);
            let mut explanation = String::new();
            first.expand(&spec.explanation, &mut explanation);
            let mut fix = String::new();
            first.expand(&spec.fix, &mut fix);
            let mut lines: Vec<(usize, String)> = Vec::new();
            for caps in caps_iter {
                let m = caps.get(0).expect("group 0 always participates");
                let (a, b) = (
                    line_of(m.start()),
                    line_of(m.end().saturating_sub(1).max(m.start())),
                );
                for n in a..=b {
                    if lines.len() >= MAX_LINES {
                        break;
                    }
                    if !lines.iter().any(|(l, _)| *l == n) {
                        lines.push((n, all_lines[n - 1].to_owned()));
                    }
                }
                if lines.len() >= MAX_LINES {
                    break;
                }
            }
            out.push(Match {
                id: spec.id.clone(),
                title,
                explanation,
                fix,
                link: spec.link.clone(),
                lines,
                first_error: if spec.first_error {
                    first_error(&text)
                } else {
                    None
                },
            });
        }
        out
    }
}

/// Knowledge-base entries that `log_text` matches (the embedded knowledge base), for the
/// runner's summary of a failed step and for notifications.
pub fn suggest(log_text: &str) -> Vec<Match> {
    KnowledgeBase::embedded().scan(log_text)
}

/// One line per knowledge-base entry the log file at `log` matches, at most `max`, as
/// `[id] title: fix` — what the runner puts under a failed step in its summary. Empty when
/// the file cannot be read or nothing matches (a hint is never an error).
pub fn hints(log: &Path, max: usize) -> Vec<String> {
    let Ok(bytes) = std::fs::read(log) else {
        return Vec::new();
    };
    suggest(&String::from_utf8_lossy(&bytes))
        .into_iter()
        .take(max)
        .map(|m| format!("[{}] {}: {}", m.id, m.title, m.fix))
        .collect()
}

/// Remove ANSI escape sequences (cargo's colours) and carriage returns.
pub fn normalize(log: &str) -> String {
    static ANSI: OnceLock<Regex> = OnceLock::new();
    let re = ANSI.get_or_init(|| Regex::new(r"\x1b\[[0-9;?]*[ -/]*[@-~]").expect("valid regex"));
    re.replace_all(log, "").replace('\r', "")
}

/// The first real error of a log: the first `error:` or `error[E…]:` line that is not
/// cargo's `could not compile` / `aborting due to` epilogue, followed by its `-->` location
/// line when there is one; else the first line of a panic. `None` when there is neither.
pub fn first_error(log: &str) -> Option<String> {
    let text = normalize(log);
    let lines: Vec<&str> = text.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        let t = l.trim_start();
        let is_error = t.starts_with("error:") || t.starts_with("error[");
        if !is_error
            || t.starts_with("error: could not compile")
            || t.starts_with("error: aborting due to")
            || t.starts_with("error: build failed")
        {
            continue;
        }
        let mut s = t.to_owned();
        if let Some(loc) = lines.get(i + 1).map(|n| n.trim_start()) {
            if loc.starts_with("--> ") {
                s = format!("{s} ({})", loc.trim_start_matches("--> "));
            }
        }
        return Some(s);
    }
    lines
        .iter()
        .find(|l| l.contains("panicked at"))
        .map(|l| l.trim().to_owned())
}

/// The text `cargo xtask explain` prints for `matches` of a log (`name` in the header).
pub fn render(name: &str, log: &str, matches: &[Match]) -> String {
    let mut s = String::new();
    if matches.is_empty() {
        s += &format!("{name}: no known error pattern matched\n");
        match first_error(log) {
            Some(e) => s += &format!("first error: {e}\n"),
            None => s += "no `error:` line found either\n",
        }
        s += "if this failure took a while to understand, add it to ci/error-patterns.toml\n";
        return s;
    }
    s += &format!("{name}: {} known error pattern(s)\n", matches.len());
    for m in matches {
        s += &format!("\n[{}] {}\n", m.id, m.title);
        for (n, l) in &m.lines {
            s += &format!("  {n:>5} | {l}\n");
        }
        if let Some(e) = &m.first_error {
            s += &format!("  first error: {e}\n");
        }
        s += &format!("  why: {}\n", m.explanation);
        s += &format!("  fix: {}\n", m.fix);
        if let Some(link) = &m.link {
            s += &format!("  see: {link}\n");
        }
    }
    s
}

/// The failed steps of a run directory, from its `summary.json`: (label, log path).
///
/// Errors: the directory has no readable `summary.json`.
pub fn failed_step_logs(run_dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let path = run_dir.join("summary.json");
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "{} has no summary.json: pass a run directory (target/bllvm-ci/runs/<id>), a step log, or `-` for stdin",
            run_dir.display()
        )
    })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a run summary", path.display()))?;
    let mut out = Vec::new();
    for r in v["repos"].as_array().into_iter().flatten() {
        if r["status"] != "failed" {
            continue;
        }
        for st in r["steps"].as_array().into_iter().flatten() {
            let ok = st["code"] == 0 && st["timed_out"] != true;
            if let (false, Some(log)) = (ok, st["log"].as_str()) {
                let label = format!(
                    "{} `{}` ({log})",
                    r["name"].as_str().unwrap_or("?"),
                    st["name"].as_str().unwrap_or("?")
                );
                out.push((label, PathBuf::from(log)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidy: the embedded file parses, and every entry matches its `example` and not its
    /// `counter-example` (data-driven: adding an entry adds its own test case).
    #[test]
    fn every_pattern_matches_its_example_and_not_its_counter_example() {
        let kb = KnowledgeBase::parse(EMBEDDED, "ci/error-patterns.toml").unwrap();
        assert!(kb.patterns.len() >= 12, "knowledge base shrank");
        for (spec, _) in &kb.patterns {
            let single = KnowledgeBase {
                patterns: kb
                    .patterns
                    .iter()
                    .filter(|(p, _)| p.id == spec.id)
                    .map(|(p, r)| (p.clone(), r.clone()))
                    .collect(),
            };
            let hit = single.scan(&spec.example);
            assert_eq!(hit.len(), 1, "`{}` does not match its example", spec.id);
            assert!(!hit[0].lines.is_empty(), "`{}`: no matched lines", spec.id);
            assert!(
                ![&hit[0].title, &hit[0].explanation, &hit[0].fix]
                    .iter()
                    .any(|t| t.contains("${")),
                "`{}`: unexpanded capture in {:?}",
                spec.id,
                hit[0]
            );
            assert!(
                single.scan(&spec.counter_example).is_empty(),
                "`{}` matches its counter-example",
                spec.id
            );
        }
    }

    #[test]
    fn ids_are_kebab_case_and_texts_non_empty() {
        for (p, _) in &KnowledgeBase::embedded().patterns {
            assert!(
                p.id.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                p.id
            );
            assert!(!p.title.is_empty() && !p.explanation.is_empty() && !p.fix.is_empty());
        }
    }

    #[test]
    fn colours_are_stripped_and_lines_numbered() {
        let log = "   Compiling a v0.1.0\r\n\x1b[1m\x1b[91merror\x1b[0m\x1b[1m: linker `cc` not found\x1b[0m\n";
        let m = suggest(log);
        assert_eq!(m[0].id, "linker-not-found");
        assert_eq!(m[0].title, "linker `cc` not found");
        assert_eq!(
            m[0].lines,
            vec![(2, "error: linker `cc` not found".to_owned())]
        );
    }

    #[test]
    fn multi_line_panic_reports_the_lines_it_spans() {
        let log = "running 1 test\nthread 'x' panicked at src/a.rs:1:1:\ncalled `Option::unwrap()` on a `None` value\n";
        let m = suggest(log);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].lines[0].0, 3);
    }

    #[test]
    fn first_error_skips_the_epilogue_and_adds_the_location() {
        let log = "warning: unused\nerror: could not compile `x`\nerror[E0425]: cannot find value `g`\n  --> src/lib.rs:3:5\n";
        assert_eq!(
            first_error(log).as_deref(),
            Some("error[E0425]: cannot find value `g` (src/lib.rs:3:5)")
        );
        let m = suggest(log);
        let cc = m.iter().find(|m| m.id == "could-not-compile").unwrap();
        assert_eq!(cc.title, "`x` did not compile");
        assert!(cc
            .first_error
            .as_deref()
            .unwrap()
            .starts_with("error[E0425]"));
    }

    #[test]
    fn hints_read_a_log_file_and_are_empty_when_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "error: linker `cc` not found\nerror[E0277]: x\n").unwrap();
        let h = hints(&log, 1);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].starts_with("[linker-not-found] linker `cc` not found: Install a C toolchain"),
            "{h:?}"
        );
        assert_eq!(hints(&log, 5).len(), 2);
        assert!(hints(&dir.path().join("none.log"), 5).is_empty());
    }

    #[test]
    fn matched_lines_are_capped() {
        let log = "error[E0277]: a\n".repeat(50);
        let m = suggest(&log);
        assert_eq!(m[0].lines.len(), MAX_LINES);
    }

    #[test]
    fn bad_knowledge_bases_are_rejected() {
        let e = KnowledgeBase::parse("schema_version = 2\n", "x").unwrap_err();
        assert!(e.to_string().contains("schema_version 2"), "{e}");
        let dup = r#"schema_version = 1
[[pattern]]
id = "a"
regex = "("
title = "t"
explanation = "e"
fix = "f"
example = "x"
counter-example = "y"
"#;
        let e = KnowledgeBase::parse(dup, "x").unwrap_err();
        assert!(format!("{e:#}").contains("invalid regex"), "{e:#}");
    }
}
