//! `cargo xtask bench remote`: save and restore of one generated target dir through the
//! local engine and through the remote cache's S3 backend, side by side (medians and
//! rates), optionally recorded in a Markdown file's `<!-- bench:remote -->` section.
//!
//! Needs the S3 backend, so the cargo feature `remote`; without it the command says how
//! to build with it. Owns the measurement only: the backends are `cache::storage`'s.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Result;

/// Options of `bench remote`.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))] // without the backend nothing is measured
pub struct RemoteBench<'a> {
    /// Work dir (removed first): the generated tree, the local roots, the downloads.
    pub dir: &'a Path,
    /// Files of the generated target dir.
    pub files: usize,
    /// MiB of the generated target dir.
    pub mib: u64,
    /// Measurements of each path (medians are reported).
    pub reps: usize,
    /// Markdown file whose `<!-- bench:remote -->` section is rewritten.
    pub record: Option<&'a Path>,
}

/// `cargo xtask bench remote`: save and restore of one generated target dir (`files`
/// files, `mib` MiB, a real target's shape) through the local engine (copy strategy: save
/// into a fresh root, restore through a read-only view) and through the remote (upload of
/// that entry, download into an entry dir with every check), `reps` times each with fresh
/// keys; prints medians and rates, and with `record` rewrites that file's section. The
/// remote comes from `ci/chain.toml`'s `[cache.remote]` and the environment, as in `ci`.
///
/// Errors: the binary was built without the `remote` feature, no remote is configured
/// (with what to set), the remote is unusable, or a measured transfer fails.
pub fn run(o: &RemoteBench) -> Result<ExitCode> {
    #[cfg(feature = "remote")]
    {
        imp::run(o)
    }
    #[cfg(not(feature = "remote"))]
    {
        let _ = o;
        anyhow::bail!(
            "`bench remote` needs the S3 backend, and this xtask was built without the \
             `remote` cargo feature: run `cargo run -p xtask --features remote -- bench remote ...`"
        )
    }
}

#[cfg(feature = "remote")]
mod imp {
    use std::path::Path;
    use std::process::ExitCode;
    use std::time::Instant;

    use anyhow::{bail, Context, Result};

    use super::RemoteBench;
    use crate::cache::retention::Policy;
    use crate::cache::settings::{
        RemoteConfig, ACCESS_KEY_ENV, BUCKET_ENV, ENDPOINT_ENV, SECRET_KEY_ENV,
    };
    use crate::cache::storage::{writer_id, Put, S3Storage, Storage, ZSTD_LEVEL};
    use crate::cache::{Cache, CacheKey, Restore, Save, Stage};
    use crate::support::fs::{human_bytes, remove_tree};

    /// Seconds of each measured path, one repetition.
    #[derive(Default)]
    struct Times {
        local_save: Vec<f64>,
        local_restore: Vec<f64>,
        remote_save: Vec<f64>,
        remote_restore: Vec<f64>,
    }

    /// What the entry looked like (the same every repetition).
    #[derive(Default, Clone, Copy)]
    struct Shape {
        files: u64,
        data_bytes: u64,
        wire_bytes: u64,
    }

    pub fn run(o: &RemoteBench) -> Result<ExitCode> {
        let remote = open_remote()?;
        let load = load_average();
        let _ = remove_tree(o.dir);
        let tree = o.dir.join("tree");
        crate::dev::bench::generate(&tree, o.files, o.mib << 20)?;
        let reps = o.reps.max(1);
        let run = writer_id();
        let (mut times, mut shape) = (Times::default(), Shape::default());
        for i in 0..reps {
            let key = CacheKey {
                stage: Stage::Target,
                key: format!("bench-{run}-{i}"),
                inputs: vec![("bench".into(), run.clone())],
            };
            shape = measure(&remote, o.dir, &tree, &key, i, &mut times)?;
        }
        let body = report(o, reps, &remote.describe(), &load, shape, &times);
        println!("{body}");
        if let Some(path) = o.record {
            crate::dev::bench::record_section(path, "remote", &body)?;
            println!("recorded in {}", path.display());
        }
        Ok(crate::support::exit::Exit::Ok.into())
    }

    /// The remote of `ci/chain.toml` and the environment, probed.
    fn open_remote() -> Result<S3Storage> {
        let chain = Path::new("ci/chain.toml");
        let settings = if chain.exists() {
            crate::engine::manifest::Manifest::load(chain)?.cache.remote
        } else {
            None
        };
        let cfg = RemoteConfig::resolve(settings.as_ref(), true, &|k| std::env::var(k).ok())
            .with_context(|| {
                format!(
                    "no remote cache configured: set {BUCKET_ENV} (and {ENDPOINT_ENV}, \
                     {ACCESS_KEY_ENV}, {SECRET_KEY_ENV}) or [cache.remote] in ci/chain.toml"
                )
            })?;
        let remote = S3Storage::new(cfg)?;
        remote.probe()?;
        Ok(remote)
    }

    /// `<load average> on <n> CPUs`: shared CI machines are rarely idle, so the record
    /// says how busy this one was.
    fn load_average() -> String {
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().map(str::to_owned))
            .unwrap_or_else(|| "?".into());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        format!("{load} on {cpus} CPUs")
    }

    /// One repetition: local save and restore of `tree` as `key`, then upload of that
    /// entry and download into a fresh entry dir. Adds the times to `t`.
    fn measure(
        remote: &S3Storage,
        dir: &Path,
        tree: &Path,
        key: &CacheKey,
        i: usize,
        t: &mut Times,
    ) -> Result<Shape> {
        // The disk guard is off: this measures transfers, not eviction.
        let local = Cache::open(&dir.join(format!("local-{i}")))?.with_policy(Policy {
            disk_max_used_percent: 100,
            disk_min_free_bytes: 0,
            ..Policy::default()
        });
        let start = Instant::now();
        let saved = local.save(key, tree, &|_| false)?;
        t.local_save.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(matches!(saved, Save::Saved { .. }), "local save: {saved:?}");
        let start = Instant::now();
        let ro = Cache::open_read_only(local.root());
        let restored = ro.restore(key, &dir.join(format!("out-{i}")), false)?;
        t.local_restore.push(start.elapsed().as_secs_f64());
        anyhow::ensure!(
            matches!(restored, Restore::Hit { .. }),
            "local restore: {restored:?}"
        );
        let shape = match remote.put(key, &local.entry_dir(key))? {
            Put::Stored(tr) => {
                t.remote_save.push(tr.secs);
                Shape {
                    files: tr.files,
                    data_bytes: tr.data_bytes,
                    wire_bytes: tr.wire_bytes,
                }
            }
            other => bail!("remote save: {other:?}"),
        };
        let got = remote
            .get(key, &dir.join(format!("got-{i}")))?
            .context("remote restore missed the entry just saved")?;
        t.remote_restore.push(got.secs);
        Ok(shape)
    }

    /// The Markdown section: what was measured, the table of medians, how to read it.
    fn report(
        o: &RemoteBench,
        reps: usize,
        remote: &str,
        load: &str,
        s: Shape,
        t: &Times,
    ) -> String {
        let med = crate::dev::bench::median;
        let (ls, lr) = (med(&t.local_save), med(&t.local_restore));
        let (rs, rr) = (med(&t.remote_save), med(&t.remote_restore));
        let rate = |secs: f64| {
            format!(
                "{}/s",
                human_bytes((s.data_bytes as f64 / secs.max(1e-9)) as u64)
            )
        };
        let (files, mib) = (o.files, o.mib);
        let mut body = format!(
            "`cargo xtask bench remote --files {files} --mib {mib} --reps {reps}` against \
             {remote}: a generated target dir of {} files, {} ({} as tar + zstd level \
             {ZSTD_LEVEL} on the wire). Medians of {reps}; rates are entry bytes per second. \
             Remote save = tar + zstd + multipart upload + commit; remote restore = ranged \
             download + unpack + mtimes + full sha256 check of every file. Load average at \
             the start: {load}.\n\n",
            s.files,
            human_bytes(s.data_bytes),
            human_bytes(s.wire_bytes),
        );
        body += "| path | save | save rate | restore | restore rate |\n|---|---|---|---|---|\n";
        body += &format!(
            "| local engine (copy) | {ls:.2} s | {} | {lr:.2} s | {} |\n",
            rate(ls),
            rate(lr)
        );
        body += &format!(
            "| remote (S3 API) | {rs:.2} s | {} | {rr:.2} s | {} |\n",
            rate(rs),
            rate(rr)
        );
        body += &format!(
            "\nLocal save = parallel copy + sha256 of every file (the manifest); the remote \
             save uploads that entry and reuses its manifest. With the server on the same \
             machine (loopback) this measures the pipeline (tar, zstd, sha256, HTTP), not a \
             network: on a runner the remote side is bounded by bandwidth, {} on the wire \
             per {} of entry (e.g. at 100 MiB/s, {:.1} s each way for this tree).\n",
            human_bytes(s.wire_bytes),
            human_bytes(s.data_bytes),
            s.wire_bytes as f64 / (100.0 * 1024.0 * 1024.0)
        );
        body
    }
}
