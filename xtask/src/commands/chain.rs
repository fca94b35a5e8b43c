//! `cargo xtask chain`: tell the repos downstream of one repo to run (`--from`), or walk a
//! release set through the whole chain in order (`--release`). Plan, then send: the targets
//! come from [`crate::github::propagate`] or [`crate::github::release`] (pure), then
//! [`crate::github::chain::send_all`] sends them (or with `--dry-run` only validates them),
//! and the report is printed as text or JSON.
//!
//! Exit codes: 0 all sent or skipped; 2 the run could not start; 3 to 7 the first failed
//! dispatch's kind (see `flags::ChainArgs`).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::engine::manifest::Manifest;
use crate::engine::plan::Plan;
use crate::flags::{ChainArgs, Format};
use crate::github::chain::{self as send, Report};
use crate::github::dispatch::client::{Client, RetryPolicy};
use crate::github::dispatch::{Token, DEFAULT_API_URL};
use crate::github::events::Event;
use crate::github::propagate::{self, ChainRequest, Target};
use crate::github::release;
use crate::support::env::process_env;

/// What to send: the label of the propagation, its targets, and how to send them.
struct Planned {
    /// `--from`'s repo, or `release <set>`.
    from: String,
    targets: Vec<Target>,
    /// Print and validate, send nothing.
    dry_run: bool,
    /// Skip the targets after a failed one (release order).
    stop_on_failure: bool,
}

/// Plan the targets, send them, print the report; the exit code is the first failure's.
pub fn run(args: &ChainArgs) -> Result<ExitCode> {
    // `chain` only reads the cache (to resolve the graph): it never writes under the
    // cache root but its dispatch record, and never from an untrusted run.
    let (manifest, opts, cache) = super::open_with(&args.resolve, |_| false)?;
    let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
    let event = Event::from_env()?;
    let chain_id = propagate::chain_id(args.chain_id.as_deref(), event.incoming().as_ref());
    let blocked = blocked(&event, &manifest, cache.root())?;
    let planned = match &args.release {
        Some(set) => plan_release(args, &manifest, &resolved.plan, set, &chain_id, blocked)?,
        None => plan_propagation(args, &manifest, &resolved.plan, &event, &chain_id, blocked)?,
    };
    drop(resolved);
    let api_url = args
        .api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned());
    // octocrab spawns its buffer task when built: build it inside the runtime.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let _entered = rt.enter();
    let needs_client = !planned.dry_run && planned.targets.iter().any(|t| t.skip.is_none());
    let client = if needs_client {
        match client(args, &manifest, &api_url)? {
            Ok(c) => Some(c),
            Err(code) => return Ok(code),
        }
    } else {
        None
    };
    let outcomes = rt.block_on(send::send_all(
        client.as_ref(),
        &api_url,
        planned.targets,
        planned.stop_on_failure,
    ));
    let report = Report {
        chain_id,
        from: planned.from,
        dry_run: planned.dry_run,
        outcomes,
    };
    match args.format {
        Format::Text => print!("{}", report.render()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
    }
    Ok(ExitCode::from(report.exit_code()))
}

/// `--release SET`: every repo of the set in run order, skipped as a whole when this event
/// may not dispatch; a dry run unless `--execute`.
fn plan_release(
    args: &ChainArgs,
    manifest: &Manifest,
    plan: &Plan,
    set: &str,
    chain_id: &str,
    blocked: Option<String>,
) -> Result<Planned> {
    let versions_path = args
        .versions
        .clone()
        .unwrap_or_else(|| release::default_versions_path(manifest));
    let file = release::VersionsFile::load(&versions_path)?;
    let mut targets = release::plan_release(
        manifest,
        plan,
        &file,
        set,
        args.event_type.as_deref(),
        chain_id,
    )
    .with_context(|| format!("release set `{set}` from {}", versions_path.display()))?;
    if let Some(why) = blocked {
        for t in &mut targets {
            t.skip = Some(why.clone());
        }
    }
    Ok(Planned {
        from: format!("release {set}"),
        targets,
        dry_run: !args.execute,
        stop_on_failure: true,
    })
}

/// `--from REPO`: its dependents (direct, `--transitive` or `--to`), with the event type of
/// the trigger and the version of `REPO` the plan resolved.
fn plan_propagation(
    args: &ChainArgs,
    manifest: &Manifest,
    plan: &Plan,
    event: &Event,
    chain_id: &str,
    blocked: Option<String>,
) -> Result<Planned> {
    let Some(from) = args.from.clone() else {
        bail!("say which repo's dependents to dispatch: pass --from REPO (or --release VERSION)");
    };
    let trigger = args.trigger.clone().unwrap_or_else(|| event.trigger());
    let event_type = args
        .event_type
        .clone()
        .unwrap_or_else(|| manifest.chain.event_type(&trigger));
    let version = plan.repos.iter().find(|r| r.name == from).and_then(|r| {
        r.versions
            .get(&from)
            .or_else(|| r.versions.values().next())
            .cloned()
    });
    let req = ChainRequest {
        from: from.clone(),
        transitive: args.transitive,
        to: args.to.clone(),
        event_type,
        trigger,
        sha: args.sha.clone().or_else(|| process_env("GITHUB_SHA")),
        git_ref: args.git_ref.clone().or_else(|| process_env("GITHUB_REF")),
        version,
        chain_id: chain_id.to_owned(),
        incoming: event.incoming(),
        max_hops: manifest.chain.max_hops,
        blocked,
    };
    Ok(Planned {
        targets: propagate::plan_targets(manifest, &plan.graph, &req)?,
        from,
        dry_run: args.dry_run,
        stop_on_failure: false,
    })
}

/// Why nothing may be dispatched from this event: a pull request or a run in a fork never
/// dispatches, an untrusted `repository_dispatch` never propagates (issue 8), and a
/// dispatch another run already handled is not propagated twice (issue 13, see
/// [`crate::github::dedupe`]).
///
/// Errors: the dispatch records under `cache_root` cannot be read.
fn blocked(event: &Event, manifest: &Manifest, cache_root: &Path) -> Result<Option<String>> {
    if !event.may_dispatch() {
        let fork = if event.in_fork() { " in a fork" } else { "" };
        return Ok(Some(format!(
            "{} events{fork} never dispatch",
            event.name()
        )));
    }
    if let Some(why) = event.untrusted_source(&send::repo_names(manifest)) {
        return Ok(Some(why));
    }
    crate::github::dedupe::check(event, cache_root)
}

/// The dispatch client, with the token from `[chain] token-env` or `GITHUB_TOKEN` (only
/// names are printed, never the token). `Err(code)`: no token, with its exit code.
fn client(
    args: &ChainArgs,
    manifest: &Manifest,
    api_url: &str,
) -> Result<std::result::Result<Client, ExitCode>> {
    let (token, var) = match Token::from_env(manifest.chain.token_env.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Err(ExitCode::from(e.exit_code())));
        }
    };
    if let Some(named) = manifest.chain.token_env.as_deref().filter(|n| *n != var) {
        eprintln!(
            "note: {named} ([chain] token-env) is not set; using {var}, which may only reach its own repository"
        );
    }
    let policy = RetryPolicy {
        attempts: args.retries.saturating_add(1),
        base_delay: Duration::from_millis(args.retry_delay_ms),
        max_wait: Duration::from_secs(args.max_wait),
    };
    Ok(Ok(Client::new(api_url, &token, policy)?))
}
