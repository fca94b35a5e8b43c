//! Notifications after `ci`: a Slack and/or Discord message when a run fails, and when a
//! run succeeds after a failed one (recovery), as the seeds' "real-time notifications"
//! propose (issue 5).
//!
//! The message names the failed repo and step, the first error line of the step's log (for
//! failing tests: the first failing test, its panic message and place), the failing tests,
//! the fix the error knowledge base suggests ([`crate::report::explain`], the hint of the
//! run's summary when there is one), and the GitHub Actions run URL
//! (`GITHUB_SERVER_URL`/`GITHUB_REPOSITORY`/`actions/runs/GITHUB_RUN_ID`).
//!
//! Invariants: a notification never changes a build's result (every failure here is a
//! printed warning); a webhook URL is a secret and is never printed, not even inside an
//! HTTP client's error message ([`redact`]); one webhook call takes at most
//! `[notify] timeout` seconds in all.
//!
//! State: the last status of each chain (manifest and variant) is kept in
//! `<cache root>/notify/state.json`, so a success after a failure can be announced. Runs
//! restricted with `--only` share that state with full runs.
//!
//! Only trusted runs speak for the chain ([`crate::github::events::Event::untrusted`]):
//! an untrusted run (a pull request, a fork, an unknown dispatch source, ...) sends
//! nothing and records nothing, so its failure is never announced as the chain's and a
//! later success is never a "recovery" from it (issue 13).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::engine::manifest::Manifest;
use crate::engine::summary::{RepoStatus, RunSummary};

/// Format version of `notify/state.json`.
pub const STATE_SCHEMA_VERSION: u32 = 1;

/// Why a message is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The run failed.
    Failure,
    /// The run succeeded and the previous run of the same chain had failed.
    Recovery,
}

/// Everything a message says, independent of the service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// Failure or recovery.
    pub kind: Kind,
    /// Which chain: `GITHUB_REPOSITORY` when set, else the manifest path.
    pub chain: String,
    /// Variant built.
    pub variant: String,
    /// Run id (the run directory's name).
    pub run_id: String,
    /// First failed repo (failures only).
    pub repo: Option<String>,
    /// Its failed step (absent when the repo failed before any step, e.g. unresolved).
    pub step: Option<String>,
    /// First error line of the step's log, else the first line of the failure reason.
    pub first_error: Option<String>,
    /// The first fix the error knowledge base suggests for the log.
    pub fix: Option<String>,
    /// The failed repo's failing tests, `name (file:line:col): first line of the panic`
    /// (at most [`MAX_TESTS`]).
    pub failed_tests: Vec<String>,
    /// Other repos that failed in the same run.
    pub also_failed: Vec<String>,
    /// GitHub Actions run page, when running there.
    pub run_url: Option<String>,
}

/// Failing tests a message lists.
pub const MAX_TESTS: usize = 5;

/// The run page, from `GITHUB_SERVER_URL` (default `https://github.com`),
/// `GITHUB_REPOSITORY` and `GITHUB_RUN_ID`; `None` outside GitHub Actions.
pub fn run_url(env: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    let repo = env("GITHUB_REPOSITORY")?;
    let id = env("GITHUB_RUN_ID")?;
    let server = env("GITHUB_SERVER_URL").unwrap_or_else(|| "https://github.com".into());
    Some(format!(
        "{}/{repo}/actions/runs/{id}",
        server.trim_end_matches('/')
    ))
}

/// What notifications need to know about a finished run, taken from its
/// [`RunSummary`] by [`Outcome::from_summary`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Run id.
    pub run_id: String,
    /// Variant built.
    pub variant: String,
    /// The first failed repo, if any.
    pub failure: Option<Failure>,
    /// Other repos that failed.
    pub also_failed: Vec<String>,
}

/// The first failure of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// Repo name.
    pub repo: String,
    /// The step that failed and its log file, when one ran.
    pub step: Option<(String, PathBuf)>,
    /// The step's first compiler error from cargo's JSON diagnostics (GitHub Actions
    /// runs), as `error[E0308]: mismatched types (src/lib.rs:3:9)`; preferred over the log.
    pub diagnostic: Option<String>,
    /// The summary's reason (first line used when the log has no error line).
    pub reason: String,
    /// The repo's failing tests (from the summary).
    pub tests: Vec<crate::engine::testing::FailedTest>,
    /// The repo's first hint in the summary (`[id] title: fix`), computed with what the
    /// run knows beyond the log (toolchain, registry versions); preferred over a scan
    /// of the log.
    pub hint: Option<String>,
}

/// The last step of `r` that did not succeed.
fn failed_step(
    r: &crate::engine::summary::RepoReport,
) -> Option<&crate::engine::summary::StepReport> {
    r.steps.iter().rev().find(|s| !s.ok())
}

/// `error[E0308]: mismatched types (src/lib.rs:3:9)`, rustc's own first line with the place.
fn describe_diagnostic(d: &crate::support::exec::Diagnostic) -> String {
    let code = d
        .code
        .as_deref()
        .map(|c| format!("[{c}]"))
        .unwrap_or_default();
    let place = match (&d.file, d.line, d.col) {
        (Some(f), Some(l), Some(c)) => format!(" ({f}:{l}:{c})"),
        (Some(f), _, _) => format!(" ({f})"),
        _ => String::new(),
    };
    format!("{}{code}: {}{place}", d.level, d.message)
}

impl Outcome {
    /// The run's outcome: its first failed repo (in plan order) and failed step.
    pub fn from_summary(summary: &RunSummary) -> Outcome {
        let failed: Vec<_> = summary
            .repos
            .iter()
            .filter_map(|r| match &r.status {
                RepoStatus::Failed(why) => Some((r, why)),
                _ => None,
            })
            .collect();
        Outcome {
            run_id: summary.run_id.clone(),
            variant: summary.variant.clone(),
            failure: failed.first().map(|(r, why)| Failure {
                repo: r.name.clone(),
                step: failed_step(r).map(|s| (s.name.clone(), PathBuf::from(&s.log))),
                diagnostic: failed_step(r)
                    .and_then(|s| s.errors.first())
                    .map(describe_diagnostic),
                reason: (*why).clone(),
                tests: r.failed_tests.clone(),
                hint: r.hints.first().cloned(),
            }),
            also_failed: failed.iter().skip(1).map(|(r, _)| r.name.clone()).collect(),
        }
    }

    /// Whether the run failed.
    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }
}

/// Build the notice for a finished run (reads the failed step's log for its first error
/// and the suggested fix).
pub fn notice(
    kind: Kind,
    chain: &str,
    outcome: &Outcome,
    env: &dyn Fn(&str) -> Option<String>,
) -> Notice {
    let mut n = Notice {
        kind,
        chain: chain.to_owned(),
        variant: outcome.variant.clone(),
        run_id: outcome.run_id.clone(),
        repo: None,
        step: None,
        first_error: None,
        fix: None,
        failed_tests: Vec::new(),
        also_failed: outcome.also_failed.clone(),
        run_url: run_url(env),
    };
    let Some(f) = outcome.failure.as_ref().filter(|_| kind == Kind::Failure) else {
        return n;
    };
    n.repo = Some(f.repo.clone());
    n.failed_tests = f
        .tests
        .iter()
        .take(MAX_TESTS)
        .map(|t| format!("{}: {}", t.title(), t.headline()))
        .collect();
    // A failing test says more than the test runner's closing `error: test run failed`.
    let first_test = f
        .tests
        .first()
        .map(|t| format!("test {} failed: {}", t.title(), t.headline()));
    if let Some((step, log)) = &f.step {
        n.step = Some(step.clone());
        if let Ok(bytes) = std::fs::read(log) {
            let log = String::from_utf8_lossy(&bytes);
            n.first_error = f
                .diagnostic
                .clone()
                .or_else(|| first_test.clone())
                .or_else(|| crate::report::explain::first_error(&log));
            n.fix = crate::report::explain::suggest(&log)
                .into_iter()
                .next()
                .map(|m| format!("{} ({})", m.fix, m.id));
        }
    }
    if n.first_error.is_none() {
        n.first_error = f
            .diagnostic
            .clone()
            .or(first_test)
            .or_else(|| f.reason.lines().next().map(str::to_owned));
    }
    if let Some(h) = &f.hint {
        n.fix = Some(h.clone());
    }
    n
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
    t.push('…');
    t
}

fn headline(n: &Notice) -> String {
    match n.kind {
        Kind::Failure => format!(
            "❌ {} failed: {}{}",
            n.chain,
            n.repo.as_deref().unwrap_or("?"),
            n.step
                .as_deref()
                .map(|s| format!(" / {s}"))
                .unwrap_or_default()
        ),
        Kind::Recovery => format!("✅ {} is green again", n.chain),
    }
}

/// Slack incoming-webhook payload (Block Kit, with `text` as the notification fallback).
/// Limits respected: header text 150 characters, section text 3000.
pub fn slack_payload(n: &Notice) -> Value {
    let head = cut(&headline(n), 150);
    let mut fields = vec![json!({"type": "mrkdwn", "text": format!("*Variant:* {}", n.variant)})];
    if let Some(r) = &n.repo {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Repo:* {r}")}));
    }
    if let Some(s) = &n.step {
        fields.push(json!({"type": "mrkdwn", "text": format!("*Step:* {s}")}));
    }
    fields.push(json!({"type": "mrkdwn", "text": match &n.run_url {
        Some(u) => format!("*Run:* <{u}|{}>", n.run_id),
        None => format!("*Run:* {}", n.run_id),
    }}));
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": head}}),
        json!({"type": "section", "fields": fields}),
    ];
    if let Some(e) = &n.first_error {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&format!("*First error:*\n```{e}```"), 3000)}}));
    }
    if !n.failed_tests.is_empty() {
        let list: String = n.failed_tests.iter().map(|t| format!("• {t}\n")).collect();
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&format!("*Failing tests:*\n{list}"), 3000)}}));
    }
    if let Some(f) = &n.fix {
        blocks.push(json!({"type": "section", "text": {"type": "mrkdwn",
            "text": cut(&format!("*Suggested fix:* {f}"), 3000)}}));
    }
    if !n.also_failed.is_empty() {
        blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": cut(&format!("Also failed: {}", n.also_failed.join(", ")), 3000)}]}));
    }
    json!({"text": head, "blocks": blocks})
}

/// Discord webhook payload: one embed, red for a failure and green for a recovery.
/// Limits respected: title 256 characters, description 4096, field value 1024.
pub fn discord_payload(n: &Notice) -> Value {
    let mut fields = vec![json!({"name": "Variant", "value": n.variant, "inline": true})];
    if let Some(r) = &n.repo {
        fields.push(json!({"name": "Repo", "value": r, "inline": true}));
    }
    if let Some(s) = &n.step {
        fields.push(json!({"name": "Step", "value": s, "inline": true}));
    }
    if !n.failed_tests.is_empty() {
        let list: String = n.failed_tests.iter().map(|t| format!("• {t}\n")).collect();
        fields.push(json!({"name": "Failing tests", "value": cut(list.trim_end(), 1024)}));
    }
    if let Some(f) = &n.fix {
        fields.push(json!({"name": "Suggested fix", "value": cut(f, 1024)}));
    }
    if !n.also_failed.is_empty() {
        fields.push(json!({"name": "Also failed", "value": cut(&n.also_failed.join(", "), 1024)}));
    }
    let mut description = match &n.first_error {
        Some(e) => format!("```\n{e}\n```"),
        None => String::new(),
    };
    if let Some(u) = &n.run_url {
        description += &format!("\n[View run {}]({u})", n.run_id);
    } else {
        description += &format!("\nRun {}", n.run_id);
    }
    let mut embed = json!({
        "title": cut(&headline(n), 256),
        "description": cut(description.trim(), 4096),
        "color": if n.kind == Kind::Failure { 15158332 } else { 3066993 },
        "fields": fields,
    });
    if let Some(u) = &n.run_url {
        embed["url"] = json!(u);
    }
    json!({"username": "bllvm CI", "embeds": [embed]})
}

/// Replace every occurrence of the secret `url` (and of its path, which holds the token)
/// in `text`.
pub fn redact(text: &str, url: &str) -> String {
    let mut s = text.replace(url, "<webhook URL>");
    if let Some(rest) = url.split_once("://").map(|(_, r)| r) {
        if let Some((_, path)) = rest.split_once('/') {
            if path.len() >= 4 {
                s = s.replace(path, "<redacted>");
            }
        }
    }
    s
}

/// POST `payload` as JSON to `url` within `timeout` (connect, send and answer together).
///
/// Errors: connection, timeout or a non-2xx answer, as text with the URL redacted.
pub fn post(url: &str, payload: &Value, timeout: Duration) -> std::result::Result<(), String> {
    match crate::support::http::post_json(url, payload.to_string(), timeout) {
        Ok(status) if status.is_success() => Ok(()),
        Ok(status) => Err(format!("the webhook answered HTTP {}", status.as_u16())),
        Err(e) => Err(redact(&e, url)),
    }
}

/// The last status of each chain, `<cache root>/notify/state.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Format version ([`STATE_SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// Chain key (manifest path and variant) → last run.
    pub chains: BTreeMap<String, LastRun>,
}

/// One chain's last run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastRun {
    /// Whether it failed.
    pub failed: bool,
    /// Its run id.
    pub run_id: String,
}

/// Path of the state file under `cache_root`.
pub fn state_path(cache_root: &Path) -> PathBuf {
    cache_root.join("notify").join("state.json")
}

impl State {
    /// Read the state; a missing or unreadable file is an empty state (the worst outcome is
    /// one missed recovery message).
    pub fn load(cache_root: &Path) -> State {
        std::fs::read(state_path(cache_root))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Write the state atomically (temporary file, then rename).
    pub fn save(&self, cache_root: &Path) -> Result<()> {
        let path = state_path(cache_root);
        let dir = cache_root.join("notify");
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("create the notification state dir {}", dir.display()))?;
        let tmp = dir.join(format!("state.json.{}", std::process::id()));
        let written = std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("write the notification state {}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, &path)
                    .with_context(|| format!("rename {} over {}", tmp.display(), path.display()))
            });
        if written.is_err() {
            // A full disk leaves a partial temporary file: never keep it.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }
}

/// What to send given the chain's previous run and this one: every failure, and a success
/// that follows a failure when `recovery` is on.
pub fn decide(previous: Option<&LastRun>, failed: bool, recovery: bool) -> Option<Kind> {
    match (failed, previous) {
        (true, _) => Some(Kind::Failure),
        (false, Some(p)) if p.failed && recovery => Some(Kind::Recovery),
        _ => None,
    }
}

/// The configured webhooks whose variable is set: (service, variable, URL).
fn webhooks(
    manifest: &Manifest,
    env: &dyn Fn(&str) -> Option<String>,
) -> Vec<(&'static str, String, String)> {
    let n = &manifest.notify;
    [
        ("Slack", n.slack_webhook_env.as_deref()),
        ("Discord", n.discord_webhook_env.as_deref()),
    ]
    .into_iter()
    .filter_map(|(svc, var)| {
        let var = var?;
        env(var).map(|url| (svc, var.to_owned(), url))
    })
    .collect()
}

/// Send `notice` to every configured webhook whose variable is set, in parallel. Returns
/// one line per webhook (`sent` or a warning); never fails.
pub fn send_all(
    manifest: &Manifest,
    notice: &Notice,
    env: &dyn Fn(&str) -> Option<String>,
    timeout: Duration,
) -> Vec<String> {
    let hooks = webhooks(manifest, env);
    std::thread::scope(|s| {
        let handles: Vec<_> = hooks
            .iter()
            .map(|(svc, var, url)| {
                s.spawn(move || {
                    let payload = if *svc == "Slack" {
                        slack_payload(notice)
                    } else {
                        discord_payload(notice)
                    };
                    match post(url, &payload, timeout) {
                        Ok(()) => format!("notify: {svc} message sent ({var})"),
                        Err(e) => format!(
                            "warning: notify: {svc} webhook ({var}) failed, the build result stands: {e}"
                        ),
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| "warning: notify: sender panicked".into())
            })
            .collect()
    })
}

/// The chain's label in messages.
fn chain_label(manifest: &Manifest, env: &dyn Fn(&str) -> Option<String>) -> String {
    env("GITHUB_REPOSITORY").unwrap_or_else(|| format!("chain {}", manifest.path.display()))
}

/// After `ci`: decide from the stored state whether to notify, send, record this run's
/// status, and return the lines to print. `timeout` overrides `[notify] timeout` (tests).
///
/// With no webhook named in `[notify]`, does nothing at all (not even the state file: a
/// chain without notifications leaves no trace in the cache root).
pub fn after_run_with(
    manifest: &Manifest,
    outcome: &Outcome,
    cache_root: &Path,
    env: &dyn Fn(&str) -> Option<String>,
    timeout: Option<Duration>,
) -> Vec<String> {
    let key = format!(
        "{}#{}",
        std::fs::canonicalize(&manifest.path)
            .unwrap_or_else(|_| manifest.path.clone())
            .display(),
        outcome.variant
    );
    if manifest.notify.slack_webhook_env.is_none() && manifest.notify.discord_webhook_env.is_none()
    {
        return Vec::new();
    }
    let mut state = State::load(cache_root);
    let failed = outcome.failed();
    let mut lines = Vec::new();
    if let Some(kind) = decide(state.chains.get(&key), failed, manifest.notify.recovery) {
        if !webhooks(manifest, env).is_empty() {
            let n = notice(kind, &chain_label(manifest, env), outcome, env);
            let t = timeout.unwrap_or(Duration::from_secs(manifest.notify.timeout.max(1)));
            lines.extend(send_all(manifest, &n, env, t));
        }
    }
    state.schema_version = STATE_SCHEMA_VERSION;
    state.chains.insert(
        key,
        LastRun {
            failed,
            run_id: outcome.run_id.clone(),
        },
    );
    if let Err(e) = state.save(cache_root) {
        lines.push(format!(
            "warning: notify: cannot record the run's status ({e:#}): the next recovery may go unannounced"
        ));
    }
    lines
}

/// Why the run of this process may not notify or record its status (see the module
/// docs): the GitHub event's reason, or an event file that cannot be read (failing
/// closed). `None` for a trusted run.
pub fn untrusted_run(manifest: &Manifest) -> Option<String> {
    match crate::github::events::Event::from_env() {
        Ok(e) => e.untrusted(&crate::github::chain::repo_names(manifest)),
        Err(e) => Some(format!("the GitHub event cannot be read ({e:#})")),
    }
}

/// The line printed instead of notifying for an untrusted run.
fn not_sent(why: &str) -> String {
    format!("notify: nothing sent or recorded: {why}, whose outcome is not the chain's")
}

/// After `ci`, with the process environment: print what [`after_run_with`] returns.
/// An untrusted run (see the module docs) notifies nothing and records nothing.
pub fn after_run(manifest: &Manifest, summary: &RunSummary, cache_root: &Path) {
    if let Some(why) = untrusted_run(manifest) {
        if any_configured(manifest) {
            eprintln!("{}", not_sent(&why));
        }
        return;
    }
    for l in after_run_with(
        manifest,
        &Outcome::from_summary(summary),
        cache_root,
        &crate::support::env::process_env,
        None,
    ) {
        eprintln!("{l}");
    }
}

/// When `ci` cannot start (a fatal preflight problem): notify as for a failed run whose
/// reason is the first fatal problem, with the process environment; print what was done.
/// An untrusted run notifies and records nothing.
pub fn preflight_failed(manifest: &Manifest, variant: &str, problem: &str, cache_root: &Path) {
    if let Some(why) = untrusted_run(manifest) {
        if any_configured(manifest) {
            eprintln!("{}", not_sent(&why));
        }
        return;
    }
    let outcome = Outcome {
        run_id: "preflight".into(),
        variant: variant.to_owned(),
        failure: Some(Failure {
            repo: "(preflight: the run did not start)".into(),
            step: None,
            diagnostic: None,
            reason: problem.to_owned(),
            tests: Vec::new(),
            hint: None,
        }),
        also_failed: Vec::new(),
    };
    for l in after_run_with(
        manifest,
        &outcome,
        cache_root,
        &crate::support::env::process_env,
        None,
    ) {
        eprintln!("{l}");
    }
}

/// Whether `[notify]` names a webhook variable (set or not).
fn any_configured(manifest: &Manifest) -> bool {
    manifest.notify.slack_webhook_env.is_some() || manifest.notify.discord_webhook_env.is_some()
}

/// Whether a webhook is configured in `[notify]` and its variable set in `env`.
pub fn any_webhook(manifest: &Manifest, env: &dyn Fn(&str) -> Option<String>) -> bool {
    !webhooks(manifest, env).is_empty()
}

/// The message `cargo xtask notify` sends to check the secrets: a failure notice that says
/// it is a test, labelled like a real run's.
pub fn test_notice(manifest: &Manifest, env: &dyn Fn(&str) -> Option<String>) -> Notice {
    Notice {
        kind: Kind::Failure,
        chain: chain_label(manifest, env),
        variant: manifest.defaults.variant.clone(),
        run_id: "test".into(),
        repo: Some("(test message)".into()),
        step: Some("notify".into()),
        first_error: Some("this is a test of the bllvm chain CI notifications".into()),
        fix: Some("nothing to fix: `cargo xtask notify` sent it".into()),
        failed_tests: Vec::new(),
        also_failed: Vec::new(),
        run_url: run_url(env),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A webhook on 127.0.0.1 that answers 200 to `n` requests and sends (path, JSON body)
    /// of each to the returned channel.
    fn webhook_server(n: usize) -> (String, mpsc::Receiver<(String, Value)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/services/T1/B2/secret-token",
            l.local_addr().unwrap()
        );
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in l.incoming().take(n) {
                let mut s = stream.unwrap();
                let mut r = BufReader::new(s.try_clone().unwrap());
                let mut first = String::new();
                r.read_line(&mut first).unwrap();
                let path = first.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    r.read_line(&mut h).unwrap();
                    if h == "\r\n" || h.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            len = v.trim().parse().unwrap();
                        }
                    }
                }
                let mut body = vec![0; len];
                r.read_exact(&mut body).unwrap();
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    .unwrap();
                tx.send((path, serde_json::from_slice(&body).unwrap()))
                    .unwrap();
            }
        });
        (url, rx)
    }

    fn manifest(extra: &str) -> Manifest {
        Manifest::parse(
            &format!("{extra}\n[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n"),
            Path::new("ci/chain.toml"),
        )
        .unwrap()
    }

    fn failed_outcome(log: &Path) -> Outcome {
        Outcome {
            run_id: "r1".into(),
            variant: "base".into(),
            failure: Some(Failure {
                repo: "bllvm-node".into(),
                step: Some(("build".into(), log.to_path_buf())),
                diagnostic: None,
                reason: "step `build` exited with code 101".into(),
                tests: Vec::new(),
                hint: None,
            }),
            also_failed: vec![],
        }
    }

    #[test]
    fn decide_failure_and_recovery() {
        let failed = LastRun {
            failed: true,
            run_id: "x".into(),
        };
        let ok = LastRun {
            failed: false,
            run_id: "x".into(),
        };
        assert_eq!(decide(None, true, true), Some(Kind::Failure));
        assert_eq!(decide(Some(&failed), true, true), Some(Kind::Failure));
        assert_eq!(decide(Some(&failed), false, true), Some(Kind::Recovery));
        assert_eq!(decide(Some(&failed), false, false), None);
        assert_eq!(decide(Some(&ok), false, true), None);
        assert_eq!(decide(None, false, true), None);
    }

    #[test]
    fn without_webhooks_nothing_is_sent_or_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let m = manifest("");
        let out = failed_outcome(&dir.path().join("x.log"));
        assert!(after_run_with(&m, &out, dir.path(), &|_| None, None).is_empty());
        assert!(!state_path(dir.path()).exists());
    }

    #[test]
    fn a_json_diagnostic_is_the_first_error_when_there_is_one() {
        let d = crate::support::exec::Diagnostic {
            level: "error".into(),
            message: "mismatched types".into(),
            code: Some("E0308".into()),
            file: Some("src/lib.rs".into()),
            line: Some(3),
            col: Some(9),
            package_dir: None,
        };
        assert_eq!(
            describe_diagnostic(&d),
            "error[E0308]: mismatched types (src/lib.rs:3:9)"
        );
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(&log, "error: linker `cc` not found\n").unwrap();
        let mut o = failed_outcome(&log);
        o.failure.as_mut().unwrap().diagnostic = Some(describe_diagnostic(&d));
        let n = notice(Kind::Failure, "c", &o, &|_| None);
        assert_eq!(
            n.first_error.as_deref(),
            Some("error[E0308]: mismatched types (src/lib.rs:3:9)")
        );
        assert!(n.fix.unwrap().contains("(linker-not-found)"));
    }

    #[test]
    fn failing_tests_are_named_with_their_panic_and_the_summary_hint_is_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("test.log");
        std::fs::write(
            &log,
            "        FAIL [   0.110s] fx tests::bad\nerror: test run failed\n",
        )
        .unwrap();
        let mut o = failed_outcome(&log);
        let f = o.failure.as_mut().unwrap();
        f.step = Some(("test".into(), log.clone()));
        f.tests = vec![crate::engine::testing::FailedTest {
            name: "fx tests::bad".into(),
            message: "assertion `left == right` failed\n  left: 3\n right: 4".into(),
            file: Some("src/lib.rs".into()),
            line: Some(13),
            col: Some(16),
        }];
        f.hint = Some("[tests-failed] 1 test(s) failed: run it locally".into());
        let n = notice(Kind::Failure, "c", &o, &|_| None);
        assert_eq!(
            n.first_error.as_deref(),
            Some("test fx tests::bad (src/lib.rs:13:16) failed: assertion `left == right` failed")
        );
        assert_eq!(
            n.failed_tests,
            ["fx tests::bad (src/lib.rs:13:16): assertion `left == right` failed"]
        );
        assert_eq!(
            n.fix.as_deref(),
            Some("[tests-failed] 1 test(s) failed: run it locally")
        );
        let slack = slack_payload(&n).to_string();
        assert!(
            slack.contains("*Failing tests:*")
                && slack.contains("fx tests::bad (src/lib.rs:13:16)"),
            "{slack}"
        );
        let discord = discord_payload(&n);
        let fields = discord["embeds"][0]["fields"].as_array().unwrap();
        assert!(
            fields.iter().any(|f| f["name"] == "Failing tests"
                && f["value"].as_str().unwrap().contains("fx tests::bad")),
            "{discord}"
        );
    }

    #[test]
    fn redact_removes_url_and_token_path() {
        let u = "https://hooks.slack.com/services/T1/B2/abcdef";
        let t = redact(&format!("io error for {u}: and services/T1/B2/abcdef"), u);
        assert!(!t.contains("abcdef"), "{t}");
    }

    #[test]
    fn failure_then_recovery_reach_both_webhooks_with_the_expected_json() {
        let (slack, slack_rx) = webhook_server(2);
        let (discord, discord_rx) = webhook_server(2);
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("build.log");
        std::fs::write(
            &log,
            "   Compiling bllvm-node\nerror: linker `cc` not found\n  |\n  = note: No such file or directory (os error 2)\n",
        )
        .unwrap();
        let m = manifest("[notify]\nslack-webhook-env = \"S\"\ndiscord-webhook-env = \"D\"\n");
        let env = |k: &str| match k {
            "S" => Some(slack.clone()),
            "D" => Some(discord.clone()),
            "GITHUB_REPOSITORY" => Some("bllvm/bllvm-ci".into()),
            "GITHUB_RUN_ID" => Some("42".into()),
            _ => None,
        };
        let mut outcome = failed_outcome(&log);
        let lines = after_run_with(&m, &outcome, dir.path(), &env, None);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines.iter().all(|l| l.starts_with("notify:")), "{lines:?}");
        assert!(
            lines.iter().all(|l| !l.contains("secret-token")),
            "{lines:?}"
        );

        let bound = Duration::from_secs(30);
        let (path, s) = slack_rx.recv_timeout(bound).unwrap();
        assert_eq!(path, "/services/T1/B2/secret-token");
        assert_eq!(s["text"], "❌ bllvm/bllvm-ci failed: bllvm-node / build");
        let text = s.to_string();
        assert!(text.contains("*Step:* build"), "{text}");
        assert!(text.contains("error: linker `cc` not found"), "{text}");
        assert!(text.contains("Install a C toolchain"), "{text}");
        assert!(
            text.contains("<https://github.com/bllvm/bllvm-ci/actions/runs/42|r1>"),
            "{text}"
        );
        let (_, d) = discord_rx.recv_timeout(bound).unwrap();
        let e = &d["embeds"][0];
        assert_eq!(e["color"], 15158332);
        assert_eq!(
            e["url"],
            "https://github.com/bllvm/bllvm-ci/actions/runs/42"
        );
        assert!(e["description"]
            .as_str()
            .unwrap()
            .contains("linker `cc` not found"));
        assert_eq!(e["fields"][1]["value"], "bllvm-node");

        // Same chain succeeds: one recovery message each; then nothing while it stays green.
        outcome.failure = None;
        outcome.run_id = "r2".into();
        let lines = after_run_with(&m, &outcome, dir.path(), &env, None);
        assert_eq!(lines.len(), 2, "{lines:?}");
        let (_, s) = slack_rx.recv_timeout(bound).unwrap();
        assert_eq!(s["text"], "✅ bllvm/bllvm-ci is green again");
        let (_, d) = discord_rx.recv_timeout(bound).unwrap();
        assert_eq!(d["embeds"][0]["color"], 3066993);
        assert!(after_run_with(&m, &outcome, dir.path(), &env, None).is_empty());
        let st = State::load(dir.path());
        assert_eq!(st.chains.values().next().unwrap().run_id, "r2");
    }

    #[test]
    fn dead_and_hanging_webhooks_are_warnings_bounded_by_the_timeout() {
        // Dead: a port with nothing listening (bound, then closed).
        let dead = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}/hook/dead-secret", l.local_addr().unwrap())
        };
        // Hanging: accepts, reads, never answers, until the client gives up.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let hanging = format!("http://{}/hook/hang-secret", l.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
            }
        });
        let m = manifest("[notify]\nslack-webhook-env = \"S\"\ndiscord-webhook-env = \"D\"\n");
        let env = |k: &str| match k {
            "S" => Some(dead.clone()),
            "D" => Some(hanging.clone()),
            _ => None,
        };
        let dir = tempfile::tempdir().unwrap();
        let outcome = failed_outcome(&dir.path().join("missing.log"));
        let lines = after_run_with(&m, &outcome, dir.path(), &env, Some(Duration::from_secs(1)));
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines.iter().all(|l| l.starts_with("warning: notify:")),
            "{lines:?}"
        );
        assert!(lines.iter().all(|l| !l.contains("secret")), "{lines:?}");
        // The run's status is recorded all the same.
        assert!(
            State::load(dir.path())
                .chains
                .values()
                .next()
                .unwrap()
                .failed
        );
    }
}
