//! Issue 8: recognisable fake secrets (a GitHub token, Slack and Discord webhook URLs) go
//! through `ci` (a failing run, as GitHub Actions would run it, so webhooks fire and the
//! step summary and outputs are written), `chain` (a dispatch and a refused one),
//! `notify` and `report` (text and HTML); none of them may appear in any output, log
//! file, summary, metrics file, step summary or HTML report. The servers are on
//! 127.0.0.1, and the test checks they really received the secrets' requests, so the
//! absence of leaks is not the absence of use.

use std::fs;
use std::path::Path;

use assert_cmd::Command;
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::{self, xtask};

const TOKEN: &str = "ghp_RELIABILITYfakeTOKEN0123456789ab";
const SLACK_SECRET: &str = "T0SLACKSECRET/B0SLACKSECRET/xxSLACKsecretPARTxx";
const DISCORD_SECRET: &str = "4242/DISCORDsecretWEBHOOKtokenZZ";

/// Every recognisable piece of every secret.
fn pieces() -> Vec<&'static str> {
    vec![
        TOKEN,
        "RELIABILITYfakeTOKEN",
        "SLACKSECRET",
        "SLACKsecretPART",
        "DISCORDsecretWEBHOOK",
    ]
}

fn leaks(what: &str, text: &str) -> Vec<String> {
    pieces()
        .into_iter()
        .filter(|p| text.contains(p))
        .map(|p| format!("{what} contains `{p}`"))
        .collect()
}

fn run(c: &mut Command, what: &str, found: &mut Vec<String>) -> i32 {
    let o = c.output().unwrap();
    found.extend(leaks(
        &format!("{what} stdout"),
        &String::from_utf8_lossy(&o.stdout),
    ));
    found.extend(leaks(
        &format!("{what} stderr"),
        &String::from_utf8_lossy(&o.stderr),
    ));
    o.status.code().unwrap_or(-1)
}

/// Every file under `dir` (binary files included, read lossily).
fn scan(dir: &Path, found: &mut Vec<String>) -> usize {
    let mut n = 0;
    for e in walkdir::WalkDir::new(dir).into_iter().flatten() {
        if e.file_type().is_file() {
            n += 1;
            let b = fs::read(e.path()).unwrap_or_default();
            found.extend(leaks(
                &e.path().display().to_string(),
                &String::from_utf8_lossy(&b),
            ));
        }
    }
    n
}

#[test]
fn fake_secrets_appear_in_no_output_log_summary_metrics_or_report() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    rt.block_on(
        Mock::given(method("POST"))
            .and(path_regex("^/(services|api/webhooks)/"))
            .respond_with(ResponseTemplate::new(200))
            .mount(&server),
    );
    rt.block_on(
        Mock::given(method("POST"))
            .and(path_regex("^/repos/fixture/down/dispatches$"))
            .respond_with(ResponseTemplate::new(204))
            .mount(&server),
    );
    let slack = format!("{}/services/{SLACK_SECRET}", server.uri());
    let discord = format!("{}/api/webhooks/{DISCORD_SECRET}", server.uri());

    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let chain_dir = t.join("chain");
    let m = support::write_chain(
        &chain_dir,
        &[("up", &[]), ("down", &[("up", "normal")])],
        &[
            ("up", "steps = [\"build\"]"),
            ("down", "steps = [\"build\"]"),
        ],
    );
    let mut text = fs::read_to_string(&m).unwrap();
    text += super::reliability::ROOMY;
    text += "\n[notify]\nslack-webhook-env = \"SLACK_WEBHOOK_URL\"\ndiscord-webhook-env = \"DISCORD_WEBHOOK_URL\"\n";
    fs::write(&m, text).unwrap();
    // `up` does not compile: the run fails and the webhooks are told.
    fs::write(
        chain_dir.join("up/src/lib.rs"),
        "//! Broken.\n\npub fn broken( {\n",
    )
    .unwrap();
    support::git_commit_all(&chain_dir.join("up"));
    support::git_commit_all(&chain_dir.join("down"));
    let cache = t.join("cache");
    let run_dir = t.join("run");
    let gh = t.join("gh");
    fs::create_dir_all(&gh).unwrap();
    let secrets = |c: &mut Command| {
        c.env("GITHUB_TOKEN", TOKEN)
            .env("SLACK_WEBHOOK_URL", &slack)
            .env("DISCORD_WEBHOOK_URL", &discord);
    };
    let mut found = Vec::new();

    let mut c = xtask();
    secrets(&mut c);
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", gh.join("summary.md"))
        .env("GITHUB_OUTPUT", gh.join("output"))
        .env("GITHUB_REPOSITORY", "fixture/up")
        .env("GITHUB_RUN_ID", "77")
        .args(["ci", "--quiet", "--keep-going", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--run-dir")
        .arg(&run_dir);
    assert_eq!(run(&mut c, "ci", &mut found), 1, "the fixture run fails");

    let mut c = xtask();
    secrets(&mut c);
    c.args(["chain", "--from", "up", "--retries", "0", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--api-url", &server.uri()]);
    assert_eq!(run(&mut c, "chain", &mut found), 0);
    // A refused dispatch prints the API's error: the token must not be in it either.
    let mut c = xtask();
    secrets(&mut c);
    c.args(["chain", "--from", "up", "--retries", "0", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .args(["--api-url", "http://127.0.0.1:9"]);
    assert_eq!(run(&mut c, "chain (unreachable)", &mut found), 7);

    let mut c = xtask();
    secrets(&mut c);
    c.args(["notify", "--manifest"]).arg(&m);
    assert_eq!(run(&mut c, "notify", &mut found), 0);

    let html = t.join("report.html");
    let mut c = xtask();
    c.args(["report", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache);
    assert_eq!(run(&mut c, "report", &mut found), 0);
    let mut c = xtask();
    c.args(["report", "--manifest"])
        .arg(&m)
        .arg("--cache-dir")
        .arg(&cache)
        .arg("--html")
        .arg(&html);
    assert_eq!(run(&mut c, "report --html", &mut found), 0);
    assert!(html.is_file());

    let files = scan(&run_dir, &mut found)
        + scan(&cache, &mut found)
        + scan(&gh, &mut found)
        + scan(&html, &mut found);
    assert!(files >= 5, "only {files} files scanned");
    assert!(
        gh.join("summary.md").is_file(),
        "no step summary was written"
    );
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));

    // The secrets were used: the webhooks and the API got their requests.
    let reqs = rt.block_on(server.received_requests()).unwrap();
    let hooks = reqs
        .iter()
        .filter(|r| r.url.path().contains("SECRET") || r.url.path().contains("secret"))
        .count();
    assert!(
        hooks >= 3,
        "webhook requests: {hooks} (want the failure of ci to Slack and Discord, and notify)"
    );
    assert!(
        reqs.iter().any(|r| r.url.path().ends_with("/dispatches")
            && r.headers
                .get("authorization")
                .is_some_and(|v| v.to_str().unwrap_or("").contains(TOKEN))),
        "no dispatch carried the token"
    );
}
