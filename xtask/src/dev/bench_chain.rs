//! `cargo xtask bench chain`: what a chain build costs, one run, side by side (issue 17):
//! the sample chain built by `ci` with per-repo target dirs and no compiler cache, by `ci`
//! with the shared compiler cache (sccache), and by the bare loop of cargo commands in each
//! repo (the seeds' way: every step's command, in order, in each checkout's own `target/`),
//! and the same loop with one `CARGO_TARGET_DIR` for every repo (cargo's shared target
//! dir, the other way to compile a shared crate once).
//! Each side starts from its own fresh copy of the sample and its own empty cache root, and
//! goes through three phases: cold, warm after a one-line change in the most upstream
//! crate (`bllvm-primitives`), and unchanged.
//!
//! Counted per phase: wall seconds; CPU seconds of every descendant (`getrusage` of the
//! children: this process becomes a child subreaper first, so the sccache server, which
//! its starter does not wait for, is reaped and counted here too); the crate compilations
//! cargo announced (`Compiling x v…` and `Checking x v…` lines of every step's output,
//! total and distinct by name and version); and, with the compiler cache, sccache's hits
//! and misses from `summary.json`, so the compilations rustc really ran are the
//! announcements less the hits. A benchmark, never a test: nothing here asserts a time.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::engine::manifest::Manifest;

/// Options of `bench chain`.
#[derive(Debug, Clone)]
pub struct ChainOptions {
    /// Scratch dir (one copy of the sample chain and one cache root per side).
    pub dir: PathBuf,
    /// Markdown file whose `<!-- bench:chain -->` section receives the table.
    pub record: Option<PathBuf>,
}

/// The three sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// `ci`, per-repo target dirs, `compiler-cache = "none"`.
    Plain,
    /// `ci`, per-repo target dirs, `compiler-cache = "sccache"`.
    Shared,
    /// The bare loop of cargo commands.
    Loop,
    /// The bare loop with one target dir for every repo (`CARGO_TARGET_DIR`): cargo's own
    /// way to compile a shared crate once, the alternative to the compiler cache.
    LoopShared,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Plain => "`ci`, per-repo target dirs, no compiler cache",
            Side::Shared => "`ci`, per-repo target dirs + shared compiler cache (sccache)",
            Side::Loop => "bare loop of cargo commands in each repo",
            Side::LoopShared => "bare loop, one shared `CARGO_TARGET_DIR`",
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Side::Plain => "plain",
            Side::Shared => "sccache",
            Side::Loop => "loop",
            Side::LoopShared => "loop-shared",
        }
    }
}

/// What one phase of one side cost.
#[derive(Debug, Clone, Default)]
struct Figures {
    wall: f64,
    cpu: f64,
    compiling: usize,
    checking: usize,
    distinct: usize,
    hits: Option<u64>,
    misses: Option<u64>,
}

/// The phases, in order.
const PHASES: [&str; 3] = [
    "cold",
    "warm (one-line change in bllvm-primitives)",
    "unchanged",
];

/// Run the benchmark and print (and optionally record) the table.
///
/// Errors: sccache is not installed, the sample chain cannot be copied, or a build fails.
pub fn run(o: &ChainOptions) -> Result<ExitCode> {
    if crate::engine::compiler_cache::find_sccache().is_none() {
        bail!(
            "bench chain compares against the shared compiler cache: install sccache with `{}`",
            crate::engine::compiler_cache::INSTALL
        );
    }
    become_subreaper();
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf();
    let sample = workspace.join(crate::dev::demo::SAMPLE_DIR);
    crate::support::fs::remove_tree(&o.dir)?;
    let load = load_average();
    let mut rows = Vec::new();
    for side in [Side::Plain, Side::Shared, Side::Loop, Side::LoopShared] {
        let dir = o.dir.join(side.slug());
        let manifest = crate::dev::demo::copy_sample(&sample, &dir)?;
        if matches!(side, Side::Plain | Side::Shared) {
            let mode = if side == Side::Shared {
                "sccache"
            } else {
                "none"
            };
            let mut text = std::fs::read_to_string(&manifest)?;
            // The disk guard at 95%: a shared machine above the default 80% would skip
            // the saves, and the cold run would not pay for them.
            text +=
                &format!("\n[cache]\ncompiler-cache = \"{mode}\"\ndisk-max-used-percent = 95\n");
            std::fs::write(&manifest, text)?;
        }
        for (i, phase) in PHASES.iter().enumerate() {
            if i == 1 {
                one_line_change(&manifest)?;
            }
            println!("bench chain: {} — {phase}", side.label());
            let f = match side {
                Side::Loop => measure(|| run_loop(&manifest, &dir, None))?,
                Side::LoopShared => {
                    measure(|| run_loop(&manifest, &dir, Some(&dir.join("shared-target"))))?
                }
                _ => measure(|| run_ci(&manifest, &dir, i))?,
            };
            rows.push((side, *phase, f));
        }
    }
    let body = render(&rows, &load);
    println!("{body}");
    if let Some(path) = &o.record {
        crate::dev::bench::record_section(path, "chain", &body)?;
        println!("recorded in {}", path.display());
    }
    Ok(crate::support::exit::Exit::Ok.into())
}

/// Append one line to the most upstream crate's library (a new public constant): its
/// content changes, so it and everything downstream of it compiles again.
fn one_line_change(manifest: &Path) -> Result<()> {
    let lib = manifest
        .parent()
        .context("the manifest has a directory")?
        .join("bllvm-primitives/src/lib.rs");
    let text = std::fs::read_to_string(&lib)?;
    // Before the test module (clippy's `items_after_test_module` is denied).
    let line =
        "/// Added by `bench chain` (a one-line change).\npub const BENCH_CHANGE: u32 = 1;\n\n";
    let at = text.find("#[cfg(test)]").unwrap_or(text.len());
    let text = format!("{}{line}{}", &text[..at], &text[at..]);
    std::fs::write(&lib, text).with_context(|| format!("change {}", lib.display()))
}

/// Run `f` (which returns the compilations it saw) and add wall and CPU seconds.
fn measure(f: impl FnOnce() -> Result<Figures>) -> Result<Figures> {
    let cpu0 = children_cpu();
    let t = Instant::now();
    let mut figures = f()?;
    figures.wall = t.elapsed().as_secs_f64();
    reap_orphans();
    figures.cpu = children_cpu() - cpu0;
    Ok(figures)
}

/// `xtask ci` on the copy (phase `i`); compilations from its step logs, sccache's counts
/// from its summary.
fn run_ci(manifest: &Path, dir: &Path, i: usize) -> Result<Figures> {
    let exe = std::env::current_exe().context("find the xtask binary")?;
    let run_dir = dir.join(format!("runs/{i}"));
    let st = Command::new(exe)
        .args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .arg("--run-dir")
        .arg(&run_dir)
        .env_remove("RUSTC_WRAPPER")
        .stdout(Stdio::null())
        .status()
        .context("run `xtask ci`")?;
    if !st.success() {
        bail!(
            "`xtask ci` failed on the sample chain (see {})",
            run_dir.display()
        );
    }
    let mut text = String::new();
    for e in walkdir::WalkDir::new(&run_dir).into_iter().flatten() {
        if e.path().extension().is_some_and(|x| x == "log") {
            text += &std::fs::read_to_string(e.path()).unwrap_or_default();
        }
    }
    let mut f = count_compilations(&text);
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run_dir.join("summary.json"))?)?;
    f.hits = summary["compiler_cache"]["hits"].as_u64();
    f.misses = summary["compiler_cache"]["misses"].as_u64();
    Ok(f)
}

/// The bare loop: every step's command as `ci` would run it, in plan order, each in its
/// checkout with cargo's default target dir (or `shared` for all); compilations from their
/// output.
fn run_loop(manifest_path: &Path, dir: &Path, shared: Option<&Path>) -> Result<Figures> {
    let manifest = Manifest::load(manifest_path)?;
    let commands = crate::dev::bench_noop::loop_commands(&manifest, &dir.join("cache"))?;
    let mut text = String::new();
    for (cwd, program, args, env) in &commands {
        let mut c = Command::new(program);
        if let Some(target) = shared {
            c.env("CARGO_TARGET_DIR", target);
        }
        let out = c
            .args(args)
            .current_dir(cwd)
            .envs(env)
            .env_remove("RUSTC_WRAPPER")
            .output()
            .with_context(|| format!("run {program} in {}", cwd.display()))?;
        text += &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            bail!("`{program} {}` failed in {}", args.join(" "), cwd.display());
        }
    }
    Ok(count_compilations(&text))
}

/// Count cargo's `Compiling name vX` and `Checking name vX` lines in `text`, and the
/// distinct `name vX` among them.
fn count_compilations(text: &str) -> Figures {
    let mut f = Figures::default();
    let mut distinct = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let verb = words.next();
        let (Some(name), Some(version)) = (words.next(), words.next()) else {
            continue;
        };
        if !version.starts_with('v') {
            continue;
        }
        match verb {
            Some("Compiling") => f.compiling += 1,
            Some("Checking") => f.checking += 1,
            _ => continue,
        }
        distinct.insert(format!("{name} {version}"));
    }
    f.distinct = distinct.len();
    f
}

/// Make this process the reaper of its orphaned descendants (Linux
/// `PR_SET_CHILD_SUBREAPER`), so a daemon a child starts (the sccache server) is reparented
/// here and its CPU time counts once it is reaped. Best effort.
fn become_subreaper() {
    // SAFETY: prctl with an integer option; no memory is passed.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Reap every orphan reparented here that has exited, waiting up to 10 s for them (the
/// sccache server exits just after `ci` stops it).
fn reap_orphans() {
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let mut status = 0;
        // SAFETY: waitpid on any child with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            return; // ECHILD: no child left
        }
        if pid == 0 {
            if Instant::now() > deadline {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

/// User + system CPU seconds of every reaped descendant so far.
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// `/proc/loadavg`'s first three fields and the core count, for the record.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!(
        "load average {} at the start, {cores} cores",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// The table as Markdown, with the ratios the targets name.
fn render(rows: &[(Side, &str, Figures)], load: &str) -> String {
    let mut s = String::from(
        "| side | phase | wall (s) | CPU (s) | `Compiling` | `Checking` | distinct crates | sccache hits / misses | rustc runs |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for (side, phase, f) in rows {
        let cache = match (f.hits, f.misses) {
            (Some(h), Some(m)) => format!("{h} / {m}"),
            _ => "–".to_owned(),
        };
        let runs = (f.compiling + f.checking).saturating_sub(f.hits.unwrap_or(0) as usize);
        s += &format!(
            "| {} | {phase} | {:.1} | {:.1} | {} | {} | {} | {cache} | {runs} |\n",
            side.label(),
            f.wall,
            f.cpu,
            f.compiling,
            f.checking,
            f.distinct,
        );
    }
    let cold = |side: Side| rows.iter().find(|(s, p, _)| *s == side && *p == PHASES[0]);
    if let (Some((_, _, plain)), Some((_, _, shared))) = (cold(Side::Plain), cold(Side::Shared)) {
        let runs =
            (shared.compiling + shared.checking).saturating_sub(shared.hits.unwrap_or(0) as usize);
        s += &format!(
            "\nCold wall, shared compiler cache / per-repo target dirs alone: **{:.2}×** (target ≤ 0.6×); CPU {:.2}×. Cold rustc runs with the compiler cache / distinct crates: **{:.2}×** (target ≤ 1.2×); without it: {:.2}×.\n",
            shared.wall / plain.wall,
            shared.cpu / plain.cpu,
            runs as f64 / shared.distinct.max(1) as f64,
            (plain.compiling + plain.checking) as f64 / plain.distinct.max(1) as f64,
        );
    }
    s += &format!(
        "\nOne run of each, {load} (the machine is shared with other sessions). Command: `cargo xtask bench chain --record BENCHMARKS.md`.\n"
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compilations_are_counted_from_cargos_lines() {
        let text = "   Compiling serde v1.0.229\n    Checking serde v1.0.229\n   Compiling bllvm-sdk v0.1.0 (/x/bllvm-sdk)\nwarning: Compiling is a word\n    Finished `dev` profile\n";
        let f = count_compilations(text);
        assert_eq!((f.compiling, f.checking, f.distinct), (2, 1, 2));
    }
}
