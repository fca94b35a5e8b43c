//! `cargo xtask bench noop|chain|cache|remote|runners`: the benchmarks of `dev/` (compiled with the
//! `dev` feature only), each given its options from the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::dev::{bench, bench_chain, bench_noop, bench_remote, bench_runners};
use crate::flags::{BenchArgs, BenchCmd, RunnerKindArg};

/// Run the benchmark the subcommand names.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.cmd {
        BenchCmd::Noop { dir, reps, record } => bench_noop::run(&bench_noop::NoopOptions {
            dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-noop")),
            reps,
            record,
        }),
        BenchCmd::Chain { dir, record } => bench_chain::run(&bench_chain::ChainOptions {
            dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-chain")),
            record,
        }),
        BenchCmd::Cache {
            target_dir,
            sample,
            dir,
            files,
            mib,
            reps,
            record,
        } => bench::cache(&bench::CacheOptions {
            target_dir,
            sample,
            dir,
            files,
            mib,
            reps,
            record,
        }),
        BenchCmd::Runners { dir, kinds, record } => {
            let kinds = if kinds.is_empty() {
                bench_runners::Kind::ALL.to_vec()
            } else {
                kinds
                    .into_iter()
                    .map(|k| match k {
                        RunnerKindArg::Hosted => bench_runners::Kind::Hosted,
                        RunnerKindArg::SelfHosted => bench_runners::Kind::SelfHosted,
                        RunnerKindArg::Remote => bench_runners::Kind::Remote,
                    })
                    .collect()
            };
            bench_runners::run(&bench_runners::RunnersOptions {
                dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-runners")),
                kinds,
                record,
            })
        }
        BenchCmd::Remote {
            dir,
            files,
            mib,
            reps,
            record,
        } => bench_remote::run(&bench_remote::RemoteBench {
            dir: &dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-remote")),
            files,
            mib,
            reps,
            record: record.as_deref(),
        }),
    }
}
