//! Preflight: everything a run needs that can be checked in a second or two, checked
//! before anything slow starts, with every problem listed at once (the seeds' "fail fast"
//! validation, issue 5).
//!
//! Checks, in order: every checkout is present; the toolchain each repo will use is
//! installed, with the components its steps need; the filesystems of the checkout root and
//! the cache root have `[preflight] min-free-gb` free; the secrets the requested work needs
//! are set (their values are never printed); the inputs agree (`--only` names repos, a
//! release has a version and a ref).
//!
//! Budget: under 2 seconds on the sample chain. So this module never runs `cargo metadata`
//! or anything that touches the network: toolchains are probed with `rustc -vV` (one thread
//! per repo, `RUSTUP_AUTO_INSTALL=0` so rustup reports a missing pin instead of
//! downloading it).

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use serde::Serialize;

use crate::engine::manifest::{Manifest, Repo, RepoKind};
use crate::engine::toolchain::{self, Choice};
use crate::support::disk::free_bytes;
use crate::support::env::process_env;
use crate::support::exit::Exit;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The run cannot succeed: it must not start (exit code 2).
    Fatal,
    /// Worth knowing, does not stop the run (e.g. a notification secret is missing).
    Warning,
}

/// One problem found by [`check`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Fatal or warning.
    pub severity: Severity,
    /// Which check found it: `checkout`, `toolchain`, `disk`, `secret` or `inputs`.
    pub check: &'static str,
    /// What is wrong and how to fix it (never a secret's value).
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self.severity {
            Severity::Fatal => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{word} [{}] {}", self.check, self.message)
    }
}

/// Release inputs (`--release`), checked for consistency.
#[derive(Debug, Clone, Default)]
pub struct Release {
    /// Version being released (`1.2.3`, `1.2.3-rc.1`).
    pub version: Option<String>,
    /// Git ref to release from (tag, branch or commit).
    pub git_ref: Option<String>,
}

/// What the caller is about to do, and where.
pub struct Request<'a> {
    /// Checkout root (the manifest's `root` unless `--root` overrides it).
    pub root: PathBuf,
    /// Cache root.
    pub cache_root: PathBuf,
    /// `--toolchain` for every repo, if given.
    pub toolchain: Option<String>,
    /// `--only` names (must be repos of the manifest).
    pub only: Vec<String>,
    /// `--variant`, if given.
    pub variant: Option<String>,
    /// Variables any of which may hold the token `cargo xtask chain` needs, in order of
    /// preference (`[chain] token-env`, then `GITHUB_TOKEN`); empty when no dispatch is
    /// planned.
    pub token_envs: Vec<String>,
    /// Release inputs, when a release was asked for.
    pub release: Option<Release>,
    /// Environment lookup (tests pass their own; the CLI passes [`process_env`]).
    pub env: &'a dyn Fn(&str) -> Option<String>,
}

/// Run every check and return every problem found, fatal ones first (stable within a
/// severity: checkouts, toolchains, disk, secrets, inputs). Never fails: a check that cannot
/// run is itself reported as a problem.
pub fn check(manifest: &Manifest, req: &Request<'_>) -> Vec<Problem> {
    let mut out = Vec::new();
    let present = check_checkouts(manifest, req, &mut out);
    check_toolchains(manifest, req, &present, &mut out);
    check_disk(manifest, req, &mut out);
    check_secrets(manifest, req, &mut out);
    check_inputs(manifest, req, &mut out);
    check_compiler_cache(manifest, req, &mut out);
    out.sort_by_key(|p| p.severity);
    out
}

fn fatal(check: &'static str, message: String) -> Problem {
    Problem {
        severity: Severity::Fatal,
        check,
        message,
    }
}

fn warning(check: &'static str, message: String) -> Problem {
    Problem {
        severity: Severity::Warning,
        check,
        message,
    }
}

/// Every repo's checkout (the graph needs all of them, not only `--only`); returns the
/// names of the repos whose checkout is there.
fn check_checkouts(m: &Manifest, req: &Request<'_>, out: &mut Vec<Problem>) -> BTreeSet<String> {
    let mut present = BTreeSet::new();
    for r in &m.repos {
        let dir = Manifest::checkout_dir(&req.root, r);
        if !dir.is_dir() {
            out.push(fatal(
                "checkout",
                format!(
                    "{}: expected a checkout at {}: run `cargo xtask checkout` (or pass --root DIR where the checkouts are)",
                    r.name,
                    dir.display()
                ),
            ));
        } else if r.kind == RepoKind::Cargo && !dir.join("Cargo.toml").is_file() {
            out.push(fatal(
                "checkout",
                format!(
                    "{}: {} has no Cargo.toml: check the repo's `path` in {}, or set `kind = \"docs\"` for a documents-only repo",
                    r.name,
                    dir.display(),
                    m.path.display()
                ),
            ));
        } else {
            present.insert(r.name.clone());
        }
    }
    present
}

/// The components a repo's steps need: `clippy` for a clippy step, `rustfmt` for fmt.
fn components_needed(r: &Repo) -> Vec<(&'static str, &'static str)> {
    let mut need = Vec::new();
    let uses = |word: &str| {
        r.steps
            .iter()
            .any(|s| s.program == "cargo" && s.args.first().is_some_and(|a| a == word))
    };
    if uses("clippy") {
        need.push(("clippy", "cargo-clippy"));
    }
    if uses("fmt") {
        need.push(("rustfmt", "rustfmt"));
    }
    need
}

fn run_quiet(
    dir: &Path,
    program: &str,
    args: &[&str],
    toolchain: Option<&str>,
) -> Result<(), String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .current_dir(dir)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env("RUST_BACKTRACE", "0");
    if let Some(t) = toolchain {
        cmd.env("RUSTUP_TOOLCHAIN", t);
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Ok(()),
        Ok(o) => Err(String::from_utf8_lossy(&o.stderr)
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no output")
            .trim()
            .to_owned()),
        Err(e) => Err(format!("cannot run `{program}`: {e}")),
    }
}

/// Probe the toolchain of every present cargo repo in parallel, as the plan will choose
/// it ([`Choice`], the one toolchain rule): `rustc -vV` in the checkout, then the
/// components its steps need. A `RUSTUP_TOOLCHAIN` someone set on purpose for `cargo
/// xtask` is ignored by the run, which is worth a warning.
fn check_toolchains(
    m: &Manifest,
    req: &Request<'_>,
    present: &BTreeSet<String>,
    out: &mut Vec<Problem>,
) {
    if let Some(t) = toolchain::deliberate_override() {
        out.push(warning(
            "toolchain",
            format!(
                "RUSTUP_TOOLCHAIN={t} from the environment is ignored: each repo builds with its own toolchain pin\n  fix: pass --toolchain {t} to use it for every repo"
            ),
        ));
    }
    let results: Vec<Probed> = std::thread::scope(|s| {
        let handles: Vec<_> = m
            .repos
            .iter()
            .filter(|r| r.kind == RepoKind::Cargo && present.contains(&r.name))
            .map(|r| {
                let dir = Manifest::checkout_dir(&req.root, r);
                let choice =
                    Choice::resolve(None, req.toolchain.as_deref(), r.toolchain.as_deref(), &dir);
                s.spawn(move || probe_toolchain(r, &dir, choice))
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).collect()
    });
    out.extend(cannot_run_problems(&results));
    out.extend(results.into_iter().flat_map(|p| p.problems));
}

/// What probing one repo's toolchain found.
struct Probed {
    /// The repo.
    repo: String,
    /// Its toolchain choice.
    choice: Choice,
    /// The toolchain cannot run `rustc -vV`: the toolchain rule's message (first line,
    /// rustup's error; last line, the fix), without rustup's help and backtrace.
    cannot_run: Option<String>,
    /// Other problems (missing components).
    problems: Vec<Problem>,
}

/// The problems of one repo's toolchain: it cannot run, or lacks a component.
fn probe_toolchain(r: &Repo, dir: &Path, choice: Choice) -> Probed {
    let mut probed = Probed {
        repo: r.name.clone(),
        cannot_run: None,
        problems: Vec::new(),
        choice,
    };
    let pin = probed.choice.describe();
    let effective = probed.choice.override_name().map(str::to_owned);
    // The toolchain rule's own message: it blames where the choice came from.
    if let Err(e) = crate::engine::metadata::rustc_version(dir, &probed.choice) {
        probed.cannot_run = Some(clean_toolchain_error(&format!("{e:#}")));
        return probed;
    }
    probed.problems = components_needed(r)
        .into_iter()
        .filter_map(|(component, binary)| {
            run_quiet(dir, binary, &["--version"], effective.as_deref()).err().map(|e| {
                fatal(
                    "toolchain",
                    format!(
                        "{}: the toolchain pinned by {pin} lacks `{component}`, which the repo's steps use: {e}\n  fix: `rustup component add {component}` for that toolchain, or list it under `components` in rust-toolchain.toml",
                        r.name
                    ),
                )
            })
        })
        .collect();
    probed
}

/// The toolchain rule's error for a toolchain that cannot run, reduced to its first line
/// (which toolchain, and rustup's `error:`) and its `fix:` line: rustup's own `help:`
/// lines and the backtrace it prints when `RUST_BACKTRACE` is set say nothing more.
fn clean_toolchain_error(e: &str) -> String {
    let first = e.lines().next().unwrap_or("").trim_end();
    match e.lines().rev().find(|l| l.trim_start().starts_with("fix:")) {
        Some(fix) => format!(
            "{first}\n  fix: {}",
            fix.trim_start().trim_start_matches("fix:").trim()
        ),
        None => first.to_owned(),
    }
}

/// One problem per toolchain that cannot run, naming every repo that would build with
/// it: a machine without the chain's pinned 1.88.0 hears it once, with the fix, not once
/// per repo. A toolchain only one repo uses keeps the toolchain rule's own message (it
/// blames where the choice came from).
fn cannot_run_problems(results: &[Probed]) -> Vec<Problem> {
    let mut groups: Vec<(Option<String>, Vec<&Probed>)> = Vec::new();
    for p in results.iter().filter(|p| p.cannot_run.is_some()) {
        let name = p.choice.name();
        match groups.iter_mut().find(|(n, _)| n.is_some() && *n == name) {
            Some((_, members)) => members.push(p),
            None => groups.push((name, vec![p])),
        }
    }
    groups
        .into_iter()
        .map(|(name, members)| match (name, members.as_slice()) {
            (Some(name), [_, _, ..]) => {
                fatal("toolchain", shared_toolchain_message(&name, &members))
            }
            (_, members) => {
                let p = members[0];
                fatal(
                    "toolchain",
                    format!("{}: {}", p.repo, p.cannot_run.as_deref().unwrap_or("")),
                )
            }
        })
        .collect()
}

/// The one message for toolchain `name` that several repos (`members`) would build with
/// and that cannot run: which repos and why they use it, rustup's error, and the two
/// ways out (install it, or build with what is installed).
fn shared_toolchain_message(name: &str, members: &[&Probed]) -> String {
    let repos: Vec<&str> = members.iter().map(|p| p.repo.as_str()).collect();
    let mut by_source: Vec<(String, Vec<&str>)> = Vec::new();
    for p in members {
        let why = p.choice.describe();
        match by_source.iter_mut().find(|(w, _)| *w == why) {
            Some((_, rs)) => rs.push(&p.repo),
            None => by_source.push((why, vec![&p.repo])),
        }
    }
    let sources: Vec<String> = by_source
        .iter()
        .map(|(why, rs)| format!("{why} ({})", rs.join(", ")))
        .collect();
    let rustup = members[0]
        .cannot_run
        .as_deref()
        .and_then(|e| e.lines().next())
        .and_then(|l| l.find("error:").map(|i| l[i..].to_owned()))
        .unwrap_or_else(|| "it cannot run `rustc -vV`".to_owned());
    let flagged = members
        .iter()
        .any(|p| matches!(p.choice.source, crate::engine::toolchain::Source::Flag(_)));
    let other = if flagged {
        "pass another --toolchain".to_owned()
    } else {
        format!(
            "pass `--toolchain stable` to build every repo with an installed toolchain (the summary then marks lint failures newer than {name} as such)"
        )
    };
    format!(
        "toolchain {name} cannot run, and {} repos build with it: {}\n  rustup: {rustup}\n  chosen by: {}\n  fix: install it (`rustup toolchain install {name} --component clippy,rustfmt`), or {other}",
        repos.len(),
        repos.join(", "),
        sources.join("; ")
    )
}

fn check_disk(m: &Manifest, req: &Request<'_>, out: &mut Vec<Problem>) {
    let floor_gb = m.preflight.min_free_gb;
    if floor_gb <= 0.0 {
        return;
    }
    let floor = (floor_gb * (1u64 << 30) as f64) as u64;
    let mut seen = BTreeSet::new();
    for (what, path) in [
        ("checkout root", &req.root),
        ("cache root", &req.cache_root),
    ] {
        match free_bytes(path) {
            Some((free, dev)) => {
                if !seen.insert(dev) {
                    continue;
                }
                if free < floor {
                    out.push(fatal(
                        "disk",
                        format!(
                            "only {:.1} GiB free on the filesystem of the {what} {} (the manifest's `[preflight] min-free-gb` is {floor_gb}): free space (`cargo xtask cache list`, remove old target dirs) or lower the floor",
                            free as f64 / (1u64 << 30) as f64,
                            path.display()
                        ),
                    ));
                }
            }
            None => out.push(warning(
                "disk",
                format!("cannot read free space for the {what} {}", path.display()),
            )),
        }
    }
}

fn check_secrets(m: &Manifest, req: &Request<'_>, out: &mut Vec<Problem>) {
    if !req.token_envs.is_empty() && !req.token_envs.iter().any(|v| (req.env)(v).is_some()) {
        out.push(fatal(
            "secret",
            format!(
                "no token for dispatching to downstream repos: set {} (a token with `contents: write` on the downstream repos; the workflow's own GITHUB_TOKEN reaches only its repo)",
                req.token_envs.join(" or ")
            ),
        ));
    }
    let hooks = [
        ("Slack", m.notify.slack_webhook_env.as_deref()),
        ("Discord", m.notify.discord_webhook_env.as_deref()),
    ];
    for (service, var) in hooks {
        let Some(var) = var else { continue };
        match (req.env)(var) {
            None => out.push(warning(
                "secret",
                format!(
                    "{var} is unset or empty, so no {service} notification will be sent: add the webhook URL as a secret and pass it in the workflow's `env`, or remove it from `[notify]`"
                ),
            )),
            Some(url) if !(url.starts_with("https://") || url.starts_with("http://")) => {
                out.push(warning(
                    "secret",
                    format!("{var} does not hold a webhook URL (it should start with https://): check the secret's value"),
                ))
            }
            Some(_) => {}
        }
    }
}

/// `[cache] compiler-cache = "sccache"` requires sccache: without it the run cannot start
/// (fail closed, with the install command). The default `auto` only notes a missing
/// sccache when the run starts (`job`), and a wrapper of the caller's is used as is.
fn check_compiler_cache(m: &Manifest, req: &Request<'_>, out: &mut Vec<Problem>) {
    use crate::cache::settings::CompilerCacheMode;
    use crate::engine::compiler_cache;
    if m.cache.compiler_cache != CompilerCacheMode::Sccache
        || compiler_cache::caller_wrapper(req.env).is_some()
        || compiler_cache::find_sccache().is_some()
    {
        return;
    }
    out.push(fatal(
        "compiler-cache",
        format!(
            "`[cache] compiler-cache = \"sccache\"` needs sccache on PATH: install it with \
             `{}`, or set `compiler-cache = \"auto\"` to build without it",
            compiler_cache::INSTALL
        ),
    ));
}

/// `1.2.3`, `1.2.3-rc.1`, `1.2.3+build`, with an optional leading `v`.
fn is_version(v: &str) -> bool {
    let v = v.strip_prefix('v').unwrap_or(v);
    let core = v.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

fn check_inputs(m: &Manifest, req: &Request<'_>, out: &mut Vec<Problem>) {
    let known: Vec<&str> = m.repos.iter().map(|r| r.name.as_str()).collect();
    for o in &req.only {
        if !known.contains(&o.as_str()) {
            out.push(fatal(
                "inputs",
                format!(
                    "--only {o} names no repo of the manifest (known: {})",
                    known.join(", ")
                ),
            ));
        }
    }
    if let Some(v) = &req.variant {
        let listed = m.repos.iter().any(|r| r.features.contains_key(v));
        if !listed && *v != m.defaults.variant {
            out.push(warning(
                "inputs",
                format!("variant `{v}` is listed by no repo's `features`: every repo builds its default features"),
            ));
        }
    }
    if let Some(rel) = &req.release {
        match rel.version.as_deref() {
            None => out.push(fatal(
                "inputs",
                "a release needs a version: pass --release-version X.Y.Z".into(),
            )),
            Some(v) if !is_version(v) => out.push(fatal(
                "inputs",
                format!(
                    "release version `{v}` is not of the form X.Y.Z (optionally -pre or +build)"
                ),
            )),
            Some(_) => {}
        }
        match rel.git_ref.as_deref() {
            None => out.push(fatal(
                "inputs",
                "a release needs a ref to build from: pass --ref TAG-OR-BRANCH".into(),
            )),
            Some(r) if r.is_empty() || r.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                out.push(fatal(
                    "inputs",
                    format!("release ref `{r}` is not a valid git ref"),
                ))
            }
            Some(_) => {}
        }
    }
}

/// Print `problems` (to stderr) and a verdict line; returns whether any is fatal. In
/// GitHub Actions each problem is also an `::error`/`::warning` annotation on stdout, so it
/// shows on the run's page without opening the log.
pub fn report(problems: &[Problem], secs: f64) -> bool {
    let fatal = problems
        .iter()
        .filter(|p| p.severity == Severity::Fatal)
        .count();
    for p in problems {
        eprintln!("preflight: {p}");
    }
    if crate::report::gha::enabled() {
        for p in problems {
            println!("{}", annotation(p));
        }
    }
    if fatal > 0 {
        eprintln!(
            "preflight: {fatal} fatal problem(s), {} warning(s) in {secs:.2} s: the run was not started",
            problems.len() - fatal
        );
    } else {
        eprintln!(
            "preflight: ok ({} warning(s)) in {secs:.2} s",
            problems.len()
        );
    }
    fatal > 0
}

/// The GitHub Actions workflow command for `p` (GitHub's escaping rules, via [`crate::report::gha`]).
pub fn annotation(p: &Problem) -> String {
    let level = match p.severity {
        Severity::Fatal => "error",
        Severity::Warning => "warning",
    };
    format!(
        "::{level} title={}::{}",
        crate::report::gha::escape_property(&format!("preflight: {}", p.check)),
        crate::report::gha::escape_data(&p.message)
    )
}

/// What a run was asked to select (the plan flags preflight looks at), as the command line
/// gives them; `commands` converts its flags into this.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// `--root`: the checkout root, over the manifest's `root`.
    pub root: Option<PathBuf>,
    /// `--toolchain` for every repo.
    pub toolchain: Option<String>,
    /// `--only` names.
    pub only: Vec<String>,
    /// `--variant`.
    pub variant: Option<String>,
}

/// The request `ci` makes before it resolves: no dispatch token, no release inputs.
pub fn ci_request<'a>(manifest: &Manifest, sel: &Selection, cache_root: &Path) -> Request<'a> {
    Request {
        root: sel.root.clone().unwrap_or_else(|| manifest.root.clone()),
        cache_root: cache_root.to_path_buf(),
        toolchain: sel.toolchain.clone(),
        only: sel.only.clone(),
        variant: sel.variant.clone(),
        token_envs: Vec::new(),
        release: None,
        env: &process_env,
    }
}

/// For `ci`: run the checks, print the problems, and return `Some(exit code 2)` when one is
/// fatal (the caller returns it; the `[notify]` webhooks are told the run did not start),
/// `None` to go on. `sel` is anything convertible into a [`Selection`] (`ci` passes its
/// `&flags::Resolve`; the conversion lives in `commands::preflight`).
pub fn gate(manifest: &Manifest, sel: impl Into<Selection>, cache_root: &Path) -> Option<ExitCode> {
    let sel = sel.into();
    let start = Instant::now();
    let problems = check(manifest, &ci_request(manifest, &sel, cache_root));
    if problems.is_empty() {
        return None;
    }
    let fatal = report(&problems, start.elapsed().as_secs_f64());
    if fatal {
        let variant = sel
            .variant
            .clone()
            .unwrap_or_else(|| manifest.defaults.variant.clone());
        crate::report::notify::preflight_failed(
            manifest,
            &variant,
            &problems[0].message,
            cache_root,
        );
    }
    fatal.then(|| Exit::CouldNotRun.into())
}

/// Whether any of `problems` is fatal.
pub fn any_fatal(problems: &[Problem]) -> bool {
    problems.iter().any(|p| p.severity == Severity::Fatal)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_become_escaped_annotations() {
        let p = fatal("toolchain", "a: cannot run: 100%\n  fix: install it".into());
        assert_eq!(
            annotation(&p),
            "::error title=preflight%3A toolchain::a: cannot run: 100%25%0A  fix: install it"
        );
    }

    #[test]
    fn versions() {
        for ok in ["1.2.3", "v0.10.0", "1.0.0-rc.1", "1.0.0+b7"] {
            assert!(is_version(ok), "{ok}");
        }
        for bad in ["1.2", "1.2.x", "", "1.2.3 ", "latest"] {
            assert!(!is_version(bad), "{bad}");
        }
    }

    #[test]
    fn webhook_values_never_appear_in_problems() {
        let m = Manifest::parse(
            "[notify]\nslack-webhook-env = \"HOOK\"\n[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nkind = \"docs\"\n",
            Path::new("ci/chain.toml"),
        )
        .unwrap();
        let env = |k: &str| (k == "HOOK").then(|| "not-a-url-secret-value".to_owned());
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("a")).unwrap();
        let req = Request {
            root: dir.path().to_path_buf(),
            cache_root: dir.path().to_path_buf(),
            toolchain: None,
            only: vec![],
            variant: None,
            token_envs: vec!["TOKEN".into()],
            release: Some(Release::default()),
            env: &env,
        };
        let probs = check(&m, &req);
        let text: Vec<String> = probs.iter().map(|p| p.to_string()).collect();
        assert_eq!(probs.len(), 4, "{text:#?}"); // token, version, ref (fatal); hook (warning)
        assert!(
            text.iter().all(|t| !t.contains("secret-value")),
            "{text:#?}"
        );
        assert_eq!(probs[3].severity, Severity::Warning);
        assert!(
            text[3].contains("HOOK does not hold a webhook URL"),
            "{text:#?}"
        );
    }
}
