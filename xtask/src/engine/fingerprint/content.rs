//! The content input of a repo's fingerprint: every file of its checkout a build or a test
//! can read, tracked by git or not, ignored or not.
//!
//! In a git work tree: the tree of `HEAD` for the checkout's directory, the diff of tracked
//! files against it, and the content of every file git does not track — untracked *and
//! ignored* ones. Elsewhere: every file, by path and content.
//!
//! Why ignored files are hashed from the tree rather than read from cargo's dep-info
//! files (`target/**/*.d`, which list every file rustc read, `include!`d ones too): a fresh
//! checkout has no dep-info yet, so a recorded success could never be matched on a new CI
//! runner (or, worse, matched with the ignored inputs missing); dep-info does not list
//! what build scripts and proc macros read without telling cargo, nor what tests read at
//! run time (fixtures under `tests/data/`), all of which change a result. Hashing every
//! file cargo does not write costs a walk of the source tree, which is small next to a
//! build.
//!
//! Never part of it: `.git`, the checkout's top-level `target/`, any directory holding a
//! `CACHEDIR.TAG` (cargo tags every target dir it creates, wherever `CARGO_TARGET_DIR` or
//! `build.target-dir` puts it), and the directories the caller excludes (the target dir
//! `cargo metadata` reported). A directory named `target` deeper in the tree (a module
//! `src/target/`) is source like any other. Symlinks are hashed by their target text,
//! never followed; FIFOs, sockets and devices are named but never opened (opening a FIFO
//! would block).
//!
//! Tracked files git has been told not to look at (`git update-index --assume-unchanged`
//! or `--skip-worktree`) do not show in `git diff`: they are hashed by content like
//! untracked ones.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::cache::key::hash_inputs;
use crate::support::fs::{sha256_file, sha256_hex};

/// Content hash of a checkout: `git:<tree>` plus `+dirty:<hash>` when tracked files differ
/// from `HEAD` or any file is not tracked, or `files:<hash>` over every file (path and
/// content) when `dir` is not inside a git work tree. See the module docs for what is
/// never part of it; `exclude` adds directories (absolute, or relative to `dir`).
///
/// Errors: git fails in an unexpected way, the tree cannot be walked, or a file that is
/// part of the content cannot be read (the caller treats the content as undecidable).
pub fn content_hash(dir: &Path, exclude: &[PathBuf]) -> Result<String> {
    let git = |args: &[&str]| -> Result<std::process::Output> {
        Command::new("git")
            .args(args)
            .current_dir(dir)
            .output()
            .with_context(|| format!("run git {} in {}", args.join(" "), dir.display()))
    };
    let inside = git(&["rev-parse", "--is-inside-work-tree"])?;
    if !inside.status.success() || String::from_utf8_lossy(&inside.stdout).trim() != "true" {
        let files = untracked_files(dir, &HashSet::new(), exclude)?;
        return Ok(format!("files:{}", &hash_inputs(&files)[..16]));
    }
    // The tree of this directory at HEAD (a subdirectory of a larger repo hashes only its
    // own subtree). A repo without commits, or a directory HEAD does not have, has no
    // tree: everything in it is "dirty".
    let tree = git(&["rev-parse", "HEAD:./"])?;
    let tree = if tree.status.success() {
        String::from_utf8_lossy(&tree.stdout).trim().to_owned()
    } else {
        "none".to_owned()
    };
    let diff = git(&[
        "diff",
        "HEAD",
        "--binary",
        "--no-ext-diff",
        "--",
        ".",
        ":(exclude)target",
    ])?;
    let listed = git(&["ls-files", "-z", "-v", "--", "."])?;
    anyhow::ensure!(
        listed.status.success(),
        "`git ls-files` failed in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&listed.stderr).trim()
    );
    let tracked = trusted_tracked(&listed.stdout);
    let mut dirty = Vec::new();
    if !diff.stdout.is_empty() {
        dirty.push(("diff".to_owned(), sha256_hex(&diff.stdout)));
    }
    dirty.extend(untracked_files(dir, &tracked, exclude)?);
    if dirty.is_empty() {
        Ok(format!("git:{tree}"))
    } else {
        Ok(format!("git:{tree}+dirty:{}", &hash_inputs(&dirty)[..16]))
    }
}

/// The tracked paths (relative to the directory `git ls-files -v` ran in) whose changes
/// `git diff` shows: all but those marked assume-unchanged (a lowercase tag) or
/// skip-worktree (`S`).
fn trusted_tracked(ls_files_v: &[u8]) -> HashSet<PathBuf> {
    ls_files_v
        .split(|b| *b == 0)
        .filter(|e| e.len() > 2)
        .filter(|e| e[0].is_ascii_uppercase() && e[0] != b'S')
        .map(|e| PathBuf::from(String::from_utf8_lossy(&e[2..]).into_owned()))
        .collect()
}

/// `(relative path, content hash)` of every file under `dir` that is not in `tracked`, in
/// path order, skipping what the module docs say is never part of the content.
fn untracked_files(
    dir: &Path,
    tracked: &HashSet<PathBuf>,
    exclude: &[PathBuf],
) -> Result<Vec<(String, String)>> {
    let abs = |p: &Path| std::path::absolute(dir.join(p)).unwrap_or_else(|_| dir.join(p));
    let excluded: Vec<PathBuf> = exclude.iter().map(|p| abs(p)).collect();
    let top_target = abs(Path::new("target"));
    let skip = |e: &walkdir::DirEntry| {
        if e.depth() == 0 {
            return false;
        }
        if e.file_name() == ".git" {
            return true;
        }
        if !e.file_type().is_dir() {
            return false;
        }
        let p = abs(e.path().strip_prefix(dir).unwrap_or(e.path()));
        p == top_target || excluded.contains(&p) || e.path().join("CACHEDIR.TAG").is_file()
    };
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| !skip(e))
    {
        let e = e.with_context(|| format!("walk {}", dir.display()))?;
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = e.path().strip_prefix(dir).unwrap_or(e.path()).to_path_buf();
        if tracked.contains(&rel) {
            continue;
        }
        // A file that cannot be read makes the content undecidable, not constant: its
        // changes would be invisible, so the repo must run until it can be read.
        let h = if ft.is_symlink() {
            std::fs::read_link(e.path())
                .map(|t| format!("symlink:{}", t.display()))
                .with_context(|| format!("read the link {}", e.path().display()))?
        } else if ft.is_file() {
            sha256_file(e.path()).with_context(|| format!("read {}", e.path().display()))?
        } else {
            "special file".to_owned()
        };
        out.push((rel.display().to_string(), h));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(d: &Path, args: &[&str]) {
        let st = Command::new("git")
            .args(args)
            .current_dir(d)
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    }

    fn commit_all(d: &Path) {
        git(d, &["init", "-q"]);
        git(d, &["add", "-A"]);
        git(
            d,
            &[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e.invalid",
                "commit",
                "-qm",
                "x",
            ],
        );
    }

    #[test]
    fn content_hash_sees_uncommitted_and_untracked_changes() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        let plain = content_hash(d, &[]).unwrap();
        assert!(plain.starts_with("files:"));
        commit_all(d);
        let clean = content_hash(d, &[]).unwrap();
        assert!(
            clean.starts_with("git:") && !clean.contains("dirty"),
            "{clean}"
        );
        std::fs::write(d.join("a.rs"), "fn a() { 1; }").unwrap();
        let edited = content_hash(d, &[]).unwrap();
        assert!(edited.contains("+dirty:"), "{edited}");
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        assert_eq!(content_hash(d, &[]).unwrap(), clean);
        std::fs::write(d.join("new.rs"), "").unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), clean);
        std::fs::remove_file(d.join("new.rs")).unwrap();
        std::fs::create_dir_all(d.join("target")).unwrap();
        std::fs::write(d.join("target/junk"), "x").unwrap();
        assert_eq!(
            content_hash(d, &[]).unwrap(),
            clean,
            "target/ is not an input"
        );
    }

    #[test]
    fn an_edit_to_an_untracked_file_changes_the_content_hash() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        commit_all(d);
        std::fs::write(d.join("untracked.rs"), "const A: u8 = 1;").unwrap();
        let one = content_hash(d, &[]).unwrap();
        // Same path, same length, other content.
        std::fs::write(d.join("untracked.rs"), "const A: u8 = 2;").unwrap();
        let two = content_hash(d, &[]).unwrap();
        assert_ne!(one, two);
        std::fs::write(d.join("untracked.rs"), "const A: u8 = 1;").unwrap();
        assert_eq!(content_hash(d, &[]).unwrap(), one);
        // The same holds outside git.
        std::fs::remove_dir_all(d.join(".git")).unwrap();
        let one = content_hash(d, &[]).unwrap();
        std::fs::write(d.join("untracked.rs"), "const A: u8 = 2;").unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), one);
    }

    #[test]
    fn ignored_files_are_content_but_target_dirs_are_not() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(
            d.join(".gitignore"),
            "/target\ngenerated.rs\n/data/\n/out/\n",
        )
        .unwrap();
        std::fs::create_dir_all(d.join("src/target")).unwrap();
        std::fs::write(d.join("src/target/mod.rs"), "//! A module named target.\n").unwrap();
        commit_all(d);
        let clean = content_hash(d, &[]).unwrap();
        assert_eq!(clean, format!("git:{}", clean.trim_start_matches("git:")));
        // An ignored file a crate `include!`s, and one in an ignored directory.
        std::fs::write(d.join("generated.rs"), "1").unwrap();
        let with = content_hash(d, &[]).unwrap();
        assert_ne!(with, clean);
        std::fs::write(d.join("generated.rs"), "2").unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), with);
        std::fs::create_dir_all(d.join("data")).unwrap();
        std::fs::write(d.join("data/fixture.bin"), "x").unwrap();
        let data = content_hash(d, &[]).unwrap();
        std::fs::write(d.join("data/fixture.bin"), "y").unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), data);
        let now = content_hash(d, &[]).unwrap();
        // Build output is not: the top-level target/, a tagged target dir anywhere, and a
        // directory the caller excludes.
        std::fs::create_dir_all(d.join("target/debug")).unwrap();
        std::fs::write(d.join("target/debug/x"), "1").unwrap();
        std::fs::create_dir_all(d.join("elsewhere/tgt")).unwrap();
        std::fs::write(d.join("elsewhere/tgt/CACHEDIR.TAG"), "Signature").unwrap();
        std::fs::write(d.join("elsewhere/tgt/x"), "1").unwrap();
        std::fs::create_dir_all(d.join("out")).unwrap();
        std::fs::write(d.join("out/x"), "1").unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), now, "out/ is ignored source");
        assert_eq!(content_hash(d, &[d.join("out")]).unwrap(), now);
        // A tracked file under a directory named `target` deeper down is source.
        std::fs::write(d.join("src/target/mod.rs"), "//! Edited.\n").unwrap();
        assert_ne!(content_hash(d, &[d.join("out")]).unwrap(), now);
    }

    #[test]
    fn a_fifo_is_named_never_opened_and_assume_unchanged_files_are_hashed() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("a.rs"), "fn a() {}").unwrap();
        commit_all(d);
        let clean = content_hash(d, &[]).unwrap();
        git(d, &["update-index", "--assume-unchanged", "a.rs"]);
        let flagged = content_hash(d, &[]).unwrap();
        std::fs::write(d.join("a.rs"), "fn a() { 2; }").unwrap();
        let edited = content_hash(d, &[]).unwrap();
        assert_ne!(edited, clean);
        assert_ne!(
            edited, flagged,
            "git diff does not see it; the content hash does"
        );
        let st = Command::new("mkfifo").arg(d.join("pipe")).status().unwrap();
        assert!(st.success());
        // Returns (does not block on the FIFO) and counts it.
        let with_fifo = content_hash(d, &[]).unwrap();
        std::fs::remove_file(d.join("pipe")).unwrap();
        assert_ne!(content_hash(d, &[]).unwrap(), with_fifo);
    }
}
