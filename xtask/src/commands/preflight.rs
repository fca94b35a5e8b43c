//! `cargo xtask preflight`: the checks `ci` runs before it starts
//! ([`crate::job::preflight`]), plus the dispatch token (`--chain`) and release inputs
//! (`--release`), printed for people or as JSON.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Result;

use crate::engine::manifest::Manifest;
use crate::flags::{Format, PreflightArgs, Resolve};
use crate::job::preflight::{self, Release, Selection};
use crate::support::exit::Exit;

impl From<&Resolve> for Selection {
    fn from(r: &Resolve) -> Selection {
        Selection {
            root: r.common.root.clone(),
            toolchain: r.toolchain.clone(),
            only: r.common.only.clone(),
            variant: r.common.variant.clone(),
        }
    }
}

/// Exit 0 when nothing is fatal (warnings may be printed), 2 otherwise.
pub fn run(a: &PreflightArgs) -> Result<ExitCode> {
    let start = Instant::now();
    let manifest = Manifest::load(&a.resolve.common.manifest)?;
    let cache_root = crate::cache::resolve_root(
        a.resolve.cache_dir.as_deref(),
        manifest.cache.dir.as_deref(),
    );
    let mut req = preflight::ci_request(&manifest, &Selection::from(&a.resolve), &cache_root);
    if a.chain {
        req.token_envs = token_envs(a.token_env.as_deref(), manifest.chain.token_env.as_deref());
    }
    if a.release {
        req.release = Some(Release {
            version: a.release_version.clone(),
            git_ref: a.git_ref.clone(),
        });
    }
    let problems = preflight::check(&manifest, &req);
    let secs = start.elapsed().as_secs_f64();
    let fatal = match a.format {
        Format::Text => preflight::report(&problems, secs),
        Format::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "schema_version": 1,
                    "secs": secs,
                    "problems": problems,
                }))?
            );
            preflight::any_fatal(&problems)
        }
    };
    Ok(if fatal {
        Exit::CouldNotRun.into()
    } else {
        Exit::Ok.into()
    })
}

/// The variables that may hold the dispatch token, in the order `cargo xtask chain` reads
/// them: the flag, the manifest's `[chain] token-env`, then `GITHUB_TOKEN`.
fn token_envs(flag: Option<&str>, manifest: Option<&str>) -> Vec<String> {
    let mut vars: Vec<String> = flag
        .into_iter()
        .chain(manifest)
        .map(str::to_owned)
        .collect();
    vars.push("GITHUB_TOKEN".to_owned());
    vars.dedup();
    vars
}
