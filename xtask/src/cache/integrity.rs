//! Entry manifests: the list of every file of an entry's `data/` with its size,
//! modification time and sha256, and the content hash over that list.
//!
//! Stored as `manifest.tsv` beside `entry.json` (one line per file:
//! `kind \t size \t mtime_ns \t sha256 \t path`, sorted by path; `kind` is `f` for a regular
//! file, `l` for a symlink whose "content" is its target). The entry's `content_hash` is
//! the sha256 of that text, so a manifest cannot be edited without the entry noticing.
//!
//! Two checks, with different costs:
//! - [`Manifest::check_structure`]: one `stat` per file (file set, sizes, mtimes). Every
//!   restore runs it: it catches what interrupted writes, full disks and tampering with
//!   the tree leave, in milliseconds even for 20,000 files.
//! - [`Manifest::check_content`]: rehash every byte. `cargo xtask cache verify` runs it.
//!
//! Hashes of files whose path, size and mtime are unchanged since a previous manifest are
//! reused ([`Manifest::build`] with `previous`), as git's index does, so saving a tree that
//! was restored and only partly rebuilt hashes only what changed.
//!
//! A manifest read back ([`Manifest::from_tsv`]) is untrusted: every path must be a plain
//! relative path ([`RelPath`]), every kind `f` or `l`, every hash 64 hex digits, every size
//! in range, no path twice. Both checks also refuse what a tree must never hold: a FIFO,
//! socket or device (never opened, so a check cannot block on one), and a symlink that
//! resolves outside the tree ([`untrusted::resolve_within`], which follows links through
//! `.` and `..` instead of reading their text).

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::untrusted::{self, RelPath, MAX_COUNT};
use crate::support::fs::sha256_hex;
use crate::support::par::par_map;

/// One file of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRec {
    /// `f` (regular file) or `l` (symlink).
    pub kind: char,
    /// Bytes (0 for symlinks).
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
    /// Hex sha256 of the content (of the link target for symlinks).
    pub sha256: String,
}

/// Every file of a tree, by path relative to the tree's root (`/`-separated).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Files by relative path.
    pub files: BTreeMap<String, FileRec>,
}

/// What a structure or content check found wrong (empty = the entry is whole).
pub type Damage = Vec<String>;

/// Stat of a file as the manifest records it, without its hash.
fn stat_rec(path: &Path) -> io::Result<(char, u64, i128)> {
    let m = fs::symlink_metadata(path)?;
    let mtime_ns = i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec());
    if m.file_type().is_symlink() {
        Ok(('l', 0, mtime_ns))
    } else {
        Ok(('f', m.len(), mtime_ns))
    }
}

/// What a walk of a tree found besides its regular files and symlinks.
#[derive(Default)]
struct Walked {
    /// Regular files and symlinks: relative path (`/`-separated) and full path.
    files: Vec<(String, PathBuf)>,
    /// FIFOs, sockets and devices (relative paths): never opened.
    special: Vec<String>,
}

/// Relative paths of every regular file and symlink under `root` (directories implied),
/// and of every special file apart.
fn walk(root: &Path) -> Result<Walked> {
    let mut out = Walked::default();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.with_context(|| format!("walk {}", root.display()))?;
        let ft = e.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("walkdir yields paths under its root");
        let Some(rel) = rel.to_str() else {
            bail!(
                "{} is not UTF-8; the cache only stores UTF-8 paths",
                e.path().display()
            );
        };
        if ft.is_file() || ft.is_symlink() {
            out.files.push((rel.to_owned(), e.path().to_path_buf()));
        } else {
            out.special.push(rel.to_owned());
        }
    }
    Ok(out)
}

/// Damage lines for the special files and escaping symlinks of a walk of `root`.
fn forbidden(root: &Path, w: &Walked) -> Damage {
    let mut d: Damage = w
        .special
        .iter()
        .map(|p| format!("{p}: a special file (FIFO, socket or device)"))
        .collect();
    for (rel, abs) in &w.files {
        if fs::symlink_metadata(abs).is_ok_and(|m| m.file_type().is_symlink()) {
            if let Some(bad) = untrusted::link_escapes(root, Path::new(rel)) {
                d.push(format!("symlink {bad} resolves outside the tree"));
            }
        }
    }
    d
}

fn hash_of(kind: char, path: &Path) -> io::Result<String> {
    if kind == 'l' {
        Ok(sha256_hex(
            fs::read_link(path)?.as_os_str().as_encoded_bytes(),
        ))
    } else {
        // A regular file only: never through a symlink, never blocking on a FIFO.
        let mut f = untrusted::open_regular(path)?;
        let mut h = <sha2::Sha256 as sha2::Digest>::new();
        io::copy(&mut f, &mut h)?;
        Ok(hex::encode(sha2::Digest::finalize(h)))
    }
}

impl Manifest {
    /// The manifest of the tree at `root`, hashing in parallel. Files whose path, kind,
    /// size and mtime match `previous` keep its hash instead of being read again.
    ///
    /// Errors: the tree cannot be walked or a file cannot be read.
    pub fn build(root: &Path, previous: Option<&Manifest>) -> Result<Manifest> {
        // Special files are left out (a save prunes them first, with a warning).
        let paths = walk(root)?.files;
        let recs = par_map(&paths, |(rel, abs)| -> Result<(String, FileRec)> {
            let (kind, size, mtime_ns) =
                stat_rec(abs).with_context(|| format!("stat {}", abs.display()))?;
            let reused = previous
                .and_then(|p| p.files.get(rel))
                .filter(|r| r.kind == kind && r.size == size && r.mtime_ns == mtime_ns);
            let sha256 = match reused {
                Some(r) => r.sha256.clone(),
                None => hash_of(kind, abs).with_context(|| format!("hash {}", abs.display()))?,
            };
            Ok((
                rel.clone(),
                FileRec {
                    kind,
                    size,
                    mtime_ns,
                    sha256,
                },
            ))
        });
        Ok(Manifest {
            files: recs.into_iter().collect::<Result<_>>()?,
        })
    }

    /// Total bytes of the regular files.
    pub fn bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// Number of files (regular and symlinks).
    pub fn count(&self) -> u64 {
        self.files.len() as u64
    }

    /// The `manifest.tsv` text.
    pub fn to_tsv(&self) -> String {
        let mut s = String::with_capacity(self.files.len() * 120);
        for (path, r) in &self.files {
            s.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\n",
                r.kind,
                r.size,
                r.mtime_ns,
                r.sha256,
                escape(path)
            ));
        }
        s
    }

    /// Parse `manifest.tsv` text, checking every line (see the module docs).
    ///
    /// Errors: a malformed line, naming it (the entry is then treated as damaged).
    pub fn from_tsv(text: &str) -> Result<Manifest> {
        let mut files = BTreeMap::new();
        for (i, line) in text.lines().enumerate() {
            let (path, rec) =
                parse_line(line).with_context(|| format!("manifest line {}", i + 1))?;
            if files.insert(path.as_str().to_owned(), rec).is_some() {
                bail!("manifest line {}: `{path}` is listed twice", i + 1);
            }
        }
        Ok(Manifest { files })
    }

    /// Compare the tree at `root` with this manifest by `stat` only: the same set of
    /// files, each with its recorded kind, size and mtime. Returns what differs (at most
    /// a few lines, then a count), empty when whole.
    ///
    /// Errors: the tree cannot be walked.
    pub fn check_structure(&self, root: &Path) -> Result<Damage> {
        let walked = walk(root)?;
        let mut damage = forbidden(root, &walked);
        let paths = walked.files;
        let mut seen = 0usize;
        for (rel, abs) in &paths {
            match self.files.get(rel) {
                None => damage.push(format!("unexpected file {rel}")),
                Some(r) => {
                    seen += 1;
                    match stat_rec(abs) {
                        Ok((k, s, m)) if k == r.kind && s == r.size && m == r.mtime_ns => {}
                        Ok((_, s, _)) if s != r.size => {
                            damage.push(format!("{rel}: {s} bytes, manifest says {}", r.size))
                        }
                        Ok(_) => damage.push(format!("{rel}: modified since saved")),
                        Err(e) => damage.push(format!("{rel}: {e}")),
                    }
                }
            }
        }
        if seen < self.files.len() {
            let present: std::collections::HashSet<&str> =
                paths.iter().map(|(r, _)| r.as_str()).collect();
            for p in self.files.keys().filter(|p| !present.contains(p.as_str())) {
                damage.push(format!("missing file {p}"));
            }
        }
        Ok(summarize(damage))
    }

    /// [`Manifest::check_structure`], then rehash every file and compare with the
    /// recorded sha256.
    ///
    /// Errors: the tree cannot be walked.
    pub fn check_content(&self, root: &Path) -> Result<Damage> {
        let mut damage = self.check_structure(root)?;
        if !damage.is_empty() {
            // Hash only a tree whose every file is the kind its manifest says: a path
            // the manifest calls a file may be a FIFO, which must never be opened.
            return Ok(damage);
        }
        let items: Vec<(&String, &FileRec)> = self.files.iter().collect();
        let bad = par_map(&items, |(rel, r)| {
            let abs = root.join(rel);
            match hash_of(r.kind, &abs) {
                Ok(h) if h == r.sha256 => None,
                Ok(_) => Some(format!("{rel}: content differs from its sha256")),
                Err(e) => Some(format!("{rel}: {e}")),
            }
        });
        damage.extend(bad.into_iter().flatten());
        Ok(summarize(damage))
    }
}

/// One `manifest.tsv` line: `kind \t size \t mtime_ns \t sha256 \t path`.
fn parse_line(line: &str) -> Result<(RelPath, FileRec)> {
    let mut it = line.splitn(5, '\t');
    let mut next = || it.next().context("the line is short");
    let kind = match next()? {
        "f" => 'f',
        "l" => 'l',
        k => bail!("unknown kind `{}`", k.escape_debug()),
    };
    let size: u64 = next()?.parse().context("size")?;
    anyhow::ensure!(size <= MAX_COUNT, "size {size} is out of range");
    let mtime_ns: i128 = next()?.parse().context("mtime")?;
    // i64 seconds of nanoseconds: what a filesystem can hold and `set_mtimes` can set.
    anyhow::ensure!(
        mtime_ns.unsigned_abs() <= i64::MAX as u128,
        "mtime {mtime_ns} is out of range"
    );
    let sha256 = next()?.to_owned();
    anyhow::ensure!(
        sha256.len() == 64 && sha256.bytes().all(|b| b.is_ascii_hexdigit()),
        "`{}` is not a sha256",
        sha256.escape_debug()
    );
    let path = RelPath::parse(&unescape(next()?)).map_err(anyhow::Error::msg)?;
    Ok((
        path,
        FileRec {
            kind,
            size,
            mtime_ns,
            sha256,
        },
    ))
}

fn summarize(mut d: Damage) -> Damage {
    const SHOW: usize = 5;
    if d.len() > SHOW {
        let more = d.len() - SHOW;
        d.truncate(SHOW);
        d.push(format!("... and {more} more"));
    }
    d
}

fn escape(p: &str) -> String {
    p.replace('\\', "\\\\")
        .replace('\t', "\\t")
        .replace('\n', "\\n")
}

fn unescape(p: &str) -> String {
    let mut out = String::with_capacity(p.len());
    let mut it = p.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('t') => out.push('\t'),
                Some('n') => out.push('\n'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips_and_catches_damage() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("deps")).unwrap();
        fs::write(d.join("deps/liba.rlib"), b"aaaa").unwrap();
        fs::write(d.join("deps/odd\tname"), b"b").unwrap();
        std::os::unix::fs::symlink("liba.rlib", d.join("deps/link")).unwrap();
        let m = Manifest::build(d, None).unwrap();
        assert_eq!(m.count(), 3);
        assert_eq!(m.bytes(), 5);
        let back = Manifest::from_tsv(&m.to_tsv()).unwrap();
        assert_eq!(back, m);
        assert!(m.check_content(d).unwrap().is_empty());

        // Same size, same mtime, different bytes: only the content check sees it.
        let p = d.join("deps/liba.rlib");
        let mtime = fs::metadata(&p).unwrap().modified().unwrap();
        fs::write(&p, b"abcd").unwrap();
        fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(mtime)
            .unwrap();
        assert!(m.check_structure(d).unwrap().is_empty());
        assert_eq!(m.check_content(d).unwrap().len(), 1);

        // A truncated file and a missing one are structural damage.
        fs::write(&p, b"a").unwrap();
        fs::remove_file(d.join("deps/odd\tname")).unwrap();
        let dmg = m.check_structure(d).unwrap();
        assert_eq!(dmg.len(), 2, "{dmg:?}");

        // Reuse: an unchanged file keeps its recorded hash even if we lie about it.
        let mut fake = m.clone();
        fake.files.get_mut("deps/link").unwrap().sha256 = "x".into();
        let again = Manifest::build(d, Some(&fake)).unwrap();
        assert_eq!(again.files["deps/link"].sha256, "x");
        assert_ne!(
            again.files["deps/liba.rlib"].sha256,
            m.files["deps/liba.rlib"].sha256
        );
    }
}
