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
//!
//! Some causes cannot be read from a log alone: that a lint failed on a toolchain newer
//! than the repo's pin, or that the crates.io release a repo compiled against is not the
//! sibling checkout's version. The run knows those facts; it passes them as a context
//! (named values, [`HintContext`]), and an entry that `needs` them applies only when they are given and can
//! say them with `${name}`. The run records the context of each failed repo in
//! `summary.json` (`hint_context`), so `explain` over a run directory, or over a step log
//! inside one, gives the same hints as the run.

use std::collections::BTreeMap;
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

/// The names a [`HintContext`] may hold, what the run knows beyond a log, each with its
/// meaning (the knowledge base's header repeats them for its authors):
/// - `toolchain`: the release of the rustc the repo's steps ran with (`1.95.0`);
/// - `pinned_toolchain`: the repo's own pin (the manifest's `toolchain`, else its
///   `rust-toolchain.toml` channel) when it is a version older than `toolchain`, i.e. the
///   run chose a newer toolchain (`--toolchain`, a matrix cell) than the repo is kept
///   clean on;
/// - `registry_versions`: in registry mode, the sibling crates the repo's lockfile took
///   from crates.io at a version other than their checkout's, as `crate 0.1.30 from
///   crates.io (checkout repo: 0.1.19)`, `; `-separated.
pub const CONTEXT_NAMES: &[&str] = &["toolchain", "pinned_toolchain", "registry_versions"];

/// What the run knows about a failed repo beyond its log: values for the entries that
/// `need` them (see [`CONTEXT_NAMES`]). Serialized as a plain map in `summary.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct HintContext(pub BTreeMap<String, String>);

impl HintContext {
    /// Set `name` (one of [`CONTEXT_NAMES`]) to `value`.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        self.0.insert(name.to_owned(), value.into());
    }

    /// The value of `name`, if given.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// Only the known names with values that fit on a line: a context read back from a
    /// `summary.json` is untrusted text.
    pub fn sanitized(self) -> HintContext {
        HintContext(
            self.0
                .into_iter()
                .filter(|(k, v)| {
                    CONTEXT_NAMES.contains(&k.as_str()) && v.len() <= 2000 && !v.contains('\n')
                })
                .collect(),
        )
    }

    /// `template` with every `${name}` of a given value replaced, `$` in values doubled so
    /// the regex expansion of captures that follows leaves them as they are.
    fn fill(&self, template: &str) -> String {
        let mut out = template.to_owned();
        for (k, v) in &self.0 {
            out = out.replace(&format!("${{{k}}}"), &v.replace('$', "$$"));
        }
        out
    }
}

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
    /// The entry does not apply when this regex matches the log (e.g. `could not compile`
    /// is not an API change when the errors are denied lints).
    #[serde(default)]
    pub unless: Option<String>,
    /// Context names ([`CONTEXT_NAMES`]) the entry applies only with; its texts may use
    /// them as `${name}`.
    #[serde(default)]
    pub needs: Vec<String>,
    /// The context the `example` and `counter-example` are checked with (tests only).
    #[serde(default)]
    #[allow(dead_code)] // read by the tests only
    pub example_context: BTreeMap<String, String>,
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

/// One entry with its compiled regexes.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// The entry as written.
    pub spec: PatternSpec,
    /// Its `regex`.
    pub regex: Regex,
    /// Its `unless`.
    pub unless: Option<Regex>,
}

/// A parsed knowledge base: every entry with its compiled regexes.
#[derive(Debug)]
pub struct KnowledgeBase {
    /// Entries in file order.
    pub patterns: Vec<Compiled>,
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
            let compile = |re: &str, what: &str| {
                RegexBuilder::new(re)
                    .multi_line(true)
                    .build()
                    .with_context(|| format!("{origin}: pattern `{}` has an invalid {what}", p.id))
            };
            let regex = compile(&p.regex, "regex")?;
            let unless = p
                .unless
                .as_deref()
                .map(|u| compile(u, "`unless` regex"))
                .transpose()?;
            if let Some(n) = p
                .needs
                .iter()
                .find(|n| !CONTEXT_NAMES.contains(&n.as_str()))
            {
                bail!(
                    "{origin}: pattern `{}` needs `{n}`, which the run does not provide (known: {})",
                    p.id,
                    CONTEXT_NAMES.join(", ")
                );
            }
            patterns.push(Compiled {
                spec: p,
                regex,
                unless,
            });
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

    /// Every entry `log` matches, in knowledge-base order (entries that need a context
    /// do not apply).
    pub fn scan(&self, log: &str) -> Vec<Match> {
        self.scan_with(log, &HintContext::default())
    }

    /// Every entry `log` matches with what the run knows (`cx`), in knowledge-base order:
    /// an entry applies when its regex matches, its `unless` does not, and `cx` gives
    /// every name it needs.
    pub fn scan_with(&self, log: &str, cx: &HintContext) -> Vec<Match> {
        let text = normalize(log);
        let line_starts: Vec<usize> = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let line_of = |at: usize| line_starts.partition_point(|&s| s <= at); // 1-based
        let all_lines: Vec<&str> = text.split('\n').collect();
        let mut out = Vec::new();
        for Compiled {
            spec,
            regex: re,
            unless,
        } in &self.patterns
        {
            if unless.as_ref().is_some_and(|u| u.is_match(&text))
                || spec.needs.iter().any(|n| cx.get(n).is_none())
            {
                continue;
            }
            let mut caps_iter = re.captures_iter(&text).peekable();
            let Some(first) = caps_iter.peek() else {
                continue;
            };
            let expand = |template: &str| {
                let mut out = String::new();
                first.expand(&cx.fill(template), &mut out);
                out
            };
            let (title, explanation, fix) = (
                expand(&spec.title),
                expand(&spec.explanation),
                expand(&spec.fix),
            );
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

/// One line per knowledge-base entry `text` matches with the run's context `cx`, at most
/// `max`, as `[id] title: fix`: what the runner puts under a failed repo in its summary
/// (`text` is the failed step's log, or the failure reason of a repo that failed before
/// any step, such as a `cargo metadata` resolution error).
pub fn hints_in(text: &str, cx: &HintContext, max: usize) -> Vec<String> {
    KnowledgeBase::embedded()
        .scan_with(text, cx)
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

/// What to scan for one failure of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A failed step's log file.
    Log(PathBuf),
    /// The failure reason of a repo that failed before any step ran (a `cargo metadata`
    /// or `cargo generate-lockfile` resolution error holds cargo's whole message).
    Text(String),
}

/// One failure of a run directory: a label (`repo `step` (log)`, or `repo (resolution)`),
/// what to scan, and the run's context of the repo (see [`HintContext`]).
#[derive(Debug, Clone)]
pub struct RunFailure {
    /// What the failure is, for the header.
    pub label: String,
    /// What to scan.
    pub source: Source,
    /// What the run knew about the repo.
    pub context: HintContext,
}

/// The failures of a run directory, from its `summary.json`: every failed step of a
/// failed repo, and for a failed repo without a failed step its failure reason (a repo
/// that could not be resolved), each with the repo's recorded `hint_context`.
///
/// Errors: the directory has no readable `summary.json`.
pub fn run_failures(run_dir: &Path) -> Result<Vec<RunFailure>> {
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
        let name = r["name"].as_str().unwrap_or("?");
        let context = recorded_context(r);
        let before = out.len();
        for st in r["steps"].as_array().into_iter().flatten() {
            let ok = st["code"] == 0 && st["timed_out"] != true;
            if let (false, Some(log)) = (ok, st["log"].as_str()) {
                out.push(RunFailure {
                    label: format!("{name} `{}` ({log})", st["name"].as_str().unwrap_or("?")),
                    source: Source::Log(locate_log(run_dir, name, Path::new(log))),
                    context: context.clone(),
                });
            }
        }
        if let (true, Some(reason)) = (out.len() == before, r["reason"].as_str()) {
            out.push(RunFailure {
                label: format!("{name} (failed before any step: resolution)"),
                source: Source::Text(reason.to_owned()),
                context,
            });
        }
    }
    Ok(out)
}

/// Where a step log the summary names is: as written when it exists (the summary holds
/// the path the run used, relative to the directory `ci` ran in when its run dir was
/// relative), else in the run directory's layout, `<run dir>/<repo>/<file name>`.
fn locate_log(run_dir: &Path, repo: &str, log: &Path) -> PathBuf {
    if log.exists() {
        return log.to_path_buf();
    }
    match log.file_name() {
        Some(file) if !repo.contains(['/', '\\']) && repo != ".." => run_dir.join(repo).join(file),
        _ => log.to_path_buf(),
    }
}

/// A repo row's `hint_context`, sanitized (absent or malformed: empty).
fn recorded_context(repo: &serde_json::Value) -> HintContext {
    serde_json::from_value::<HintContext>(repo["hint_context"].clone())
        .unwrap_or_default()
        .sanitized()
}

/// The context the run recorded for the repo whose step log is `log`, when the log lies
/// in a run directory (`<run dir>/<repo>/<step>.log` beside `<run dir>/summary.json`);
/// empty otherwise. So `explain LOG`, which the summary suggests, gives the run's hints.
pub fn context_for_log(log: &Path) -> HintContext {
    let (Some(repo_dir), Some(repo)) = (log.parent(), log.parent().and_then(Path::file_name))
    else {
        return HintContext::default();
    };
    let Some(run_dir) = repo_dir.parent() else {
        return HintContext::default();
    };
    let Ok(bytes) = std::fs::read(run_dir.join("summary.json")) else {
        return HintContext::default();
    };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return HintContext::default();
    };
    v["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"].as_str() == repo.to_str())
        .map(recorded_context)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tidy: the embedded file parses, and every entry matches its `example` and not its
    /// `counter-example` (data-driven: adding an entry adds its own test case), both with
    /// its `example-context`; an entry that needs a context does not apply without it.
    #[test]
    fn every_pattern_matches_its_example_and_not_its_counter_example() {
        let kb = KnowledgeBase::parse(EMBEDDED, "ci/error-patterns.toml").unwrap();
        assert!(kb.patterns.len() >= 12, "knowledge base shrank");
        for c in &kb.patterns {
            let spec = &c.spec;
            let single = KnowledgeBase {
                patterns: vec![c.clone()],
            };
            let cx = HintContext(spec.example_context.clone());
            let hit = single.scan_with(&spec.example, &cx);
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
                single.scan_with(&spec.counter_example, &cx).is_empty(),
                "`{}` matches its counter-example",
                spec.id
            );
            let names: Vec<&String> = spec.example_context.keys().collect();
            assert_eq!(
                names,
                spec.needs.iter().collect::<Vec<_>>(),
                "`{}`: example-context must give exactly what it needs",
                spec.id
            );
            if !spec.needs.is_empty() {
                assert!(
                    single.scan(&spec.example).is_empty(),
                    "`{}` applies without the context it needs",
                    spec.id
                );
            }
        }
    }

    /// Every `${name}` in an entry's texts is a named group of its regex or a context name
    /// it needs: anything else would expand to nothing.
    #[test]
    fn placeholders_are_groups_or_needed_context() {
        let placeholder = Regex::new(r"\$\{([A-Za-z0-9_]+)\}").unwrap();
        for c in &KnowledgeBase::embedded().patterns {
            let groups: Vec<&str> = c.regex.capture_names().flatten().collect();
            for text in [&c.spec.title, &c.spec.explanation, &c.spec.fix] {
                for cap in placeholder.captures_iter(text) {
                    let name = &cap[1];
                    assert!(
                        groups.contains(&name) || c.spec.needs.iter().any(|n| n == name),
                        "`{}`: `${{{name}}}` is neither a group of its regex nor in `needs`",
                        c.spec.id
                    );
                }
            }
        }
    }

    #[test]
    fn context_values_are_literal_and_unknown_needs_are_rejected() {
        let mut cx = HintContext::default();
        cx.set("toolchain", "$1 ${x}");
        assert_eq!(cx.fill("on ${toolchain}"), "on $$1 $${x}");
        let bad = r#"schema_version = 1
[[pattern]]
id = "a"
regex = "x"
needs = ["weather"]
title = "t"
explanation = "e"
fix = "f"
example = "x"
counter-example = "y"
"#;
        let e = KnowledgeBase::parse(bad, "x").unwrap_err();
        assert!(format!("{e:#}").contains("needs `weather`"), "{e:#}");
        let mut raw = HintContext::default();
        raw.set("toolchain", "1.95.0");
        raw.set("weather", "rain");
        raw.set("registry_versions", "a\nb");
        assert_eq!(raw.sanitized().0.len(), 1);
    }

    #[test]
    fn ids_are_kebab_case_and_texts_non_empty() {
        for p in KnowledgeBase::embedded().patterns.iter().map(|c| &c.spec) {
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

    /// [`hints_in`] over the log file at `log` (empty when it cannot be read), as the
    /// runner reads a failed step's log.
    fn hints(log: &Path, cx: &HintContext, max: usize) -> Vec<String> {
        let Ok(bytes) = std::fs::read(log) else {
            return Vec::new();
        };
        hints_in(&String::from_utf8_lossy(&bytes), cx, max)
    }

    #[test]
    fn hints_read_a_log_file_and_are_empty_when_it_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "error: linker `cc` not found\nerror[E0277]: x\n").unwrap();
        let none = HintContext::default();
        let h = hints(&log, &none, 1);
        assert_eq!(h.len(), 1);
        assert!(
            h[0].starts_with("[linker-not-found] linker `cc` not found: Install a C toolchain"),
            "{h:?}"
        );
        assert_eq!(hints(&log, &none, 5).len(), 2);
        assert!(hints(&dir.path().join("none.log"), &none, 5).is_empty());
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
