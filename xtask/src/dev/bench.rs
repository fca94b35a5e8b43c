//! The cache benchmark behind `cargo xtask bench cache` (`commands::bench`): restore and
//! save of one target dir, measured in one run with our engine (move, and the
//! parallel-copy fallback) against the seeds' method (`rsync -a --delete`) and
//! actions/cache's (GNU `tar` piped through `zstd -T0`).
//!
//! Not a test: it prints medians and ratios, and with `--record FILE` rewrites the
//! `<!-- bench:cache -->` section of that Markdown file (BENCHMARKS.md). Every method
//! stores the same pruned tree, so the comparison is of transfer methods only; pruning
//! is reported on its own (raw bytes against entry bytes).
//!
//! The tree is a real target dir (`--target-dir`, copied first so the original is never
//! touched), the sample chain's (`--sample`, built here), or a generated one with a real
//! debug target's shape (see [`generate`]). Page caches are warm for every method alike
//! (the tree was just written); every timed step starts after `sync(2)`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::cache::{prune, transfer, Cache, CacheKey, Restore, Save, Stage};
use crate::support::exit::Exit;
use crate::support::fs::{self as fsutil, human_bytes};

/// What `cargo xtask bench cache` was asked for.
#[derive(Debug, Clone)]
pub struct CacheOptions {
    /// A real target dir to measure (copied first; the original is never touched).
    pub target_dir: Option<PathBuf>,
    /// Build the sample chain and measure its largest target dir instead.
    pub sample: bool,
    /// Scratch dir (default: `<workspace>/target/bllvm-ci/bench`), emptied first and
    /// removed at the end.
    pub dir: Option<PathBuf>,
    /// Generated tree: number of files.
    pub files: usize,
    /// Generated tree: total size in MiB.
    pub mib: u64,
    /// Repetitions of each measurement (medians are reported).
    pub reps: usize,
    /// Markdown file whose `<!-- bench:cache:<tree> -->` section gets the figures.
    pub record: Option<PathBuf>,
}

/// Run the cache benchmark (see the module docs): print the table, record it if asked.
///
/// Errors: a tool is missing (`rsync`, `tar`, `zstd`: install them), the tree cannot be
/// built or copied, or a measured command fails.
pub fn cache(o: &CacheOptions) -> Result<ExitCode> {
    check_tools()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask sits inside the workspace")
        .to_path_buf();
    let dir = o
        .dir
        .clone()
        .unwrap_or_else(|| workspace.join("target/bllvm-ci/bench"));
    fsutil::remove_tree(&dir)?;
    fs::create_dir_all(&dir)?;
    let raw = dir.join("raw");
    let (source, members) = prepare_tree(o, &workspace, &dir, &raw)?;
    let raw_size = fsutil::tree_size(&raw);
    println!(
        "tree: {} in {} files; measuring {} repetitions",
        human_bytes(raw_size.bytes),
        raw_size.files,
        o.reps
    );
    let b = Bench::first_save(&dir, &raw, &source, prune::target_prune(&raw, &members))?;
    let mut m = Measures::default();
    for rep in 0..o.reps {
        println!("rep {}/{}", rep + 1, o.reps);
        b.engine(rep, &mut m)?;
        b.rsync(&mut m)?;
        b.tar(&mut m)?;
    }
    let report = m.render(&Report {
        source,
        raw_bytes: raw_size.bytes,
        raw_files: raw_size.files,
        entry_bytes: b.entry_bytes,
        entry_files: b.entry_files,
        first_save_secs: b.first_secs,
        reps: o.reps,
        fs: fs_type(&dir),
    });
    print!("{report}");
    if let Some(path) = &o.record {
        let tag = if o.target_dir.is_some() {
            "target-dir"
        } else if o.sample {
            "sample"
        } else {
            "generated"
        };
        record_section(path, &format!("cache:{tag}"), &report)?;
        println!("recorded in {}", path.display());
    }
    fsutil::remove_tree(&dir)?;
    Ok(Exit::Ok.into())
}

/// The baselines' tools must be installed.
fn check_tools() -> Result<()> {
    for tool in ["rsync", "tar", "zstd"] {
        if Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            bail!("`{tool}` is not installed: `apt-get install -y {tool}`");
        }
    }
    Ok(())
}

/// Put the tree to measure at `raw`: a copy of `--target-dir`, the sample's, or a
/// generated one. Returns its description and its workspace members (for pruning).
fn prepare_tree(
    o: &CacheOptions,
    workspace: &Path,
    dir: &Path,
    raw: &Path,
) -> Result<(String, Vec<String>)> {
    if let Some(t) = &o.target_dir {
        println!("copying {} ...", t.display());
        transfer::par_copy(t, raw, false, &|_| false)?;
        Ok((format!("real target dir {}", t.display()), Vec::new()))
    } else if o.sample {
        build_sample(workspace, dir, raw)
    } else {
        let (files, mib) = (o.files, o.mib);
        println!("generating a target dir: {files} files, {mib} MiB ...");
        let members = generate(raw, files, mib << 20)?;
        Ok((
            format!("generated target dir ({files} files, {mib} MiB requested)"),
            members,
        ))
    }
}

/// The measured cache: one entry of the tree, saved once, and the scratch dir.
struct Bench {
    dir: PathBuf,
    cache: Cache,
    key: CacheKey,
    plan: prune::TargetPrune,
    /// The job's target dir, moved in and out of the entry.
    work: PathBuf,
    /// The entry's data dir, what the baselines copy.
    entry_data: PathBuf,
    entry_bytes: u64,
    entry_files: u64,
    first_secs: f64,
}

impl Bench {
    /// The first save: the job built `work` from scratch (a miss), so the engine owns it.
    fn first_save(dir: &Path, raw: &Path, source: &str, plan: prune::TargetPrune) -> Result<Bench> {
        let key = CacheKey {
            stage: Stage::Target,
            key: "bench-base-0000000000000000-0000000000000000".into(),
            inputs: vec![("bench".into(), source.to_owned())],
        };
        let cache = Cache::open(&dir.join("cache"))?;
        let work = dir.join("work/target");
        assert_eq!(cache.restore(&key, &work, false)?, Restore::Miss);
        transfer::par_copy(raw, &work, false, &|_| false)?;
        let mut first = Save::Empty;
        let first_secs = time(|| {
            first = cache.save(&key, &work, &|p| plan.skips(p))?;
            Ok(())
        })?;
        let Save::Saved { bytes, files, .. } = first else {
            bail!("the first save did not publish an entry: {first:?}");
        };
        Ok(Bench {
            dir: dir.to_path_buf(),
            entry_data: cache.entry_dir(&key).join("data"),
            cache,
            key,
            plan,
            work,
            entry_bytes: bytes,
            entry_files: files,
            first_secs,
        })
    }

    /// Our engine: move (restore, then the save of an unchanged tree), and the copy
    /// fallback (the entry leased by another job, or another filesystem).
    fn engine(&self, rep: usize, m: &mut Measures) -> Result<()> {
        let (cache, key) = (&self.cache, &self.key);
        m.move_restore.push(time(|| {
            let r = cache.restore(key, &self.work, false)?;
            let moved = matches!(
                r,
                Restore::Hit {
                    strategy: transfer::Strategy::Moved,
                    ..
                }
            );
            anyhow::ensure!(moved, "expected a moved hit, got {r:?}");
            Ok(())
        })?);
        m.move_save.push(time(|| {
            let s = cache.save(key, &self.work, &|p| self.plan.skips(p))?;
            let unchanged = matches!(s, Save::Unchanged { .. });
            anyhow::ensure!(unchanged, "expected unchanged, got {s:?}");
            Ok(())
        })?);
        let copy_dst = self.dir.join("work-copy/target");
        let ro = Cache::open_read_only(cache.root());
        m.copy_restore.push(time(|| {
            let r = ro.restore(key, &copy_dst, false)?;
            let hit = matches!(r, Restore::Hit { .. });
            anyhow::ensure!(hit, "expected a hit, got {r:?}");
            Ok(())
        })?);
        let k2 = CacheKey {
            key: format!("bench-copy-{rep}-0000000000000000-0000000000000000"),
            ..key.clone()
        };
        m.copy_save.push(time(|| {
            let s = cache.save(&k2, &copy_dst, &|_| false)?;
            anyhow::ensure!(matches!(s, Save::Saved { .. }), "expected saved, got {s:?}");
            Ok(())
        })?);
        cache.remove("target", &k2.key);
        fsutil::remove_tree(copy_dst.parent().expect("has parent"))?;
        Ok(())
    }

    /// rsync (the seeds): restore into a fresh checkout, save onto the existing copy.
    fn rsync(&self, m: &mut Measures) -> Result<()> {
        let rs_dst = self.dir.join("work-rsync/target");
        fsutil::remove_tree(&rs_dst)?;
        fs::create_dir_all(&rs_dst)?;
        let (entry, dst) = (slash(&self.entry_data), slash(&rs_dst));
        m.rsync_restore
            .push(time(|| sh("rsync", &["-a", "--delete", &entry, &dst]))?);
        m.rsync_save
            .push(time(|| sh("rsync", &["-a", "--delete", &dst, &entry]))?);
        fsutil::remove_tree(&rs_dst)?;
        Ok(())
    }

    /// tar + zstd (actions/cache): create an archive of the entry, extract it.
    fn tar(&self, m: &mut Measures) -> Result<()> {
        let archive = self.dir.join("cache.tzst");
        let _ = fs::remove_file(&archive);
        let (archive_s, entry_s) = (
            archive.display().to_string(),
            self.entry_data.display().to_string(),
        );
        m.tar_save.push(time(|| {
            sh(
                "tar",
                &[
                    "--use-compress-program",
                    "zstd -T0 --long=30",
                    "-cf",
                    &archive_s,
                    "-C",
                    &entry_s,
                    ".",
                ],
            )
        })?);
        let tar_dst = self.dir.join("work-tar/target");
        fsutil::remove_tree(&tar_dst)?;
        fs::create_dir_all(&tar_dst)?;
        let dst_s = tar_dst.display().to_string();
        m.tar_restore.push(time(|| {
            sh(
                "tar",
                &[
                    "--use-compress-program",
                    "zstd -d --long=30",
                    "-xf",
                    &archive_s,
                    "-C",
                    &dst_s,
                ],
            )
        })?);
        m.archive_bytes = fs::metadata(&archive).map_or(0, |x| x.len());
        fsutil::remove_tree(&tar_dst)?;
        Ok(())
    }
}

/// `dir/` (rsync copies the contents of a directory named with a trailing slash).
fn slash(p: &Path) -> String {
    format!("{}/", p.display())
}

fn sh(program: &str, args: &[&str]) -> Result<()> {
    let st = Command::new(program)
        .args(args)
        .status()
        .with_context(|| format!("run {program}"))?;
    anyhow::ensure!(st.success(), "{program} {} failed: {st}", args.join(" "));
    Ok(())
}

/// Time `f`, after flushing every dirty page to disk (`sync(2)`), so no measurement pays
/// for the writeback of the step before it. The writeback of a method's own writes is
/// not timed, which favors the copying methods (ours moves and writes almost nothing).
fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    // SAFETY: sync(2) takes no arguments and cannot fail.
    unsafe { libc::sync() };
    let t = Instant::now();
    f()?;
    Ok(t.elapsed().as_secs_f64())
}

/// Median of `v` (NaN when empty); shared by the benchmarks.
pub fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

fn fs_type(p: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(p)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

#[derive(Default)]
struct Measures {
    move_restore: Vec<f64>,
    move_save: Vec<f64>,
    copy_restore: Vec<f64>,
    copy_save: Vec<f64>,
    rsync_restore: Vec<f64>,
    rsync_save: Vec<f64>,
    tar_restore: Vec<f64>,
    tar_save: Vec<f64>,
    archive_bytes: u64,
}

struct Report {
    source: String,
    raw_bytes: u64,
    raw_files: u64,
    entry_bytes: u64,
    entry_files: u64,
    first_save_secs: f64,
    reps: usize,
    fs: String,
}

impl Measures {
    fn render(&self, r: &Report) -> String {
        let mr = median(&self.move_restore);
        let ms = median(&self.move_save);
        let row = |name: &str, restore: &[f64], save: &[f64]| {
            let (a, b) = (median(restore), median(save));
            format!(
                "| {name} | {a:.3} | {:.0}× | {b:.3} | {:.0}× |\n",
                a / mr,
                b / ms
            )
        };
        let mut s = String::new();
        s += &format!(
            "Tree: {}: {} in {} files. Entry after pruning: {} in {} files ({:.0}% of the raw \
             tree). Filesystem: {}; {} cores; {} repetitions, medians in seconds; the ratio is \
             that method's median over our move strategy's.\n\n",
            r.source,
            human_bytes(r.raw_bytes),
            r.raw_files,
            human_bytes(r.entry_bytes),
            r.entry_files,
            r.entry_bytes as f64 * 100.0 / r.raw_bytes.max(1) as f64,
            r.fs,
            std::thread::available_parallelism().map_or(1, |n| n.get()),
            r.reps
        );
        s += "| method | restore (s) | × ours | save (s) | × ours |\n";
        s += "|---|---:|---:|---:|---:|\n";
        s += &row(
            "ours: move (rename under lease)",
            &self.move_restore,
            &self.move_save,
        );
        s += &row(
            "ours: parallel copy fallback",
            &self.copy_restore,
            &self.copy_save,
        );
        s += &row(
            "rsync -a --delete (seeds)",
            &self.rsync_restore,
            &self.rsync_save,
        );
        s += &row(
            "tar + zstd -T0 (actions/cache)",
            &self.tar_restore,
            &self.tar_save,
        );
        s += &format!(
            "\nFirst save of the freshly built tree (prune, hash every file, move): {:.3} s. \
             Our save of an unchanged tree is a stat walk against the manifest and a rename; \
             rsync's save is onto the previous copy (unchanged, so it only compares); tar's \
             save compresses the whole entry (archive {}).\n",
            r.first_save_secs,
            human_bytes(self.archive_bytes)
        );
        s
    }
}

/// Replace (or append) the `<!-- bench:NAME -->` ... `<!-- /bench:NAME -->` section of
/// the Markdown file at `path` with `body`, the date and the command line. Shared by every
/// benchmark (`cache:<tree>`, `noop`, `remote`).
pub fn record_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let open = format!("<!-- bench:{name} -->");
    let close = format!("<!-- /bench:{name} -->");
    let (open, close) = (open.as_str(), close.as_str());
    let text = fs::read_to_string(path).unwrap_or_default();
    let now = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute] UTC"
        ))
        .unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let section = format!(
        "{open}\nLatest run: {now}, `cargo xtask {}`.\n\n{body}{close}",
        args.join(" ")
    );
    let out = match (text.find(open), text.find(close)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{section}{}", &text[..a], &text[b + close.len()..])
        }
        _ => format!("{text}\n{section}\n"),
    };
    fs::write(path, out).with_context(|| format!("write {}", path.display()))
}

/// Build the sample chain's `bllvm-node` (the repo with the most dependencies) and take
/// its target dir.
fn build_sample(workspace: &Path, dir: &Path, raw: &Path) -> Result<(String, Vec<String>)> {
    let manifest =
        crate::dev::demo::copy_sample(&workspace.join(crate::dev::demo::SAMPLE_DIR), dir)?;
    let node = manifest
        .parent()
        .expect("manifest in the chain dir")
        .join("bllvm-node");
    for args in [
        &["build", "--workspace", "--all-targets"][..],
        &["test", "--workspace", "--no-run"][..],
        &["doc", "--workspace"][..],
    ] {
        let st = Command::new("cargo")
            .args(args)
            .current_dir(&node)
            .env("CARGO_INCREMENTAL", "0")
            .status()?;
        anyhow::ensure!(
            st.success(),
            "cargo {} failed in the sample",
            args.join(" ")
        );
    }
    transfer::move_tree(&node.join("target"), raw)?;
    Ok((
        "the sample chain's bllvm-node target dir (build, test, doc)".into(),
        vec!["bllvm-node".into()],
    ))
}

/// A small deterministic generator (xorshift64*), so every run writes the same tree.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Log-uniform in `[lo, hi)`: target dirs have a few huge files and many tiny ones.
    fn log_size(&mut self, lo: u64, hi: u64) -> u64 {
        let (a, b) = ((lo as f64).ln(), (hi as f64).ln());
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (a + (b - a) * u).exp() as u64
    }
}

/// Write `n` bytes that compress about 3:1 with zstd, like object code and metadata:
/// blocks of random bytes mixed with repeated runs.
fn write_blob(path: &Path, n: u64, rng: &mut Rng) -> Result<()> {
    use std::io::Write;
    let mut f = std::io::BufWriter::new(fs::File::create(path)?);
    let mut left = n as usize;
    let mut block = [0u8; 4096];
    while left > 0 {
        let len = left.min(block.len());
        let random = len / 3;
        for chunk in block[..random].chunks_mut(8) {
            let x = rng.next().to_le_bytes();
            chunk.copy_from_slice(&x[..chunk.len()]);
        }
        block[random..len].fill((rng.next() & 0xff) as u8);
        f.write_all(&block[..len])?;
        left -= len;
    }
    f.flush()?;
    Ok(())
}

/// Generate a debug target dir with `files` files and about `bytes` bytes, shaped like a
/// real one built with `CARGO_INCREMENTAL=0` plus some incremental data from local builds:
/// per dependency crate a fingerprint dir (4 small files), an `.rlib`, an `.rmeta` and a
/// `.d` in `deps/`, a build-script dir for one crate in five; per workspace crate the same
/// plus test and bin executables (the largest files, as in real targets) and their
/// uplifted copies; an `incremental/` dir of many small object files fills the file count.
/// About 45% of the bytes are dependency artifacts, 40% workspace executables and
/// artifacts, 15% incremental data. Returns the workspace member names.
pub fn generate(root: &Path, files: usize, bytes: u64) -> Result<Vec<String>> {
    let mut g = Gen {
        rng: Rng(0x9e37_79b9_7f4a_7c15),
        prof: root.join("debug"),
    };
    for d in [".fingerprint", "deps", "build", "incremental"] {
        fs::create_dir_all(g.prof.join(d))?;
    }
    fs::write(
        root.join("CACHEDIR.TAG"),
        "Signature: 8a477f597d28d172789f06886806bc55\n",
    )?;
    let members: Vec<String> = (0..6).map(|i| format!("bllvm-ws{i}")).collect();
    let dep_bytes = bytes * 45 / 100;
    let ws_bytes = bytes * 40 / 100;
    let mut written = g.dependencies((files / 40).max(20), dep_bytes)?;
    written += g.workspace(&members, ws_bytes)?;
    // Incremental data fills the file count.
    g.incremental(
        files.saturating_sub(written).max(1),
        bytes - dep_bytes - ws_bytes,
    )?;
    Ok(members)
}

/// The state of [`generate`]: the random source (one sequence, so every run writes the
/// same tree) and the profile dir (`<root>/debug`).
struct Gen {
    rng: Rng,
    prof: PathBuf,
}

impl Gen {
    /// One compiled unit of package `pkg`: a fingerprint dir (4 small files), an `.rlib`
    /// of `rlib` bytes, an `.rmeta` and a `.d` in `deps/`, and with `build` a build-script
    /// dir. Returns the number of files written.
    fn unit(&mut self, pkg: &str, hash: &str, rlib: u64, build: bool) -> Result<usize> {
        let rng = &mut self.rng;
        let krate = pkg.replace('-', "_");
        let fp = self.prof.join(".fingerprint").join(format!("{pkg}-{hash}"));
        fs::create_dir_all(&fp)?;
        for (name, size) in [
            (format!("lib-{krate}"), 16),
            (format!("lib-{krate}.json"), rng.log_size(300, 3000)),
            (format!("dep-lib-{krate}"), rng.log_size(50, 5000)),
            ("invoked.timestamp".to_owned(), 48),
        ] {
            write_blob(&fp.join(name), size, rng)?;
        }
        let deps = self.prof.join("deps");
        write_blob(&deps.join(format!("lib{krate}-{hash}.rlib")), rlib, rng)?;
        write_blob(
            &deps.join(format!("lib{krate}-{hash}.rmeta")),
            rlib / 4,
            rng,
        )?;
        write_blob(
            &deps.join(format!("{krate}-{hash}.d")),
            rng.log_size(200, 8000),
            rng,
        )?;
        if !build {
            return Ok(7);
        }
        let b = self.prof.join("build").join(format!("{pkg}-{hash}b"));
        fs::create_dir_all(b.join("out"))?;
        for name in [
            "output",
            "root-output",
            "stderr",
            "invoked.timestamp",
            "out/generated.rs",
        ] {
            write_blob(&b.join(name), rng.log_size(20, 20_000), rng)?;
        }
        Ok(12)
    }

    /// `n` dependency crates whose rlib sizes are log-uniform, scaled to `bytes`; one in
    /// five has a build script. Returns the number of files written.
    fn dependencies(&mut self, n: usize, bytes: u64) -> Result<usize> {
        let weights: Vec<u64> = (0..n)
            .map(|_| self.rng.log_size(10_000, 20_000_000))
            .collect();
        let wsum: u64 = weights.iter().sum();
        let mut written = 0;
        for (i, w) in weights.iter().enumerate() {
            let rlib = (bytes as f64 * 0.8 * *w as f64 / wsum as f64) as u64;
            let hash = format!("{:016x}", self.rng.next());
            written += self.unit(&format!("dep{i}"), &hash, rlib, i % 5 == 0)?;
        }
        Ok(written)
    }

    /// The workspace crates, `bytes` in all: per crate a lib, a lib test executable, an
    /// integration test, a bin, and the bin's uplifted copy in the profile dir. Returns the
    /// number of files written.
    fn workspace(&mut self, members: &[String], bytes: u64) -> Result<usize> {
        let per_ws = bytes / members.len() as u64;
        let mut written = 0;
        for m in members {
            let hash = format!("{:016x}", self.rng.next());
            written += self.unit(m, &hash, per_ws / 10, false)?;
            let krate = m.replace('-', "_");
            let exe = per_ws * 3 / 10;
            let it_hash = format!("{:016x}", self.rng.next());
            for (h, name) in [(&hash, krate.clone()), (&it_hash, "it".to_owned())] {
                let fp = self.prof.join(".fingerprint").join(format!("{m}-{h}"));
                fs::create_dir_all(&fp)?;
                write_blob(
                    &fp.join(format!("test-lib-{name}.json")),
                    900,
                    &mut self.rng,
                )?;
                let test_exe = self.prof.join("deps").join(format!("{name}-{h}"));
                write_blob(&test_exe, exe, &mut self.rng)?;
                written += 2;
            }
            write_blob(&self.prof.join(m), per_ws / 10, &mut self.rng)?;
            written += 1;
        }
        Ok(written)
    }

    /// `n` small object files of `bytes` in all, in incremental session dirs of 500.
    fn incremental(&mut self, n: usize, bytes: u64) -> Result<()> {
        let per_session = 500;
        let mut left = bytes;
        for i in 0..n {
            let d = self
                .prof
                .join("incremental")
                .join(format!(
                    "bllvm_ws{}-{:x}",
                    i / per_session % 6,
                    i / per_session
                ))
                .join("s-session");
            if i % per_session == 0 {
                fs::create_dir_all(&d)?;
            }
            let size = (left / (n - i) as u64).max(1) * self.rng.log_size(50, 200) / 100;
            let size = size.min(left);
            write_blob(&d.join(format!("{i:x}.o")), size, &mut self.rng)?;
            left -= size;
        }
        Ok(())
    }
}
