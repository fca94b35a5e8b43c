//! The two changes a run makes to a checkout, how they are undone, and how a killed run's
//! leftovers are reconciled:
//!
//! - Registry dependency mode: take a repo's sibling `[patch.crates-io]` entries out for
//!   the duration of a run, as the real bllvm repos' CI does with `sed`, and put them back
//!   after. Only entries whose `path` points into another checkout of the chain are
//!   removed; git patches (e.g. blvm-node's `quinn-proto`) and paths inside the repo stay.
//! - A `Cargo.lock` generated for a repo that commits none, removed after the run.
//!
//! Both are recorded before they happen, so what a killed run leaves is recognised rather
//! than trusted: the original `Cargo.toml` is written to `Cargo.toml.orig.bllvm-ci`
//! (a temp file renamed into place, so it is complete or absent) with a record
//! `Cargo.toml.orig.bllvm-ci.sha256` of the backup's and the stripped file's sha256; a
//! generated lockfile has a marker `Cargo.lock.bllvm-ci-generated` holding its sha256.
//! [`reconcile`] (run by a run that holds the checkout's lock, before it changes
//! anything) restores a backup only when it is complete and the current `Cargo.toml` is
//! byte for byte what the strip wrote, and removes a lockfile only when it is the one
//! generated; otherwise it keeps both files and says what to do. Read-only commands never
//! call it.
//!
//! Each change and its undo action are registered atomically with respect to an
//! emergency stop (`support::signals`), which undoes them if the process must stop at
//! once.
//!
//! Owns `Cargo.toml`, `Cargo.lock` and the files named above in a checkout's root; touches
//! nothing else.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::support::fs::sha256_hex;
use crate::support::signals::{self, OnStop};

/// Suffix of the backup of a manifest whose patches were removed.
pub const BACKUP_SUFFIX: &str = "orig.bllvm-ci";

/// Suffix (after `Cargo.toml.`) of the record of a backup: `backup <sha256>` and
/// `stripped <sha256>` lines.
const RECORD_SUFFIX: &str = "orig.bllvm-ci.sha256";

/// Name of the marker of a generated lockfile: `pending` while `cargo generate-lockfile`
/// runs, then `sha256 <hex>` of the lockfile it wrote.
const LOCK_MARKER: &str = "Cargo.lock.bllvm-ci-generated";

/// A manifest stripped for this run; put back when dropped (see [`reconcile`]: a file
/// changed since the strip is kept, with a warning).
#[derive(Debug)]
pub struct StrippedManifest {
    /// Names of the patch entries removed.
    pub removed: Vec<String>,
    _undo: OnStop,
}

fn backup_path(manifest: &Path) -> PathBuf {
    manifest.with_extension(format!("toml.{BACKUP_SUFFIX}"))
}

fn record_path(manifest: &Path) -> PathBuf {
    manifest.with_extension(format!("toml.{RECORD_SUFFIX}"))
}

/// What [`reconcile`] did with one leftover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leftover {
    /// A stripped `Cargo.toml` was put back from its complete backup.
    Restored,
    /// A leftover needed nothing but its own removal (a backup identical to the manifest,
    /// or a generated lockfile exactly as generated, removed with its marker).
    Removed,
    /// Both files were kept: the text says why and what to do.
    Kept(String),
}

/// Reconcile what a killed run left in `repo_dir` (see the module docs). Returns what was
/// done, one entry per leftover found (none: nothing was left).
///
/// Errors: a file cannot be read, renamed or removed (the message names it).
pub fn reconcile(repo_dir: &Path) -> Result<Vec<Leftover>> {
    let mut out = Vec::new();
    out.extend(reconcile_manifest(&repo_dir.join("Cargo.toml"))?);
    out.extend(reconcile_lockfile(repo_dir)?);
    Ok(out)
}

/// Whether a backup of `repo_dir/Cargo.toml` is present (a run is stripping it now, or a
/// killed run left it): read-only commands leave such a repo alone.
pub fn has_backup(repo_dir: &Path) -> bool {
    backup_path(&repo_dir.join("Cargo.toml")).exists()
}

fn reconcile_manifest(manifest: &Path) -> Result<Option<Leftover>> {
    let backup = backup_path(manifest);
    let record = record_path(manifest);
    remove_temp_files(manifest)?;
    if !backup.exists() {
        remove_if_exists(&record)?;
        return Ok(None);
    }
    let saved = fs::read(&backup).with_context(|| format!("read {}", backup.display()))?;
    let current = fs::read(manifest).ok();
    if current.as_deref() == Some(&saved[..]) {
        remove_if_exists(&backup)?;
        remove_if_exists(&record)?;
        return Ok(Some(Leftover::Removed));
    }
    let rec = fs::read_to_string(&record)
        .ok()
        .and_then(|t| parse_record(&t));
    let why = match (&rec, &current) {
        (None, _) => Some("there is no complete record of what the run wrote (it was killed while backing up, or an older bllvm-ci made it)"),
        (Some((b, _)), _) if *b != sha256_hex(&saved) => {
            Some("the backup is not the file that was backed up (truncated or changed)")
        }
        (_, None) => Some("Cargo.toml is missing"),
        (Some((_, s)), Some(c)) if *s != sha256_hex(c) => {
            Some("Cargo.toml was changed after the run stripped it")
        }
        _ => None,
    };
    if let Some(why) = why {
        return Ok(Some(Leftover::Kept(format!(
            "kept {m} as it is and the backup {b} beside it: {why}; compare the two, keep the one you want as Cargo.toml, then delete {b} and {r}",
            m = manifest.display(),
            b = backup.display(),
            r = record.display()
        ))));
    }
    fs::rename(&backup, manifest)
        .with_context(|| format!("restore {} from {}", manifest.display(), backup.display()))?;
    remove_if_exists(&record)?;
    Ok(Some(Leftover::Restored))
}

/// `(backup sha256, stripped sha256)` from a record's text.
fn parse_record(text: &str) -> Option<(String, String)> {
    let mut backup = None;
    let mut stripped = None;
    for line in text.lines() {
        match line.split_once(' ') {
            Some(("backup", h)) if is_sha256(h) => backup = Some(h.to_owned()),
            Some(("stripped", h)) if is_sha256(h) => stripped = Some(h.to_owned()),
            _ => {}
        }
    }
    Some((backup?, stripped?))
}

fn is_sha256(h: &str) -> bool {
    h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove the temp files of an interrupted [`write_atomic`] next to `manifest` (they are
/// incomplete by construction: a complete one would have been renamed).
fn remove_temp_files(manifest: &Path) -> Result<()> {
    for target in [
        manifest.to_path_buf(),
        backup_path(manifest),
        record_path(manifest),
    ] {
        remove_if_exists(&temp_path(&target))?;
    }
    Ok(())
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e).with_context(|| format!("remove {}", p.display())),
    }
}

fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    target.with_file_name(format!(".{name}.bllvm-ci-tmp"))
}

/// Write `bytes` to `path` completely or not at all: a temp file beside it, synced, with
/// `like`'s permissions, renamed into place.
fn write_atomic(path: &Path, bytes: &[u8], like: Option<&fs::Permissions>) -> Result<()> {
    let tmp = temp_path(path);
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        if let Some(p) = like {
            fs::set_permissions(&tmp, p.clone())?;
        }
        fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.with_context(|| format!("write {}", path.display()))
}

/// The put-back of a stripped manifest: [`reconcile_manifest`], with what it could not do
/// as a warning (it runs on drop or in an emergency stop, where nobody can take an error).
fn put_back(manifest: &Path) {
    match reconcile_manifest(manifest) {
        Ok(Some(Leftover::Kept(why))) => eprintln!("warning: {why}"),
        Ok(_) => {}
        Err(e) => eprintln!(
            "warning: could not put back {}: {e:#}; move {} over it by hand",
            manifest.display(),
            backup_path(manifest).display()
        ),
    }
}

/// Remove from `repo_dir/Cargo.toml` the `[patch.crates-io]` entries whose `path`
/// resolves into one of `sibling_dirs`. Returns `None` when there was nothing to remove
/// (the file is untouched), else a guard that puts the file back when dropped.
///
/// Errors: the manifest cannot be read, parsed or written, or a backup is already in the
/// way (a killed run's, kept by [`reconcile`]: the message says what to do).
pub fn strip_sibling_patches(
    repo_dir: &Path,
    sibling_dirs: &[PathBuf],
) -> Result<Option<StrippedManifest>> {
    let manifest = repo_dir.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("read {}", manifest.display()))?;
    let Some((stripped, removed)) = stripped_text(repo_dir, &text, sibling_dirs)? else {
        return Ok(None);
    };
    let backup = backup_path(&manifest);
    if backup.exists() {
        bail!(
            "cannot strip the sibling patches of {}: the backup {} of an earlier run is in the way; compare it with Cargo.toml, keep the one you want, then delete {} and {}",
            manifest.display(),
            backup.display(),
            backup.display(),
            record_path(&manifest).display()
        );
    }
    let perms = fs::metadata(&manifest).ok().map(|m| m.permissions());
    let record = format!(
        "backup {}\nstripped {}\n",
        sha256_hex(&text),
        sha256_hex(&stripped)
    );
    // Backup, record and stripped file, and the undo action, all or nothing with respect
    // to an emergency stop (which waits for the registry). The action is registered last:
    // an `OnStop` dropped inside the closure would wait for the registry it holds.
    let undo = signals::with_registry(|reg| -> Result<OnStop> {
        write_atomic(&backup, text.as_bytes(), perms.as_ref())?;
        write_atomic(&record_path(&manifest), record.as_bytes(), None)?;
        write_atomic(&manifest, stripped.as_bytes(), perms.as_ref())?;
        let m = manifest.clone();
        Ok(reg.on_stop(move || put_back(&m)))
    });
    let undo = match undo {
        Ok(u) => u,
        Err(e) => {
            // Nothing was stripped (the manifest is written last, atomically): drop the
            // backup.
            let _ = fs::remove_file(&backup);
            let _ = fs::remove_file(record_path(&manifest));
            return Err(e);
        }
    };
    Ok(Some(StrippedManifest {
        removed,
        _undo: undo,
    }))
}

/// The manifest text without its sibling patches, and their names; `None` when there is
/// nothing to remove.
fn stripped_text(
    repo_dir: &Path,
    text: &str,
    sibling_dirs: &[PathBuf],
) -> Result<Option<(String, Vec<String>)>> {
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .with_context(|| format!("parse {}", repo_dir.join("Cargo.toml").display()))?;
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let siblings: Vec<PathBuf> = sibling_dirs.iter().map(|d| canon(d)).collect();
    let mut removed = Vec::new();
    if let Some(patches) = doc
        .get_mut("patch")
        .and_then(|p| p.get_mut("crates-io"))
        .and_then(|c| c.as_table_like_mut())
    {
        let names: Vec<String> = patches.iter().map(|(k, _)| k.to_owned()).collect();
        for name in names {
            let path = patches
                .get(&name)
                .and_then(|v| v.get("path"))
                .and_then(|p| p.as_str())
                .map(|p| canon(&repo_dir.join(p)));
            if path.is_some_and(|p| siblings.iter().any(|s| p.starts_with(s))) {
                patches.remove(&name);
                removed.push(name);
            }
        }
    }
    Ok((!removed.is_empty()).then(|| (doc.to_string(), removed)))
}

/// Whether stripping `repo_dir` would change it (a dry run of [`strip_sibling_patches`]).
///
/// Errors: the manifest cannot be read or parsed.
pub fn would_strip(repo_dir: &Path, sibling_dirs: &[PathBuf]) -> Result<bool> {
    let manifest = repo_dir.join("Cargo.toml");
    let text =
        fs::read_to_string(&manifest).with_context(|| format!("read {}", manifest.display()))?;
    Ok(stripped_text(repo_dir, &text, sibling_dirs)?.is_some())
}

/// A `Cargo.lock` this run generates (the repo commits none); removed with its marker
/// when dropped, so the checkout is left as it was found and the next run resolves
/// afresh. Kept, it would also poison a later run in the other dependency mode: a
/// lockfile resolved against crates.io pins versions newer than a sibling checkout's, and
/// cargo then reports the sibling `[patch]` as unused (seen on the real chain).
#[derive(Debug)]
pub struct GeneratedLockfile {
    /// The lockfile.
    pub path: PathBuf,
    _undo: OnStop,
}

impl GeneratedLockfile {
    /// Before `cargo generate-lockfile` runs in `repo_dir`: write the marker (`pending`)
    /// and register the removal, atomically with respect to an emergency stop.
    ///
    /// Errors: the marker cannot be written.
    pub fn begin(repo_dir: &Path) -> Result<GeneratedLockfile> {
        let path = repo_dir.join("Cargo.lock");
        let marker = repo_dir.join(LOCK_MARKER);
        let undo = signals::with_registry(|reg| -> Result<OnStop> {
            write_atomic(&marker, b"pending\n", None)?;
            let (p, m) = (path.clone(), marker.clone());
            Ok(reg.on_stop(move || {
                for f in [&p, &m] {
                    if let Err(e) = remove_if_exists(f) {
                        eprintln!("warning: {e:#}; delete it by hand");
                    }
                }
            }))
        })?;
        Ok(GeneratedLockfile { path, _undo: undo })
    }

    /// `cargo generate-lockfile` found a lockfile after all (it wrote none): forget the
    /// removal, so the file is left alone, and drop the marker.
    pub fn not_generated(self) {
        let marker = self.path.with_file_name(LOCK_MARKER);
        self._undo.disarm();
        let _ = remove_if_exists(&marker);
    }

    /// After it ran: record the lockfile's sha256 in the marker, so a killed run's
    /// lockfile is removed only while it is exactly the one generated.
    ///
    /// Errors: the lockfile cannot be read or the marker written.
    pub fn finish(&self) -> Result<()> {
        let bytes =
            fs::read(&self.path).with_context(|| format!("read {}", self.path.display()))?;
        let marker = self.path.with_file_name(LOCK_MARKER);
        write_atomic(
            &marker,
            format!("sha256 {}\n", sha256_hex(bytes)).as_bytes(),
            None,
        )
    }
}

fn reconcile_lockfile(repo_dir: &Path) -> Result<Option<Leftover>> {
    let marker = repo_dir.join(LOCK_MARKER);
    let lock = repo_dir.join("Cargo.lock");
    remove_if_exists(&temp_path(&marker))?;
    let Ok(text) = fs::read_to_string(&marker) else {
        return Ok(None);
    };
    let Ok(bytes) = fs::read(&lock) else {
        remove_if_exists(&marker)?;
        return Ok(Some(Leftover::Removed));
    };
    let ours = match text.trim().split_once(' ') {
        Some(("sha256", h)) => h == sha256_hex(&bytes),
        // Killed while `cargo generate-lockfile` ran: the run held the checkout's lock, so
        // the lockfile that appeared is the one it generated.
        _ => text.trim() == "pending",
    };
    if !ours {
        return Ok(Some(Leftover::Kept(format!(
            "kept {} although a killed run generated it: it was changed since; if you want to keep it, delete {}, else delete both",
            lock.display(),
            marker.display()
        ))));
    }
    remove_if_exists(&lock)?;
    remove_if_exists(&marker)?;
    Ok(Some(Leftover::Removed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGINAL: &str = r#"[package]
name = "node"
version = "0.1.0"

[patch.crates-io]
quinn-proto = { git = "https://example.invalid/quinn", tag = "x" }
# sibling
protocol = { path = "../protocol" }
inner = { path = "vendored" }
"#;

    /// A checkout `node` with a sibling patch to `protocol`; returns (tempdir, repo, sibling).
    fn fixture() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let repo = t.path().join("node");
        let sib = t.path().join("protocol");
        fs::create_dir_all(repo.join("vendored")).unwrap();
        fs::create_dir_all(&sib).unwrap();
        fs::write(repo.join("Cargo.toml"), ORIGINAL).unwrap();
        (t, repo, sib)
    }

    fn manifest(repo: &Path) -> String {
        fs::read_to_string(repo.join("Cargo.toml")).unwrap()
    }

    #[test]
    fn strips_only_sibling_paths_and_restores() {
        let (t, repo, sib) = fixture();
        {
            let g = strip_sibling_patches(&repo, std::slice::from_ref(&sib))
                .unwrap()
                .unwrap();
            assert_eq!(g.removed, ["protocol"]);
            let now = manifest(&repo);
            assert!(
                !now.contains("../protocol")
                    && now.contains("quinn-proto")
                    && now.contains("vendored"),
                "{now}"
            );
        }
        assert_eq!(manifest(&repo), ORIGINAL);
        assert!(!has_backup(&repo));
        assert!(!record_path(&repo.join("Cargo.toml")).exists());
        assert!(strip_sibling_patches(&repo, &[t.path().join("other")])
            .unwrap()
            .is_none());
    }

    /// A killed run (the guard never dropped) leaves a stripped manifest, a complete
    /// backup and its record: the next reconcile puts the original back byte for byte.
    #[test]
    fn a_genuine_leftover_is_restored() {
        let (_t, repo, sib) = fixture();
        let g = strip_sibling_patches(&repo, &[sib]).unwrap().unwrap();
        std::mem::forget(g);
        assert_ne!(manifest(&repo), ORIGINAL);
        assert_eq!(reconcile(&repo).unwrap(), [Leftover::Restored]);
        assert_eq!(manifest(&repo), ORIGINAL);
        assert!(!has_backup(&repo));
        assert_eq!(reconcile(&repo).unwrap(), []);
    }

    /// An empty or truncated backup is never renamed over the real file, with or without
    /// a record; both files stay.
    #[test]
    fn an_empty_or_truncated_backup_is_never_restored() {
        let (_t, repo, sib) = fixture();
        let g = strip_sibling_patches(&repo, &[sib]).unwrap().unwrap();
        std::mem::forget(g);
        let stripped = manifest(&repo);
        let backup = backup_path(&repo.join("Cargo.toml"));
        for bad in [&b""[..], &ORIGINAL.as_bytes()[..20]] {
            fs::write(&backup, bad).unwrap();
            let got = reconcile(&repo).unwrap();
            assert!(
                matches!(&got[..], [Leftover::Kept(w)] if w.contains("not the file that was backed up")),
                "{got:?}"
            );
            assert_eq!(manifest(&repo), stripped);
            assert_eq!(fs::read(&backup).unwrap(), bad);
        }
        fs::remove_file(record_path(&repo.join("Cargo.toml"))).unwrap();
        fs::write(&backup, b"").unwrap();
        let got = reconcile(&repo).unwrap();
        assert!(
            matches!(&got[..], [Leftover::Kept(w)] if w.contains("no complete record")),
            "{got:?}"
        );
        assert_eq!(manifest(&repo), stripped);
    }

    /// A `Cargo.toml` the user edited after a killed run is kept, and so is the backup.
    #[test]
    fn a_user_edited_manifest_after_a_killed_run_is_kept() {
        let (_t, repo, sib) = fixture();
        let g = strip_sibling_patches(&repo, std::slice::from_ref(&sib))
            .unwrap()
            .unwrap();
        std::mem::forget(g);
        // The user put the patch back by hand, with a change of their own.
        let edited = format!("{ORIGINAL}\n# my edit\n");
        fs::write(repo.join("Cargo.toml"), &edited).unwrap();
        let got = reconcile(&repo).unwrap();
        assert!(
            matches!(&got[..], [Leftover::Kept(w)] if w.contains("changed after the run stripped it")),
            "{got:?}"
        );
        assert_eq!(manifest(&repo), edited);
        assert!(has_backup(&repo));
        // A strip now fails closed instead of overwriting the kept backup.
        let e = strip_sibling_patches(&repo, &[sib]).unwrap_err();
        assert!(format!("{e:#}").contains("is in the way"), "{e:#}");
    }

    /// A backup identical to the manifest (killed before the stripped file was written)
    /// is simply removed; so is a stray temp file.
    #[test]
    fn a_backup_identical_to_the_manifest_is_removed() {
        let (_t, repo, _sib) = fixture();
        let m = repo.join("Cargo.toml");
        fs::write(backup_path(&m), ORIGINAL).unwrap();
        fs::write(temp_path(&m), "half").unwrap();
        assert_eq!(reconcile(&repo).unwrap(), [Leftover::Removed]);
        assert_eq!(manifest(&repo), ORIGINAL);
        assert!(!has_backup(&repo) && !temp_path(&m).exists());
    }

    /// A killed run's generated lockfile is removed while it is exactly as generated (or
    /// the run died while generating), and kept once it changed.
    #[test]
    fn a_generated_lockfile_leftover_is_removed_only_while_unchanged() {
        let (_t, repo, _sib) = fixture();
        let g = GeneratedLockfile::begin(&repo).unwrap();
        fs::write(repo.join("Cargo.lock"), "# generated\n").unwrap();
        g.finish().unwrap();
        std::mem::forget(g);
        assert_eq!(reconcile(&repo).unwrap(), [Leftover::Removed]);
        assert!(!repo.join("Cargo.lock").exists() && !repo.join(LOCK_MARKER).exists());

        let g = GeneratedLockfile::begin(&repo).unwrap();
        std::mem::forget(g);
        fs::write(repo.join("Cargo.lock"), "# half written by a killed run\n").unwrap();
        assert_eq!(reconcile(&repo).unwrap(), [Leftover::Removed]);

        let g = GeneratedLockfile::begin(&repo).unwrap();
        fs::write(repo.join("Cargo.lock"), "# generated\n").unwrap();
        g.finish().unwrap();
        std::mem::forget(g);
        fs::write(repo.join("Cargo.lock"), "# edited by the user\n").unwrap();
        let got = reconcile(&repo).unwrap();
        assert!(matches!(&got[..], [Leftover::Kept(_)]), "{got:?}");
        assert!(repo.join("Cargo.lock").exists());

        // Dropped normally: removed with its marker.
        fs::remove_file(repo.join(LOCK_MARKER)).unwrap();
        fs::remove_file(repo.join("Cargo.lock")).unwrap();
        let g = GeneratedLockfile::begin(&repo).unwrap();
        fs::write(repo.join("Cargo.lock"), "x").unwrap();
        drop(g);
        assert!(!repo.join("Cargo.lock").exists() && !repo.join(LOCK_MARKER).exists());
    }
}
