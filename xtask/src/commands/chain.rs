//! `cargo xtask chain`: tell the repos downstream of one repo to run (`--from`, and with
//! `--wait` follow their runs), walk a release set through the whole chain in order
//! (`--release`), or show where a chain run is (`chain status CHAIN_ID`). Plan, then
//! send: the targets come from [`crate::github::propagate`] or [`crate::github::release`]
//! (pure), [`crate::github::chain::send_all`] sends them (or with `--dry-run` only
//! validates them), [`crate::github::follow`] follows the runs and
//! [`crate::github::walk`] releases in order; this module prints.
//!
//! Exit codes: see `flags::ChainArgs`.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::engine::manifest::Manifest;
use crate::engine::plan::Plan;
use crate::flags::{ApiArgs, ChainArgs, ChainCmd, ChainStatusArgs, FollowArgs, Format};
use crate::github::chain::{self as send, Report, Status};
use crate::github::crates_index;
use crate::github::dispatch::auth::{Clients, Credentials};
use crate::github::dispatch::client::RetryPolicy;
use crate::github::dispatch::DEFAULT_API_URL;
use crate::github::events::Event;
use crate::github::follow::watch::{FollowOptions, Follower, Progress};
use crate::github::follow::{render, ChainStatus, Scope};
use crate::github::propagate::{self, ChainRequest, Target};
use crate::github::release::{self, ReleaseStep};
use crate::github::walk::{self, WalkEvent, WalkOptions};
use crate::support::env::process_env;
use crate::support::exit::Exit;

/// What to send: the label of the propagation, its targets, and how to send them.
struct Planned {
    /// `--from`'s repo.
    from: String,
    targets: Vec<Target>,
    /// Print and validate, send nothing.
    dry_run: bool,
}

/// Everything a `chain` run resolved before it sends anything.
struct Prepared {
    manifest: Manifest,
    plan: Plan,
    chain_id: String,
    /// Why this event may not dispatch, if it may not.
    blocked: Option<String>,
    event: Event,
}

/// `chain`, `chain --release` or `chain status`.
pub fn run(args: &ChainArgs) -> Result<ExitCode> {
    if let Some(ChainCmd::Status(a)) = &args.cmd {
        return status(a);
    }
    // `chain` only reads the cache (to resolve the graph): it never writes under the
    // cache root but its dispatch record, and never from an untrusted run.
    let (manifest, opts, cache) = super::open_with(&args.resolve, |_| false)?;
    let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
    let event = Event::from_env()?;
    let chain_id = propagate::chain_id(args.chain_id.as_deref(), event.incoming().as_ref());
    let blocked = blocked(&event, &manifest, cache.root())?;
    let p = Prepared {
        plan: resolved.plan.clone(),
        manifest,
        chain_id,
        blocked,
        event,
    };
    // Plan while the resolved checkouts are as the plan saw them, then put them back
    // before anything is sent (a release walk can take hours).
    match &args.release {
        Some(set) => {
            let steps = plan_release(args, &p, set)?;
            drop(resolved);
            run_release(args, &p, set, steps)
        }
        None => {
            let planned = plan_propagation(args, &p)?;
            drop(resolved);
            run_propagation(args, &p, planned)
        }
    }
}

/// `--from REPO`: send, print the report, and with `--wait` follow the runs.
fn run_propagation(args: &ChainArgs, p: &Prepared, planned: Planned) -> Result<ExitCode> {
    let api_url = api_url(&args.api);
    let rt = runtime()?;
    // octocrab spawns its buffer task when built: build it inside the runtime.
    let _entered = rt.enter();
    let needs_client = !planned.dry_run && planned.targets.iter().any(|t| t.skip.is_none());
    let clients = if needs_client {
        match connect(&args.api, &p.manifest, &api_url)? {
            Ok(c) => Some(c),
            Err(code) => return Ok(code),
        }
    } else {
        None
    };
    let started = crate::support::time::now_unix() as i64;
    let outcomes = rt.block_on(send::send_all(
        clients.as_ref(),
        &api_url,
        planned.targets,
        false,
    ));
    let report = Report {
        chain_id: p.chain_id.clone(),
        from: planned.from,
        dry_run: planned.dry_run,
        outcomes,
    };
    let sent: BTreeSet<String> = report
        .outcomes
        .iter()
        .filter(|o| matches!(o.status, Status::Sent(_)))
        .map(|o| o.target.repo.clone())
        .collect();
    let followed = match (&clients, args.wait && !sent.is_empty()) {
        (Some(clients), true) => {
            let scope = Scope::of_chain(&p.manifest, &p.plan.graph)?;
            let opts = follow_options(&args.follow, true, Some(started - walk::CLOCK_SKEW_SECS));
            let follower = Follower::new(clients, &scope, &p.chain_id, sent, opts);
            Some(rt.block_on(follower.run(&mut print_progress)))
        }
        _ => None,
    };
    print_propagation(args.format, &report, followed)
}

/// Print the dispatch report and what following found; the exit code is the first failed
/// dispatch's, else the followed chain's.
fn print_propagation(
    format: Format,
    report: &Report,
    followed: Option<std::result::Result<ChainStatus, crate::github::dispatch::DispatchError>>,
) -> Result<ExitCode> {
    let (status, follow_error) = match followed {
        Some(Ok(s)) => (Some(s), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    match format {
        Format::Text => {
            print!("{}", report.render());
            if let Some(s) = &status {
                print!("{}", render::text(s));
            }
        }
        Format::Json => {
            let mut j = report.to_json();
            if let Some(s) = &status {
                j["follow"] = render::json(s);
            }
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
    }
    if let Some(e) = &follow_error {
        eprintln!("error: following the runs: {e}");
    }
    let code = match (report.exit_code(), &status, &follow_error) {
        (Exit::Ok, _, Some(e)) => e.exit_code(),
        (Exit::Ok, Some(s), None) => s.exit_code(),
        (code, _, _) => code,
    };
    Ok(code.into())
}

/// `chain status CHAIN_ID [--watch]`.
fn status(a: &ChainStatusArgs) -> Result<ExitCode> {
    let (manifest, opts, cache) = super::open_with(&a.resolve, |_| false)?;
    let resolved = crate::engine::plan::resolve(&manifest, &opts, &cache)?;
    let scope = Scope::of_chain(&manifest, &resolved.plan.graph)?;
    drop(resolved);
    let rt = runtime()?;
    let _entered = rt.enter();
    let clients = match connect(&a.api, &manifest, &api_url(&a.api))? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let opts = follow_options(&a.follow, a.watch, None);
    let follower = Follower::new(&clients, &scope, &a.chain_id, BTreeSet::new(), opts);
    let status = match rt.block_on(follower.run(&mut print_progress)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(e.exit_code().into());
        }
    };
    match a.format {
        Format::Text => print!("{}", render::text(&status)),
        Format::Json => println!("{}", serde_json::to_string_pretty(&render::json(&status))?),
    }
    Ok(status.exit_code().into())
}

/// `--release SET`: the plan (dry run), the dispatches in order (`--no-wait`), or the walk.
fn run_release(
    args: &ChainArgs,
    p: &Prepared,
    set: &str,
    steps: Vec<ReleaseStep>,
) -> Result<ExitCode> {
    let wopts = walk_options(args, p)?;
    let api_url = api_url(&args.api);
    let rt = runtime()?;
    let _entered = rt.enter();
    let targets: Vec<Target> = steps.iter().map(|s| s.target.clone()).collect();
    // Every dispatch is validated before the first is sent: a walk never stops halfway
    // on a payload it could have refused at the start.
    let checked = rt.block_on(send::send_all(None, &api_url, targets.clone(), true));
    let invalid = checked
        .iter()
        .any(|o| matches!(o.status, Status::Failed(_)));
    let live = targets.iter().any(|t| t.skip.is_none());
    let report = |outcomes, dry_run| Report {
        chain_id: p.chain_id.clone(),
        from: format!("release {set}"),
        dry_run,
        outcomes,
    };
    if !args.execute || invalid || !live {
        let plan: &[ReleaseStep] = if args.execute { &[] } else { &steps };
        return print_release_plan(args.format, &report(checked, !args.execute), plan, &wopts);
    }
    let clients = match connect(&args.api, &p.manifest, &api_url)? {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    if args.no_wait {
        let outcomes = rt.block_on(send::send_all(Some(&clients), &api_url, targets, true));
        return print_release_plan(args.format, &report(outcomes, false), &[], &wopts);
    }
    if steps
        .iter()
        .any(|s| s.target.skip.is_none() && !s.crates.is_empty())
    {
        if let Err(e) = rt.block_on(crates_index::check_config(&wopts.index_url)) {
            eprintln!("error: {e}");
            return Ok(Exit::CouldNotRun.into());
        }
    }
    let report = rt.block_on(walk::walk(
        &clients,
        &p.chain_id,
        set,
        steps,
        &wopts,
        &mut print_walk,
    ));
    match args.format {
        Format::Text => print!("{}", report.render()),
        Format::Json => println!("{}", serde_json::to_string_pretty(&report.to_json())?),
    }
    Ok(report.exit_code().into())
}

/// The walk's timeouts, poll interval and index (`--index-url`, else `[chain]
/// index-url`, else crates.io's).
///
/// Errors: an index URL that is not `http(s)`.
fn walk_options(args: &ChainArgs, p: &Prepared) -> Result<WalkOptions> {
    let index = args
        .index_url
        .clone()
        .or_else(|| p.manifest.chain.index_url.clone())
        .unwrap_or_else(|| crates_index::DEFAULT_INDEX_URL.to_owned());
    Ok(WalkOptions {
        run_timeout: Duration::from_secs(args.follow.timeout),
        publish_timeout: Duration::from_secs(args.publish_timeout),
        poll: Duration::from_millis(args.follow.poll_ms),
        index_url: crates_index::base_url(&index).map_err(anyhow::Error::msg)?,
    })
}

/// The dispatch report of a release's dry run (or `--no-wait`), then the walk's plan with
/// its waits (`steps` empty: none).
fn print_release_plan(
    format: Format,
    report: &Report,
    steps: &[ReleaseStep],
    wopts: &WalkOptions,
) -> Result<ExitCode> {
    match format {
        Format::Text => {
            print!("{}", report.render());
            if !steps.is_empty() {
                print!("{}", walk::plan_text(steps, wopts, &report.chain_id));
            }
        }
        Format::Json => {
            let mut j = report.to_json();
            if !steps.is_empty() {
                j["release_plan"] = serde_json::json!(steps
                    .iter()
                    .map(|s| serde_json::json!({
                        "repo": s.target.repo,
                        "version": s.version,
                        "wait_for_run": true,
                        "run_timeout_secs": wopts.run_timeout.as_secs(),
                        "crates": s.crates,
                        "index_url": wopts.index_url,
                        "publish_timeout_secs": wopts.publish_timeout.as_secs(),
                    }))
                    .collect::<Vec<_>>());
            }
            println!("{}", serde_json::to_string_pretty(&j)?);
        }
    }
    Ok(report.exit_code().into())
}

/// The set's steps in run order, all skipped when this event may not dispatch.
fn plan_release(args: &ChainArgs, p: &Prepared, set: &str) -> Result<Vec<ReleaseStep>> {
    let versions_path = args
        .versions
        .clone()
        .unwrap_or_else(|| release::default_versions_path(&p.manifest));
    let file = release::VersionsFile::load(&versions_path)?;
    let mut steps = release::plan_release(
        &p.manifest,
        &p.plan,
        &file,
        set,
        args.event_type.as_deref(),
        &p.chain_id,
    )
    .with_context(|| format!("release set `{set}` from {}", versions_path.display()))?;
    if let Some(why) = &p.blocked {
        for s in &mut steps {
            s.target.skip = Some(why.clone());
        }
    }
    Ok(steps)
}

/// `--from REPO`: its dependents (direct, `--transitive` or `--to`), with the event type of
/// the trigger and the version of `REPO` the plan resolved.
fn plan_propagation(args: &ChainArgs, p: &Prepared) -> Result<Planned> {
    let Some(from) = args.from.clone() else {
        bail!("say which repo's dependents to dispatch: pass --from REPO (or --release VERSION)");
    };
    let trigger = args.trigger.clone().unwrap_or_else(|| p.event.trigger());
    let event_type = args
        .event_type
        .clone()
        .unwrap_or_else(|| p.manifest.chain.event_type(&trigger));
    let version = p.plan.repos.iter().find(|r| r.name == from).and_then(|r| {
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
        chain_id: p.chain_id.clone(),
        incoming: p.event.incoming(),
        max_hops: p.manifest.chain.max_hops,
        blocked: p.blocked.clone(),
    };
    Ok(Planned {
        targets: propagate::plan_targets(&p.manifest, &p.plan.graph, &req)?,
        from,
        dry_run: args.dry_run,
    })
}

/// Why nothing may be dispatched from this event: a pull request or a run in a fork never
/// dispatches, an untrusted `repository_dispatch` never propagates (issue 8), a run of a
/// release set does not propagate (the walk releases each repo itself, only once its
/// upstreams' crates are published: a propagated release would start before that), and
/// a dispatch another run already handled is not propagated twice (issue 13, see
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
    if let Some(set) = event.incoming().and_then(|i| i.release_set) {
        return Ok(Some(format!(
            "runs of release set {set} do not propagate: `chain --release {set} --execute` releases each repo in order, after its upstreams' crates are published"
        )));
    }
    crate::github::dedupe::check(event, cache_root)
}

/// The clients for the credentials the environment offers: a GitHub App (`[chain]
/// app-id-env` and `private-key-env`, both set), else the token from `[chain] token-env`
/// or `GITHUB_TOKEN`. Only variable names are printed, never a secret. `Err(code)`: no
/// usable credentials, with its exit code.
fn connect(
    api: &ApiArgs,
    manifest: &Manifest,
    api_url: &str,
) -> Result<std::result::Result<Clients, ExitCode>> {
    let app = manifest
        .chain
        .app
        .as_ref()
        .map(|a| (a.id_env.as_str(), a.private_key_env.as_str()));
    let creds = match Credentials::from_env(manifest.chain.token_env.as_deref(), app) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Err(e.exit_code().into()));
        }
    };
    if let Credentials::Token(_, var) = &creds {
        if let Some((id, key)) = app {
            eprintln!("note: {id} and {key} ([chain] app-id-env, private-key-env) are not both set; using the token in {var}");
        }
        if let Some(named) = manifest.chain.token_env.as_deref().filter(|n| n != var) {
            eprintln!(
                "note: {named} ([chain] token-env) is not set; using {var}, which may only reach its own repository"
            );
        }
    } else {
        eprintln!("note: authenticating as a {}", creds.describe());
    }
    let policy = RetryPolicy {
        attempts: api.retries.saturating_add(1),
        base_delay: Duration::from_millis(api.retry_delay_ms),
        max_wait: Duration::from_secs(api.max_wait),
    };
    Ok(Ok(Clients::new(api_url, creds, policy)?))
}

/// `--api-url`, else `GITHUB_API_URL` (through clap), else github.com's.
fn api_url(api: &ApiArgs) -> String {
    api.api_url
        .clone()
        .unwrap_or_else(|| DEFAULT_API_URL.to_owned())
}

/// The follower's options from the flags.
fn follow_options(f: &FollowArgs, watch: bool, since_unix: Option<i64>) -> FollowOptions {
    FollowOptions {
        watch,
        timeout: Duration::from_secs(f.timeout),
        poll: Duration::from_millis(f.poll_ms),
        since_unix,
        known: Default::default(),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")
}

/// A follower's progress, on stderr (stdout holds the report).
fn print_progress(p: Progress) {
    match p {
        Progress::Run { repo, run } => {
            let how = match &run.state {
                crate::github::follow::RunState::Completed(c) => {
                    format!("completed {}", c.as_str())
                }
                other => other.label().to_owned(),
            };
            eprintln!("{repo}: {how} {}", run.url);
        }
        Progress::Wait { secs, why } => eprintln!("waiting {secs}s: {why}"),
    }
}

/// A release walk's progress, on stderr.
fn print_walk(e: WalkEvent) {
    match e {
        WalkEvent::Dispatched(repo) => eprintln!("{repo}: release dispatched, waiting for its run"),
        WalkEvent::Run(p) => print_progress(p),
        WalkEvent::Index { krate, version } => {
            eprintln!("{krate} {version}: waiting for it in the index")
        }
    }
}
