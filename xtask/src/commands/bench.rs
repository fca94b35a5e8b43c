//! `cargo xtask bench noop|cache|remote`: the benchmarks of `dev/` (compiled with the
//! `dev` feature only), each given its options from the flags.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::dev::{bench, bench_noop, bench_remote};
use crate::flags::{BenchArgs, BenchCmd};

/// Run the benchmark the subcommand names.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.cmd {
        BenchCmd::Noop { dir, reps, record } => bench_noop::run(&bench_noop::NoopOptions {
            dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-noop")),
            reps,
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
