//! Unit tests of the generator: shapes every file keeps, manifest settings reaching the
//! files, the concurrency group, and the runner kinds' differences.

use super::*;

fn manifest(extra: &str) -> Manifest {
    Manifest::parse(
        &format!("{extra}\n[[repo]]\nname = \"a\"\ngithub = \"o/a\"\n"),
        Path::new("ci/chain.toml"),
    )
    .unwrap()
}

#[test]
fn every_job_has_permissions_and_a_timeout() {
    for (_, text) in generate(&manifest(""), None).unwrap() {
        let jobs = text.matches("\n    runs-on:").count();
        assert!(jobs >= 1);
        assert_eq!(
            text.matches("\n    timeout-minutes:").count(),
            jobs,
            "{text}"
        );
        assert_eq!(text.matches("\n    permissions:").count(), jobs, "{text}");
        assert!(text.contains("\nconcurrency:\n  group: "), "{text}");
        assert!(
            text.contains("\nrun-name: ")
                && text.contains("${{ github.event.client_payload.chain_id }}\n"),
            "{text}"
        );
        assert!(!text.contains('\t'));
    }
}

#[test]
fn manifest_settings_reach_the_files() {
    let m = manifest(
        "[chain]\ntoken-env = \"BLLVM_CHAIN_TOKEN\"\norchestrator = \"x/orch\"\n[chain.event-types]\ndevelop = \"dev-push\"\n",
    );
    let files = generate(&m, None).unwrap();
    let template = &files[1].1;
    assert!(template
        .contains("types: [\"bllvm-upstream-push\", \"bllvm-upstream-release\", \"dev-push\"]"));
    assert!(template.contains("BLLVM_CHAIN_TOKEN: ${{ secrets.BLLVM_CHAIN_TOKEN }}"));
    assert!(template.contains("repository: x/orch"));
    assert!(template.contains("Propagation needs the\n# secret BLLVM_CHAIN_TOKEN"));
    let default = &generate(&manifest(""), None).unwrap()[1].1;
    assert!(default.contains("GITHUB_TOKEN, which cannot dispatch to other repos"));
    assert!(template.contains("cargo xtask ci --only \"$CHAIN_REPO\""));
    assert!(template.contains("cargo xtask chain --from \"$CHAIN_REPO\""));
    assert!(template.contains("if: ${{ github.event_name != 'pull_request' }}"));
    assert!(files[0].1.contains("cargo xtask ci --keep-going --comment"));
}

/// Issue 13: a dispatch delivered twice never runs twice at once: both workflows key
/// their concurrency group on `dispatch_id`, and the later delivery cancels the
/// earlier (which then records nothing, so exactly one acts).
#[test]
fn concurrency_is_keyed_on_the_dispatch_id() {
    for (name, text) in generate(&manifest(""), None).unwrap() {
        let group = text
            .lines()
            .skip_while(|l| *l != "concurrency:")
            .nth(1)
            .unwrap_or_default();
        assert!(
            group.starts_with("  group: ")
                && group.contains("github.event.client_payload.dispatch_id"),
            "{name}: {group}"
        );
        assert!(
            text.contains("cancel-in-progress: ${{ github.event_name == 'pull_request' || github.event_name == 'repository_dispatch' }}"),
            "{name}"
        );
    }
}

/// Each runner kind persists the cache root its own way; secrets stay in the steps that
/// need them; the dispatch token only in the `propagate` jobs, which have the environment.
#[test]
fn runner_kinds_differ_where_the_cache_root_lives() {
    let kind = |table: &str| generate(&manifest(table), None).unwrap();
    let hosted = kind("");
    let ci = &hosted[0].1;
    assert!(ci.contains("run: cargo xtask cache actions-key --manifest ci/chain.toml\n"));
    assert!(ci.contains("uses: actions/cache/save@"));
    let self_hosted = kind("[workflows]\nrunner = \"self-hosted\"\ncache-dir = \"/srv/c\"\n");
    for (_, text) in &self_hosted {
        assert!(text.contains("BLLVM_CI_CACHE_DIR: /srv/c\n"));
        assert!(!text.contains("actions/cache"), "{text}");
        assert!(text.contains("runs-on: [self-hosted, linux, x64]"));
    }
    let remote = kind("[workflows]\nrunner = \"remote\"\n");
    assert!(remote[0]
        .1
        .contains("cargo run --package xtask --features remote -- ci "));
    // The propagate job builds xtask without features: it only dispatches.
    let propagate = remote[0].1.split("\n  propagate:\n").nth(1).unwrap();
    assert!(propagate.contains("run: cargo build --package xtask --locked\n"));
    assert!(!propagate.contains("--features"));
    for (_, text) in hosted.iter().chain(&self_hosted).chain(&remote) {
        let token_jobs: Vec<&str> = text
            .split("\n  ")
            .filter(|j| j.contains("secrets.GITHUB_TOKEN"))
            .collect();
        assert!(!token_jobs.is_empty());
        let propagate = text.split("\n  propagate:\n").nth(1).unwrap();
        assert!(propagate.contains("    environment: bllvm-chain\n"));
        let before = text.split("\n  propagate:\n").next().unwrap();
        assert!(!before.contains("secrets.GITHUB_TOKEN"), "{before}");
    }
}

/// Fan-out cannot be generated without the graph, and a manifest whose names cannot be
/// job ids is refused.
#[test]
fn fan_out_needs_a_graph_and_names_that_are_job_ids() {
    let e = generate(&manifest("[workflows]\nfan-out = true\n"), None).unwrap_err();
    assert!(format!("{e:#}").contains("cargo xtask checkout"), "{e:#}");
    let m = Manifest::parse(
        "[[repo]]\nname = \"a.b\"\ngithub = \"o/a\"\n[[repo]]\nname = \"a_b\"\ngithub = \"o/b\"\n",
        Path::new("ci/chain.toml"),
    )
    .unwrap();
    let e = generate(&m, None).unwrap_err();
    assert!(
        format!("{e:#}").contains("the same job id `repo-a_b`"),
        "{e:#}"
    );
}
