//! `cargo xtask report`: build trends from the metrics history, printed as text or written
//! as an HTML page with SVG charts ([`crate::report::trends`] renders both). This module
//! finds the history, keeps the last runs and prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::engine::manifest::Manifest;
use crate::flags::ReportArgs;
use crate::report::{metrics, trends};
use crate::support::exit::Exit;

/// Read the history, keep the last `--last` runs, print the text report or write the HTML
/// page. Errors (exit 2) when the history is empty or unreadable.
pub fn run(a: &ReportArgs) -> Result<ExitCode> {
    let path = history_file(a);
    let (mut runs, skipped) = metrics::read_history(&path)?;
    if skipped > 0 {
        eprintln!(
            "warning: skipped {skipped} line(s) of {} that are not metrics this xtask reads",
            path.display()
        );
    }
    if runs.is_empty() {
        bail!(
            "no metrics in {}: run `cargo xtask ci` first (every run appends to it), or pass --history FILE",
            path.display()
        );
    }
    if runs.len() > a.last {
        runs.drain(..runs.len() - a.last);
    }
    let source = path.display().to_string();
    match &a.html {
        Some(out) => {
            trends::write_html(&runs, &source, out)?;
            println!("wrote {} ({} run(s))", out.display(), runs.len());
        }
        None => print!("{}", trends::render_text(&runs, &source)),
    }
    Ok(Exit::Ok.into())
}

/// `--history`, else `metrics/history.jsonl` under the cache root `ci` would use (the
/// manifest is only read for its `[cache] dir`; a missing manifest leaves the default).
fn history_file(a: &ReportArgs) -> PathBuf {
    if let Some(p) = &a.history {
        return p.clone();
    }
    let manifest_dir = Manifest::load(&a.manifest)
        .ok()
        .and_then(|m| m.cache.dir.clone());
    let root = crate::cache::resolve_root(a.cache_dir.as_deref(), manifest_dir.as_deref());
    metrics::history_path(&root)
}
