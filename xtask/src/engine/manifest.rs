//! The chain manifest (`ci/chain.toml`): what repositories make up the chain, where their
//! checkouts live, and how each one is built.
//!
//! This module owns the file format and its validation, nothing else: it never runs a
//! process or touches a checkout. Every field is documented in `ci/chain.toml` itself and
//! in README.md ("The chain manifest"); keep the three in step.
//!
//! Errors carry the line and column of the offending value: syntax errors and unknown
//! fields come from the `toml` crate's spans (`deny_unknown_fields`), semantic errors
//! (duplicate names, paths that leave the root, unknown `after` targets) from the
//! `toml::Spanned` values kept for exactly that purpose.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::cache::settings::CacheSettings;

/// Default manifest location, relative to the orchestrator checkout.
pub const DEFAULT_MANIFEST: &str = "ci/chain.toml";

/// The whole manifest, as read from disk and validated.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file the manifest was read from (used to resolve `root`).
    pub path: PathBuf,
    /// Directory holding the checkouts, resolved against the manifest's own directory;
    /// `../..` by default, which for `ci/chain.toml` is the directory holding the
    /// orchestrator checkout: the side-by-side layout the bllvm repos use
    /// (`../blvm-consensus`, `../blvm-protocol`, ... seen from this checkout).
    pub root: PathBuf,
    /// Settings that apply to every repo unless it overrides them.
    pub defaults: Defaults,
    /// Local cache settings.
    pub cache: CacheSettings,
    /// Checks run before a run starts (`[preflight]`).
    pub preflight: PreflightSettings,
    /// Failure and recovery notifications (`[notify]`).
    pub notify: NotifySettings,
    /// Chain propagation settings (`[chain]`): event types, token variable, hop limit.
    pub chain: ChainSettings,
    /// Where and how the generated GitHub Actions workflows run (`[workflows]`).
    pub workflows: WorkflowSettings,
    /// Repositories in manifest order (run order comes from the graph, not from here).
    pub repos: Vec<Repo>,
}

/// Chain-wide defaults (`[defaults]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Defaults {
    /// Toolchain name passed as `RUSTUP_TOOLCHAIN` to every step (e.g. `"stable"`,
    /// `"1.88.0"`); `None` lets each repo's `rust-toolchain.toml` decide.
    #[serde(default)]
    pub toolchain: Option<String>,
    /// How sibling `[patch.crates-io]` entries are treated; see [`DepsMode`].
    #[serde(default)]
    pub deps: DepsMode,
    /// Variant used when `--variant` is not given.
    #[serde(default = "default_variant")]
    pub variant: String,
    /// Cargo profile the build, test and doc steps use (`dev` or `release`, or any profile
    /// the repos define); part of the target cache key.
    #[serde(default = "default_profile")]
    pub profile: String,
    /// Keep `CARGO_INCREMENTAL` as cargo's default. CI runs set `CARGO_INCREMENTAL=0`
    /// unless this is true, as rust-cache does: incremental data is large, rarely reused
    /// across commits, and makes cache entries churn.
    #[serde(default)]
    pub incremental: bool,
    /// Environment for every step of every repo (a repo's `env` wins).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret variables of our own environment passed on to every step of every repo
    /// (see [`Repo::pass_env`]); empty by default: steps see no secret.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// More variable-name prefixes whose variables are build inputs (fingerprint and
    /// target key), beyond the built-in rule of `engine::fingerprint::build_env`: what the
    /// repos' build scripts read outside `CARGO*`/`RUST*`/`CC*`/…, e.g. `PROTOC`,
    /// `OPENSSL_`, `LIBCLANG_PATH` (rust-cache's `env-vars` input, for the same reason).
    #[serde(default)]
    pub build_env: Vec<String>,
    /// Default step timeout in seconds, for steps that set none.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            toolchain: None,
            deps: DepsMode::default(),
            variant: default_variant(),
            profile: default_profile(),
            incremental: false,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
            build_env: Vec::new(),
            timeout: default_timeout(),
        }
    }
}

fn default_variant() -> String {
    "base".to_owned()
}
fn default_profile() -> String {
    "dev".to_owned()
}
fn default_timeout() -> u64 {
    3600
}

/// Chain propagation settings (`[chain]`), read by `cargo xtask chain` and
/// `cargo xtask workflows`. Every field is optional.
///
/// ```toml
/// [chain]
/// token-env = "BLLVM_CHAIN_TOKEN"   # a PAT with contents: write on every chain repo
/// app-id-env = "BLLVM_APP_ID"       # or a GitHub App: its id ...
/// private-key-env = "BLLVM_APP_KEY" # ... and its PEM private key
/// max-hops = 8
/// orchestrator = "BTCDecoded/bllvm-ci"
/// index-url = "https://index.crates.io/"
/// [chain.event-types]
/// push = "bllvm-upstream-push"
/// release = "bllvm-upstream-release"
/// ```
///
/// Values are checked when the manifest is read, because they also go into the generated
/// workflows: event types are 1-100 characters (GitHub's limit) of letters, digits and
/// `-_.:/`; `token-env`, `app-id-env` and `private-key-env` are environment variable
/// names (`[A-Za-z_][A-Za-z0-9_]*`), the last two set together; `max-hops` is at least 1;
/// `orchestrator` is `owner/name`; `index-url` is an `http(s)` URL (cargo's `sparse+`
/// prefix allowed).
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawChainSettings")]
pub struct ChainSettings {
    /// `repository_dispatch` event type sent per trigger (`push`, `release`, `develop`,
    /// ...: the name of what happened upstream); a trigger not listed sends
    /// `bllvm-upstream-<trigger>`.
    pub event_types: BTreeMap<String, String>,
    /// Environment variable holding the token used for dispatches, e.g. a PAT with
    /// `contents: write` on the downstream repos (the workflow `GITHUB_TOKEN` only reaches
    /// its own repo). When unset or empty at run time, `GITHUB_TOKEN` is used.
    pub token_env: Option<String>,
    /// GitHub App authentication instead of a token: the variables holding the app's id
    /// and its private key (PEM). When both are set at run time the app is used (an
    /// installation token per repo owner); else the token. Never printed.
    pub app: Option<AppEnv>,
    /// A dispatch never goes past this many hops from the repo that started the chain
    /// (the loop guard's second half; the first is never dispatching to a repo already
    /// on the chain's path). Default 8.
    pub max_hops: u32,
    /// GitHub `owner/name` of this orchestrator repository, which the generated workflow
    /// template of the chain repos checks out (`cargo xtask workflows`). Default
    /// `BTCDecoded/bllvm-ci`.
    pub orchestrator: String,
    /// The sparse index a release walk waits on for each published crate version
    /// (`chain --release --execute`); `--index-url` overrides it. Default crates.io's,
    /// `https://index.crates.io/`.
    pub index_url: Option<String>,
}

/// The two variables of `[chain]`'s GitHub App authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEnv {
    /// Variable holding the app's id (or client id): `app-id-env`.
    pub id_env: String,
    /// Variable holding the app's private key, PEM: `private-key-env`.
    pub private_key_env: String,
}

/// `[chain]` as written, before [`ChainSettings`]'s checks.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawChainSettings {
    #[serde(default)]
    event_types: BTreeMap<String, String>,
    #[serde(default)]
    token_env: Option<String>,
    #[serde(default)]
    app_id_env: Option<String>,
    #[serde(default)]
    private_key_env: Option<String>,
    #[serde(default = "default_max_hops")]
    max_hops: u32,
    #[serde(default = "default_orchestrator")]
    orchestrator: String,
    #[serde(default)]
    index_url: Option<String>,
}

impl TryFrom<RawChainSettings> for ChainSettings {
    type Error = String;

    fn try_from(r: RawChainSettings) -> std::result::Result<Self, String> {
        check_event_types(&r.event_types)?;
        for (field, v) in [
            ("token-env", &r.token_env),
            ("app-id-env", &r.app_id_env),
            ("private-key-env", &r.private_key_env),
        ] {
            if let Some(v) = v {
                check_env_name(field, v)?;
            }
        }
        let app = match (r.app_id_env, r.private_key_env) {
            (Some(id_env), Some(private_key_env)) => Some(AppEnv {
                id_env,
                private_key_env,
            }),
            (None, None) => None,
            _ => return Err("[chain] app-id-env and private-key-env go together: set both (a GitHub App) or neither (a token)".into()),
        };
        if r.max_hops == 0 {
            return Err("[chain] max-hops must be at least 1".into());
        }
        let parts: Vec<&str> = r.orchestrator.split('/').collect();
        if parts.len() != 2
            || parts
                .iter()
                .any(|p| p.is_empty() || !p.chars().all(is_gh_char))
        {
            return Err(format!(
                "[chain] orchestrator = \"{}\" is not of the form \"owner/name\"",
                r.orchestrator
            ));
        }
        if let Some(u) = &r.index_url {
            let bare = u.strip_prefix("sparse+").unwrap_or(u);
            let host = bare
                .strip_prefix("https://")
                .or_else(|| bare.strip_prefix("http://"));
            if host.is_none_or(|h| h.is_empty() || h.starts_with('/')) {
                return Err(format!(
                    "[chain] index-url = \"{u}\" is not a sparse index URL: use https://HOST/PATH/ (crates.io: https://index.crates.io/)"
                ));
            }
        }
        Ok(ChainSettings {
            event_types: r.event_types,
            token_env: r.token_env,
            app,
            max_hops: r.max_hops,
            orchestrator: r.orchestrator,
            index_url: r.index_url,
        })
    }
}

/// `[chain.event-types]`: 1-100 characters (GitHub's limit) of letters, digits, `-_.:/`.
fn check_event_types(types: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    for (trigger, t) in types {
        let n = t.chars().count();
        if n == 0 || n > 100 {
            return Err(format!(
                "[chain.event-types] {trigger} = \"{t}\": an event type must be 1 to 100 characters (GitHub's limit)"
            ));
        }
        if !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c))
        {
            return Err(format!(
                "[chain.event-types] {trigger} = \"{t}\": use only letters, digits and `-_.:/`"
            ));
        }
    }
    Ok(())
}

/// `[chain] field = "v"` must name an environment variable.
fn check_env_name(field: &str, v: &str) -> std::result::Result<(), String> {
    let mut cs = v.chars();
    let ok = cs
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "[chain] {field} = \"{v}\" is not an environment variable name (letters, digits, `_`; not starting with a digit)"
        ))
    }
}

impl Default for ChainSettings {
    fn default() -> Self {
        ChainSettings {
            event_types: BTreeMap::new(),
            token_env: None,
            app: None,
            max_hops: default_max_hops(),
            orchestrator: default_orchestrator(),
            index_url: None,
        }
    }
}

impl ChainSettings {
    /// The event type dispatched for `trigger`: the manifest's entry, else
    /// `bllvm-upstream-<trigger>` (`push` → `bllvm-upstream-push`).
    pub fn event_type(&self, trigger: &str) -> String {
        if let Some(t) = self.event_types.get(trigger) {
            return t.clone();
        }
        format!("bllvm-upstream-{trigger}")
    }
}

fn default_max_hops() -> u32 {
    8
}

fn default_orchestrator() -> String {
    "BTCDecoded/bllvm-ci".to_owned()
}

/// The kind of GitHub Actions runner the generated workflows run on (`[workflows] runner`),
/// which decides where the cache root lives between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerKind {
    /// GitHub-hosted runners: a fresh VM per job. The cache root is restored and saved
    /// around the run with `actions/cache` (GitHub's cache service), keyed by
    /// `cargo xtask cache actions-key`.
    #[default]
    Hosted,
    /// Self-hosted runners with a persistent disk: the cache root is a directory on it
    /// (`cache-dir`), kept from run to run, where entries move by rename.
    SelfHosted,
    /// A fleet sharing an S3-compatible bucket (`[cache.remote]`, or the repository
    /// variables `BLLVM_CI_CACHE_*` and secrets `AWS_*`), behind each runner's local cache.
    Remote,
}

impl RunnerKind {
    /// The manifest spelling: `hosted`, `self-hosted`, `remote`.
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerKind::Hosted => "hosted",
            RunnerKind::SelfHosted => "self-hosted",
            RunnerKind::Remote => "remote",
        }
    }
}

/// Where and how the workflows `cargo xtask workflows` generates run (`[workflows]`).
/// Every field is optional.
///
/// ```toml
/// [workflows]
/// runner = "self-hosted"                       # hosted (default) | self-hosted | remote
/// labels = ["self-hosted", "linux", "x64"]     # runs-on
/// cache-dir = "/tmp/runner-cache"              # self-hosted: the persistent cache root
/// fan-out = true                               # one job per repo, `needs:` from the graph
/// environment = "bllvm-chain"                  # holds the dispatch token secret
/// ```
///
/// Values are checked when the manifest is read because they are written into YAML and
/// shell lines: labels are 1-100 characters of letters, digits and `-_.`; `cache-dir` is
/// an absolute path of letters, digits and `-_./`, set only for `self-hosted` (the other
/// kinds persist the cache root elsewhere); `environment` is 1-100 characters of letters,
/// digits and `-_.`.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawWorkflowSettings")]
pub struct WorkflowSettings {
    /// Runner kind; default `hosted`.
    pub runner: RunnerKind,
    /// `runs-on` labels of every job; default `["ubuntu-latest"]`, and
    /// `["self-hosted", "linux", "x64"]` for `self-hosted`.
    pub labels: Vec<String>,
    /// The self-hosted runners' persistent cache root (`BLLVM_CI_CACHE_DIR` of every
    /// job); `None` for the other kinds. Default `/tmp/runner-cache`, the seeds' path.
    pub cache_dir: Option<String>,
    /// One job per repo with `needs:` from the graph and a final summary job, instead of
    /// one job running the chain repo after repo. The graph is read from the checkouts
    /// when the workflows are generated; every repo job checks that it still holds.
    pub fan_out: bool,
    /// GitHub environment of the jobs that dispatch (`propagate`): the dispatch token is
    /// an environment secret, so only those jobs (and the environment's protection
    /// rules) can reach it. Default `bllvm-chain`.
    pub environment: String,
}

/// `[workflows]` as written, before [`WorkflowSettings`]'s checks.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawWorkflowSettings {
    #[serde(default)]
    runner: RunnerKind,
    #[serde(default)]
    labels: Option<Vec<String>>,
    #[serde(default)]
    cache_dir: Option<String>,
    #[serde(default)]
    fan_out: bool,
    #[serde(default)]
    environment: Option<String>,
}

/// The self-hosted cache root when the manifest names none: the seeds' runners' path.
pub const DEFAULT_RUNNER_CACHE_DIR: &str = "/tmp/runner-cache";

/// The environment holding the dispatch token when the manifest names none.
pub const DEFAULT_DISPATCH_ENVIRONMENT: &str = "bllvm-chain";

/// Whether `s` is 1-100 characters of letters, digits and `-_.` (a runner label or an
/// environment name as the generated YAML may hold it unquoted).
fn is_plain_word(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
}

impl TryFrom<RawWorkflowSettings> for WorkflowSettings {
    type Error = String;

    fn try_from(r: RawWorkflowSettings) -> std::result::Result<Self, String> {
        let labels = r.labels.unwrap_or_else(|| match r.runner {
            RunnerKind::SelfHosted => vec!["self-hosted".into(), "linux".into(), "x64".into()],
            _ => vec!["ubuntu-latest".into()],
        });
        if labels.is_empty() {
            return Err("[workflows] labels must name at least one runner label".into());
        }
        if let Some(bad) = labels.iter().find(|l| !is_plain_word(l)) {
            return Err(format!(
                "[workflows] labels: `{bad}` is not a runner label (1 to 100 letters, digits, `-`, `_`, `.`)"
            ));
        }
        let cache_dir = match (r.runner, r.cache_dir) {
            (RunnerKind::SelfHosted, dir) => {
                let dir = dir.unwrap_or_else(|| DEFAULT_RUNNER_CACHE_DIR.to_owned());
                check_runner_cache_dir(&dir)?;
                Some(dir)
            }
            (kind, Some(_)) => {
                return Err(format!(
                    "[workflows] cache-dir is the persistent cache root of self-hosted runners; runner = \"{}\" keeps it elsewhere (hosted: actions/cache, remote: the bucket): remove it or set runner = \"self-hosted\"",
                    kind.as_str()
                ))
            }
            (_, None) => None,
        };
        let environment = r
            .environment
            .unwrap_or_else(|| DEFAULT_DISPATCH_ENVIRONMENT.to_owned());
        if !is_plain_word(&environment) {
            return Err(format!(
                "[workflows] environment = \"{environment}\": use 1 to 100 letters, digits, `-`, `_`, `.`"
            ));
        }
        Ok(WorkflowSettings {
            runner: r.runner,
            labels,
            cache_dir,
            fan_out: r.fan_out,
            environment,
        })
    }
}

/// A self-hosted cache root must be absolute and plain (it is written into YAML and
/// quoted shell words) and never `/` itself.
fn check_runner_cache_dir(dir: &str) -> std::result::Result<(), String> {
    let plain = dir
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    let parts_ok = dir.split('/').all(|p| p != "..");
    if !dir.starts_with('/') || dir.trim_end_matches('/').is_empty() || !plain || !parts_ok {
        return Err(format!(
            "[workflows] cache-dir = \"{dir}\": use an absolute path other than `/`, of letters, digits and `-_./`, without `..` (e.g. \"{DEFAULT_RUNNER_CACHE_DIR}\")"
        ));
    }
    Ok(())
}

impl Default for WorkflowSettings {
    fn default() -> Self {
        WorkflowSettings {
            runner: RunnerKind::Hosted,
            labels: vec!["ubuntu-latest".to_owned()],
            cache_dir: None,
            fan_out: false,
            environment: DEFAULT_DISPATCH_ENVIRONMENT.to_owned(),
        }
    }
}

/// Checks `cargo xtask preflight` (and `ci`, before it resolves anything) makes
/// (`[preflight]`). Every field is optional.
///
/// ```toml
/// [preflight]
/// min-free-gb = 20
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PreflightSettings {
    /// Least free disk space, in GiB (2^30 bytes), on the filesystems of the checkout root
    /// and of the cache root; below it the run does not start. `0` turns the check off.
    /// Default 1, enough for a small chain such as the sample; the real chain's manifest
    /// sets 5, as a cold debug build of it with its restored caches needs a few GiB (the
    /// GitHub runners the seeds describe use a floor of 20).
    #[serde(default = "default_min_free_gb")]
    pub min_free_gb: f64,
}

impl Default for PreflightSettings {
    fn default() -> Self {
        PreflightSettings {
            min_free_gb: default_min_free_gb(),
        }
    }
}

fn default_min_free_gb() -> f64 {
    1.0
}

/// Notifications sent after `ci` when a run fails, and when a run succeeds after a failed
/// one (`[notify]`). The webhook URLs are secrets: the manifest names the environment
/// variables that hold them, never the URLs. With neither variable named, nothing is sent.
///
/// ```toml
/// [notify]
/// slack-webhook-env = "SLACK_WEBHOOK_URL"
/// discord-webhook-env = "DISCORD_WEBHOOK_URL"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct NotifySettings {
    /// Environment variable holding a Slack incoming-webhook URL.
    #[serde(default)]
    pub slack_webhook_env: Option<String>,
    /// Environment variable holding a Discord webhook URL.
    #[serde(default)]
    pub discord_webhook_env: Option<String>,
    /// Seconds one webhook call may take in all (connect, send, answer) before it is given
    /// up with a warning; default 10. A notification never fails a build.
    #[serde(default = "default_notify_timeout")]
    pub timeout: u64,
    /// Also notify when a run succeeds after a failed one (default true).
    #[serde(default = "default_true")]
    pub recovery: bool,
}

impl Default for NotifySettings {
    fn default() -> Self {
        NotifySettings {
            slack_webhook_env: None,
            discord_webhook_env: None,
            timeout: default_notify_timeout(),
            recovery: true,
        }
    }
}

fn default_notify_timeout() -> u64 {
    10
}

fn default_true() -> bool {
    true
}

/// How a repo's `[patch.crates-io]` entries that point at sibling checkouts are treated.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DepsMode {
    /// Keep the patches: siblings are built from their checkouts (local development).
    #[default]
    Patched,
    /// Remove the `[patch.crates-io]` entries whose `path` points into another repo of the
    /// chain for the duration of the run, and build against crates.io, as the real repos'
    /// CI does. The original `Cargo.toml` is restored afterwards.
    Registry,
}

impl fmt::Display for DepsMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DepsMode::Patched => "patched",
            DepsMode::Registry => "registry",
        })
    }
}

/// What kind of repository an entry is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RepoKind {
    /// A cargo workspace (has a `Cargo.toml`).
    #[default]
    Cargo,
    /// A documents-only repository (the spec): no cargo steps, ordered only by `after`.
    Docs,
}

/// One `[[repo]]` entry, validated and with defaults applied.
#[derive(Debug, Clone)]
pub struct Repo {
    /// Unique name used on the command line and in cache keys.
    pub name: String,
    /// GitHub `owner/name`, for `checkout` and dispatches.
    pub github: String,
    /// Checkout path relative to the root (defaults to `name`); never absolute, never `..`.
    pub path: PathBuf,
    /// Cargo workspace or documents.
    pub kind: RepoKind,
    /// Extra upstream repos cargo cannot see (e.g. consensus after spec).
    pub after: Vec<String>,
    /// Ordered steps to run.
    pub steps: Vec<Step>,
    /// Features per variant name; a variant a repo does not list builds default features.
    pub features: BTreeMap<String, Vec<String>>,
    /// Environment for every step (merged over `[defaults] env`).
    pub env: BTreeMap<String, String>,
    /// Variables of our own environment that every step of the repo may see although
    /// they are secrets (`pass-env`, merged with `[defaults] pass-env`), sorted. Steps
    /// never see a secret otherwise: see [`crate::engine::steps::withheld_env`] for which
    /// inherited variables are withheld.
    pub pass_env: Vec<String>,
    /// Toolchain override (`RUSTUP_TOOLCHAIN`), over the default.
    pub toolchain: Option<String>,
    /// Dependency mode, over the default.
    pub deps: DepsMode,
    /// Matrix: the toolchains this repo is built with under `ci --matrix` (e.g. its MSRV
    /// and `stable`); empty = just its `toolchain` (or the default).
    pub toolchains: Vec<String>,
    /// Matrix: the variants this repo is built in under `ci --matrix`; empty = just the
    /// default variant.
    pub variants: Vec<String>,
    /// Binary names `ci --release` collects from `target/release/` into the run's
    /// `artifacts/<repo>/` (see `release_build.rs`); empty = the repo is built in release
    /// but no file is collected.
    pub artifacts: Vec<String>,
}

impl Repo {
    /// Features of `variant` for this repo (empty when the repo does not list it).
    pub fn variant_features(&self, variant: &str) -> &[String] {
        self.features.get(variant).map(Vec::as_slice).unwrap_or(&[])
    }
}

/// One step of a repo: a cargo invocation (or any command) with its own timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Step name shown in the summary (`fmt-check`, `clippy`, `build`, `test`, `doc`, ...).
    pub name: String,
    /// Program and arguments; for cargo steps `program` is `cargo`.
    pub program: String,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Whether the variant's `--features` and the profile are appended.
    pub features: bool,
    /// Kill the step (and its process tree) after this many seconds.
    pub timeout_secs: u64,
    /// Extra environment for this step only.
    pub env: BTreeMap<String, String>,
    /// Secret variables passed to this step only (`pass-env` of a step table), on top of
    /// the repo's [`Repo::pass_env`].
    pub pass_env: Vec<String>,
}

/// The built-in steps, in their default order, with their cargo arguments and whether
/// they take the variant's features and profile.
pub const BUILTIN_STEPS: &[(&str, &[&str], bool)] = &[
    ("fmt-check", &["fmt", "--all", "--", "--check"], false),
    (
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        true,
    ),
    ("build", &["build", "--workspace", "--all-targets"], true),
    ("test", &["test", "--workspace"], true),
    ("doc", &["doc", "--workspace", "--no-deps"], true),
];

/// Built-in steps a repo names in its `steps` but that are not run by default:
/// `coverage` (cargo-tarpaulin, see `coverage.rs`).
pub const OPT_IN_STEPS: &[(&str, &[&str], bool)] = &[(
    crate::engine::coverage::STEP,
    crate::engine::coverage::ARGS,
    true,
)];

fn builtin_step(name: &str, timeout: u64) -> Option<Step> {
    BUILTIN_STEPS
        .iter()
        .chain(OPT_IN_STEPS)
        .find(|(n, _, _)| *n == name)
        .map(|(n, args, features)| Step {
            name: (*n).to_owned(),
            program: "cargo".to_owned(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            features: *features,
            timeout_secs: timeout,
            env: BTreeMap::new(),
            pass_env: Vec::new(),
        })
}

// ---- raw, as deserialized --------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawManifest {
    #[serde(default)]
    root: Option<Spanned<String>>,
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    cache: CacheSettings,
    #[serde(default)]
    preflight: PreflightSettings,
    #[serde(default)]
    notify: NotifySettings,
    #[serde(default)]
    chain: ChainSettings,
    #[serde(default)]
    workflows: WorkflowSettings,
    #[serde(default)]
    repo: Vec<RawRepo>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawRepo {
    name: Spanned<String>,
    github: Spanned<String>,
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    kind: RepoKind,
    #[serde(default)]
    after: Vec<Spanned<String>>,
    #[serde(default)]
    steps: Option<Vec<Spanned<RawStep>>>,
    #[serde(default)]
    features: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pass_env: Vec<Spanned<String>>,
    #[serde(default)]
    toolchain: Option<String>,
    #[serde(default)]
    deps: Option<DepsMode>,
    #[serde(default)]
    toolchains: Vec<String>,
    #[serde(default)]
    variants: Vec<String>,
    #[serde(default)]
    artifacts: Vec<String>,
}

/// A step is either the name of a built-in step (`"test"`) or a table.
#[derive(Deserialize)]
#[serde(untagged)]
enum RawStep {
    Name(String),
    Table(RawStepTable),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawStepTable {
    name: String,
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    features: Option<bool>,
    #[serde(default)]
    timeout: Option<u64>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    pass_env: Vec<String>,
}

/// A manifest error at a position in the file; `Display` reads
/// `ci/chain.toml:12:8: duplicate repo name ...`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct ManifestError {
    /// File the error is in.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub col: usize,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// 1-based (line, column) of byte offset `at` in `text`.
pub fn line_col(text: &str, at: usize) -> (usize, usize) {
    let at = at.min(text.len());
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

impl Manifest {
    /// Read and validate the manifest at `path`.
    ///
    /// Errors: the file cannot be read; TOML syntax, unknown fields and wrongly typed values
    /// (a [`ManifestError`] with line and column); semantic problems (duplicate names or
    /// paths, a `path` or `name` that would leave the root, an `after` naming no repo, a
    /// step with neither a built-in name nor `args`/`command`, a zero timeout).
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| {
            format!(
                "cannot read the chain manifest {}: pass --manifest PATH or run from the orchestrator checkout",
                path.display()
            )
        })?;
        Self::parse(&text, path)
    }

    /// Parse manifest `text` as if read from `path` (used by tests and `load`).
    pub fn parse(text: &str, path: &Path) -> Result<Manifest> {
        let loc = Locator {
            text,
            file: path.display().to_string(),
        };
        let raw: RawManifest = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                let at = e.span().map_or(0, |s| s.start);
                return Err(loc.err(at, e.message().trim().to_owned()));
            }
        };
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let root = crate::support::fs::normalize(&match &raw.root {
            Some(r) => base.join(r.get_ref()),
            None => base.join("../.."),
        });
        let defaults = raw.defaults;
        if defaults.timeout == 0 {
            return Err(loc.err(
                text.find("timeout").unwrap_or(0),
                "`timeout` must be at least 1 second".into(),
            ));
        }
        for n in &defaults.pass_env {
            check_var_name("[defaults] pass-env", n)
                .map_err(|m| loc.err(text.find("pass-env").unwrap_or(0), m))?;
        }
        // An empty or odd prefix would make every variable (`GITHUB_SHA`, …) an input, and
        // no repo could ever be `cached`.
        if let Some(bad) = defaults
            .build_env
            .iter()
            .find(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return Err(loc.err(
                text.find("build-env").unwrap_or(0),
                format!("`build-env` entry `{bad}` is not a variable-name prefix (letters, digits and `_`, not empty)"),
            ));
        }
        let mut seen = Seen::default();
        let repos = raw
            .repo
            .iter()
            .map(|r| repo_from_raw(r, &defaults, &mut seen, &loc))
            .collect::<Result<Vec<_>>>()?;
        check_after(&raw.repo, &seen.names, &loc)?;
        if repos.is_empty() {
            return Err(loc.err(
                0,
                "the manifest lists no repositories: add at least one [[repo]] table".into(),
            ));
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            root,
            defaults,
            cache: raw.cache,
            preflight: raw.preflight,
            notify: raw.notify,
            chain: raw.chain,
            workflows: raw.workflows,
            repos,
        })
    }

    /// The repo called `name`, or an error listing the known names.
    pub fn repo(&self, name: &str) -> Result<&Repo> {
        match self.repos.iter().find(|r| r.name == name) {
            Some(r) => Ok(r),
            None => bail!(
                "no repo named `{name}` in {} (known: {})",
                self.path.display(),
                self.repos
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// The variables of our environment the manifest names as secrets: the dispatch
    /// token's (`[chain] token-env`), the GitHub App's (`app-id-env`, `private-key-env`)
    /// and the webhook URLs' (`[notify]`). Steps never see
    /// them unless `pass-env` passes one (nor `GITHUB_TOKEN` and the other secrets of
    /// [`crate::engine::steps::withheld_env`]).
    pub fn secret_env_names(&self) -> Vec<&str> {
        let app = self.chain.app.as_ref();
        let mut v: Vec<&str> = [
            self.chain.token_env.as_deref(),
            app.map(|a| a.id_env.as_str()),
            app.map(|a| a.private_key_env.as_str()),
            self.notify.slack_webhook_env.as_deref(),
            self.notify.discord_webhook_env.as_deref(),
        ]
        .into_iter()
        .flatten()
        .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Absolute-or-relative path of the checkout of `repo` under `root`.
    pub fn checkout_dir(root: &Path, repo: &Repo) -> PathBuf {
        root.join(&repo.path)
    }

    /// Every variant name the manifest knows, sorted: `[defaults] variant`, every key of a
    /// repo's `[repo.features]` and every name in a repo's `variants`. A repo that does not
    /// list a known variant builds its default features in it.
    pub fn known_variants(&self) -> Vec<&str> {
        let mut v: Vec<&str> = std::iter::once(self.defaults.variant.as_str())
            .chain(self.repos.iter().flat_map(|r| {
                r.features
                    .keys()
                    .map(String::as_str)
                    .chain(r.variants.iter().map(String::as_str))
            }))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Check a variant name given on the command line against [`Manifest::known_variants`]:
    /// an unknown one (a typo) would silently build default features under a new key.
    ///
    /// Errors: `variant` is not known; the message lists the known ones.
    pub fn check_variant(&self, variant: &str) -> Result<()> {
        let known = self.known_variants();
        if !known.contains(&variant) {
            bail!(
                "unknown variant `{variant}`: {} knows {} (the default is `{}`)\nfix: pass one of them to --variant, or add `{variant}` to a repo's `[repo.features]` or `variants`",
                self.path.display(),
                known
                    .iter()
                    .map(|v| format!("`{v}`"))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.defaults.variant
            );
        }
        Ok(())
    }
}

/// The manifest's text and file name, to turn a byte offset into a [`ManifestError`] with
/// line and column.
struct Locator<'a> {
    text: &'a str,
    file: String,
}

impl Locator<'_> {
    /// The error `message` at byte offset `at` of the text.
    fn err(&self, at: usize, message: String) -> anyhow::Error {
        let (line, col) = line_col(self.text, at);
        ManifestError {
            file: self.file.clone(),
            line,
            col,
            message,
        }
        .into()
    }
}

/// The repo names and checkout paths seen so far (each must be unique).
#[derive(Default)]
struct Seen {
    names: BTreeSet<String>,
    paths: BTreeSet<PathBuf>,
}

/// One `[[repo]]` table, validated (name, `github`, `path`, steps, env) and with the
/// `[defaults]` applied.
fn repo_from_raw(r: &RawRepo, defaults: &Defaults, seen: &mut Seen, loc: &Locator) -> Result<Repo> {
    let name = r.name.get_ref();
    check_name(name).map_err(|m| loc.err(r.name.span().start, m))?;
    if !seen.names.insert(name.clone()) {
        return Err(loc.err(
            r.name.span().start,
            format!("duplicate repo name `{name}`: every [[repo]] needs its own name"),
        ));
    }
    let gh = r.github.get_ref();
    let valid_gh = gh.split('/').count() == 2
        && gh
            .split('/')
            .all(|p| !p.is_empty() && p != "." && p != ".." && p.chars().all(is_gh_char));
    if !valid_gh {
        return Err(loc.err(
            r.github.span().start,
            format!("`github = \"{gh}\"` is not of the form \"owner/name\""),
        ));
    }
    let (rel, at) = match &r.path {
        Some(p) => (p.get_ref().clone(), p.span().start),
        None => (name.clone(), r.name.span().start),
    };
    let rel_path = check_relative(&rel).map_err(|m| loc.err(at, format!("`path`: {m}")))?;
    if !seen.paths.insert(rel_path.clone()) {
        return Err(loc.err(
            at,
            format!("two repos share the checkout path `{rel}`: give each its own `path`"),
        ));
    }
    Ok(Repo {
        name: name.clone(),
        github: gh.clone(),
        path: rel_path,
        kind: r.kind,
        after: r.after.iter().map(|a| a.get_ref().clone()).collect(),
        steps: repo_steps(r, defaults.timeout, loc)?,
        features: r.features.clone(),
        env: repo_env(r, defaults, loc)?,
        pass_env: repo_pass_env(r, defaults, loc)?,
        toolchain: r.toolchain.clone().or_else(|| defaults.toolchain.clone()),
        deps: r.deps.unwrap_or(defaults.deps),
        toolchains: r.toolchains.clone(),
        variants: r.variants.clone(),
        artifacts: r.artifacts.clone(),
    })
}

/// A repo's steps: its own `steps`, else the built-in ones for a cargo repo, else none.
fn repo_steps(r: &RawRepo, timeout: u64, loc: &Locator) -> Result<Vec<Step>> {
    Ok(match (&r.steps, r.kind) {
        (Some(steps), _) => steps
            .iter()
            .map(|s| resolve_step(s.get_ref(), timeout).map_err(|m| loc.err(s.span().start, m)))
            .collect::<Result<Vec<_>>>()?,
        (None, RepoKind::Cargo) => BUILTIN_STEPS
            .iter()
            .filter_map(|(n, _, _)| builtin_step(n, timeout))
            .collect(),
        (None, RepoKind::Docs) => Vec::new(),
    })
}

/// A repo's environment: `[defaults] env` overridden by its own `env`; every name must be
/// a valid variable name.
fn repo_env(r: &RawRepo, defaults: &Defaults, loc: &Locator) -> Result<BTreeMap<String, String>> {
    for (k, _) in r.env.iter().chain(defaults.env.iter()) {
        if k.is_empty() || k.contains('=') || k.contains('\0') {
            return Err(loc.err(
                r.name.span().start,
                format!(
                    "invalid environment variable name `{k}` in repo `{}`",
                    r.name.get_ref()
                ),
            ));
        }
    }
    let mut env = defaults.env.clone();
    env.extend(r.env.clone());
    Ok(env)
}

/// A repo's `pass-env`: `[defaults] pass-env` and its own, sorted and without
/// duplicates; every name must be an environment variable name.
fn repo_pass_env(r: &RawRepo, defaults: &Defaults, loc: &Locator) -> Result<Vec<String>> {
    let mut names = std::collections::BTreeSet::new();
    names.extend(defaults.pass_env.iter().cloned());
    for n in &r.pass_env {
        check_var_name(
            &format!("repo `{}`: pass-env", r.name.get_ref()),
            n.get_ref(),
        )
        .map_err(|m| loc.err(n.span().start, m))?;
        names.insert(n.get_ref().clone());
    }
    Ok(names.into_iter().collect())
}

/// Whether `name` is an environment variable name (`[A-Za-z_][A-Za-z0-9_]*`), as `what`
/// in the error.
fn check_var_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let mut cs = name.chars();
    let ok = cs
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what}: `{name}` is not an environment variable name (letters, digits, `_`; not starting with a digit)"
        ))
    }
}

/// Every `after` names another repo of the manifest.
fn check_after(repos: &[RawRepo], names: &BTreeSet<String>, loc: &Locator) -> Result<()> {
    for r in repos {
        for a in &r.after {
            if !names.contains(a.get_ref()) {
                return Err(loc.err(
                    a.span().start,
                    format!(
                        "`after = [\"{}\"]` in repo `{}` names no repo of this manifest (known: {})",
                        a.get_ref(),
                        r.name.get_ref(),
                        names.iter().cloned().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
            if a.get_ref() == r.name.get_ref() {
                return Err(loc.err(
                    a.span().start,
                    format!("repo `{}` cannot come after itself", a.get_ref()),
                ));
            }
        }
    }
    Ok(())
}

fn is_gh_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')
}

/// A repo name is used in file names (cache entries, logs): keep it to a safe alphabet.
fn check_name(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() || name.len() > 100 {
        return Err("repo `name` must be 1 to 100 characters".into());
    }
    if name == "." || name == ".." || !name.chars().all(is_gh_char) || name.starts_with('.') {
        return Err(format!(
            "repo name `{name}` may only use letters, digits, `-`, `_` and `.` (and may not start with `.`)"
        ));
    }
    Ok(())
}

/// A checkout path must stay under the root: relative, no `..`, no root or prefix.
fn check_relative(rel: &str) -> std::result::Result<PathBuf, String> {
    let p = Path::new(rel);
    if rel.is_empty() {
        return Err("must not be empty".into());
    }
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => {
                return Err(format!(
                    "`{rel}` leaves the checkout root (`..` is not allowed)"
                ))
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!(
                    "`{rel}` is absolute: paths are relative to the checkout root (see `root`)"
                ))
            }
        }
    }
    Ok(p.components().collect())
}

fn resolve_step(raw: &RawStep, default_timeout: u64) -> std::result::Result<Step, String> {
    match raw {
        RawStep::Name(n) => builtin_step(n, default_timeout).ok_or_else(|| {
            format!(
                "unknown step `{n}`: use a built-in step ({}) or a table with `name` and `args` or `command`",
                BUILTIN_STEPS.iter().chain(OPT_IN_STEPS).map(|s| s.0).collect::<Vec<_>>().join(", ")
            )
        }),
        RawStep::Table(t) => {
            let timeout = t.timeout.unwrap_or(default_timeout);
            if timeout == 0 {
                return Err(format!("step `{}`: `timeout` must be at least 1 second", t.name));
            }
            if t.name.is_empty() {
                return Err("a step needs a non-empty `name`".into());
            }
            // The name becomes `<run dir>/<repo>/<name>.log` and a result record's log:
            // one plain file name, so `../../escape` cannot write outside the run dir.
            if !crate::cache::untrusted::is_safe_name(&t.name) {
                return Err(format!(
                    "step name `{}` names its log file: use 1 to 200 letters, digits, `-`, `_`, `.` and `+`, not starting with `.`",
                    t.name.escape_debug()
                ));
            }
            let mut step = match (&t.args, &t.command) {
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "step `{}` sets both `args` (cargo arguments) and `command` (a whole command): keep one",
                        t.name
                    ))
                }
                (Some(args), None) => Step {
                    name: t.name.clone(),
                    program: "cargo".into(),
                    args: args.clone(),
                    features: true,
                    timeout_secs: timeout,
                    env: BTreeMap::new(),
                    pass_env: Vec::new(),
                },
                (None, Some(cmd)) => {
                    let Some((prog, rest)) = cmd.split_first() else {
                        return Err(format!("step `{}`: `command` must not be empty", t.name));
                    };
                    Step {
                        name: t.name.clone(),
                        program: prog.clone(),
                        args: rest.to_vec(),
                        features: false,
                        timeout_secs: timeout,
                        env: BTreeMap::new(),
                        pass_env: Vec::new(),
                    }
                }
                (None, None) => builtin_step(&t.name, timeout).ok_or_else(|| {
                    format!(
                        "step `{}` is not built in: give it `args` (cargo arguments) or `command`",
                        t.name
                    )
                })?,
            };
            if let Some(f) = t.features {
                step.features = f;
            }
            step.env = t.env.clone();
            for n in &t.pass_env {
                check_var_name(&format!("step `{}`: pass-env", t.name), n)?;
            }
            step.pass_env = t.pass_env.clone();
            step.pass_env.sort();
            step.pass_env.dedup();
            Ok(step)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, Path::new("ci/chain.toml"))
    }

    #[test]
    fn defaults_apply() {
        let m = parse(
            r#"
[[repo]]
name = "a"
github = "o/a"
[[repo]]
name = "spec"
github = "o/spec"
kind = "docs"
"#,
        )
        .unwrap();
        assert_eq!(m.repos[0].path, PathBuf::from("a"));
        let names: Vec<_> = m.repos[0].steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["fmt-check", "clippy", "build", "test", "doc"]);
        assert!(m.repos[1].steps.is_empty());
        assert_eq!(m.root, PathBuf::from("ci/../.."));
    }

    #[test]
    fn variants_are_the_default_the_features_keys_and_the_matrix_lists() {
        let m = parse(
            r#"
[defaults]
variant = "base"
[[repo]]
name = "a"
github = "o/a"
variants = ["msrv-check"]
[repo.features]
experimental = ["x"]
[[repo]]
name = "b"
github = "o/b"
"#,
        )
        .unwrap();
        assert_eq!(m.known_variants(), ["base", "experimental", "msrv-check"]);
        for ok in ["base", "experimental", "msrv-check"] {
            m.check_variant(ok).unwrap();
        }
        let e = format!("{:#}", m.check_variant("experimentl").unwrap_err());
        assert!(
            e.contains("unknown variant `experimentl`")
                && e.contains("`base`, `experimental`, `msrv-check`"),
            "{e}"
        );
        // A manifest where no repo lists variants knows only its default.
        let plain = parse("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n").unwrap();
        assert_eq!(plain.known_variants(), ["base"]);
        assert!(plain.check_variant("experimental").is_err());
    }

    #[test]
    fn build_env_prefixes_must_be_variable_name_prefixes() {
        let repo = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n";
        let m = parse(&format!(
            "[defaults]\nbuild-env = [\"PROTOC\", \"OPENSSL_\"]\n{repo}"
        ))
        .unwrap();
        assert_eq!(m.defaults.build_env, ["PROTOC", "OPENSSL_"]);
        for bad in ["\"\"", "\"A B\"", "\"X=\""] {
            let e = parse(&format!("[defaults]\nbuild-env = [{bad}]\n{repo}")).unwrap_err();
            assert!(
                format!("{e:#}").contains("not a variable-name prefix"),
                "{e:#}"
            );
        }
    }

    #[test]
    fn errors_have_line_and_column() {
        let e = parse("[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nbogus = 1\n").unwrap_err();
        let e = e.downcast::<ManifestError>().unwrap();
        assert_eq!((e.line, e.col), (4, 1), "{e}");
        assert!(e.message.contains("unknown field `bogus`"), "{e}");
    }

    #[test]
    fn committed_manifests_parse() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let real = Manifest::load(&ws.join("ci/chain.toml")).unwrap();
        assert!(real
            .repos
            .iter()
            .any(|r| r.name == "blvm-consensus" && r.after == ["blvm-spec"]));
        assert_eq!(real.repo("blvm-spec").unwrap().kind, RepoKind::Docs);
        let sample = Manifest::load(&ws.join("ci/sample/chain.toml")).unwrap();
        assert_eq!(sample.repos.len(), 7);
        for r in &sample.repos {
            let dir = Manifest::checkout_dir(&sample.root, r);
            assert!(
                dir.is_dir(),
                "sample repo {} missing at {}",
                r.name,
                dir.display()
            );
        }
    }

    #[test]
    fn chain_table_is_checked() {
        let repo = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n";
        let m = parse(&format!(
            "[chain]\ntoken-env = \"BLLVM_PAT\"\nmax-hops = 3\n[chain.event-types]\ndevelop = \"dev\"\n{repo}"
        ))
        .unwrap();
        assert_eq!(m.chain.token_env.as_deref(), Some("BLLVM_PAT"));
        assert_eq!(m.chain.max_hops, 3);
        assert_eq!(m.chain.event_type("develop"), "dev");
        assert_eq!(m.chain.event_type("push"), "bllvm-upstream-push");
        assert_eq!(parse(repo).unwrap().chain.max_hops, 8);
        let m = parse(&format!(
            "[chain]\napp-id-env = \"APP_ID\"\nprivate-key-env = \"APP_KEY\"\nindex-url = \"sparse+http://127.0.0.1:1/\"\n{repo}"
        ))
        .unwrap();
        let app = m.chain.app.as_ref().unwrap();
        assert_eq!(
            (app.id_env.as_str(), app.private_key_env.as_str()),
            ("APP_ID", "APP_KEY")
        );
        assert_eq!(
            m.chain.index_url.as_deref(),
            Some("sparse+http://127.0.0.1:1/")
        );
        assert_eq!(m.secret_env_names(), ["APP_ID", "APP_KEY"]);
        // Checks of values point at the table, unknown fields at the field.
        for (bad, want, line) in [
            ("[chain]\nmax-hops = 0\n", "max-hops must be at least 1", 1),
            (
                "[chain]\ntoken-env = \"1X\"\n",
                "not an environment variable name",
                1,
            ),
            ("[chain]\norchestrator = \"nope\"\n", "owner/name", 1),
            (
                "[chain]\napp-id-env = \"APP_ID\"\n",
                "app-id-env and private-key-env go together",
                1,
            ),
            (
                "[chain]\napp-id-env = \"A\"\nprivate-key-env = \"K-EY\"\n",
                "private-key-env = \"K-EY\" is not an environment variable name",
                1,
            ),
            (
                "[chain]\nindex-url = \"index.crates.io\"\n",
                "not a sparse index URL",
                1,
            ),
            ("[chain]\nbogus = 1\n", "unknown field `bogus`", 2),
            (
                "[chain.event-types]\npush = \"a\\\"b\"\n",
                "only letters, digits",
                1,
            ),
        ] {
            let e = parse(&format!("{bad}{repo}")).unwrap_err();
            let e = e.downcast::<ManifestError>().unwrap();
            assert!(e.message.contains(want), "{bad}: {e}");
            assert_eq!(e.line, line, "{bad}: {e}");
        }
        let long = "x".repeat(101);
        let e = parse(&format!("[chain.event-types]\npush = \"{long}\"\n{repo}")).unwrap_err();
        assert!(e.to_string().contains("1 to 100 characters"), "{e}");
    }

    /// `[workflows]`: the runner kinds with their defaults, and every value that reaches
    /// YAML or a shell checked, with the table's line.
    #[test]
    fn workflows_table_is_checked() {
        let repo = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n";
        let w = |table: &str| parse(&format!("[workflows]\n{table}{repo}")).map(|m| m.workflows);
        let d = parse(repo).unwrap().workflows;
        assert_eq!(
            (
                d.runner,
                d.labels.as_slice(),
                d.cache_dir.as_deref(),
                d.fan_out
            ),
            (
                RunnerKind::Hosted,
                &["ubuntu-latest".to_owned()][..],
                None,
                false
            )
        );
        assert_eq!(d.environment, "bllvm-chain");
        let s = w("runner = \"self-hosted\"\n").unwrap();
        assert_eq!(s.labels, ["self-hosted", "linux", "x64"]);
        assert_eq!(s.cache_dir.as_deref(), Some("/tmp/runner-cache"));
        let s = w("runner = \"self-hosted\"\nlabels = [\"big-disk\"]\ncache-dir = \"/srv/cache\"\nfan-out = true\n").unwrap();
        assert_eq!(
            (s.labels.as_slice(), s.cache_dir.as_deref(), s.fan_out),
            (&["big-disk".to_owned()][..], Some("/srv/cache"), true)
        );
        assert_eq!(
            w("runner = \"remote\"\n").unwrap().runner,
            RunnerKind::Remote
        );
        for (bad, want) in [
            ("runner = \"cloud\"\n", "unknown variant `cloud`"),
            ("labels = []\n", "at least one runner label"),
            ("labels = [\"a b\"]\n", "is not a runner label"),
            (
                "cache-dir = \"/x\"\n",
                "cache-dir is the persistent cache root of self-hosted runners",
            ),
            (
                "runner = \"self-hosted\"\ncache-dir = \"rel\"\n",
                "absolute path",
            ),
            (
                "runner = \"self-hosted\"\ncache-dir = \"/\"\n",
                "absolute path other than `/`",
            ),
            (
                "runner = \"self-hosted\"\ncache-dir = \"/a/../b\"\n",
                "without `..`",
            ),
            (
                "runner = \"self-hosted\"\ncache-dir = \"/a b\"\n",
                "letters, digits",
            ),
            ("environment = \"a b\"\n", "environment = \"a b\""),
            ("bogus = 1\n", "unknown field `bogus`"),
        ] {
            let e = parse(&format!("[workflows]\n{bad}{repo}")).unwrap_err();
            let e = e.downcast::<ManifestError>().unwrap();
            assert!(e.message.contains(want), "{bad}: {e}");
            assert!(e.line <= 2, "{bad}: {e}");
        }
    }

    #[test]
    fn step_names_are_single_safe_file_names() {
        for (bad, line) in [("../../escape", 4), ("a/b", 4), (".hidden", 4), ("", 4)] {
            let text = format!(
                "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nsteps = [{{ name = \"{bad}\", command = [\"true\"] }}]\n"
            );
            let e = parse(&text).unwrap_err();
            let e = e.downcast::<ManifestError>().unwrap();
            assert_eq!((e.line, e.col), (line, 10), "{bad}: {e}");
            assert!(e.message.contains("name"), "{bad}: {e}");
        }
        let ok = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nsteps = [{ name = \"test-all_2.x\", command = [\"true\"] }]\n";
        assert_eq!(parse(ok).unwrap().repos[0].steps[0].name, "test-all_2.x");
    }

    #[test]
    fn line_col_counts_chars() {
        assert_eq!(line_col("ab\ncé\nx", 7), (3, 1));
        assert_eq!(line_col("ab", 1), (1, 2));
    }

    /// `pass-env` at every level: `[defaults]` and the repo's merge, a step adds its own;
    /// names are checked; the manifest's own secret variables are listed.
    #[test]
    fn pass_env_merges_and_is_checked() {
        let m = parse(
            r#"
[defaults]
pass-env = ["A_TOKEN"]
[chain]
token-env = "CHAIN_PAT"
[notify]
slack-webhook-env = "HOOK"
[[repo]]
name = "a"
github = "o/a"
pass-env = ["B_SECRET", "A_TOKEN"]
steps = ["build", { name = "pub", command = ["sh"], pass-env = ["CARGO_REGISTRY_TOKEN"] }]
"#,
        )
        .unwrap();
        assert_eq!(m.repos[0].pass_env, ["A_TOKEN", "B_SECRET"]);
        assert!(m.repos[0].steps[0].pass_env.is_empty());
        assert_eq!(m.repos[0].steps[1].pass_env, ["CARGO_REGISTRY_TOKEN"]);
        assert_eq!(m.secret_env_names(), ["CHAIN_PAT", "HOOK"]);
        let repo = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n";
        for bad in [
            format!("[defaults]\npass-env = [\"1X\"]\n{repo}"),
            format!("{repo}pass-env = [\"A=B\"]\n"),
            format!("{repo}steps = [{{ name = \"x\", command = [\"sh\"], pass-env = [\"\"] }}]\n"),
        ] {
            let e = parse(&bad).unwrap_err().to_string();
            assert!(e.contains("not an environment variable name"), "{bad}: {e}");
        }
    }
}
