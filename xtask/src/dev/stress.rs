//! `cargo xtask stress`: the cache's reliability scenarios (issue 8), with counts large
//! enough to shake out races, and small enough in `cargo test` (which runs this same code
//! through the binary, `xtask/tests/it/reliability.rs`) to stay fast.
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
//!
//! This module only drives the cache's public API and the binary's own commands; it never
//! changes how the cache works. Randomness is a seeded splitmix64 (the seed is printed,
//! so a failing run can be replayed with `--seed`).

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::retention::Policy;
use crate::cache::{Cache, CacheKey, Restore, Save, Stage};
use crate::flags::{Format, StressArgs, StressScenario};
use crate::support::fs as fsutil;

/// How long a scenario waits for a child it started before calling it hung. Generous: it
/// is a bound against deadlocks, not a performance assertion.
const HANG_BOUND: Duration = Duration::from_secs(300);

/// A seeded splitmix64: small, deterministic, good enough to pick operations.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator starting at `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
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

impl From<super::stress_proc::Report> for Outcome {
    fn from(r: super::stress_proc::Report) -> Outcome {
        Outcome {
            name: r.name,
            counts: r.counts,
            ops: r.ops,
            problems: r.problems,
            ..Outcome::default()
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
    /// Seed of every random choice.
    pub seed: u64,
}

/// `cargo xtask stress` (and its hidden worker mode). Exit codes: 0 every scenario that
/// could run passed; 1 one failed; 2 the run could not start.
pub fn cli(a: &StressArgs) -> Result<ExitCode> {
    let dir = a
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/bllvm-ci/stress"));
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    if let Some(id) = a.worker {
        return worker(&dir, id, a.rounds, a.keys, seed);
    }
    let opts = Options {
        dir: std::path::absolute(&dir).unwrap_or(dir),
        procs: a.procs,
        rounds: a.rounds,
        keys: a.keys.max(1),
        crashes: a.crashes,
        corruptions: a.corruptions,
        full_disk: a.full_disk,
        seed,
    };
    let all = [
        StressScenario::Concurrency,
        StressScenario::Crash,
        StressScenario::Corruption,
        StressScenario::FullDisk,
        StressScenario::Signals,
        StressScenario::SharedCheckout,
    ];
    let chosen: Vec<StressScenario> = if a.scenario.is_empty() {
        all.to_vec()
    } else {
        all.into_iter().filter(|s| a.scenario.contains(s)).collect()
    };
    if a.format == Format::Text {
        println!(
            "stress: seed {seed} (replay with --seed {seed}), scratch {}",
            opts.dir.display()
        );
    }
    let mut outcomes = Vec::new();
    for s in chosen {
        let o = match s {
            StressScenario::Concurrency => concurrency(&opts),
            StressScenario::Crash => crash(&opts),
            StressScenario::Corruption => corruption(&opts),
            StressScenario::FullDisk => full_disk(&opts),
            StressScenario::Signals => {
                super::stress_proc::signals(&opts.dir, a.signal_rounds, seed).into()
            }
            StressScenario::SharedCheckout => {
                super::stress_proc::shared_checkout(&opts.dir, a.shared_rounds).into()
            }
        };
        if a.format == Format::Text {
            print!("{}", render_one(&o));
        }
        outcomes.push(o);
    }
    if a.format == Format::Json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "schema_version": 1,
                "seed": seed,
                "scenarios": outcomes,
            }))?
        );
    }
    Ok(if outcomes.iter().any(|o| !o.problems.is_empty()) {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn render_one(o: &Outcome) -> String {
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

// ---------------------------------------------------------------------------------------
// concurrency

/// Files and mean size of the concurrency trees.
const C_FILES: usize = 12;
const C_SIZE: usize = 1024;

fn concurrency(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "concurrency",
        format!(
            "{} processes × {} rounds, {} keys",
            o.procs, o.rounds, o.keys
        ),
    );
    if let Err(e) = concurrency_inner(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

fn concurrency_inner(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("concurrency"))?;
    let root = base.join("cache");
    // Seed every key, so "no entry lost" has something to check from the first round.
    {
        let cache = Cache::open(&root)?.with_policy(roomy(o.keys));
        for i in 0..o.keys {
            let src = base.join(format!("seed{i}"));
            write_tree(&src, &expected(i, C_FILES, C_SIZE))?;
            cache.save(&key(i), &src, &|_| false)?;
            fsutil::remove_tree(&src)?;
        }
    }
    let mut children = Vec::new();
    for id in 0..o.procs {
        let child = Command::new(exe())
            .args(["stress", "--worker", &id.to_string(), "--dir"])
            .arg(&base)
            .args(["--rounds", &o.rounds.to_string()])
            .args(["--keys", &o.keys.to_string()])
            .args(["--seed", &o.seed.wrapping_add(id as u64).to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn a worker")?;
        children.push(child);
    }
    let start = Instant::now();
    for (id, mut c) in children.into_iter().enumerate() {
        let left = HANG_BOUND.saturating_sub(start.elapsed());
        match wait_bounded(&mut c, left) {
            None => out.problem(format!(
                "worker {id} did not finish within {}s: a deadlock or a hang",
                HANG_BOUND.as_secs()
            )),
            Some(st) if !st.success() => {
                let mut err = String::new();
                if let Some(mut e) = c.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                out.problem(format!("worker {id} exited with {st}: {}", err.trim()));
            }
            Some(_) => {}
        }
        match fs::read(base.join(format!("worker{id}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice::<Outcome>(&b).ok())
        {
            Some(w) => {
                for (k, v) in w.ops {
                    *out.ops.entry(k).or_default() += v;
                }
                for p in w.problems {
                    out.problem(format!("worker {id}: {p}"));
                }
            }
            None => out.problem(format!("worker {id} wrote no report")),
        }
    }
    // After the storm: everything whole, nothing lost, nothing left over.
    let cache = Cache::open(&root)?.with_policy(roomy(o.keys));
    for (k, d) in damaged(&cache, true) {
        out.problem(format!("after the run, entry {k} is damaged: {d}"));
    }
    out.count("final verify");
    for i in 0..o.keys {
        if !cache.contains(&key(i)) {
            out.problem(format!(
                "entry {} was lost, though the retention limits keep every key",
                key(i).key
            ));
        }
    }
    for p in partial_entries(&root) {
        out.problem(format!("partial entry listed: {p}"));
    }
    if tmp_leftovers(&root) > 0 {
        out.problem(format!(
            "{} tmp/ leftovers after every worker ended and the cache was reopened",
            tmp_leftovers(&root)
        ));
    }
    // Retention with a lower limit keeps exactly the most recently used entries.
    let limit = 2usize.min(o.keys);
    let mut by_use: Vec<(u64, String)> = cache
        .list()
        .into_iter()
        .map(|l| (l.usage.last_used_unix, l.info.key))
        .collect();
    by_use.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let want: Vec<String> = by_use.into_iter().take(limit).map(|(_, k)| k).collect();
    let tight = Cache::open(&root)?.with_policy(Policy {
        max_entries_per_stage: limit,
        ..roomy(o.keys)
    });
    tight.apply_retention(false);
    let mut kept: Vec<String> = tight.list().into_iter().map(|l| l.info.key).collect();
    let mut want_sorted = want.clone();
    want_sorted.sort();
    kept.sort();
    if kept != want_sorted {
        out.problem(format!(
            "retention to {limit} entries kept {kept:?}, expected the most recently used {want_sorted:?}"
        ));
    }
    out.count("final retention");
    Ok(())
}

/// The hidden worker of `concurrency`: `rounds` random operations on the cache at
/// `<dir>/cache`, its report written to `<dir>/worker<id>.json`.
fn worker(dir: &Path, id: usize, rounds: usize, keys: usize, seed: u64) -> Result<ExitCode> {
    let root = dir.join("cache");
    let scratch = fresh_dir(&dir.join(format!("w{id}")))?;
    let mut rng = Rng::new(seed);
    let mut out = Outcome::new("worker", format!("{rounds} rounds"));
    let trees: Vec<_> = (0..keys).map(|i| expected(i, C_FILES, C_SIZE)).collect();
    for round in 0..rounds {
        let i = rng.below(keys as u64) as usize;
        let k = key(i);
        let dst = scratch.join(format!("t{round}"));
        // A new `Cache` per operation, as separate jobs would have.
        let cache = Cache::open(&root)?.with_policy(roomy(keys));
        let op = rng.below(100);
        let r: Result<()> = (|| {
            match op {
                0..=39 => {
                    // Restore, maybe rebuild a file (same bytes, new mtime: a new entry of
                    // the same key), save: what `ci` does for each repo.
                    let touch = op >= 25;
                    out.count(if touch {
                        "restore-touch-save"
                    } else {
                        "restore-save"
                    });
                    match cache.restore(&k, &dst, false)? {
                        Restore::Hit { .. } => {
                            out.count("restored whole");
                            if let Some(d) = differs(&dst, &trees[i]) {
                                out.problem(format!("restored {} is not whole: {d}", k.key));
                            }
                        }
                        Restore::Miss => write_tree(&dst, &trees[i])?,
                        other => out.problem(format!("restore of {} gave {other:?}", k.key)),
                    }
                    if touch {
                        let (rel, bytes) = trees[i].iter().nth(round % C_FILES).expect("non-empty");
                        let p = dst.join(rel);
                        fs::write(&p, bytes)?;
                        let later = std::time::SystemTime::now() + Duration::from_secs(1);
                        fs::File::options()
                            .write(true)
                            .open(&p)?
                            .set_modified(later)?;
                    }
                    cache.save(&k, &dst, &|_| false)?;
                }
                40..=54 => {
                    out.count("fresh-save");
                    write_tree(&dst, &trees[i])?;
                    cache.save(&k, &dst, &|_| false)?;
                }
                55..=69 => {
                    out.count("read-only-restore");
                    let ro = Cache::open_read_only(&root);
                    if let Restore::Hit { .. } = ro.restore(&k, &dst, false)? {
                        out.count("restored whole");
                        if let Some(d) = differs(&dst, &trees[i]) {
                            out.problem(format!(
                                "read-only restore of {} is not whole: {d}",
                                k.key
                            ));
                        }
                    }
                }
                70..=84 => {
                    out.count("verify");
                    for (k, d) in damaged(&cache, true) {
                        out.problem(format!("verify found {k} damaged: {d}"));
                    }
                }
                _ => {
                    out.count("prune");
                    for e in cache.apply_retention(false) {
                        out.problem(format!(
                            "retention evicted {} ({}) though the limits keep every key",
                            e.key, e.reason
                        ));
                    }
                }
            }
            Ok(())
        })();
        if let Err(e) = r {
            out.problem(format!("round {round}: {e:#}"));
        }
        for n in cache.take_notes() {
            if n.contains("damaged") {
                out.problem(format!("round {round}: {n}"));
            }
        }
        fsutil::remove_tree(&dst)?;
    }
    let _ = fsutil::remove_tree(&scratch);
    fs::write(
        dir.join(format!("worker{id}.json")),
        serde_json::to_vec(&out)?,
    )?;
    Ok(ExitCode::SUCCESS)
}

// ---------------------------------------------------------------------------------------
// crash

/// Files and mean size of the crash trees: big enough that a save takes some milliseconds,
/// so random kill times land before, during and after the rename.
const K_FILES: usize = 120;
const K_SIZE: usize = 8 * 1024;

/// A manifest beside the cache root whose `[cache]` table turns the disk guard off, so a
/// `cache put` saves whatever the machine's disk usage (the scenario is about crashes).
const ROOMY_MANIFEST: &str = "[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n\n[[repo]]\nname = \"stress\"\ngithub = \"stress/stress\"\nkind = \"docs\"\n";

fn put_cmd(root: &Path, k: &CacheKey, src: &Path) -> Command {
    let manifest = root.with_extension("toml");
    if !manifest.exists() {
        let _ = fs::write(&manifest, ROOMY_MANIFEST);
    }
    let mut c = Command::new(exe());
    c.args(["cache", "put", "--cache-dir"])
        .arg(root)
        .arg("--manifest")
        .arg(manifest)
        .args(["--key", &k.key, "--src"])
        .arg(src)
        .env_remove(crate::cache::GATE_ENV)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn crash(o: &Options) -> Outcome {
    let mut out = Outcome::new("crash", format!("{} savers killed with SIGKILL", o.crashes));
    if let Err(e) = crash_inner(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

fn crash_inner(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("crash"))?;
    let root = base.join("cache");
    let mut rng = Rng::new(o.seed ^ 0xC4A5);
    let trees: Vec<_> = (0..3).map(|i| expected(i, K_FILES, K_SIZE)).collect();
    for (i, t) in trees.iter().enumerate() {
        write_tree(&base.join(format!("src{i}")), t)?;
    }
    // How long one whole save takes here: kill times are drawn from 0 to twice that, so
    // some land before the saver wrote anything, most while it writes, some after it
    // published.
    let t0 = Instant::now();
    let st = put_cmd(&root, &key(0), &base.join("src0")).status()?;
    let full = t0.elapsed();
    anyhow::ensure!(st.success(), "an uninterrupted `cache put` failed: {st}");
    anyhow::ensure!(
        Cache::open(&root)?.remove("target", &key(0).key),
        "an uninterrupted `cache put` published nothing"
    );
    // The range adapts as the machine's load changes: a kill that came after the publish
    // narrows it, one that came before anything was written widens it, so the kills keep
    // landing on every phase.
    let mut range_us = (full.as_micros() as u64 * 2).max(1);
    out.notes.push(format!(
        "one uninterrupted save took {} ms; kill times drawn from 0 to {} ms at first",
        full.as_millis(),
        range_us / 1000
    ));
    for n in 0..o.crashes {
        let i = n % 3;
        let k = key(i);
        let gate = base.join(format!("gate{n}"));
        let parked = n % 4 == 3;
        let mut cmd = put_cmd(&root, &k, &base.join(format!("src{i}")));
        if parked {
            cmd.env(crate::cache::GATE_ENV, &gate);
        }
        let mut child = cmd.spawn()?;
        if parked {
            // Kill it while it waits just before the rename: its entry is complete under tmp/.
            let marker = PathBuf::from(format!("{}.waiting.{}", gate.display(), child.id()));
            let start = Instant::now();
            while !marker.exists() && start.elapsed() < HANG_BOUND {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            out.count("killed parked before the rename");
        } else {
            std::thread::sleep(Duration::from_micros(rng.below(range_us)));
        }
        // SAFETY: kill(2) on the pid of a child this function spawned and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        child.wait()?;
        // What any reader could see now, before anyone cleans up.
        for p in partial_entries(&root) {
            out.problem(format!("after kill {n}: partial entry visible: {p}"));
        }
        let left = tmp_leftovers(&root);
        if left > 0 {
            out.count("tmp leftovers found");
        }
        let published = entries_listed(&root).contains(&k.key);
        if !parked {
            if published {
                out.count("killed after publishing");
                range_us = (range_us * 9 / 10).max(1);
            } else if left > 0 {
                out.count("killed while writing");
            } else {
                out.count("killed before writing");
                range_us = range_us * 11 / 10;
            }
        }
        // The next run: opening cleans up, the entry (if any) is whole, a build works.
        let cache = Cache::open(&root)
            .with_context(|| format!("after kill {n}: open"))?
            .with_policy(roomy(3));
        if tmp_leftovers(&root) > 0 {
            out.problem(format!(
                "after kill {n}: {} tmp/ leftovers survive the next open",
                tmp_leftovers(&root)
            ));
        }
        for (key, d) in damaged(&cache, true) {
            out.problem(format!("after kill {n}: entry {key} is damaged: {d}"));
        }
        let dst = base.join(format!("t{n}"));
        match cache
            .restore(&k, &dst, false)
            .with_context(|| format!("after kill {n}: restore"))?
        {
            Restore::Hit { .. } => {
                if let Some(d) = differs(&dst, &trees[i]) {
                    out.problem(format!("after kill {n}: restored tree not whole: {d}"));
                }
            }
            Restore::Miss if published => out.problem(format!(
                "after kill {n}: a published entry was not restored"
            )),
            Restore::Miss => write_tree(&dst, &trees[i])?,
            other => out.problem(format!("after kill {n}: restore gave {other:?}")),
        }
        match cache
            .save(&k, &dst, &|_| false)
            .with_context(|| format!("after kill {n}: save"))?
        {
            Save::Saved { .. } | Save::Unchanged { .. } | Save::Exists => {}
            other => out.problem(format!("after kill {n}: the next save gave {other:?}")),
        }
        fsutil::remove_tree(&dst)?;
        if !cache.remove("target", &k.key) {
            out.problem(format!("after kill {n}: the entry could not be removed"));
        }
        let _ = fs::remove_file(&gate);
        out.count("recovered");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// corruption

/// The kinds of damage, in the order they are applied.
const DAMAGE: [&str; 6] = [
    "truncate",
    "flip-byte",
    "delete-file",
    "damage-manifest",
    "damage-entry-json",
    "bit-rot",
];

/// Damage the entry at `entry` (an `entries/<stage>/<key>` dir) in the way `kind` says.
fn damage(entry: &Path, kind: &str, rng: &mut Rng) -> Result<()> {
    let data = entry.join("data");
    let files: Vec<PathBuf> = walkdir::WalkDir::new(&data)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect();
    let f = &files[rng.below(files.len() as u64) as usize];
    match kind {
        "truncate" => {
            let len = fs::metadata(f)?.len();
            fs::File::options().write(true).open(f)?.set_len(len / 2)?;
        }
        "flip-byte" | "bit-rot" => {
            let mtime = fs::metadata(f)?.modified()?;
            let len = fs::metadata(f)?.len();
            let at = rng.below(len);
            let mut h = fs::File::options().read(true).write(true).open(f)?;
            let mut b = [0u8];
            h.seek(SeekFrom::Start(at))?;
            h.read_exact(&mut b)?;
            b[0] ^= 1 << rng.below(8);
            h.seek(SeekFrom::Start(at))?;
            h.write_all(&b)?;
            if kind == "bit-rot" {
                // Bit rot leaves no trace in the metadata.
                h.set_modified(mtime)?;
            } else {
                h.set_modified(mtime + Duration::from_secs(1))?;
            }
        }
        "delete-file" => fs::remove_file(f)?,
        "damage-manifest" => {
            let p = entry.join("manifest.tsv");
            let mut t = fs::read_to_string(&p)?;
            // Change one digit of the first file's recorded size.
            let at = t.find('\t').map_or(0, |i| i + 1);
            let ch = if t.as_bytes()[at] == b'9' { "8" } else { "9" };
            t.replace_range(at..at + 1, ch);
            fs::write(&p, t)?;
        }
        "damage-entry-json" => fs::write(entry.join("entry.json"), b"{\"schema_version\": 2, ")?,
        _ => anyhow::bail!("unknown damage {kind}"),
    }
    Ok(())
}

fn corruption(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "corruption",
        format!(
            "{} kinds of damage × {} entries",
            DAMAGE.len(),
            o.corruptions
        ),
    );
    if let Err(e) = corruption_inner(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

fn corruption_inner(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("corruption"))?;
    let root = base.join("cache");
    let mut rng = Rng::new(o.seed ^ 0xC022);
    let trees: Vec<_> = (0..3).map(|i| expected(i, C_FILES, C_SIZE)).collect();
    let mut bitrot_restored = 0;
    for kind in DAMAGE {
        for n in 0..o.corruptions {
            let i = n % 3;
            let k = key(i);
            let cache = Cache::open(&root)?.with_policy(roomy(3));
            let src = base.join("src");
            fsutil::remove_tree(&src)?;
            write_tree(&src, &trees[i])?;
            if !matches!(cache.save(&k, &src, &|_| false)?, Save::Saved { .. }) {
                out.problem(format!("{kind} {n}: the fresh save did not publish"));
                continue;
            }
            damage(&cache.entry_dir(&k), kind, &mut rng)?;
            out.count(kind);
            // `cache verify` (the whole CLI, once per kind; the same function otherwise).
            if n == 0 {
                let o = Command::new(exe())
                    .args(["cache", "verify", "--cache-dir"])
                    .arg(&root)
                    .arg("--manifest")
                    .arg(root.join("no-manifest.toml"))
                    .output()?;
                let text = String::from_utf8_lossy(&o.stdout);
                if o.status.code() != Some(1)
                    || !text.contains(&format!("DAMAGED  target {}", k.key))
                {
                    out.problem(format!(
                        "{kind}: `cache verify` exited {:?} without reporting {}: {text}",
                        o.status.code(),
                        k.key
                    ));
                }
            }
            if !damaged(&cache, true).iter().any(|(x, _)| *x == k.key) {
                out.problem(format!("{kind} {n}: verify did not report the damage"));
            }
            let quick = damaged(&cache, false).iter().any(|(x, _)| *x == k.key);
            if quick == (kind == "bit-rot") {
                out.problem(format!(
                    "{kind} {n}: the quick (restore-time) check {} it",
                    if quick {
                        "unexpectedly caught"
                    } else {
                        "missed"
                    }
                ));
            }
            let dst = base.join("dst");
            fsutil::remove_tree(&dst)?;
            let fresh = Cache::open(&root)?.with_policy(roomy(3));
            let r = fresh.restore(&k, &dst, false)?;
            let notes = fresh.take_notes();
            if kind == "bit-rot" {
                // The documented limit: restores check metadata only. The tree restored
                // carries the flipped byte; `cache verify` above found it.
                if matches!(r, Restore::Hit { .. }) && differs(&dst, &trees[i]).is_some() {
                    bitrot_restored += 1;
                }
                fresh.save(&k, &dst, &|_| false)?;
                fsutil::remove_tree(&dst)?;
                fresh.remove("target", &k.key);
            } else {
                if r != Restore::Miss {
                    out.problem(format!("{kind} {n}: restore of a damaged entry gave {r:?}"));
                }
                if !notes
                    .iter()
                    .any(|n| n.contains("damaged") && n.contains("discarded"))
                {
                    out.problem(format!(
                        "{kind} {n}: no warning says the entry was discarded: {notes:?}"
                    ));
                }
                if fresh.contains(&k) {
                    out.problem(format!("{kind} {n}: the damaged entry is still listed"));
                }
                // The build goes on without it: build, save, and the next restore is whole.
                write_tree(&dst, &trees[i])?;
                fresh.save(&k, &dst, &|_| false)?;
                fsutil::remove_tree(&dst)?;
                let again = Cache::open(&root)?;
                match again.restore(&k, &dst, false)? {
                    Restore::Hit { .. } => {
                        if let Some(d) = differs(&dst, &trees[i]) {
                            out.problem(format!("{kind} {n}: the rebuilt entry is not whole: {d}"));
                        }
                    }
                    other => out.problem(format!("{kind} {n}: the rebuilt entry gave {other:?}")),
                }
                again.save(&k, &dst, &|_| false)?;
                fsutil::remove_tree(&dst)?;
                again.remove("target", &k.key);
                out.count("detected and rebuilt");
            }
        }
    }
    if bitrot_restored > 0 {
        out.notes.push(format!(
            "bit rot (a byte flipped, size and mtime kept) is found by `cache verify` but not by a restore ({bitrot_restored}/{} restored as hits): restores check file set, sizes and mtimes only",
            o.corruptions
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// full disk

/// A tmpfs mounted for the scenario, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> std::io::Result<Tmpfs> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        fs::create_dir_all(dir)?;
        let target = CString::new(dir.as_os_str().as_bytes())?;
        let data = CString::new(opts)?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(t) = std::ffi::CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a valid path string; MNT_DETACH so a busy mount never blocks us.
            unsafe {
                libc::umount2(t.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Set in the environment of a stress run started inside a user namespace, so it does not
/// try again.
const IN_USERNS: &str = "BLLVM_CI_STRESS_IN_USERNS";

/// The full-disk scenario run again as root of a new user and mount namespace
/// (`unshare -Urm`), or `None` when that is not possible here.
fn full_disk_in_userns(o: &Options) -> Option<Outcome> {
    // Not `exe()`: `/proc/self/exe` would name `unshare` by the time it runs it.
    let me = std::env::current_exe().ok()?;
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(me)
        .args(["stress", "--scenario", "full-disk", "--format", "json"])
        .args(["--full-disk", &o.full_disk.to_string()])
        .args(["--seed", &o.seed.to_string(), "--dir"])
        .arg(&o.dir)
        .env(IN_USERNS, "1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let inner: Outcome = serde_json::from_value(v["scenarios"][0].clone()).ok()?;
    inner.skipped.is_none().then_some(inner)
}

fn full_disk(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "full-disk",
        format!("{} rounds × 3 cases on a 4 MiB tmpfs", o.full_disk),
    );
    if let Err(e) = full_disk_inner(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

fn full_disk_inner(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("full-disk"))?;
    let mnt = base.join("fs");
    let small = base.join("fs-inodes");
    let fs_guard = match Tmpfs::mount(&mnt, "size=4m,mode=0755") {
        Ok(m) => m,
        Err(e) => {
            // Not root: in a private user and mount namespace an unprivileged user may
            // mount a tmpfs (a real filesystem, so a real ENOSPC): run the scenario there.
            if std::env::var_os(IN_USERNS).is_none() {
                if let Some(inner) = full_disk_in_userns(o) {
                    *out = inner;
                    out.notes.push(
                        "run in a private user and mount namespace (unshare -Urm): not root here"
                            .into(),
                    );
                    return Ok(());
                }
            }
            out.skipped = Some(format!(
                "cannot mount a tmpfs here ({e}): needs root, CAP_SYS_ADMIN or unprivileged user namespaces (`unshare -Urm`)"
            ));
            return Ok(());
        }
    };
    let inode_guard = Tmpfs::mount(&small, "size=16m,nr_inodes=40,mode=0755")?;
    let big = expected(5, 12, 1 << 20); // ~6 MiB: more than the whole filesystem
    let mid = expected(6, 3, 1 << 20); // ~3 MiB: fits statvfs, not the space left
    let many = expected(7, 64, 64); // 64 files: past the inode limit
    let small_tree = expected(8, 3, 1024);
    for (i, t) in [(5, &big), (6, &mid), (7, &many), (8, &small_tree)] {
        write_tree(&base.join(format!("src{i}")), t)?;
    }
    // A guard that refuses a save that would fill the filesystem past 80%.
    let guarded = Policy {
        disk_max_used_percent: 80,
        disk_min_free_bytes: 0,
        ..roomy(4)
    };
    let off = Policy {
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
        ..roomy(4)
    };
    for n in 0..o.full_disk {
        for (case, fsroot, policy, i) in [
            ("guard", &mnt, guarded, 5usize),
            ("enospc-bytes", &mnt, off, 6),
            ("enospc-inodes", &small, off, 7),
        ] {
            let root = fsroot.join("cache");
            let filler = fsroot.join("filler");
            if case == "enospc-bytes" {
                // Leave ~1 MiB free, so the ~3 MiB tree runs out of space mid-copy.
                let free = crate::cache::retention::FsUsage::of(fsroot)?.available;
                fs::write(&filler, vec![0u8; free.saturating_sub(1 << 20) as usize])?;
            }
            let cache = Cache::open(&root)?.with_policy(policy);
            let r = cache.save(&key(i), &base.join(format!("src{i}")), &|_| false);
            let notes = cache.take_notes();
            match (case, &r) {
                ("guard", Ok(Save::NoSpace)) => {
                    if !notes.iter().any(|n| n.contains("not saved")) {
                        out.problem(format!("{case} {n}: no warning says why: {notes:?}"));
                    }
                }
                (_, Err(e)) if case != "guard" => {
                    let msg = format!("{e:#}");
                    if !msg.contains("No space left on device") {
                        out.problem(format!(
                            "{case} {n}: the error does not say the disk is full: {msg}"
                        ));
                    }
                }
                _ => out.problem(format!("{case} {n}: save gave {r:?}, notes {notes:?}")),
            }
            out.count(case);
            let listed = entries_listed(&root);
            if !listed.is_empty() {
                out.problem(format!(
                    "{case} {n}: entries listed after a failed save: {listed:?}"
                ));
            }
            if tmp_leftovers(&root) > 0 {
                out.problem(format!(
                    "{case} {n}: tmp/ not cleaned after the failed save"
                ));
            }
            // Space comes back: the cache works again, whole.
            let _ = fs::remove_file(&filler);
            let k = key(8);
            let cache = Cache::open(&root)?.with_policy(off);
            let s = cache.save(&k, &base.join("src8"), &|_| false)?;
            let dst = base.join("dst");
            fsutil::remove_tree(&dst)?;
            match cache.restore(&k, &dst, false)? {
                Restore::Hit { .. } if differs(&dst, &small_tree).is_none() => {}
                other => out.problem(format!(
                    "{case} {n}: after space came back, save {s:?} then restore {other:?}"
                )),
            }
            fsutil::remove_tree(&dst)?;
            cache.remove("target", &k.key);
        }
    }
    drop(inode_guard);
    drop(fs_guard);
    Ok(())
}
