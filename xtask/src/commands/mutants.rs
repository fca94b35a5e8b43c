//! `cargo xtask mutants`: mutation testing of the engine's pure modules
//! ([`crate::dev::mutants`]), printed as a score per module.
//!
//! Exit codes: 0 every module scored at least `--min-score`; 1 one did not; 2 the run
//! could not start (cargo-mutants missing, a bad flag).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::dev::mutants::{self, Options};
use crate::flags::MutantsArgs;
use crate::support::exit::Exit;

/// Run cargo-mutants as the flags say and print the table.
pub fn run(a: &MutantsArgs) -> Result<ExitCode> {
    let opts = Options {
        files: if a.files.is_empty() {
            mutants::DEFAULT_FILES
                .iter()
                .map(|s| s.to_string())
                .collect()
        } else {
            a.files.clone()
        },
        jobs: a.jobs.max(1),
        out: a
            .out
            .clone()
            .unwrap_or_else(|| PathBuf::from("target/mutants")),
        list: a.list,
    };
    println!("$ {}", mutants::command_line(&opts));
    if opts.list {
        mutants::list(&opts)?;
        return Ok(Exit::Ok.into());
    }
    let scores = mutants::run(&opts)?;
    print!("{}", mutants::render(&scores));
    let low: Vec<&mutants::Score> = scores
        .iter()
        .filter(|s| s.percent() < f64::from(a.min_score))
        .collect();
    for s in &low {
        println!(
            "below {}%: {} ({:.1}%): kill its survivors with a test, or list them as equivalent in BENCHMARKS.md",
            a.min_score,
            s.file,
            s.percent()
        );
    }
    Ok(if low.is_empty() {
        Exit::Ok.into()
    } else {
        Exit::Failed.into()
    })
}
