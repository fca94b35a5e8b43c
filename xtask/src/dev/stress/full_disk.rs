//! The `full-disk` scenario: saves into a small tmpfs (mounted here; needs root or
//! CAP_SYS_ADMIN, else run again inside `unshare -Urm`, else reported as skipped, never as
//! passed) that are refused by the disk guard, run out of bytes mid-copy, or run out of
//! inodes; each time nothing may be listed, `tmp/` must be empty and the cache must work
//! once space is back.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::Result;

use super::{
    differs, entries_listed, expected, fresh_dir, key, roomy, tmp_leftovers, write_tree, Options,
    Outcome,
};
use crate::cache::retention::{FsUsage, Policy};
use crate::cache::{Cache, Restore, Save};
use crate::support::fs as fsutil;

/// A tmpfs mounted for the scenario, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, opts: &str) -> std::io::Result<Tmpfs> {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        fs::create_dir_all(dir)?;
        let target = CString::new(dir.as_os_str().as_bytes())?;
        let data = CString::new(opts)?;
        // SAFETY: valid NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::mount(
                c"tmpfs".as_ptr(),
                target.as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        use std::os::unix::ffi::OsStrExt;
        if let Ok(t) = std::ffi::CString::new(self.0.as_os_str().as_bytes()) {
            // SAFETY: a valid path string; MNT_DETACH so a busy mount never blocks us.
            unsafe {
                libc::umount2(t.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
}

/// Set in the environment of a stress run started inside a user namespace, so it does not
/// try again.
const IN_USERNS: &str = "BLLVM_CI_STRESS_IN_USERNS";

/// The full-disk scenario run again as root of a new user and mount namespace
/// (`unshare -Urm`), or `None` when that is not possible here.
fn full_disk_in_userns(o: &Options) -> Option<Outcome> {
    // Not `exe()`: `/proc/self/exe` would name `unshare` by the time it runs it.
    let me = std::env::current_exe().ok()?;
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount"])
        .arg(me)
        .args(["stress", "--scenario", "full-disk", "--format", "json"])
        .args(["--full-disk", &o.full_disk.to_string()])
        .args(["--seed", &o.seed.to_string(), "--dir"])
        .arg(&o.dir)
        .env(IN_USERNS, "1")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let inner: Outcome = serde_json::from_value(v["scenarios"][0].clone()).ok()?;
    inner.skipped.is_none().then_some(inner)
}

/// Run the scenario; what could not run is a problem of the outcome.
pub(super) fn run(o: &Options) -> Outcome {
    let mut out = Outcome::new(
        "full-disk",
        format!("{} rounds × 3 cases on a 4 MiB tmpfs", o.full_disk),
    );
    if let Err(e) = fill_disks(o, &mut out) {
        out.problem(format!("could not run: {e:#}"));
    }
    out
}

/// Mount the two small filesystems, write the source trees, and run every case
/// `o.full_disk` times.
fn fill_disks(o: &Options, out: &mut Outcome) -> Result<()> {
    let base = fresh_dir(&o.dir.join("full-disk"))?;
    let mnt = base.join("fs");
    let small = base.join("fs-inodes");
    let Some(fs_guard) = mount_or_delegate(o, &mnt, out) else {
        return Ok(());
    };
    let inode_guard = Tmpfs::mount(&small, "size=16m,nr_inodes=40,mode=0755")?;
    let big = expected(5, 12, 1 << 20); // ~6 MiB: more than the whole filesystem
    let mid = expected(6, 3, 1 << 20); // ~3 MiB: fits statvfs, not the space left
    let many = expected(7, 64, 64); // 64 files: past the inode limit
    let small_tree = expected(8, 3, 1024);
    for (i, t) in [(5, &big), (6, &mid), (7, &many), (8, &small_tree)] {
        write_tree(&base.join(format!("src{i}")), t)?;
    }
    // A guard that refuses a save that would fill the filesystem past 80%.
    let guarded = Policy {
        disk_max_used_percent: 80,
        disk_min_free_bytes: 0,
        ..roomy(4)
    };
    let off = Policy {
        disk_max_used_percent: 100,
        disk_min_free_bytes: 0,
        ..roomy(4)
    };
    for n in 0..o.full_disk {
        for (case, fsroot, policy, i) in [
            ("guard", &mnt, guarded, 5usize),
            ("enospc-bytes", &mnt, off, 6),
            ("enospc-inodes", &small, off, 7),
        ] {
            let root = fsroot.join("cache");
            fail_to_save(
                case,
                n,
                fsroot,
                policy,
                &base.join(format!("src{i}")),
                i,
                out,
            )?;
            check_space_back(case, n, &root, &base, &small_tree, off, out)?;
        }
    }
    drop(inode_guard);
    drop(fs_guard);
    Ok(())
}

/// Mount the 4 MiB tmpfs at `mnt`; when that is not allowed, run the whole scenario again
/// in a private user and mount namespace (its outcome replaces `out`) or mark it skipped.
/// `None` when the scenario is done (delegated or skipped).
fn mount_or_delegate(o: &Options, mnt: &Path, out: &mut Outcome) -> Option<Tmpfs> {
    let e = match Tmpfs::mount(mnt, "size=4m,mode=0755") {
        Ok(m) => return Some(m),
        Err(e) => e,
    };
    // Not root: in a private user and mount namespace an unprivileged user may mount a
    // tmpfs (a real filesystem, so a real ENOSPC): run the scenario there.
    if std::env::var_os(IN_USERNS).is_none() {
        if let Some(inner) = full_disk_in_userns(o) {
            *out = inner;
            out.notes.push(
                "run in a private user and mount namespace (unshare -Urm): not root here".into(),
            );
            return None;
        }
    }
    out.skipped = Some(format!(
        "cannot mount a tmpfs here ({e}): needs root, CAP_SYS_ADMIN or unprivileged user namespaces (`unshare -Urm`)"
    ));
    None
}

/// Case `case` of round `n`: a save of `src` (tree `i`) that must fail cleanly (refused by
/// the guard, or out of bytes or inodes), leaving nothing listed and nothing in `tmp/`.
fn fail_to_save(
    case: &str,
    n: usize,
    fsroot: &Path,
    policy: Policy,
    src: &Path,
    i: usize,
    out: &mut Outcome,
) -> Result<()> {
    let root = fsroot.join("cache");
    if case == "enospc-bytes" {
        // Leave ~1 MiB free, so the ~3 MiB tree runs out of space mid-copy.
        let free = FsUsage::of(fsroot)?.available;
        fs::write(
            fsroot.join("filler"),
            vec![0u8; free.saturating_sub(1 << 20) as usize],
        )?;
    }
    let cache = Cache::open(&root)?.with_policy(policy);
    let r = cache.save(&key(i), src, &|_| false);
    let notes = cache.take_notes();
    match (case, &r) {
        ("guard", Ok(Save::NoSpace)) => {
            if !notes.iter().any(|n| n.contains("not saved")) {
                out.problem(format!("{case} {n}: no warning says why: {notes:?}"));
            }
        }
        (_, Err(e)) if case != "guard" => {
            let msg = format!("{e:#}");
            if !msg.contains("No space left on device") {
                out.problem(format!(
                    "{case} {n}: the error does not say the disk is full: {msg}"
                ));
            }
        }
        _ => out.problem(format!("{case} {n}: save gave {r:?}, notes {notes:?}")),
    }
    out.count(case);
    let listed = entries_listed(&root);
    if !listed.is_empty() {
        out.problem(format!(
            "{case} {n}: entries listed after a failed save: {listed:?}"
        ));
    }
    if tmp_leftovers(&root) > 0 {
        out.problem(format!(
            "{case} {n}: tmp/ not cleaned after the failed save"
        ));
    }
    Ok(())
}

/// Space comes back (the filler goes): a save and a restore of the small tree work, whole.
fn check_space_back(
    case: &str,
    n: usize,
    root: &Path,
    base: &Path,
    small_tree: &BTreeMap<String, Vec<u8>>,
    policy: Policy,
    out: &mut Outcome,
) -> Result<()> {
    let _ = fs::remove_file(
        root.parent()
            .expect("the cache root has a parent")
            .join("filler"),
    );
    let k = key(8);
    let cache = Cache::open(root)?.with_policy(policy);
    let s = cache.save(&k, &base.join("src8"), &|_| false)?;
    let dst = base.join("dst");
    fsutil::remove_tree(&dst)?;
    match cache.restore(&k, &dst, false)? {
        Restore::Hit { .. } if differs(&dst, small_tree).is_none() => {}
        other => out.problem(format!(
            "{case} {n}: after space came back, save {s:?} then restore {other:?}"
        )),
    }
    fsutil::remove_tree(&dst)?;
    cache.remove("target", &k.key);
    Ok(())
}
