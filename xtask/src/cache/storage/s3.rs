//! The S3 backend: complete entries shared by a fleet of runners through S3-compatible
//! object storage (OpenDAL; gcs, azblob and ghac are one `remote-*` cargo feature away),
//! behind the local cache (see `tiered.rs`). Compiled with the cargo feature `remote`.
//!
//! # Objects
//!
//! Under the bucket and key prefix, an entry is:
//!
//! ```text
//! <stage>/<key>/entry.json                  the commit marker: writer id, archive size, entry.json
//! <stage>/<key>/<writer>/manifest.tsv       the entry manifest (file list, sizes, sha256)
//! <stage>/<key>/<writer>/data.tar.zst       the data, one tar stream compressed with zstd
//! ```
//!
//! The archive is streamed both ways (a tar writer feeding a zstd encoder feeding a
//! multipart upload through a bounded channel; downloads in ranged chunks feeding the
//! decoder and the unpacker, `archive.rs`): an entry is never held in memory whole.
//!
//! # Invariants
//!
//! - Entries are immutable, first writer wins: a save checks `entry.json` first (a second
//!   save of a key is a no-op), writes its objects under its own writer id, and commits by
//!   writing `entry.json` with `If-None-Match: *` (OpenDAL `if_not_exists`, supported by
//!   S3, MinIO and SeaweedFS). A writer that loses the race deletes its own objects. A
//!   reader only follows `entry.json`, so it never sees a partial or mixed entry.
//! - Nothing damaged is handed out: a download is checked against its manifest (its hash
//!   must be the entry's content hash; then file set, sizes, mtimes and every file's
//!   sha256) before `get` returns it.
//! - Credentials come only from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` and are
//!   never printed: every message is passed through the redactor before it leaves this
//!   module.
//!
//! This module never decides whether a run may write (a read-only run wraps this store in
//! [`super::ReadOnly`]) and never touches the local cache.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};

use super::archive::{self, ChanReader, ChanWriter, PIPE_CHUNK};
use super::{read_entry_meta, Damaged, Put, Storage, Transfer};
use crate::cache::integrity::Manifest;
use crate::cache::settings::RemoteConfig;
use crate::cache::{CacheKey, EntryInfo};
use crate::support::fs as fsutil;

/// Format version of the remote `entry.json` marker.
pub const REMOTE_SCHEMA: u32 = 1;
/// Multipart part size and ranged-read size, in bytes (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;

/// What `<stage>/<key>/entry.json` holds on the remote.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RemoteEntry {
    schema_version: u32,
    /// Directory of this entry's objects, unique per writer.
    writer: String,
    /// Bytes of `data.tar.zst`.
    archive_bytes: u64,
    /// The local `entry.json` of the entry.
    info: EntryInfo,
}

/// The S3 backend: an OpenDAL operator and the small tokio runtime that drives it, so
/// callers stay synchronous.
pub struct S3Storage {
    cfg: RemoteConfig,
    op: Operator,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for S3Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Storage")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

/// A remote failure: kept as OpenDAL's error (callers branch on its kind) or a timeout.
#[derive(Debug)]
enum Fail {
    Op(opendal::Error),
    Timeout(u64),
}

impl Fail {
    fn kind(&self) -> Option<ErrorKind> {
        match self {
            Fail::Op(e) => Some(e.kind()),
            Fail::Timeout(_) => None,
        }
    }
}

impl std::fmt::Display for Fail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fail::Op(e) => {
                // OpenDAL's own text carries the whole request context (URI, response
                // headers); say what a person needs: the kind, the service's error code,
                // the innermost cause, and what to do.
                let full = e.to_string();
                let code = full
                    .split("code: \"")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .map(|c| format!(" {c}"))
                    .unwrap_or_default();
                let mut cause = String::new();
                let mut src = std::error::Error::source(e);
                while let Some(c) = src {
                    cause = c.to_string();
                    src = c.source();
                }
                let hint = match e.kind() {
                    ErrorKind::PermissionDenied => {
                        ": access denied, check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    }
                    ErrorKind::NotFound => ": not found (does the bucket exist?)",
                    _ => "",
                };
                write!(f, "{}{code}{hint}", e.kind())?;
                if !cause.is_empty() && !cause.contains("code: ") {
                    write!(f, " ({cause})")?;
                } else if code.is_empty() && hint.is_empty() {
                    write!(f, " ({})", full.split(" => ").last().unwrap_or(&full))?;
                }
                Ok(())
            }
            Fail::Timeout(s) => write!(f, "no answer within {s} s (timed out)"),
        }
    }
}

impl S3Storage {
    /// Build the operator for `cfg`. No request is made.
    ///
    /// Errors: the service is not compiled in, or the configuration is invalid.
    pub fn new(cfg: RemoteConfig) -> Result<S3Storage> {
        install_http();
        let op = if cfg.service == "s3" {
            let mut b = opendal::services::S3::default()
                .bucket(&cfg.bucket)
                .region(&cfg.region)
                .root(&format!("/{}", cfg.prefix))
                .disable_config_load()
                .disable_ec2_metadata();
            if let Some(e) = &cfg.endpoint {
                b = b.endpoint(e);
            }
            match cfg.credentials() {
                Some((k, s)) => b = b.access_key_id(k).secret_access_key(s),
                None => b = b.skip_signature(),
            }
            Operator::new(b).map_err(|e| anyhow::anyhow!("{}", cfg.redact(&e.to_string())))?
        } else {
            // gcs, azblob, ghac: enabled by xtask's `remote-<service>` features, configured
            // through OpenDAL's registry (bucket/container, root, endpoint).
            let mut kv = vec![
                ("bucket".to_owned(), cfg.bucket.clone()),
                ("container".to_owned(), cfg.bucket.clone()),
                ("root".to_owned(), format!("/{}", cfg.prefix)),
            ];
            if let Some(e) = &cfg.endpoint {
                kv.push(("endpoint".to_owned(), e.clone()));
            }
            Operator::via_iter(&cfg.service, kv).map_err(|e| {
                anyhow::anyhow!(
                    "remote cache service `{}` is not available ({}): build xtask with \
                     `--features remote-{}`",
                    cfg.service,
                    cfg.redact(&e.to_string()),
                    cfg.service
                )
            })?
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("remote-cache")
            .enable_all()
            .build()
            .context("start the remote cache's runtime")?;
        Ok(S3Storage { cfg, op, rt })
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.cfg.timeout_secs)
    }

    /// Run one request with the timeout.
    fn call<T>(
        &self,
        fut: impl std::future::Future<Output = opendal::Result<T>>,
    ) -> std::result::Result<T, Fail> {
        let secs = self.cfg.timeout_secs;
        self.rt.block_on(async {
            match tokio::time::timeout(Duration::from_secs(secs), fut).await {
                Ok(r) => r.map_err(Fail::Op),
                Err(_) => Err(Fail::Timeout(secs)),
            }
        })
    }

    fn err(&self, what: &str, f: Fail) -> anyhow::Error {
        anyhow::anyhow!("{}", self.cfg.redact(&format!("{what}: {f}")))
    }

    fn base(key: &CacheKey) -> String {
        format!("{}/{}/", key.stage.as_str(), key.key)
    }

    /// The marker of `key`: `Ok(None)` when there is none. A marker that does not
    /// parse, is out of range ([`EntryInfo::check`]), is of another format, names
    /// another stage or key, or names a writer that is not one directory name, is
    /// [`Damaged`].
    fn read_marker(&self, key: &CacheKey) -> Result<Option<RemoteEntry>> {
        let path = format!("{}entry.json", S3Storage::base(key));
        let buf = match self.call(async { self.op.read(&path).await }) {
            Ok(buf) => buf.to_vec(),
            Err(f) if f.kind() == Some(ErrorKind::NotFound) => return Ok(None),
            Err(f) => return Err(self.err(&format!("read {path}"), f)),
        };
        let damaged = |why: String| anyhow::Error::new(Damaged(format!("remote {path}: {why}")));
        let m: RemoteEntry = serde_json::from_slice(&buf).map_err(|e| damaged(e.to_string()))?;
        m.info.check().map_err(|e| damaged(format!("{e:#}")))?;
        if m.schema_version != REMOTE_SCHEMA || m.info.key != key.key || m.info.stage != key.stage {
            return Err(damaged("of another format or key".into()));
        }
        if !crate::cache::untrusted::is_safe_name(&m.writer)
            || m.archive_bytes > crate::cache::untrusted::MAX_COUNT
        {
            return Err(damaged("its writer or archive size is out of range".into()));
        }
        Ok(Some(m))
    }

    /// The manifest of `marker`'s entry: it must be UTF-8, match the entry's content hash
    /// and parse ([`Damaged`] otherwise), and the archive must be as long as the marker
    /// says (a shorter one is damaged, not a network fault).
    fn read_manifest(&self, base: &str, marker: &RemoteEntry) -> Result<(String, Manifest)> {
        let mpath = format!("{base}manifest.tsv");
        let tsv = self
            .call(async { self.op.read(&mpath).await })
            .map_err(|f| self.err(&format!("read {mpath}"), f))?
            .to_vec();
        let damaged = |why: String| anyhow::Error::new(Damaged(format!("remote {mpath}: {why}")));
        let tsv = String::from_utf8(tsv).map_err(|_| damaged("not UTF-8".into()))?;
        if fsutil::sha256_hex(&tsv) != marker.info.content_hash {
            return Err(damaged("does not match the entry's content hash".into()));
        }
        let m = Manifest::from_tsv(&tsv).map_err(|e| damaged(format!("{e:#}")))?;
        let apath = format!("{base}data.tar.zst");
        let size = self
            .call(async { self.op.stat(&apath).await })
            .map_err(|f| self.err(&format!("stat {apath}"), f))?
            .content_length();
        if size != marker.archive_bytes {
            return Err(anyhow::Error::new(Damaged(format!(
                "remote {apath}: {size} bytes, its entry says {}",
                marker.archive_bytes
            ))));
        }
        Ok((tsv, m))
    }

    /// Stream the files of `data` listed in `m` as tar + zstd into a multipart upload at
    /// `path`. Returns the archive's bytes.
    fn upload_archive(&self, data: &Path, m: &Manifest, path: &str) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let data = data.to_path_buf();
        let paths: Vec<String> = m.files.keys().cloned().collect();
        let producer =
            std::thread::spawn(move || archive::write_archive(&data, &paths, ChanWriter::new(tx)));
        let idle = self.timeout();
        let sent = self.rt.block_on(async {
            let mut w = match tokio::time::timeout(
                idle,
                self.op.writer_with(path).chunk(PART).concurrent(2),
            )
            .await
            {
                Ok(Ok(w)) => w,
                Ok(Err(e)) => return Err(Fail::Op(e)),
                Err(_) => return Err(Fail::Timeout(idle.as_secs())),
            };
            let mut total = 0u64;
            // The producer ends the stream by dropping its sender; an error on our side
            // drops the receiver, which stops the producer.
            while let Some(buf) = rx.recv().await {
                total += buf.len() as u64;
                match tokio::time::timeout(idle, w.write(buf)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let _ = w.abort().await;
                        return Err(Fail::Op(e));
                    }
                    Err(_) => {
                        let _ = w.abort().await;
                        return Err(Fail::Timeout(idle.as_secs()));
                    }
                }
            }
            Ok((w, total))
        });
        // Dropping the receiver stops a producer still writing after an upload error.
        drop(rx);
        let produced = producer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the archive writer panicked")));
        let (mut w, total) = sent.map_err(|f| self.err(&format!("upload {path}"), f))?;
        if let Err(e) = produced {
            let _ = self.call(async { w.abort().await });
            return Err(e.context(format!("archive for {path}")));
        }
        self.call(async { w.close().await })
            .map_err(|f| self.err(&format!("complete upload {path}"), f))?;
        Ok(total)
    }

    /// Download `path` (`bytes` long) in ranged chunks into the unpacker writing `data`.
    fn download_archive(&self, path: &str, bytes: u64, data: &Path) -> Result<()> {
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let dir = data.to_path_buf();
        let consumer =
            std::thread::spawn(move || archive::unpack_archive(ChanReader::new(rx), &dir));
        let idle = self.timeout();
        let fetched = self.rt.block_on(async {
            let reader = match tokio::time::timeout(idle, self.op.reader(path)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err(Fail::Op(e)),
                Err(_) => return Err(Fail::Timeout(idle.as_secs())),
            };
            let mut off = 0u64;
            while off < bytes {
                let n = (bytes - off).min(PART as u64);
                let buf = match tokio::time::timeout(idle, reader.read(off..off + n)).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => return Err(Fail::Op(e)),
                    Err(_) => return Err(Fail::Timeout(idle.as_secs())),
                };
                let got = buf.len() as u64;
                if got == 0 {
                    return Err(Fail::Op(opendal::Error::new(
                        ErrorKind::Unexpected,
                        format!("archive truncated at {off} of {bytes} bytes"),
                    )));
                }
                off += got;
                for piece in buf.to_vec().chunks(PIPE_CHUNK) {
                    if tx.send(piece.to_vec()).await.is_err() {
                        // The unpacker stopped (a damaged stream): its error says why.
                        return Ok(());
                    }
                }
            }
            Ok(())
        });
        // Dropping the sender ends the unpacker's stream.
        drop(tx);
        let unpacked = consumer
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the archive reader panicked")));
        fetched.map_err(|f| self.err(&format!("download {path}"), f))?;
        // Every byte arrived (its size was checked against the marker): an archive that
        // does not unpack is damaged, not a network fault.
        unpacked.map_err(|e| anyhow::Error::new(Damaged(format!("unpack {path}: {e:#}"))))
    }

    fn delete_quietly(&self, paths: &[String]) {
        for p in paths {
            let _ = self.call(async { self.op.delete(p).await });
        }
    }
}

impl Storage for S3Storage {
    fn describe(&self) -> String {
        self.cfg.describe()
    }

    /// Check that the bucket answers: one listing of at most one object under the
    /// prefix. A missing bucket, wrong credentials or an unreachable endpoint fail here
    /// (a `HEAD` of a missing object cannot tell a missing bucket from a miss).
    ///
    /// Errors: the reason, ready for a warning.
    fn probe(&self) -> Result<()> {
        let r = self.call(async { self.op.list_with("").limit(1).await });
        match r {
            Ok(_) => Ok(()),
            Err(f) if f.kind() == Some(ErrorKind::NotFound) => Err(self.err(
                &format!("bucket `{}`", self.cfg.bucket),
                Fail::Op(opendal::Error::new(ErrorKind::NotFound, "no such bucket")),
            )),
            Err(f) => Err(self.err("probe", f)),
        }
    }

    fn redact(&self, text: &str) -> String {
        self.cfg.redact(text)
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        let path = format!("{}entry.json", S3Storage::base(key));
        match self.call(async { self.op.stat(&path).await }) {
            Ok(_) => Ok(true),
            Err(f) if f.kind() == Some(ErrorKind::NotFound) => Ok(false),
            Err(f) => Err(self.err(&format!("stat {path}"), f)),
        }
    }

    fn get(&self, key: &CacheKey, into: &Path) -> Result<Option<Transfer>> {
        let start = Instant::now();
        let Some(marker) = self.read_marker(key)? else {
            return Ok(None);
        };
        let base = format!("{}{}/", S3Storage::base(key), marker.writer);
        let r = (|| -> Result<Transfer> {
            let (tsv, m) = self.read_manifest(&base, &marker)?;
            let data = into.join("data");
            std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
            self.download_archive(&format!("{base}data.tar.zst"), marker.archive_bytes, &data)?;
            archive::set_mtimes(&data, &m)?;
            let damage = m.check_content(&data)?;
            if !damage.is_empty() {
                return Err(anyhow::Error::new(Damaged(format!(
                    "the downloaded entry does not match its manifest: {}",
                    damage.join("; ")
                ))));
            }
            std::fs::write(into.join("manifest.tsv"), &tsv)?;
            std::fs::write(
                into.join("entry.json"),
                serde_json::to_vec_pretty(&marker.info)?,
            )?;
            Ok(Transfer {
                wire_bytes: marker.archive_bytes + tsv.len() as u64,
                data_bytes: m.bytes(),
                files: m.count(),
                secs: start.elapsed().as_secs_f64(),
            })
        })();
        match r {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                let _ = fsutil::remove_tree(into);
                Err(e.context(format!("fetch {} entry {}", key.stage, key.key)))
            }
        }
    }

    /// Move the marker of `key` to `quarantine/<stage>/<key>/<writer id>.json` (the
    /// objects it names stay, for inspection), so readers miss and the next `put`
    /// stores a fresh entry.
    fn quarantine(&self, key: &CacheKey) -> Result<bool> {
        let path = format!("{}entry.json", S3Storage::base(key));
        let body = match self.call(async { self.op.read(&path).await }) {
            Ok(b) => b.to_vec(),
            Err(f) if f.kind() == Some(ErrorKind::NotFound) => return Ok(true),
            Err(f) => return Err(self.err(&format!("read {path}"), f)),
        };
        let q = format!("quarantine/{}/{}/{}.json", key.stage, key.key, writer_id());
        self.call(async { self.op.write(&q, body).await })
            .map_err(|f| self.err(&format!("write {q}"), f))?;
        self.call(async { self.op.delete(&path).await })
            .map_err(|f| self.err(&format!("delete {path}"), f))?;
        Ok(true)
    }

    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        let start = Instant::now();
        let (info, m, tsv) = read_entry_meta(entry)?;
        if self.contains(key)? {
            return Ok(Put::Exists);
        }
        let writer = writer_id();
        let base = format!("{}{}/", S3Storage::base(key), writer);
        let (mpath, apath) = (format!("{base}manifest.tsv"), format!("{base}data.tar.zst"));
        let ours = [apath.clone(), mpath.clone()];
        let r = (|| -> Result<Put> {
            self.call(async { self.op.write(&mpath, tsv.clone().into_bytes()).await })
                .map_err(|f| self.err(&format!("write {mpath}"), f))?;
            let archive_bytes = self.upload_archive(&entry.join("data"), &m, &apath)?;
            let marker = RemoteEntry {
                schema_version: REMOTE_SCHEMA,
                writer,
                archive_bytes,
                info: info.clone(),
            };
            let body = serde_json::to_vec_pretty(&marker)?;
            let epath = format!("{}entry.json", S3Storage::base(key));
            match self.call(async { self.op.write_with(&epath, body).if_not_exists(true).await }) {
                Ok(_) => Ok(Put::Stored(Transfer {
                    wire_bytes: archive_bytes + tsv.len() as u64,
                    data_bytes: m.bytes(),
                    files: m.count(),
                    secs: start.elapsed().as_secs_f64(),
                })),
                Err(f) if f.kind() == Some(ErrorKind::ConditionNotMatch) => {
                    // Another runner committed the key first; ours is never referenced.
                    self.delete_quietly(&ours);
                    Ok(Put::Exists)
                }
                Err(f) => Err(self.err(&format!("commit {epath}"), f)),
            }
        })();
        if r.is_err() {
            self.delete_quietly(&ours);
        }
        r.map_err(|e| e.context(format!("upload {} entry {}", key.stage, key.key)))
    }
}

/// Register OpenDAL's services and its reqwest transport, with rustls on ring (installed
/// as the process's provider if none is yet; an error only means one already is).
pub fn install_http() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    opendal::init_default_registry();
    opendal_http_transport_reqwest::install_default();
}

/// A unique directory name for one writer's objects (also a unique run id for the remote
/// benchmark).
pub fn writer_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = crate::support::time::now_unix_nanos();
    format!(
        "w{nanos:x}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}
