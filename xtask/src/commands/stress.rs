//! `cargo xtask stress`: the cache's reliability scenarios ([`crate::dev::stress`]) at the
//! counts the flags give, printed for people or as JSON; and the hidden worker mode the
//! `concurrency` scenario starts this binary in.
//!
//! Exit codes: 0 every scenario that could run passed; 1 one failed; 2 the run could not
//! start.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::dev::stress::{self, Options, Scenario};
use crate::flags::{Format, StressArgs, StressScenario};
use crate::support::exit::Exit;

impl From<StressScenario> for Scenario {
    fn from(s: StressScenario) -> Scenario {
        match s {
            StressScenario::Concurrency => Scenario::Concurrency,
            StressScenario::Crash => Scenario::Crash,
            StressScenario::Corruption => Scenario::Corruption,
            StressScenario::FullDisk => Scenario::FullDisk,
            StressScenario::Signals => Scenario::Signals,
            StressScenario::SharedCheckout => Scenario::SharedCheckout,
            StressScenario::Hostile => Scenario::Hostile,
        }
    }
}

/// Run the chosen scenarios (all by default) in their fixed order.
pub fn run(a: &StressArgs) -> Result<ExitCode> {
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bllvm-ci/stress"));
    let seed = a.seed.unwrap_or_else(|| {
        // A clock before 1970 reads as 0; the seed must not be 0.
        (crate::support::time::now_unix_nanos() as u64).max(1)
    });
    if let Some(id) = a.worker {
        return stress::worker(&dir, id, a.rounds, a.keys, seed);
    }
    let opts = Options {
        dir: std::path::absolute(&dir).unwrap_or(dir),
        procs: a.procs,
        rounds: a.rounds,
        keys: a.keys.max(1),
        crashes: a.crashes,
        corruptions: a.corruptions,
        full_disk: a.full_disk,
        signal_rounds: a.signal_rounds,
        shared_rounds: a.shared_rounds,
        hostile: a.hostile,
        seed,
    };
    let chosen: Vec<Scenario> = a.scenario.iter().map(|&s| s.into()).collect();
    if a.format == Format::Text {
        println!(
            "stress: seed {seed} (replay with --seed {seed}), scratch {}",
            opts.dir.display()
        );
    }
    let mut outcomes = Vec::new();
    for s in Scenario::ALL {
        if !chosen.is_empty() && !chosen.contains(&s) {
            continue;
        }
        let o = stress::run(s, &opts);
        if a.format == Format::Text {
            print!("{}", stress::render(&o));
        }
        outcomes.push(o);
    }
    if a.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": 1,
                "seed": seed,
                "scenarios": outcomes,
            }))?
        );
    }
    Ok(if outcomes.iter().any(|o| !o.problems.is_empty()) {
        Exit::Failed.into()
    } else {
        Exit::Ok.into()
    })
}
