//! `cargo xtask checkout`: clone every missing repo of the chain.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::checkout;
use crate::engine::manifest::Manifest;
use crate::flags::CheckoutArgs;
use crate::support::exit::Exit;

/// `cargo xtask checkout`.
pub fn run(a: CheckoutArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.manifest)?;
    let root = a.root.clone().unwrap_or_else(|| manifest.root.clone());
    let sh = xshell::Shell::new()?;
    let cloned = checkout::checkout(&sh, &manifest, &root, &a.git_base, a.depth)?;
    println!("cloned {} repo(s)", cloned.len());
    Ok(Exit::Ok.into())
}
