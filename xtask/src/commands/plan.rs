//! `cargo xtask plan`, `graph` and `logs`: what `ci` would do, and what it did.

use std::process::ExitCode;

use anyhow::Result;

use crate::engine::{plan, results};
use crate::flags::{self, Format, GraphArgs, LogsArgs, PlanArgs};
use crate::report::graph as graph_out;

use super::open;
use crate::support::exit::Exit;

/// `cargo xtask plan`.
pub fn plan(a: PlanArgs) -> Result<ExitCode> {
    let (manifest, opts, cache) = open(&a.resolve)?;
    let resolved = plan::resolve(&manifest, &opts, &cache)?;
    if let Some(name) = &a.explain {
        manifest.repo(name)?;
        let r = resolved
            .plan
            .repos
            .iter()
            .find(|r| &r.name == name)
            .expect("every manifest repo is planned");
        print!("{}", plan::explain(r, &results::Results::new(cache.root())));
        return Ok(Exit::Ok.into());
    }
    // Records the plan ignored (damaged or hostile) are said, as `ci` says them.
    for note in &resolved.notes {
        eprintln!("{note}");
    }
    if a.resolve.verbose {
        let r = &resolved.resolution;
        eprintln!(
            "resolution: reused {} [{}], ran {} [{}]",
            r.reused.len(),
            r.reused.join(", "),
            r.ran.len(),
            r.ran.join(", ")
        );
    }
    match a.format {
        Format::Text => print!("{}", resolved.plan.render(a.resolve.verbose)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&resolved.plan.to_json())?
        ),
    }
    Ok(Exit::Ok.into())
}

/// `cargo xtask graph`.
pub fn graph(a: GraphArgs) -> Result<ExitCode> {
    let (manifest, opts, cache) = open(&a.resolve)?;
    let resolved = plan::resolve(&manifest, &opts, &cache)?;
    match a.format {
        flags::GraphFormat::Dot => print!("{}", graph_out::dot(&resolved.plan)),
        flags::GraphFormat::Mermaid => print!("{}", graph_out::mermaid(&resolved.plan)),
        flags::GraphFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&graph_out::json(&resolved.plan))?
        ),
    }
    Ok(Exit::Ok.into())
}

/// `cargo xtask logs REPO`: replay the logs recorded with the repo's current fingerprint.
pub fn logs(a: LogsArgs) -> Result<ExitCode> {
    let (manifest, opts, cache) = open(&a.resolve)?;
    manifest.repo(&a.repo)?;
    let resolved = plan::resolve(&manifest, &opts, &cache)?;
    let r = resolved
        .plan
        .repos
        .iter()
        .find(|r| r.name == a.repo)
        .expect("every manifest repo is planned");
    let store = results::Results::new(cache.root());
    let logs = store.logs(&r.name, &r.fingerprint.hash);
    if logs.is_empty() {
        anyhow::bail!(
            "no recorded run of `{}` at its current fingerprint {}: run `cargo xtask ci` first (only successful runs are recorded)",
            r.name,
            r.fingerprint.short()
        );
    }
    for l in logs {
        println!("==> {}", l.display());
        print!("{}", std::fs::read_to_string(&l)?);
    }
    Ok(Exit::Ok.into())
}
