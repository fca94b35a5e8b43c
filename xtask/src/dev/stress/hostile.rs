//! The `hostile` scenario (issue 13 §3): the cache root's metadata corrupted,
//! in the ways a killed writer, a full disk, another version or an attacker with write
//! access to a shared cache volume leave it: `entry.json` with a key or stage that
//! climbs out of the root, numbers out of range, missing, garbage, a FIFO or a symlink;
//! manifests with paths that climb out, garbage or numbers out of range; data that is a
//! symlink out of the root, links that resolve out through `.`, FIFOs; usage records,
//! lock files, temp dirs and the event log replaced by garbage, FIFOs, directories or
//! symlinks to a victim; a stage dir that is a symlink; an entry dir that is a symlink.
//!
//! After each corruption the engine runs what a job and the `cache` commands run (open,
//! list, verify, restore by move and by copy, save, retention, the guard, and `cache
//! list`/`verify --discard`/`prune` through this binary), each bounded in time. The
//! invariants: no panic, no hang, nothing outside the root changed (a victim dir beside
//! it, which every symlink planted here points into, is compared byte for byte), and
//! the next save of the corrupted key works and restores whole.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use super::{
    differs, exe, expected, fresh_dir, key, roomy, wait_bounded, write_tree, Options, Outcome,
};
use crate::cache::{Cache, CacheKey, Restore, Save};
use crate::dev::rng::Rng;
use crate::support::fs as fsutil;

/// The kinds of corruption, drawn at random each round.
pub const KINDS: [&str; 24] = [
    "entry-key-climbs-out",
    "entry-stage-garbage",
    "entry-huge-numbers",
    "entry-missing",
    "entry-garbage-bytes",
    "entry-fifo",
    "entry-symlink-out",
    "manifest-path-climbs-out",
    "manifest-garbage-bytes",
    "manifest-huge-numbers",
    "data-link-chain-out",
    "data-symlink-out",
    "data-fifo",
    "usage-garbage",
    "usage-huge-numbers",
    "usage-fifo",
    "lock-fifo",
    "lock-symlink-out",
    "tmp-dead-and-hostile",
    "stage-dir-symlink-out",
    "entry-dir-symlink-out",
    "entry-dir-bad-name",
    "log-fifo",
    "log-symlink-out",
];

/// How long one round's operations may take before the round counts as hung.
const ROUND_BOUND: Duration = Duration::from_secs(60);

/// Run the scenario; what could not run is a problem of the outcome.
pub(super) fn run(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "hostile",
        format!(
            "{} rounds of random corruption ({} kinds)",
            o.hostile,
            KINDS.len()
        ),
    );
    if let Err(e) = rounds(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

/// Where one round works: a cache root, a victim dir beside it, a source tree.
struct Round {
    base: PathBuf,
    root: PathBuf,
    victim: PathBuf,
    tree: BTreeMap<String, Vec<u8>>,
}

fn rounds(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("hostile"))?;
    let mut rng = Rng::new(o.seed ^ 0x0405_711e);
    // Every kind once per cycle of `KINDS.len()` rounds, from a random start; the details
    // of each corruption (fields, sizes, bytes) are random.
    let start = rng.below(KINDS.len() as u64) as usize;
    for n in 0..o.hostile {
        let kind = KINDS[(start + n) % KINDS.len()];
        let r = Round {
            base: fresh_dir(&base.join(format!("r{}", n % 4)))?,
            root: base.join(format!("r{}/cache", n % 4)),
            victim: base.join(format!("r{}/victim", n % 4)),
            tree: expected(n % 3, 8, 512),
        };
        out.count(kind);
        if let Err(e) = r.one(kind, rng.next(), n, out) {
            out.problem(format!("{kind} {n}: {e:#}"));
        }
    }
    Ok(())
}

impl Round {
    /// Save two entries, corrupt the cache in the way `kind` says, run every operation,
    /// then check the invariants.
    fn one(&self, kind: &str, seed: u64, n: usize, out: &mut Outcome) -> Result<()> {
        write_tree(&self.victim, &victim_tree())?;
        fs::write(self.root.with_extension("toml"), ROOMY_MANIFEST)?;
        let k = key(n % 3);
        let other = key(3 + n % 3);
        let cache = Cache::open(&self.root)?.with_policy(roomy(8));
        for kk in [&k, &other] {
            let src = fresh_dir(&self.base.join("src"))?;
            write_tree(&src, &self.tree)?;
            cache.save(kk, &src, &|_| false)?;
        }
        corrupt(&cache, &k, kind, &self.victim, &mut Rng::new(seed))
            .with_context(|| format!("corrupt ({kind})"))?;
        let before = self.outside()?;
        let ops = self.operate(&k, &other);
        match ops {
            Some(Ok(())) => out.count("operations survived"),
            Some(Err(e)) => out.problem(format!("{kind} {n}: {e}")),
            None => out.problem(format!(
                "{kind} {n}: the operations hung (over {ROUND_BOUND:?})"
            )),
        }
        self.commands(kind, n, out);
        let after = self.outside()?;
        if let Some(d) = differs(&self.victim, &victim_tree()) {
            out.problem(format!(
                "{kind} {n}: the victim outside the root changed: {d}"
            ));
        } else if before != after {
            let changed: Vec<&String> = before
                .keys()
                .chain(after.keys())
                .filter(|p| before.get(*p) != after.get(*p))
                .collect();
            out.problem(format!(
                "{kind} {n}: paths outside the root changed: {changed:?}"
            ));
        } else {
            out.count("nothing outside the root touched");
        }
        self.next_save_works(&k, kind, n, out)
    }

    /// Every path beside the cache root (the victim, the copies planted links point to,
    /// the manifest) with its content (a symlink: its target), not following links.
    fn outside(&self) -> Result<BTreeMap<String, Vec<u8>>> {
        let mut out = BTreeMap::new();
        let walk = walkdir::WalkDir::new(&self.base)
            .min_depth(1)
            .into_iter()
            .filter_entry(|e| {
                let name = e.file_name().to_string_lossy();
                e.depth() > 1
                    || !(name == "cache"
                        || name == "src"
                        || name == "next"
                        || name.starts_with("ops-"))
            });
        for e in walk {
            let e = e?;
            let rel = e
                .path()
                .strip_prefix(&self.base)?
                .to_string_lossy()
                .into_owned();
            let content = if e.path_is_symlink() {
                fs::read_link(e.path())?
                    .as_os_str()
                    .as_encoded_bytes()
                    .to_vec()
            } else if e.file_type().is_file() {
                fs::read(e.path())?
            } else {
                b"<dir>".to_vec()
            };
            out.insert(rel, content);
        }
        Ok(out)
    }

    /// Every engine operation, on a thread, bounded in time; a panic is an error.
    fn operate(&self, k: &CacheKey, other: &CacheKey) -> Option<std::result::Result<(), String>> {
        let (root, base) = (self.root.clone(), self.base.clone());
        let (k, other) = (k.clone(), other.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(move || engine_ops(&root, &base, &k, &other));
            let _ = tx.send(match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("{e:#}")),
                Err(p) => Err(format!(
                    "panicked: {}",
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default()
                )),
            });
        });
        rx.recv_timeout(ROUND_BOUND).ok()
    }

    /// `cache list`, `cache verify --discard` and `cache prune` through this binary:
    /// each must exit (0, or 1 for verify finding damage), never panic (101) or hang.
    fn commands(&self, kind: &str, n: usize, out: &mut Outcome) {
        let manifest = self.root.with_extension("toml");
        for args in [&["list"][..], &["verify", "--discard"], &["prune"]] {
            let child = Command::new(exe())
                .arg("cache")
                .args(args)
                .arg("--cache-dir")
                .arg(&self.root)
                .arg("--manifest")
                .arg(&manifest)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            let Ok(mut child) = child else {
                out.problem(format!("{kind} {n}: could not start `cache {}`", args[0]));
                continue;
            };
            match wait_bounded(&mut child, ROUND_BOUND) {
                None => out.problem(format!("{kind} {n}: `cache {}` hung", args.join(" "))),
                Some(st) if matches!(st.code(), Some(0 | 1)) => out.count("commands survived"),
                Some(st) => out.problem(format!(
                    "{kind} {n}: `cache {}` exited {st}",
                    args.join(" ")
                )),
            }
        }
    }

    /// After the corruption: a save of the key works (a fresh entry, or the restored one
    /// put back unchanged) and a fresh handle restores it whole.
    fn next_save_works(&self, k: &CacheKey, kind: &str, n: usize, out: &mut Outcome) -> Result<()> {
        let cache = Cache::open(&self.root)?.with_policy(roomy(8));
        let dst = fresh_dir(&self.base.join("next"))?;
        fsutil::remove_tree(&dst)?;
        let restored = cache.restore(k, &dst, false)?;
        if matches!(restored, Restore::Hit { .. }) {
            if let Some(d) = differs(&dst, &self.tree) {
                out.problem(format!(
                    "{kind} {n}: a restore after the corruption gave a wrong tree: {d}"
                ));
            }
        }
        fsutil::remove_tree(&dst)?;
        write_tree(&dst, &self.tree)?;
        match cache.save(k, &dst, &|_| false)? {
            Save::Saved { .. } | Save::Unchanged { .. } => {}
            s => out.problem(format!(
                "{kind} {n}: the next save gave {s:?}: {:?}",
                cache.take_notes()
            )),
        }
        fsutil::remove_tree(&dst)?;
        let again = Cache::open(&self.root)?.with_policy(roomy(8));
        match again.restore(k, &dst, false)? {
            Restore::Hit { .. } if differs(&dst, &self.tree).is_none() => {
                out.count("next save works")
            }
            r => out.problem(format!(
                "{kind} {n}: after the next save, a restore gave {r:?}"
            )),
        }
        again.save(k, &dst, &|_| false)?;
        Ok(())
    }
}

/// A manifest beside the cache root whose `[cache]` table turns the disk guard off.
const ROOMY_MANIFEST: &str = "[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n\n[[repo]]\nname = \"stress\"\ngithub = \"stress/stress\"\nkind = \"docs\"\n";

fn victim_tree() -> BTreeMap<String, Vec<u8>> {
    [
        ("sub/precious", b"precious".to_vec()),
        ("file", b"victim".to_vec()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// What a job and the commands do with a cache: open, list, verify, restore (move, then
/// read-only copy), save, retention and the guard.
fn engine_ops(root: &Path, base: &Path, k: &CacheKey, other: &CacheKey) -> Result<()> {
    let cache = Cache::open(root)?.with_policy(roomy(8));
    let _ = cache.list();
    let _ = cache.unlisted();
    let _ = cache.verify(false);
    let _ = cache.verify(true);
    for kk in [k, other] {
        let dst = base.join(format!("ops-{}", kk.key));
        fsutil::remove_tree(&dst)?;
        let ro = Cache::open_read_only(root);
        let _ = ro.restore(kk, &dst, false);
        fsutil::remove_tree(&dst)?;
        if let Ok(Restore::Hit { .. } | Restore::Partial { .. }) = cache.restore(kk, &dst, false) {
            let _ = cache.save(kk, &dst, &|_| false);
        }
        fsutil::remove_tree(&dst)?;
    }
    let _ = cache.apply_retention(true);
    let _ = cache.apply_retention(false);
    let _ = cache.guard(0, None);
    let _ = crate::cache::stats::read_events(root);
    Ok(())
}

fn mkfifo(p: &Path) -> Result<()> {
    let _ = crate::cache::untrusted::remove_any(p);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())?;
    anyhow::ensure!(
        unsafe { libc::mkfifo(c.as_ptr(), 0o644) } == 0,
        "mkfifo {}",
        p.display()
    );
    Ok(())
}

fn replace_with_link(p: &Path, target: &Path) -> Result<()> {
    crate::cache::untrusted::remove_any(p)?;
    if let Some(d) = p.parent() {
        fs::create_dir_all(d)?;
    }
    symlink(target, p)?;
    Ok(())
}

fn edit_json(p: &Path, f: impl FnOnce(&mut serde_json::Value)) -> Result<()> {
    let mut j: serde_json::Value = serde_json::from_slice(&fs::read(p)?)?;
    f(&mut j);
    fs::write(p, j.to_string())?;
    Ok(())
}

/// Rewrite `manifest.tsv` to `tsv` and make `entry.json`'s content hash match it, as a
/// writer tampering with the whole entry would.
fn rehash(entry: &Path, tsv: &str) -> Result<()> {
    fs::write(entry.join("manifest.tsv"), tsv)?;
    edit_json(&entry.join("entry.json"), |j| {
        j["content_hash"] = fsutil::sha256_hex(tsv).into();
    })
}

fn random_bytes(rng: &mut Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.next() as u8).collect()
}

/// Apply corruption `kind` to the cache (entry `k` where it is about one entry).
fn corrupt(cache: &Cache, k: &CacheKey, kind: &str, victim: &Path, rng: &mut Rng) -> Result<()> {
    let climb = "../".repeat(8 + rng.below(4) as usize);
    let victim_rel = format!(
        "{climb}{}",
        victim.strip_prefix("/").unwrap_or(victim).display()
    );
    let about_entry = ["entry-", "manifest-", "data-"]
        .iter()
        .any(|p| kind.starts_with(p) && !kind.starts_with("entry-dir"));
    if about_entry {
        corrupt_entry(&cache.entry_dir(k), kind, victim, &climb, &victim_rel, rng)
    } else {
        corrupt_around(cache, k, kind, victim, rng)
    }
}

/// The corruptions of one entry's files: `entry.json`, `manifest.tsv`, `data/`.
fn corrupt_entry(
    entry: &Path,
    kind: &str,
    victim: &Path,
    climb: &str,
    victim_rel: &str,
    rng: &mut Rng,
) -> Result<()> {
    let ej = entry.join("entry.json");
    match kind {
        "entry-key-climbs-out" => {
            edit_json(&ej, |j| j["key"] = format!("a.1.0/{victim_rel}").into())?
        }
        "entry-stage-garbage" => edit_json(&ej, |j| j["stage"] = format!("{climb}victim").into())?,
        "entry-huge-numbers" => {
            let field = ["bytes", "files", "raw_bytes", "created_unix"][rng.below(4) as usize];
            edit_json(&ej, |j| {
                j[field] = serde_json::json!(u64::MAX - rng.below(3))
            })?;
        }
        "entry-missing" => fs::remove_file(&ej)?,
        "entry-garbage-bytes" => {
            let n = 1 + rng.below(300) as usize;
            fs::write(&ej, random_bytes(rng, n))?;
        }
        "entry-fifo" => mkfifo(&ej)?,
        "entry-symlink-out" => replace_with_link(&ej, &victim.join("file"))?,
        "manifest-path-climbs-out" => {
            let tsv = fs::read_to_string(entry.join("manifest.tsv"))?;
            let line = tsv.lines().next().unwrap_or_default();
            let mut parts: Vec<&str> = line.splitn(5, '\t').collect();
            let bad = format!("{victim_rel}/file");
            if parts.len() == 5 {
                parts[4] = &bad;
            }
            let tsv = format!("{}\n{tsv}", parts.join("\t"));
            rehash(entry, &tsv)?;
        }
        "manifest-garbage-bytes" => fs::write(entry.join("manifest.tsv"), random_bytes(rng, 200))?,
        "manifest-huge-numbers" => {
            let tsv = fs::read_to_string(entry.join("manifest.tsv"))?;
            let tsv = tsv
                .lines()
                .map(|l| {
                    let p: Vec<&str> = l.splitn(5, '\t').collect();
                    format!(
                        "{}\t{}\t{}\t{}\t{}\n",
                        p[0],
                        u64::MAX,
                        i128::MAX,
                        p[3],
                        p[4]
                    )
                })
                .collect::<String>();
            rehash(entry, &tsv)?;
        }
        "data-link-chain-out" => {
            let data = entry.join("data");
            symlink(".", data.join("dot"))?;
            symlink(format!("dot/dot/dot/{climb}"), data.join("out"))?;
            let m = crate::cache::integrity::Manifest::build(&data, None)?;
            rehash(entry, &m.to_tsv())?;
        }
        "data-symlink-out" => replace_with_link(&entry.join("data"), victim)?,
        "data-fifo" => mkfifo(&entry.join("data").join("pipe"))?,
        _ => anyhow::bail!("unknown corruption {kind}"),
    }
    Ok(())
}

/// The corruptions around entries: usage records, lock files, temp dirs, stage and
/// entry dirs, the event log.
fn corrupt_around(
    cache: &Cache,
    k: &CacheKey,
    kind: &str,
    victim: &Path,
    rng: &mut Rng,
) -> Result<()> {
    let root = cache.root();
    let entry = cache.entry_dir(k);
    let stage = k.stage.as_str();
    match kind {
        "usage-garbage" => fs::write(
            root.join(format!("usage/{stage}/{}.json", k.key)),
            random_bytes(rng, 64),
        )?,
        "usage-huge-numbers" => fs::write(
            root.join(format!("usage/{stage}/{}.json", k.key)),
            format!(
                "{{\"last_used_unix\": {}, \"hits\": {}}}",
                u64::MAX,
                u64::MAX
            ),
        )?,
        "usage-fifo" => mkfifo(&root.join(format!("usage/{stage}/{}.json", k.key)))?,
        "lock-fifo" => mkfifo(&root.join(format!("locks/{stage}/{}.lock", k.key)))?,
        "lock-symlink-out" => replace_with_link(
            &root.join(format!("locks/{stage}/{}.lock", k.key)),
            &victim.join("file"),
        )?,
        "tmp-dead-and-hostile" => {
            let tmp = root.join("tmp");
            fs::create_dir_all(tmp.join("target-x.1.1/data"))?;
            fs::write(root.join("locks/tmp/target-x.1.1.lease"), b"")?;
            symlink(victim, tmp.join("trash.1.2"))?;
            mkfifo(&tmp.join("remote-x.1.3"))?;
            fs::write(tmp.join("put.1.4"), b"junk")?;
        }
        "stage-dir-symlink-out" => {
            // The victim gets an entry-shaped copy, so following the link would find one.
            let fake = victim.with_extension("entries");
            fsutil::par_copy(&root.join("entries").join(stage), &fake, false, &|_| false)?;
            fs::rename(
                root.join("entries").join(stage),
                root.join("tmp/moved-stage"),
            )?;
            symlink(&fake, root.join("entries").join(stage))?;
        }
        "entry-dir-symlink-out" => {
            let fake = victim.with_extension("entry");
            fsutil::par_copy(&entry, &fake, false, &|_| false)?;
            fs::remove_dir_all(&entry)?;
            symlink(&fake, &entry)?;
        }
        "entry-dir-bad-name" => {
            let bad = root.join("entries").join(stage).join("bad name");
            fs::create_dir_all(bad.join("data"))?;
            fs::write(bad.join("entry.json"), b"{}")?;
        }
        "log-fifo" => mkfifo(&root.join("log/events.jsonl"))?,
        "log-symlink-out" => {
            replace_with_link(&root.join("log/events.jsonl"), &victim.join("file"))?
        }
        _ => anyhow::bail!("unknown corruption {kind}"),
    }
    Ok(())
}
