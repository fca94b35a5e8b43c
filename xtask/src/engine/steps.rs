//! Prepared steps (bevy's `PreparedCommand`): a manifest step turned into the exact
//! commands the runner will spawn — program, arguments, environment, working directory,
//! timeout, log file — decided once, in the plan, so `plan -v` prints exactly what `ci`
//! runs and the runner only executes.
//!
//! What preparation adds to a manifest step, in order:
//! 1. the variant's `--features` and the profile, before any `--` ([`step_args`]);
//! 2. `cargo test` becomes `cargo nextest run` plus `cargo test --doc` when nextest is
//!    installed ([`crate::engine::testing::expand`]);
//! 3. in GitHub Actions, `--message-format=json` for cargo commands that compile, so
//!    errors become annotations (the log still shows the human text);
//! 4. a coverage step's `--output-dir <run dir>/<repo>/coverage`;
//! 5. the environment: the repo's (manifest `env`, toolchain override, `CARGO_INCREMENTAL`),
//!    `CARGO_BUILD_JOBS` when repos share the machine, then the step's own `env`;
//! 6. the secrets of our own environment the step may not see ([`withheld_env`]: the
//!    dispatch token, webhook URLs, cloud and remote-cache credentials, anything named
//!    like a secret), removed from what it inherits unless `pass-env` passes them.
//!
//! Items 2–5 depend on the machine and the run, not on the repo's inputs, so they are not
//! part of the fingerprint (see [`crate::engine::fingerprint`]): a repo is `cached` the
//! same on a laptop and in Actions.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::engine::coverage;
use crate::engine::manifest::Step;
use crate::engine::testing;

/// Variables no step inherits, whatever the manifest names: GitHub's tokens (the
/// workflow's `GITHUB_TOKEN`, the `gh` CLI's), the Actions runtime's tokens and URLs, and
/// the conventional webhook variables. The manifest's own secret variables
/// ([`Manifest::secret_env_names`]) and every name [`is_secret_name`] matches come on top.
///
/// [`Manifest::secret_env_names`]: crate::engine::manifest::Manifest::secret_env_names
pub const WITHHELD: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "SLACK_WEBHOOK_URL",
    "DISCORD_WEBHOOK_URL",
    crate::cache::settings::ACCESS_KEY_ENV,
    crate::cache::settings::SECRET_KEY_ENV,
    crate::cache::settings::ENDPOINT_ENV,
];

/// Prefixes of withheld variables: every AWS setting (credentials, session tokens,
/// profiles: the remote cache's and any other) and the Actions runtime's (`ACTIONS_RUNTIME_TOKEN`,
/// `ACTIONS_ID_TOKEN_REQUEST_*`, the cache service URLs).
const WITHHELD_PREFIXES: &[&str] = &["AWS_", "ACTIONS_"];

/// Parts of a variable name that mark it as a secret (compared in upper case), as
/// secret scanners name them: `CARGO_REGISTRY_TOKEN`, `NPM_TOKEN`, `DB_PASSWORD`,
/// `GOOGLE_APPLICATION_CREDENTIALS`, `AZURE_STORAGE_KEY`, `MY_WEBHOOK`, ...
const SECRET_WORDS: &[&str] = &[
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "PASSPHRASE",
    "WEBHOOK",
    "CREDENTIAL",
    "PRIVATE_KEY",
    "API_KEY",
    "APIKEY",
    "ACCESS_KEY",
    "ACCOUNT_KEY",
    "STORAGE_KEY",
    "SIGNING_KEY",
];

/// `_`-separated parts of a name that mark it as a secret (compared in upper case):
/// `GITHUB_PAT`, `DEPLOY_KEY`, `SMTP_PASS`, ...
const SECRET_PARTS: &[&str] = &["PAT", "KEY", "PASS"];

/// Whether the variable `name` is withheld from steps by its name alone: one of
/// [`WITHHELD`], a `AWS_`/`ACTIONS_` variable, a name holding a secret word (`TOKEN`,
/// `SECRET`, `PASSWORD`, `WEBHOOK`, `CREDENTIAL`, `API_KEY`, ...) or a secret part
/// (`PAT`, `KEY`, `PASS` between `_`s); any case.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    WITHHELD.contains(&upper.as_str())
        || WITHHELD_PREFIXES.iter().any(|p| upper.starts_with(p))
        || SECRET_WORDS.iter().any(|w| upper.contains(w))
        || upper.split('_').any(|part| SECRET_PARTS.contains(&part))
}

/// Prefixes of well-known credentials (secret scanners' list): GitHub tokens (`ghp_`,
/// `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), Slack tokens (`xoxb-`, `xoxp-`,
/// `xoxa-`, `xoxe-`), Slack and Discord webhook URLs.
const SECRET_VALUE_PREFIXES: &[&str] = &[
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xoxb-",
    "xoxp-",
    "xoxa-",
    "xoxe-",
    "https://hooks.slack.com/",
    "https://discord.com/api/webhooks/",
    "https://discordapp.com/api/webhooks/",
];

/// Whether a variable's `value` is a credential whatever its name: a well-known token or
/// webhook URL ([`SECRET_VALUE_PREFIXES`]), an AWS access key id (`AKIA`/`ASIA` and 16
/// more capitals or digits), or a URL that carries a password (`scheme://user:pass@host`,
/// e.g. a database URL or a proxy with credentials).
pub fn is_secret_value(value: &str) -> bool {
    let v = value.trim();
    let aws_key_id = v.len() == 20
        && (v.starts_with("AKIA") || v.starts_with("ASIA"))
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
    let url_password = v.split_once("://").is_some_and(|(_, rest)| {
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        authority
            .rsplit_once('@')
            .is_some_and(|(userinfo, _)| userinfo.contains(':'))
    });
    aws_key_id || url_password || SECRET_VALUE_PREFIXES.iter().any(|p| v.starts_with(p))
}

/// The variables of the environment `inherited` (name and value) that steps must not
/// inherit: [`WITHHELD`], the manifest's own secret variables (`named`, see
/// [`crate::engine::manifest::Manifest::secret_env_names`], withheld even when their name
/// looks harmless), every inherited name [`is_secret_name`] matches and every variable
/// whose value [`is_secret_value`] matches. Sorted; names only (no value is kept).
///
/// A step gets one of them only when the manifest passes it (`pass-env`, see
/// [`step_env_remove`]) or sets it to a literal value in `env`. Rule from issue 13: a
/// step's output (a failing test's, a build script's) reaches logs, JUnit reports and
/// saved cache entries that read-only runs and the remote cache restore.
pub fn withheld_env<S: AsRef<str>>(
    named: &[S],
    inherited: impl IntoIterator<Item = (String, String)>,
) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = WITHHELD.iter().map(|s| (*s).to_owned()).collect();
    out.extend(named.iter().map(|s| s.as_ref().to_owned()));
    out.extend(
        inherited
            .into_iter()
            .filter(|(n, v)| is_secret_name(n) || is_secret_value(v))
            .map(|(n, _)| n),
    );
    out
}

/// [`withheld_env`] for `manifest` and this process's environment (values read lossily;
/// a name that is not UTF-8 cannot be named in a removal list and is inherited).
pub fn withheld_env_of(manifest: &crate::engine::manifest::Manifest) -> BTreeSet<String> {
    withheld_env(
        &manifest.secret_env_names(),
        std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.to_string_lossy().into_owned()))),
    )
}

/// What a repo's steps remove from their inherited environment: `withheld` less the
/// repo's `pass-env` and the variables its `env` sets (a literal value in the manifest
/// is not a secret of ours). Sorted.
pub fn repo_env_remove(
    withheld: &BTreeSet<String>,
    pass_env: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    withheld
        .iter()
        .filter(|n| !pass_env.contains(n) && !env.contains_key(*n))
        .cloned()
        .collect()
}

/// What one step removes: its repo's list (see [`repo_env_remove`]) less the step's own
/// `pass-env` and the variables its environment sets.
pub fn step_env_remove(
    repo_remove: &[String],
    pass_env: &[String],
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    repo_remove
        .iter()
        .filter(|n| !pass_env.contains(n) && !env.contains_key(*n))
        .cloned()
        .collect()
}

/// How the steps of a run are prepared: the parts of a command that come from the run and
/// the machine rather than from the manifest.
#[derive(Debug, Clone)]
pub struct ExecContext {
    /// The run directory: step logs go to `<run dir>/<repo>/<step>.log`.
    pub run_dir: PathBuf,
    /// Inside GitHub Actions (`GITHUB_ACTIONS=true`): cargo prints JSON diagnostics.
    pub github_actions: bool,
    /// `cargo nextest` is installed: test steps run through it.
    pub nextest: bool,
    /// `CARGO_BUILD_JOBS` for every step when several repos build at once (`--jobs`).
    pub cargo_jobs: Option<usize>,
}

/// Nothing detected: logs under a literal `$RUN_DIR`, no GitHub Actions, no nextest, no
/// shared cores (tests and callers that fill the context in themselves).
impl Default for ExecContext {
    fn default() -> ExecContext {
        ExecContext {
            run_dir: PathBuf::from("$RUN_DIR"),
            github_actions: false,
            nextest: false,
            cargo_jobs: None,
        }
    }
}

impl ExecContext {
    /// The context of `plan` (nothing runs): logs under a literal `$RUN_DIR`, the machine's
    /// nextest and GitHub Actions as detected.
    pub fn for_display() -> ExecContext {
        ExecContext {
            run_dir: PathBuf::from("$RUN_DIR"),
            github_actions: github_actions(),
            nextest: testing::nextest_available(),
            cargo_jobs: None,
        }
    }
}

/// Whether this process runs inside GitHub Actions (`GITHUB_ACTIONS=true`, set by the
/// runner; GitHub docs, "Default environment variables").
pub fn github_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// One command the runner spawns for a repo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedStep {
    /// Name in the summary and the log file's stem (`test`, `doctest`, `clippy`, ...).
    pub name: String,
    /// The manifest step it came from.
    pub step: String,
    /// Program (`cargo`, or a custom step's `command[0]`).
    pub program: String,
    /// Every argument, final.
    pub args: Vec<String>,
    /// Environment added to the inherited one, final.
    pub env: BTreeMap<String, String>,
    /// Inherited variables removed before `env` is added: the secrets the step was not
    /// given ([`step_env_remove`]), sorted.
    pub env_remove: Vec<String>,
    /// Working directory (the checkout).
    pub dir: PathBuf,
    /// Kill the command with its process group after this many seconds.
    pub timeout_secs: u64,
    /// The command prints cargo's JSON messages (see `support::exec`).
    pub json_diagnostics: bool,
    /// The step's log file.
    pub log: PathBuf,
    /// JUnit report the command writes (nextest), read for test counts.
    pub junit: Option<PathBuf>,
    /// Failing only with "no library targets found" is success (doctests of a workspace
    /// without a library).
    pub lenient_no_lib: bool,
    /// Coverage reports go here (a coverage step; recreated before it runs).
    pub coverage_dir: Option<PathBuf>,
    /// The command cannot run here, with the reason and fix (e.g. cargo-tarpaulin is not
    /// installed); the runner fails the repo with it instead of spawning.
    pub blocked: Option<String>,
}

impl PreparedStep {
    /// `program arg…` for display, quoting arguments with spaces.
    pub fn command_line(&self) -> String {
        format!(
            "{} {}",
            self.program,
            crate::support::exec::shell_words(&self.args)
        )
    }
}

/// What a repo contributes to its steps' commands.
#[derive(Debug, Clone, Copy)]
pub struct RepoSteps<'a> {
    /// Repo name (the log directory's name).
    pub repo: &'a str,
    /// Checkout directory.
    pub dir: &'a Path,
    /// Cargo target directory.
    pub target_dir: &'a Path,
    /// Variant features.
    pub features: &'a [String],
    /// Cargo profile.
    pub profile: &'a str,
    /// The repo's environment for every step.
    pub env: &'a BTreeMap<String, String>,
    /// Inherited variables every step of the repo goes without ([`repo_env_remove`]).
    pub env_remove: &'a [String],
}

/// Prepare every manifest step of a repo (see the module docs).
pub fn prepare(steps: &[Step], repo: &RepoSteps<'_>, cx: &ExecContext) -> Vec<PreparedStep> {
    let log_dir = cx.run_dir.join(repo.repo);
    // nextest wants an absolute tool config path; the run dir may be relative.
    let tool_config = absolute(&log_dir.join("nextest.toml"));
    let mut out = Vec::new();
    for step in steps {
        let args = step_args(step, repo.features, repo.profile);
        for sub in testing::expand(
            &step.name,
            &step.program,
            &args,
            cx.nextest,
            &tool_config,
            repo.target_dir,
        ) {
            out.push(prepare_one(step, sub, repo, cx, &log_dir));
        }
    }
    out
}

fn prepare_one(
    step: &Step,
    sub: testing::SubStep,
    repo: &RepoSteps<'_>,
    cx: &ExecContext,
    log_dir: &Path,
) -> PreparedStep {
    let mut args = sub.args;
    let json_diagnostics =
        cx.github_actions && step.program == "cargo" && takes_message_format(&args);
    if json_diagnostics {
        args.insert(1, "--message-format=json".to_owned());
    }
    let (mut coverage_dir, mut blocked) = (None, None);
    if coverage::is_coverage(&step.program, &args) {
        let dir = absolute(&coverage::output_dir(log_dir));
        let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
        args.splice(
            at..at,
            ["--output-dir".to_owned(), dir.display().to_string()],
        );
        if !coverage::tool_available() {
            blocked = Some(coverage::missing_tool_message(&sub.name));
        }
        coverage_dir = Some(dir);
    }
    let mut env = repo.env.clone();
    if let Some(j) = cx.cargo_jobs {
        env.insert("CARGO_BUILD_JOBS".into(), j.to_string());
    }
    env.extend(step.env.clone());
    let env_remove = step_env_remove(repo.env_remove, &step.pass_env, &env);
    PreparedStep {
        log: log_dir.join(format!("{}.log", sub.name)),
        name: sub.name,
        step: step.name.clone(),
        program: step.program.clone(),
        args,
        env,
        env_remove,
        dir: repo.dir.to_path_buf(),
        timeout_secs: step.timeout_secs,
        json_diagnostics,
        junit: sub.junit,
        lenient_no_lib: sub.lenient_no_lib,
        coverage_dir,
        blocked,
    }
}

/// `path` made absolute against the current directory (unchanged when that fails).
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Whether a cargo invocation accepts `--message-format` (its subcommand compiles).
pub fn takes_message_format(args: &[String]) -> bool {
    matches!(
        args.first().map(String::as_str),
        Some("build" | "check" | "clippy" | "test" | "doc" | "bench" | "run")
    )
}

/// Cargo arguments for `step` with the variant's features and the profile spliced in
/// before any `--` (so `clippy -- -D warnings` keeps its lint flags last).
pub fn step_args(step: &Step, features: &[String], profile: &str) -> Vec<String> {
    if !step.features || step.program != "cargo" {
        return step.args.clone();
    }
    let mut extra = Vec::new();
    if !features.is_empty() {
        extra.push("--features".to_owned());
        extra.push(features.join(","));
    }
    if profile != "dev" {
        extra.push("--profile".to_owned());
        extra.push(profile.to_owned());
    }
    let mut args = step.args.clone();
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    args.splice(at..at, extra);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_of(name: &str, args: &[&str], features: bool) -> Step {
        Step {
            name: name.into(),
            program: "cargo".into(),
            args: args.iter().map(|s| (*s).to_owned()).collect(),
            features,
            timeout_secs: 60,
            env: BTreeMap::from([("STEP_ONLY".into(), "1".into())]),
            pass_env: Vec::new(),
        }
    }

    #[test]
    fn features_go_before_double_dash() {
        let step = crate::engine::manifest::BUILTIN_STEPS
            .iter()
            .find(|s| s.0 == "clippy")
            .map(|(n, a, f)| Step {
                name: (*n).into(),
                program: "cargo".into(),
                args: a.iter().map(|s| (*s).into()).collect(),
                features: *f,
                timeout_secs: 1,
                env: BTreeMap::new(),
                pass_env: Vec::new(),
            })
            .unwrap();
        let args = step_args(&step, &["a".into(), "b".into()], "release");
        assert_eq!(
            args,
            [
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "a,b",
                "--profile",
                "release",
                "--",
                "-D",
                "warnings"
            ]
        );
        let fmt = step_of("fmt", &["fmt", "--all"], false);
        assert_eq!(step_args(&fmt, &["a".into()], "release"), ["fmt", "--all"]);
    }

    #[test]
    fn prepared_commands_are_final() {
        let repo_env = BTreeMap::from([("RUSTUP_TOOLCHAIN".into(), "stable".into())]);
        let r = RepoSteps {
            repo: "r",
            dir: Path::new("/co/r"),
            target_dir: Path::new("/co/r/target"),
            features: &[],
            profile: "dev",
            env: &repo_env,
            env_remove: &[],
        };
        let cx = ExecContext {
            run_dir: PathBuf::from("/runs/1"),
            github_actions: true,
            nextest: true,
            cargo_jobs: Some(1),
        };
        let steps = [
            step_of("build", &["build", "--workspace"], true),
            step_of("test", &["test", "--workspace"], true),
            step_of("fmt-check", &["fmt", "--all", "--", "--check"], false),
        ];
        let p = prepare(&steps, &r, &cx);
        let names: Vec<&str> = p.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["build", "test", "test-doc", "fmt-check"]);
        assert_eq!(
            p[0].command_line(),
            "cargo build --message-format=json --workspace"
        );
        assert!(p[0].json_diagnostics);
        assert_eq!(p[0].log, Path::new("/runs/1/r/build.log"));
        assert_eq!(p[0].env["CARGO_BUILD_JOBS"], "1");
        assert_eq!(p[0].env["RUSTUP_TOOLCHAIN"], "stable");
        assert_eq!(p[0].env["STEP_ONLY"], "1");
        assert_eq!(p[1].args[..2], ["nextest", "run"]);
        assert!(!p[1].json_diagnostics, "nextest takes no --message-format");
        assert_eq!(p[2].args[..3], ["test", "--message-format=json", "--doc"]);
        assert!(p[1].junit.is_some());
        // fmt does not compile: no JSON messages.
        assert!(!p[3].json_diagnostics);
        assert_eq!(p[3].command_line(), "cargo fmt --all -- --check");
    }

    #[test]
    fn coverage_output_dir_goes_before_double_dash_and_a_missing_tool_blocks() {
        let env = BTreeMap::new();
        let r = RepoSteps {
            repo: "r",
            dir: Path::new("/co/r"),
            target_dir: Path::new("/co/r/target"),
            features: &[],
            profile: "dev",
            env: &env,
            env_remove: &[],
        };
        let cx = ExecContext {
            run_dir: PathBuf::from("/runs/1"),
            ..ExecContext::default()
        };
        let cov = step_of(
            "coverage",
            &["tarpaulin", "--out", "Lcov", "--", "--nocapture"],
            false,
        );
        let p = &prepare(&[cov], &r, &cx)[0];
        assert_eq!(
            p.args,
            [
                "tarpaulin",
                "--out",
                "Lcov",
                "--output-dir",
                "/runs/1/r/coverage",
                "--",
                "--nocapture"
            ]
        );
        assert_eq!(
            p.coverage_dir.as_deref(),
            Some(Path::new("/runs/1/r/coverage"))
        );
        // Whether the step may run is decided here, from the machine: never a silent pass.
        assert_eq!(p.blocked.is_some(), !coverage::tool_available());
        if let Some(why) = &p.blocked {
            assert!(why.contains(coverage::INSTALL), "{why}");
        }
    }

    /// Issue 13: the manifest's secret variables, GitHub's tokens, AWS and Actions
    /// variables and anything named like a secret are withheld; ordinary variables are not.
    #[test]
    fn secrets_are_withheld_by_name_and_by_the_manifest() {
        let kept = [
            ("PATH", "/usr/bin:/bin"),
            ("HOME", "/root"),
            ("RUSTFLAGS", "-D warnings"),
            ("CARGO_HOME", "/root/.cargo"),
            ("RUSTUP_TOOLCHAIN", "stable"),
            ("SSH_AUTH_SOCK", "/tmp/agent.sock"),
            ("CARGO_REGISTRIES_CRATES_IO_PROTOCOL", "sparse"),
            ("GIT_URL", "ssh://git@github.com/o/r"),
            ("PATCH_LEVEL", "3"),
        ];
        let gone = [
            ("MY_CHAIN_PAT", "x"),
            ("AWS_SESSION_TOKEN", "x"),
            ("AWS_PROFILE", "ci"),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", "x"),
            ("CARGO_REGISTRY_TOKEN", "x"),
            ("npm_token", "x"),
            ("DB_PASSWORD", "x"),
            ("GOOGLE_APPLICATION_CREDENTIALS", "/k.json"),
            ("AZURE_STORAGE_KEY", "x"),
            ("TEAMS_WEBHOOK", "x"),
            ("OPENAI_API_KEY", "x"),
            ("GITHUB_PAT", "x"),
            ("DEPLOY_KEY", "x"),
            ("SMTP_PASS", "x"),
            // Secret by value, whatever the name.
            ("UPSTREAM", "ghp_0123456789abcdef0123456789abcdef0123"),
            ("NOTIFY_TO", "https://hooks.slack.com/services/T0/B0/x"),
            ("X_ID", "AKIAABCDEFGHIJKLMNOP"),
            ("DATABASE_URL", "postgres://ci:hunter2@db:5432/x"),
        ];
        let inherited = kept
            .iter()
            .chain(&gone)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        let w = withheld_env(&["MY_CHAIN_PAT", "HOOK_URL"], inherited);
        for (k, _) in kept {
            assert!(!w.contains(k), "{k} withheld");
        }
        for (k, _) in gone {
            assert!(w.contains(k), "{k} not withheld");
        }
        // Named by the manifest, or always withheld, even when not set.
        for gone in [
            "HOOK_URL",
            "GITHUB_TOKEN",
            "GH_TOKEN",
            "AWS_SECRET_ACCESS_KEY",
        ] {
            assert!(w.contains(gone), "{gone} not withheld");
        }
        // `pass-env` and a literal value in the manifest's `env` give one back.
        let repo_env = BTreeMap::from([("DB_PASSWORD".to_owned(), "literal".to_owned())]);
        let repo = repo_env_remove(&w, &["MY_CHAIN_PAT".to_owned()], &repo_env);
        assert!(!repo.contains(&"MY_CHAIN_PAT".to_owned()));
        assert!(!repo.contains(&"DB_PASSWORD".to_owned()));
        assert!(repo.contains(&"GITHUB_TOKEN".to_owned()));
        let step = step_env_remove(&repo, &["GITHUB_TOKEN".to_owned()], &BTreeMap::new());
        assert!(!step.contains(&"GITHUB_TOKEN".to_owned()));
        assert!(step.contains(&"GH_TOKEN".to_owned()));
    }

    /// The prepared command carries the removal, less the step's own `pass-env`.
    #[test]
    fn prepared_steps_withhold_what_was_not_passed() {
        let env = BTreeMap::new();
        let remove = ["GITHUB_TOKEN".to_owned(), "SECRET_X".to_owned()];
        let r = RepoSteps {
            repo: "r",
            dir: Path::new("/co/r"),
            target_dir: Path::new("/co/r/target"),
            features: &[],
            profile: "dev",
            env: &env,
            env_remove: &remove,
        };
        let mut given = step_of("publish", &["publish"], false);
        given.pass_env = vec!["SECRET_X".into()];
        let p = prepare(
            &[step_of("build", &["build"], true), given],
            &r,
            &ExecContext::default(),
        );
        assert_eq!(p[0].env_remove, ["GITHUB_TOKEN", "SECRET_X"]);
        assert_eq!(p[1].env_remove, ["GITHUB_TOKEN"]);
    }
}
