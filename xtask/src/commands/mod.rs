//! The subcommands: each wires the layers below (engine, GitHub, reports, the job) for one
//! `cargo xtask` command. Parsing stays in [`crate::flags`]; nothing here is called by a
//! lower layer.

#[cfg(feature = "dev")]
pub mod bench;
pub mod cache;
pub mod chain;
pub mod checkout;
pub mod ci;
pub mod demo;
#[cfg(not(feature = "dev"))]
mod dev;
pub mod explain;
pub mod matrix;
#[cfg(feature = "dev")]
pub mod mutants;
pub mod notify;
pub mod plan;
pub mod preflight;
pub mod report;
#[cfg(feature = "dev")]
pub mod stress;
pub mod workflows;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context, Result};

use crate::cache::Cache;
use crate::engine::manifest::Manifest;
use crate::engine::plan::PlanOptions;
use crate::flags::{Cmd, Resolve, Xtask};
use crate::support::exit::Exit;

/// Exit code of a run that could not start, and of an internal error (a panic: a bug),
/// whatever was under way. Never 0, so a bug can never read as a green run, and not 1,
/// which says a repo failed and names it: an internal error names none.
pub const EXIT_COULD_NOT_RUN: u8 = 2;

/// The program: drop the inherited `RUSTUP_TOOLCHAIN` (see [`crate::engine::toolchain`]),
/// parse the command line, run it, and map an error to exit code 2.
///
/// A panic anywhere (a bug; nothing read from disk or the network may cause one) never
/// reaches the user as Rust's panic message and exit code 101: [`panic_hook`] prints
/// `error: internal error: ...` with where it happened, and the program exits with
/// [`EXIT_COULD_NOT_RUN`]. Unwinding drops what the run holds first (a stripped
/// manifest is restored, a generated lockfile removed). A panic on another thread (a
/// webhook sender) is reported the same way by the thread that joins it.
///
/// Call from `main` before any thread exists: it changes the process environment.
pub fn main() -> ExitCode {
    crate::support::time::mark_process_start();
    if let Some(code) = crate::support::watchdog::serve_if_asked() {
        return code;
    }
    crate::engine::toolchain::take_inherited();
    std::panic::set_hook(Box::new(panic_hook));
    let args = <Xtask as clap::Parser>::parse();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(args)));
    finish(outcome, &mut std::io::stderr())
}

/// The exit code of a finished command: its own, 2 with the error (printed on `err`)
/// for one that could not run, 2 for a panic (already printed by [`panic_hook`]; this
/// adds that the result is unknown). Writing to `err` never panics: a closed stderr is
/// ignored, and this runs after a panic.
pub fn finish(
    outcome: std::thread::Result<Result<ExitCode>>,
    err: &mut dyn std::io::Write,
) -> ExitCode {
    match outcome {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            let _ = writeln!(err, "error: {e:#}");
            Exit::CouldNotRun.into()
        }
        Err(_) => {
            let _ = writeln!(
                err,
                "error: stopped by the internal error above (exit {EXIT_COULD_NOT_RUN}): the run's result is unknown, not green"
            );
            Exit::CouldNotRun.into()
        }
    }
}

/// Print a panic as an internal error: its message, thread and place, how to report it,
/// and with `RUST_BACKTRACE=1` the backtrace. Never panics itself (a closed stderr is
/// ignored: a panic in a panic hook would abort).
pub fn panic_hook(info: &std::panic::PanicHookInfo<'_>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", internal_error(info));
    let bt = std::backtrace::Backtrace::capture();
    if bt.status() == std::backtrace::BacktraceStatus::Captured {
        let _ = writeln!(err, "{bt}");
    }
}

/// `error: internal error in thread `main`: <message> (at <file>:<line>:<col>) ...`.
fn internal_error(info: &std::panic::PanicHookInfo<'_>) -> String {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned());
    let place = info
        .location()
        .map(|l| format!(" (at {}:{}:{})", l.file(), l.line(), l.column()))
        .unwrap_or_default();
    let thread = std::thread::current();
    format!(
        "error: internal error in thread `{}`: {message}{place}: this is a bug in bllvm-ci; please report it with the command line (RUST_BACKTRACE=1 shows where it happened)",
        thread.name().unwrap_or("unnamed")
    )
}

/// Run one parsed command line; `Err` is a run that could not start (exit 2).
pub fn run(args: Xtask) -> Result<ExitCode> {
    match args.cmd {
        Cmd::Ci(a) => ci::run(a),
        Cmd::Matrix(a) => matrix::run(a),
        Cmd::Graph(a) => plan::graph(a),
        Cmd::Logs(a) => plan::logs(a),
        Cmd::Plan(a) => plan::plan(a),
        Cmd::Checkout(a) => checkout::run(a),
        Cmd::Demo(a) => demo::run(&a),
        Cmd::Chain(a) => chain::run(&a),
        Cmd::Workflows(a) => workflows::run(a),
        Cmd::Explain(a) => explain::run(&a),
        Cmd::Preflight(a) => preflight::run(&a),
        Cmd::Notify(a) => notify::run(&a),
        Cmd::Report(a) => report::run(&a),
        #[cfg(feature = "dev")]
        Cmd::Stress(a) => stress::run(&a),
        #[cfg(not(feature = "dev"))]
        Cmd::Stress(a) => dev::unavailable("stress", &a.args),
        Cmd::Cache(c) => cache::cli(c),
        #[cfg(feature = "dev")]
        Cmd::Mutants(a) => mutants::run(&a),
        #[cfg(not(feature = "dev"))]
        Cmd::Mutants(a) => dev::unavailable("mutants", &a.args),
        #[cfg(feature = "dev")]
        Cmd::Bench(a) => bench::run(a),
        #[cfg(not(feature = "dev"))]
        Cmd::Bench(a) => dev::unavailable("bench", &a.args),
    }
}

/// Load the manifest, turn the flags into plan options, and open the cache.
pub fn open(r: &Resolve) -> Result<(Manifest, PlanOptions, Cache)> {
    open_with(r, |_| true)
}

/// [`open`], with the cache read-only unless `writable` (asked with the manifest) says
/// otherwise: a read-only cache creates, cleans and writes nothing under the cache root
/// (`--no-save`, commands that only read). Under an untrusted GitHub event
/// ([`crate::github::events::Event::untrusted`], or an event file that cannot be read)
/// every command's cache is read-only, whatever `writable` says.
pub fn open_with(
    r: &Resolve,
    writable: impl FnOnce(&Manifest) -> bool,
) -> Result<(Manifest, PlanOptions, Cache)> {
    let manifest = Manifest::load(&r.common.manifest)?;
    let opts = PlanOptions {
        root: r.common.root.clone(),
        only: r.common.only.clone(),
        variant: r.common.variant.clone(),
        toolchain: r.toolchain.clone(),
        cell_toolchain: None,
        deps: r.deps.map(Into::into),
        force: r.force.clone(),
        affected: affected_refs(r.affected.as_deref())?,
        skip_unavailable_toolchains: false,
        exec: crate::engine::steps::ExecContext::for_display(),
        checkout: Default::default(),
        results: None,
    };
    let root = crate::cache::resolve_root(r.cache_dir.as_deref(), manifest.cache.dir.as_deref());
    // The manifest's `[cache]` retention and disk guard apply to every run, not only to
    // the `cache` commands (issue 8: `ci` used the defaults whatever the manifest said).
    let trusted = crate::github::events::Event::from_env().is_ok_and(|e| {
        e.untrusted(&crate::github::chain::repo_names(&manifest))
            .is_none()
    });
    let cache = if trusted && writable(&manifest) {
        Cache::open(&root).with_context(|| format!("open cache root {}", root.display()))?
    } else {
        Cache::open_read_only(&root)
    };
    let cache = cache
        .with_policy(crate::cache::retention::Policy::from(&manifest.cache))
        // On a CI runner (`CI=true`, set by GitHub Actions and most CI systems) target dirs
        // move in and out of the cache in O(1); elsewhere they are copied and stay put.
        .with_keep_trees(std::env::var("CI").map_or(true, |v| v != "true"));
    Ok((manifest, opts, cache))
}

/// `--affected BASE..HEAD`, else `BLLVM_CI_BASE` and `BLLVM_CI_HEAD` when both are set.
/// Both ways get the same checks ([`crate::engine::plan::parse_affected`]); one variable
/// set without the other is an error rather than a run of every repo the caller did not
/// ask for.
fn affected_refs(flag: Option<&str>) -> Result<Option<(String, String)>> {
    if let Some(f) = flag {
        return crate::engine::plan::parse_affected(f).map(Some);
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    match (env("BLLVM_CI_BASE"), env("BLLVM_CI_HEAD")) {
        (Some(b), Some(h)) => {
            crate::engine::plan::check_affected_ref("BLLVM_CI_BASE", &b)?;
            crate::engine::plan::check_affected_ref("BLLVM_CI_HEAD", &h)?;
            Ok(Some((b, h)))
        }
        (None, None) => Ok(None),
        (Some(_), None) | (None, Some(_)) => anyhow::bail!(
            "only one of BLLVM_CI_BASE and BLLVM_CI_HEAD is set: set both (the refs of --affected) or neither"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A panic is exit 2 saying the result is unknown, never 101 and never 0; an error
    /// is exit 2 with its message; a command's own code passes through.
    #[test]
    fn a_panic_is_an_internal_error_with_exit_code_2() {
        let text = |out: Vec<u8>| String::from_utf8(out).unwrap();
        let caught = std::panic::catch_unwind(|| -> Result<ExitCode> { panic!("boom") });
        let mut out = Vec::new();
        assert_eq!(finish(caught, &mut out), Exit::CouldNotRun.into());
        assert!(text(out).contains("internal error above (exit 2)"));
        let mut out = Vec::new();
        let e = Ok(Err(anyhow::anyhow!("no manifest")));
        assert_eq!(finish(e, &mut out), Exit::CouldNotRun.into());
        assert_eq!(text(out), "error: no manifest\n");
        let mut out = Vec::new();
        assert_eq!(
            finish(Ok(Ok(ExitCode::from(7))), &mut out),
            ExitCode::from(7)
        );
        assert!(out.is_empty());
    }
}
