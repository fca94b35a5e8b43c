//! Following a chain run end to end against the local GitHub REST stand-in (wiremock):
//! `chain --wait` from dispatch through runs appearing to one failing, `chain status` and
//! its exit codes, the release walk that waits for each run and each publish in a local
//! sparse index, and GitHub App authentication. Runs change state from one request to
//! the next ([`Script`]), with 5xx answers and rate-limit headers on the way.

use std::sync::Mutex;

use base64::Engine as _;
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

use super::chain::{
    body, dispatches, header, manifest_with_chain_table, run, sample_manifest, Env, TOKEN,
};

/// Answers with each template in turn, then with the last one for ever: a run that
/// appears, starts and ends as it is polled.
struct Script(Mutex<Vec<ResponseTemplate>>);

impl Respond for Script {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let mut v = self.0.lock().unwrap();
        if v.len() > 1 {
            v.remove(0)
        } else {
            v[0].clone()
        }
    }
}

fn script(steps: Vec<ResponseTemplate>) -> Script {
    assert!(!steps.is_empty());
    Script(Mutex::new(steps))
}

fn runs_path(repo: &str) -> String {
    format!("/repos/bllvm-sample/{repo}/actions/runs")
}

fn now_rfc3339(offset_secs: i64) -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A workflow run as GitHub lists it, created now; started and last changed at fixed
/// times, so a completed run lasts 1m05s.
fn gh_run(repo: &str, id: u64, chain: &str, status: &str, conclusion: Option<&str>) -> Value {
    json!({
        "id": id,
        "name": "bllvm-chain",
        "display_title": format!("bllvm-chain repository_dispatch {chain}"),
        "event": "repository_dispatch",
        "status": status,
        "conclusion": conclusion,
        "html_url": format!("https://github.com/bllvm-sample/{repo}/actions/runs/{id}"),
        "created_at": now_rfc3339(0),
        "run_started_at": "2024-05-01T12:00:00Z",
        "updated_at": "2024-05-01T12:01:05Z",
        "run_attempt": 1,
        "head_sha": "0123abc"
    })
}

/// A 200 with GitHub's rate-limit headers: plenty left, a window that resets within a
/// minute (so the pacer's spreading of the budget stays in milliseconds).
fn ok_json(v: Value) -> ResponseTemplate {
    ResponseTemplate::new(200)
        .set_body_json(v)
        .insert_header("x-ratelimit-limit", "5000")
        .insert_header("x-ratelimit-remaining", "4990")
        .insert_header("x-ratelimit-reset", (now_unix() + 60).to_string().as_str())
}

fn list(runs: Vec<Value>) -> ResponseTemplate {
    ok_json(json!({ "total_count": runs.len(), "workflow_runs": runs }))
}

fn failing_jobs(repo: &str, run: u64) -> ResponseTemplate {
    ok_json(json!({"total_count": 1, "jobs": [{
        "id": run * 10,
        "name": "chain",
        "status": "completed",
        "conclusion": "failure",
        "html_url": format!("https://github.com/bllvm-sample/{repo}/actions/runs/{run}/job/{}", run * 10),
        "steps": [
            {"name": "check out the rest of the chain", "status": "completed", "conclusion": "success", "number": 1},
            {"name": "build and test this repo", "status": "completed", "conclusion": "failure", "number": 2},
            {"name": "propagate to the repos that depend on this one", "status": "completed", "conclusion": "skipped", "number": 3}
        ]
    }]}))
}

impl Env {
    /// Mount `respond` for `GET path`.
    fn get(&self, p: &str, respond: impl Respond + 'static) {
        self.mount(
            Mock::given(method("GET"))
                .and(path(p))
                .respond_with(respond),
        );
    }

    /// Every repo's runs list is empty unless a test mounts another (lower priority).
    fn no_runs_elsewhere(&self) {
        self.mount(
            Mock::given(method("GET"))
                .and(path_regex(r"^/repos/bllvm-sample/[^/]+/actions/runs$"))
                .respond_with(list(vec![]))
                .with_priority(10),
        );
    }

    /// `cargo xtask chain status CHAIN_ID ARGS` on the sample chain.
    fn status(&self, chain_id: &str, args: &[&str]) -> assert_cmd::Command {
        let mut c = assert_cmd::Command::cargo_bin("xtask").unwrap();
        for v in [
            "GITHUB_TOKEN",
            "GITHUB_EVENT_NAME",
            "GITHUB_EVENT_PATH",
            "GITHUB_API_URL",
            "BLLVM_CI_CACHE_DIR",
        ] {
            c.env_remove(v);
        }
        c.env("GITHUB_TOKEN", TOKEN)
            .args(["chain", "status", chain_id, "--manifest"])
            .arg(sample_manifest())
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(["--api-url", &self.server.uri()])
            .args(["--retry-delay-ms", "1", "--poll-ms", "10"])
            .args(args);
        c
    }
}

/// The paths of the requests, in order.
fn paths(env: &Env) -> Vec<String> {
    env.requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.url.path()))
        .collect()
}

/// The three-repo chain below `bllvm-consensus`: `chain --from bllvm-consensus --wait`
/// dispatches `bllvm-protocol`; its run appears (after a rate-limited answer and a 5xx),
/// goes green and (as the generated workflow does) dispatches `bllvm-node`, whose run
/// appears and fails; `bllvm-sdk`, dispatched only by a green `bllvm-node`, never starts.
/// `--wait` and then `chain status` report it with exit code 1.
#[test]
fn a_three_repo_chain_is_followed_from_dispatch_to_a_failure_and_status_reports_it() {
    let env = Env::new();
    env.no_runs_elsewhere();
    env.mount(super::chain::ok_204("bllvm-protocol"));
    let chain = "gh-it-1";
    // The first look finds nothing yet, and GitHub says the rate limit is spent until now:
    // the follower waits for the reset rather than polling on.
    let spent = ResponseTemplate::new(200)
        .set_body_json(json!({"total_count": 0, "workflow_runs": []}))
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", now_unix().to_string().as_str());
    let other = gh_run("bllvm-protocol", 90, "gh-other-1", "in_progress", None);
    env.get(
        &runs_path("bllvm-protocol"),
        script(vec![
            spent,
            list(vec![
                other.clone(),
                gh_run("bllvm-protocol", 101, chain, "queued", None),
            ]),
            // What `chain status` lists afterwards (the follower reads the run itself).
            list(vec![
                other,
                gh_run("bllvm-protocol", 101, chain, "completed", Some("success")),
            ]),
        ]),
    );
    env.get(
        &format!("{}/101", runs_path("bllvm-protocol")),
        script(vec![
            // Rate limited on a read: waited out (retry-after) and asked again.
            ResponseTemplate::new(403)
                .insert_header("retry-after", "1")
                .insert_header("x-ratelimit-remaining", "0")
                .set_body_json(json!({"message": "API rate limit exceeded"})),
            ok_json(gh_run("bllvm-protocol", 101, chain, "in_progress", None)),
            ok_json(gh_run(
                "bllvm-protocol",
                101,
                chain,
                "completed",
                Some("success"),
            )),
        ]),
    );
    env.get(
        &runs_path("bllvm-node"),
        script(vec![
            ResponseTemplate::new(502),
            list(vec![]),
            list(vec![gh_run("bllvm-node", 201, chain, "in_progress", None)]),
            list(vec![gh_run(
                "bllvm-node",
                201,
                chain,
                "completed",
                Some("failure"),
            )]),
        ]),
    );
    env.get(
        &format!("{}/201", runs_path("bllvm-node")),
        ok_json(gh_run(
            "bllvm-node",
            201,
            chain,
            "completed",
            Some("failure"),
        )),
    );
    env.get(
        &format!("{}/201/jobs", runs_path("bllvm-node")),
        failing_jobs("bllvm-node", 201),
    );

    let out = run({
        let mut c = env.chain(&["--from", "bllvm-consensus", "--wait", "--poll-ms", "10"]);
        c.args(["--timeout", "120"]);
        c
    });
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("sent     bllvm-protocol (bllvm-sample/bllvm-protocol) bllvm-upstream-push, 1 attempt(s)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("chain gh-it-1: failed at bllvm-node"),
        "{}",
        out.stdout
    );
    for line in [
        "waiting 2s: GitHub rate limit: 0 request(s) left, waiting 2s for the reset",
        "bllvm-protocol: queued https://github.com/bllvm-sample/bllvm-protocol/actions/runs/101",
        "bllvm-protocol: completed success",
        "bllvm-node: completed failure https://github.com/bllvm-sample/bllvm-node/actions/runs/201",
    ] {
        assert!(out.stderr.contains(line), "{line}\n{}", out.stderr);
    }
    let reqs = env.requests();
    let posts: Vec<&str> = reqs
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.url.path())
        .collect();
    assert_eq!(
        posts,
        [dispatches("bllvm-protocol")],
        "only the direct dependent is dispatched"
    );
    let listed = reqs
        .iter()
        .find(|r| r.url.path() == runs_path("bllvm-protocol"))
        .unwrap();
    let q: Vec<(String, String)> = listed.url.query_pairs().into_owned().collect();
    assert!(
        q.contains(&("event".into(), "repository_dispatch".into())),
        "{q:?}"
    );
    assert!(q.contains(&("per_page".into(), "100".into())), "{q:?}");
    assert!(
        q.iter().any(|(k, v)| k == "created" && v.starts_with(">=")),
        "{q:?}"
    );
    assert_eq!(header(listed, "authorization"), format!("Bearer {TOKEN}"));
    let p = paths(&env);
    let n = |x: &str| p.iter().filter(|q| q.as_str() == x).count();
    assert_eq!(
        n(&format!("GET {}/101", runs_path("bllvm-protocol"))),
        3,
        "the 403 was asked again: {p:#?}"
    );
    assert!(
        n(&format!("GET {}", runs_path("bllvm-node"))) >= 3,
        "the 502 was retried: {p:#?}"
    );
    assert_eq!(n(&format!("GET {}/201/jobs", runs_path("bllvm-node"))), 1);

    // `chain status` sees the same chain, with the same exit code.
    let out = run(env.status(chain, &[]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    insta::assert_snapshot!("chain_status_failed", out.stdout);
    let out = run(env.status(chain, &["--format", "json"]));
    assert_eq!(out.code, 1);
    let j: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(j["schema_version"], 1);
    assert_eq!(j["verdict"], "failed");
    assert_eq!(j["finished"], true);
    assert_eq!(j["repos"][0]["repo"], "bllvm-protocol");
    assert_eq!(j["repos"][0]["conclusion"], "success");
    assert_eq!(j["repos"][0]["duration_secs"], 65);
    assert_eq!(j["repos"][1]["run_id"], 201);
    assert_eq!(j["repos"][2]["state"], "not_started");
    assert_eq!(j["repos"][2]["blocked_by"], "bllvm-node");
    assert!(j["first_failure"]
        .as_str()
        .unwrap()
        .contains("failed at step `build and test this repo`"));
}

/// A chain still running is exit 8; `--watch` follows it to green (exit 0); a chain id no
/// run carries is "no run found" (exit 8); a repo the token cannot read is an error.
#[test]
fn status_exit_codes_say_whether_the_chain_finished_green() {
    let env = Env::new();
    env.no_runs_elsewhere();
    let chain = "gh-77-1";
    for (repo, id) in [
        ("bllvm-protocol", 101),
        ("bllvm-node", 201),
        ("bllvm-sdk", 301),
    ] {
        let mut listed = gh_run(repo, id, chain, "in_progress", None);
        if repo == "bllvm-protocol" {
            // A server that echoes the token into what is shown gets it replaced (`run`
            // also checks that the token is in no output).
            listed["html_url"] = json!(format!(
                "https://github.com/bllvm-sample/{repo}/actions/runs/{id}?t={TOKEN}"
            ));
        }
        env.get(&runs_path(repo), list(vec![listed]));
        env.get(
            &format!("{}/{id}", runs_path(repo)),
            ok_json(gh_run(repo, id, chain, "completed", Some("success"))),
        );
    }
    let out = run(env.status(chain, &[]));
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("chain gh-77-1: not finished (0 of 3 repo(s) done)\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("bllvm-node      in_progress  -"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("actions/runs/101?t=***"),
        "{}",
        out.stdout
    );

    let out = run(env.status(chain, &["--watch"]));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with("chain gh-77-1: green\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("bllvm-sdk: completed success"),
        "{}",
        out.stderr
    );

    let out = run(env.status("gh-nobody-1", &[]));
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("chain gh-nobody-1: no run found"),
        "{}",
        out.stdout
    );

    // A watch that runs out of time says so, still exit 8.
    let env = Env::new();
    env.no_runs_elsewhere();
    env.get(
        &runs_path("bllvm-sdk"),
        list(vec![gh_run("bllvm-sdk", 5, chain, "queued", None)]),
    );
    env.get(
        &format!("{}/5", runs_path("bllvm-sdk")),
        ok_json(gh_run("bllvm-sdk", 5, chain, "queued", None)),
    );
    let out = run(env.status(chain, &["--watch", "--timeout", "0"]));
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("gave up waiting at --timeout"),
        "{}",
        out.stdout
    );

    // 404 on a runs list: the token cannot see the repo; exit 4, never "green".
    let env = Env::new();
    let out = run(env.status(chain, &[]));
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "the token cannot read this repository's workflow runs (404: Not Found): it needs `actions: read`"
        ),
        "{}",
        out.stderr
    );
}

/// One index file line per version, as crates.io writes them.
fn index_file(name: &str, versions: &[&str]) -> String {
    versions
        .iter()
        .map(|v| {
            json!({"name": name, "vers": v, "deps": [], "cksum": "0".repeat(64), "features": {}, "yanked": false, "v": 2})
                .to_string()
                + "\n"
        })
        .collect()
}

fn walk_versions(env: &Env, repos: &[&str]) -> std::path::PathBuf {
    let mut text = String::from("[release.\"0.1.0\"]\n");
    for r in repos {
        if *r == "bllvm-node" {
            // No `crates`: read from its Cargo.toml, where `publish = false`.
            text.push_str("bllvm-node = \"0.1.0\"\n");
        } else {
            text.push_str(&format!(
                "{r} = {{ version = \"0.1.0\", crates = [\"{r}\"] }}\n"
            ));
        }
    }
    let p = env.dir.path().join("versions.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The sparse index's `config.json` at `/index/`.
fn mount_index_config(env: &Env) {
    env.get(
        "/index/config.json",
        ResponseTemplate::new(200).set_body_json(
            json!({"dl": "https://static.crates.io/crates", "api": "https://crates.io"}),
        ),
    );
}

/// `--release --execute` releases one repo at a time: its run green, then its crate in the
/// index at the set's version, then the next repo. A run of the same chain id that existed
/// before the dispatch is not taken for its run. `bllvm-protocol`'s run fails: the walk
/// stops there, says why, and `bllvm-node` is never dispatched.
#[test]
fn a_release_walk_waits_for_each_run_and_each_publish_and_stops_at_a_failure() {
    let env = Env::new();
    env.no_runs_elsewhere();
    mount_index_config(&env);
    let chain = "gh-it-1";
    for r in [
        "bllvm-primitives",
        "bllvm-consensus",
        "bllvm-protocol",
        "bllvm-node",
    ] {
        env.mount(super::chain::ok_204(r));
    }
    // An earlier, failed run of the same chain id (a re-dispatch): known before the
    // dispatch, so never mistaken for the new one.
    let old = gh_run("bllvm-primitives", 10, chain, "completed", Some("failure"));
    env.get(
        &runs_path("bllvm-primitives"),
        script(vec![
            list(vec![old.clone()]),
            list(vec![old.clone()]),
            list(vec![
                gh_run("bllvm-primitives", 11, chain, "queued", None),
                old,
            ]),
        ]),
    );
    env.get(
        &format!("{}/11", runs_path("bllvm-primitives")),
        ok_json(gh_run(
            "bllvm-primitives",
            11,
            chain,
            "completed",
            Some("success"),
        )),
    );
    env.get(
        &runs_path("bllvm-consensus"),
        script(vec![
            list(vec![]),
            list(vec![gh_run(
                "bllvm-consensus",
                21,
                chain,
                "completed",
                Some("success"),
            )]),
        ]),
    );
    env.get(
        &runs_path("bllvm-protocol"),
        script(vec![
            list(vec![]),
            list(vec![gh_run(
                "bllvm-protocol",
                31,
                chain,
                "in_progress",
                None,
            )]),
        ]),
    );
    env.get(
        &format!("{}/31", runs_path("bllvm-protocol")),
        ok_json(gh_run(
            "bllvm-protocol",
            31,
            chain,
            "completed",
            Some("failure"),
        )),
    );
    env.get(
        &format!("{}/31/jobs", runs_path("bllvm-protocol")),
        failing_jobs("bllvm-protocol", 31),
    );
    // The index: not there, then an older version only, then the released one.
    env.get(
        "/index/bl/lv/bllvm-primitives",
        script(vec![
            ResponseTemplate::new(404),
            ResponseTemplate::new(200).set_body_string(index_file("bllvm-primitives", &["0.0.9"])),
            ResponseTemplate::new(200)
                .set_body_string(index_file("bllvm-primitives", &["0.0.9", "0.1.0"])),
        ]),
    );
    env.get(
        "/index/bl/lv/bllvm-consensus",
        ResponseTemplate::new(200).set_body_string(index_file("bllvm-consensus", &["0.1.0"])),
    );

    let v = walk_versions(
        &env,
        &[
            "bllvm-primitives",
            "bllvm-consensus",
            "bllvm-protocol",
            "bllvm-node",
        ],
    );
    let index = format!("sparse+{}/index/", env.server.uri());
    let out = run(env.chain(&[
        "--release",
        "0.1.0",
        "--execute",
        "--versions",
        v.to_str().unwrap(),
        "--index-url",
        &index,
        "--poll-ms",
        "10",
        "--timeout",
        "120",
    ]));
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let u = |r: &str, id: u64| format!("https://github.com/bllvm-sample/{r}/actions/runs/{id}");
    assert_eq!(
        out.stdout,
        format!(
            "release 0.1.0 (chain gh-it-1): 4 repo(s), one at a time\n\
             released  bllvm-primitives 0.1.0 (bllvm-sample/bllvm-primitives): run {} green, bllvm-primitives 0.1.0 in the index\n\
             released  bllvm-consensus 0.1.0 (bllvm-sample/bllvm-consensus): run {} green, bllvm-consensus 0.1.0 in the index\n\
             stopped   bllvm-protocol 0.1.0 (bllvm-sample/bllvm-protocol): its run failed: bllvm-protocol: job `chain` failed at step `build and test this repo` ({}/job/310)\n\
             not sent  bllvm-node 0.1.0 (bllvm-sample/bllvm-node): not sent: the walk stopped at `bllvm-protocol`\n",
            u("bllvm-primitives", 11),
            u("bllvm-consensus", 21),
            u("bllvm-protocol", 31),
        )
    );
    assert!(
        out.stderr
            .contains("bllvm-primitives 0.1.0: waiting for it in the index"),
        "{}",
        out.stderr
    );

    // The order of what reached the server: each dispatch only after the one before it
    // ran green and its crate was listed at the version.
    let p = paths(&env);
    let at = |x: &str| {
        p.iter()
            .position(|q| q == x)
            .unwrap_or_else(|| panic!("no {x}: {p:#?}"))
    };
    let last = |x: &str| {
        p.iter()
            .rposition(|q| q == x)
            .unwrap_or_else(|| panic!("no {x}: {p:#?}"))
    };
    let post = |r: &str| format!("POST {}", dispatches(r));
    let prim_index = "GET /index/bl/lv/bllvm-primitives";
    assert_eq!(p.iter().filter(|q| *q == prim_index).count(), 3, "{p:#?}");
    assert!(at("GET /index/config.json") < at(&post("bllvm-primitives")));
    assert!(
        at(&post("bllvm-primitives")) < at(&format!("GET {}/11", runs_path("bllvm-primitives")))
    );
    assert!(last(&format!("GET {}/11", runs_path("bllvm-primitives"))) < at(prim_index));
    assert!(last(prim_index) < at(&post("bllvm-consensus")), "{p:#?}");
    assert!(
        last("GET /index/bl/lv/bllvm-consensus") < at(&post("bllvm-protocol")),
        "{p:#?}"
    );
    assert!(
        !p.contains(&post("bllvm-node")),
        "the walk went past the failure: {p:#?}"
    );
    let reqs = env.requests();
    let sent = reqs
        .iter()
        .find(|r| r.url.path() == dispatches("bllvm-consensus"))
        .unwrap();
    assert_eq!(body(sent)["client_payload"]["version"], "0.1.0");
    assert_eq!(body(sent)["client_payload"]["release_set"], "0.1.0");
}

/// A version that never reaches the index stops the walk after `--publish-timeout`
/// (exit 8); an index URL that serves no sparse index stops it before anything is sent
/// (exit 2); a dry run prints the same plan with its waits and sends nothing.
#[test]
fn a_release_walk_stops_on_a_missing_publish_and_checks_the_index_first() {
    let env = Env::new();
    env.no_runs_elsewhere();
    mount_index_config(&env);
    env.mount(super::chain::ok_204("bllvm-primitives"));
    env.get(
        &runs_path("bllvm-primitives"),
        script(vec![
            list(vec![]),
            list(vec![gh_run(
                "bllvm-primitives",
                11,
                "gh-it-1",
                "completed",
                Some("success"),
            )]),
        ]),
    );
    env.get("/index/bl/lv/bllvm-primitives", ResponseTemplate::new(404));
    let v = walk_versions(&env, &["bllvm-primitives", "bllvm-node"]);
    let index = format!("{}/index", env.server.uri());
    let base = [
        "--release",
        "0.1.0",
        "--versions",
        v.to_str().unwrap(),
        "--index-url",
        &index,
        "--poll-ms",
        "10",
    ];

    let out = run(env.chain(&base));
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(env.requests().is_empty(), "a dry run sent something");
    assert!(
        out.stdout.contains("dry-run  bllvm-primitives"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(&format!(
            "  1. bllvm-primitives 0.1.0: dispatch bllvm-upstream-release, wait up to 3600s for its run (chain gh-it-1) to finish green, then wait up to 1800s for bllvm-primitives 0.1.0 in {}/index/",
            env.server.uri()
        )),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("  2. bllvm-node 0.1.0: dispatch bllvm-upstream-release, wait up to 3600s for its run (chain gh-it-1) to finish green, publishes no crate: no index wait"),
        "{}",
        out.stdout
    );

    let mut args = base.to_vec();
    args.extend(["--execute", "--publish-timeout", "1"]);
    let out = run(env.chain(&args));
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("stopped   bllvm-primitives 0.1.0 (bllvm-sample/bllvm-primitives): bllvm-primitives 0.1.0 did not appear in the index within 1s"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("answered 404: the crate is not in the index yet"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("not sent  bllvm-node"),
        "{}",
        out.stdout
    );

    let before = env.requests().len();
    let mut args = base.to_vec();
    let nowhere = format!("{}/nowhere/", env.server.uri());
    args[5] = &nowhere;
    args.push("--execute");
    let out = run(env.chain(&args));
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("nowhere/config.json answered 404 without a sparse index's config"),
        "{}",
        out.stderr
    );
    let after: Vec<String> = paths(&env).split_off(before);
    assert_eq!(
        after,
        ["GET /nowhere/config.json".to_owned()],
        "sent something before checking the index"
    );
}

const APP_KEY: &str = include_str!("app-test-key.pem");
const APP_PUBLIC_DER_B64: &str = include_str!("app-test-key.pub.b64");

/// Check a JWT's RS256 signature with the app's public key; return its claims.
fn verified_claims(jwt: &str) -> Value {
    let parts: Vec<&str> = jwt.split('.').collect();
    assert_eq!(parts.len(), 3, "not a JWT");
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let public = base64::engine::general_purpose::STANDARD
        .decode(APP_PUBLIC_DER_B64.trim())
        .unwrap();
    let algs = rustls::crypto::ring::default_provider().signature_verification_algorithms;
    let (_, verifiers) = algs
        .mapping
        .iter()
        .find(|(s, _)| *s == rustls::SignatureScheme::RSA_PKCS1_SHA256)
        .unwrap();
    verifiers[0]
        .verify_signature(
            &public,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &b64.decode(parts[2]).unwrap(),
        )
        .expect("the JWT is signed with the app's key");
    serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap()
}

/// With `[chain] app-id-env` and `private-key-env` set, dispatches go out with an
/// installation token: one JWT-authenticated lookup and one token per owner, reused for
/// every repo of that owner; no secret (key, JWT, installation token) reaches the output.
/// An app not installed on the owner fails with exit 4 and says so.
#[test]
fn a_github_app_dispatches_with_one_installation_token_per_owner() {
    let env = Env::new();
    let m = manifest_with_chain_table(
        &env,
        "[chain]\napp-id-env = \"BLLVM_IT_APP_ID\"\nprivate-key-env = \"BLLVM_IT_APP_KEY\"\n",
    );
    let inst_token = "ghs_FAKEinstallationTOKENnever0123";
    env.get(
        "/repos/bllvm-sample/bllvm-protocol/installation",
        ok_json(json!({"id": 77, "account": {"login": "bllvm-sample"}})),
    );
    env.mount(
        Mock::given(method("POST"))
            .and(path("/app/installations/77/access_tokens"))
            .respond_with(
                ResponseTemplate::new(201)
                    .set_body_json(json!({"token": inst_token, "expires_at": now_rfc3339(3600)})),
            ),
    );
    for r in ["bllvm-protocol", "bllvm-node", "bllvm-sdk"] {
        env.mount(super::chain::ok_204(r));
    }
    let mut c = env.chain_with(&m, &["--from", "bllvm-consensus", "--transitive"]);
    c.env_remove("GITHUB_TOKEN")
        .env("BLLVM_IT_APP_ID", "12345")
        .env("BLLVM_IT_APP_KEY", APP_KEY);
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains(
            "note: authenticating as a GitHub App from BLLVM_IT_APP_ID / BLLVM_IT_APP_KEY"
        ),
        "{}",
        out.stderr
    );
    for secret in [inst_token, "PRIVATE KEY", &APP_KEY[40..80]] {
        assert!(
            !out.stdout.contains(secret) && !out.stderr.contains(secret),
            "{secret} leaked"
        );
    }
    let reqs = env.requests();
    let p = paths(&env);
    assert_eq!(
        p,
        [
            "GET /repos/bllvm-sample/bllvm-protocol/installation".to_owned(),
            "POST /app/installations/77/access_tokens".to_owned(),
            format!("POST {}", dispatches("bllvm-protocol")),
            format!("POST {}", dispatches("bllvm-node")),
            format!("POST {}", dispatches("bllvm-sdk")),
        ]
    );
    for r in &reqs[..2] {
        let jwt = header(r, "authorization").strip_prefix("Bearer ").unwrap();
        assert!(
            !out.stdout.contains(jwt) && !out.stderr.contains(jwt),
            "the JWT leaked"
        );
        let claims = verified_claims(jwt);
        assert_eq!(claims["iss"], "12345");
        let (iat, exp) = (
            claims["iat"].as_i64().unwrap(),
            claims["exp"].as_i64().unwrap(),
        );
        assert!(exp - iat <= 600 && iat <= now_unix(), "{claims}");
    }
    for r in &reqs[2..] {
        assert_eq!(header(r, "authorization"), format!("Bearer {inst_token}"));
    }

    // Not installed on the owner: 404 on the lookup.
    let env = Env::new();
    let m = manifest_with_chain_table(
        &env,
        "[chain]\napp-id-env = \"BLLVM_IT_APP_ID\"\nprivate-key-env = \"BLLVM_IT_APP_KEY\"\n",
    );
    let mut c = env.chain_with(&m, &["--from", "bllvm-consensus"]);
    c.env_remove("GITHUB_TOKEN")
        .env("BLLVM_IT_APP_ID", "12345")
        .env("BLLVM_IT_APP_KEY", APP_KEY);
    let out = run(c);
    assert_eq!(out.code, 4, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("failed   bllvm-protocol (bllvm-sample/bllvm-protocol): the GitHub App is not installed on bllvm-sample"),
        "{}",
        out.stdout
    );
    assert!(env
        .requests()
        .iter()
        .all(|r| !r.url.path().ends_with("/dispatches")));

    // A key that is not a key: exit 2 before any request, naming the variable only.
    let mut c = env.chain_with(&m, &["--from", "bllvm-consensus"]);
    c.env_remove("GITHUB_TOKEN")
        .env("BLLVM_IT_APP_ID", "12345")
        .env("BLLVM_IT_APP_KEY", "not-a-key-but-a-secret-value");
    let out = run(c);
    assert_eq!(out.code, 2, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr
            .contains("BLLVM_IT_APP_KEY does not hold a PEM private key"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("not-a-key-but-a-secret-value"));
}

/// A run started by a release walk does not dispatch its dependents: the walk releases
/// each repo itself, after its upstreams' crates are published.
#[test]
fn a_run_of_a_release_set_does_not_propagate() {
    let env = Env::new();
    let mut c = env.chain(&["--from", "bllvm-consensus"]);
    env.event(
        &mut c,
        "repository_dispatch",
        json!({"client_payload": {"source": "release", "chain_id": "gh-9-1", "hop": 1,
            "event": "release", "path": [], "version": "0.1.0", "release_set": "0.1.0",
            "dispatch_id": "gh-9-1:1:bllvm-consensus"}}),
    );
    let out = run(c);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("skipped  bllvm-protocol (bllvm-sample/bllvm-protocol): runs of release set 0.1.0 do not propagate"),
        "{}",
        out.stdout
    );
    assert!(env.requests().is_empty());
}
