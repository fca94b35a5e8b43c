//! Mutation testing as a habit (issue 15): cargo-mutants over the engine's pure modules,
//! each mutant judged by the crate's unit tests alone (`cargo test --lib`: the unit tests
//! sit next to the code they guard, and they run in seconds), scored per module as
//! caught / viable mutants. `cargo xtask mutants` prints the table that BENCHMARKS.md
//! records; it is not part of CI's time budget (a full run takes tens of minutes on two
//! cores: every mutant is a rebuild of the crate).
//!
//! cargo-mutants works in a copy of the workspace (with a copy of `target/`, so only the
//! crate itself is rebuilt), never in the checkout: an interrupted run leaves the sources
//! as they were.
//!
//! Owns no policy about which modules must score what: the command takes `--min-score`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// The pure modules mutated by default: retention and the disk guard, cache keys, the
/// reading back of untrusted metadata, the repo graph.
pub const DEFAULT_FILES: &[&str] = &[
    "xtask/src/cache/retention.rs",
    "xtask/src/cache/key.rs",
    "xtask/src/cache/untrusted.rs",
    "xtask/src/engine/graph.rs",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files to mutate, relative to the workspace root.
    pub files: Vec<String>,
    /// Parallel builds.
    pub jobs: usize,
    /// Where `mutants.out/` goes.
    pub out: PathBuf,
    /// Only list the mutants.
    pub list: bool,
}

/// The score of one file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Score {
    /// The file, relative to the workspace.
    pub file: String,
    /// Mutants some unit test failed on.
    pub caught: u32,
    /// Mutants every unit test passed on (survivors).
    pub missed: u32,
    /// Mutants whose tests hung past the timeout (counted as caught, as cargo-mutants does).
    pub timeout: u32,
    /// Mutants that did not build (not viable, left out of the score).
    pub unviable: u32,
    /// The survivors, as cargo-mutants names them (`file:line:col: replace ...`).
    pub survivors: Vec<String>,
}

impl Score {
    /// Caught (with timeouts) per viable mutant, in percent (100 when none is viable).
    pub fn percent(&self) -> f64 {
        let viable = self.caught + self.missed + self.timeout;
        if viable == 0 {
            return 100.0;
        }
        f64::from(self.caught + self.timeout) * 100.0 / f64::from(viable)
    }
}

/// The cargo-mutants arguments for `o` (after `cargo mutants`).
fn args(o: &Options) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--package".into(),
        "xtask".into(),
        "--copy-target=true".into(),
        // The features of the test command (`cargo test --workspace --locked --features
        // remote,dev`), so the copied target dir already holds every dependency built.
        "--features".into(),
        "remote,dev".into(),
        "--no-shuffle".into(),
        "--jobs".into(),
        o.jobs.to_string(),
        "--output".into(),
        o.out.display().to_string(),
        // The unit tests only, built and run (`--lib` on both cargo calls): they are the
        // guard of a pure module, and building the integration tests for every mutant
        // would triple the time.
        "--cargo-arg=--lib".into(),
    ];
    for f in &o.files {
        a.push("--file".into());
        a.push(f.clone());
    }
    if o.list {
        a.push("--list".into());
    }
    a
}

/// The command line, for the log and for BENCHMARKS.md.
pub fn command_line(o: &Options) -> String {
    format!("cargo mutants {}", args(o).join(" "))
}

fn cargo_mutants(o: &Options) -> Result<Command> {
    let ok = Command::new("cargo")
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|out| out.status.success());
    if !ok {
        bail!("cargo-mutants is not installed: run `cargo install cargo-mutants --locked`");
    }
    let mut c = Command::new("cargo");
    c.arg("mutants").args(args(o));
    Ok(c)
}

/// Print the mutants that would be tested.
///
/// Errors: cargo-mutants is missing or fails.
pub fn list(o: &Options) -> Result<()> {
    let st = cargo_mutants(o)?
        .status()
        .context("run cargo mutants --list")?;
    anyhow::ensure!(st.success(), "cargo mutants --list failed ({st})");
    Ok(())
}

/// Run cargo-mutants and read its outcomes back: one score per file of `o.files`.
///
/// Errors: cargo-mutants is missing, the baseline (unmutated) tests fail, or its
/// outcomes cannot be read. Survivors are not an error (cargo-mutants exits 2 then).
pub fn run(o: &Options) -> Result<Vec<Score>> {
    let st = cargo_mutants(o)?.status().context("run cargo mutants")?;
    // cargo-mutants: 0 all caught, 2 some missed, 3 some timed out; others are failures.
    if !matches!(st.code(), Some(0 | 2 | 3)) {
        bail!(
            "cargo mutants failed ({st}): see {}",
            o.out.join("mutants.out/debug.log").display()
        );
    }
    let outcomes = o.out.join("mutants.out/outcomes.json");
    let text = std::fs::read_to_string(&outcomes)
        .with_context(|| format!("read {}", outcomes.display()))?;
    Ok(scores(&text, &o.files))
}

/// Scores per file from cargo-mutants' `outcomes.json` text.
pub fn scores(outcomes_json: &str, files: &[String]) -> Vec<Score> {
    let mut by_file: BTreeMap<String, Score> = files
        .iter()
        .map(|f| {
            (
                f.clone(),
                Score {
                    file: f.clone(),
                    ..Score::default()
                },
            )
        })
        .collect();
    let v: serde_json::Value = serde_json::from_str(outcomes_json).unwrap_or_default();
    for oc in v["outcomes"].as_array().into_iter().flatten() {
        let m = &oc["scenario"]["Mutant"];
        let Some(file) = m["file"].as_str() else {
            continue; // the baseline
        };
        let s = by_file.entry(file.to_owned()).or_insert_with(|| Score {
            file: file.to_owned(),
            ..Score::default()
        });
        match oc["summary"].as_str().unwrap_or_default() {
            "CaughtMutant" => s.caught += 1,
            "MissedMutant" => {
                s.missed += 1;
                s.survivors.push(describe(m));
            }
            "Timeout" => s.timeout += 1,
            _ => s.unviable += 1,
        }
    }
    by_file.into_values().collect()
}

/// A mutant of outcomes.json as cargo-mutants names it (`file:line:col: replace ... in
/// fn`), or, without a name, `file:line: fn -> replacement`.
fn describe(m: &serde_json::Value) -> String {
    if let Some(name) = m["name"].as_str() {
        return name.to_owned();
    }
    format!(
        "{}:{}: {} -> {}",
        m["file"].as_str().unwrap_or("?"),
        m["span"]["start"]["line"].as_u64().unwrap_or(0),
        m["function"]["function_name"].as_str().unwrap_or("?"),
        m["replacement"].as_str().unwrap_or("?")
    )
}

/// The table: one line per file (caught, missed, timeouts, unviable, score), then the
/// survivors.
pub fn render(scores: &[Score]) -> String {
    let mut s = format!(
        "{:<36} {:>6} {:>6} {:>7} {:>8} {:>7}\n",
        "module", "caught", "missed", "timeout", "unviable", "score"
    );
    for sc in scores {
        s += &format!(
            "{:<36} {:>6} {:>6} {:>7} {:>8} {:>6.1}%\n",
            Path::new(&sc.file)
                .strip_prefix("xtask/src")
                .map_or(sc.file.as_str(), |p| p.to_str().unwrap_or("?")),
            sc.caught,
            sc.missed,
            sc.timeout,
            sc.unviable,
            sc.percent()
        );
    }
    for sc in scores.iter().filter(|s| !s.survivors.is_empty()) {
        s += &format!("survivors in {}:\n", sc.file);
        for m in &sc.survivors {
            s += &format!("  {m}\n");
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_scored_per_file_and_the_baseline_left_out() {
        let json = r#"{"outcomes": [
            {"scenario": "Baseline", "summary": "Success"},
            {"scenario": {"Mutant": {"file": "a.rs", "span": {"start": {"line": 3}}, "function": {"function_name": "f"}, "replacement": "0"}}, "summary": "CaughtMutant"},
            {"scenario": {"Mutant": {"file": "a.rs", "span": {"start": {"line": 4}}, "function": {"function_name": "g"}, "replacement": "true"}}, "summary": "MissedMutant"},
            {"scenario": {"Mutant": {"file": "a.rs"}}, "summary": "Timeout"},
            {"scenario": {"Mutant": {"file": "a.rs"}}, "summary": "Unviable"},
            {"scenario": {"Mutant": {"file": "b.rs"}}, "summary": "CaughtMutant"}
        ]}"#;
        let s = scores(json, &["a.rs".into(), "c.rs".into()]);
        assert_eq!(s.len(), 3);
        let a = &s[0];
        assert_eq!((a.caught, a.missed, a.timeout, a.unviable), (1, 1, 1, 1));
        assert!((a.percent() - 200.0 / 3.0).abs() < 1e-9);
        assert_eq!(a.survivors, ["a.rs:4: g -> true"]);
        let named = r#"{"outcomes": [{"scenario": {"Mutant": {"file": "a.rs", "name": "a.rs:4:2: replace > with >= in g"}}, "summary": "MissedMutant"}]}"#;
        assert_eq!(
            scores(named, &[])[0].survivors,
            ["a.rs:4:2: replace > with >= in g"]
        );
        assert_eq!(s[1].file, "b.rs");
        assert_eq!(s[2].percent(), 100.0, "no viable mutant: nothing missed");
        let table = render(&s);
        assert!(
            table.contains("66.7%") && table.contains("a.rs:4: g -> true"),
            "{table}"
        );
    }
}
