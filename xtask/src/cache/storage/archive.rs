//! Entries as one stream: the files of an entry's `data/` written as a tar stream through
//! a zstd encoder, and unpacked back with their nanosecond mtimes, moved between threads
//! in bounded chunks so an entry is never held in memory whole. Used by the S3 backend
//! (`s3.rs`); behind the `remote` cargo feature with it.
//!
//! Owns the archive format only: which files go in (the entry's manifest) and where the
//! bytes go (a multipart upload, a ranged download) are the caller's.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

use crate::cache::integrity::Manifest;
use crate::cache::untrusted::RelPath;

/// zstd level of archives: 1 keeps compression faster than a runner's network.
pub const ZSTD_LEVEL: i32 = 1;
/// Bytes per message between the archive thread and the uploader/downloader.
pub const PIPE_CHUNK: usize = 1 << 20;

/// Write the files `paths` (relative to `data`, in this order) as a tar stream through a
/// zstd encoder into `sink`. Symlinks are stored as links.
///
/// Errors: a file cannot be read, or the sink fails (e.g. the upload stopped).
pub fn write_archive(data: &Path, paths: &[String], sink: impl Write) -> Result<()> {
    let enc = zstd::Encoder::new(sink, ZSTD_LEVEL).context("start zstd")?;
    let mut tar = tar::Builder::new(enc);
    tar.follow_symlinks(false);
    for p in paths {
        tar.append_path_with_name(data.join(p), p)
            .with_context(|| format!("archive {p}"))?;
    }
    let enc = tar.into_inner().context("finish tar")?;
    let mut sink = enc.finish().context("finish zstd")?;
    sink.flush().context("flush archive")?;
    Ok(())
}

/// Unpack a tar + zstd stream from `src` into the existing dir `dir`, then check that
/// the stream ended cleanly (a truncated stream is an error, never a shorter tree).
///
/// The stream is untrusted (any runner with write access to the bucket wrote it): only
/// regular files, directories and symlinks are unpacked, each at a plain relative path
/// ([`RelPath`]); a hard link, device, FIFO or any other kind fails the unpack, and
/// tar's own check keeps every file inside `dir` even through a symlink unpacked before
/// it. Where symlinks lead is checked after the unpack ([`Manifest::check_structure`]),
/// before anything uses the tree. Permissions are unpacked without setuid, setgid or
/// sticky bits.
///
/// Errors: a damaged or truncated stream, a refused entry, or an I/O error.
pub fn unpack_archive(src: impl Read, dir: &Path) -> Result<()> {
    let dec = zstd::Decoder::new(src).context("start zstd")?;
    let mut ar = tar::Archive::new(dec);
    ar.set_preserve_permissions(false);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.set_unpack_xattrs(false);
    for entry in ar.entries().context("read the archive")? {
        let mut entry = entry.context("read an archive entry")?;
        let kind = entry.header().entry_type();
        let path = entry.path().context("archive entry path")?.into_owned();
        let text = path.to_str().context("an archive path is not UTF-8")?;
        RelPath::parse(text.trim_end_matches('/'))
            .map_err(|e| anyhow::anyhow!("archive entry: {e}"))?;
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            anyhow::bail!("archive entry {text}: refused kind {kind:?} (only files, directories and symlinks are cached)");
        }
        let unpacked = entry
            .unpack_in(dir)
            .with_context(|| format!("unpack {text}"))?;
        anyhow::ensure!(unpacked, "archive entry {text} would leave the tree");
    }
    // tar stops at its end-of-archive blocks; reading on to the end of the zstd frame makes
    // a truncated frame an error.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("read to the end of the archive")?;
    Ok(())
}

/// Give every file of `m` under `data` its recorded modification time (nanoseconds; tar
/// keeps whole seconds only), so the manifest's structure check and cargo's freshness
/// checks see the times of the original tree. Only paths found by walking `data` (never
/// through a symlink) are touched, so a manifest path through an unpacked symlink cannot
/// reach a file outside the tree; a listed file that is not there is left to the
/// structure check that follows.
///
/// Errors: an mtime cannot be set.
pub fn set_mtimes(data: &Path, m: &Manifest) -> Result<()> {
    for e in walkdir::WalkDir::new(data)
        .min_depth(1)
        .into_iter()
        .flatten()
    {
        if e.file_type().is_dir() {
            continue;
        }
        let Some(rel) = e.path().strip_prefix(data).ok().and_then(|r| r.to_str()) else {
            continue;
        };
        let Some(r) = m.files.get(rel) else { continue };
        let secs = r.mtime_ns.div_euclid(1_000_000_000) as i64;
        let nanos = r.mtime_ns.rem_euclid(1_000_000_000) as u32;
        let t = filetime::FileTime::from_unix_time(secs, nanos);
        filetime::set_symlink_file_times(e.path(), t, t)
            .with_context(|| format!("set the mtime of {rel}"))?;
    }
    Ok(())
}

/// A `Write` that sends its bytes in [`PIPE_CHUNK`] messages over a bounded channel
/// (blocking when it is full: the upload sets the pace).
pub struct ChanWriter {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChanWriter {
    /// A writer sending into `tx`.
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ChanWriter {
        ChanWriter {
            tx: Some(tx),
            buf: Vec::with_capacity(PIPE_CHUNK),
        }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let out = std::mem::replace(&mut self.buf, Vec::with_capacity(PIPE_CHUNK));
        let tx = self.tx.as_ref().ok_or_else(|| io::Error::other("closed"))?;
        tx.blocking_send(out)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the upload stopped"))
    }
}

impl Write for ChanWriter {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= PIPE_CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// A `Read` over messages from a bounded channel; the end of the channel is EOF.
pub struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    /// A reader of what arrives on `rx`.
    pub fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> ChanReader {
        ChanReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.blocking_recv() {
                Some(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(dir: &Path) -> Vec<String> {
        std::fs::create_dir_all(dir.join("debug/deps")).unwrap();
        std::fs::write(dir.join("debug/deps/liba.rlib"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.join("debug/deps/b.d"), b"dep info").unwrap();
        std::os::unix::fs::symlink("liba.rlib", dir.join("debug/deps/link")).unwrap();
        vec![
            "debug/deps/b.d".into(),
            "debug/deps/liba.rlib".into(),
            "debug/deps/link".into(),
        ]
    }

    #[test]
    fn archive_round_trips_with_nanosecond_mtimes() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let paths = tree(&src);
        let m = Manifest::build(&src, None).unwrap();
        let mut bytes = Vec::new();
        write_archive(&src, &paths, &mut bytes).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        unpack_archive(&bytes[..], &out).unwrap();
        set_mtimes(&out, &m).unwrap();
        assert!(m.check_content(&out).unwrap().is_empty());
        assert!(std::fs::symlink_metadata(out.join("debug/deps/link"))
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn a_truncated_archive_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        let paths = tree(&src);
        let mut bytes = Vec::new();
        write_archive(&src, &paths, &mut bytes).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 3] {
            let out = t.path().join(format!("out{cut}"));
            std::fs::create_dir_all(&out).unwrap();
            assert!(unpack_archive(&bytes[..cut], &out).is_err(), "cut at {cut}");
        }
    }

    /// A tar stream with one entry of `kind` at `path` (and a link target for links).
    fn archive_with(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut enc = zstd::Encoder::new(Vec::new(), 1).unwrap();
        {
            let mut b = tar::Builder::new(&mut enc);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(if kind.is_file() { 1 } else { 0 });
            h.set_mode(0o4755);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            // `set_path` refuses `..`; write the raw name as a hostile writer would.
            let name = path.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_cksum();
            let data: &[u8] = if kind.is_file() { b"x" } else { b"" };
            b.append(&h, data).unwrap();
            b.finish().unwrap();
        }
        enc.finish().unwrap()
    }

    #[test]
    fn hostile_archive_entries_are_refused() {
        let t = tempfile::tempdir().unwrap();
        for (i, (path, kind, link)) in [
            ("../escape", tar::EntryType::Regular, None),
            ("/abs", tar::EntryType::Regular, None),
            ("hard", tar::EntryType::Link, Some("/etc/passwd")),
            ("fifo", tar::EntryType::Fifo, None),
            ("dev", tar::EntryType::Char, None),
        ]
        .into_iter()
        .enumerate()
        {
            let out = t.path().join(format!("out{i}"));
            std::fs::create_dir_all(&out).unwrap();
            let bytes = archive_with(path, kind, link);
            assert!(unpack_archive(&bytes[..], &out).is_err(), "{path} {kind:?}");
            assert!(!t.path().join("escape").exists());
        }
        // A plain file unpacks without its setuid bit.
        let out = t.path().join("ok");
        std::fs::create_dir_all(&out).unwrap();
        unpack_archive(&archive_with("f", tar::EntryType::Regular, None)[..], &out).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("f"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7000, 0, "{mode:o}");
    }

    #[test]
    fn a_symlink_chain_out_through_dot_fails_the_download_check() {
        let t = tempfile::tempdir().unwrap();
        let src = t.path().join("src");
        std::fs::create_dir_all(src.join("d")).unwrap();
        std::os::unix::fs::symlink(".", src.join("d/dot")).unwrap();
        std::os::unix::fs::symlink("dot/dot/dot/../../../victim", src.join("d/out")).unwrap();
        let m = Manifest::build(&src, None).unwrap();
        let paths: Vec<String> = m.files.keys().cloned().collect();
        let mut bytes = Vec::new();
        write_archive(&src, &paths, &mut bytes).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(&out).unwrap();
        unpack_archive(&bytes[..], &out).unwrap();
        set_mtimes(&out, &m).unwrap();
        let damage = m.check_content(&out).unwrap();
        assert!(
            damage
                .iter()
                .any(|d| d.contains("d/out") && d.contains("resolves outside")),
            "{damage:?}"
        );
    }
}
