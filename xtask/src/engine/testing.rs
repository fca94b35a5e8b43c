//! Test steps with cargo-nextest: when `cargo nextest` is installed, a `cargo test` step
//! runs as `cargo nextest run` (same arguments) with a JUnit report, followed by
//! `cargo test --doc` (nextest does not run doctests), and the JUnit XML gives the
//! passed/failed/skipped counts for the summary, and for each failing test its name, its
//! panic message and the place of the panic ([`parse_junit`], with a real XML parser). The
//! doctest step's own output (libtest's, [`parse_libtest`]) adds its counts and failing
//! doctests, so the totals include doctests.
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
/// doctests when `nextest` is true; anything else stays one command.
///
/// The doctests run only where `cargo test` would run them: a command that selects
/// targets (`--lib`, `--tests`, `--all-targets`, `--bin x`, ...) runs none, so it gets no
/// doctest step. libtest's `--test-threads N` after `--` becomes nextest's own option
/// (nextest refuses it there); the other libtest arguments nextest understands after
/// `--` (`--nocapture`, `--exact`, `--skip`, `--ignored`, filters) stay. `tool_config` is
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
    let (threads, after) = libtest_threads(after);
    if let Some(n) = threads {
        nx.extend(["--test-threads".to_owned(), n]);
    }
    let doctests = !before.iter().any(|a| selects_targets(a));
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
        doc.push(a.clone());
        nx.push(a.clone());
    }
    nx.extend([
        "--tool-config-file".to_owned(),
        format!("bllvm-ci:{}", tool_config.display()),
        "--profile".to_owned(),
        PROFILE.to_owned(),
        "--no-tests=pass".to_owned(),
    ]);
    nx.extend(after);
    let mut subs = vec![SubStep {
        name: name.to_owned(),
        args: nx,
        junit: Some(target_dir.join("nextest").join(PROFILE).join("junit.xml")),
        lenient_no_lib: false,
    }];
    if doctests {
        subs.push(SubStep {
            name: format!("{name}-doc"),
            args: doc,
            junit: None,
            lenient_no_lib: true,
        });
    }
    subs
}

/// Whether a `cargo test` argument selects targets, after which cargo runs no doctests
/// (cargo's rule: doctests run with no target selection, or with `--doc`).
fn selects_targets(a: &str) -> bool {
    let name = a.split('=').next().unwrap_or(a);
    matches!(
        name,
        "--lib"
            | "--bin"
            | "--bins"
            | "--example"
            | "--examples"
            | "--test"
            | "--tests"
            | "--bench"
            | "--benches"
            | "--all-targets"
    )
}

/// libtest's `--test-threads N` (or `=N`) taken out of the arguments after `--`: its value,
/// and the rest in order.
fn libtest_threads(after: &[String]) -> (Option<String>, Vec<String>) {
    let mut threads = None;
    let mut rest = Vec::new();
    let mut it = after.iter();
    while let Some(a) = it.next() {
        if let Some(n) = a.strip_prefix("--test-threads=") {
            threads = Some(n.to_owned());
        } else if a == "--test-threads" {
            threads = it.next().cloned();
        } else {
            rest.push(a.clone());
        }
    }
    // `--` alone left over selects nothing: drop it.
    if rest.len() == 1 && rest[0] == "--" {
        rest.clear();
    }
    (threads, rest)
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

/// Test counts of a run, from its JUnit report and its doctests' output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TestCounts {
    /// Tests that passed.
    pub passed: u64,
    /// Tests that failed (failures and errors).
    pub failed: u64,
    /// Tests skipped (ignored or filtered and reported as skipped).
    pub skipped: u64,
}

impl TestCounts {
    /// Add `other`'s counts to these (saturating: counts read from files are untrusted).
    pub fn add(&mut self, other: TestCounts) {
        self.passed = self.passed.saturating_add(other.passed);
        self.failed = self.failed.saturating_add(other.failed);
        self.skipped = self.skipped.saturating_add(other.skipped);
    }
}

/// Most lines of a panic message kept per failing test (an `assert_eq!` takes three).
pub const MAX_MESSAGE_LINES: usize = 10;

/// Most characters of a panic message kept per failing test.
pub const MAX_MESSAGE_CHARS: usize = 1000;

/// Most failing tests kept per report (the counts still count every one); the JUnit file
/// in the run dir lists them all.
pub const MAX_FAILED_TESTS: usize = 50;

/// One failing test: which, why and where, for the summary, the `::error` annotations and
/// the notifications.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailedTest {
    /// The test as nextest names it, `<binary id> <test name>` (`fx tests::bad`,
    /// `fx::it integ`), or a doctest as rustdoc names it after its crate
    /// (`fx src/lib.rs - add (line 3)`).
    pub name: String,
    /// What failed: the panic message (the lines between `panicked at …:` and the
    /// backtrace, at most [`MAX_MESSAGE_LINES`] lines and [`MAX_MESSAGE_CHARS`]
    /// characters), else the first line the report gives (a timeout, a signal, a doctest
    /// that does not compile).
    pub message: String,
    /// The file of the panic (for a doctest: the file of the doctest) as rustc prints it:
    /// relative to the workspace root for the repo's own code, absolute elsewhere (a
    /// dependency, the standard library). Absent when the output names no place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// 1-based line in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column in `file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub col: Option<u32>,
}

impl FailedTest {
    /// `name (file:line:col)`, the place left out when unknown.
    pub fn title(&self) -> String {
        match (&self.file, self.line) {
            (Some(f), Some(l)) => match self.col {
                Some(c) => format!("{} ({f}:{l}:{c})", self.name),
                None => format!("{} ({f}:{l})", self.name),
            },
            (Some(f), None) => format!("{} ({f})", self.name),
            _ => self.name.clone(),
        }
    }

    /// The first line of the message.
    pub fn headline(&self) -> &str {
        self.message.lines().next().unwrap_or("")
    }
}

/// What a JUnit report says: the counts, and the failing tests (at most
/// [`MAX_FAILED_TESTS`], in report order).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestResults {
    /// Passed, failed and skipped tests.
    pub counts: TestCounts,
    /// The failing tests.
    pub failures: Vec<FailedTest>,
}

impl TestResults {
    /// Add `other` (another step's results) to these, keeping at most
    /// [`MAX_FAILED_TESTS`] failures.
    pub fn absorb(&mut self, other: TestResults) {
        self.counts.add(other.counts);
        let room = MAX_FAILED_TESTS.saturating_sub(self.failures.len());
        self.failures.extend(other.failures.into_iter().take(room));
    }
}

/// The `<testcase>` being read.
#[derive(Default)]
struct Case {
    name: String,
    failed: bool,
    skipped: bool,
    /// The `message` attribute of its `<failure>`/`<error>`.
    message: String,
    /// The text of its `<failure>`/`<error>` (nextest: the test's output).
    text: String,
}

impl Case {
    /// The case's outcome added to `out`.
    fn finish(self, out: &mut TestResults) {
        if self.failed {
            out.counts.failed = out.counts.failed.saturating_add(1);
            if out.failures.len() < MAX_FAILED_TESTS {
                out.failures.push(self.into_failure());
            }
        } else if self.skipped {
            out.counts.skipped = out.counts.skipped.saturating_add(1);
        } else {
            out.counts.passed = out.counts.passed.saturating_add(1);
        }
    }

    fn into_failure(self) -> FailedTest {
        let mut t = FailedTest {
            name: self.name,
            message: cap_message(self.message.trim()),
            file: None,
            line: None,
            col: None,
        };
        // The panic in the test's output, else the one nextest's `message` names (its
        // first line: the place without the message, when the output was cut off).
        if let Some(p) = panic_of(&self.text).or_else(|| panic_of(&self.message)) {
            if !p.message.is_empty() {
                t.message = p.message;
            }
            (t.file, t.line, t.col) = (p.file, p.line, p.col);
        }
        if t.message.is_empty() {
            t.message = cap_message(self.text.trim());
        }
        t
    }
}

/// An element's attribute, unescaped; empty when absent or malformed.
fn attribute(e: &quick_xml::events::BytesStart<'_>, name: &str) -> String {
    e.try_get_attribute(name)
        .ok()
        .flatten()
        .and_then(|a| {
            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .ok()
                .map(|v| v.into_owned())
        })
        .unwrap_or_default()
}

/// Parse a JUnit report (nextest's, or any JUnit XML): a `<testcase>` with a `<failure>` or
/// `<error>` child failed, one with `<skipped>` was skipped, the others passed. For each
/// failing case the panic in its failure text gives the message and the place
/// ([`panic_of`]); without a panic, the failure's `message` attribute is the message.
/// Retries (`<flakyFailure>`, `<rerunFailure>`) do not decide the outcome.
///
/// Errors: the text is not well-formed XML (the message names the byte offset).
pub fn parse_junit(xml: &str) -> Result<TestResults, String> {
    use quick_xml::events::Event as X;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut out = TestResults::default();
    let mut case: Option<Case> = None;
    // Inside a `<failure>`/`<error>` of the current case: its text is the test's output.
    let mut capturing = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("not valid XML at byte {}: {e}", reader.error_position()))?;
        match event {
            X::Eof => break,
            X::Start(e) => match e.local_name().as_ref() {
                "testcase" => case = Some(new_case(&e)),
                "failure" | "error" => {
                    capturing = case.as_mut().is_some_and(|c| mark_failed(c, &e));
                }
                "skipped" => case.iter_mut().for_each(|c| c.skipped = true),
                _ => {}
            },
            X::Empty(e) => match e.local_name().as_ref() {
                "testcase" => new_case(&e).finish(&mut out),
                "failure" | "error" => {
                    case.as_mut().map(|c| mark_failed(c, &e));
                }
                "skipped" => case.iter_mut().for_each(|c| c.skipped = true),
                _ => {}
            },
            X::End(e) => match e.local_name().as_ref() {
                "testcase" => {
                    if let Some(c) = case.take() {
                        c.finish(&mut out);
                    }
                    capturing = false;
                }
                "failure" | "error" => capturing = false,
                _ => {}
            },
            X::Text(t) if capturing => push_text(&mut case, &t.xml10_content()),
            X::CData(t) if capturing => push_text(&mut case, &t.xml10_content()),
            X::GeneralRef(r) if capturing => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    _ => quick_xml::escape::resolve_predefined_entity(&r)
                        .unwrap_or_default()
                        .to_owned(),
                };
                push_text(&mut case, &resolved);
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `<testcase>`: named `<classname> <name>`, as nextest prints a test.
fn new_case(e: &quick_xml::events::BytesStart<'_>) -> Case {
    let name = attribute(e, "name");
    let class = attribute(e, "classname");
    Case {
        name: if class.is_empty() {
            name
        } else {
            format!("{class} {name}")
        },
        ..Case::default()
    }
}

/// Mark `c` failed by the `<failure>`/`<error>` element `e`; returns true (its text is
/// captured from here on).
fn mark_failed(c: &mut Case, e: &quick_xml::events::BytesStart<'_>) -> bool {
    c.failed = true;
    if c.message.is_empty() {
        c.message = attribute(e, "message");
    }
    true
}

fn push_text(case: &mut Option<Case>, text: &str) {
    if let Some(c) = case {
        // A bound on what one failure may hold in memory: the panic comes first.
        if c.text.len() < 64 * 1024 {
            c.text.push_str(text);
        }
    }
}

/// A panic found in a test's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panic {
    /// The panic message (capped, see [`FailedTest::message`]).
    pub message: String,
    /// File of the panic, as printed.
    pub file: Option<String>,
    /// Line.
    pub line: Option<u32>,
    /// Column.
    pub col: Option<u32>,
}

/// The first panic in `text`: Rust 1.73 and later print `thread 'NAME' panicked at
/// FILE:LINE:COL:` (1.84 and later with ` (ID)` after the name) and the message on the
/// lines after it, up to the backtrace note (nextest's `message` attribute holds the first
/// line alone, without the colon: a place and an empty message); older ones `thread 'NAME' panicked at 'MSG',
/// FILE:LINE:COL`. `None` when `text` holds no panic.
pub fn panic_of(text: &str) -> Option<Panic> {
    static NEW: OnceLock<regex::Regex> = OnceLock::new();
    static OLD: OnceLock<regex::Regex> = OnceLock::new();
    let new = NEW.get_or_init(|| {
        regex::Regex::new(
            r"(?m)^\s*thread '[^']*'(?: \(\d+\))? panicked at (.+?):(\d+):(\d+):?\s*$",
        )
        .expect("valid regex")
    });
    let old = OLD.get_or_init(|| {
        regex::Regex::new(
            r"(?m)^\s*thread '[^']*'(?: \(\d+\))? panicked at '(.*)', (.+?):(\d+):(\d+)\s*$",
        )
        .expect("valid regex")
    });
    let num = |m: Option<regex::Match<'_>>| m.and_then(|m| m.as_str().parse::<u32>().ok());
    let start = |c: &regex::Captures<'_>| c.get(0).map_or(usize::MAX, |m| m.start());
    let (new_c, old_c) = (new.captures(text), old.captures(text));
    // The first panic of the text; an old-style line also fits the new pattern loosely.
    let new_first = match (&new_c, &old_c) {
        (Some(n), Some(o)) => start(n) < start(o),
        (n, _) => n.is_some(),
    };
    if let (true, Some(c)) = (new_first, new_c) {
        let rest = &text[c.get(0).map_or(0, |m| m.end())..];
        let lines: Vec<&str> = rest
            .lines()
            .skip_while(|l| l.trim().is_empty())
            .take_while(|l| !ends_message(l))
            .collect();
        return Some(Panic {
            message: cap_message(lines.join("\n").trim_end()),
            file: c.get(1).map(|m| m.as_str().to_owned()),
            line: num(c.get(2)),
            col: num(c.get(3)),
        });
    }
    old_c.map(|c| Panic {
        message: cap_message(c.get(1).map_or("", |m| m.as_str())),
        file: c.get(2).map(|m| m.as_str().to_owned()),
        line: num(c.get(3)),
        col: num(c.get(4)),
    })
}

/// Whether `line` ends a panic message: the backtrace, its notes, or an empty line.
fn ends_message(line: &str) -> bool {
    let t = line.trim();
    t.is_empty()
        || t.starts_with("stack backtrace:")
        || t.starts_with("note: run with `RUST_BACKTRACE")
        || t.starts_with("note: Some details are omitted")
}

/// `text` cut to [`MAX_MESSAGE_LINES`] lines and [`MAX_MESSAGE_CHARS`] characters.
fn cap_message(text: &str) -> String {
    let mut s: String = text
        .lines()
        .take(MAX_MESSAGE_LINES)
        .collect::<Vec<_>>()
        .join("\n");
    if s.chars().count() > MAX_MESSAGE_CHARS {
        s = s.chars().take(MAX_MESSAGE_CHARS - 1).collect();
        s.push('…');
    }
    s
}

/// Whether a command runs doctests (`cargo test --doc`): its output is libtest's, read by
/// [`parse_libtest`].
pub fn is_doctest(program: &str, args: &[String]) -> bool {
    program == "cargo"
        && args.first().is_some_and(|a| a == "test")
        && args.iter().take_while(|a| *a != "--").any(|a| a == "--doc")
}

/// Counts and failing tests from libtest's output (what `cargo test --doc` prints): the
/// `test result:` lines summed (ignored tests count as skipped), and each
/// `---- NAME stdout ----` section a failing test, named after the crate of the
/// `Doc-tests CRATE` line above it. A doctest's place is its own (`src/lib.rs - add
/// (line 3)`: `src/lib.rs`, line 3), not the panic's (a temp file); its message is the
/// panic's, else the first error (a doctest that does not compile), else the section's
/// first line.
pub fn parse_libtest(log: &str) -> TestResults {
    static RESULT: OnceLock<regex::Regex> = OnceLock::new();
    let result = RESULT.get_or_init(|| {
        regex::Regex::new(
            r"(?m)^test result: (?:ok|FAILED)\. (\d+) passed; (\d+) failed; (\d+) ignored",
        )
        .expect("valid regex")
    });
    let mut out = TestResults::default();
    let n = |m: Option<regex::Match<'_>>| m.and_then(|m| m.as_str().parse::<u64>().ok());
    for c in result.captures_iter(log) {
        out.counts.add(TestCounts {
            passed: n(c.get(1)).unwrap_or(0),
            failed: n(c.get(2)).unwrap_or(0),
            skipped: n(c.get(3)).unwrap_or(0),
        });
    }
    let mut krate = String::new();
    let lines: Vec<&str> = log.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(k) = l.trim().strip_prefix("Doc-tests ") {
            k.trim().clone_into(&mut krate);
        }
        let Some(name) = l
            .strip_prefix("---- ")
            .and_then(|r| r.strip_suffix(" stdout ----"))
        else {
            continue;
        };
        let body: Vec<&str> = lines[i + 1..]
            .iter()
            .take_while(|b| !b.starts_with("---- ") && **b != "failures:")
            .copied()
            .collect();
        if out.failures.len() < MAX_FAILED_TESTS {
            out.failures
                .push(libtest_failure(&krate, name, &body.join("\n")));
        }
    }
    out
}

/// One failing libtest test from its `---- NAME stdout ----` section.
fn libtest_failure(krate: &str, name: &str, body: &str) -> FailedTest {
    static DOCTEST: OnceLock<regex::Regex> = OnceLock::new();
    let doctest = DOCTEST
        .get_or_init(|| regex::Regex::new(r"^(.+?) - .*\(line (\d+)\)$").expect("valid regex"));
    let message = panic_of(body)
        .map(|p| p.message)
        .or_else(|| {
            body.lines()
                .find(|l| l.starts_with("error"))
                .map(|l| cap_message(l.trim()))
        })
        .unwrap_or_else(|| {
            cap_message(
                body.lines()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("")
                    .trim(),
            )
        });
    let (file, line) = match doctest.captures(name) {
        Some(c) => (
            c.get(1).map(|m| m.as_str().to_owned()),
            c.get(2).and_then(|m| m.as_str().parse().ok()),
        ),
        None => (None, None),
    };
    FailedTest {
        name: if krate.is_empty() {
            name.to_owned()
        } else {
            format!("{krate} {name}")
        },
        message,
        file,
        line,
        col: None,
    }
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
            parse_junit(xml).unwrap().counts,
            TestCounts {
                passed: 2,
                failed: 1,
                skipped: 1
            }
        );
    }

    /// nextest 0.9.143's report of a failing `assert_eq!` on Rust 1.95 (thread ids in the
    /// panic line, entities in the text), shortened.
    const NEXTEST_JUNIT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" skipped="1" failures="2" errors="0">
    <testsuite name="fx" tests="3" skipped="1" errors="0" failures="1">
        <testcase name="tests::ign" classname="fx" time="0.000">
            <skipped message="Skipped: test does not match the run-ignored option"/>
        </testcase>
        <testcase name="tests::good" classname="fx" time="0.096"/>
        <testcase name="tests::bad" classname="fx" time="0.110">
            <failure message="thread &apos;tests::bad&apos; (16212) panicked at src/lib.rs:13:16" type="test failure with exit code 101">thread &apos;tests::bad&apos; (16212) panicked at src/lib.rs:13:16:
assertion `left == right` failed: sums &lt;differ&gt; &amp; more
  left: 3
 right: 4
stack backtrace:
   0: __rustc::rust_begin_unwind
note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.</failure>
            <system-out>
running 1 test
test tests::bad ... FAILED
</system-out>
        </testcase>
    </testsuite>
    <testsuite name="fx::it" tests="1" skipped="0" errors="0" failures="1">
        <testcase name="slow" classname="fx::it" time="60.0">
            <failure message="test timed out" type="test timeout"/>
        </testcase>
    </testsuite>
</testsuites>"#;

    #[test]
    fn junit_failures_have_names_panic_messages_and_places() {
        let r = parse_junit(NEXTEST_JUNIT).unwrap();
        assert_eq!(
            r.counts,
            TestCounts {
                passed: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(
            r.failures[0],
            FailedTest {
                name: "fx tests::bad".into(),
                message:
                    "assertion `left == right` failed: sums <differ> & more\n  left: 3\n right: 4"
                        .into(),
                file: Some("src/lib.rs".into()),
                line: Some(13),
                col: Some(16),
            }
        );
        assert_eq!(r.failures[0].title(), "fx tests::bad (src/lib.rs:13:16)");
        assert_eq!(
            r.failures[1],
            FailedTest {
                name: "fx::it slow".into(),
                message: "test timed out".into(),
                file: None,
                line: None,
                col: None,
            }
        );
    }

    #[test]
    fn malformed_junit_is_an_error_not_a_panic() {
        let e = parse_junit("<testsuites><testcase name=\"a\"></testsuite>").unwrap_err();
        assert!(e.contains("not valid XML"), "{e}");
        // A `<testcase` inside text or an attribute is not a test case.
        let r = parse_junit(
            r#"<testsuites><testcase name="a"><system-out>&lt;testcase name="x"/&gt;</system-out></testcase></testsuites>"#,
        )
        .unwrap();
        assert_eq!(r.counts.passed, 1);
    }

    #[test]
    fn failures_kept_are_capped_but_all_are_counted() {
        let cases: String = (0..MAX_FAILED_TESTS + 5)
            .map(|i| format!("<testcase name=\"t{i}\"><failure message=\"m\"/></testcase>"))
            .collect();
        let r = parse_junit(&format!("<testsuites>{cases}</testsuites>")).unwrap();
        assert_eq!(r.counts.failed, (MAX_FAILED_TESTS + 5) as u64);
        assert_eq!(r.failures.len(), MAX_FAILED_TESTS);
    }

    #[test]
    fn panics_old_and_new() {
        let new = "thread 'main' panicked at src/a.rs:1:2:\nboom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        let p = panic_of(new).unwrap();
        assert_eq!(
            (p.message.as_str(), p.file.as_deref(), p.line, p.col),
            ("boom", Some("src/a.rs"), Some(1), Some(2))
        );
        let old = "thread 'tests::x' panicked at 'boom, really', src/b.rs:3:4\n";
        let p = panic_of(old).unwrap();
        assert_eq!(
            (p.message.as_str(), p.file.as_deref(), p.line),
            ("boom, really", Some("src/b.rs"), Some(3))
        );
        assert!(panic_of("test a ... ok\n").is_none());
        let long = format!("thread 'a' panicked at x.rs:1:1:\n{}", "line\n".repeat(40));
        assert_eq!(
            panic_of(&long).unwrap().message.lines().count(),
            MAX_MESSAGE_LINES
        );
    }

    /// `cargo test --doc` on Rust 1.95 with one failing doctest (a panic) and one that
    /// does not compile, in two crates.
    const DOCTEST_LOG: &str = "$ cargo test --doc --workspace
   Doc-tests fx

running 2 tests
test src/lib.rs - add (line 3) ... FAILED
test src/lib.rs - sub (line 9) ... ok

failures:

---- src/lib.rs - add (line 3) stdout ----
Test executable failed (exit status: 101).

stderr:

thread 'main' (16751) panicked at /tmp/rustdoctestLm25xw/doctest_bundle_2024.rs:6:1:
assertion `left == right` failed
  left: 2
 right: 3
stack backtrace:
   0: __rustc::rust_begin_unwind


failures:
    src/lib.rs - add (line 3)

test result: FAILED. 1 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.10s

   Doc-tests gx

running 2 tests
test src/lib.rs - Thing (line 12) ... FAILED
test src/lib.rs - skip (line 20) ... ignored

failures:

---- src/lib.rs - Thing (line 12) stdout ----
error[E0425]: cannot find value `nope` in this scope
 --> src/lib.rs:13:1
  |
3 | nope
  | ^^^^ not found in this scope

error: aborting due to 1 previous error

Couldn't compile the test.

failures:
    src/lib.rs - Thing (line 12)

test result: FAILED. 0 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.04s

error: 2 targets failed:
    `-p fx --doc`
    `-p gx --doc`
";

    #[test]
    fn doctest_output_gives_counts_names_places_and_messages() {
        let r = parse_libtest(DOCTEST_LOG);
        assert_eq!(
            r.counts,
            TestCounts {
                passed: 1,
                failed: 2,
                skipped: 1
            }
        );
        assert_eq!(r.failures.len(), 2);
        assert_eq!(r.failures[0].name, "fx src/lib.rs - add (line 3)");
        assert_eq!(
            r.failures[0].message,
            "assertion `left == right` failed\n  left: 2\n right: 3"
        );
        assert_eq!(
            (r.failures[0].file.as_deref(), r.failures[0].line),
            (Some("src/lib.rs"), Some(3))
        );
        assert_eq!(r.failures[1].name, "gx src/lib.rs - Thing (line 12)");
        assert_eq!(
            r.failures[1].message,
            "error[E0425]: cannot find value `nope` in this scope"
        );
        assert_eq!(r.failures[1].line, Some(12));
        let ok = "test result: ok. 3 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n";
        assert_eq!(parse_libtest(ok).counts.passed, 3);
        assert!(parse_libtest(ok).failures.is_empty());
    }

    #[test]
    fn doctest_commands_are_recognised() {
        let args = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(is_doctest(
            "cargo",
            &args(&["test", "--doc", "--workspace"])
        ));
        assert!(!is_doctest("cargo", &args(&["test", "--workspace"])));
        assert!(!is_doctest("cargo", &args(&["test", "--", "--doc"])));
        assert!(!is_doctest("sh", &args(&["test", "--doc"])));
    }

    #[test]
    fn target_selection_runs_no_doctests_and_test_threads_moves_before_the_separator() {
        let args: Vec<String> = [
            "test",
            "--lib",
            "--tests",
            "--",
            "--test-threads=1",
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
            Path::new("/c.toml"),
            Path::new("/t"),
        );
        assert_eq!(
            subs.len(),
            1,
            "cargo test --lib --tests runs no doctests: {subs:?}"
        );
        assert_eq!(
            subs[0].args,
            [
                "nextest",
                "run",
                "--test-threads",
                "1",
                "--lib",
                "--tests",
                "--tool-config-file",
                "bllvm-ci:/c.toml",
                "--profile",
                "bllvm-ci",
                "--no-tests=pass",
                "--",
                "--nocapture"
            ]
        );
        let only_threads: Vec<String> = ["test", "--", "--test-threads", "2"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let subs = expand(
            "t",
            "cargo",
            &only_threads,
            true,
            Path::new("/c"),
            Path::new("/t"),
        );
        assert_eq!(subs.len(), 2);
        assert!(
            !subs[0].args.contains(&"--".to_owned()),
            "{:?}",
            subs[0].args
        );
        assert_eq!(&subs[0].args[2..4], ["--test-threads", "2"]);
        assert!(selects_targets("--test=it") && selects_targets("--bin"));
        assert!(!selects_targets("--doc") && !selects_targets("--workspace"));
    }

    #[test]
    fn a_failure_whose_output_was_cut_keeps_the_place_from_the_message_attribute() {
        let xml = r#"<testsuites><testcase name="t" classname="c"><failure message="thread &apos;t&apos; (7) panicked at src/x.rs:9:5" type="test failure">line of output
another</failure></testcase></testsuites>"#;
        let f = &parse_junit(xml).unwrap().failures[0];
        assert_eq!(
            (f.file.as_deref(), f.line, f.col),
            (Some("src/x.rs"), Some(9), Some(5))
        );
        assert_eq!(f.message, "thread 't' (7) panicked at src/x.rs:9:5");
    }
}
