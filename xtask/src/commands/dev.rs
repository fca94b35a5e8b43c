//! The development commands (`bench`, `stress`) in a build without the `dev` feature: they
//! still parse (any arguments), and say how to get them.

use std::process::ExitCode;

use anyhow::Result;

/// Fail (exit 2, the run could not start) with the command line that runs `cmd` with
/// `args` in a build that has it.
pub fn unavailable(cmd: &str, args: &[String]) -> Result<ExitCode> {
    let mut line = format!("cargo run -p xtask --features dev -- {cmd}");
    for a in args {
        line.push(' ');
        line.push_str(a);
    }
    anyhow::bail!(
        "`cargo xtask {cmd}` is a development command, not compiled into this build (the `dev` feature is off): run `{line}`"
    )
}
