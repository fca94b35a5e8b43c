//! What a target-dir entry leaves out: everything the next build redoes anyway, nothing it
//! would have to recompile.
//!
//! The rules follow rust-cache's `cleanTargetDir` (which keeps only `build/`,
//! `.fingerprint/` and `deps/` of each profile dir and drops the workspace's own
//! packages) with one improvement: rust-cache matches artifacts by crate *name*, so a
//! dependency that shares a name with a workspace crate loses its artifacts too, and
//! files of workspace test and bench targets (named after the target, not the package)
//! survive. Here the workspace's artifacts are found through cargo's fingerprint dirs:
//! `.fingerprint/<package>-<hash>/` exists for every unit cargo built, and every file that
//! unit produced in `deps/` (and its `build/<package>-<hash>/` dir) carries the same
//! `-<hash>`. Dropping exactly those hashes drops every workspace unit (lib, bins, tests,
//! benches, build scripts) and keeps every dependency unit.
//!
//! Dropped, per profile dir (`target/debug`, `target/<triple>/release`, ...):
//! - `incremental/` (rust-cache drops it too; CI runs use `CARGO_INCREMENTAL=0`, see
//!   `plan.rs`) and `examples/`;
//! - the files cargo uplifts into the profile dir itself (bins, `lib<name>.rlib`, `.d`);
//! - `.fingerprint/`, `build/` and `deps/` entries of workspace units (by hash, see above)
//!   and any `deps/` file named after a workspace crate (rust-cache's rule, kept as a net);
//!
//! and at the target root, `.rustc_info.json` (cargo's cache of `rustc -vV`, rewritten
//! every run), and rustdoc's output for workspace crates: all of `doc/` when it holds
//! only workspace crates (`cargo doc --no-deps`), else `doc/<crate>` and
//! `doc/src/<crate>`.
//!
//! Run outputs never go into an entry (issue 13): an entry holds cargo's build state
//! only, so at the target root (and in each `<triple>/` dir) everything but the profile
//! dirs, `doc/` and `CACHEDIR.TAG` is dropped — nextest's `nextest/` (its JUnit report,
//! which holds every failing test's output), `tmp/` (`CARGO_TARGET_TMPDIR`, where
//! integration tests write), `criterion/`, coverage data (`tarpaulin/`, `*.profraw`,
//! `llvm-cov-target/`'s reports), `package/`, our own run dirs (`bllvm-ci/`) and any file
//! a tool or test leaves there. A test's output can hold what it printed, and an entry is
//! restored by runs (and, through the remote cache, runners) that never ran that test.
//!
//! With these rules, an exact hit whose build recompiled only workspace crates saves as
//! `unchanged`: every kept file is byte for byte (and mtime for mtime) the restored one.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// Directories rustdoc shares between the crates of one `doc/` dir.
const RUSTDOC_SHARED: &[&str] = &[
    "src",
    "static.files",
    "search.index",
    "trait.impl",
    "type.impl",
    "implementors",
    "search-index",
    "src-files",
];

/// The relative paths (under a target dir) that a save leaves out.
#[derive(Debug, Clone, Default)]
pub struct TargetPrune {
    /// Paths to drop, relative to the target dir; a directory goes with its contents.
    pub drop: BTreeSet<PathBuf>,
}

impl TargetPrune {
    /// Whether `rel` (relative to the target dir) is dropped, itself or through a parent.
    pub fn skips(&self, rel: &Path) -> bool {
        // `drop` is small next to the tree, and `rel`'s ancestors are few, so checking
        // each ancestor is cheap.
        rel.ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .any(|a| self.drop.contains(a))
    }
}

fn names(dir: &Path) -> Vec<(String, bool)> {
    let Ok(rd) = fs::read_dir(dir) else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| {
            let is_dir = e.file_type().ok()?.is_dir();
            Some((e.file_name().to_str()?.to_owned(), is_dir))
        })
        .collect()
}

/// `name-hash` → (`name`, `hash`), cutting at the last `-`.
fn split_hash(s: &str) -> Option<(&str, &str)> {
    let i = s.rfind('-')?;
    Some((&s[..i], &s[i + 1..]))
}

fn is_profile_dir(p: &Path) -> bool {
    p.join(".fingerprint").is_dir() || p.join("deps").is_dir()
}

/// The profile dirs of a target dir, relative to it: `debug`, `release`,
/// `<triple>/debug`, ...
pub fn profile_dirs(target: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for (n, is_dir) in names(target) {
        if !is_dir {
            continue;
        }
        let p = target.join(&n);
        if is_profile_dir(&p) {
            out.push(PathBuf::from(&n));
        } else {
            for (m, d) in names(&p) {
                if d && is_profile_dir(&p.join(&m)) {
                    out.push(PathBuf::from(&n).join(m));
                }
            }
        }
    }
    out.sort();
    out
}

/// Work out what to drop from the target dir at `target`, whose workspace has the
/// member packages `members` (package names, as in `RepoPlan::versions`). Reads
/// directory listings only.
pub fn target_prune(target: &Path, members: &[String]) -> TargetPrune {
    let members: BTreeSet<&str> = members.iter().map(String::as_str).collect();
    let crates: BTreeSet<String> = members.iter().map(|m| m.replace('-', "_")).collect();
    let mut drop = BTreeSet::new();
    let profiles = profile_dirs(target);
    for prof in &profiles {
        prune_profile(target, prof, &members, &crates, &mut drop);
    }
    // `.rustc_info.json` is cargo's cache of `rustc -vV` and target info, rewritten on
    // every run; cargo recreates it with one rustc call. Keeping it would make every
    // entry look changed.
    if target.join(".rustc_info.json").is_file() {
        drop.insert(PathBuf::from(".rustc_info.json"));
    }
    drop_run_outputs(target, &profiles, &mut drop);
    let docs = [PathBuf::from("doc")]
        .into_iter()
        .chain(profiles.iter().filter_map(|p| {
            p.parent()
                .filter(|t| !t.as_os_str().is_empty())
                .map(|t| t.join("doc"))
        }));
    for doc in docs {
        prune_doc(target, &doc, &crates, &mut drop);
    }
    TargetPrune { drop }
}

/// Names kept at the target root (and in a `<triple>/` dir) besides the profile dirs:
/// rustdoc's output (pruned on its own by [`prune_doc`]) and the cache-dir tag.
const KEPT_AT_ROOT: &[&str] = &["doc", "CACHEDIR.TAG"];

/// Drop every entry of the target root, and of each dir holding profile dirs (a
/// `<triple>/`), that is not a profile dir or one of [`KEPT_AT_ROOT`]: run outputs (see
/// the module docs). `profiles` are the target's profile dirs ([`profile_dirs`]).
fn drop_run_outputs(target: &Path, profiles: &[PathBuf], drop: &mut BTreeSet<PathBuf>) {
    let parents: BTreeSet<PathBuf> = profiles
        .iter()
        .filter_map(|p| p.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .collect();
    for dir in std::iter::once(PathBuf::new()).chain(parents.iter().cloned()) {
        // Every name, UTF-8 or not (`names` skips the others): what is not understood
        // is dropped, never saved.
        let Ok(rd) = fs::read_dir(target.join(&dir)) else {
            continue;
        };
        for e in rd.flatten() {
            let n = e.file_name();
            let rel = dir.join(&n);
            let kept = n.to_str().is_some_and(|n| KEPT_AT_ROOT.contains(&n))
                || profiles.contains(&rel)
                || (dir.as_os_str().is_empty() && parents.contains(&rel));
            if !kept {
                drop.insert(rel);
            }
        }
    }
}

/// What to drop from the profile dir `prof` (relative to `target`): everything but
/// `deps/`, `build/`, `.fingerprint/` and `.cargo-lock`, and in those the units of the
/// workspace's `members` (by package name and, in `deps/`, crate name or unit hash).
fn prune_profile(
    target: &Path,
    prof: &Path,
    members: &BTreeSet<&str>,
    crates: &BTreeSet<String>,
    drop: &mut BTreeSet<PathBuf>,
) {
    let abs = target.join(prof);
    let mut hashes = BTreeSet::new();
    for (n, is_dir) in names(&abs) {
        let keep = matches!(
            n.as_str(),
            "deps" | "build" | ".fingerprint" | ".cargo-lock"
        );
        if !keep || (!is_dir && n != ".cargo-lock") {
            drop.insert(prof.join(&n));
        }
    }
    for sub in [".fingerprint", "build"] {
        for (n, _) in names(&abs.join(sub)) {
            if let Some((pkg, hash)) = split_hash(&n) {
                if members.contains(pkg) {
                    hashes.insert(hash.to_owned());
                    drop.insert(prof.join(sub).join(&n));
                }
            }
        }
    }
    for (n, _) in names(&abs.join("deps")) {
        let stem = n.split('.').next().unwrap_or(&n);
        let Some((name, hash)) = split_hash(stem) else {
            continue;
        };
        let name = name
            .strip_prefix("lib")
            .filter(|c| crates.contains(*c))
            .unwrap_or(name);
        if hashes.contains(hash) || crates.contains(name) {
            drop.insert(prof.join("deps").join(&n));
        }
    }
}

/// What to drop from the doc dir `doc` (relative to `target`). With `cargo doc
/// --no-deps` (the default doc step) every crate dir in it is the workspace's, and
/// rustdoc rewrites its shared files (search index, `crates.js`, static files) on every
/// run: the whole dir goes. When dependency docs are there too, only the workspace
/// crates' dirs go, since the shared files index the dependencies as well.
fn prune_doc(target: &Path, doc: &Path, crates: &BTreeSet<String>, drop: &mut BTreeSet<PathBuf>) {
    let crate_dirs: Vec<String> = names(&target.join(doc))
        .into_iter()
        .filter(|(n, is_dir)| *is_dir && !RUSTDOC_SHARED.contains(&n.as_str()))
        .map(|(n, _)| n)
        .collect();
    if !crate_dirs.is_empty() && crate_dirs.iter().all(|c| crates.contains(c)) {
        drop.insert(doc.to_path_buf());
        return;
    }
    for c in crates {
        for p in [doc.join(c), doc.join("src").join(c)] {
            if target.join(&p).exists() {
                drop.insert(p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn drops_workspace_units_keeps_dependencies() {
        let t = tempfile::tempdir().unwrap();
        let tg = t.path();
        let files = [
            "debug/.cargo-lock",
            "debug/my-app",
            "debug/my-app.d",
            "debug/libmy_lib.rlib",
            "debug/incremental/my_app-1/s-x/query-cache.bin",
            "debug/examples/ex-1",
            "debug/.fingerprint/my-lib-aaaa/lib-my_lib.json",
            "debug/.fingerprint/my-lib-tttt/test-integration-test-it.json",
            "debug/.fingerprint/itoa-bbbb/lib-itoa.json",
            "debug/.fingerprint/serde-cccc/run-build-script-build-script-build.json",
            "debug/build/serde-cccc/output",
            "debug/build/my-lib-dddd/build_script_build-dddd",
            "debug/deps/libmy_lib-aaaa.rlib",
            "debug/deps/libmy_lib-aaaa.rmeta",
            "debug/deps/my_lib-aaaa.d",
            "debug/deps/it-tttt",
            "debug/deps/it-tttt.d",
            "debug/deps/libitoa-bbbb.rlib",
            "debug/deps/itoa-bbbb.d",
            "x86_64-unknown-linux-gnu/release/deps/libmy_lib-eeee.rlib",
            "x86_64-unknown-linux-gnu/release/deps/libitoa-ffff.rlib",
            "doc/my_lib/index.html",
            "doc/itoa/index.html",
            "doc/src/my_lib/lib.rs.html",
            ".rustc_info.json",
            "CACHEDIR.TAG",
        ];
        for f in files {
            let p = tg.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"x").unwrap();
        }
        let plan = target_prune(tg, &["my-lib".to_owned(), "my-app".to_owned()]);
        let kept: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !plan.skips(Path::new(f)))
            .collect();
        assert_eq!(
            kept,
            [
                "debug/.cargo-lock",
                "debug/.fingerprint/itoa-bbbb/lib-itoa.json",
                "debug/.fingerprint/serde-cccc/run-build-script-build-script-build.json",
                "debug/build/serde-cccc/output",
                "debug/deps/libitoa-bbbb.rlib",
                "debug/deps/itoa-bbbb.d",
                "x86_64-unknown-linux-gnu/release/deps/libitoa-ffff.rlib",
                "doc/itoa/index.html",
                "CACHEDIR.TAG",
            ]
        );
        // `cargo doc --no-deps`: only workspace crates in doc/, so all of it goes.
        fs::remove_dir_all(tg.join("doc/itoa")).unwrap();
        fs::create_dir_all(tg.join("doc/static.files")).unwrap();
        let plan = target_prune(tg, &["my-lib".to_owned()]);
        assert!(plan.skips(Path::new("doc/static.files")));
        assert!(plan.skips(Path::new("doc/my_lib/index.html")));
    }

    /// Issue 13: run outputs (nextest's JUnit with a failing test's output, test scratch
    /// files, coverage data, run dirs) never go into an entry, at the root or in a
    /// `<triple>/` dir, whatever their name; cargo's build state and rustdoc's output stay.
    #[test]
    fn run_outputs_never_go_into_an_entry() {
        let t = tempfile::tempdir().unwrap();
        let tg = t.path();
        let files = [
            "CACHEDIR.TAG",
            "debug/.fingerprint/itoa-bbbb/lib-itoa.json",
            "debug/deps/libitoa-bbbb.rlib",
            "doc/itoa/index.html",
            "x86_64-unknown-linux-gnu/release/deps/libitoa-ffff.rlib",
            "nextest/bllvm-ci/junit.xml",
            "tmp/it/scratch.txt",
            "criterion/bench/new/estimates.json",
            "tarpaulin/coverage.json",
            "default_1234.profraw",
            "bllvm-ci/runs/1/r/test.log",
            "package/x-0.1.0.crate",
            "junit.xml",
            "some-new-tool/out.txt",
            "x86_64-unknown-linux-gnu/nextest/junit.xml",
            "x86_64-unknown-linux-gnu/stray.txt",
            "llvm-cov-target/debug/deps/libitoa-cccc.rlib",
            "llvm-cov-target/report.lcov",
        ];
        for f in files {
            let p = tg.join(f);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, b"x").unwrap();
        }
        // A name that is not UTF-8 is dropped too.
        let odd = std::ffi::OsStr::from_bytes(b"out-\xff.txt");
        fs::write(tg.join(odd), b"x").unwrap();
        let plan = target_prune(tg, &["my-lib".to_owned()]);
        let kept: Vec<&str> = files
            .iter()
            .copied()
            .filter(|f| !plan.skips(Path::new(f)))
            .collect();
        assert_eq!(
            kept,
            [
                "CACHEDIR.TAG",
                "debug/.fingerprint/itoa-bbbb/lib-itoa.json",
                "debug/deps/libitoa-bbbb.rlib",
                "doc/itoa/index.html",
                "x86_64-unknown-linux-gnu/release/deps/libitoa-ffff.rlib",
                "llvm-cov-target/debug/deps/libitoa-cccc.rlib",
            ]
        );
        assert!(plan.skips(Path::new(odd)));
    }
}
