//! Issue 13, sections 4 to 6: secrets never reach a step that was not given them (nor its
//! logs, JUnit report or cache entries), cache entries hold no run output, an untrusted
//! run writes nothing under the cache root and its failure is not the chain's, a
//! dispatch is a success on any 2xx and is acted on once per `dispatch_id`, and I/O
//! errors name the path and the operation.
//!
//! Every fixture is real: cargo workspaces in git repos built by real cargo, the GitHub
//! API and the webhooks as wiremock servers on 127.0.0.1.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use sha2::{Digest, Sha256};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{self, xtask};

/// Secrets in the environment of `ci`, each with a recognisable value: what the
/// manifest names (`CHAIN_PAT` as `[chain] token-env`, `TEAM_HOOK` as a webhook), what
/// GitHub, the `gh` CLI and AWS use, ones that are secrets by their name only, and ones
/// that are secrets by their value only.
const SECRETS: &[(&str, &str)] = &[
    ("GITHUB_TOKEN", "ghp_WITHHELDgithubTOKEN000000000001"),
    ("GH_TOKEN", "gho_WITHHELDghTOKEN0002"),
    ("CHAIN_PAT", "WITHHELDchainPAT0003"),
    ("TEAM_HOOK", "http://127.0.0.1:9/hook/WITHHELDhookURL0004"),
    ("AWS_ACCESS_KEY_ID", "AKIAWITHHELDKEYID0005"),
    ("AWS_SECRET_ACCESS_KEY", "WITHHELDawsSECRET0006"),
    ("AWS_SESSION_TOKEN", "WITHHELDawsSESSION0007"),
    (
        "BLLVM_CI_CACHE_ENDPOINT",
        "http://user:WITHHELDendpoint0008@127.0.0.1:9",
    ),
    ("DEPLOY_API_TOKEN", "WITHHELDdeployTOKEN0009"),
    ("GITHUB_PAT", "WITHHELDpat0011"),
    // Secrets by their value, whatever the name.
    ("UPSTREAM_HINT", "ghp_WITHHELDbyVALUE00000000000000000012"),
    (
        "NOTIFY_TO",
        "https://hooks.slack.com/services/T0/B0/WITHHELDslack0013",
    ),
    (
        "DATABASE_URL",
        "postgres://ci:WITHHELDdbPASS0014@127.0.0.1:9/x",
    ),
];

/// The one secret the manifest passes to one step (`pass-env`).
const PASSED: (&str, &str) = ("REGISTRY_PASSWORD", "PASSEDregistrySECRET0010");

/// A harmless variable every step must still see.
const PLAIN: (&str, &str) = ("PLAIN_MARKER", "visible-to-steps");

/// A crate whose test prints its whole environment (`{name}={value}` lines), then fails
/// when `fail` is set: what a failing test's output puts into logs and JUnit reports.
fn env_printing_lib(fail: bool) -> String {
    format!(
        "//! Fixture crate.\n\n/// A value.\npub fn value() -> u32 {{\n    1\n}}\n\n#[cfg(test)]\nmod tests {{\n    #[test]\n    fn prints_env() {{\n        for (k, v) in std::env::vars() {{\n            println!(\"{{k}}={{v}}\");\n        }}\n        assert!({}, \"fails on purpose\");\n    }}\n}}\n",
        !fail
    )
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter(|e| {
            let b = fs::read(e.path()).unwrap_or_default();
            String::from_utf8_lossy(&b).contains(needle)
        })
        .map(|e| e.into_path())
        .collect()
}

fn nextest() -> bool {
    std::process::Command::new("cargo")
        .args(["nextest", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Rule 1: steps inherit no secret they were not given. `leaky` fails a test that
/// prints its environment (into the step log and nextest's JUnit), `tidy` passes one
/// (its target dir, with nextest's output, is saved as a cache entry); custom steps
/// print their environment with `env`, one with a secret passed through `pass-env`.
/// Afterwards no secret is in any log, report, target dir or cache entry, except the
/// passed one in its own step's log; no entry holds a JUnit report or other run output.
#[test]
fn steps_never_see_a_secret_they_were_not_given() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chain = t.join("chain");
    let m = support::write_chain(
        &chain,
        &[("leaky", &[]), ("tidy", &[])],
        &[
            (
                "leaky",
                "steps = [{ name = \"env\", command = [\"env\"] }, { name = \"given\", command = [\"env\"], pass-env = [\"REGISTRY_PASSWORD\"] }, \"test\"]",
            ),
            ("tidy", "steps = [\"test\"]"),
        ],
    );
    let mut text = fs::read_to_string(&m).unwrap();
    text += super::reliability::ROOMY;
    text += "[chain]\ntoken-env = \"CHAIN_PAT\"\n[notify]\nslack-webhook-env = \"TEAM_HOOK\"\ntimeout = 2\n";
    fs::write(&m, text).unwrap();
    fs::write(chain.join("leaky/src/lib.rs"), env_printing_lib(true)).unwrap();
    fs::write(chain.join("tidy/src/lib.rs"), env_printing_lib(false)).unwrap();
    support::git_commit_all(&chain.join("leaky"));
    support::git_commit_all(&chain.join("tidy"));
    let (cache, run) = (t.join("cache"), t.join("run"));
    let mut c = xtask();
    for (k, v) in SECRETS.iter().chain([&PASSED, &PLAIN]) {
        c.env(k, v);
    }
    let out = c
        .args(["ci", "--quiet", "--keep-going", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--run-dir")
        .arg(&run)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "leaky's test fails:\n{stdout}");

    // The steps ran and printed their environment: the dumps are real.
    let env_log = fs::read_to_string(run.join("leaky/env.log")).unwrap();
    let given_log = fs::read_to_string(run.join("leaky/given.log")).unwrap();
    for log in [&env_log, &given_log] {
        assert!(log.contains("PLAIN_MARKER=visible-to-steps"), "{log}");
        assert!(log.contains("PATH="), "{log}");
    }
    assert!(
        given_log.contains(&format!("{}={}", PASSED.0, PASSED.1)),
        "the passed secret reaches its step:\n{given_log}"
    );
    assert!(
        !env_log.contains(PASSED.1),
        "a secret passed to one step reaches another:\n{env_log}"
    );
    let test_log = fs::read_to_string(run.join("leaky/test.log")).unwrap();
    assert!(
        test_log.contains("PLAIN_MARKER=visible-to-steps") && test_log.contains("fails on purpose"),
        "the failing test printed its environment:\n{test_log}"
    );

    // No withheld secret anywhere: logs, JUnit, summary, metrics, target dirs, entries.
    let mut leaks = Vec::new();
    for (name, value) in SECRETS {
        for dir in [&run, &cache, &chain] {
            for f in files_containing(dir, value) {
                leaks.push(format!("{name} in {}", f.display()));
            }
        }
        // The name of the variable does not reach a step either (GITHUB_TOKEN= ...).
        for log in [&env_log, &given_log, &test_log] {
            assert!(
                !log.contains(&format!("\n{name}=")),
                "{name} reached a step"
            );
        }
    }
    for f in files_containing(&run, PASSED.1)
        .into_iter()
        .chain(files_containing(&cache, PASSED.1))
    {
        if f != run.join("leaky/given.log") {
            leaks.push(format!("{} in {}", PASSED.0, f.display()));
        }
    }
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));

    // Cache entries hold cargo's build state, never run outputs.
    let entries: Vec<PathBuf> = walkdir::WalkDir::new(&cache)
        .into_iter()
        .flatten()
        .map(|e| e.into_path())
        .collect();
    assert!(
        entries.iter().any(|p| p.ends_with(".fingerprint")),
        "no target entry was saved: the check below would prove nothing"
    );
    let outputs: Vec<&PathBuf> = entries
        .iter()
        .filter(|p| {
            p.components().any(|c| {
                matches!(
                    c.as_os_str().to_str(),
                    Some("nextest" | "junit.xml" | "bllvm-ci")
                )
            })
        })
        .collect();
    assert!(outputs.is_empty(), "run outputs in the cache: {outputs:?}");
    if nextest() {
        // nextest wrote its JUnit report (with the failing test's output) into the target
        // dir: it is what the entry left out.
        assert!(
            files_containing(&chain.join("leaky/target"), "fails on purpose")
                .iter()
                .chain(files_containing(&run, "fails on purpose").iter())
                .any(|p| p.extension().is_some_and(|x| x == "xml")),
            "nextest wrote no JUnit report"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "cargo-nextest is missing: install it with `cargo install cargo-nextest --locked`"
        );
    }
}

/// Every path under `root` with what would show a write: kind, length, mtime and (for
/// files) the bytes' hash. Two equal snapshots: nothing was created, changed or removed.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .map(|e| {
            let md = e.path().symlink_metadata().unwrap();
            let mtime = md
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            let content = if md.is_file() {
                let b = fs::read(e.path()).unwrap();
                format!("{:x}", Sha256::digest(&b))
            } else {
                String::new()
            };
            (
                e.path().strip_prefix(root).unwrap().to_path_buf(),
                format!("{:?} {} {mtime} {content}", md.file_type(), md.len()),
            )
        })
        .collect()
}

/// What differs between two snapshots, one line per path.
fn diff(a: &BTreeMap<PathBuf, String>, b: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (p, v) in a {
        match b.get(p) {
            None => out.push(format!("removed {}", p.display())),
            Some(w) if w != v => out.push(format!("changed {}", p.display())),
            _ => {}
        }
    }
    for p in b.keys().filter(|p| !a.contains_key(*p)) {
        out.push(format!("created {}", p.display()));
    }
    out
}

/// The untrusted events of rule 2, as (name, payload).
fn untrusted_events() -> Vec<(&'static str, serde_json::Value)> {
    vec![
        (
            "pull_request",
            json!({"number": 7, "pull_request": {"head": {"repo": {"fork": true}}}}),
        ),
        (
            "repository_dispatch",
            json!({"action": "bllvm-upstream-push", "client_payload": {"source": "not-in-the-chain", "chain_id": "c", "hop": 1, "path": ["x"], "event": "push", "dispatch_id": "c:1:solo"}}),
        ),
        (
            "push",
            json!({"ref": "refs/heads/main", "repository": {"default_branch": "main", "fork": true}}),
        ),
    ]
}

/// Rule 2: an untrusted run writes nothing under the cache root — no entry, result,
/// usage record, metrics history, notification state or dispatch record — even when it
/// fails; its failure sends no message and is not the chain's, so the next trusted
/// success is no "recovery". A trusted failure afterwards does notify (the webhook and
/// the state work), and an untrusted run on a cache root that does not exist leaves none.
#[test]
fn an_untrusted_run_writes_nothing_under_the_cache_root_and_is_not_the_chains_failure() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(method("POST"))
            .and(path("/hook"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server),
    );
    let hooks = || rt.block_on(server.received_requests()).unwrap().len();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chain = t.join("chain");
    let m = support::write_chain(&chain, &[("solo", &[])], &[("solo", "steps = [\"build\"]")]);
    let mut text = fs::read_to_string(&m).unwrap();
    text += super::reliability::ROOMY;
    text += "[notify]\nslack-webhook-env = \"TEAM_HOOK\"\ntimeout = 5\n";
    fs::write(&m, text).unwrap();
    support::git_commit_all(&chain.join("solo"));
    let lib = chain.join("solo/src/lib.rs");
    let good = fs::read_to_string(&lib).unwrap();
    let cache = t.join("cache");
    let ci = |name: &str, event: Option<(&str, &serde_json::Value)>, cache: &Path| {
        let mut c = xtask();
        c.env("TEAM_HOOK", format!("{}/hook", server.uri()))
            .env("GITHUB_RUN_ID", format!("run-{name}"))
            .args(["ci", "--quiet", "--manifest"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(cache)
            .arg("--run-dir")
            .arg(t.join("runs").join(name));
        if let Some((ev, payload)) = event {
            let p = t.join(format!("{name}.json"));
            fs::write(&p, payload.to_string()).unwrap();
            c.env("GITHUB_EVENT_NAME", ev).env("GITHUB_EVENT_PATH", p);
        }
        let o = c.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), text)
    };

    let (code, out) = ci("trusted-ok", None, &cache);
    assert_eq!(code, Some(0), "{out}");
    assert!(cache.join("metrics/history.jsonl").is_file(), "{out}");
    assert!(cache.join("notify/state.json").is_file(), "{out}");
    assert_eq!(hooks(), 0, "a first success is no news");

    fs::write(&lib, "//! Broken.\n\npub fn broken( {\n").unwrap();
    for (i, (ev, payload)) in untrusted_events().iter().enumerate() {
        let before = snapshot(&cache);
        let (code, out) = ci(&format!("untrusted-{i}"), Some((ev, payload)), &cache);
        assert_eq!(code, Some(1), "{ev}: the broken repo fails\n{out}");
        let changes = diff(&before, &snapshot(&cache));
        assert!(
            changes.is_empty(),
            "{ev} wrote under the cache root:\n{}\n{out}",
            changes.join("\n")
        );
        assert_eq!(
            hooks(),
            0,
            "{ev}: an untrusted failure was announced\n{out}"
        );
        assert!(
            out.contains("notify: nothing sent or recorded"),
            "{ev}: {out}"
        );
        // On a cache root that does not exist, it creates none.
        let fresh = t.join(format!("fresh-{i}"));
        let (code, out) = ci(&format!("untrusted-fresh-{i}"), Some((ev, payload)), &fresh);
        assert_eq!(code, Some(1), "{out}");
        assert!(
            !fresh.exists(),
            "{ev} created the cache root {}\n{out}",
            fresh.display()
        );
        // Nor does any other command under that event (`plan` opens the cache too).
        let p = t.join(format!("plan-{i}.json"));
        fs::write(&p, payload.to_string()).unwrap();
        let o = xtask()
            .env("GITHUB_EVENT_NAME", ev)
            .env("GITHUB_EVENT_PATH", &p)
            .args(["plan", "--manifest"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(&fresh)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(!fresh.exists(), "`plan` under {ev} created the cache root");
    }

    fs::write(&lib, &good).unwrap();
    let (code, out) = ci("trusted-again", None, &cache);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        hooks(),
        0,
        "a recovery was announced from a failure that only an untrusted run saw\n{out}"
    );
    fs::write(&lib, "//! Broken.\n\npub fn broken( {\n").unwrap();
    let (code, out) = ci("trusted-failure", None, &cache);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(hooks(), 1, "a trusted failure is announced\n{out}");
}

/// `cargo xtask chain` on the embedded sample chain against `api` (no GitHub variables
/// from the caller but a token and a run id).
fn chain_cmd(api: &str, cache: &Path, args: &[&str]) -> assert_cmd::Command {
    let mut c = xtask();
    for v in ["GITHUB_API_URL", "GITHUB_SHA", "GITHUB_REF"] {
        c.env_remove(v);
    }
    c.env("GITHUB_TOKEN", "ghp_DISPATCHtoken0000000000000000000000")
        .env("GITHUB_RUN_ID", "it-2xx")
        .args(["chain", "--manifest"])
        .arg(support::workspace().join("ci/sample/chain.toml"))
        .arg("--cache-dir")
        .arg(cache)
        .args(["--api-url", api, "--retry-delay-ms", "1"])
        .args(args);
    c
}

/// Rule 3: any 2xx answer to a dispatch is a success, never a panic: a 200 with a body, a
/// 202 and a 204 (GitHub's) each count as sent, and every target is tried. (octocrab's
/// `create_dispatch` panicked on a 200: exit 101, the next targets never tried.)
#[test]
fn any_2xx_answer_to_a_dispatch_is_success_and_every_target_is_tried() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    for (repo, answer) in [
        (
            "bllvm-protocol",
            ResponseTemplate::new(200).set_body_json(json!({"ok": true})),
        ),
        ("bllvm-node", ResponseTemplate::new(202)),
        ("bllvm-sdk", ResponseTemplate::new(204)),
    ] {
        rt.block_on(
            Mock::given(method("POST"))
                .and(path(format!("/repos/bllvm-sample/{repo}/dispatches")))
                .respond_with(answer)
                .expect(1)
                .mount(&server),
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let o = chain_cmd(
        &server.uri(),
        &tmp.path().join("cache"),
        &["--from", "bllvm-consensus", "--transitive"],
    )
    .output()
    .unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(!out.contains("panicked"), "{out}");
    for repo in ["bllvm-protocol", "bllvm-node", "bllvm-sdk"] {
        assert!(
            out.contains(&format!("sent     {repo} ")),
            "{repo} not sent:\n{out}"
        );
    }
    rt.block_on(server.verify());
    // A status outside 2xx is no success: it is reported with its code, and the other
    // targets are still tried.
    let odd = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(method("POST"))
            .respond_with(ResponseTemplate::new(304))
            .mount(&odd),
    );
    let o = chain_cmd(
        &odd.uri(),
        &tmp.path().join("cache"),
        &[
            "--from",
            "bllvm-consensus",
            "--transitive",
            "--retries",
            "0",
        ],
    )
    .output()
    .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(7), "{out}");
    assert_eq!(out.matches("unexpected answer 304").count(), 3, "{out}");
}

/// A `repository_dispatch` event from `source` (a repo of the chain) naming `dispatch_id`.
fn dispatch_event(source: &str, id: &str) -> serde_json::Value {
    json!({"action": "bllvm-upstream-push", "client_payload": {
        "source": source, "chain_id": "c-dedupe", "hop": 1, "path": [source],
        "event": "push", "dispatch_id": id}})
}

/// Rule 3: a dispatch delivered twice is acted on once. The first `ci` run of an id
/// builds and records it; a second run (another workflow run) with the same id builds
/// nothing and says why, and its `chain` step propagates nothing; a re-run of the first
/// workflow run (same run id) and a new id both build. The generated workflows key
/// their concurrency group on the id (checked in `github::workflows`'s unit test and
/// here on the committed files).
#[test]
fn a_dispatch_delivered_twice_is_acted_on_once() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chain = t.join("chain");
    let m = support::write_chain(
        &chain,
        &[("up", &[]), ("solo", &[("up", "normal")])],
        &[
            ("up", "steps = [\"build\"]"),
            ("solo", "steps = [\"build\"]"),
        ],
    );
    let mut text = fs::read_to_string(&m).unwrap();
    text += super::reliability::ROOMY;
    fs::write(&m, text).unwrap();
    support::git_commit_all(&chain.join("up"));
    support::git_commit_all(&chain.join("solo"));
    let cache = t.join("cache");
    let run = |name: &str, run_id: &str, id: &str, cmd: &[&str]| {
        let ev = t.join(format!("{name}.json"));
        fs::write(&ev, dispatch_event("up", id).to_string()).unwrap();
        let o = xtask()
            .env("GITHUB_EVENT_NAME", "repository_dispatch")
            .env("GITHUB_EVENT_PATH", &ev)
            .env("GITHUB_RUN_ID", run_id)
            .env("GITHUB_TOKEN", "ghp_unused")
            .args(cmd)
            .arg("--manifest")
            .arg(&m)
            .arg("--cache-dir")
            .arg(&cache)
            .output()
            .unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let ci = |name: &str, run_id: &str, id: &str| {
        let dir = t.join("runs").join(name);
        let d = dir.to_str().unwrap().to_owned();
        let r = run(
            name,
            run_id,
            id,
            &["ci", "--quiet", "--only", "solo", "--run-dir", &d],
        );
        (r.0, r.1, dir.join("summary.json").is_file())
    };
    let (code, out, built) = ci("first", "run-1", "c-dedupe:1:solo");
    assert_eq!(code, Some(0), "{out}");
    assert!(built, "the first delivery builds\n{out}");

    let (code, out, built) = ci("second", "run-2", "c-dedupe:1:solo");
    assert_eq!(code, Some(0), "{out}");
    assert!(!built, "a duplicate delivery built again\n{out}");
    assert!(
        out.contains("\"c-dedupe:1:solo\" was already handled by run \"run-1\"")
            && out.contains("duplicate"),
        "{out}"
    );
    // Its `chain` step sends nothing, each target saying why; a fresh id propagates.
    let (code, out) = run(
        "second-chain",
        "run-2",
        "c-dedupe:1:up",
        &["chain", "--from", "up", "--dry-run"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("dry-run  solo"),
        "a fresh id propagates:\n{out}"
    );
    let (code, out) = run(
        "second-chain",
        "run-2",
        "c-dedupe:1:solo",
        &["chain", "--from", "up", "--dry-run"],
    );
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("skipped  solo") && out.contains("already handled by run \"run-1\""),
        "a duplicate delivery propagated:\n{out}"
    );
    // The same workflow run again (a re-run attempt) builds; so does a new id.
    let (code, out, built) = ci("rerun", "run-1", "c-dedupe:1:solo");
    assert_eq!((code, built), (Some(0), true), "{out}");
    let (code, out, built) = ci("new-id", "run-3", "c-dedupe-2:1:solo");
    assert_eq!((code, built), (Some(0), true), "{out}");

    for f in [
        ".github/workflows/ci.yml",
        ".github/chain-template/bllvm-chain.yml",
    ] {
        let text = fs::read_to_string(support::workspace().join(f)).unwrap();
        assert!(
            text.lines()
                .any(|l| l.starts_with("  group: ") && l.contains("client_payload.dispatch_id")),
            "{f}: the concurrency group is not keyed on the dispatch id"
        );
    }
}

/// Rule 4: every I/O error under the cache root names the path and the operation, and
/// none fails the build. First with a file where each directory of ours goes (the
/// metrics history's, the notification state's, the dispatch records'), then on a full
/// 1 MiB tmpfs (where it can be mounted) — ENOSPC in the result store, the entries, the
/// metrics history, the notification state and the dispatch record; and a cache root
/// that is a file is an error (exit 2) naming it.
#[test]
fn every_io_error_under_the_cache_root_names_the_path_and_the_operation() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chain = t.join("chain");
    let m = support::write_chain(&chain, &[("solo", &[])], &[("solo", "steps = [\"build\"]")]);
    let mut text = fs::read_to_string(&m).unwrap();
    text += super::reliability::ROOMY;
    text += "[notify]\nslack-webhook-env = \"TEAM_HOOK\"\ntimeout = 2\n";
    fs::write(&m, text).unwrap();
    support::git_commit_all(&chain.join("solo"));
    let ev = t.join("event.json");
    fs::write(&ev, dispatch_event("solo", "c-disk:1:solo").to_string()).unwrap();
    let ci_with = |mut c: assert_cmd::Command, cache: &Path, run: &str| {
        let o = c
            .env("TEAM_HOOK", "http://127.0.0.1:9/hook")
            .env("GITHUB_EVENT_NAME", "repository_dispatch")
            .env("GITHUB_EVENT_PATH", &ev)
            .env("GITHUB_RUN_ID", run)
            .args(["ci", "--quiet", "--manifest"])
            .arg(&m)
            .arg("--cache-dir")
            .arg(cache)
            .arg("--run-dir")
            .arg(t.join(run))
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.code(), out)
    };
    let ci = |cache: &Path, run: &str| ci_with(xtask(), cache, run);
    // Each line must name what was done, where, and why it failed.
    let says = |out: &str, op: &str, path: &Path, why: &str| {
        let path = path.display().to_string();
        assert!(
            out.lines()
                .any(|l| l.contains(op) && l.contains(&path) && l.contains(why)),
            "no line says `{op}` `{path}` `{why}`:\n{out}"
        );
    };

    let cache = t.join("blocked");
    fs::create_dir_all(&cache).unwrap();
    for f in ["metrics", "notify", "dispatch"] {
        fs::write(cache.join(f), b"").unwrap();
    }
    let (code, out) = ci(&cache, "blocked");
    assert_eq!(code, Some(0), "the build result stands\n{out}");
    // The metrics dir is a layout dir of the cache root: whatever is in its place (here a
    // file, elsewhere a symlink out) is replaced by a real directory (`cache::untrusted`,
    // issue 13 §3), so the history is written rather than lost.
    assert!(
        cache.join("metrics/history.jsonl").is_file(),
        "the file in the metrics dir's place was not replaced\n{out}"
    );
    says(
        &out,
        "create the notification state dir",
        &cache.join("notify"),
        "File exists",
    );
    says(
        &out,
        "create the dispatch records dir",
        &cache.join("dispatch/handled"),
        "Not a directory",
    );

    let file_root = t.join("a-file");
    fs::write(&file_root, b"").unwrap();
    let (code, out) = ci(&file_root, "file-root");
    assert_eq!(code, Some(2), "{out}");
    says(&out, "create cache root", &file_root, "");

    // Without a tmpfs: a counted skip of this part, or under CI a failure saying what to
    // enable (the checks above ran either way).
    let Some(tmpfs) = support::Tmpfs::mount(&t.join("fs"), "1m") else {
        return;
    };
    let full = t.join("fs/cache");
    fs::create_dir_all(tmpfs.view(&full)).unwrap();
    {
        use std::io::Write;
        let mut f = fs::File::create(tmpfs.view(&t.join("fs/filler"))).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let (code, out) = ci_with(tmpfs.xtask(), &full, "full");
    assert_eq!(code, Some(0), "the build result stands\n{out}");
    let enospc = "No space left on device";
    says(
        &out,
        "append to metrics history",
        &full.join("metrics/history.jsonl"),
        enospc,
    );
    says(
        &out,
        "write the notification state",
        &full.join("notify"),
        enospc,
    );
    says(
        &out,
        "write the dispatch record",
        &full.join("dispatch/handled"),
        enospc,
    );
    says(&out, "write", &full.join("results"), enospc);
    says(&out, "copy", &full.join("tmp"), enospc);
}
