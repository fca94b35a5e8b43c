//! `cargo xtask matrix`: the variant × toolchain cells and their repos.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::manifest::Manifest;
use crate::engine::matrix;
use crate::flags::{Format, MatrixArgs};
use crate::support::exit::Exit;

/// `cargo xtask matrix`.
pub fn run(a: MatrixArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.manifest)?;
    match a.format {
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&matrix::to_json(&manifest))?
        ),
        Format::Text => {
            for c in matrix::to_json(&manifest).cells {
                println!("{}: {}", c.name, c.repos.join(", "));
            }
        }
    }
    Ok(Exit::Ok.into())
}
