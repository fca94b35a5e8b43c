//! The `crash` scenario: `cache put` processes killed with SIGKILL at random moments of
//! their save (or parked just before the publishing rename), each followed by the checks
//! a reader and the next job make: nothing partial visible, leftovers removed on the next
//! open, and a restore plus save that work.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{
    damaged, differs, entries_listed, exe, expected, fresh_dir, key, partial_entries, roomy,
    tmp_leftovers, write_tree, Options, Outcome, HANG_BOUND,
};
use crate::cache::{Cache, CacheKey, Restore, Save};
use crate::dev::rng::Rng;
use crate::support::fs as fsutil;

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

/// Run the scenario; what could not run is a problem of the outcome.
pub(super) fn run(o: &Options) -> Outcome {
    let mut out = Outcome::new("crash", format!("{} savers killed with SIGKILL", o.crashes));
    if let Err(e) = kill_savers(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

/// One crash run: the scratch dir, the trees saved, and the range kill times are drawn
/// from.
struct Crashes {
    base: PathBuf,
    root: PathBuf,
    trees: Vec<BTreeMap<String, Vec<u8>>>,
    rng: Rng,
    /// Kill times are drawn from `0..range_us` microseconds after the spawn.
    range_us: u64,
}

/// Measure one whole save, then kill `o.crashes` savers, checking after each.
fn kill_savers(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("crash"))?;
    let trees: Vec<_> = (0..3).map(|i| expected(i, K_FILES, K_SIZE)).collect();
    for (i, t) in trees.iter().enumerate() {
        write_tree(&base.join(format!("src{i}")), t)?;
    }
    let mut c = Crashes {
        root: base.join("cache"),
        base,
        trees,
        rng: Rng::new(o.seed ^ 0xC4A5),
        range_us: 1,
    };
    // How long one whole save takes here: kill times are drawn from 0 to twice that, so
    // some land before the saver wrote anything, most while it writes, some after it
    // published.
    let full = c.uninterrupted_save()?;
    c.range_us = (full.as_micros() as u64 * 2).max(1);
    out.notes.push(format!(
        "one uninterrupted save took {} ms; kill times drawn from 0 to {} ms at first",
        full.as_millis(),
        c.range_us / 1000
    ));
    for n in 0..o.crashes {
        let published = c.kill_one(n, out)?;
        c.recover(n, published, out)?;
        let _ = fs::remove_file(c.gate(n));
        out.count("recovered");
    }
    Ok(())
}

impl Crashes {
    /// The test gate file of kill `n`.
    fn gate(&self, n: usize) -> PathBuf {
        self.base.join(format!("gate{n}"))
    }

    /// Save key 0 once without interruption (then remove it); returns how long it took.
    fn uninterrupted_save(&self) -> Result<Duration> {
        let t0 = Instant::now();
        let st = put_cmd(&self.root, &key(0), &self.base.join("src0")).status()?;
        let full = t0.elapsed();
        anyhow::ensure!(st.success(), "an uninterrupted `cache put` failed: {st}");
        anyhow::ensure!(
            Cache::open(&self.root)?.remove("target", &key(0).key),
            "an uninterrupted `cache put` published nothing"
        );
        Ok(full)
    }

    /// Start saver `n`, kill it (every fourth one parked just before the rename), check
    /// what a reader sees at once, and count which phase the kill hit. Returns whether the
    /// entry was published before the kill.
    fn kill_one(&mut self, n: usize, out: &mut Outcome) -> Result<bool> {
        let k = key(n % 3);
        let parked = n % 4 == 3;
        let mut cmd = put_cmd(&self.root, &k, &self.base.join(format!("src{}", n % 3)));
        if parked {
            cmd.env(crate::cache::GATE_ENV, self.gate(n));
        }
        let mut child = cmd.spawn()?;
        if parked {
            self.wait_parked(n, &mut child);
            out.count("killed parked before the rename");
        } else {
            std::thread::sleep(Duration::from_micros(self.rng.below(self.range_us)));
        }
        // SAFETY: kill(2) on the pid of a child this function spawned and has not reaped.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGKILL);
        }
        child.wait()?;
        // What any reader could see now, before anyone cleans up.
        for p in partial_entries(&self.root) {
            out.problem(format!("after kill {n}: partial entry visible: {p}"));
        }
        let left = tmp_leftovers(&self.root);
        if left > 0 {
            out.count("tmp leftovers found");
        }
        let published = entries_listed(&self.root).contains(&k.key);
        if !parked {
            self.adapt(published, left > 0, out);
        }
        Ok(published)
    }

    /// Wait until saver `n` is parked at the gate (its entry complete under `tmp/`), or
    /// has exited, within [`HANG_BOUND`].
    fn wait_parked(&self, n: usize, child: &mut Child) {
        let marker = PathBuf::from(format!("{}.waiting.{}", self.gate(n).display(), child.id()));
        let start = Instant::now();
        while !marker.exists() && start.elapsed() < HANG_BOUND {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Count the phase a random kill hit and move the range as the machine's load changes:
    /// a kill that came after the publish narrows it, one that came before anything was
    /// written widens it, so the kills keep landing on every phase.
    fn adapt(&mut self, published: bool, leftovers: bool, out: &mut Outcome) {
        if published {
            out.count("killed after publishing");
            self.range_us = (self.range_us * 9 / 10).max(1);
        } else if leftovers {
            out.count("killed while writing");
        } else {
            out.count("killed before writing");
            self.range_us = self.range_us * 11 / 10;
        }
    }

    /// The next run after kill `n`: opening cleans up, the entry (if any) is whole, a
    /// build's restore and save work; then the entry is removed for the next kill.
    fn recover(&self, n: usize, published: bool, out: &mut Outcome) -> Result<()> {
        let (k, tree) = (key(n % 3), &self.trees[n % 3]);
        let cache = Cache::open(&self.root)
            .with_context(|| format!("after kill {n}: open"))?
            .with_policy(roomy(3));
        if tmp_leftovers(&self.root) > 0 {
            out.problem(format!(
                "after kill {n}: {} tmp/ leftovers survive the next open",
                tmp_leftovers(&self.root)
            ));
        }
        for (key, d) in damaged(&cache, true) {
            out.problem(format!("after kill {n}: entry {key} is damaged: {d}"));
        }
        let dst = self.base.join(format!("t{n}"));
        match cache
            .restore(&k, &dst, false)
            .with_context(|| format!("after kill {n}: restore"))?
        {
            Restore::Hit { .. } => {
                if let Some(d) = differs(&dst, tree) {
                    out.problem(format!("after kill {n}: restored tree not whole: {d}"));
                }
            }
            Restore::Miss if published => out.problem(format!(
                "after kill {n}: a published entry was not restored"
            )),
            Restore::Miss => write_tree(&dst, tree)?,
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
        Ok(())
    }
}
