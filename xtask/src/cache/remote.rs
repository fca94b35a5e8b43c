//! The remote cache: complete entries shared by a fleet of runners through S3-compatible
//! object storage (OpenDAL), behind the local cache root.
//!
//! # Two levels
//!
//! The local cache stays in front. A restore whose exact key the local cache holds never
//! touches the network. On a local miss, the remote entry is downloaded into the local
//! cache (`tmp/`, checked, then published with one rename) and restored from there as a
//! local hit; a read-only local cache (untrusted events) restores the download straight
//! into the destination instead. Only exact keys are looked up remotely; partial hits
//! (restore prefixes) stay local. A save writes the local entry first and then uploads it
//! on a background thread while the next repo builds; [`finish`] waits for every upload
//! before the run reports.
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
//! decoder and the unpacker): an entry is never held in memory whole.
//!
//! # Invariants
//!
//! - Entries are immutable, first writer wins: a save checks `entry.json` first (a second
//!   save of a key is a no-op), writes its objects under its own writer id, and commits by
//!   writing `entry.json` with `If-None-Match: *` (OpenDAL `if_not_exists`, supported by
//!   S3, MinIO and SeaweedFS). A writer that loses the race deletes its own objects. A
//!   reader only follows `entry.json`, so it never sees a partial or mixed entry.
//! - Nothing damaged lands in the local cache: a download is checked against its manifest
//!   (its hash must be the entry's content hash; then file set, sizes, mtimes and every
//!   file's sha256) before it is published or restored.
//! - A build never depends on the remote: every remote failure (unreachable, denied,
//!   missing bucket, timeout, truncated download) becomes one warning in the summary, and
//!   the remote is switched off for the rest of the run (no second timeout).
//! - Credentials come only from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` and are
//!   never printed: messages are passed through a redactor before they leave this module.
//!
//! This module never decides whether a run may save (the caller's `read_only`), and never
//! changes the local engine's entries except through [`Cache::import`].

use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use opendal::{ErrorKind, Operator};
use serde::{Deserialize, Serialize};

use super::integrity::Manifest;
use super::storage::{read_entry_meta, Put, Storage, Transfer};
use super::{Cache, CacheKey, EntryInfo, Restore, Save, Strategy};
use crate::engine::manifest::RemoteSettings;
use crate::engine::summary::StageReport;
use crate::support::fs as fsutil;

/// Environment variable overriding `[cache.remote] bucket` (setting it alone enables the
/// remote).
pub const BUCKET_ENV: &str = "BLLVM_CI_CACHE_BUCKET";
/// Environment variable overriding `[cache.remote] endpoint`.
pub const ENDPOINT_ENV: &str = "BLLVM_CI_CACHE_ENDPOINT";
/// Environment variable overriding `[cache.remote] region`.
pub const REGION_ENV: &str = "BLLVM_CI_CACHE_REGION";
/// Environment variable overriding `[cache.remote] prefix`.
pub const PREFIX_ENV: &str = "BLLVM_CI_CACHE_KEY_PREFIX";
/// Environment variable overriding `[cache.remote] read-only` (`true`/`1` or `false`/`0`).
pub const READ_ONLY_ENV: &str = "BLLVM_CI_CACHE_READ_ONLY";
/// Environment variable overriding `[cache.remote] timeout-secs`.
pub const TIMEOUT_ENV: &str = "BLLVM_CI_CACHE_REMOTE_TIMEOUT";
/// Access key id (the standard AWS variable).
pub const ACCESS_KEY_ENV: &str = "AWS_ACCESS_KEY_ID";
/// Secret access key (the standard AWS variable); never printed.
pub const SECRET_KEY_ENV: &str = "AWS_SECRET_ACCESS_KEY";

/// Format version of the remote `entry.json` marker.
pub const REMOTE_SCHEMA: u32 = 1;
/// zstd level of archives: 1 keeps compression faster than a runner's network.
const ZSTD_LEVEL: i32 = 1;
/// Bytes per message between the archive thread and the uploader/downloader.
const PIPE_CHUNK: usize = 1 << 20;
/// Multipart part size and ranged-read size, in bytes (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The remote's settings after the manifest, the environment and the event were applied.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// OpenDAL service (`s3`; others need their cargo feature).
    pub service: String,
    /// Bucket name.
    pub bucket: String,
    /// Endpoint URL, if not AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Key prefix inside the bucket (`""` or ending in `/`).
    pub prefix: String,
    /// Never upload.
    pub read_only: bool,
    /// Seconds any single request (or chunk of a transfer) may take.
    pub timeout_secs: u64,
    access_key: Option<String>,
    secret_key: Option<Secret>,
}

impl RemoteConfig {
    /// Merge `settings` with the environment (`env` looks a variable up); `may_save` false
    /// (untrusted events, `--no-save`) forces read-only. `None` when no bucket is set,
    /// i.e. no remote.
    pub fn resolve(
        settings: Option<&RemoteSettings>,
        may_save: bool,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Option<RemoteConfig> {
        let s = settings.cloned().unwrap_or_default();
        let env = |k: &str| env(k).filter(|v| !v.is_empty());
        let bucket = env(BUCKET_ENV).or(s.bucket)?;
        let flag = |v: String| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes");
        let read_only = env(READ_ONLY_ENV).map_or(s.read_only, flag) || !may_save;
        let mut prefix = env(PREFIX_ENV).or(s.prefix).unwrap_or_default();
        prefix = prefix.trim_matches('/').to_owned();
        if !prefix.is_empty() {
            prefix.push('/');
        }
        Some(RemoteConfig {
            service: s.service.unwrap_or_else(|| "s3".into()),
            bucket,
            endpoint: env(ENDPOINT_ENV).or(s.endpoint),
            region: env(REGION_ENV)
                .or(s.region)
                .unwrap_or_else(|| "us-east-1".into()),
            prefix,
            read_only,
            timeout_secs: env(TIMEOUT_ENV)
                .and_then(|v| v.parse().ok())
                .or(s.timeout_secs)
                .unwrap_or(60)
                .max(1),
            access_key: env(ACCESS_KEY_ENV),
            secret_key: env(SECRET_KEY_ENV).map(Secret),
        })
    }

    /// `s3://bucket/prefix (endpoint)`, without credentials.
    pub fn describe(&self) -> String {
        let mut s = format!("{}://{}/{}", self.service, self.bucket, self.prefix);
        if let Some(e) = &self.endpoint {
            s += &format!(" at {e}");
        }
        s
    }

    /// Remove every credential from `text` (messages from the HTTP stack may echo
    /// request details).
    fn redact(&self, text: &str) -> String {
        let mut t = text.to_owned();
        if let Some(Secret(s)) = &self.secret_key {
            if s.len() >= 4 {
                t = t.replace(s.as_str(), "***");
            }
        }
        t
    }
}

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

/// The remote backend: an OpenDAL operator and the small tokio runtime that drives it, so
/// callers stay synchronous.
pub struct Remote {
    cfg: RemoteConfig,
    op: Operator,
    rt: tokio::runtime::Runtime,
}

impl std::fmt::Debug for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remote")
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

impl Remote {
    /// Build the operator for `cfg`. No request is made.
    ///
    /// Errors: the service is not compiled in, or the configuration is invalid.
    pub fn new(cfg: RemoteConfig) -> Result<Remote> {
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
            match (&cfg.access_key, &cfg.secret_key) {
                (Some(k), Some(Secret(s))) => b = b.access_key_id(k).secret_access_key(s),
                _ => b = b.skip_signature(),
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
        Ok(Remote { cfg, op, rt })
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

    /// Check that the bucket answers: one listing of at most one object under the
    /// prefix. A missing bucket, wrong credentials or an unreachable endpoint fail here
    /// (a `HEAD` of a missing object cannot tell a missing bucket from a miss).
    ///
    /// Errors: the reason, ready for a warning.
    pub fn probe(&self) -> Result<()> {
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

    fn read_marker(&self, key: &CacheKey) -> Result<Option<RemoteEntry>> {
        let path = format!("{}entry.json", Remote::base(key));
        match self.call(async { self.op.read(&path).await }) {
            Ok(buf) => {
                let m: RemoteEntry = serde_json::from_slice(&buf.to_vec())
                    .with_context(|| format!("parse remote {path}"))?;
                if m.schema_version != REMOTE_SCHEMA || m.info.key != key.key {
                    bail!("remote {path} is of another format or key");
                }
                Ok(Some(m))
            }
            Err(f) if f.kind() == Some(ErrorKind::NotFound) => Ok(None),
            Err(f) => Err(self.err(&format!("read {path}"), f)),
        }
    }

    /// Stream the files of `data` listed in `m` as tar + zstd into a multipart upload at
    /// `path`. Returns the archive's bytes.
    fn upload_archive(&self, data: &Path, m: &Manifest, path: &str) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
        let data = data.to_path_buf();
        let paths: Vec<String> = m.files.keys().cloned().collect();
        let producer =
            std::thread::spawn(move || write_archive(&data, &paths, ChanWriter::new(tx)));
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
        let consumer = std::thread::spawn(move || unpack_archive(ChanReader::new(rx), &dir));
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
        unpacked.with_context(|| format!("unpack {path}"))
    }

    fn delete_quietly(&self, paths: &[String]) {
        for p in paths {
            let _ = self.call(async { self.op.delete(p).await });
        }
    }
}

impl Storage for Remote {
    fn describe(&self) -> String {
        self.cfg.describe()
    }

    fn is_read_only(&self) -> bool {
        self.cfg.read_only
    }

    fn contains(&self, key: &CacheKey) -> Result<bool> {
        let path = format!("{}entry.json", Remote::base(key));
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
        let base = format!("{}{}/", Remote::base(key), marker.writer);
        let r = (|| -> Result<Transfer> {
            let mpath = format!("{base}manifest.tsv");
            let tsv = self
                .call(async { self.op.read(&mpath).await })
                .map_err(|f| self.err(&format!("read {mpath}"), f))?
                .to_vec();
            let tsv = String::from_utf8(tsv).context("manifest.tsv is not UTF-8")?;
            if fsutil::sha256_hex(&tsv) != marker.info.content_hash {
                bail!("the remote manifest does not match the entry's content hash");
            }
            let m = Manifest::from_tsv(&tsv)?;
            let data = into.join("data");
            std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
            self.download_archive(&format!("{base}data.tar.zst"), marker.archive_bytes, &data)?;
            set_mtimes(&data, &m)?;
            let damage = m.check_content(&data)?;
            if !damage.is_empty() {
                bail!(
                    "the downloaded entry does not match its manifest: {}",
                    damage.join("; ")
                );
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

    fn put(&self, key: &CacheKey, entry: &Path) -> Result<Put> {
        if self.cfg.read_only {
            return Ok(Put::ReadOnly);
        }
        let start = Instant::now();
        let (info, m, tsv) = read_entry_meta(entry)?;
        if self.contains(key)? {
            return Ok(Put::Exists);
        }
        let writer = writer_id();
        let base = format!("{}{}/", Remote::base(key), writer);
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
            let epath = format!("{}entry.json", Remote::base(key));
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

/// A unique directory name for one writer's objects.
fn writer_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "w{nanos:x}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

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
/// Errors: a damaged or truncated stream, or an I/O error.
pub fn unpack_archive(src: impl Read, dir: &Path) -> Result<()> {
    let dec = zstd::Decoder::new(src).context("start zstd")?;
    let mut ar = tar::Archive::new(dec);
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_overwrite(true);
    ar.unpack(dir).context("unpack")?;
    // tar stops at its end-of-archive blocks; reading on to the end of the zstd frame makes
    // a truncated frame an error.
    let mut rest = ar.into_inner();
    io::copy(&mut rest, &mut io::sink()).context("read to the end of the archive")?;
    Ok(())
}

/// Give every file of `m` under `data` its recorded modification time (nanoseconds; tar
/// keeps whole seconds only), so the manifest's structure check and cargo's freshness
/// checks see the times of the original tree.
fn set_mtimes(data: &Path, m: &Manifest) -> Result<()> {
    for (rel, r) in &m.files {
        let secs = r.mtime_ns.div_euclid(1_000_000_000) as i64;
        let nanos = r.mtime_ns.rem_euclid(1_000_000_000) as u32;
        let t = filetime::FileTime::from_unix_time(secs, nanos);
        filetime::set_symlink_file_times(data.join(rel), t, t)
            .with_context(|| format!("set the mtime of {rel}"))?;
    }
    Ok(())
}

/// A `Write` that sends its bytes in [`PIPE_CHUNK`] messages over a bounded channel
/// (blocking when it is full: the upload sets the pace).
struct ChanWriter {
    tx: Option<tokio::sync::mpsc::Sender<Vec<u8>>>,
    buf: Vec<u8>,
}

impl ChanWriter {
    fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ChanWriter {
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
struct ChanReader {
    rx: tokio::sync::mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl ChanReader {
    fn new(rx: tokio::sync::mpsc::Receiver<Vec<u8>>) -> ChanReader {
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

// ---------------------------------------------------------------------------------------
// The two-level cache used by `ci`: one remote per process.

/// What the remote did for one cache stage, in the summary and metrics. Empty strings
/// mean "did not happen".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RemoteStage {
    /// `hit` (downloaded), `miss`, `error`, `local-hit` (the local cache had the key: no
    /// request made) or `off` (the remote was switched off earlier in the run).
    pub restore: String,
    /// Bytes downloaded (compressed archive and manifest).
    #[serde(default)]
    pub restore_bytes: u64,
    /// Seconds the download took, checks included.
    #[serde(default)]
    pub restore_secs: f64,
    /// Uncompressed entry bytes per second of the download.
    #[serde(default)]
    pub restore_rate: f64,
    /// `uploaded`, `exists` (first writer won), `read-only`, `error`, `skipped` (the local
    /// entry was held by another job), or empty when no upload was due.
    #[serde(default)]
    pub upload: String,
    /// Bytes uploaded (compressed archive and manifest).
    #[serde(default)]
    pub upload_bytes: u64,
    /// Seconds the upload took (in the background).
    #[serde(default)]
    pub upload_secs: f64,
    /// Uncompressed entry bytes per second of the upload.
    #[serde(default)]
    pub upload_rate: f64,
}

type Upload = (CacheKey, std::thread::JoinHandle<Result<Put>>);

struct Layer {
    remote: Arc<Remote>,
    /// Why the remote was switched off, once it was (`None`: on).
    off: Mutex<Option<String>>,
    /// Whether the "switched off" warning was given.
    warned: Mutex<bool>,
    probed: OnceLock<()>,
    uploads: Mutex<Vec<Upload>>,
}

static LAYER: OnceLock<Layer> = OnceLock::new();

/// Set up the process's remote cache from the manifest's `[cache.remote]` and the
/// environment. `may_save` false (untrusted events, `--no-save`) makes it read-only;
/// `disabled` (`--no-remote`) turns it off. Returns a line for the log (`None`: no
/// remote). Nothing goes over the network until the first restore.
pub fn configure(
    settings: Option<&RemoteSettings>,
    may_save: bool,
    disabled: bool,
) -> Option<String> {
    if disabled {
        return None;
    }
    let cfg = RemoteConfig::resolve(settings, may_save, &|k| std::env::var(k).ok())?;
    let desc = format!(
        "remote cache: {} ({})",
        cfg.describe(),
        if cfg.read_only {
            "read-only"
        } else {
            "read-write"
        }
    );
    match Remote::new(cfg) {
        Ok(remote) => {
            let _ = LAYER.set(Layer {
                remote: Arc::new(remote),
                off: Mutex::new(None),
                warned: Mutex::new(false),
                probed: OnceLock::new(),
                uploads: Mutex::new(Vec::new()),
            });
            Some(desc)
        }
        Err(e) => Some(format!("{desc}: not used: {e:#}")),
    }
}

impl Layer {
    /// `Err(warning)` when the remote is off; the warning is given once (later stages get
    /// an empty string).
    fn usable(&self) -> std::result::Result<(), String> {
        self.probed.get_or_init(|| {
            if let Err(e) = self.remote.probe() {
                self.switch_off(format!("{e:#}"));
            }
        });
        let off = self.off.lock().expect("remote off lock").clone();
        match off {
            None => Ok(()),
            Some(why) => {
                let mut warned = self.warned.lock().expect("remote warned lock");
                if *warned {
                    Err(String::new())
                } else {
                    *warned = true;
                    Err(format!(
                        "remote cache {} unavailable, running without it: {why}",
                        self.remote.describe()
                    ))
                }
            }
        }
    }

    fn switch_off(&self, why: String) {
        let mut off = self.off.lock().expect("remote off lock");
        if off.is_none() {
            *off = Some(self.remote.cfg.redact(&why));
        }
    }
}

fn warn(rep: &mut StageReport, w: String) {
    if w.is_empty() {
        return;
    }
    println!("    warning: {w}");
    rep.warning = Some(match rep.warning.take() {
        Some(prev) => format!("{prev}; {w}"),
        None => w,
    });
}

fn stage_mut(rep: &mut StageReport) -> &mut RemoteStage {
    rep.remote.get_or_insert_with(RemoteStage::default)
}

/// Before a local restore of `key` into `dst`: on a local miss, look the key up on the
/// remote. A hit fills the local cache (the local restore that follows then hits), or,
/// for a read-only local cache, is restored straight into `dst` and returned (the caller
/// then skips its local restore). `None`: the caller restores locally as usual. Every
/// remote problem becomes a warning in `rep` and switches the remote off for the run.
pub fn before_restore(
    cache: &Cache,
    key: &CacheKey,
    dst: &Path,
    merge: bool,
    rep: &mut StageReport,
) -> Option<Restore> {
    let layer = LAYER.get()?;
    if cache.contains(key) {
        stage_mut(rep).restore = "local-hit".into();
        return None;
    }
    if !merge && fsutil::non_empty_dir(dst) {
        return None; // the local restore keeps the tree
    }
    if let Err(w) = layer.usable() {
        stage_mut(rep).restore = "off".into();
        warn(rep, w);
        return None;
    }
    let remote = &layer.remote;
    let read_only_local = cache.is_read_only();
    // A writable cache downloads into its own `tmp/` (removed if we die); a read-only one
    // must not write under its root, so next to `dst`.
    let (into, _tmp_guard) = if read_only_local {
        let parent = dst.parent().unwrap_or(Path::new("."));
        let _ = std::fs::create_dir_all(parent);
        match tempfile::Builder::new()
            .prefix(".bllvm-remote-")
            .tempdir_in(parent)
        {
            Ok(t) => (t.path().join("entry"), Some(t)),
            Err(e) => {
                warn(
                    rep,
                    format!("remote cache: cannot create a download dir: {e}"),
                );
                return None;
            }
        }
    } else {
        (
            cache.scratch_dir(&format!("remote-{}-{}", key.stage, key.key)),
            None,
        )
    };
    match remote.get(key, &into) {
        Ok(Some(t)) => {
            let st = stage_mut(rep);
            st.restore = "hit".into();
            st.restore_bytes = t.wire_bytes;
            st.restore_secs = t.secs;
            st.restore_rate = t.data_rate();
            println!(
                "    cache {}: remote hit, {} ({} unpacked) in {:.2}s ({}/s)",
                key.stage,
                fsutil::human_bytes(t.wire_bytes),
                fsutil::human_bytes(t.data_bytes),
                t.secs,
                fsutil::human_bytes(t.data_rate() as u64)
            );
            cache.log_remote(key, "remote-hit", t.wire_bytes, t.data_bytes, t.secs);
            if !read_only_local {
                if let Err(e) = cache.import(key, &into) {
                    warn(
                        rep,
                        format!("remote cache: the download was not kept: {e:#}"),
                    );
                }
                return None;
            }
            let data = into.join("data");
            let placed = if merge {
                super::transfer::par_copy(&data, dst, true, &|_| false).map(|_| ())
            } else {
                fsutil::remove_tree(dst)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| super::transfer::move_tree(&data, dst).map_err(Into::into))
            };
            match placed {
                Ok(()) => Some(Restore::Hit {
                    files: t.files,
                    bytes: t.data_bytes,
                    secs: t.secs,
                    strategy: Strategy::Copied,
                }),
                Err(e) => {
                    if !merge {
                        let _ = fsutil::remove_tree(dst);
                    }
                    warn(
                        rep,
                        format!("remote cache: could not place the download: {e:#}"),
                    );
                    None
                }
            }
        }
        Ok(None) => {
            stage_mut(rep).restore = "miss".into();
            cache.log_remote(key, "remote-miss", 0, 0, 0.0);
            None
        }
        Err(e) => {
            stage_mut(rep).restore = "error".into();
            cache.log_remote(key, "remote-error", 0, 0, 0.0);
            layer.switch_off(format!("{e:#}"));
            // The first failure is this stage's warning; `usable` will not repeat it.
            *layer.warned.lock().expect("remote warned lock") = true;
            warn(
                rep,
                format!(
                    "remote cache {} failed, running without it: {}",
                    remote.describe(),
                    remote.cfg.redact(&format!("{e:#}"))
                ),
            );
            None
        }
    }
}

/// After a local save of `key`: when the save published a new local entry and the remote
/// may be written, upload it on a background thread (under a shared lease on the local
/// entry, so no job moves it out meanwhile). [`finish`] collects the outcome.
pub fn after_save(cache: &Cache, key: &CacheKey, rep: &mut StageReport) {
    let Some(layer) = LAYER.get() else { return };
    if layer.remote.is_read_only() || cache.is_read_only() {
        if matches!(rep.save, Some(Save::Saved { .. })) {
            stage_mut(rep).upload = "read-only".into();
        }
        return;
    }
    // Only a new local entry is uploaded: an unchanged one was restored from the local
    // cache (uploaded when it was saved, or fetched from the remote), so a run of local
    // hits makes no request at all.
    if !matches!(rep.save, Some(Save::Saved { .. })) {
        return;
    }
    if rep.remote.as_ref().is_some_and(|r| r.restore == "hit") {
        return; // it came from the remote
    }
    if layer.off.lock().expect("remote off lock").is_some() {
        return;
    }
    let (cache, k, remote) = (cache.clone(), key.clone(), Arc::clone(&layer.remote));
    let handle = std::thread::spawn(move || -> Result<Put> {
        let Some(_lease) = cache.share_entry(&k)? else {
            bail!("the local entry is held by another job; not uploaded");
        };
        let r = remote.put(&k, &cache.entry_dir(&k));
        match &r {
            Ok(Put::Stored(t)) => {
                cache.log_remote(&k, "uploaded", t.wire_bytes, t.data_bytes, t.secs)
            }
            Ok(_) => cache.log_remote(&k, "upload-exists", 0, 0, 0.0),
            Err(_) => cache.log_remote(&k, "upload-error", 0, 0, 0.0),
        }
        r
    });
    stage_mut(rep).upload = "pending".into();
    layer
        .uploads
        .lock()
        .expect("uploads lock")
        .push((key.clone(), handle));
}

/// Wait for every background upload and record each outcome in the stage report of its
/// key (among `chain` and every repo's `cache` stages). Call once, before the summary is
/// written.
pub fn finish(reports: &mut [&mut StageReport]) {
    let Some(layer) = LAYER.get() else { return };
    let uploads: Vec<Upload> = std::mem::take(&mut *layer.uploads.lock().expect("uploads lock"));
    if uploads.is_empty() {
        return;
    }
    println!("remote cache: waiting for {} upload(s)", uploads.len());
    let (mut n, mut bytes, mut secs) = (0u64, 0u64, 0f64);
    for (key, h) in uploads {
        let r = h
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the upload thread panicked")));
        let rep = reports
            .iter_mut()
            .find(|r| r.key == key.key && r.stage == key.stage.as_str());
        let mut w = None;
        let (word, t) = match r {
            Ok(Put::Stored(t)) => {
                n += 1;
                bytes += t.wire_bytes;
                secs += t.secs;
                ("uploaded", Some(t))
            }
            Ok(Put::Exists) => ("exists", None),
            Ok(Put::ReadOnly) => ("read-only", None),
            Err(e) => {
                let msg = layer.remote.cfg.redact(&format!("{e:#}"));
                layer.switch_off(msg.clone());
                w = Some(format!(
                    "remote cache upload failed (the build result stands): {msg}"
                ));
                ("error", None)
            }
        };
        if let Some(rep) = rep {
            let st = stage_mut(rep);
            st.upload = word.into();
            if let Some(t) = t {
                st.upload_bytes = t.wire_bytes;
                st.upload_secs = t.secs;
                st.upload_rate = t.data_rate();
            }
            if let Some(w) = w {
                warn(rep, w);
            }
        } else if let Some(w) = w {
            println!("warning: {w}");
        }
    }
    if n > 0 {
        println!(
            "remote cache: uploaded {n} entries, {} in {secs:.2}s",
            fsutil::human_bytes(bytes)
        );
    }
}

/// The remote part of a stage in the text summary: ` (remote hit)`, ` (remote miss)`,
/// ` (remote error)`, plus `, uploaded` when an upload went through; empty otherwise.
pub fn summary_word(r: Option<&RemoteStage>) -> String {
    let Some(r) = r else { return String::new() };
    let mut s = match r.restore.as_str() {
        "hit" | "miss" | "error" | "off" => format!(" (remote {})", r.restore),
        _ => String::new(),
    };
    if r.upload == "uploaded" {
        s += ", uploaded";
    }
    s
}

/// The remote lines of `cache stats`: remote hits, misses and errors (local hits are
/// counted by the local report; a remote hit is also restored locally afterwards),
/// uploads, and transfer rates (bytes over the wire per second).
pub fn render_stats(events: &[super::stats::Event]) -> String {
    let count = |o: &str| events.iter().filter(|e| e.outcome == o).count();
    let sum = |o: &str| -> (u64, u64, f64) {
        events
            .iter()
            .filter(|e| e.outcome == o)
            .fold((0, 0, 0.0), |(b, r, s), e| {
                (b + e.bytes, r + e.raw_bytes, s + e.secs)
            })
    };
    let (hits, misses, errors) = (
        count("remote-hit"),
        count("remote-miss"),
        count("remote-error"),
    );
    let (ups, exists, up_err) = (
        count("uploaded"),
        count("upload-exists"),
        count("upload-error"),
    );
    if hits + misses + errors + ups + exists + up_err == 0 {
        return String::new();
    }
    let local_hits = events.iter().filter(|e| e.outcome == "hit").count();
    let rate = |(b, _, s): (u64, u64, f64)| {
        if s > 0.0 {
            format!("{}/s", fsutil::human_bytes((b as f64 / s) as u64))
        } else {
            "-".into()
        }
    };
    let (down, up) = (sum("remote-hit"), sum("uploaded"));
    let mut s = String::from("\nremote cache:\n");
    s += &format!(
        "  restores: {local_hits} local hits; remote: {hits} hits, {misses} misses, {errors} errors\n"
    );
    s += &format!(
        "  downloads: {} over the wire ({} unpacked), {}\n",
        fsutil::human_bytes(down.0),
        fsutil::human_bytes(down.1),
        rate(down)
    );
    s += &format!(
        "  uploads: {ups} stored, {exists} already there, {up_err} failed; {} over the wire, {}\n",
        fsutil::human_bytes(up.0),
        rate(up)
    );
    s
}

/// `cargo xtask bench remote`: save and restore of one generated target dir (`files`
/// files, `mib` MiB, a real target's shape) through the local engine (copy strategy: save
/// into a fresh root, restore through a read-only view) and through the remote (upload of
/// that entry, download into an entry dir with every check), `reps` times each with
/// fresh keys; prints medians and rates, and with `record` rewrites the
/// `<!-- bench:remote -->` section of that Markdown file. The remote comes from
/// `ci/chain.toml`'s `[cache.remote]` and the environment, as in `ci`.
///
/// Errors: no remote is configured (with what to set), the remote is unusable, or a
/// measured transfer fails.
// Part of `cargo xtask bench`, a development command: compiled with the `dev` feature.
#[cfg(feature = "dev")]
pub fn bench(
    dir: &Path,
    files: usize,
    mib: u64,
    reps: usize,
    record: Option<&Path>,
) -> Result<std::process::ExitCode> {
    let chain = Path::new("ci/chain.toml");
    let settings = if chain.exists() {
        crate::engine::manifest::Manifest::load(chain)?.cache.remote
    } else {
        None
    };
    let cfg = RemoteConfig::resolve(settings.as_ref(), true, &|k| std::env::var(k).ok())
        .with_context(|| {
            format!(
                "no remote cache configured: set {BUCKET_ENV} (and {ENDPOINT_ENV}, \
                 {ACCESS_KEY_ENV}, {SECRET_KEY_ENV}) or [cache.remote] in ci/chain.toml"
            )
        })?;
    let remote = Remote::new(cfg)?;
    remote.probe()?;
    // Shared CI machines are rarely idle: record how busy this one was.
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let _ = fsutil::remove_tree(dir);
    let tree = dir.join("tree");
    crate::dev::bench::generate(&tree, files, mib << 20)?;
    let reps = reps.max(1);
    let (mut ls, mut lr, mut rs, mut rr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut data_bytes, mut wire_bytes, mut nfiles) = (0u64, 0u64, 0u64);
    let run = writer_id();
    for i in 0..reps {
        let key = CacheKey {
            stage: super::Stage::Target,
            key: format!("bench-{run}-{i}"),
            inputs: vec![("bench".into(), run.clone())],
        };
        // The disk guard is off: this measures transfers, not eviction.
        let local =
            Cache::open(&dir.join(format!("local-{i}")))?.with_policy(super::retention::Policy {
                disk_max_used_percent: 100,
                disk_min_free_bytes: 0,
                ..super::retention::Policy::default()
            });
        let t = Instant::now();
        let saved = local.save(&key, &tree, &|_| false)?;
        ls.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(matches!(saved, Save::Saved { .. }), "local save: {saved:?}");
        let t = Instant::now();
        let ro = Cache::open_read_only(local.root());
        let restored = ro.restore(&key, &dir.join(format!("out-{i}")), false)?;
        lr.push(t.elapsed().as_secs_f64());
        anyhow::ensure!(
            matches!(restored, Restore::Hit { .. }),
            "local restore: {restored:?}"
        );
        match remote.put(&key, &local.entry_dir(&key))? {
            Put::Stored(t) => {
                rs.push(t.secs);
                wire_bytes = t.wire_bytes;
                data_bytes = t.data_bytes;
                nfiles = t.files;
            }
            other => bail!("remote save: {other:?}"),
        }
        let got = remote
            .get(&key, &dir.join(format!("got-{i}")))?
            .context("remote restore missed the entry just saved")?;
        rr.push(got.secs);
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ls, lr, rs, rr) = (med(&mut ls), med(&mut lr), med(&mut rs), med(&mut rr));
    let rate = |s: f64| {
        format!(
            "{}/s",
            fsutil::human_bytes((data_bytes as f64 / s.max(1e-9)) as u64)
        )
    };
    let mut body = format!(
        "`cargo xtask bench remote --files {files} --mib {mib} --reps {reps}` against {}: a generated \
         target dir of {nfiles} files, {} ({} as tar + zstd level {ZSTD_LEVEL} on the wire). \
         Medians of {reps}; rates are entry bytes per second. Remote save = tar + zstd + \
         multipart upload + commit; remote restore = ranged download + unpack + mtimes + \
         full sha256 check of every file. Load average at the start: {load} on {cpus} \
         CPUs.\n\n",
        remote.describe(),
        fsutil::human_bytes(data_bytes),
        fsutil::human_bytes(wire_bytes),
    );
    body += "| path | save | save rate | restore | restore rate |\n|---|---|---|---|---|\n";
    body += &format!(
        "| local engine (copy) | {ls:.2} s | {} | {lr:.2} s | {} |\n",
        rate(ls),
        rate(lr)
    );
    body += &format!(
        "| remote (S3 API) | {rs:.2} s | {} | {rr:.2} s | {} |\n",
        rate(rs),
        rate(rr)
    );
    body += &format!(
        "\nLocal save = parallel copy + sha256 of every file (the manifest); the remote save \
         uploads that entry and reuses its manifest. With the server on the same machine \
         (loopback) this measures the pipeline (tar, zstd, sha256, HTTP), not a network: on \
         a runner the remote side is bounded by bandwidth, {} on the wire per {} of entry \
         (e.g. at 100 MiB/s, {:.1} s each way for this tree).\n",
        fsutil::human_bytes(wire_bytes),
        fsutil::human_bytes(data_bytes),
        wire_bytes as f64 / (100.0 * 1024.0 * 1024.0)
    );
    println!("{body}");
    if let Some(path) = record {
        crate::dev::bench::record_section(path, "remote", &body)?;
        println!("recorded in {}", path.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
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

    #[test]
    fn config_comes_from_manifest_and_env_and_untrusted_runs_are_read_only() {
        let s = RemoteSettings {
            bucket: Some("b".into()),
            prefix: Some("/chain/".into()),
            ..RemoteSettings::default()
        };
        let env = |k: &str| match k {
            ENDPOINT_ENV => Some("http://127.0.0.1:9".to_owned()),
            SECRET_KEY_ENV => Some("very-secret-value".to_owned()),
            ACCESS_KEY_ENV => Some("AKID".to_owned()),
            _ => None,
        };
        let c = RemoteConfig::resolve(Some(&s), true, &env).unwrap();
        assert_eq!(c.prefix, "chain/");
        assert!(!c.read_only);
        assert_eq!(c.describe(), "s3://b/chain/ at http://127.0.0.1:9");
        assert!(!format!("{c:?}").contains("very-secret-value"));
        assert_eq!(c.redact("x very-secret-value y"), "x *** y");
        assert!(
            RemoteConfig::resolve(Some(&s), false, &env)
                .unwrap()
                .read_only
        );
        assert!(RemoteConfig::resolve(None, true, &env).is_none());
    }
}
