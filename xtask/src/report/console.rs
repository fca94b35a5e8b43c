//! The console: what a person watching `cargo xtask ci` reads. [`Console`] is the
//! [`Reporter`] that prints the run as it goes (repo headers, the exact command of each
//! step, streamed step output or one block per repo when repos run at once, cache lines,
//! GitHub Actions groups and annotations, live bars on a terminal), and
//! [`render_summary`] is the table printed at the end.
//!
//! Progress ([`super::progress`]): every repo and step line says where the run is
//! (`[3/9]`) and, when the metrics history knows, the time to expect; every step ends
//! with a line giving its time. On a terminal outside GitHub Actions ([`Mode::Live`]),
//! the repos running while output is kept in the logs (`--quiet`, or `--jobs N`) get one
//! live bar each in one `MultiProgress` (step, elapsed, expected), so concurrent repos
//! never draw over each other, and lines printed meanwhile go above the bars. Elsewhere
//! ([`Mode::Plain`]) nothing is redrawn.
//!
//! Output formats follow GitHub's "Workflow commands for GitHub Actions" for groups and
//! annotations (see [`super::gha`]).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use crate::cache::{Restore, Save};
use crate::engine::events::{Event, Reporter};
use crate::engine::plan::RepoPlan;
use crate::engine::steps::PreparedStep;
use crate::engine::summary::{RepoReport, RepoStatus, RunSummary, StageReport, StepReport};
use crate::report::gha;
use crate::report::progress::{self, Expected, Mode};
use crate::support::exec::Diagnostic;
use crate::support::exec::Echo;
use crate::support::fs::human_bytes;

/// The console reporter (see the module docs).
pub struct Console {
    /// Stream step output (`Stream`) or keep it in the logs (`Quiet`, `--quiet`).
    echo: Echo,
    /// Several repos may run at once: step output is printed as one block per repo when
    /// the repo ends, so concurrent repos never interleave.
    parallel: bool,
    /// Inside GitHub Actions: groups and annotations.
    gha: bool,
    /// Plain lines or live bars.
    mode: Mode,
    /// Expected step times from the metrics history.
    expected: Expected,
    /// `(index, total)` of each repo started.
    positions: Mutex<BTreeMap<String, (usize, usize)>>,
    /// The live bars' container (live mode).
    multi: indicatif::MultiProgress,
    /// Bars of the steps running now, by repo (live mode, output kept in logs).
    spinners: Mutex<BTreeMap<String, indicatif::ProgressBar>>,
    /// Held while a block of lines is printed.
    lock: Mutex<()>,
}

impl Console {
    /// A console for a run with `echo` and `jobs` repos at a time.
    pub fn new(echo: Echo, jobs: usize) -> Console {
        let gha = gha::enabled();
        let mode = Mode::detect(std::io::stdout().is_terminal(), gha);
        // Streamed to a terminal: cargo's own progress bar too (see `support::exec`).
        if mode == Mode::Live && echo == Echo::Stream && jobs <= 1 {
            crate::support::exec::forward_cargo_progress(crate::support::exec::terminal_width());
        }
        Console {
            echo,
            parallel: jobs > 1,
            gha,
            mode,
            expected: Expected::default(),
            positions: Mutex::new(BTreeMap::new()),
            multi: indicatif::MultiProgress::new(),
            spinners: Mutex::new(BTreeMap::new()),
            lock: Mutex::new(()),
        }
    }

    /// The console with expected times (from the metrics history, [`Expected::load`]).
    pub fn with_expected(mut self, expected: Expected) -> Console {
        self.expected = expected;
        self
    }

    /// `(index, total)` of a started repo.
    fn position(&self, repo: &str) -> Option<(usize, usize)> {
        self.positions.lock().ok()?.get(repo).copied()
    }

    /// Whether step output is streamed as it comes.
    fn streaming(&self) -> bool {
        self.echo == Echo::Stream && !self.parallel
    }

    /// Print above the live bars (they are hidden while the text is written).
    fn print(&self, text: &str) {
        let _g = self.lock.lock();
        self.multi.suspend(|| {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        });
    }

    fn spinner_start(&self, repo: &str, step: &str) {
        let quiet = self.echo == Echo::Quiet || self.parallel;
        if !quiet || self.mode != Mode::Live {
            return;
        }
        let pb = self.multi.add(indicatif::ProgressBar::new_spinner());
        pb.set_style(
            indicatif::ProgressStyle::with_template("    {spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        pb.set_message(progress::bar_message(
            self.position(repo),
            repo,
            step,
            self.expected.step(repo, step),
        ));
        pb.enable_steady_tick(Duration::from_millis(120));
        if let Ok(mut s) = self.spinners.lock() {
            s.insert(repo.to_owned(), pb);
        }
    }

    fn spinner_stop(&self, repo: &str) {
        if let Some(pb) = self.spinners.lock().ok().and_then(|mut s| s.remove(repo)) {
            pb.finish_and_clear();
            self.multi.remove(&pb);
        }
    }

    /// A repo starts: its position is kept for its step lines.
    fn repo_started(&self, repo: &RepoPlan, index: usize, total: usize) {
        if let Ok(mut p) = self.positions.lock() {
            p.insert(repo.name.clone(), (index, total));
        }
        let steps = repo.prepared.iter().map(|s| s.name.as_str());
        self.print(&progress::repo_line(
            index,
            total,
            &repo.name,
            repo.level,
            self.expected.repo(&repo.name, steps),
        ));
    }

    /// A step ended: its group closes, its annotations and its closing line are printed.
    fn step_finished(
        &self,
        repo: &RepoPlan,
        step: &PreparedStep,
        report: &StepReport,
        diagnostics: &[Diagnostic],
    ) {
        self.spinner_stop(&repo.name);
        let mut text = String::new();
        if self.gha && self.streaming() {
            text += &format!("{}\n", gha::END_GROUP);
        }
        if self.gha {
            for d in diagnostics {
                if let Some(a) = gha::annotation(d, &repo.name, &repo.dir) {
                    text += &format!("{a}\n");
                }
            }
        }
        if let Some(why) = &step.blocked {
            text += &format!("    {why}\n");
        }
        let word = if report.cancelled {
            "cancelled"
        } else if report.timed_out {
            "timed out"
        } else if report.ok() {
            "ok"
        } else {
            "FAILED"
        };
        text += &progress::step_end_line(
            self.position(&repo.name),
            &repo.name,
            &step.name,
            word,
            report.secs,
            self.expected.step(&repo.name, &step.name),
        );
        self.print(&text);
    }

    /// The logs of a repo's steps as one block (concurrent repos).
    fn print_block(&self, repo: &RepoPlan, report: &RepoReport) {
        if self.echo != Echo::Stream || !self.parallel {
            return;
        }
        let mut text = String::new();
        for st in &report.steps {
            let title = format!("{} {} ({})", repo.name, st.name, st.log);
            text += &if self.gha {
                format!("{}\n", gha::group(&title))
            } else {
                format!("----- {title}\n")
            };
            if let Ok(log) = std::fs::read_to_string(&st.log) {
                text += &log;
            }
            if self.gha {
                text += &format!("{}\n", gha::END_GROUP);
            }
        }
        self.print(&text);
    }
}

impl Reporter for Console {
    fn report(&self, event: &Event<'_>) {
        match *event {
            Event::RepoStarted { repo, index, total } => self.repo_started(repo, index, total),
            Event::RepoSkipped { repo, report } => self.print(&format!(
                "==> {} (level {}): {}\n",
                repo.name,
                repo.level,
                report.status.describe()
            )),
            Event::CacheRestored { stage, .. } => self.print(&format!(
                "    cache {}: {} ({}{})\n",
                stage.stage,
                stage.key,
                stage.restore_word(),
                restore_how(&stage.restore)
            )),
            Event::StepStarted { repo, step } => {
                let mut text = progress::step_start_line(
                    self.position(&repo.name),
                    &repo.name,
                    &step.name,
                    &step.command_line(),
                    self.expected.step(&repo.name, &step.name),
                );
                if self.gha && self.streaming() {
                    text += &format!("{}\n", gha::group(&format!("{} {}", repo.name, step.name)));
                }
                self.print(&text);
                self.spinner_start(&repo.name, &step.name);
            }
            Event::StepOutput { text, .. } if self.streaming() => {
                let mut out = std::io::stdout().lock();
                let _ = out.write_all(text);
                let _ = out.flush();
            }
            Event::StepOutput { .. } => {}
            Event::StepFinished {
                repo,
                step,
                report,
                diagnostics,
            } => self.step_finished(repo, step, report, diagnostics),
            Event::CacheSaved { stage, .. } => {
                if let Some(line) = saved_line(stage) {
                    self.print(&line);
                }
            }
            Event::Note { repo, text } => self.print(&if repo.is_some() {
                format!("    {text}\n")
            } else {
                format!("{text}\n")
            }),
            Event::RepoFinished { repo, report } => {
                self.print_block(repo, report);
                if self.gha {
                    let text: String = report
                        .failed_tests
                        .iter()
                        .map(|t| format!("{}\n", gha::test_annotation(t, &repo.name, &repo.dir)))
                        .collect();
                    self.print(&text);
                }
            }
            Event::RunStarted { .. } => {}
            Event::RunFinished { summary } => self.print(&render_summary(summary)),
        }
    }
}

/// The restore part of a `cache target:` line (`, moved in 0.01s`, ` from KEY, copied
/// in 1.2s`).
fn restore_how(r: &Restore) -> String {
    match r {
        Restore::Hit { strategy, secs, .. } => format!(", {} in {secs:.2}s", strategy.as_str()),
        Restore::Partial {
            from,
            strategy,
            secs,
            ..
        } => format!(" from {from}, {} in {secs:.2}s", strategy.as_str()),
        _ => String::new(),
    }
}

/// The line after a target stage's save, when something was saved or checked.
fn saved_line(st: &StageReport) -> Option<String> {
    match st.save {
        Some(Save::Saved {
            bytes,
            raw_bytes,
            secs,
            strategy,
            ..
        }) => Some(format!(
            "    cache {} saved ({}): {} pruned to {} in {secs:.2}s\n",
            st.stage,
            strategy.as_str(),
            human_bytes(raw_bytes),
            human_bytes(bytes)
        )),
        Some(Save::Unchanged {
            bytes,
            raw_bytes,
            strategy,
            ..
        }) => Some(format!(
            "    cache {} unchanged ({}): {} pruned to {}, nothing written\n",
            st.stage,
            strategy.as_str(),
            human_bytes(raw_bytes),
            human_bytes(bytes)
        )),
        _ => None,
    }
}

/// The table printed at the end of `ci`: the chain-wide stages, one row per repo (status,
/// steps, tests, coverage, release, cache) with the reasons, hints and warnings under it,
/// and the result line.
pub fn render_summary(s: &RunSummary) -> String {
    let mut out = format!(
        "\nsummary (run {}, variant `{}`, {:.1} s)\n",
        s.run_id, s.variant, s.secs
    );
    for c in &s.chain_cache {
        out += &format!("  cache {}: {}\n", c.stage, stage_words(c));
        if let Some(w) = &c.warning {
            out += &format!("    warning: cache {}: {w}\n", c.stage);
        }
    }
    let width = s
        .repos
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    for r in &s.repos {
        out += &repo_row(r, width);
        out += &repo_notes(r, width);
    }
    if let Some((lines, covered, pct)) = crate::engine::coverage::total(&s.repos) {
        out += &format!("coverage: {pct:.1}% of lines ({covered}/{lines})\n");
    }
    let failed: Vec<&str> = s
        .repos
        .iter()
        .filter(|r| matches!(r.status, RepoStatus::Failed(_)))
        .map(|r| r.name.as_str())
        .collect();
    for w in &s.warnings {
        out += &format!("warning: {w}\n");
    }
    if let Some(signal) = &s.cancelled {
        out += &format!("result: CANCELLED by {signal}\n");
    } else if failed.is_empty() {
        out += "result: ok\n";
    } else {
        out += &format!("result: FAILED ({})\n", failed.join(", "));
    }
    out
}

/// `hit (remote hit), saved` for a stage.
fn stage_words(c: &StageReport) -> String {
    format!(
        "{}{}{}",
        c.restore_word(),
        crate::cache::report::summary_word(c.remote.as_ref()),
        save_word(c.save.as_ref())
    )
}

/// A repo's row: name, status, steps, tests, coverage, release and cache.
fn repo_row(r: &RepoReport, width: usize) -> String {
    let mut s = format!("  {:<width$}  {:<7}", r.name, r.status.word());
    let steps: Vec<String> = r
        .steps
        .iter()
        .map(|st| {
            let mark = if st.cancelled {
                "cancelled"
            } else if st.timed_out {
                "timeout"
            } else if st.ok() {
                "ok"
            } else {
                "failed"
            };
            format!("{} {mark} {:.1}s", st.name, st.secs)
        })
        .collect();
    if !steps.is_empty() {
        s += &format!("  {}", steps.join(", "));
    }
    if let Some(t) = &r.tests {
        s += &format!(
            "  | tests {} passed, {} failed, {} skipped",
            t.passed, t.failed, t.skipped
        );
    }
    if let Some(c) = &r.coverage {
        s += &format!("  | coverage {:.1}% of {} lines", c.line_percent, c.lines);
    }
    if let Some(rel) = &r.release {
        s += &format!(
            "  | release {} file(s){}{}",
            rel.files.len(),
            if rel.reused { " reused" } else { "" },
            match rel.deterministic {
                Some(true) => ", deterministic",
                Some(false) => ", NOT deterministic",
                None => "",
            }
        );
    }
    if !r.cache.is_empty() {
        let cache: Vec<String> = r
            .cache
            .iter()
            .map(|c| format!("{} {}", c.stage, stage_words(c)))
            .collect();
        s += &format!(
            "  | cache {} | restore {:.2}s {} | save {:.2}s {}",
            cache.join(", "),
            r.restore_secs,
            human_bytes(r.restore_bytes),
            r.save_secs,
            human_bytes(r.save_bytes)
        );
    }
    s.push('\n');
    s
}

/// The lines under a repo's row: why it failed or was skipped, hints, warnings.
fn repo_notes(r: &RepoReport, width: usize) -> String {
    let mut s = String::new();
    if let RepoStatus::Failed(why) | RepoStatus::Skipped(why) | RepoStatus::Cached(why) = &r.status
    {
        for (i, line) in why.lines().enumerate() {
            let lead = if i == 0 { "why: " } else { "     " };
            s += &format!("  {:<width$}    {lead}{line}\n", "");
        }
    }
    s += &failed_tests_notes(r, width);
    for h in &r.hints {
        s += &format!("  {:<width$}    hint: {h}\n", "");
    }
    if let (false, Some(step)) = (r.hints.is_empty(), r.steps.iter().rev().find(|s| !s.ok())) {
        s += &format!(
            "  {:<width$}    hint: details with `cargo xtask explain {}`\n",
            "", step.log
        );
    }
    for w in &r.warnings {
        s += &format!("  {:<width$}    warning: {w}\n", "");
    }
    for c in r.cache.iter().filter(|c| c.warning.is_some()) {
        let w = c.warning.as_deref().unwrap_or_default();
        s += &format!("  {:<width$}    warning: cache {}: {w}\n", "", c.stage);
    }
    s
}

/// Failing tests shown under a repo's row; the rest are counted.
const MAX_FAILED_TESTS_SHOWN: usize = 5;

/// `test failed: NAME (FILE:LINE:COL): first line of the panic` per failing test (at most
/// [`MAX_FAILED_TESTS_SHOWN`]), then how many more there are.
fn failed_tests_notes(r: &RepoReport, width: usize) -> String {
    let mut s = String::new();
    for t in r.failed_tests.iter().take(MAX_FAILED_TESTS_SHOWN) {
        s += &format!(
            "  {:<width$}    test failed: {}: {}\n",
            "",
            t.title(),
            t.headline()
        );
    }
    let total = r.tests.map_or(0, |t| t.failed);
    let shown = r.failed_tests.len().min(MAX_FAILED_TESTS_SHOWN) as u64;
    if total > shown && shown > 0 {
        s += &format!(
            "  {:<width$}    … and {} more failing test(s) (the repo's junit.xml and test logs list them)\n",
            "",
            total - shown
        );
    }
    s
}

fn save_word(save: Option<&Save>) -> &'static str {
    match save {
        Some(Save::Saved { .. }) => ", saved",
        Some(Save::Exists) => ", exists",
        Some(Save::Unchanged { .. }) => ", unchanged",
        Some(Save::NoSpace) => ", not saved (no space)",
        Some(Save::Skipped) => ", not saved",
        Some(Save::Empty) | None => "",
    }
}
