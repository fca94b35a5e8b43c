//! Reading back what is stored under a cache root, as untrusted input: metadata files
//! read with a size bound, without following a symlink and without opening a FIFO, a
//! socket or a device; names checked before they become path components; paths inside
//! a stored tree parsed into [`RelPath`], which cannot hold an absolute path or a `..`.
//!
//! Why: everything under the cache root may have been written by another job, another
//! version of this tool, a killed writer, a full disk or someone with write access to a
//! shared cache volume. A FIFO named `entry.json` would block a plain `read` forever, a
//! symlink named `usage/…json` would make a write land outside the root, and a key read
//! from a file would become a path. The engine (`cache/`), the result store
//! (`engine/results.rs`), the builds store and the metrics history read through here.
//!
//! Owns no policy: callers decide what a failed read means (always "absent, with a
//! warning" in this crate).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// Largest metadata file read back (`entry.json`, `manifest.tsv`, usage and result
/// records), in bytes: a manifest of 200,000 files is some 30 MiB.
pub const MAX_META_BYTES: u64 = 64 << 20;

/// Largest size, file count or byte count a record may claim (2^50, a petabyte): far
/// above any real entry, far below `u64::MAX`, so sums over a few thousand records
/// cannot overflow.
pub const MAX_COUNT: u64 = 1 << 50;

/// Largest Unix time a record may claim, in seconds (the year 2500): later ones are
/// garbage, and would make an entry look used forever.
pub const MAX_UNIX: u64 = 16_725_225_600;

/// Open `path` for reading only if it is a regular file: a symlink is refused
/// (`O_NOFOLLOW`), and a FIFO or device is opened without blocking (`O_NONBLOCK`), then
/// refused.
///
/// Errors: missing, not a regular file (`InvalidData`), or unreadable.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    if !f.metadata()?.file_type().is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not a regular file", path.display()),
        ));
    }
    Ok(f)
}

/// The bytes of the regular file at `path`, at most `max` of them.
///
/// Errors: as [`open_regular`], or the file is larger than `max` (`InvalidData`).
pub fn read_bounded(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let f = open_regular(path)?;
    let len = f.metadata()?.len();
    if len > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is {len} bytes (at most {max} expected)", path.display()),
        ));
    }
    let mut out = Vec::with_capacity(len as usize);
    // `take`: the file may grow while it is read.
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} grew past {max} bytes", path.display()),
        ));
    }
    Ok(out)
}

/// [`read_bounded`] with [`MAX_META_BYTES`], as UTF-8 text.
///
/// Errors: as [`read_bounded`], or the bytes are not UTF-8 (`InvalidData`).
pub fn read_meta(path: &Path) -> io::Result<String> {
    String::from_utf8(read_bounded(path, MAX_META_BYTES)?).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{} is not UTF-8", path.display()),
        )
    })
}

/// Open `path` for appending only if it is a regular file (created if missing); a
/// symlink, FIFO, socket, device or directory there is removed (it is under a root we
/// own, and was never written by us) and the open tried once more, so the append cannot
/// land elsewhere or block. The open itself refuses to follow a symlink and to wait
/// for a FIFO's reader, so nothing put there between a check and the open can either.
///
/// Errors: the file cannot be created or opened.
pub fn open_append(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(path)
    };
    for _ in 0..2 {
        match open() {
            Ok(f) if f.metadata()?.file_type().is_file() => return Ok(f),
            // ELOOP: a symlink; ENXIO: a FIFO without a reader; EISDIR, ENOTSUP/ENXIO: a
            // directory or socket; `Ok` of another kind: a FIFO with a reader, a device.
            Ok(_) => {}
            Err(e)
                if !matches!(
                    e.raw_os_error(),
                    Some(libc::ELOOP | libc::ENXIO | libc::EISDIR | libc::EOPNOTSUPP)
                ) =>
            {
                return Err(e)
            }
            Err(_) => {}
        }
        remove_any(path)?;
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{} is not a regular file", path.display()),
    ))
}

/// Remove whatever is at `path` without following it: a symlink or special file is
/// unlinked, a directory removed with its contents (`remove_dir_all` does not follow
/// symlinks below it). A missing path is not an error.
///
/// Errors: the removal fails.
pub fn remove_any(path: &Path) -> io::Result<()> {
    let r = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Whether `path` is a directory itself, not a symlink to one.
pub fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_dir())
}

/// Make `path` a real directory under a root we own: a symlink, file or special file in
/// its place is removed first (a symlinked `entries/target` would make every rename and
/// delete below it act outside the root). Returns whether something had to be removed.
///
/// Errors: the removal or the creation fails.
pub fn ensure_real_dir(path: &Path) -> io::Result<bool> {
    let replaced = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => return Ok(false),
        Ok(_) => {
            remove_any(path)?;
            true
        }
        Err(_) => false,
    };
    fs::create_dir_all(path)?;
    if !is_real_dir(path) {
        return Err(io::Error::other(format!(
            "{} is not a directory",
            path.display()
        )));
    }
    Ok(replaced)
}

/// Whether `name` is safe as one file name we create from stored data (a step's log,
/// an artifact): 1 to 200 letters, digits, `-`, `_`, `.` and `+`, not starting with `.`.
/// So never `..`, never a separator, never hidden.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '+'))
}

/// A relative path inside a stored tree (an entry's `data/`): one or more normal
/// components separated by `/`, none empty, `.` or `..`, no NUL, not absolute. Built only
/// by [`RelPath::parse`], so a value of this type joined to a root stays under it
/// lexically.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RelPath(String);

impl RelPath {
    /// Parse `s` as a relative path inside a tree.
    ///
    /// Errors: `s` is empty, absolute, or has an empty, `.` or `..` component, or a NUL
    /// (the message names it).
    pub fn parse(s: &str) -> Result<RelPath, String> {
        let ok = !s.is_empty()
            && !s.contains('\0')
            && s.split('/').all(|c| !c.is_empty() && c != "." && c != "..");
        if ok {
            Ok(RelPath(s.to_owned()))
        } else {
            Err(format!(
                "path `{}` is not a plain relative path inside the tree",
                s.escape_debug()
            ))
        }
    }

    /// The path as text (`/`-separated).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for RelPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// How deep a chain of symlinks is followed before it counts as escaping (Linux's own
/// limit is 40).
const MAX_LINK_HOPS: usize = 40;

/// Where the symlink at `root/rel` leads, resolved the way the kernel would resolve a
/// path through it, with every symlink it meets inside `root` followed (links through
/// `.` and `..` included): `Ok(resolved)` relative to `root` when the walk never leaves
/// it, `Err(why)` when it does (an absolute target, a `..` above `root`, or more than 40
/// hops, which the kernel would refuse anyway and we refuse alike). Components that do
/// not exist are taken lexically; nothing outside `root` is ever read.
pub fn resolve_within(root: &Path, rel: &Path) -> Result<PathBuf, String> {
    let mut hops = 0usize;
    // The stack of resolved components (relative to root), and the components still to
    // walk, in order (last = next).
    let mut at: Vec<std::ffi::OsString> = Vec::new();
    let mut todo: Vec<std::ffi::OsString> = Vec::new();
    push_components(&mut todo, rel)?;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if at.pop().is_none() {
                return Err("climbs above the tree".into());
            }
            continue;
        }
        if c == "." {
            continue;
        }
        at.push(c);
        let here: PathBuf = at.iter().collect();
        let Ok(target) = fs::read_link(root.join(&here)) else {
            continue; // not a symlink (or missing): a plain component
        };
        hops += 1;
        if hops > MAX_LINK_HOPS {
            return Err(format!("more than {MAX_LINK_HOPS} symlinks deep"));
        }
        if target.has_root() {
            return Err(format!("points to the absolute path {}", target.display()));
        }
        at.pop();
        push_components(&mut todo, &target)?;
    }
    Ok(at.iter().collect())
}

/// Push the components of `p` onto `todo` so that the first is popped first.
fn push_components(todo: &mut Vec<std::ffi::OsString>, p: &Path) -> Result<(), String> {
    let mut cs = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => cs.push(n.to_owned()),
            Component::ParentDir => cs.push("..".into()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("points to the absolute path {}", p.display()))
            }
        }
    }
    todo.extend(cs.into_iter().rev());
    Ok(())
}

/// `rel -> target` for the symlink at `root/rel` when resolving it leaves `root` (see
/// [`resolve_within`]); `None` when it stays inside or is not a symlink.
pub fn link_escapes(root: &Path, rel: &Path) -> Option<String> {
    let target = fs::read_link(root.join(rel)).ok()?;
    resolve_within(root, rel)
        .err()
        .map(|why| format!("{} -> {} ({why})", rel.display(), target.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_fifo_or_a_symlink_is_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("entry.json");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        // Without O_NONBLOCK this open would wait for a writer forever.
        assert!(read_meta(&fifo).is_err());
        let outside = t.path().join("outside");
        fs::write(&outside, "secret").unwrap();
        let link = t.path().join("usage.json");
        symlink(&outside, &link).unwrap();
        assert!(read_meta(&link).is_err());
        // Appending through the link replaces the link; the target is untouched.
        use std::io::Write;
        open_append(&link).unwrap().write_all(b"x").unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"secret");
        assert_eq!(fs::read(&link).unwrap(), b"x");
        // A FIFO in the log's place is replaced too, never opened for writing.
        open_append(&fifo).unwrap().write_all(b"y").unwrap();
        assert_eq!(fs::read(&fifo).unwrap(), b"y");
        // A file that grows past the bound while it is read (procfs reports size 0): the
        // bound holds for what is read, not only for what `stat` said.
        assert!(read_bounded(Path::new("/proc/self/status"), 10).is_err());
        assert!(read_bounded(Path::new("/proc/self/status"), 1 << 20).is_ok());
        // Removal: a missing path is fine, any other failure is an error.
        let file = t.path().join("plain");
        fs::write(&file, "x").unwrap();
        assert!(remove_any(&t.path().join("missing")).is_ok());
        assert!(remove_any(&file.join("below")).is_err());
        // A directory in the log's place is replaced too.
        let d = t.path().join("dir.jsonl");
        fs::create_dir_all(d.join("x")).unwrap();
        open_append(&d).unwrap().write_all(b"z").unwrap();
        assert_eq!(fs::read(&d).unwrap(), b"z");
        let big = t.path().join("big");
        fs::write(&big, vec![b'a'; 100]).unwrap();
        assert!(read_bounded(&big, 99).is_err());
        assert_eq!(read_bounded(&big, 100).unwrap().len(), 100);
        fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(read_meta(&big).is_err());
    }

    #[test]
    fn symlinked_dirs_are_replaced_by_real_ones() {
        let t = tempfile::tempdir().unwrap();
        let victim = t.path().join("victim");
        fs::create_dir_all(&victim).unwrap();
        fs::write(victim.join("keep"), "k").unwrap();
        let d = t.path().join("root/entries");
        fs::create_dir_all(t.path().join("root")).unwrap();
        symlink(&victim, &d).unwrap();
        assert!(!is_real_dir(&d));
        assert!(ensure_real_dir(&d).unwrap());
        assert!(is_real_dir(&d));
        assert!(!ensure_real_dir(&d).unwrap());
        assert_eq!(fs::read(victim.join("keep")).unwrap(), b"k");
    }

    #[test]
    fn names_and_relative_paths_cannot_leave() {
        for bad in [
            "",
            ".",
            "..",
            ".x",
            "a/b",
            "a\\b",
            "a b",
            "../x",
            &"a".repeat(201),
        ] {
            assert!(!is_safe_name(bad), "{bad:?}");
        }
        for good in ["build", "test-doc", "clippy_all", "x86_64.v2", "a+b"] {
            assert!(is_safe_name(good), "{good:?}");
        }
        for bad in [
            "", "/abs", "a//b", "a/./b", "a/../b", "..", "a/", "a\0b", "./a",
        ] {
            assert!(RelPath::parse(bad).is_err(), "{bad:?}");
        }
        let p = RelPath::parse("debug/deps/x.rlib").unwrap();
        assert_eq!(p.as_str(), "debug/deps/x.rlib");
        assert_eq!(p.to_string(), "debug/deps/x.rlib");
    }

    #[test]
    fn symlink_chains_are_resolved_not_read() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path().join("tree");
        fs::create_dir_all(r.join("d/e")).unwrap();
        fs::write(r.join("d/f"), "f").unwrap();
        // Inside: a plain relative link, a link to `.`, a link to a sibling dir.
        symlink("f", r.join("d/ok")).unwrap();
        symlink(".", r.join("d/dot")).unwrap();
        symlink("../d", r.join("d/e/up")).unwrap();
        for rel in ["d/ok", "d/dot", "d/e/up"] {
            assert!(link_escapes(&r, Path::new(rel)).is_none(), "{rel}");
        }
        assert_eq!(
            resolve_within(&r, Path::new("d/ok")).unwrap(),
            Path::new("d/f")
        );
        // A chain through the link to `.`: lexically `dot/dot/dot/../../..` stays at
        // depth 1, but `dot` is `d` itself, so the three `..` climb out of the tree.
        symlink("dot/dot/dot/../../..", r.join("d/esc")).unwrap();
        assert!(link_escapes(&r, Path::new("d/esc")).is_some());
        // Absolute, plain `..` escape, and a loop.
        symlink("/etc", r.join("abs")).unwrap();
        symlink("../..", r.join("d/up2")).unwrap();
        symlink("loop2", r.join("loop1")).unwrap();
        symlink("loop1", r.join("loop2")).unwrap();
        for rel in ["abs", "d/up2", "loop1"] {
            assert!(link_escapes(&r, Path::new(rel)).is_some(), "{rel}");
        }
        // Chains: 40 links deep resolve (the kernel's own limit), 41 do not.
        let deep = r.join("deep");
        fs::create_dir_all(&deep).unwrap();
        fs::write(deep.join("end"), "e").unwrap();
        for i in 0..41 {
            let next = if i == 0 {
                "end".to_owned()
            } else {
                format!("l{}", i - 1)
            };
            symlink(next, deep.join(format!("l{i}"))).unwrap();
        }
        assert_eq!(
            resolve_within(&r, Path::new("deep/l39")).unwrap(),
            Path::new("deep/end")
        );
        assert!(link_escapes(&r, Path::new("deep/l40")).is_some());
        // A dangling link inside the tree stays inside.
        symlink("d/missing", r.join("dangling")).unwrap();
        assert!(link_escapes(&r, Path::new("dangling")).is_none());
    }
}
