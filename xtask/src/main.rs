//! `cargo xtask`: the CI of the bllvm chain of repositories (spec → consensus → protocol →
//! node/sdk), as one program that runs the same in GitHub Actions and on a laptop.
//!
//! This file only hands over to [`xtask::commands::main`]; the layers are described in
//! `xtask/src/lib.rs` and ARCHITECTURE.md.
//!
//! Exit codes: 0 success; 1 a repo failed (a step failed, timed out, or the repo could not
//! be resolved); 2 the run could not start (bad manifest, missing checkout, cycle, bad
//! flags).

fn main() -> std::process::ExitCode {
    xtask::commands::main()
}
