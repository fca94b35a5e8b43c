//! The cache's own settings: the manifest's `[cache]` table ([`CacheSettings`], with the
//! remote's `[cache.remote]`, [`RemoteSettings`]), and the remote's configuration after
//! the environment and the event were applied ([`RemoteConfig`]).
//!
//! The manifest (`engine/manifest.rs`) embeds these types; the cache layer never reads the
//! manifest. Owns the TOML shape, the environment overrides and credential redaction;
//! knows nothing of the backends that use them.

use std::path::PathBuf;

use serde::Deserialize;

/// Local cache settings (`[cache]`). Retention is by last use (restore or save), not by
/// file mtime; see `cache/retention.rs`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct CacheSettings {
    /// Cache root; `--cache-dir` and `BLLVM_CI_CACHE_DIR` take precedence, and the default
    /// is the per-user cache dir (`$XDG_CACHE_HOME/bllvm-ci`, `~/.cache/bllvm-ci`).
    pub dir: Option<PathBuf>,
    /// Keep at most this many entries per stage (registry, git, target), the most
    /// recently used. Default 32: a few generations of each repo's target entry.
    pub max_entries_per_stage: usize,
    /// Evict entries unused for this many days; 0 = never. Default 7, as actions/cache.
    pub max_age_days: u64,
    /// Byte budget of the whole cache root, least recently used evicted first; 0 = none.
    /// Default 10 GiB, GitHub's per-repository cache limit.
    pub max_bytes: u64,
    /// Disk guard: evict (and, if that is not enough, skip saving) while the cache's
    /// filesystem is used above this percentage. Default 80, as the seeds' cleanup job.
    pub disk_max_used_percent: u8,
    /// Disk guard: also evict while fewer than this many bytes are free. Default 2 GiB.
    pub disk_min_free_bytes: u64,
    /// A remote cache shared by a fleet of runners, behind the local one (see
    /// [`RemoteSettings`] and `cache/storage/tiered.rs`); none by default.
    pub remote: Option<RemoteSettings>,
    /// The compiler cache shared by every repo of the chain (sccache as `RUSTC_WRAPPER`,
    /// `engine/compiler_cache.rs`): `auto` (default: on when sccache is on PATH, else off
    /// with a note), `sccache` (required: a run without it cannot start) or `none`.
    pub compiler_cache: CompilerCacheMode,
    /// Byte budget of the local compiler cache (`<cache root>/sccache`, sccache's
    /// `SCCACHE_CACHE_SIZE`; sccache evicts least recently used). Default 2 GiB: the
    /// third-party crates of a chain like bllvm's a few times over.
    pub compiler_cache_max_bytes: u64,
}

/// `[cache] compiler-cache`: whether the run uses the shared compiler cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CompilerCacheMode {
    /// On when sccache is installed; off with a note when it is not.
    #[default]
    Auto,
    /// Required: a run without sccache fails to start with the install command.
    Sccache,
    /// Off.
    None,
}

/// The remote cache (`[cache.remote]`), in sccache's terms. Environment variables
/// override each field (`BLLVM_CI_CACHE_BUCKET`, `..._ENDPOINT`, `..._REGION`,
/// `..._KEY_PREFIX`, `..._READ_ONLY`, `..._REMOTE_TIMEOUT`); credentials come only from
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` and are never printed.
///
/// ```toml
/// [cache.remote]
/// bucket = "bllvm-ci-cache"
/// endpoint = "https://s3.example.com"   # omit for AWS
/// region = "us-east-1"
/// prefix = "chain/"                      # key prefix inside the bucket
/// read-only = false                      # pull_request runs are read-only regardless
/// ```
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case", default)]
pub struct RemoteSettings {
    /// OpenDAL service: `s3` (built in); `gcs`, `azblob`, `ghac` need the matching
    /// `remote-*` cargo feature of xtask. Default `s3`.
    pub service: Option<String>,
    /// Bucket name (required to enable the remote).
    pub bucket: Option<String>,
    /// Endpoint URL (S3-compatible servers: MinIO, SeaweedFS, R2); default AWS.
    pub endpoint: Option<String>,
    /// Region; default `us-east-1`.
    pub region: Option<String>,
    /// Key prefix inside the bucket, e.g. `bllvm/`; default none.
    pub prefix: Option<String>,
    /// Never upload (restore only). Untrusted events are read-only whatever this says.
    pub read_only: bool,
    /// Seconds any single remote request may take before the remote is given up for the
    /// run (a stalled transfer counts per chunk); default 60.
    pub timeout_secs: Option<u64>,
}

impl Default for CacheSettings {
    fn default() -> CacheSettings {
        CacheSettings {
            dir: None,
            max_entries_per_stage: 32,
            max_age_days: 7,
            max_bytes: 10 << 30,
            disk_max_used_percent: 80,
            disk_min_free_bytes: 2 << 30,
            remote: None,
            compiler_cache: CompilerCacheMode::Auto,
            compiler_cache_max_bytes: 2 << 30,
        }
    }
}

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

/// A secret that never shows in `Debug` output.
#[derive(Clone)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))] // read by the S3 backend only
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The remote's settings after the manifest, the environment and the event were applied.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "remote"), allow(dead_code))] // read by the S3 backend only
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

#[cfg_attr(not(feature = "remote"), allow(dead_code))] // the S3 backend signs and redacts
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

    /// The access key id and the secret key, when both are set (`None`: unsigned
    /// requests). For the backend that signs requests only: never print them.
    pub fn credentials(&self) -> Option<(&str, &str)> {
        match (&self.access_key, &self.secret_key) {
            (Some(k), Some(Secret(s))) => Some((k, s)),
            _ => None,
        }
    }

    /// Remove every credential from `text` (messages from the HTTP stack may echo
    /// request details).
    pub fn redact(&self, text: &str) -> String {
        let mut t = text.to_owned();
        if let Some(Secret(s)) = &self.secret_key {
            if s.len() >= 4 {
                t = t.replace(s.as_str(), "***");
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
