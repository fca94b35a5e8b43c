//! `cargo xtask explain [LOG | RUN_DIR | -]`: the error knowledge base
//! ([`crate::report::explain`]) over a step log, every failure of a run directory (failed
//! steps, and repos that failed before any step, e.g. a resolution error), or stdin. A log
//! or run directory is scanned with the context the run recorded for its repo. This module reads the inputs and prints; the matching lives in the report layer.

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::flags::{ExplainArgs, Format};
use crate::report::explain::{
    context_for_log, render, run_failures, HintContext, KnowledgeBase, Source,
};
use crate::support::exit::Exit;

/// Print the matches of every input: text for people, or with `--format json` an array of
/// `{log, matches}`.
///
/// Exit code 0 whether or not anything matched (the output says which); errors (exit 2)
/// when a log, the run's summary or `--patterns` cannot be read.
pub fn run(a: &ExplainArgs) -> Result<ExitCode> {
    let inputs = read_inputs(a.log.as_deref(), a.format)?;
    let loaded;
    let kb = match &a.patterns {
        Some(p) => {
            loaded = KnowledgeBase::load(p)?;
            &loaded
        }
        None => KnowledgeBase::embedded(),
    };
    let mut json = Vec::new();
    for (i, (name, log, cx)) in inputs.iter().enumerate() {
        let matches = kb.scan_with(log, cx);
        match a.format {
            Format::Text => {
                if i > 0 {
                    println!();
                }
                print!("{}", render(name, log, &matches));
            }
            Format::Json => json.push(serde_json::json!({"log": name, "matches": matches})),
        }
    }
    if a.format == Format::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(Exit::Ok.into())
}

/// The logs to scan, each as (label, text, the run's context): the given log, the failures
/// of a run directory, or stdin (no argument or `-`).
fn read_inputs(log: Option<&Path>, format: Format) -> Result<Vec<(String, String, HintContext)>> {
    let mut inputs = Vec::new();
    match log {
        None => {}
        Some(p) if p == Path::new("-") => {}
        Some(p) if p.is_dir() => {
            let failures = run_failures(p)?;
            if failures.is_empty() && format == Format::Text {
                println!("{}: no failure in this run", p.display());
            }
            for f in failures {
                let text = match &f.source {
                    Source::Log(log) => read_log(log)?,
                    Source::Text(t) => t.clone(),
                };
                inputs.push((f.label, text, f.context));
            }
        }
        Some(p) => inputs.push((p.display().to_string(), read_log(p)?, context_for_log(p))),
    }
    if log.is_none_or(|p| p == Path::new("-")) {
        let mut b = Vec::new();
        std::io::stdin()
            .read_to_end(&mut b)
            .context("read the log from stdin")?;
        inputs.push((
            "stdin".into(),
            String::from_utf8_lossy(&b).into_owned(),
            HintContext::default(),
        ));
    }
    Ok(inputs)
}

/// A log file as text (invalid UTF-8 replaced: logs hold whatever the tools printed).
fn read_log(p: &Path) -> Result<String> {
    let b = std::fs::read(p).with_context(|| {
        format!(
            "cannot read log {}: pass a step log or a run directory, or `-` for stdin",
            p.display()
        )
    })?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}
