//! Issue 8: hostile and bad input, table-driven. Each case runs the real binary and names
//! the exit code and the message a person reads: malformed and hostile manifests, cache
//! keys and entries that try to leave their directory, bad event payloads, every error
//! status of the GitHub API (a server on 127.0.0.1), a webhook that hangs, and missing or
//! empty tokens. A case that passes for the wrong reason (another error first) fails,
//! because its message is checked.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::{json, Value};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::support::xtask;

/// One row: what runs, the exit code and a piece of the message it must print.
struct Case {
    name: &'static str,
    cmd: Command,
    code: i32,
    says: String,
    /// Keeps a server (or listener) alive while the case runs.
    _server: Option<Box<dyn std::any::Any>>,
}

fn case(name: &'static str, cmd: Command, code: i32, says: impl Into<String>) -> Case {
    Case {
        name,
        cmd,
        code,
        says: says.into(),
        _server: None,
    }
}

const A: &str = "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nkind = \"docs\"\n";

/// `plan` on a manifest with `text`, in its own dir under `dir` (with checkouts `a`, `b`).
fn plan(dir: &Path, name: &str, text: &str) -> Command {
    let d = dir.join(name);
    fs::create_dir_all(d.join("a")).unwrap();
    fs::create_dir_all(d.join("b")).unwrap();
    fs::write(d.join("chain.toml"), format!("root = \".\"\n{text}")).unwrap();
    let mut c = xtask();
    c.args(["plan", "--manifest"])
        .arg(d.join("chain.toml"))
        .arg("--cache-dir")
        .arg(d.join("cache"));
    c
}

/// `cache <args>` on the cache root `root` (no manifest, so the defaults apply).
fn cache(root: &Path, args: &[&str]) -> Command {
    let mut c = xtask();
    c.arg("cache")
        .arg(args[0])
        .arg("--cache-dir")
        .arg(root)
        .arg("--manifest")
        .arg(root.join("none.toml"))
        .args(&args[1..]);
    c
}

/// Two docs repos, `down` after `up`, and a `[notify]` table naming SLACK_WEBHOOK_URL.
fn docs_chain(dir: &Path) -> PathBuf {
    fs::create_dir_all(dir.join("up")).unwrap();
    fs::create_dir_all(dir.join("down")).unwrap();
    let m = dir.join("chain.toml");
    fs::write(
        &m,
        "root = \".\"\n[notify]\nslack-webhook-env = \"SLACK_WEBHOOK_URL\"\n\n[[repo]]\nname = \"up\"\ngithub = \"o/up\"\nkind = \"docs\"\n\n[[repo]]\nname = \"down\"\ngithub = \"o/down\"\nkind = \"docs\"\nafter = [\"up\"]\n",
    )
    .unwrap();
    m
}

/// `chain --from up` on the docs chain against `api`, with `token` (None: unset).
fn chain(m: &Path, api: &str, token: Option<&str>) -> Command {
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
        ])
        .arg("--manifest")
        .arg(m)
        .arg("--cache-dir")
        .arg(m.parent().unwrap().join("cache"))
        .args(["--api-url", api]);
    if let Some(t) = token {
        c.env("GITHUB_TOKEN", t);
    }
    c
}

/// A GitHub API on 127.0.0.1 answering every dispatch with `status`, on its own runtime.
struct Api {
    _rt: tokio::runtime::Runtime,
    server: MockServer,
}

fn api(status: u16, retry_after: Option<&str>) -> Api {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(MockServer::start());
    let mut t = ResponseTemplate::new(status).set_body_json(json!({"message": "Denied"}));
    if let Some(r) = retry_after {
        t = t.insert_header("retry-after", r);
    }
    rt.block_on(
        Mock::given(method("POST"))
            .and(path_regex("^/repos/o/down/dispatches$"))
            .respond_with(t)
            .mount(&server),
    );
    Api { _rt: rt, server }
}

/// A chain run whose event is `name` with `payload` written to a file under `dir`.
fn with_event(mut c: Command, dir: &Path, file: &str, name: &str, payload: &str) -> Command {
    let p = dir.join(file);
    fs::write(&p, payload).unwrap();
    c.env("GITHUB_EVENT_NAME", name).env("GITHUB_EVENT_PATH", p);
    c
}

#[test]
fn hostile_and_bad_input_has_its_message_and_exit_code() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let root = t.join("cache-root");
    let src = t.join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    let dc = docs_chain(&t.join("docs"));
    let mut cases = vec![
        // Manifests.
        case("malformed TOML", plan(t, "m1", "[[repo]\nname ="), 2, ":2:7: invalid table header"),
        case("unknown top-level field", plan(t, "m2", &format!("colour = 1\n{A}")), 2, "unknown field `colour`"),
        case("unknown repo field", plan(t, "m3", &format!("{A}nmae = 1\n")), 2, "unknown field `nmae`, expected one of `name`"),
        case("duplicate repo names", plan(t, "m4", &format!("{A}\n{A}")), 2, "duplicate repo name `a`: every [[repo]] needs its own name"),
        case("repo name with ..", plan(t, "m5", "[[repo]]\nname = \"../evil\"\ngithub = \"o/e\"\nkind = \"docs\"\n"), 2, "repo name `../evil` may only use letters, digits"),
        case("repo name with a slash", plan(t, "m6", "[[repo]]\nname = \"a/b\"\ngithub = \"o/e\"\nkind = \"docs\"\n"), 2, "repo name `a/b` may only use letters, digits"),
        case("empty repo name", plan(t, "m7", "[[repo]]\nname = \"\"\ngithub = \"o/e\"\nkind = \"docs\"\n"), 2, "repo `name` must be 1 to 100 characters"),
        case("path with ..", plan(t, "m8", &format!("{A}path = \"../outside\"\n")), 2, "`path`: `../outside` leaves the checkout root"),
        case("absolute path", plan(t, "m9", &format!("{A}path = \"/etc\"\n")), 2, "`path`: `/etc` is absolute"),
        case("path with .. inside", plan(t, "m10", &format!("{A}path = \"b/../../x\"\n")), 2, "`b/../../x` leaves the checkout root"),
        case(
            "cycle",
            plan(t, "m11", "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nkind = \"docs\"\nafter = [\"b\"]\n[[repo]]\nname = \"b\"\ngithub = \"o/b\"\nkind = \"docs\"\nafter = [\"a\"]\n"),
            2,
            "dependency cycle: a → b → a",
        ),
        case("after names no repo", plan(t, "m12", &format!("{A}after = [\"zzz\"]\n")), 2, "names no repo of this manifest"),
        case("missing checkout", plan(t, "m13", "[[repo]]\nname = \"gone\"\ngithub = \"o/g\"\nkind = \"docs\"\n"), 2, "missing checkouts:\n  - gone: expected a checkout at"),
        case("wrong-typed field", plan(t, "m14", &format!("[defaults]\ntimeout = \"soon\"\n{A}")), 2, "invalid type: string \"soon\", expected u64"),
        case("unknown step", plan(t, "m15", &format!("{A}steps = [\"frobnicate\"]\n")), 2, "unknown step `frobnicate`"),
        case("github not owner/name", plan(t, "m16", "[[repo]]\nname = \"a\"\ngithub = \"noslash\"\nkind = \"docs\"\n"), 2, "is not of the form \"owner/name\""),
        case("unknown kind", plan(t, "m17", "[[repo]]\nname = \"a\"\ngithub = \"o/a\"\nkind = \"python\"\n"), 2, "unknown variant `python`, expected `cargo` or `docs`"),
        case("unknown deps mode", plan(t, "m18", &format!("[defaults]\ndeps = \"vendored\"\n{A}")), 2, "unknown variant `vendored`"),
        case("no repos", plan(t, "m19", ""), 2, "the manifest lists no repositories"),
        case(
            "manifest missing",
            {
                let mut c = xtask();
                c.args(["plan", "--manifest"]).arg(t.join("nowhere/chain.toml"));
                c
            },
            2,
            "cannot read the chain manifest",
        ),
        case(
            "--affected not BASE..HEAD",
            {
                let mut c = plan(t, "m20", A);
                c.args(["--affected", "main"]);
                c
            },
            2,
            "is not of the form BASE..HEAD",
        ),
        // Cache keys that try to leave their directory.
        case("cache key with ..", cache(&root, &["put", "--key", "../../escape", "--src", src.to_str().unwrap()]), 2, "cache key `../../escape` may only use letters"),
        case("absolute cache key", cache(&root, &["put", "--key", t.join("abs").to_str().unwrap(), "--src", src.to_str().unwrap()]), 2, "keys name a directory under the cache root"),
        case("cache key with a slash", cache(&root, &["get", "--key", "a/b", "--dst", t.join("d").to_str().unwrap()]), 2, "cache key `a/b` may only use"),
        case("cache key ..", cache(&root, &["put", "--key", "..", "--src", src.to_str().unwrap()]), 2, "cache key `..` may only use"),
        case("unknown cache stage", cache(&root, &["put", "--stage", "bogus", "--key", "k", "--src", src.to_str().unwrap()]), 2, "unknown stage `bogus`: use registry, git or target"),
        // Event payloads (a run that must not start, or must not be trusted).
        case(
            "event payload not JSON",
            with_event(chain(&dc, "http://127.0.0.1:9", None), t, "e1.json", "push", "{not json"),
            2,
            "GITHUB_EVENT_PATH is not JSON",
        ),
        case(
            "event payload file missing",
            {
                let mut c = chain(&dc, "http://127.0.0.1:9", None);
                c.env("GITHUB_EVENT_NAME", "push").env("GITHUB_EVENT_PATH", t.join("nope.json"));
                c
            },
            2,
            "read GITHUB_EVENT_PATH",
        ),
        case(
            "dispatch payload missing",
            with_event(chain(&dc, "http://127.0.0.1:9", None), t, "e2.json", "repository_dispatch", "{}"),
            0,
            "skipped  down (o/down): repository_dispatch without a client_payload",
        ),
        case(
            "dispatch payload field of the wrong type",
            with_event(chain(&dc, "http://127.0.0.1:9", None), t, "e3.json", "repository_dispatch", r#"{"client_payload":{"source":"up","hop":"x"}}"#),
            0,
            "malformed client_payload (invalid type: string \"x\", expected u32)",
        ),
        case(
            "client_payload with too many properties",
            with_event(
                chain(&dc, "http://127.0.0.1:9", None),
                t,
                "e4.json",
                "repository_dispatch",
                &json!({"client_payload": (0..11).map(|i| (format!("p{i}"), json!(i))).collect::<serde_json::Map<String, Value>>()}).to_string(),
            ),
            0,
            "client_payload has 11 top-level properties (GitHub delivers at most 10)",
        ),
        // Tokens.
        case("missing token", chain(&dc, "http://127.0.0.1:9", None), 2, "no GitHub token: set GITHUB_TOKEN"),
        case("empty token", chain(&dc, "http://127.0.0.1:9", Some("")), 2, "no GitHub token: set GITHUB_TOKEN"),
        case(
            "unreachable API",
            chain(&dc, "http://127.0.0.1:9", Some("ghp_fake")),
            7,
            "request failed on all 1 attempts",
        ),
        // Webhooks.
        case("no webhook configured", {
            let mut c = xtask();
            c.env_remove("SLACK_WEBHOOK_URL").args(["notify", "--manifest"]).arg(&dc);
            c
        }, 2, "no webhook to send to"),
    ];
    // Every error status of the GitHub API, each from its own server.
    for (status, code, says, retry) in [
        (401, 3, "bad credentials (401)", None),
        (
            403,
            4,
            "the token cannot reach this repository (403: Denied)",
            None,
        ),
        (
            404,
            4,
            "the token cannot reach this repository (404: Denied)",
            None,
        ),
        (422, 5, "invalid dispatch: GitHub answered 422", None),
        (429, 6, "rate limited (429)", Some("3600")),
        (500, 7, "500", None),
    ] {
        let a = api(status, retry);
        let mut c = case(
            "GitHub API error status",
            chain(&dc, &a.server.uri(), Some("ghp_fake")),
            code,
            says,
        );
        c._server = Some(Box::new(a));
        cases.push(c);
    }
    // A webhook that accepts the connection and never answers.
    let hang = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/hooks/T000/B000/hangs",
        hang.local_addr().unwrap()
    );
    let mut c = xtask();
    c.env("SLACK_WEBHOOK_URL", &url)
        .args(["notify", "--timeout", "1", "--manifest"])
        .arg(&dc);
    let mut hc = case("webhook that hangs", c, 1, "warning: notify: Slack webhook (SLACK_WEBHOOK_URL) failed, the build result stands: timeout");
    hc._server = Some(Box::new(hang));
    cases.push(hc);

    assert!(cases.len() >= 30, "{} cases", cases.len());
    let mut failures = Vec::new();
    for mut c in cases {
        let o = c.cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let code = o.status.code().unwrap_or(-1);
        if code != c.code || !text.contains(&c.says) {
            failures.push(format!(
                "{}: exit {code} (want {}), want `{}` in:\n{text}",
                c.name, c.code, c.says
            ));
        }
        // No case may print a webhook URL or a token.
        if text.contains("/hooks/T000") || text.contains("ghp_fake") {
            failures.push(format!("{}: printed a secret:\n{text}", c.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    // Nothing was written outside the cache root by the hostile keys.
    assert!(!t.join("escape").exists() && !t.join("abs").exists());
    assert!(!root.join("escape").exists() && !root.join("..").join("escape").exists());
}

/// A tree with a symlink that points outside it is not saved (a restore would recreate
/// the link, and a later restore merging into the tree could write through it); a
/// symlink that stays inside the tree is kept as a symlink, its target never read into
/// the cache. Nothing outside is written either way.
#[test]
fn symlinks_inside_an_entry_may_not_point_outside_it() {
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    let outside = t.join("outside.txt");
    fs::write(&outside, "OUTSIDE-SECRET-CONTENT").unwrap();
    let root = t.join("cache");
    // The disk guard off (a `[cache]` table), so the saves do not depend on the disk.
    let roomy = t.join("roomy.toml");
    fs::write(
        &roomy,
        format!(
            "{}\n[[repo]]\nname = \"x\"\ngithub = \"o/x\"\nkind = \"docs\"\n",
            super::reliability::ROOMY
        ),
    )
    .unwrap();
    let put = |key: &str, src: &Path| {
        let mut c = xtask();
        c.args(["cache", "put", "--cache-dir"])
            .arg(&root)
            .arg("--manifest")
            .arg(&roomy)
            .args(["--key", key, "--src"])
            .arg(src);
        c.output().unwrap()
    };
    for (name, target) in [
        ("absolute", outside.clone()),
        ("climbing", PathBuf::from("../outside.txt")),
        (
            "climbing from a subdir",
            PathBuf::from("../../../outside.txt"),
        ),
    ] {
        let src = t.join(format!("src-{}", name.replace(' ', "-")));
        fs::create_dir_all(src.join("sub")).unwrap();
        fs::write(src.join("f"), "x").unwrap();
        let link = if name.ends_with("subdir") {
            src.join("sub/link")
        } else {
            src.join("link")
        };
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let o = put("k1", &src);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{name}: {err}");
        assert!(
            err.contains("target entry k1 not saved: symlinks point outside the tree (")
                && err.contains(&format!("-> {}", target.display())),
            "{name}: {err}"
        );
        assert!(
            !root.join("entries/target/k1").exists(),
            "{name}: saved anyway"
        );
    }
    // Inside the tree: saved as a symlink, restored as one.
    let src = t.join("src-ok");
    fs::create_dir_all(src.join("sub")).unwrap();
    fs::write(src.join("f"), "x").unwrap();
    std::os::unix::fs::symlink("../f", src.join("sub/link")).unwrap();
    let o = put("k2", &src);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let entry = root.join("entries/target/k2");
    assert!(fs::symlink_metadata(entry.join("data/sub/link"))
        .unwrap()
        .file_type()
        .is_symlink());
    let tsv = fs::read_to_string(entry.join("manifest.tsv")).unwrap();
    assert!(
        tsv.lines()
            .any(|l| l.starts_with("l\t") && l.ends_with("\tsub/link")),
        "{tsv}"
    );
    for e in walkdir::WalkDir::new(&root) {
        let e = e.unwrap();
        if e.file_type().is_file() {
            let b = fs::read(e.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&b).contains("OUTSIDE-SECRET"),
                "{} holds the target's bytes",
                e.path().display()
            );
        }
    }
    let dst = t.join("dst");
    let o = cache(
        &root,
        &["get", "--key", "k2", "--dst", dst.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains("\"status\":\"hit\""));
    assert_eq!(
        fs::read_link(dst.join("sub/link")).unwrap(),
        Path::new("../f")
    );
    assert_eq!(
        fs::read_to_string(&outside).unwrap(),
        "OUTSIDE-SECRET-CONTENT"
    );
}
