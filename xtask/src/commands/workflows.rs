//! `cargo xtask workflows`: generate (or `--check`) `.github/` from the manifest; list the
//! toolchains a generated job installs (`workflows toolchains`); gather the fan-out repo
//! jobs' summaries into one step summary and PR comment (`workflows gather`).

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

use crate::engine::manifest::Manifest;
use crate::flags::{WorkflowsAction, WorkflowsArgs};
use crate::github::workflows;
use crate::support::exit::Exit;

/// `cargo xtask workflows`.
pub fn run(a: WorkflowsArgs) -> Result<ExitCode> {
    let manifest = Manifest::load(&a.manifest)?;
    match a.action {
        None => workflows::run(&manifest, &a.out, a.check),
        Some(WorkflowsAction::Toolchains { only, cell }) => {
            toolchains(&manifest, &only, cell.as_deref())
        }
        Some(WorkflowsAction::Gather {
            dir,
            expect,
            comment,
        }) => gather(&dir, &expect, comment),
    }
}

/// `workflows toolchains`: one toolchain name a line, sorted, each once — what the job
/// must install for the repos it builds (`only`; all without) or for matrix cell `cell`:
/// the cell's toolchain, else each repo's manifest `toolchain` (with `[defaults]`), else
/// the toolchain its checkout's `rust-toolchain.toml` pins. Repos that name none build
/// with rustup's default, which the job gives clippy and rustfmt itself.
///
/// Errors: an unknown repo or cell; a name that is not a toolchain name (letters,
/// digits, `-_.`; it reaches a shell): a pin file is read from a checkout, untrusted.
fn toolchains(manifest: &Manifest, only: &[String], cell: Option<&str>) -> Result<ExitCode> {
    let mut names = std::collections::BTreeSet::new();
    let cell = match cell {
        Some(c) => Some(
            crate::engine::matrix::cells(manifest)
                .into_iter()
                .find(|x| x.name() == c)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "no matrix cell `{c}` in {}: see `cargo xtask matrix`",
                        manifest.path.display()
                    )
                })?,
        ),
        None => None,
    };
    for name in only {
        manifest.repo(name)?;
    }
    let selected = manifest
        .repos
        .iter()
        .filter(|r| only.is_empty() || only.contains(&r.name))
        .filter(|r| r.kind == crate::engine::manifest::RepoKind::Cargo);
    for r in selected {
        let pinned = || {
            crate::engine::toolchain::pin_file(&Manifest::checkout_dir(&manifest.root, r))
                .and_then(|p| crate::engine::toolchain::pin_channel(&p))
        };
        let t = match &cell {
            Some(c) if !c.has(r, &manifest.defaults.variant) => continue,
            Some(c) => c
                .toolchain
                .clone()
                .or_else(|| r.toolchain.clone())
                .or_else(pinned),
            None => r.toolchain.clone().or_else(pinned),
        };
        names.extend(t);
    }
    for t in &names {
        let ok = !t.is_empty()
            && t.len() <= 100
            && t.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            anyhow::bail!("`{t}` is not a toolchain name (letters, digits, `-_.`): fix the manifest's `toolchain` or the checkout's rust-toolchain.toml");
        }
        println!("{t}");
    }
    Ok(Exit::Ok.into())
}

/// Largest `summary.json` read (bytes): a repo job's is a few KiB.
const MAX_SUMMARY_BYTES: u64 = 16 << 20;

/// `workflows gather DIR`: every `summary.json` under `DIR` (the downloaded
/// `bllvm-ci-summary-*` artifacts, one directory each) becomes one step summary and, with
/// `comment`, one PR comment. Exit 1 when a repo failed, a job was cancelled, or an
/// `expect`ed artifact directory holds no readable summary (its job failed before the
/// run, was cancelled or skipped); 0 otherwise.
fn gather(dir: &Path, expect: &[String], comment: bool) -> Result<ExitCode> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let mut jobs = Vec::new();
    let mut found = std::collections::BTreeSet::new();
    let mut missing = Vec::new();
    for e in walkdir::WalkDir::new(dir).max_depth(4).follow_links(false) {
        let Ok(e) = e else { continue };
        if e.file_name() != "summary.json" || !e.file_type().is_file() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path());
        let artifact = rel
            .components()
            .next()
            .map(|c| c.as_os_str().to_string_lossy().into_owned());
        match read_summary(e.path()) {
            Ok(s) => {
                found.extend(artifact);
                jobs.push(s);
            }
            Err(why) => missing.push((rel.display().to_string(), why)),
        }
    }
    for name in expect.iter().filter(|n| !found.contains(*n)) {
        missing.push((
            name.clone(),
            "no summary.json: the job failed before the run, was cancelled or skipped; see its log"
                .to_owned(),
        ));
    }
    let link = workflows::gather::run_link(&env);
    let md = workflows::gather::markdown(&jobs, &missing, link.as_deref());
    print!("{md}");
    crate::report::gha::append_env_file("GITHUB_STEP_SUMMARY", &md)?;
    if comment {
        // The comment's body adds the run's link itself (`github/dispatch/comment.rs`).
        let event = crate::github::events::Event::from_env()?;
        let text = workflows::gather::markdown(&jobs, &missing, None);
        crate::github::chain::comment_on_pull_request(&event, &text);
    }
    let failed = !missing.is_empty() || jobs.iter().any(|j| j.failed());
    Ok(if failed {
        Exit::Failed.into()
    } else {
        Exit::Ok.into()
    })
}

/// One `summary.json`, size-checked and parsed; the error says why it is not usable.
fn read_summary(path: &Path) -> std::result::Result<workflows::gather::JobSummary, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_SUMMARY_BYTES {
        return Err(format!("{len} bytes, more than a summary.json holds"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    workflows::gather::JobSummary::parse(&text)
}
