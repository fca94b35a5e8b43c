//! `cargo xtask chain` against a GitHub-shaped HTTP server on 127.0.0.1 (wiremock): every
//! request's method, path, headers and body; each error status's message and exit code;
//! retries that never send a success twice; dry runs, the loop guard, pull requests and
//! release sets that send nothing; a token that never reaches any output.
//!
//! The chain is the embedded sample (`ci/sample/chain.toml`), whose graph is resolved for
//! real (`cargo metadata`): `bllvm-consensus` is depended on by `bllvm-protocol`
//! directly, and by `bllvm-node` and `bllvm-sdk` through it.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

/// A recognisable fake token: it must appear in no output.
pub(super) const TOKEN: &str = "ghp_FAKEtokenNEVERprint0123456789abcd";

pub(super) fn sample_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../ci/sample/chain.toml")
}

pub(super) fn dispatches(repo: &str) -> String {
    format!("/repos/bllvm-sample/{repo}/dispatches")
}

/// One runtime per test: the mock server runs on its own thread, so the test thread may
/// block on the CLI while the server answers.
pub(super) struct Env {
    pub(super) rt: tokio::runtime::Runtime,
    pub(super) server: MockServer,
    pub(super) dir: tempfile::TempDir,
}

impl Env {
    pub(super) fn new() -> Env {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(MockServer::start());
        Env {
            rt,
            server,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub(super) fn mount(&self, m: Mock) {
        self.rt.block_on(m.mount(&self.server));
    }

    pub(super) fn requests(&self) -> Vec<Request> {
        self.rt
            .block_on(self.server.received_requests())
            .expect("request recording is on")
    }

    /// `cargo xtask chain` on the sample chain against the mock server, with no GitHub
    /// variables from the environment but the fake token and a run id (so the chain id is
    /// `gh-it-1`).
    pub(super) fn chain(&self, args: &[&str]) -> Command {
        self.chain_at(&self.server.uri(), args)
    }

    /// [`Env::chain`] against another API URL.
    fn chain_at(&self, api_url: &str, args: &[&str]) -> Command {
        self.chain_full(&sample_manifest(), api_url, args)
    }

    /// [`Env::chain`] with another manifest.
    pub(super) fn chain_with(&self, manifest: &Path, args: &[&str]) -> Command {
        self.chain_full(manifest, &self.server.uri(), args)
    }

    fn chain_full(&self, manifest: &Path, api_url: &str, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("xtask").unwrap();
        for v in [
            "GITHUB_TOKEN",
            "GITHUB_EVENT_NAME",
            "GITHUB_EVENT_PATH",
            "GITHUB_API_URL",
            "GITHUB_SHA",
            "GITHUB_REF",
            "BLLVM_CI_CACHE_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("GITHUB_TOKEN", TOKEN)
            .env("GITHUB_RUN_ID", "it")
            .env("GITHUB_RUN_ATTEMPT", "1")
            .arg("chain")
            .arg("--manifest")
            .arg(manifest)
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(["--api-url", api_url])
            .args(["--retry-delay-ms", "1"])
            .args(args);
        c
    }

    /// Write a GitHub event payload and point the command at it.
    pub(super) fn event(&self, c: &mut Command, name: &str, payload: Value) {
        let p = self.dir.path().join("event.json");
        std::fs::write(&p, payload.to_string()).unwrap();
        c.env("GITHUB_EVENT_NAME", name).env("GITHUB_EVENT_PATH", p);
    }
}

pub(super) struct Out {
    pub(super) code: i32,
    pub(super) stdout: String,
    pub(super) stderr: String,
}

/// Run, and check the token is in neither stream.
pub(super) fn run(mut c: Command) -> Out {
    let o = c.output().unwrap();
    let out = Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    };
    assert!(
        !out.stdout.contains(TOKEN) && !out.stderr.contains(TOKEN),
        "the token leaked:\n{}\n{}",
        out.stdout,
        out.stderr
    );
    assert!(!out.stdout.contains("FAKEtoken") && !out.stderr.contains("FAKEtoken"));
    out
}

pub(super) fn header<'a>(r: &'a Request, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

pub(super) fn body(r: &Request) -> Value {
    serde_json::from_slice(&r.body).unwrap()
}

pub(super) fn ok_204(repo: &str) -> Mock {
    Mock::given(method("POST"))
        .and(path(dispatches(repo)))
        .respond_with(ResponseTemplate::new(204))
}

#[test]
fn from_consensus_dispatches_its_direct_dependent_with_github_headers_and_body() {
    let env = Env::new();
    env.mount(ok_204("bllvm-protocol"));
    let out = run({
        let mut c = env.chain(&["--from", "bllvm-consensus"]);
        c.args(["--sha", "0123abc", "--ref", "refs/heads/main"]);
        c
    });
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("sent     bllvm-protocol (bllvm-sample/bllvm-protocol) bllvm-upstream-push, 1 attempt(s)"),
        "{}",
        out.stdout
    );
    let reqs = env.requests();
    assert_eq!(reqs.len(), 1, "exactly one request");
    let r = &reqs[0];
    assert_eq!(r.method.as_str(), "POST");
    assert_eq!(r.url.path(), dispatches("bllvm-protocol"));
    assert_eq!(header(r, "authorization"), format!("Bearer {TOKEN}"));
    assert_eq!(header(r, "accept"), "application/vnd.github+json");
    assert_eq!(header(r, "user-agent"), "octocrab");
    assert_eq!(header(r, "x-github-api-version"), "2022-11-28");
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(
        body(r),
        json!({
            "event_type": "bllvm-upstream-push",
            "client_payload": {
                "source": "bllvm-consensus",
                "sha": "0123abc",
                "ref": "refs/heads/main",
                "version": "0.1.0",
                "event": "push",
                "chain_id": "gh-it-1",
                "hop": 1,
                "path": ["bllvm-consensus"],
                "dispatch_id": "gh-it-1:1:bllvm-protocol"
            }
        })
    );
}

#[test]
fn transitive_dispatches_every_repo_that_depends_on_consensus_in_order() {
    let env = Env::new();
    for r in ["bllvm-protocol", "bllvm-node", "bllvm-sdk"] {
        env.mount(ok_204(r));
    }
    let out = run(env.chain(&[
        "--from",
        "bllvm-consensus",
        "--transitive",
        "--format",
        "json",
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let paths: Vec<String> = env
        .requests()
        .iter()
        .map(|r| r.url.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            dispatches("bllvm-protocol"),
            dispatches("bllvm-node"),
            dispatches("bllvm-sdk")
        ]
    );
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["exit_code"], 0);
    let statuses: Vec<&str> = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["sent", "sent", "sent"]);
    assert_eq!(
        v["targets"][2]["client_payload"]["dispatch_id"],
        "gh-it-1:1:bllvm-sdk"
    );
}

#[test]
fn to_picks_one_downstream_repo_and_rejects_an_upstream_one() {
    let env = Env::new();
    env.mount(ok_204("bllvm-sdk"));
    let out = run(env.chain(&[
        "--from",
        "bllvm-consensus",
        "--to",
        "bllvm-sdk",
        "--event-type",
        "custom-type",
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let reqs = env.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(body(&reqs[0])["event_type"], "custom-type");
    let out = run(env.chain(&["--from", "bllvm-consensus", "--to", "bllvm-primitives"]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("`bllvm-primitives` is not downstream of `bllvm-consensus`"),
        "{}",
        out.stderr
    );
    assert_eq!(env.requests().len(), 1, "nothing more was sent");
}

#[test]
fn dry_run_prints_each_request_and_sends_nothing() {
    let env = Env::new();
    let out = run(env.chain(&["--from", "bllvm-consensus", "--transitive", "--dry-run"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(env.requests().is_empty(), "a dry run sent a request");
    for r in ["bllvm-protocol", "bllvm-node", "bllvm-sdk"] {
        assert!(
            out.stdout
                .contains(&format!("POST {}{}", env.server.uri(), dispatches(r))),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(&format!("dry-run  {r} ")),
            "{}",
            out.stdout
        );
    }
    assert!(out.stdout.contains("event_type: bllvm-upstream-push"));
    assert!(
        out.stdout
            .contains(r#""dispatch_id":"gh-it-1:1:bllvm-node""#),
        "{}",
        out.stdout
    );
}

/// The text a person reads from a dry run, against GitHub's real API URL (nothing is
/// sent, so no server is involved).
#[test]
fn dry_run_text_snapshot() {
    let env = Env::new();
    let out = run(env.chain_at(
        "https://api.github.com",
        &[
            "--from",
            "bllvm-consensus",
            "--transitive",
            "--dry-run",
            "--sha",
            "0123abc",
        ],
    ));
    assert_eq!(out.code, 0, "{}", out.stderr);
    insta::assert_snapshot!("chain_dry_run", out.stdout);
    assert!(env.requests().is_empty());
}

/// A copy of the sample manifest (checkouts still in `ci/sample`) with a `[chain]` table.
pub(super) fn manifest_with_chain_table(env: &Env, table: &str) -> PathBuf {
    let sample = std::fs::read_to_string(sample_manifest()).unwrap();
    let root = sample_manifest().parent().unwrap().canonicalize().unwrap();
    let text = sample.replacen(
        "root = \".\"",
        &format!("root = {:?}\n\n{table}", root.display().to_string()),
        1,
    );
    assert!(
        text.contains("[chain]"),
        "the sample manifest no longer sets root = \".\""
    );
    let p = env.dir.path().join("chain.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn the_chain_table_names_the_token_variable_event_types_and_hop_limit() {
    let env = Env::new();
    let m = manifest_with_chain_table(
        &env,
        "[chain]\ntoken-env = \"BLLVM_IT_PAT\"\nmax-hops = 2\n[chain.event-types]\ndevelop = \"it-develop\"\n",
    );
    env.mount(ok_204("bllvm-protocol"));
    let pat = "github_pat_FAKEtokenNEVERprint_second";
    let mut c = env.chain_with(&m, &["--from", "bllvm-consensus", "--trigger", "develop"]);
    c.env("BLLVM_IT_PAT", pat);
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(!out.stdout.contains(pat) && !out.stderr.contains(pat));
    let reqs = env.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(header(&reqs[0], "authorization"), format!("Bearer {pat}"));
    assert_eq!(body(&reqs[0])["event_type"], "it-develop");
    assert_eq!(body(&reqs[0])["client_payload"]["event"], "develop");

    // Unset, it falls back to GITHUB_TOKEN and says so (by name only).
    let c = env.chain_with(&m, &["--from", "bllvm-consensus"]);
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("note: BLLVM_IT_PAT ([chain] token-env) is not set; using GITHUB_TOKEN"),
        "{}",
        out.stderr
    );
    assert_eq!(
        header(&env.requests()[1], "authorization"),
        format!("Bearer {TOKEN}")
    );

    // max-hops = 2: a chain already at hop 2 stops here.
    let mut c = env.chain_with(&m, &["--from", "bllvm-consensus"]);
    env.event(
        &mut c,
        "repository_dispatch",
        // The source must be a repo of the chain: an unknown one is untrusted (issue 8).
        json!({"client_payload": {"source": "bllvm-primitives", "chain_id": "c", "hop": 2, "path": ["bllvm-primitives"]}}),
    );
    let out = run(c);
    assert!(
        out.stdout
            .contains("loop guard: hop 3 is past [chain] max-hops = 2"),
        "{}",
        out.stdout
    );
    assert_eq!(env.requests().len(), 2, "nothing sent past max-hops");
}

#[test]
fn dry_run_needs_no_token_but_a_real_run_does() {
    let env = Env::new();
    let mut c = env.chain(&["--from", "bllvm-consensus", "--dry-run"]);
    c.env_remove("GITHUB_TOKEN");
    assert_eq!(run(c).code, 0);
    let mut c = env.chain(&["--from", "bllvm-consensus"]);
    c.env_remove("GITHUB_TOKEN");
    let out = run(c);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no GitHub token: set GITHUB_TOKEN"),
        "{}",
        out.stderr
    );
    assert!(env.requests().is_empty());
}

/// Each error status: its message, its exit code, and a single request (never retried).
#[test]
fn error_statuses_have_their_message_and_exit_code() {
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    let cases: Vec<(ResponseTemplate, i32, &str)> = vec![
        (
            ResponseTemplate::new(401).set_body_json(json!({"message": "Bad credentials"})),
            3,
            "bad credentials (401)",
        ),
        (
            ResponseTemplate::new(403).set_body_json(json!({"message": "Resource not accessible by integration"})),
            4,
            "needs the `contents: write` permission on bllvm-sample/bllvm-protocol",
        ),
        (
            ResponseTemplate::new(404).set_body_json(json!({"message": "Not Found"})),
            4,
            "cannot reach this repository (404: Not Found)",
        ),
        (
            ResponseTemplate::new(422).set_body_json(json!({"message": "Invalid request.\n\nFor 'properties/client_payload', too many properties."})),
            5,
            "invalid dispatch: GitHub answered 422",
        ),
        (
            ResponseTemplate::new(429).insert_header("retry-after", "3600"),
            6,
            "rate limited (429) after 1 attempt(s): GitHub asks to wait 3600s (--max-wait is 60s)",
        ),
        (
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", far.as_str())
                .set_body_json(json!({"message": "API rate limit exceeded"})),
            6,
            "rate limited (403)",
        ),
    ];
    let mut lines = Vec::new();
    for (template, code, message) in cases {
        let env = Env::new();
        env.mount(
            Mock::given(method("POST"))
                .and(path(dispatches("bllvm-protocol")))
                .respond_with(template),
        );
        let out = run(env.chain(&["--from", "bllvm-consensus"]));
        assert_eq!(out.code, code, "{message}: {}{}", out.stdout, out.stderr);
        assert!(
            out.stdout.contains("failed   bllvm-protocol"),
            "{}",
            out.stdout
        );
        assert!(
            out.stdout.contains(message),
            "want `{message}` in:\n{}",
            out.stdout
        );
        assert_eq!(env.requests().len(), 1, "{message}: retried");
        // The wait computed from x-ratelimit-reset depends on the clock: not snapshotted.
        if !message.starts_with("rate limited (403)") {
            lines.extend(
                out.stdout
                    .lines()
                    .filter(|l| l.starts_with("failed"))
                    .map(|l| format!("exit {code}: {l}")),
            );
        }
    }
    // What a person reads for each status (one line per target).
    insta::assert_snapshot!("chain_error_lines", lines.join("\n"));
}

#[test]
fn server_errors_are_retried_and_a_success_is_never_sent_twice() {
    let env = Env::new();
    env.mount(
        Mock::given(method("POST"))
            .and(path(dispatches("bllvm-protocol")))
            .respond_with(ResponseTemplate::new(502))
            .up_to_n_times(2)
            .with_priority(1),
    );
    env.mount(ok_204("bllvm-protocol").with_priority(2));
    let out = run(env.chain(&["--from", "bllvm-consensus", "--retries", "5"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("3 attempt(s)"), "{}", out.stdout);
    let reqs = env.requests();
    assert_eq!(reqs.len(), 3, "two 502s, one 204, then nothing");
    assert!(
        reqs.iter().all(|r| r.body == reqs[0].body),
        "a retry changed the body"
    );
    assert_eq!(
        body(&reqs[0])["client_payload"]["dispatch_id"],
        "gh-it-1:1:bllvm-protocol"
    );
}

#[test]
fn server_errors_stop_after_the_retry_bound() {
    let env = Env::new();
    env.mount(
        Mock::given(method("POST"))
            .and(path(dispatches("bllvm-protocol")))
            .respond_with(ResponseTemplate::new(503)),
    );
    let out = run(env.chain(&["--from", "bllvm-consensus", "--retries", "2"]));
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("GitHub answered 503 on all 3 attempts"),
        "{}",
        out.stdout
    );
    assert_eq!(env.requests().len(), 3);
}

#[test]
fn transport_errors_are_retried_then_reported() {
    let env = Env::new();
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = run(env.chain_at(
        &format!("http://127.0.0.1:{port}"),
        &["--from", "bllvm-consensus", "--retries", "1"],
    ));
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("request failed on all 2 attempts"),
        "{}",
        out.stdout
    );
}

#[test]
fn rate_limit_waits_for_retry_after_then_sends_once() {
    let env = Env::new();
    env.mount(
        Mock::given(method("POST"))
            .and(path(dispatches("bllvm-protocol")))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0"))
            .up_to_n_times(1)
            .with_priority(1),
    );
    env.mount(ok_204("bllvm-protocol").with_priority(2));
    let out = run(env.chain(&["--from", "bllvm-consensus"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(env.requests().len(), 2);
}

#[test]
fn rate_limits_are_waited_out_a_bounded_number_of_times() {
    let env = Env::new();
    env.mount(
        Mock::given(method("POST"))
            .and(path(dispatches("bllvm-protocol")))
            .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "0")),
    );
    let out = run(env.chain(&["--from", "bllvm-consensus", "--retries", "2"]));
    assert_eq!(out.code, 6, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("rate limited (429) after 3 attempt(s)"),
        "{}",
        out.stdout
    );
    assert_eq!(env.requests().len(), 3);
}

#[test]
fn loop_guard_stops_a_cycle_and_bounds_hops() {
    let env = Env::new();
    // protocol → node → consensus (a cycle an upstream misconfiguration could make):
    // consensus must not send back to protocol.
    let mut c = env.chain(&["--from", "bllvm-consensus", "--transitive"]);
    env.event(
        &mut c,
        "repository_dispatch",
        json!({"action": "bllvm-upstream-push", "client_payload": {
            "source": "bllvm-node", "chain_id": "c-up", "hop": 2, "event": "push",
            "path": ["bllvm-protocol", "bllvm-node"], "dispatch_id": "c-up:2:bllvm-consensus"}}),
    );
    env.mount(ok_204("bllvm-sdk"));
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("chain c-up from bllvm-consensus"),
        "{}",
        out.stdout
    );
    for r in ["bllvm-protocol", "bllvm-node"] {
        assert!(
            out.stdout.contains(&format!(
                "skipped  {r} (bllvm-sample/{r}): loop guard: `{r}` is already on the chain path bllvm-protocol → bllvm-node → bllvm-consensus"
            )),
            "{}",
            out.stdout
        );
    }
    let reqs = env.requests();
    assert_eq!(reqs.len(), 1, "only sdk is off the path");
    let b = body(&reqs[0]);
    assert_eq!(b["client_payload"]["hop"], 3);
    assert_eq!(b["client_payload"]["chain_id"], "c-up");
    assert_eq!(
        b["client_payload"]["path"],
        json!(["bllvm-protocol", "bllvm-node", "bllvm-consensus"])
    );

    // Past max-hops (8 by default) nothing is sent.
    let env = Env::new();
    let mut c = env.chain(&["--from", "bllvm-consensus"]);
    env.event(
        &mut c,
        "repository_dispatch",
        json!({"client_payload": {"source": "bllvm-primitives", "chain_id": "c", "hop": 8, "path": []}}),
    );
    let out = run(c);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout
            .contains("loop guard: hop 9 is past [chain] max-hops = 8"),
        "{}",
        out.stdout
    );
    assert!(env.requests().is_empty());
}

#[test]
fn repository_dispatch_continues_the_chain_with_its_trigger() {
    let env = Env::new();
    env.mount(ok_204("bllvm-node"));
    // The chain id given upstream wins over this run's own (gh-it-1).
    let mut c = env.chain(&["--from", "bllvm-protocol"]);
    env.event(
        &mut c,
        "repository_dispatch",
        json!({"client_payload": {"source": "bllvm-consensus", "chain_id": "c-rel", "hop": 1,
            "event": "release", "path": ["bllvm-consensus"]}}),
    );
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let reqs = env.requests();
    assert_eq!(reqs.len(), 1);
    let b = body(&reqs[0]);
    assert_eq!(b["event_type"], "bllvm-upstream-release");
    assert_eq!(b["client_payload"]["event"], "release");
    assert_eq!(b["client_payload"]["hop"], 2);
    assert_eq!(b["client_payload"]["source"], "bllvm-protocol");
    assert_eq!(b["client_payload"]["chain_id"], "c-rel");
    assert_eq!(b["client_payload"]["dispatch_id"], "c-rel:2:bllvm-node");
    assert_eq!(
        b["client_payload"]["path"],
        json!(["bllvm-consensus", "bllvm-protocol"])
    );
}

#[test]
fn pull_requests_never_dispatch() {
    let env = Env::new();
    let mut c = env.chain(&["--from", "bllvm-consensus", "--transitive"]);
    env.event(&mut c, "pull_request", json!({"number": 7}));
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("skipped  bllvm-protocol (bllvm-sample/bllvm-protocol): pull_request events never dispatch"), "{}", out.stdout);
    assert!(env.requests().is_empty());
}

fn versions_file(env: &Env, consensus: &str) -> PathBuf {
    let p = env.dir.path().join("versions.toml");
    std::fs::write(
        &p,
        format!(
            "[release.\"0.1.0\"]\nbllvm-primitives = \"0.1.0\"\nbllvm-consensus = {{ version = \"{consensus}\", git-tag = \"v{consensus}\" }}\nbllvm-protocol = \"0.1.0\"\nbllvm-node = \"0.1.0\"\n"
        ),
    )
    .unwrap();
    p
}

#[test]
fn release_walks_the_set_in_order_dry_by_default() {
    let env = Env::new();
    let v = versions_file(&env, "0.1.0");
    let out = run(env.chain(&["--release", "0.1.0", "--versions", v.to_str().unwrap()]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        env.requests().is_empty(),
        "--release without --execute sent"
    );
    let order: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.strip_prefix("dry-run  "))
        .map(|l| l.split(' ').next().unwrap())
        .collect();
    assert_eq!(
        order,
        [
            "bllvm-primitives",
            "bllvm-consensus",
            "bllvm-protocol",
            "bllvm-node"
        ]
    );

    for r in [
        "bllvm-primitives",
        "bllvm-consensus",
        "bllvm-protocol",
        "bllvm-node",
    ] {
        env.mount(ok_204(r));
    }
    // `--no-wait`: the dispatches alone, in order (the walk that waits for each run and
    // publish is tested in `follow.rs`).
    let out = run(env.chain(&[
        "--release",
        "0.1.0",
        "--execute",
        "--no-wait",
        "--versions",
        v.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let reqs = env.requests();
    let paths: Vec<&str> = reqs.iter().map(|r| r.url.path()).collect();
    assert_eq!(
        paths,
        [
            dispatches("bllvm-primitives"),
            dispatches("bllvm-consensus"),
            dispatches("bllvm-protocol"),
            dispatches("bllvm-node")
        ]
    );
    let b = body(&reqs[1]);
    assert_eq!(b["event_type"], "bllvm-upstream-release");
    assert_eq!(b["client_payload"]["version"], "0.1.0");
    assert_eq!(b["client_payload"]["release_set"], "0.1.0");
}

#[test]
fn release_stops_at_the_first_failure() {
    let env = Env::new();
    let v = versions_file(&env, "0.1.0");
    env.mount(ok_204("bllvm-primitives"));
    env.mount(
        Mock::given(method("POST"))
            .and(path(dispatches("bllvm-consensus")))
            .respond_with(ResponseTemplate::new(404)),
    );
    let out = run(env.chain(&[
        "--release",
        "0.1.0",
        "--execute",
        "--no-wait",
        "--versions",
        v.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("skipped  bllvm-protocol (bllvm-sample/bllvm-protocol): not sent: the dispatch to `bllvm-consensus` before it failed"), "{}", out.stdout);
    assert_eq!(env.requests().len(), 2);
}

#[test]
fn release_set_inconsistent_with_requirements_is_refused() {
    let env = Env::new();
    let v = versions_file(&env, "0.2.0");
    let out = run(env.chain(&[
        "--release",
        "0.1.0",
        "--execute",
        "--versions",
        v.to_str().unwrap(),
    ]));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("`bllvm-protocol` requires bllvm-consensus ^0.1 but release set 0.1.0 has bllvm-consensus at 0.2.0"),
        "{}",
        out.stderr
    );
    assert!(env.requests().is_empty());
    let out = run(env.chain(&["--release", "9.9.9", "--versions", v.to_str().unwrap()]));
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("no release set `9.9.9` (known: 0.1.0)"),
        "{}",
        out.stderr
    );
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn workflows(args: &[&str]) -> Command {
    let mut c = Command::cargo_bin("xtask").unwrap();
    c.current_dir(workspace()).arg("workflows").args(args);
    c
}

#[test]
fn committed_workflows_are_what_the_manifest_generates() {
    let out = run(workflows(&["--check"]));
    assert_eq!(
        out.code, 0,
        "the workflows drifted from ci/chain.toml: run `cargo xtask workflows`\n{}",
        out.stderr
    );
}

#[test]
fn workflows_check_fails_on_a_hand_edited_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = run(workflows(&["--out", d]));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let ci = dir.path().join(".github/workflows/ci.yml");
    let template = dir.path().join(".github/chain-template/bllvm-chain.yml");
    assert!(ci.is_file() && template.is_file(), "{}", out.stdout);
    assert_eq!(run(workflows(&["--check", "--out", d])).code, 0);

    let text = std::fs::read_to_string(&ci).unwrap();
    std::fs::write(
        &ci,
        text.replace("timeout-minutes: 120", "timeout-minutes: 600"),
    )
    .unwrap();
    let out = run(workflows(&["--check", "--out", d]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("ci.yml is missing or differs"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("run `cargo xtask workflows`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("bllvm-chain.yml"), "{}", out.stderr);

    std::fs::remove_file(&template).unwrap();
    let out = run(workflows(&["--check", "--out", d]));
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("bllvm-chain.yml is missing or differs"),
        "{}",
        out.stderr
    );
    // Writing again repairs both.
    assert_eq!(run(workflows(&["--out", d])).code, 0);
    assert_eq!(run(workflows(&["--check", "--out", d])).code, 0);
}

const MARKER: &str = "<!-- bllvm-chain-ci summary -->";

/// `cargo xtask ci --comment` on the sample chain's docs repo (no cargo steps, so fast),
/// as a `pull_request` run of `bllvm-sample/orchestrator` PR 7.
fn ci_comment(env: &Env, event_name: &str) -> Command {
    let mut c = Command::cargo_bin("xtask").unwrap();
    for v in [
        "GITHUB_EVENT_NAME",
        "GITHUB_EVENT_PATH",
        "BLLVM_CI_CACHE_DIR",
        "GITHUB_RUN_ID",
    ] {
        c.env_remove(v);
    }
    c.env("GITHUB_TOKEN", TOKEN)
        .env("GITHUB_API_URL", env.server.uri())
        .env("GITHUB_REPOSITORY", "bllvm-sample/orchestrator")
        .arg("ci")
        .arg("--manifest")
        .arg(sample_manifest())
        .arg("--cache-dir")
        .arg(env.dir.path().join("cache"))
        .arg("--run-dir")
        .arg(env.dir.path().join("run"))
        .args(["--only", "bllvm-spec", "--quiet", "--comment"]);
    env.event(
        &mut c,
        event_name,
        json!({"number": 7, "pull_request": {"number": 7}}),
    );
    c
}

const COMMENTS: &str = "/repos/bllvm-sample/orchestrator/issues/7/comments";

#[test]
fn ci_comment_posts_one_summary_comment_on_a_pull_request() {
    let env = Env::new();
    env.mount(Mock::given(method("GET")).and(path(COMMENTS)).respond_with(
        ResponseTemplate::new(200).set_body_json(json!([{"id": 1, "body": "looks good"}])),
    ));
    env.mount(
        Mock::given(method("POST"))
            .and(path(COMMENTS))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 99, "body": "x"}))),
    );
    let out = run(ci_comment(&env, "pull_request"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("comment: posted the run summary (comment 99)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let reqs = env.requests();
    let calls: Vec<(String, String)> = reqs
        .iter()
        .map(|r| (r.method.to_string(), r.url.path().to_owned()))
        .collect();
    assert_eq!(
        calls,
        [
            ("GET".to_owned(), COMMENTS.to_owned()),
            ("POST".to_owned(), COMMENTS.to_owned())
        ]
    );
    for r in &reqs {
        assert_eq!(header(r, "authorization"), format!("Bearer {TOKEN}"));
        assert_eq!(header(r, "accept"), "application/vnd.github+json");
        assert_eq!(header(r, "user-agent"), "octocrab");
    }
    let b = body(&reqs[1]);
    let text = b["body"].as_str().unwrap();
    assert!(text.starts_with(MARKER), "{text}");
    assert!(text.contains("bllvm-spec"), "{text}");
}

#[test]
fn ci_cell_comment_posts_the_cells_summary() {
    // The generated matrix workflow runs `ci --cell NAME --comment`: the cell's job must
    // post its summary like a plain run does (it once never did).
    let env = Env::new();
    env.mount(
        Mock::given(method("GET"))
            .and(path(COMMENTS))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!([]))),
    );
    env.mount(
        Mock::given(method("POST"))
            .and(path(COMMENTS))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({"id": 5, "body": "x"}))),
    );
    let mut c = ci_comment(&env, "pull_request");
    c.args(["--cell", "default-base"]);
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("comment: posted the run summary (comment 5)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let posts: Vec<String> = env
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert!(posts[0].contains(MARKER), "{}", posts[0]);
    assert!(posts[0].contains("bllvm-spec"), "{}", posts[0]);
}

#[test]
fn ci_comment_updates_its_earlier_comment_instead_of_adding_one() {
    let env = Env::new();
    env.mount(Mock::given(method("GET")).and(path(COMMENTS)).respond_with(
        ResponseTemplate::new(200).set_body_json(json!([
            {"id": 1, "body": "looks good"},
            {"id": 5, "body": format!("{MARKER}\nold summary")}
        ])),
    ));
    env.mount(
        Mock::given(method("PATCH"))
            .and(path("/repos/bllvm-sample/orchestrator/issues/comments/5"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 5}))),
    );
    let out = run(ci_comment(&env, "pull_request"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("comment: updated the run summary (comment 5)"),
        "{}{}",
        out.stdout,
        out.stderr
    );
    let reqs = env.requests();
    let methods: Vec<String> = reqs.iter().map(|r| r.method.to_string()).collect();
    assert_eq!(methods, ["GET", "PATCH"]);
    assert!(body(&reqs[1])["body"].as_str().unwrap().starts_with(MARKER));
}

#[test]
fn ci_comment_posts_nothing_outside_pull_requests() {
    let env = Env::new();
    let out = run(ci_comment(&env, "push"));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("comment: not a pull_request run (push), nothing posted"),
        "{}",
        out.stdout
    );
    assert!(env.requests().is_empty());
}
