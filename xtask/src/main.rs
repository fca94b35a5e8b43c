//! `cargo xtask`: the CI of the bllvm chain of repositories (spec → consensus → protocol →
//! node/sdk), as one program that runs the same in GitHub Actions and on a laptop.
//!
//! This file only parses the command line and hands it to [`xtask::commands`]; the layers
//! are described in `xtask/src/lib.rs` and ARCHITECTURE.md.
//!
//! Exit codes: 0 success; 1 a repo failed (a step failed, timed out, or the repo could not
//! be resolved); 2 the run could not start (bad manifest, missing checkout, cycle, bad
//! flags).

use std::process::ExitCode;

use clap::Parser;
use xtask::flags::Xtask;

fn main() -> ExitCode {
    // `cargo xtask` runs us through the rustup proxy, which exports the toolchain *it*
    // picked as RUSTUP_TOOLCHAIN. Inherited by the repos' cargo and rustc, that would
    // override every repo's own rust-toolchain.toml pin. A repo's toolchain comes from its
    // pin, the manifest's `toolchain` or `--toolchain`, never from how we were started.
    // (Before any thread exists, so changing the environment is sound.)
    std::env::remove_var("RUSTUP_TOOLCHAIN");
    let args = Xtask::parse();
    match xtask::commands::run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
