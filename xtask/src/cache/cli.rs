//! `cargo xtask cache <list|stats|prune|verify|clear|key|put|get>`: the cache's command
//! line. Each command opens the cache with the `[cache]` settings of the manifest (when
//! it exists) and prints for people, or JSON where asked.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::retention::Policy;
use super::{resolve_root, stats, Cache, CacheKey, Stage};
use crate::flags::{CacheCmd, CacheRoot, Format};
use crate::fsutil::human_bytes;
use crate::manifest::{CacheSettings, Manifest};

/// The `[cache]` settings of the manifest at `path`, or the defaults when there is none.
///
/// Errors: the manifest exists but does not parse.
fn settings(path: &Path) -> Result<CacheSettings> {
    if !path.exists() {
        return Ok(CacheSettings::default());
    }
    Ok(Manifest::load(path)?.cache)
}

fn open(r: &CacheRoot) -> Result<Cache> {
    let s = settings(&r.cache_manifest)?;
    let root = resolve_root(r.cache_dir.as_deref(), s.dir.as_deref());
    Ok(Cache::open(&root)
        .with_context(|| format!("open cache root {}", root.display()))?
        .with_policy(Policy::from(&s)))
}

fn stage_of(s: &str) -> Result<Stage> {
    Stage::ALL
        .into_iter()
        .find(|st| st.as_str() == s)
        .with_context(|| format!("unknown stage `{s}`: use registry, git or target"))
}

fn age(now: u64, then: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..=119 => format!("{d}s ago"),
        120..=7199 => format!("{}m ago", d / 60),
        7200..=172_799 => format!("{}h ago", d / 3600),
        _ => format!("{}d ago", d / 86_400),
    }
}

/// Run one `cache` subcommand (`key` is handled by the caller, which resolves plans).
///
/// Errors: the cache cannot be opened, a flag is invalid, or an I/O error.
pub fn run(cmd: CacheCmd) -> Result<ExitCode> {
    match cmd {
        CacheCmd::List { root, format } => {
            let cache = open(&root)?;
            let list = cache.list();
            if format == Format::Json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "schema_version": 1,
                        "root": cache.root(),
                        "entries": list,
                    }))?
                );
                return Ok(ExitCode::SUCCESS);
            }
            let total: u64 = list.iter().map(|l| l.info.bytes).sum();
            println!(
                "cache root {}: {} entries, {}",
                cache.root().display(),
                list.len(),
                human_bytes(total)
            );
            let now = super::now_unix();
            for l in list {
                println!(
                    "  {:<8} {:<60} {:>10} {:>7} files  used {:<9} {:>3} hits{}",
                    l.info.stage,
                    l.info.key,
                    human_bytes(l.info.bytes),
                    l.info.files,
                    age(now, l.usage.last_used_unix),
                    l.usage.hits,
                    if l.leased { "  (held by a job)" } else { "" }
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Stats { root } => {
            let cache = open(&root)?;
            let events = stats::read_events(cache.root());
            print!("{}", stats::render(&events, &cache.list(), cache.policy()));
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Prune { root, dry_run } => {
            let cache = open(&root)?;
            let ev = cache.apply_retention(dry_run);
            let verb = if dry_run { "would evict" } else { "evicted" };
            for e in &ev {
                println!(
                    "{verb} {} {} ({}): {}",
                    e.stage,
                    e.key,
                    human_bytes(e.bytes),
                    e.reason
                );
            }
            if !dry_run {
                if let Some(why) = cache.guard(0, None) {
                    println!("warning: the disk guard could not get under its limits: {why}");
                }
            }
            println!(
                "{verb} {} entries, {}",
                ev.len(),
                human_bytes(ev.iter().map(|e| e.bytes).sum())
            );
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Verify {
            root,
            quick,
            discard,
        } => {
            let cache = open(&root)?;
            let mut bad = 0;
            for (stage, key, damage) in cache.verify(!quick) {
                if damage.is_empty() {
                    println!("ok       {stage} {key}");
                    continue;
                }
                if damage.iter().all(|d| d.starts_with("leased")) {
                    println!("held     {stage} {key}: {}", damage.join("; "));
                    continue;
                }
                bad += 1;
                let fate = if discard && cache.remove(&stage, &key) {
                    " (discarded)"
                } else {
                    ""
                };
                println!("DAMAGED  {stage} {key}{fate}: {}", damage.join("; "));
            }
            if bad > 0 {
                println!(
                    "{bad} damaged entries{}",
                    if discard {
                        ""
                    } else {
                        ": rerun with --discard to remove them (restores discard them anyway)"
                    }
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Clear { root, stage } => {
            let cache = open(&root)?;
            let only = stage.as_deref().map(stage_of).transpose()?;
            let (mut n, mut held) = (0, 0);
            for l in cache.list() {
                if only.is_some_and(|s| s.as_str() != l.info.stage) {
                    continue;
                }
                if cache.remove(&l.info.stage, &l.info.key) {
                    n += 1;
                } else {
                    held += 1;
                }
            }
            println!("removed {n} entries; {held} held by running jobs were kept");
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Put {
            root,
            stage,
            key,
            src,
        } => {
            let cache = open(&root)?;
            let k = CacheKey {
                stage: stage_of(&stage)?,
                key,
                inputs: vec![("put".into(), src.display().to_string())],
            };
            let s = cache.save(&k, &src, &|_| false)?;
            println!("{}", serde_json::to_string(&s)?);
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Get {
            root,
            stage,
            key,
            dst,
            read_only,
        } => {
            let cache = if read_only {
                let s = settings(&root.cache_manifest)?;
                Cache::open_read_only(&resolve_root(root.cache_dir.as_deref(), s.dir.as_deref()))
            } else {
                open(&root)?
            };
            let k = CacheKey {
                stage: stage_of(&stage)?,
                key,
                inputs: Vec::new(),
            };
            let r = cache.restore(&k, &dst, false)?;
            for n in cache.take_notes() {
                eprintln!("note: {n}");
            }
            println!("{}", serde_json::to_string(&r)?);
            Ok(ExitCode::SUCCESS)
        }
        CacheCmd::Key { .. } => bail!("`cache key` is handled by main"),
    }
}
