//! `cargo xtask workflows`: generate (or `--check`) `.github/` from the manifest.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::manifest::Manifest;
use crate::flags::WorkflowsArgs;
use crate::github::workflows;

/// `cargo xtask workflows`.
pub fn run(a: WorkflowsArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.manifest)?;
    workflows::run(&manifest, &a.out, a.check)
}
