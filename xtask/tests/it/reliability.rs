//! Issue 8, the reliability and security suite: the cache scenarios of `cargo xtask stress`
//! at small counts (concurrency, crashes, corruption, a full disk), `ci` on a full cache
//! filesystem, hostile and bad input (table-driven: each case's message and exit code),
//! secrets that must appear in no output or file, and events that must never write a
//! cache entry or dispatch. Real processes, real files, servers on 127.0.0.1 only.
//!
//! `cargo xtask stress` runs the same scenarios with larger counts (README, "Reliability").

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use super::support::{self, xtask};

// ---------------------------------------------------------------------------------------
// The stress scenarios, small (compiled with the `dev` feature, as `cargo xtask stress` is;
// the suite's command, README's, turns it on)

/// `cargo xtask stress --scenario NAME --format json` with small counts; returns the
/// scenario's report after checking it passed (or, for full-disk only, was skipped with
/// a reason).
#[cfg(feature = "dev")]
fn stress(scenario: &str, counts: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args([
            "stress",
            "--format",
            "json",
            "--seed",
            "8",
            "--scenario",
            scenario,
            "--dir",
        ])
        .arg(dir.path())
        .args(counts)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let report: Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let s = report["scenarios"][0].clone();
    assert_eq!(s["name"], scenario, "{report:#}");
    assert_eq!(
        s["problems"],
        json!([]),
        "{scenario} found problems: {report:#}"
    );
    assert_eq!(out.status.code(), Some(0), "{report:#}");
    s
}

#[cfg(feature = "dev")]
fn op(s: &Value, name: &str) -> u64 {
    s["ops"][name].as_u64().unwrap_or(0)
}

#[cfg(feature = "dev")]
#[test]
fn eight_processes_share_keys_without_torn_entries_loss_or_deadlock() {
    let s = stress(
        "concurrency",
        &["--procs", "8", "--rounds", "15", "--keys", "4"],
    );
    // Every kind of operation ran, restores were checked byte for byte, and the final
    // checks (verify, no loss, retention) ran.
    for o in [
        "restore-save",
        "restore-touch-save",
        "fresh-save",
        "read-only-restore",
        "verify",
        "prune",
    ] {
        assert!(op(&s, o) > 0, "{o} never ran: {s:#}");
    }
    assert!(op(&s, "restored whole") > 0, "{s:#}");
    assert_eq!(op(&s, "final verify"), 1);
    assert_eq!(op(&s, "final retention"), 1);
}

#[cfg(feature = "dev")]
#[test]
fn savers_killed_at_random_points_leave_nothing_partial() {
    let s = stress("crash", &["--crashes", "16"]);
    assert_eq!(op(&s, "recovered"), 16, "{s:#}");
    assert_eq!(op(&s, "killed parked before the rename"), 4, "{s:#}");
    // Some kills must have left leftovers for the next open to clean (the parked ones do,
    // always), so the cleanup was really exercised; every random kill is classified.
    assert!(op(&s, "tmp leftovers found") >= 4, "{s:#}");
    let random = op(&s, "killed before writing")
        + op(&s, "killed while writing")
        + op(&s, "killed after publishing");
    assert_eq!(random, 12, "{s:#}");
}

#[cfg(feature = "dev")]
#[test]
fn every_kind_of_damage_is_detected_discarded_and_rebuilt() {
    let s = stress("corruption", &["--corruptions", "2"]);
    for kind in [
        "truncate",
        "flip-byte",
        "delete-file",
        "damage-manifest",
        "damage-entry-json",
        "bit-rot",
    ] {
        assert_eq!(op(&s, kind), 2, "{kind}: {s:#}");
    }
    assert_eq!(op(&s, "detected and rebuilt"), 10, "{s:#}");
    // The documented limit is observed, not hidden.
    assert!(s["notes"].to_string().contains("bit rot"), "{s:#}");
}

#[cfg(feature = "dev")]
#[test]
fn saves_into_a_full_filesystem_warn_and_publish_nothing() {
    let s = stress("full-disk", &["--full-disk", "1"]);
    // The scenario mounts its own tmpfs (or runs itself again under `unshare`); when it
    // could not: a counted skip, or under CI a failure saying what to enable.
    if let Some(why) = s["skipped"].as_str() {
        support::skip(&support::TMPFS, why);
        return;
    }
    for case in ["guard", "enospc-bytes", "enospc-inodes"] {
        assert_eq!(op(&s, case), 1, "{case}: {s:#}");
    }
}

/// `bench` and `stress` exist only in a build with the `dev` feature; without it they still
/// parse and say how to get them (exit 2). Under `CI` the suite must run with the feature,
/// or the scenarios above would not run at all.
#[test]
fn dev_commands_need_the_dev_feature_and_say_so() {
    if cfg!(feature = "dev") {
        for (cmd, shows) in [("bench", "noop"), ("stress", "--scenario")] {
            let o = xtask().args([cmd, "--help"]).output().unwrap();
            let text = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success() && text.contains(shows), "{cmd}: {text}");
        }
        return;
    }
    assert!(
        !support::under_ci(),
        "the suite runs with the dev feature (README): `cargo test --workspace --locked --features remote,dev`"
    );
    for args in [
        &["bench", "noop", "--reps", "1"][..],
        &["stress", "--seed", "8"][..],
    ] {
        let o = xtask().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{err}");
        let want = format!(
            "run `cargo run -p xtask --features dev -- {}`",
            args.join(" ")
        );
        assert!(err.contains(&want), "{err}");
    }
}

// ---------------------------------------------------------------------------------------
// Fixtures

/// What every fixture manifest of this suite appends: the cache's disk guard and the
/// preflight disk floor off, so a test's outcome never depends on how full the machine's
/// disk happens to be (both are tested on their own, on a tmpfs).
pub const ROOMY: &str = "\n[cache]\ndisk-max-used-percent = 100\ndisk-min-free-bytes = 0\n[preflight]\nmin-free-gb = 0\n";

/// One cargo repo `solo` (no dependencies) whose only step is `build`, plus [`ROOMY`].
/// Returns the manifest path.
fn solo_chain(root: &Path) -> PathBuf {
    let m = support::write_chain(root, &[("solo", &[])], &[("solo", "steps = [\"build\"]")]);
    let mut text = fs::read_to_string(&m).unwrap();
    text += ROOMY;
    fs::write(&m, text).unwrap();
    support::git_commit_all(&root.join("solo"));
    m
}

/// `ci --quiet` on `manifest` with its own cache root, run dir and `envs`.
fn ci(manifest: &Path, cache: &Path, run_dir: &Path, envs: &[(&str, &str)]) -> (i32, String) {
    ci_with(xtask(), manifest, cache, run_dir, envs)
}

/// [`ci`] with the xtask command `c` (e.g. one that sees a test's tmpfs).
fn ci_with(
    mut c: Command,
    manifest: &Path,
    cache: &Path,
    run_dir: &Path,
    envs: &[(&str, &str)],
) -> (i32, String) {
    c.args(["ci", "--quiet", "--manifest"])
        .arg(manifest)
        .arg("--cache-dir")
        .arg(cache)
        .arg("--run-dir")
        .arg(run_dir);
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// Entry dirs under `<cache>/entries/*/`.
fn entries(cache: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for stage in ["registry", "git", "target"] {
        if let Ok(rd) = fs::read_dir(cache.join("entries").join(stage)) {
            out.extend(
                rd.flatten()
                    .map(|e| format!("{stage}/{}", e.file_name().to_string_lossy())),
            );
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Full disk under `ci`

#[test]
fn a_full_cache_filesystem_leaves_the_build_result_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    // The guard off, so the save really runs into ENOSPC instead of declining early; the
    // preflight disk floor off too (it refuses to start a run on a nearly full cache
    // filesystem, which is its own check, not the cache's).
    let m = solo_chain(&tmp.path().join("chain"));
    // Without a tmpfs: a counted skip, or under CI a failure saying what to enable.
    let Some(tmpfs) = support::Tmpfs::mount(&tmp.path().join("fs"), "1m") else {
        return;
    };
    let cache = tmp.path().join("fs/cache");
    let filler = tmpfs.view(&tmp.path().join("fs/filler"));
    // Fill it up: write until the filesystem says it is full.
    {
        use std::io::Write;
        let mut f = fs::File::create(&filler).unwrap();
        while f.write_all(&[0u8; 4096]).is_ok() {}
    }
    let (code, out) = ci_with(tmpfs.xtask(), &m, &cache, &tmp.path().join("run1"), &[]);
    assert_eq!(code, 0, "{out}");
    let s = support::summary(&tmp.path().join("run1"));
    assert_eq!(support::repo(&s, "solo")["status"], "ok", "{s:#}");
    assert!(
        out.contains("No space left on device"),
        "no warning says the cache's disk is full:\n{out}"
    );
    assert_eq!(
        entries(&tmpfs.view(&cache)),
        Vec::<String>::new(),
        "a partial entry was published"
    );
    assert_eq!(
        fs::read_dir(tmpfs.view(&cache.join("tmp")))
            .unwrap()
            .count(),
        0,
        "tmp/ leftovers"
    );
    // The same build with room: same result, and now an entry.
    fs::remove_file(&filler).unwrap();
    let roomy = tmp.path().join("cache2");
    let (code2, out2) = ci(&m, &roomy, &tmp.path().join("run2"), &[]);
    assert_eq!(code2, code, "{out2}");
    assert!(
        entries(&roomy)
            .iter()
            .any(|e| e.starts_with("target/solo-")),
        "{out2}"
    );
}

// ---------------------------------------------------------------------------------------
// Trust

/// A pull_request event, and repository_dispatch events that claim an unknown source or
/// carry a malformed payload, never write a cache entry or a recorded result; a trusted
/// push does (so the check would fail if saving were broken rather than refused).
#[test]
fn untrusted_events_never_write_a_cache_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let m = solo_chain(&tmp.path().join("chain"));
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "pull_request",
            json!({"number": 7, "pull_request": {"head": {"sha": "abc"}}}),
            "",
        ),
        (
            "repository_dispatch",
            json!({"action": "bllvm-push", "client_payload": {"source": "evil-repo", "hop": 1}}),
            "repository_dispatch from unknown source `evil-repo`",
        ),
        (
            "repository_dispatch",
            json!({"action": "bllvm-push", "client_payload": {"source": "solo", "hop": "three"}}),
            "malformed client_payload",
        ),
        (
            "repository_dispatch",
            json!({"action": "bllvm-push"}),
            "without a client_payload",
        ),
    ];
    for (i, (name, payload, says)) in cases.iter().enumerate() {
        let ev = tmp.path().join(format!("event{i}.json"));
        fs::write(&ev, payload.to_string()).unwrap();
        let cache = tmp.path().join(format!("cache{i}"));
        let (code, out) = ci(
            &m,
            &cache,
            &tmp.path().join(format!("run{i}")),
            &[
                ("GITHUB_EVENT_NAME", name),
                ("GITHUB_EVENT_PATH", ev.to_str().unwrap()),
            ],
        );
        assert_eq!(code, 0, "{name}: {out}");
        assert!(out.contains(says), "{name}: want `{says}` in:\n{out}");
        assert_eq!(
            entries(&cache),
            Vec::<String>::new(),
            "{name} {payload}: wrote cache entries"
        );
        // Nor a recorded result: a later trusted run would skip the repo on its word.
        assert_eq!(
            walkdir::WalkDir::new(cache.join("results"))
                .into_iter()
                .flatten()
                .filter(|e| e.file_type().is_file())
                .count(),
            0,
            "{name} {payload}: recorded a result"
        );
    }
    // Control: the same run as a push, and as a dispatch from a repo of the chain, saves.
    for (i, (name, payload)) in [
        ("push", json!({})),
        (
            "repository_dispatch",
            json!({"client_payload": {"source": "solo", "hop": 1}}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let ev = tmp.path().join(format!("ok{i}.json"));
        fs::write(&ev, payload.to_string()).unwrap();
        let cache = tmp.path().join(format!("ok-cache{i}"));
        let (code, out) = ci(
            &m,
            &cache,
            &tmp.path().join(format!("ok-run{i}")),
            &[
                ("GITHUB_EVENT_NAME", name),
                ("GITHUB_EVENT_PATH", ev.to_str().unwrap()),
            ],
        );
        assert_eq!(code, 0, "{out}");
        assert!(
            entries(&cache)
                .iter()
                .any(|e| e.starts_with("target/solo-")),
            "{name}: {out}"
        );
        assert!(
            cache.join("results/solo").is_dir(),
            "{name}: no result recorded"
        );
    }
}

/// A GitHub API on 127.0.0.1 for `chain`, with its own runtime thread.
struct Api {
    rt: tokio::runtime::Runtime,
    server: MockServer,
}

impl Api {
    fn start(status: u16) -> Api {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let server = rt.block_on(MockServer::start());
        rt.block_on(
            Mock::given(method("POST"))
                .and(path_regex("^/repos/.*/dispatches$"))
                .respond_with(
                    ResponseTemplate::new(status)
                        .set_body_json(json!({"message": "Bad credentials"})),
                )
                .mount(&server),
        );
        Api { rt, server }
    }

    fn requests(&self) -> Vec<Request> {
        self.rt.block_on(self.server.received_requests()).unwrap()
    }
}

/// Two docs repos, `down` after `up` (no cargo involved, so `chain` resolves at once).
fn docs_chain(root: &Path, extra: &str) -> PathBuf {
    fs::create_dir_all(root.join("up")).unwrap();
    fs::create_dir_all(root.join("down")).unwrap();
    let m = root.join("chain.toml");
    fs::write(
        &m,
        format!(
            "root = \".\"\n\n[[repo]]\nname = \"up\"\ngithub = \"o/up\"\nkind = \"docs\"\n\n[[repo]]\nname = \"down\"\ngithub = \"o/down\"\nkind = \"docs\"\nafter = [\"up\"]\n{extra}"
        ),
    )
    .unwrap();
    m
}

fn chain_cmd(m: &Path, api: &str, token: Option<&str>) -> Command {
    let mut c = xtask();
    c.env_remove("GITHUB_TOKEN")
        .env_remove("GITHUB_API_URL")
        .args([
            "chain",
            "--from",
            "up",
            "--retries",
            "0",
            "--retry-delay-ms",
            "1",
            "--max-wait",
            "1",
            "--manifest",
        ])
        .arg(m)
        .arg("--cache-dir")
        .arg(m.parent().unwrap().join("cache"))
        .args(["--api-url", api]);
    if let Some(t) = token {
        c.env("GITHUB_TOKEN", t);
    }
    c
}

/// Pull requests and untrusted dispatches never dispatch; a dispatch from a repo of the
/// chain does (the control that proves the server would have seen a request).
#[test]
fn untrusted_events_never_dispatch() {
    let tmp = tempfile::tempdir().unwrap();
    let m = docs_chain(tmp.path(), "");
    let eleven: serde_json::Map<String, Value> = (0..11)
        .map(|i| (format!("p{i}"), json!(i)))
        .chain([("source".to_owned(), json!("up"))])
        .collect();
    let cases: Vec<(&str, Value, &str, usize)> = vec![
        (
            "pull_request",
            json!({"number": 1}),
            "pull_request events never dispatch",
            0,
        ),
        (
            "repository_dispatch",
            json!({"client_payload": {"source": "mallory"}}),
            "unknown source `mallory`",
            0,
        ),
        (
            "repository_dispatch",
            json!({"client_payload": {"source": 7}}),
            "malformed client_payload",
            0,
        ),
        (
            "repository_dispatch",
            json!({"client_payload": Value::Object(eleven)}),
            "12 top-level properties",
            0,
        ),
        (
            "repository_dispatch",
            json!({}),
            "without a client_payload",
            0,
        ),
        (
            "repository_dispatch",
            json!({"client_payload": {"source": "up", "hop": 1}}),
            "sent",
            1,
        ),
    ];
    for (i, (name, payload, says, sent)) in cases.into_iter().enumerate() {
        let api = Api::start(204);
        let ev = tmp.path().join(format!("ev{i}.json"));
        fs::write(&ev, payload.to_string()).unwrap();
        let o = chain_cmd(&m, &api.server.uri(), Some("ghp_trustFAKE000"))
            .env("GITHUB_EVENT_NAME", name)
            .env("GITHUB_EVENT_PATH", &ev)
            .output()
            .unwrap();
        let out = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(o.status.code(), Some(0), "{name} {payload}: {out}");
        assert!(
            out.contains(says),
            "{name} {payload}: want `{says}` in:\n{out}"
        );
        assert_eq!(api.requests().len(), sent, "{name} {payload}: {out}");
    }
}
