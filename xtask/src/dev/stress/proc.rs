//! `cargo xtask stress`: the process-lifecycle scenarios of issue 13 §2, run through this
//! very binary's `ci` on a small fixture chain written as real git repos:
//!
//! - `signals`: `ci` gets SIGINT, SIGTERM or SIGKILL at a random moment of its run
//!   (starting up, resolving the plan — stripping a registry-mode `Cargo.toml`,
//!   generating a `Cargo.lock` — or running a step that ignores SIGINT and SIGTERM and
//!   has a background child). Afterwards no process of the run may be left (every process
//!   whose working directory is in the fixture must die, bounded wait), a SIGINT/SIGTERM
//!   must end with exit 128 + the signal (or with the signal itself when it came before
//!   the handler was installed), leave the checkout exactly as committed and write a
//!   summary marked cancelled that reports no repo ok or failed that did not finish; after
//!   a SIGKILL, the next `ci` must reconcile the checkout back to exactly as committed.
//! - `shared-checkout`: two `ci --force` runs start together on one checkout, with
//!   `CI=true` (target dirs move in and out of the cache) and in registry mode. Both must
//!   pass (the second waits for the first: a step checking that `target/` is there must
//!   never find it moved away), and afterwards the `Cargo.toml` must still have its
//!   `[patch]` with no backup or lockfile left.
//!
//! One scenario module of [`super`]; it only drives the binary.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::Outcome;
use crate::dev::rng::Rng;
use crate::support::fs as fsutil;

/// A bound against hangs, not a performance assertion.
const HANG_BOUND: Duration = Duration::from_secs(300);

/// `app`'s manifest as committed: a sibling patch that registry mode strips.
const APP_TOML: &str = "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n\n[patch.crates-io]\nbase = { path = \"../base\" }\n";
const BASE_TOML: &str = "[package]\nname = \"base\"\nversion = \"0.1.0\"\nedition = \"2021\"\npublish = false\n\n[workspace]\n";
const ROOMY: &str = "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n[preflight]\nmin-free-gb = 0\n";

fn note(out: &mut Outcome, what: &str) {
    *out.ops.entry(what.into()).or_default() += 1;
}

fn problem(out: &mut Outcome, p: String) {
    if out.problems.len() < 50 {
        out.problems.push(p);
    }
}

/// Write the fixture chain under `dir` with `app`'s steps as TOML; returns the manifest.
fn write_fixture(dir: &Path, app_steps: &str) -> Result<PathBuf> {
    for (name, toml) in [("base", BASE_TOML), ("app", APP_TOML)] {
        let d = dir.join(name);
        fs::create_dir_all(d.join("src"))?;
        fs::write(d.join("Cargo.toml"), toml)?;
        fs::write(d.join("src/lib.rs"), "//! Fixture.\n")?;
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "-A"],
            &[
                "-c",
                "user.name=s",
                "-c",
                "user.email=s@example.invalid",
                "commit",
                "-q",
                "-m",
                "fixture",
            ],
        ] {
            let st = Command::new("git").args(args).current_dir(&d).status()?;
            anyhow::ensure!(st.success(), "git {args:?} in {}", d.display());
        }
    }
    let manifest = dir.join("chain.toml");
    fs::write(
        &manifest,
        format!("root = \".\"\n[defaults]\ntimeout = 600\n\n[[repo]]\nname = \"base\"\ngithub = \"s/base\"\nsteps = []\n\n[[repo]]\nname = \"app\"\ngithub = \"s/app\"\ndeps = \"registry\"\nsteps = {app_steps}\n{ROOMY}"),
    )?;
    Ok(manifest)
}

/// What is wrong with `app`'s checkout compared with the commit (`None`: nothing).
fn checkout_problem(dir: &Path) -> Option<String> {
    let app = dir.join("app");
    let toml = fs::read_to_string(app.join("Cargo.toml")).unwrap_or_default();
    if toml != APP_TOML {
        return Some(format!("app/Cargo.toml is not as committed:\n{toml}"));
    }
    let mut extra: Vec<String> = fs::read_dir(&app)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ![".git", "Cargo.toml", "src", "target"].contains(&n.as_str()))
        .collect();
    extra.sort();
    (!extra.is_empty()).then(|| format!("files left in app/: {extra:?}"))
}

/// `ci --quiet` on the fixture, output to `<dir>/<tag>.log`.
fn start_ci(dir: &Path, tag: &str, extra: &[&str], env: &[(&str, &str)]) -> Result<Child> {
    let log = fs::File::create(dir.join(format!("{tag}.log")))?;
    let mut c = Command::new(exe());
    c.args(["ci", "--quiet", "--manifest"])
        .arg(dir.join("chain.toml"))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--run-dir")
        .arg(dir.join(format!("run-{tag}")))
        .args(extra)
        .envs(env.iter().copied())
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("GITHUB_ACTIONS")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    c.spawn().context("start ci")
}

/// This binary (see `dev::stress`: `/proc/self/exe` survives a rebuild during a run).
fn exe() -> PathBuf {
    let p = PathBuf::from("/proc/self/exe");
    if p.exists() {
        p
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"))
    }
}

fn wait_bounded(child: &mut Child) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > HANG_BOUND {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Processes (not zombies) whose working directory is inside `dir`.
fn processes_in(dir: &Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let in_dir = fs::read_link(e.path().join("cwd")).is_ok_and(|c| c.starts_with(dir));
        let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
        if in_dir && !zombie {
            let cmd = fs::read(e.path().join("cmdline")).unwrap_or_default();
            out.push((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")));
        }
    }
    out
}

/// Wait (bounded) until no process runs in `dir`; returns the survivors (then killed).
fn orphans(dir: &Path) -> Vec<(i32, String)> {
    let start = Instant::now();
    loop {
        let left = processes_in(dir);
        if left.is_empty() || start.elapsed() > HANG_BOUND {
            for (pid, _) in &left {
                // SAFETY: kill(2) of a stray process of this scenario's own fixture.
                unsafe { libc::kill(*pid, libc::SIGKILL) };
            }
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// signals

/// The step: exits at once when `quick` exists; else records itself, starts a background
/// child and waits with SIGINT and SIGTERM ignored (only SIGKILL ends it).
fn hold_step(dir: &Path) -> String {
    let m = dir.display();
    format!(
        "[{{ name = \"hold\", command = [\"sh\", \"-c\", 'trap \"\" INT TERM; [ -f {m}/quick ] && exit 0; sleep 300 >/dev/null 2>&1 & echo ready > {m}/ready; wait'] }}]"
    )
}

/// `signals`: `rounds` runs of `ci`, each sent SIGINT, SIGTERM or SIGKILL at a random
/// moment (see the module docs).
pub fn signals(scratch: &Path, rounds: usize, seed: u64) -> Outcome {
    let mut out = Outcome {
        name: "signals".into(),
        counts: format!("{rounds} runs of ci, SIGINT/SIGTERM/SIGKILL at a random moment"),
        ..Outcome::default()
    };
    let mut rng = Rng::new(seed);
    for round in 0..rounds {
        if let Err(e) = signal_round(
            &scratch.join(format!("signals/{round}")),
            &mut rng,
            &mut out,
        ) {
            problem(&mut out, format!("round {round}: could not run: {e:#}"));
        }
    }
    out
}

fn signal_round(dir: &Path, rng: &mut Rng, out: &mut Outcome) -> Result<()> {
    fsutil::remove_tree(dir)?;
    fs::create_dir_all(dir)?;
    let dir = &fs::canonicalize(dir)?;
    write_fixture(dir, &hold_step(dir))?;
    let (sig, name) = [
        (libc::SIGINT, "SIGINT"),
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGKILL, "SIGKILL"),
    ][rng.below(3) as usize];
    let mut ci = start_ci(dir, "run", &[], &[])?;
    // Start-up (the first 50 ms), resolution (strip, lockfile: the first few hundred
    // ms) and the running step, each about as often.
    let bound = [50, 400, 2500][rng.below(3) as usize];
    std::thread::sleep(Duration::from_millis(rng.below(bound)));
    let moment = if dir.join("ready").exists() {
        "while the step ran"
    } else {
        "before the step ran"
    };
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(ci.id() as i32, sig) };
    let Some(st) = wait_bounded(&mut ci) else {
        problem(out, format!("{name} ({moment}): ci did not end"));
        return Ok(());
    };
    note(out, &format!("{name} {moment}"));
    for (pid, cmd) in orphans(dir) {
        problem(
            out,
            format!("{name} ({moment}): process {pid} `{cmd}` outlived ci"),
        );
    }
    if sig == libc::SIGKILL {
        return reconcile_after_kill(dir, name, moment, out);
    }
    check_cancelled(dir, sig, name, moment, st, out);
    Ok(())
}

/// After SIGINT/SIGTERM: the exit, the checkout and the summary.
fn check_cancelled(
    dir: &Path,
    sig: i32,
    name: &str,
    moment: &str,
    st: ExitStatus,
    out: &mut Outcome,
) {
    use std::os::unix::process::ExitStatusExt;
    let log = fs::read_to_string(dir.join("run.log")).unwrap_or_default();
    if st.signal() == Some(sig) {
        // Before the handler was installed: the default action, nothing changed yet.
        note(out, "signal before the handler");
    } else if st.code() != Some(128 + sig) {
        problem(
            out,
            format!(
                "{name} ({moment}): ci exited with {st}, not {}:\n{log}",
                128 + sig
            ),
        );
    }
    if let Some(p) = checkout_problem(dir) {
        problem(out, format!("{name} ({moment}): {p}"));
    }
    if st.signal().is_some() {
        return;
    }
    let summary: serde_json::Value = fs::read(dir.join("run-run/summary.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    if summary["cancelled"] != name {
        problem(
            out,
            format!("{name} ({moment}): summary not marked cancelled: {summary}"),
        );
    }
    let app = summary["repos"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["name"] == "app");
    if !app.is_some_and(|a| a["status"] == "skipped" && a["cancelled"] == true) {
        problem(
            out,
            format!("{name} ({moment}): app not reported as cancelled: {app:?}"),
        );
    }
}

/// After SIGKILL: the next `ci` (its step quick now) must leave the checkout as committed.
fn reconcile_after_kill(dir: &Path, name: &str, moment: &str, out: &mut Outcome) -> Result<()> {
    if checkout_problem(dir).is_some() {
        note(out, "leftovers reconciled by the next run");
    }
    fs::write(dir.join("quick"), "")?;
    let mut next = start_ci(dir, "next", &[], &[])?;
    let st = wait_bounded(&mut next);
    if !st.is_some_and(|s| s.success()) {
        let log = fs::read_to_string(dir.join("next.log")).unwrap_or_default();
        problem(
            out,
            format!("{name} ({moment}): the next ci ended with {st:?}:\n{log}"),
        );
    }
    if let Some(p) = checkout_problem(dir) {
        problem(out, format!("{name} ({moment}), after the next ci: {p}"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// shared-checkout

/// `shared-checkout`: `rounds` times, two `ci --force` runs start together on one
/// checkout (see the module docs).
pub fn shared_checkout(scratch: &Path, rounds: usize) -> Outcome {
    let mut out = Outcome {
        name: "shared-checkout".into(),
        counts: format!("{rounds} rounds of two ci runs started together on one checkout"),
        ..Outcome::default()
    };
    let run = || -> Result<PathBuf> {
        let dir = scratch.join("shared-checkout");
        fsutil::remove_tree(&dir)?;
        fs::create_dir_all(&dir)?;
        let dir = fs::canonicalize(&dir)?;
        let steps = "[\"build\", { name = \"uses-target\", command = [\"sh\", \"-c\", \"sleep 0.3; test -d target/debug/deps || { echo target/ is gone; exit 1; }\"] }]";
        write_fixture(&dir, steps)?;
        Ok(dir)
    };
    let dir = match run() {
        Ok(d) => d,
        Err(e) => {
            problem(&mut out, format!("could not set up: {e:#}"));
            return out;
        }
    };
    for round in 0..rounds {
        if let Err(e) = shared_round(&dir, round, &mut out) {
            problem(&mut out, format!("round {round}: could not run: {e:#}"));
        }
    }
    out
}

fn shared_round(dir: &Path, round: usize, out: &mut Outcome) -> Result<()> {
    let env = [("CI", "true")];
    let mut a = start_ci(dir, &format!("a{round}"), &["--force"], &env)?;
    let mut b = start_ci(dir, &format!("b{round}"), &["--force"], &env)?;
    for (tag, child) in [("a", &mut a), ("b", &mut b)] {
        let st = wait_bounded(child);
        let log = fs::read_to_string(dir.join(format!("{tag}{round}.log"))).unwrap_or_default();
        if !st.is_some_and(|s| s.success()) {
            problem(
                out,
                format!("round {round}: run {tag} ended with {st:?}:\n{log}"),
            );
        }
        if log.contains("waiting for checkout") {
            note(out, "a run waited for the other");
        }
        note(out, "runs");
    }
    if let Some(p) = checkout_problem(dir) {
        problem(out, format!("round {round}: {p}"));
    }
    for (pid, cmd) in orphans(&dir.join("app")) {
        problem(
            out,
            format!("round {round}: process {pid} `{cmd}` outlived both runs"),
        );
    }
    Ok(())
}
