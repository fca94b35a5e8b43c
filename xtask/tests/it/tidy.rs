//! Tidy checks (rust-analyzer style): the repository's own conventions, checked by
//! `cargo test`.

use std::fs;

use crate::support::{self, workspace, xtask};

#[test]
fn every_module_starts_with_a_module_doc() {
    let mut missing = Vec::new();
    for dir in ["xtask/src", "xtask/tests"] {
        for e in walkdir::WalkDir::new(workspace().join(dir))
            .into_iter()
            .flatten()
        {
            if e.path().extension().is_some_and(|x| x == "rs") {
                let text = fs::read_to_string(e.path()).unwrap();
                if !text.trim_start().starts_with("//!") {
                    missing.push(e.path().display().to_string());
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "modules without a `//!` doc: {missing:#?}"
    );
}

#[test]
fn sample_chain_lockfiles_are_committed_and_current() {
    // Every sample repo commits its Cargo.lock (the real repos do not; the sample does, so
    // the registry cache is keyed on something stable). `cargo metadata --locked` fails if
    // a lockfile is missing or stale.
    let dirs = ["ci/sample", support::LIGHT_SAMPLE].map(|d| workspace().join(d));
    for e in dirs.iter().flat_map(|d| fs::read_dir(d).unwrap().flatten()) {
        if e.path().join("Cargo.toml").is_file() {
            assert!(
                e.path().join("Cargo.lock").is_file(),
                "{} has no Cargo.lock",
                e.path().display()
            );
            let out = std::process::Command::new("cargo")
                .args([
                    "metadata",
                    "--format-version",
                    "1",
                    "--locked",
                    "--offline",
                    "--no-deps",
                ])
                .current_dir(e.path())
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                e.path().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn cli_help_lists_every_command() {
    let out = xtask().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in ["ci", "plan", "checkout", "demo", "cache"] {
        assert!(
            help.contains(&format!("  {cmd} ")),
            "`{cmd}` missing from --help:\n{help}"
        );
    }
}

#[test]
fn the_code_is_formatted() {
    // rustfmt ships with every toolchain that has clippy; the suite's own code must pass
    // the same `fmt-check` step the chain's repos do.
    let out = std::process::Command::new("cargo")
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(workspace())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "run `cargo fmt --all`:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
