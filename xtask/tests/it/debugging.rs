//! Issue 5, debugging aids, through the CLI: `explain` (error knowledge base), `preflight`,
//! notifications and `report`.

use predicates::prelude::*;

use crate::support::{self, xtask};

/// A cargo log as a failed `build` step writes it: a real compile error, with cargo's
/// colours on.
const FAILED_BUILD_LOG: &str =
    "   \x1b[1m\x1b[32mCompiling\x1b[0m bllvm-node v0.1.0 (/ci/bllvm-node)\n\
\x1b[1m\x1b[91merror[E0425]\x1b[0m: cannot find value `genesis` in this scope\n\
  --> src/lib.rs:3:5\n\
\x1b[1m\x1b[91merror\x1b[0m: could not compile `bllvm-node` (lib) due to 1 previous error\n";

#[test]
fn explain_reads_stdin_and_prints_matches_with_their_lines_and_the_first_error() {
    let out = xtask()
        .args(["explain", "-"])
        .write_stdin(FAILED_BUILD_LOG)
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(
        text.contains("[could-not-compile] `bllvm-node` did not compile"),
        "{text}"
    );
    assert!(
        text.contains("    4 | error: could not compile `bllvm-node` (lib)"),
        "{text}"
    );
    assert!(
        text.contains(
            "first error: error[E0425]: cannot find value `genesis` in this scope (src/lib.rs:3:5)"
        ),
        "{text}"
    );
}

#[test]
fn explain_reads_a_file_as_json_and_says_so_when_nothing_matches() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("build.log");
    std::fs::write(
        &log,
        "error: toolchain '1.70.0-x86_64-unknown-linux-gnu' is not installed\n",
    )
    .unwrap();
    let out = xtask()
        .args(["explain", "--format", "json"])
        .arg(&log)
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v[0]["log"], log.display().to_string());
    assert_eq!(v[0]["matches"][0]["id"], "toolchain-not-installed");
    assert!(v[0]["matches"][0]["fix"]
        .as_str()
        .unwrap()
        .contains("rustup toolchain install 1.70.0-x86_64-unknown-linux-gnu"));

    let out = xtask()
        .args(["explain", "-"])
        .write_stdin("all good\n")
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("no known error pattern matched"), "{text}");

    xtask()
        .args(["explain"])
        .arg(dir.path().join("missing.log"))
        .assert()
        .code(2)
        .stderr(predicates::str::contains("cannot read log"));
}

/// A chain with planted problems: `a` pins a toolchain nobody has, `b` has no checkout,
/// the dispatch token is missing, a release without a version, a Discord webhook variable
/// unset (a warning) and a Slack one set to a fake URL that must never be printed.
#[test]
fn preflight_lists_every_planted_problem_at_once_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("chain.toml"),
        r#"root = "."
[chain]
token-env = "BLLVM_TEST_CHAIN_TOKEN"
[preflight]
min-free-gb = 0.001
[notify]
slack-webhook-env = "BLLVM_TEST_SLACK_HOOK"
discord-webhook-env = "BLLVM_TEST_DISCORD_HOOK"
[[repo]]
name = "a"
github = "o/a"
[[repo]]
name = "b"
github = "o/b"
[[repo]]
name = "spec"
github = "o/spec"
kind = "docs"
"#,
    )
    .unwrap();
    std::fs::create_dir_all(root.join("a/src")).unwrap();
    std::fs::create_dir_all(root.join("spec")).unwrap();
    std::fs::write(
        root.join("a/Cargo.toml"),
        "[package]\nname = \"a\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(root.join("a/src/lib.rs"), "").unwrap();
    std::fs::write(
        root.join("a/rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.0.0\"\n",
    )
    .unwrap();
    const FAKE_HOOK: &str = "https://hooks.example.invalid/services/T000/B000/fake-secret-path";
    let out = xtask()
        .current_dir(root)
        .args([
            "preflight",
            "--manifest",
            "chain.toml",
            "--cache-dir",
            "cache",
        ])
        .args([
            "--chain",
            "--token-env",
            "BLLVM_TEST_TOKEN",
            "--release",
            "--ref",
            "v1",
        ])
        .env_remove("GITHUB_TOKEN")
        .env_remove("BLLVM_TEST_TOKEN")
        .env_remove("BLLVM_TEST_CHAIN_TOKEN")
        .env_remove("BLLVM_TEST_DISCORD_HOOK")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env("BLLVM_TEST_SLACK_HOOK", FAKE_HOOK)
        .assert()
        .code(2);
    let stdout = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    let all = format!("{stdout}{stderr}");
    assert!(
        !all.contains(FAKE_HOOK) && !all.contains("fake-secret-path"),
        "secret printed:\n{all}"
    );
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("preflight: error") || l.starts_with("preflight: warning"))
        .collect();
    let has = |needle: &str| problems.iter().any(|l| l.contains(needle));
    assert!(
        has("error [checkout] b: expected a checkout at"),
        "{stderr}"
    );
    assert!(has("error [secret] no token for dispatching"), "{stderr}");
    assert!(
        has("set BLLVM_TEST_TOKEN or BLLVM_TEST_CHAIN_TOKEN or GITHUB_TOKEN"),
        "{stderr}"
    );
    assert!(has("error [inputs] a release needs a version"), "{stderr}");
    assert!(
        has("warning [secret] BLLVM_TEST_DISCORD_HOOK is unset"),
        "{stderr}"
    );
    assert!(
        !has("BLLVM_TEST_SLACK_HOOK"),
        "a set webhook is not a problem:\n{stderr}"
    );
    assert!(!has("spec"), "a docs repo needs no Cargo.toml:\n{stderr}");
    // Pins are checked through rustup: without it, a counted skip (under CI a failure).
    if support::find_tool(&support::RUSTUP, &["rustup"]).is_some() {
        assert!(
            has("error [toolchain] a: the toolchain pinned by"),
            "{stderr}"
        );
        assert!(has("rust-toolchain.toml"), "{stderr}");
        assert!(
            stderr.contains("fix: install it (`rustup toolchain install 1.0.0"),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("fatal problem(s)") && stderr.contains("the run was not started"),
        "{stderr}"
    );
}

#[test]
fn preflight_passes_on_the_sample_chain() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/sample/chain.toml");
    let dir = tempfile::tempdir().unwrap();
    xtask()
        .args(["preflight", "--manifest", manifest, "--cache-dir"])
        .arg(dir.path())
        .env_remove("RUSTUP_TOOLCHAIN")
        .assert()
        .success()
        .stderr(predicates::str::contains("preflight: ok"));
}

/// A webhook on 127.0.0.1 that answers 200 to up to `n` requests and sends each JSON body
/// to the returned channel; returns its URL (whose path plays the secret token).
fn webhook_server(n: usize) -> (String, std::sync::mpsc::Receiver<serde_json::Value>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/services/T0/B0/e2e-secret-token",
        l.local_addr().unwrap()
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming().take(n) {
            let Ok(mut s) = stream else { return };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                    break;
                }
                if let Some((k, v)) = h.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
            }
            let mut body = vec![0; len];
            if r.read_exact(&mut body).is_err() {
                return;
            }
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

/// End to end through `ci`: a one-repo chain whose `build` step fails with a linker error,
/// then passes. The failed run writes build-metrics.json, grows the history by one and
/// sends a Slack and a Discord message with the repo, step, first error and fix; the next
/// run sends the recovery; `report` then shows both runs, as text and as HTML charts.
#[test]
fn ci_records_metrics_notifies_failure_then_recovery_and_report_shows_the_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("chain");
    let step =
        r#"steps = [{ name = "build", command = ["sh", "-c", "cat out.txt; exit $(cat code)"] }]"#;
    let manifest = crate::support::write_chain(&root, &[("solo", &[])], &[("solo", step)]);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text += "\n[preflight]\nmin-free-gb = 0.001\n[notify]\nslack-webhook-env = \"BLLVM_TEST_SLACK\"\ndiscord-webhook-env = \"BLLVM_TEST_DISCORD\"\n";
    std::fs::write(&manifest, text).unwrap();
    let solo = root.join("solo");
    std::fs::write(solo.join("out.txt"), "   Compiling solo v0.1.0\nerror: linker `cc` not found\n  = note: No such file or directory (os error 2)\n").unwrap();
    std::fs::write(solo.join("code"), "1").unwrap();
    crate::support::git_commit_all(&solo);
    let (slack, slack_rx) = webhook_server(2);
    let (discord, discord_rx) = webhook_server(2);
    let cache = dir.path().join("cache");
    let history = cache.join("metrics/history.jsonl");
    let run = |name: &str, code: i32| {
        let run_dir = dir.path().join(name);
        let out = crate::support::xtask()
            .args(["ci", "--quiet", "--manifest"])
            .arg(&manifest)
            .arg("--cache-dir")
            .arg(&cache)
            .arg("--run-dir")
            .arg(&run_dir)
            .env("CARGO_HOME", dir.path().join("cargo-home"))
            .env("BLLVM_TEST_SLACK", &slack)
            .env("BLLVM_TEST_DISCORD", &discord)
            .env_remove("GITHUB_REPOSITORY")
            .env_remove("GITHUB_RUN_ID")
            .assert()
            .code(code);
        let o = out.get_output();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            !all.contains("e2e-secret-token"),
            "a webhook URL was printed:\n{all}"
        );
        let metrics: serde_json::Value =
            serde_json::from_slice(&std::fs::read(run_dir.join("build-metrics.json")).unwrap())
                .unwrap();
        (all, metrics)
    };
    let bound = std::time::Duration::from_secs(60);

    let (out, m) = run("run1", 1);
    assert!(
        out.contains("notify: Slack message sent (BLLVM_TEST_SLACK)"),
        "{out}"
    );
    assert!(
        out.contains("hint: details with `cargo xtask explain "),
        "{out}"
    );
    assert!(
        out.contains("hint: [linker-not-found] linker `cc` not found: Install a C toolchain"),
        "{out}"
    );
    assert_eq!(m["schema_version"], 1);
    assert_eq!(m["run_id"], "run1");
    assert_eq!(m["status"], "failed");
    assert_eq!(m["event"], "local");
    assert_eq!(m["repos"][0]["name"], "solo");
    assert_eq!(m["repos"][0]["steps"][0]["name"], "build");
    assert_eq!(m["repos"][0]["steps"][0]["status"], "failed");
    assert!(m["repos"][0]["cache"][0]["restore"].is_string(), "{m:#}");
    assert!(
        m["disk"]["free_before_bytes"].as_u64().unwrap() > 0,
        "{m:#}"
    );
    assert_eq!(
        std::fs::read_to_string(&history).unwrap().lines().count(),
        1
    );
    let s = slack_rx.recv_timeout(bound).expect("slack message");
    let s_text = s.to_string();
    assert!(
        s["text"].as_str().unwrap().contains("failed: solo / build"),
        "{s:#}"
    );
    assert!(s_text.contains("error: linker `cc` not found"), "{s:#}");
    assert!(s_text.contains("Install a C toolchain"), "{s:#}");
    // `explain RUN_DIR` explains every failed step of the run.
    let out = xtask()
        .arg("explain")
        .arg(dir.path().join("run1"))
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.starts_with("solo `build` ("), "{text}");
    assert!(
        text.contains("[linker-not-found] linker `cc` not found"),
        "{text}"
    );
    let d = discord_rx.recv_timeout(bound).expect("discord message");
    assert_eq!(d["embeds"][0]["color"], 15158332, "{d:#}");
    assert!(d["embeds"][0]["description"]
        .as_str()
        .unwrap()
        .contains("linker `cc` not found"));

    std::fs::write(solo.join("code"), "0").unwrap();
    let (_, m) = run("run2", 0);
    assert_eq!(m["status"], "ok");
    assert_eq!(
        std::fs::read_to_string(&history).unwrap().lines().count(),
        2
    );
    let s = slack_rx.recv_timeout(bound).expect("slack recovery");
    assert!(
        s["text"].as_str().unwrap().contains("is green again"),
        "{s:#}"
    );
    let d = discord_rx.recv_timeout(bound).expect("discord recovery");
    assert_eq!(d["embeds"][0]["color"], 3066993, "{d:#}");

    let out = xtask()
        .args(["report", "--cache-dir"])
        .arg(&cache)
        .assert()
        .success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("metrics: 2 run(s)"), "{text}");
    assert!(text.contains("solo/build"), "{text}");
    let page = dir.path().join("report/index.html");
    xtask()
        .args(["report", "--cache-dir"])
        .arg(&cache)
        .arg("--html")
        .arg(&page)
        .assert()
        .success();
    let html = std::fs::read_to_string(&page).unwrap();
    let svgs: Vec<&str> = html.split("<svg").skip(1).collect();
    assert_eq!(svgs.len(), 4, "{html}");
    for (svg, title) in svgs.iter().zip([
        "Duration per repo",
        "Cache hit rate",
        "Cache size",
        "Slowest steps",
    ]) {
        assert!(svg.contains(&format!("<title>{title}</title>")), "{title}");
    }
    screenshot_if_chromium(&page);
}

/// Render the report in headless Chromium and check a PNG came out. Without Chromium (or
/// when it hangs): a counted skip, and under CI a failure with the install command
/// (`.ci/run` installs it; a laptop may not have it).
fn screenshot_if_chromium(page: &std::path::Path) {
    let Some(bin) = support::find_tool(
        &support::CHROMIUM,
        &["chromium", "chromium-browser", "google-chrome"],
    ) else {
        return;
    };
    let png = page.with_extension("png");
    let st = std::process::Command::new(&bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=900,1800",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A bound, not a timing assertion: a browser that hangs must not hang the suite.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let mut child = st;
    let st = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            support::skip(
                &support::CHROMIUM,
                &format!("{} did not finish within 120 s", bin.display()),
            );
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(
        st.success(),
        "{} failed to render the report",
        bin.display()
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG"), "not a PNG");
}

/// A `ci` that cannot start (a missing checkout) exits 2 and tells the webhook so.
#[test]
fn ci_stopped_by_preflight_notifies_that_the_run_did_not_start() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("chain");
    let manifest = crate::support::write_chain(&root, &[("here", &[])], &[]);
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text += "\n[[repo]]\nname = \"gone\"\ngithub = \"o/gone\"\n\n[preflight]\nmin-free-gb = 0.001\n[notify]\nslack-webhook-env = \"BLLVM_TEST_SLACK\"\n";
    std::fs::write(&manifest, text).unwrap();
    let (slack, slack_rx) = webhook_server(1);
    let out = crate::support::xtask()
        .args(["ci", "--quiet", "--manifest"])
        .arg(&manifest)
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("BLLVM_TEST_SLACK", &slack)
        .assert()
        .code(2);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        stderr.contains("error [checkout] gone: expected a checkout at"),
        "{stderr}"
    );
    assert!(!stderr.contains("e2e-secret-token"), "{stderr}");
    let s = slack_rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("slack message");
    let body = s.to_string();
    assert!(body.contains("(preflight: the run did not start)"), "{s:#}");
    assert!(body.contains("gone: expected a checkout at"), "{s:#}");
}

#[test]
fn report_without_history_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    xtask()
        .args(["report", "--cache-dir"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(
            predicates::str::contains("no metrics in")
                .and(predicates::str::contains("run `cargo xtask ci` first")),
        );
}

/// Tidy: the knowledge base in ci/ loads through `--patterns` as the embedded copy does,
/// and a broken one is refused with the pattern's id.
#[test]
fn explain_patterns_flag_loads_the_file_and_rejects_a_bad_regex() {
    let kb = concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/error-patterns.toml");
    xtask()
        .args(["explain", "--patterns", kb, "-"])
        .write_stdin("error: could not compile `x` (lib)\n")
        .assert()
        .success()
        .stdout(predicates::str::contains("[could-not-compile]"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "schema_version = 1\n[[pattern]]\nid = \"broken\"\nregex = \"(\"\ntitle = \"t\"\nexplanation = \"e\"\nfix = \"f\"\nexample = \"x\"\ncounter-example = \"y\"\n",
    )
    .unwrap();
    xtask()
        .args(["explain", "--patterns"])
        .arg(&bad)
        .arg("-")
        .write_stdin("x")
        .assert()
        .code(2)
        .stderr(predicates::str::contains(
            "pattern `broken` has an invalid regex",
        ));
}
