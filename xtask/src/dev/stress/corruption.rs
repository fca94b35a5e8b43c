//! The `corruption` scenario: entries damaged in six ways (a file truncated, a byte
//! flipped, a file deleted, the manifest or `entry.json` edited, bit rot), then `cache
//! verify` must report each, a restore must discard it (bit rot excepted, by design) and
//! a rebuild must give a whole entry again.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;

use super::{
    damaged, differs, exe, expected, fresh_dir, key, roomy, write_tree, Options, Outcome, C_FILES,
    C_SIZE,
};
use crate::cache::{Cache, CacheKey, Restore, Save};
use crate::dev::rng::Rng;
use crate::support::fs as fsutil;

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

/// Run the scenario; what could not run is a problem of the outcome.
pub(super) fn run(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "corruption",
        format!(
            "{} kinds of damage × {} entries",
            DAMAGE.len(),
            o.corruptions
        ),
    );
    if let Err(e) = damage_all(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

/// Where the scenario works and what it saves.
struct Bench {
    base: PathBuf,
    root: PathBuf,
    trees: Vec<BTreeMap<String, Vec<u8>>>,
}

/// `o.corruptions` entries per kind of damage, each saved fresh, damaged, then checked.
fn damage_all(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("corruption"))?;
    let b = Bench {
        root: base.join("cache"),
        base,
        trees: (0..3).map(|i| expected(i, C_FILES, C_SIZE)).collect(),
    };
    let mut rng = Rng::new(o.seed ^ 0xC022);
    let mut bitrot_restored = 0;
    for kind in DAMAGE {
        for n in 0..o.corruptions {
            let k = key(n % 3);
            let Some(cache) = b.save_and_damage(&k, n % 3, kind, &mut rng)? else {
                out.problem(format!("{kind} {n}: the fresh save did not publish"));
                continue;
            };
            out.count(kind);
            // `cache verify` (the whole CLI, once per kind; the same function otherwise).
            if n == 0 {
                b.check_verify_command(kind, &k, out)?;
            }
            check_detection(&cache, kind, n, &k, out);
            if kind == "bit-rot" {
                bitrot_restored += usize::from(b.restore_bit_rot(&k, n % 3)?);
            } else {
                b.check_discard_and_rebuild(kind, n, &k, out)?;
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

impl Bench {
    /// Save tree `i` fresh under `k` and damage the entry; returns the cache it was saved
    /// through, or `None` when the save did not publish (nothing to damage).
    fn save_and_damage(
        &self,
        k: &CacheKey,
        i: usize,
        kind: &str,
        rng: &mut Rng,
    ) -> Result<Option<Cache>> {
        let cache = Cache::open(&self.root)?.with_policy(roomy(3));
        let src = self.base.join("src");
        fsutil::remove_tree(&src)?;
        write_tree(&src, &self.trees[i])?;
        if !matches!(cache.save(k, &src, &|_| false)?, Save::Saved { .. }) {
            return Ok(None);
        }
        damage(&cache.entry_dir(k), kind, rng)?;
        Ok(Some(cache))
    }

    /// `cargo xtask cache verify` exits 1 and names the damaged entry.
    fn check_verify_command(&self, kind: &str, k: &CacheKey, out: &mut Outcome) -> Result<()> {
        let o = Command::new(exe())
            .args(["cache", "verify", "--cache-dir"])
            .arg(&self.root)
            .arg("--manifest")
            .arg(self.root.join("no-manifest.toml"))
            .output()?;
        let text = String::from_utf8_lossy(&o.stdout);
        if o.status.code() != Some(1) || !text.contains(&format!("DAMAGED  target {}", k.key)) {
            out.problem(format!(
                "{kind}: `cache verify` exited {:?} without reporting {}: {text}",
                o.status.code(),
                k.key
            ));
        }
        Ok(())
    }

    /// The documented limit: restores check metadata only, so a bit-rotten entry restores
    /// as a hit carrying the flipped byte (`cache verify` found it). Returns whether it
    /// did; the entry is then saved back and removed.
    fn restore_bit_rot(&self, k: &CacheKey, i: usize) -> Result<bool> {
        let dst = self.base.join("dst");
        fsutil::remove_tree(&dst)?;
        let fresh = Cache::open(&self.root)?.with_policy(roomy(3));
        let r = fresh.restore(k, &dst, false)?;
        fresh.take_notes();
        let restored = matches!(r, Restore::Hit { .. }) && differs(&dst, &self.trees[i]).is_some();
        fresh.save(k, &dst, &|_| false)?;
        fsutil::remove_tree(&dst)?;
        fresh.remove("target", &k.key);
        Ok(restored)
    }

    /// A restore discards the damaged entry with a warning, and the build goes on without
    /// it: build, save, and the next restore is whole.
    fn check_discard_and_rebuild(
        &self,
        kind: &str,
        n: usize,
        k: &CacheKey,
        out: &mut Outcome,
    ) -> Result<()> {
        let tree = &self.trees[n % 3];
        let dst = self.base.join("dst");
        fsutil::remove_tree(&dst)?;
        let fresh = Cache::open(&self.root)?.with_policy(roomy(3));
        let r = fresh.restore(k, &dst, false)?;
        let notes = fresh.take_notes();
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
        if fresh.contains(k) {
            out.problem(format!("{kind} {n}: the damaged entry is still listed"));
        }
        write_tree(&dst, tree)?;
        fresh.save(k, &dst, &|_| false)?;
        fsutil::remove_tree(&dst)?;
        let again = Cache::open(&self.root)?;
        match again.restore(k, &dst, false)? {
            Restore::Hit { .. } => {
                if let Some(d) = differs(&dst, tree) {
                    out.problem(format!("{kind} {n}: the rebuilt entry is not whole: {d}"));
                }
            }
            other => out.problem(format!("{kind} {n}: the rebuilt entry gave {other:?}")),
        }
        again.save(k, &dst, &|_| false)?;
        fsutil::remove_tree(&dst)?;
        again.remove("target", &k.key);
        Ok(())
    }
}

/// The full check finds every damage; the quick (restore-time) one finds all but bit rot.
fn check_detection(cache: &Cache, kind: &str, n: usize, k: &CacheKey, out: &mut Outcome) {
    if !damaged(cache, true).iter().any(|(x, _)| *x == k.key) {
        out.problem(format!("{kind} {n}: verify did not report the damage"));
    }
    let quick = damaged(cache, false).iter().any(|(x, _)| *x == k.key);
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
}
