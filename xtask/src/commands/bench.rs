//! `cargo xtask bench`: the benchmarks of `dev/`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

use crate::dev::{bench, bench_noop, bench_remote};
use crate::flags::{self, BenchArgs};

/// `cargo xtask bench noop|cache|remote`.
pub fn run(a: BenchArgs) -> Result<ExitCode> {
    match a.cmd {
        flags::BenchCmd::Noop { dir, reps, record } => bench_noop::run(&bench_noop::NoopOptions {
            dir: dir.unwrap_or_else(|| PathBuf::from("target/bllvm-ci/bench-noop")),
            reps,
            record,
        }),
        flags::BenchCmd::Remote {
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
        other => bench::run(other),
    }
}
