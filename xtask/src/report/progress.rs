//! Progress a person can read on a long chain: where the run is (`[3/9]`), which step is
//! running, for how long, and how long it took before (the expected time, from the
//! metrics history). [`Expected`] reads the history; [`Mode`] decides between plain
//! lines and live bars; the `*_line` functions render what the console prints, so they
//! can be tested without a terminal.
//!
//! Owns no output and no state of the run: the console ([`super::console`]) prints.

use std::collections::BTreeMap;
use std::path::Path;

use crate::report::metrics::{self, BuildMetrics};

/// Runs of the history read for the expected times: recent enough to follow a chain that
/// got slower or faster, enough to smooth one odd run.
pub const HISTORY_RUNS: usize = 20;

/// Expected seconds of each step of each repo: the median of its successful timings in
/// the last [`HISTORY_RUNS`] runs of the metrics history.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expected {
    steps: BTreeMap<(String, String), f64>,
}

impl Expected {
    /// From runs of the history (oldest first); only the last [`HISTORY_RUNS`] count,
    /// and only steps that passed (a failure stops early and says nothing of the time).
    pub fn from_history(runs: &[BuildMetrics]) -> Expected {
        let mut seen: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for run in &runs[runs.len().saturating_sub(HISTORY_RUNS)..] {
            for repo in &run.repos {
                for st in repo.steps.iter().filter(|s| s.status == "ok") {
                    if st.secs.is_finite() && st.secs >= 0.0 {
                        seen.entry((repo.name.clone(), st.name.clone()))
                            .or_default()
                            .push(st.secs);
                    }
                }
            }
        }
        let steps = seen
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by(f64::total_cmp);
                (k, v[v.len() / 2])
            })
            .collect();
        Expected { steps }
    }

    /// The expected times of the history under `cache_root` (empty when there is none,
    /// or it cannot be read: progress never fails a run).
    pub fn load(cache_root: &Path) -> Expected {
        let runs = metrics::read_recent(&metrics::history_path(cache_root), HISTORY_RUNS);
        Expected::from_history(&runs)
    }

    /// Expected seconds of `step` of `repo`.
    pub fn step(&self, repo: &str, step: &str) -> Option<f64> {
        self.steps.get(&(repo.to_owned(), step.to_owned())).copied()
    }

    /// Expected seconds of the steps `steps` of `repo` together: only when every one is
    /// known (a partial sum would promise too little).
    pub fn repo<'a>(&self, repo: &str, mut steps: impl Iterator<Item = &'a str>) -> Option<f64> {
        steps.try_fold(0.0, |sum, s| Some(sum + self.step(repo, s)?))
    }
}

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One line per event, nothing redrawn: not a terminal (a log, a pipe) or inside
    /// GitHub Actions (its log viewer shows every redraw as a line).
    Plain,
    /// A terminal: live bars for the repos running, cargo's own progress bar in streamed
    /// output.
    Live,
}

impl Mode {
    /// The mode for an output that `is_terminal` (or not), inside GitHub Actions
    /// (`GITHUB_ACTIONS` set) or not.
    pub fn detect(is_terminal: bool, github_actions: bool) -> Mode {
        if is_terminal && !github_actions {
            Mode::Live
        } else {
            Mode::Plain
        }
    }
}

/// Seconds as a person reads them: `0.4 s`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.
pub fn human_secs(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// ` (expected ~12.3 s)`, or nothing when the history does not know.
pub fn expected_suffix(expected: Option<f64>) -> String {
    expected.map_or_else(String::new, |e| format!(" (expected ~{})", human_secs(e)))
}

/// The line a repo starts with: `==> [3/9] blvm-consensus (level 2) (expected ~4 min 05 s)`.
pub fn repo_line(
    index: usize,
    total: usize,
    repo: &str,
    level: usize,
    expected: Option<f64>,
) -> String {
    format!(
        "==> [{index}/{total}] {repo} (level {level}){}\n",
        expected_suffix(expected)
    )
}

/// The line a step starts with: `--> [3/9] blvm-consensus build: cargo build (expected
/// ~12.3 s)`; without a position when the repo's is not known.
pub fn step_start_line(
    pos: Option<(usize, usize)>,
    repo: &str,
    step: &str,
    command: &str,
    expected: Option<f64>,
) -> String {
    format!(
        "--> {}{repo} {step}: {command}{}\n",
        position(pos),
        expected_suffix(expected)
    )
}

/// The line a step ends with: `    [3/9] blvm-consensus build: ok in 12.3 s (expected
/// ~11.0 s)`.
pub fn step_end_line(
    pos: Option<(usize, usize)>,
    repo: &str,
    step: &str,
    word: &str,
    secs: f64,
    expected: Option<f64>,
) -> String {
    format!(
        "    {}{repo} {step}: {word} in {}{}\n",
        position(pos),
        human_secs(secs),
        expected_suffix(expected)
    )
}

/// The message of a live bar: `[3/9] blvm-consensus build (expected ~12.3 s)`; the bar
/// adds the spinner and the elapsed time.
pub fn bar_message(
    pos: Option<(usize, usize)>,
    repo: &str,
    step: &str,
    expected: Option<f64>,
) -> String {
    format!(
        "{}{repo} {step}{}",
        position(pos),
        expected_suffix(expected)
    )
}

fn position(pos: Option<(usize, usize)>) -> String {
    pos.map_or_else(String::new, |(i, n)| format!("[{i}/{n}] "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::metrics::{RepoMetrics, StepMetrics};

    fn run(steps: &[(&str, &str, &str, f64)]) -> BuildMetrics {
        let mut repos: Vec<RepoMetrics> = Vec::new();
        for (repo, step, status, secs) in steps {
            if !repos.iter().any(|r| r.name == *repo) {
                repos.push(RepoMetrics {
                    name: (*repo).into(),
                    status: "ok".into(),
                    secs: 0.0,
                    steps: Vec::new(),
                    cache: Vec::new(),
                    restore_secs: 0.0,
                    restore_bytes: 0,
                    save_secs: 0.0,
                    save_bytes: 0,
                });
            }
            let r = repos.iter_mut().find(|r| r.name == *repo).unwrap();
            r.steps.push(StepMetrics {
                name: (*step).into(),
                status: (*status).into(),
                secs: *secs,
            });
        }
        let json = serde_json::json!({
            "schema_version": 1, "run_id": "r", "started_unix": 0, "commit": null,
            "event": "local", "git_ref": null, "variant": "base", "status": "ok",
            "secs": 1.0, "repos": [], "chain_cache": [], "cache_bytes": null,
            "cache_entries": null,
            "disk": {"path": "/", "free_before_bytes": null, "free_after_bytes": null}
        });
        let mut m: BuildMetrics = serde_json::from_value(json).unwrap();
        m.repos = repos;
        m
    }

    #[test]
    fn the_expected_time_is_the_median_of_recent_successes() {
        let history = vec![
            run(&[("a", "build", "ok", 10.0), ("a", "test", "ok", 2.0)]),
            run(&[("a", "build", "ok", 30.0), ("a", "test", "failed", 0.1)]),
            run(&[("a", "build", "ok", 12.0), ("b", "build", "ok", 5.0)]),
        ];
        let e = Expected::from_history(&history);
        assert_eq!(e.step("a", "build"), Some(12.0), "median of 10, 30, 12");
        assert_eq!(
            e.step("a", "test"),
            Some(2.0),
            "the failed run does not count"
        );
        assert_eq!(e.step("b", "test"), None);
        assert_eq!(e.repo("a", ["build", "test"].into_iter()), Some(14.0));
        assert_eq!(
            e.repo("b", ["build", "test"].into_iter()),
            None,
            "a partial sum"
        );
        // Only the last HISTORY_RUNS runs count: a very old slow run is forgotten.
        let mut long = vec![run(&[("a", "build", "ok", 1000.0)]); 1];
        long.extend((0..HISTORY_RUNS).map(|_| run(&[("a", "build", "ok", 3.0)])));
        assert_eq!(Expected::from_history(&long).step("a", "build"), Some(3.0));
    }

    #[test]
    fn plain_lines_say_where_the_run_is_and_what_to_expect() {
        assert_eq!(
            repo_line(3, 9, "consensus", 2, Some(245.0)),
            "==> [3/9] consensus (level 2) (expected ~4 min 05 s)\n"
        );
        assert_eq!(repo_line(1, 2, "a", 0, None), "==> [1/2] a (level 0)\n");
        assert_eq!(
            step_start_line(
                Some((3, 9)),
                "consensus",
                "build",
                "cargo build",
                Some(12.34)
            ),
            "--> [3/9] consensus build: cargo build (expected ~12.3 s)\n"
        );
        assert_eq!(
            step_end_line(Some((3, 9)), "consensus", "build", "ok", 11.0, Some(12.34)),
            "    [3/9] consensus build: ok in 11.0 s (expected ~12.3 s)\n"
        );
        assert_eq!(
            step_end_line(None, "a", "test", "FAILED", 3725.0, None),
            "    a test: FAILED in 1 h 02 min\n"
        );
        assert_eq!(bar_message(Some((2, 9)), "a", "test", None), "[2/9] a test");
    }

    #[test]
    fn live_bars_only_on_a_terminal_outside_github_actions() {
        assert_eq!(Mode::detect(true, false), Mode::Live);
        assert_eq!(Mode::detect(false, false), Mode::Plain);
        assert_eq!(Mode::detect(true, true), Mode::Plain);
    }
}
