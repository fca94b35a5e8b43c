//! The `concurrency` scenario: worker processes (this binary, hidden `stress --worker N`)
//! restoring, saving, verifying and pruning the same few keys at once, then checks that
//! nothing is torn, lost or left over, and that retention keeps the most recently used.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{
    damaged, differs, exe, expected, fresh_dir, key, partial_entries, roomy, tmp_leftovers,
    wait_bounded, write_tree, Options, Outcome, C_FILES, C_SIZE, HANG_BOUND,
};
use crate::cache::retention::Policy;
use crate::cache::{Cache, Restore};
use crate::dev::rng::Rng;
use crate::support::exit::Exit;
use crate::support::fs as fsutil;

/// Run the scenario; what could not run is a problem of the outcome.
pub(super) fn run(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "concurrency",
        format!(
            "{} processes × {} rounds, {} keys",
            o.procs, o.rounds, o.keys
        ),
    );
    if let Err(e) = storm(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

/// Seed the keys, let the workers loose, then check what they left.
fn storm(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("concurrency"))?;
    let root = base.join("cache");
    seed_keys(&base, &root, o.keys)?;
    let children = spawn_workers(o, &base)?;
    collect_workers(children, &base, out);
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
    check_retention(&cache, &root, o.keys, out)?;
    out.count("final retention");
    Ok(())
}

/// Save every key once, so "no entry lost" has something to check from the first round.
fn seed_keys(base: &Path, root: &Path, keys: usize) -> Result<()> {
    let cache = Cache::open(root)?.with_policy(roomy(keys));
    for i in 0..keys {
        let src = base.join(format!("seed{i}"));
        write_tree(&src, &expected(i, C_FILES, C_SIZE))?;
        cache.save(&key(i), &src, &|_| false)?;
        fsutil::remove_tree(&src)?;
    }
    Ok(())
}

/// Start `o.procs` workers on `base`, each with its own seed.
fn spawn_workers(o: &Options, base: &Path) -> Result<Vec<Child>> {
    (0..o.procs)
        .map(|id| {
            Command::new(exe())
                .args(["stress", "--worker", &id.to_string(), "--dir"])
                .arg(base)
                .args(["--rounds", &o.rounds.to_string()])
                .args(["--keys", &o.keys.to_string()])
                .args(["--seed", &o.seed.wrapping_add(id as u64).to_string()])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .context("spawn a worker")
        })
        .collect()
}

/// Wait for every worker (all within [`HANG_BOUND`]) and merge their reports into `out`.
fn collect_workers(children: Vec<Child>, base: &Path, out: &mut Outcome) {
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
}

/// Retention with a lower limit keeps exactly the most recently used entries.
fn check_retention(cache: &Cache, root: &Path, keys: usize, out: &mut Outcome) -> Result<()> {
    let limit = 2usize.min(keys);
    let mut by_use: Vec<(u64, String)> = cache
        .list()
        .into_iter()
        .map(|l| (l.usage.last_used_unix, l.info.key.into()))
        .collect();
    by_use.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut want: Vec<String> = by_use.into_iter().take(limit).map(|(_, k)| k).collect();
    let tight = Cache::open(root)?.with_policy(Policy {
        max_entries_per_stage: limit,
        ..roomy(keys)
    });
    tight.apply_retention(false);
    let mut kept: Vec<String> = tight
        .list()
        .into_iter()
        .map(|l| l.info.key.into())
        .collect();
    want.sort();
    kept.sort();
    if kept != want {
        out.problem(format!(
            "retention to {limit} entries kept {kept:?}, expected the most recently used {want:?}"
        ));
    }
    Ok(())
}

/// The hidden worker of `concurrency`: `rounds` random operations on the cache at
/// `<dir>/cache`, its report written to `<dir>/worker<id>.json`.
pub fn worker(dir: &Path, id: usize, rounds: usize, keys: usize, seed: u64) -> Result<ExitCode> {
    let root = dir.join("cache");
    let scratch = fresh_dir(&dir.join(format!("w{id}")))?;
    let mut rng = Rng::new(seed);
    let mut out = Outcome::new("worker", format!("{rounds} rounds"));
    let trees: Vec<_> = (0..keys).map(|i| expected(i, C_FILES, C_SIZE)).collect();
    for round in 0..rounds {
        let i = rng.below(keys as u64) as usize;
        let dst = scratch.join(format!("t{round}"));
        // A new `Cache` per operation, as separate jobs would have.
        let cache = Cache::open(&root)?.with_policy(roomy(keys));
        let op = Op {
            cache: &cache,
            root: &root,
            i,
            tree: &trees[i],
            dst: &dst,
            round,
        };
        if let Err(e) = op.run(rng.below(100), &mut out) {
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
    Ok(Exit::Ok.into())
}

/// One round of a worker: the cache, the key drawn and where to restore it.
struct Op<'a> {
    cache: &'a Cache,
    root: &'a Path,
    i: usize,
    tree: &'a std::collections::BTreeMap<String, Vec<u8>>,
    dst: &'a Path,
    round: usize,
}

impl Op<'_> {
    /// Run the operation `roll` (0..100) picks: 40% restore then save, 15% fresh save,
    /// 15% read-only restore, 15% verify, 15% retention.
    fn run(&self, roll: u64, out: &mut Outcome) -> Result<()> {
        let k = key(self.i);
        match roll {
            0..=39 => self.restore_save(roll >= 25, out)?,
            40..=54 => {
                out.count("fresh-save");
                write_tree(self.dst, self.tree)?;
                self.cache.save(&k, self.dst, &|_| false)?;
            }
            55..=69 => {
                out.count("read-only-restore");
                let ro = Cache::open_read_only(self.root);
                if let Restore::Hit { .. } = ro.restore(&k, self.dst, false)? {
                    out.count("restored whole");
                    if let Some(d) = differs(self.dst, self.tree) {
                        out.problem(format!("read-only restore of {} is not whole: {d}", k.key));
                    }
                }
            }
            70..=84 => {
                out.count("verify");
                for (k, d) in damaged(self.cache, true) {
                    out.problem(format!("verify found {k} damaged: {d}"));
                }
            }
            _ => {
                out.count("prune");
                for e in self.cache.apply_retention(false) {
                    out.problem(format!(
                        "retention evicted {} ({}) though the limits keep every key",
                        e.key, e.reason
                    ));
                }
            }
        }
        Ok(())
    }

    /// Restore, maybe rebuild a file (`touch`: same bytes, new mtime, so a new entry of the
    /// same key), save: what `ci` does for each repo.
    fn restore_save(&self, touch: bool, out: &mut Outcome) -> Result<()> {
        let k = key(self.i);
        out.count(if touch {
            "restore-touch-save"
        } else {
            "restore-save"
        });
        match self.cache.restore(&k, self.dst, false)? {
            Restore::Hit { .. } => {
                out.count("restored whole");
                if let Some(d) = differs(self.dst, self.tree) {
                    out.problem(format!("restored {} is not whole: {d}", k.key));
                }
            }
            Restore::Miss => write_tree(self.dst, self.tree)?,
            other => out.problem(format!("restore of {} gave {other:?}", k.key)),
        }
        if touch {
            let (rel, bytes) = self
                .tree
                .iter()
                .nth(self.round % C_FILES)
                .expect("non-empty");
            let p = self.dst.join(rel);
            fs::write(&p, bytes)?;
            let later = std::time::SystemTime::now() + Duration::from_secs(1);
            fs::File::options()
                .write(true)
                .open(&p)?
                .set_modified(later)?;
        }
        self.cache.save(&k, self.dst, &|_| false)?;
        Ok(())
    }
}
