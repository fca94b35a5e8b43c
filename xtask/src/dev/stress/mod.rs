//! The cache's reliability scenarios behind `cargo xtask stress` (issue 8; the command is
//! `commands::stress`), with counts large enough to shake out races, and small enough in
//! `cargo test` (which runs this same code through the binary,
//! `xtask/tests/it/reliability.rs`) to stay fast.
//!
//! Scenarios, each on a fresh cache root under the scratch dir:
//!
//! - `concurrency`: N worker *processes* (this binary, hidden `--worker`) each run R
//!   rounds of restore-then-save (as `ci` does), restore-touch-save (a new entry of the
//!   same key), fresh saves, read-only restores, `verify` and retention, all on the same
//!   few keys. Every restored tree must be byte-for-byte the tree saved for its key,
//!   every worker must finish (a hang is reported, never waited for), and afterwards every
//!   key must still be listed (the policy's limits allow all of them), every entry must
//!   verify, `tmp/` must be empty, and retention with a lower limit must keep exactly the
//!   most recently used entries.
//! - `crash`: a `cache put` process is killed with SIGKILL at a random moment of its save
//!   (before it writes, while it writes, or after the publishing rename: counted apart),
//!   or while parked just before the rename (the test gate, [`crate::cache::GATE_ENV`]). No partial entry may ever be
//!   listed, the next [`Cache::open`] must remove the leftovers, and a restore plus save
//!   afterwards must work.
//! - `corruption`: an entry is damaged (a file truncated, a byte flipped, a file deleted,
//!   its manifest or `entry.json` edited, or "bit rot": a byte flipped with the mtime
//!   put back); `cache verify` must report it, a restore must discard it and build
//!   without it, and a save afterwards must give a whole entry. Bit rot is the documented
//!   exception for restores: they check file set, sizes and mtimes, not bytes (so a move
//!   restore stays O(1)); only `cache verify` rehashes, and the scenario checks exactly
//!   that split.
//! - `full-disk`: saves into a small tmpfs (mounted here; needs root or CAP_SYS_ADMIN,
//!   else the scenario is reported as skipped, never as passed): larger than the disk
//!   guard allows (a clear warning, nothing written), past the real free space with the
//!   guard off (a real ENOSPC mid-copy), and past the inode limit. Each time nothing may
//!   be listed, `tmp/` must be empty and the cache must work once space is back.
//! - `hostile`: the cache root's metadata corrupted at random (`hostile.rs`: keys and
//!   paths that climb out of the root, numbers out of range, garbage, FIFOs and symlinks
//!   in place of metadata files, lock files, temp dirs and directories); no panic, no
//!   hang, nothing outside the root changed, and the next save of the key works.
//!
//! One submodule per scenario; this module holds what they share (the trees, the keys,
//! the checks every scenario makes afterwards) and [`Outcome`], what each reports.
//!
//! This module only drives the cache's public API and the binary's own commands; it never
//! changes how the cache works. Randomness is a seeded splitmix64 (the seed is printed,
//! so a failing run can be replayed with `--seed`).

mod concurrency;
mod corruption;
mod crash;
mod full_disk;
mod hostile;
mod proc;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::retention::Policy;
use crate::cache::{Cache, CacheKey, Stage};
use crate::support::fs as fsutil;

pub use concurrency::worker;

/// How long a scenario waits for a child it started before calling it hung. Generous: it
/// is a bound against deadlocks, not a performance assertion.
const HANG_BOUND: Duration = Duration::from_secs(300);

/// The scenarios, in the order a full run takes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Worker processes saving, restoring, verifying and pruning the same keys.
    Concurrency,
    /// Savers killed with SIGKILL before, during and after publishing.
    Crash,
    /// Entries damaged in six ways, then verified and restored.
    Corruption,
    /// Saves into a small tmpfs that fills up.
    FullDisk,
    /// `ci` interrupted by SIGINT, SIGTERM or SIGKILL at a random moment.
    Signals,
    /// Two `ci` runs started together on one checkout.
    SharedCheckout,
    /// The cache root's metadata corrupted at random, then used.
    Hostile,
}

impl Scenario {
    /// Every scenario, in run order.
    pub const ALL: [Scenario; 7] = [
        Scenario::Concurrency,
        Scenario::Crash,
        Scenario::Corruption,
        Scenario::FullDisk,
        Scenario::Signals,
        Scenario::SharedCheckout,
        Scenario::Hostile,
    ];
}

/// Run one scenario on a fresh subdir of `o.dir`. Never fails: what could not run is a
/// problem of the outcome (or, for a full disk that cannot be mounted, a skip).
pub fn run(s: Scenario, o: &Options) -> Outcome {
    match s {
        Scenario::Concurrency => concurrency::run(o),
        Scenario::Crash => crash::run(o),
        Scenario::Corruption => corruption::run(o),
        Scenario::FullDisk => full_disk::run(o),
        Scenario::Signals => proc::signals(&o.dir, o.signal_rounds, o.seed),
        Scenario::SharedCheckout => proc::shared_checkout(&o.dir, o.shared_rounds),
        Scenario::Hostile => hostile::run(o),
    }
}

/// What one scenario did and found.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Outcome {
    /// Scenario name (`concurrency`, `crash`, `corruption`, `full-disk`).
    pub name: String,
    /// What was run, for people (e.g. `8 processes × 200 rounds, 4 keys`).
    pub counts: String,
    /// Operations and checks performed, by kind.
    pub ops: BTreeMap<String, u64>,
    /// Everything that went wrong; empty = passed.
    pub problems: Vec<String>,
    /// Known limits observed (not failures), e.g. bit rot that only `verify` detects.
    pub notes: Vec<String>,
    /// Why the scenario could not run here (then it neither passed nor failed).
    pub skipped: Option<String>,
}

impl Outcome {
    fn new(name: &str, counts: String) -> Outcome {
        Outcome {
            name: name.into(),
            counts,
            ..Outcome::default()
        }
    }

    fn count(&mut self, what: &str) {
        *self.ops.entry(what.into()).or_default() += 1;
    }

    fn problem(&mut self, p: String) {
        // Bounded: a broken invariant repeats every round, the first few say it all.
        if self.problems.len() < 50 {
            self.problems.push(p);
        }
    }

    /// `pass`, `FAIL` or `skipped`.
    pub fn result(&self) -> &'static str {
        if self.skipped.is_some() {
            "skipped"
        } else if self.problems.is_empty() {
            "pass"
        } else {
            "FAIL"
        }
    }
}

/// The counts of one stress run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Scratch dir; each scenario gets a fresh subdir.
    pub dir: PathBuf,
    /// Concurrent worker processes (`concurrency`).
    pub procs: usize,
    /// Operations per worker (`concurrency`).
    pub rounds: usize,
    /// Keys the workers share (`concurrency`).
    pub keys: usize,
    /// Savers killed (`crash`).
    pub crashes: usize,
    /// Damaged entries per kind of damage (`corruption`).
    pub corruptions: usize,
    /// Rounds of the three full-disk cases (`full-disk`).
    pub full_disk: usize,
    /// Runs of `ci` interrupted by a signal (`signals`).
    pub signal_rounds: usize,
    /// Rounds of two runs on one checkout (`shared-checkout`).
    pub shared_rounds: usize,
    /// Rounds of random corruption (`hostile`).
    pub hostile: usize,
    /// Seed of every random choice.
    pub seed: u64,
}

/// One scenario's result for people: its line, its operation counts, and every skip
/// reason, note and problem, indented under it.
pub fn render(o: &Outcome) -> String {
    let mut s = format!("{:<12} {:<8} {}\n", o.name, o.result(), o.counts);
    let ops: Vec<String> = o.ops.iter().map(|(k, v)| format!("{k} {v}")).collect();
    if !ops.is_empty() {
        s += &format!("             {}\n", ops.join(", "));
    }
    if let Some(why) = &o.skipped {
        s += &format!("             skipped: {why}\n");
    }
    for n in &o.notes {
        s += &format!("             note: {n}\n");
    }
    for p in &o.problems {
        s += &format!("             problem: {p}\n");
    }
    s
}
// ---------------------------------------------------------------------------------------
// Trees and keys

/// Files and mean size of the small trees (`concurrency`, `corruption`).
const C_FILES: usize = 12;
const C_SIZE: usize = 1024;

/// The key of stress entry `i`. Every key has its own restore prefix, so a restore never
/// takes another key's entry as a partial hit.
fn key(i: usize) -> CacheKey {
    CacheKey::derive(
        Stage::Target,
        &format!("stress{i}"),
        vec![("stress-key".into(), i.to_string())],
        &fsutil::sha256_hex(format!("lockfile {i}")),
    )
}

/// The tree saved for key `i`: `files` files in three dirs, sizes and bytes that depend on
/// `i`, so a tree restored for the wrong key, or a torn one, never passes as whole.
fn expected(i: usize, files: usize, size: usize) -> BTreeMap<String, Vec<u8>> {
    (0..files)
        .map(|j| {
            let len = size / 2 + (i * 97 + j * 131) % size.max(1);
            let bytes = (0..len)
                .map(|k| ((i * 7 + j * 13 + k) % 251) as u8)
                .collect();
            (format!("d{}/f{j}.bin", j % 3), bytes)
        })
        .collect()
}

fn write_tree(dir: &Path, tree: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    for (rel, bytes) in tree {
        let p = dir.join(rel);
        fs::create_dir_all(p.parent().expect("files have a parent"))?;
        fs::write(&p, bytes).with_context(|| format!("write {}", p.display()))?;
    }
    Ok(())
}

fn read_tree(dir: &Path) -> Result<BTreeMap<String, Vec<u8>>> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e?;
        if !e.file_type().is_dir() {
            let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
            out.insert(rel, fs::read(e.path())?);
        }
    }
    Ok(out)
}

/// `None` when `dir` holds exactly `want`, else what differs.
fn differs(dir: &Path, want: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    let got = match read_tree(dir) {
        Ok(g) => g,
        Err(e) => return Some(format!("unreadable: {e:#}")),
    };
    if &got == want {
        return None;
    }
    let missing = want.keys().filter(|k| !got.contains_key(*k)).count();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).count();
    let changed = want
        .iter()
        .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
        .count();
    Some(format!(
        "{missing} files missing, {extra} unexpected, {changed} with other bytes"
    ))
}

/// A policy whose disk guard never fires and whose limits allow every stress key, so any
/// eviction during `concurrency` is a bug, not the policy at work.
fn roomy(keys: usize) -> Policy {
    Policy {
        max_entries_per_stage: keys + 4,
        max_age_days: 0,
        max_bytes: 0,
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
    }
}

fn entries_listed(root: &Path) -> Vec<String> {
    fs::read_dir(root.join("entries").join("target"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

fn tmp_leftovers(root: &Path) -> usize {
    fs::read_dir(root.join("tmp"))
        .map(|rd| rd.count())
        .unwrap_or(0)
}

/// Every dir under `entries/target/` must be a complete entry (metadata and data): a
/// partial entry there would be visible to readers.
fn partial_entries(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for name in entries_listed(root) {
        let d = root.join("entries/target").join(&name);
        for f in ["entry.json", "manifest.tsv", "data"] {
            if !d.join(f).exists() {
                out.push(format!("{name} has no {f}"));
            }
        }
    }
    out
}

/// Damage reported by `verify`, leaving out entries held by a running job.
fn damaged(cache: &Cache, content: bool) -> Vec<(String, String)> {
    cache
        .verify(content)
        .into_iter()
        .filter(|(_, _, d)| !d.is_empty() && !d.iter().all(|x| x.starts_with("leased")))
        .map(|(_, k, d)| (k, d.join("; ")))
        .collect()
}

fn fresh_dir(p: &Path) -> Result<PathBuf> {
    fsutil::remove_tree(p)?;
    fs::create_dir_all(p)?;
    Ok(p.to_path_buf())
}

/// This very binary. `/proc/self/exe` still names it when a rebuild replaced the file on
/// disk during a long run (then `current_exe` names a deleted path and spawning fails).
fn exe() -> PathBuf {
    let proc_exe = PathBuf::from("/proc/self/exe");
    if proc_exe.exists() {
        return proc_exe;
    }
    std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"))
}

/// Wait for `child` at most `bound`; kill it past that. `None` = it hung.
fn wait_bounded(child: &mut Child, bound: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if start.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}
