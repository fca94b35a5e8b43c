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
