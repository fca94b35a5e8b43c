//! At most one run acts on one dispatch (issue 13). A `repository_dispatch` retried after
//! a timeout may have gone through the first time, so the same `client_payload.dispatch_id`
//! can arrive twice (`dispatch::client` retries with the same id on purpose). Two
//! defences, each covering what the other cannot:
//!
//! - the generated workflows' `concurrency` group is keyed on the `dispatch_id` with
//!   `cancel-in-progress` for dispatches (`workflows.rs`): a second delivery that arrives
//!   while the first runs cancels it, so one of the two runs to the end, also on
//!   GitHub-hosted runners, whose cache root starts empty;
//! - the receiving `ci` records the id when it has handled it, under the cache root, and
//!   a later run of the same id does nothing and says why (`ci` exits 0, `chain`
//!   dispatches nothing): a delivery that arrives after the first run ended, wherever the
//!   cache root is kept (self-hosted runners, a restored cache root).
//!
//! The record is written when the run ends (the [`Handled`] guard is dropped), whatever
//! its result but a panic: a run cancelled in favour of a duplicate records nothing, so
//! the duplicate that cancelled it acts. It is `<cache root>/dispatch/handled/<sha256 of
//! the id>.json`, published with `link(2)` (the first writer wins, a reader never sees a
//! partial one), and names the workflow run that handled the id (`GITHUB_RUN_ID`): the
//! same run is never its own duplicate, so a re-run of a workflow run (a new attempt, the
//! same run id) acts again, and the `chain` step after `ci` in the same run propagates.
//! Only trusted runs record (an untrusted run writes nothing under the cache root); every
//! run reads. Records older than [`KEEP_DAYS`] are removed when one is written.
//!
//! Owns the record format and the decision; `commands::ci` and `commands::chain` call
//! [`gate`] / [`check`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::github::events::Event;
use crate::support::exit::Exit;

/// Days a handled id is remembered; GitHub retries nothing for that long.
pub const KEEP_DAYS: u64 = 30;

/// Longest `dispatch_id` accepted, in bytes (ours are `<chain_id>:<hop>:<repo>`).
const MAX_ID_BYTES: usize = 512;

/// One handled dispatch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Record {
    /// The id, as received.
    dispatch_id: String,
    /// The workflow run that handled it (`GITHUB_RUN_ID`), or `pid-<n>` outside Actions.
    run: String,
    /// When, in Unix seconds.
    at_unix: u64,
}

/// What to do with this run's dispatch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Not a dispatch with an id: nothing to dedupe.
    NotADispatch,
    /// This run handles it: no other run recorded the id.
    Ours,
    /// Another run handled it already: do nothing (the reason, for the log).
    Duplicate(String),
}

/// The directory of the records under `cache_root`.
pub fn records_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("dispatch").join("handled")
}

/// The record of `id` (its name is a hash: the id is untrusted text).
fn record_path(cache_root: &Path, id: &str) -> PathBuf {
    records_dir(cache_root).join(format!("{}.json", hex::encode(Sha256::digest(id))))
}

/// This process's run: `GITHUB_RUN_ID`, else `pid-<pid>` (never equal to another run).
pub fn this_run() -> String {
    crate::support::env::process_env("GITHUB_RUN_ID")
        .unwrap_or_else(|| format!("pid-{}", std::process::id()))
}

/// The dispatch id this run was started with, if it is a `repository_dispatch` that
/// carries one. Errors: an id that is not a usable string (empty, too long).
fn dispatch_id(event: &Event) -> Result<Option<String>> {
    let Some(id) = event.incoming().and_then(|i| i.dispatch_id) else {
        return Ok(None);
    };
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        anyhow::bail!(
            "repository_dispatch client_payload.dispatch_id is empty or longer than {MAX_ID_BYTES} bytes: send it with `cargo xtask chain`"
        );
    }
    Ok(Some(id))
}

/// Whether this run (`run`) handles the dispatch of `event`, from the records under
/// `cache_root` (read only: [`record`] writes).
///
/// Errors: the records cannot be read (naming the path and the operation), or the id is
/// unusable; a damaged record is removed, never trusted.
pub fn claim(event: &Event, cache_root: &Path, run: &str) -> Result<Claim> {
    let Some(id) = dispatch_id(event)? else {
        return Ok(Claim::NotADispatch);
    };
    Ok(read(&record_path(cache_root, &id), &id, run)?.unwrap_or(Claim::Ours))
}

/// Record that `run` handled the dispatch of `event` (nothing for another event). A
/// record already there (another run finished first) stays: the first writer wins.
///
/// Errors: the record cannot be written (naming the path and the operation).
pub fn record(event: &Event, cache_root: &Path, run: &str) -> Result<()> {
    let Some(id) = dispatch_id(event)? else {
        return Ok(());
    };
    let r = Record {
        dispatch_id: id.clone(),
        run: run.to_owned(),
        at_unix: crate::support::time::now_unix(),
    };
    if publish(&record_path(cache_root, &id), &r)? {
        forget_old(&records_dir(cache_root));
    }
    Ok(())
}

/// What the record at `path` says about `id` for `run`: `None` when there is none (or a
/// damaged one, which is removed so the id can be claimed).
fn read(path: &Path, id: &str, run: &str) -> Result<Option<Claim>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        // No record, or no records dir (a file in its way is reported when writing).
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None)
        }
        Err(e) => {
            return Err(e).with_context(|| format!("read the dispatch record {}", path.display()))
        }
    };
    match serde_json::from_slice::<Record>(&bytes) {
        Ok(r) if r.dispatch_id == id && r.run == run => Ok(Some(Claim::Ours)),
        Ok(r) if r.dispatch_id == id => Ok(Some(Claim::Duplicate(format!(
            "dispatch {} was already handled by run {} at {} (Unix time): this delivery is a duplicate (a retried dispatch), so this run does nothing",
            shown(id),
            shown(&r.run),
            r.at_unix
        )))),
        _ => {
            eprintln!(
                "warning: the dispatch record {} is damaged: removed, and the dispatch is handled",
                path.display()
            );
            let _ = std::fs::remove_file(path);
            Ok(None)
        }
    }
}

/// Write `r` at `path` if no record is there: a temporary file linked into place, so a
/// reader never sees a partial record and exactly one of two racing runs wins. `false`:
/// one was there.
fn publish(path: &Path, r: &Record) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("create the dispatch records dir {}", dir.display()))?;
    let tmp = crate::support::publish::temp_path(dir, ".record");
    let res = std::fs::write(&tmp, serde_json::to_vec(r)?)
        .with_context(|| format!("write the dispatch record {}", tmp.display()))
        .and_then(|()| match std::fs::hard_link(&tmp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => {
                Err(e).with_context(|| format!("link {} to {}", tmp.display(), path.display()))
            }
        });
    let _ = std::fs::remove_file(&tmp);
    res
}

/// Remove records (and stray temporary files) older than [`KEEP_DAYS`]; best effort.
fn forget_old(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let keep = std::time::Duration::from_secs(KEEP_DAYS * 24 * 3600);
    for e in rd.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > keep);
        if old {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// `id` for a log line: quoted and escaped (it is untrusted text), at most 120 chars.
fn shown(id: &str) -> String {
    let s: String = id.chars().take(120).collect();
    format!("{s:?}")
}

/// A dispatch this run handles: dropped when the run ends, it records the id (see the
/// module docs) when the run may write the cache, and prints a warning if it cannot.
#[must_use = "the record is written when the guard is dropped, at the end of the run"]
pub struct Handled {
    /// What to record, and where: `None` when nothing is to be recorded.
    record: Option<(Event, PathBuf)>,
}

impl Drop for Handled {
    fn drop(&mut self) {
        let Some((event, root)) = self.record.take() else {
            return;
        };
        if std::thread::panicking() {
            return;
        }
        if let Err(e) = record(&event, &root, &this_run()) {
            eprintln!(
                "warning: {e:#}: a second delivery of this dispatch may run again (the build result stands)"
            );
        }
    }
}

/// For `ci`: decide whether this run acts on its dispatch and print why not. `Ok(guard)`:
/// go on, and keep the guard to the end of the run (it records the id then, when
/// `record`, i.e. the run may write the cache). `Err(code)`: stop with it — 0 for a
/// duplicate delivery (nothing failed, nothing is done), 2 when the records cannot be
/// read (the path and the operation are printed).
pub fn gate(event: &Event, cache_root: &Path, record: bool) -> Result<Handled, ExitCode> {
    match claim(event, cache_root, &this_run()) {
        Ok(Claim::NotADispatch) => Ok(Handled { record: None }),
        Ok(Claim::Ours) => Ok(Handled {
            record: record.then(|| (event.clone(), cache_root.to_path_buf())),
        }),
        Ok(Claim::Duplicate(why)) => {
            println!("{why}");
            Err(Exit::Ok.into())
        }
        Err(e) => {
            eprintln!(
                "error: {e:#}: fix the permissions of {} (or remove it: a duplicate dispatch may then run again)",
                records_dir(cache_root).display()
            );
            Err(Exit::CouldNotRun.into())
        }
    }
}

/// For `chain`: whether this run may propagate its dispatch (never writes). `Some(why)`:
/// another run handled it, so propagating again would duplicate the whole chain below.
///
/// Errors: as [`claim`].
pub fn check(event: &Event, cache_root: &Path) -> Result<Option<String>> {
    Ok(match claim(event, cache_root, &this_run())? {
        Claim::Duplicate(why) => Some(why),
        Claim::NotADispatch | Claim::Ours => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dispatch(id: &str) -> Event {
        Event::parse(
            Some("repository_dispatch"),
            Some(
                &serde_json::json!({"client_payload": {"source": "a", "dispatch_id": id}})
                    .to_string(),
            ),
        )
        .unwrap()
    }

    #[test]
    fn a_handled_id_is_a_duplicate_for_every_other_run() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path();
        let e = dispatch("c1:1:b");
        assert_eq!(claim(&e, root, "r1").unwrap(), Claim::Ours);
        assert!(!root.join("dispatch").exists(), "a check writes nothing");
        record(&e, root, "r1").unwrap();
        // The same run again (a re-run attempt, or `chain` after `ci`) is not a duplicate.
        assert_eq!(claim(&e, root, "r1").unwrap(), Claim::Ours);
        match claim(&e, root, "r2").unwrap() {
            Claim::Duplicate(why) => {
                assert!(
                    why.contains("\"c1:1:b\"") && why.contains("\"r1\""),
                    "{why}"
                )
            }
            c => panic!("{c:?}"),
        }
        // The first writer wins.
        record(&e, root, "r2").unwrap();
        assert!(matches!(
            claim(&e, root, "r2").unwrap(),
            Claim::Duplicate(_)
        ));
        // Another id, and events without one, are not affected.
        assert_eq!(claim(&dispatch("c1:1:c"), root, "r2").unwrap(), Claim::Ours);
        let push = Event::parse(Some("push"), Some("{}")).unwrap();
        assert_eq!(claim(&push, root, "r2").unwrap(), Claim::NotADispatch);
        record(&push, root, "r2").unwrap();
        // A hostile id never becomes a path.
        record(&dispatch("../../../../etc/x"), root, "r1").unwrap();
        let names: Vec<String> = std::fs::read_dir(records_dir(root))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(
            names.iter().all(|n| n.len() == 64 + ".json".len()),
            "{names:?}"
        );
        assert!(claim(&dispatch(""), root, "r1").is_err());
    }

    #[test]
    fn the_guard_records_at_the_end_only_when_asked() {
        let t = tempfile::tempdir().unwrap();
        let e = dispatch("c1:1:b");
        drop(gate(&e, t.path(), false).ok().unwrap());
        assert!(
            !t.path().join("dispatch").exists(),
            "a read-only run records nothing"
        );
        let g = gate(&e, t.path(), true).ok().unwrap();
        assert_eq!(
            claim(&e, t.path(), "elsewhere").unwrap(),
            Claim::Ours,
            "not before the end"
        );
        drop(g);
        assert!(matches!(
            claim(&e, t.path(), "elsewhere").unwrap(),
            Claim::Duplicate(_)
        ));
    }

    #[test]
    fn a_damaged_record_is_replaced_not_trusted() {
        let t = tempfile::tempdir().unwrap();
        let e = dispatch("c1:1:b");
        let p = record_path(t.path(), "c1:1:b");
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, b"{\"dispatch_id\": 1").unwrap();
        assert_eq!(claim(&e, t.path(), "r2").unwrap(), Claim::Ours);
        assert!(!p.exists());
        record(&e, t.path(), "r2").unwrap();
        assert!(matches!(
            claim(&e, t.path(), "r3").unwrap(),
            Claim::Duplicate(_)
        ));
    }

    #[test]
    fn an_unwritable_record_dir_is_an_error_naming_the_path_and_the_operation() {
        let t = tempfile::tempdir().unwrap();
        // A file where the records' directory goes.
        std::fs::write(t.path().join("dispatch"), b"").unwrap();
        let e = dispatch("c1:1:b");
        assert_eq!(claim(&e, t.path(), "r1").unwrap(), Claim::Ours);
        let text = format!("{:#}", record(&e, t.path(), "r1").unwrap_err());
        assert!(
            text.contains("create the dispatch records dir")
                && text.contains(&records_dir(t.path()).display().to_string()),
            "{text}"
        );
    }
}
