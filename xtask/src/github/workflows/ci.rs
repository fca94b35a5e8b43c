//! `.github/workflows/ci.yml`, this orchestrator's CI: its header and triggers, the chain
//! job (one job, one per matrix cell, or — with `fan-out` — one per repo, see
//! [`super::fanout`]) and the `propagate` job.

use std::fmt::Write as _;

use super::fanout;
use super::model::{Ctx, ORCH_DIR};
use super::shared::{concurrency, header, job_env, matrix_strategy, token_var, types_list};
use super::steps;

/// The whole file.
pub fn workflow(cx: &Ctx) -> String {
    let mut s = String::new();
    header(&mut s, &cx.manifest_path);
    s += &triggers(cx);
    if cx.settings.fan_out {
        s += &fanout::jobs(cx);
        // A release runs the full chain whatever `--only` says (`github/events.rs`): one
        // job builds it, instead of every repo job building all of it.
        s += "\n";
        s += &chain_job(cx, "release", Some("github.event_name == 'release'"));
        s += &propagate(cx, "[summary, release]");
    } else {
        s += &chain_job(cx, "ci", None);
        s += &propagate(cx, "ci");
    }
    s
}

/// Name, run name, triggers, permissions, concurrency and the workflow's `env`.
fn triggers(cx: &Ctx) -> String {
    format!(
        r#"name: chain-ci
# The chain id in the run's title is how a dispatched run is found (GitHub returns no run
# id for a dispatch): search the runs for it, or read `display_title` in the REST API.
run-name: chain-ci ${{{{ github.event_name }}}} ${{{{ github.event.client_payload.chain_id }}}}

on:
  push:
    branches: [main]
  pull_request:
  release:
    types: [published]
  repository_dispatch:
    types: [{types}]
  workflow_dispatch:
    inputs:
      from:
        description: "After the run, dispatch the dependents of this repo (empty: none)"
        required: false
        default: ""
      trigger:
        description: "Trigger to propagate (push, release, ...)"
        required: false
        default: "push"

# Nothing by default: every job asks for what it needs.
permissions: {{}}

{concurrency}
env:
  CARGO_TERM_COLOR: always

jobs:
"#,
        types = types_list(&cx.manifest.chain),
        concurrency = concurrency("chain-ci", ""),
    )
}

/// The one chain job (a `strategy.matrix` over the cells when there are several): the
/// whole chain with `ci --keep-going --comment`, its outputs uploaded, the cache root
/// persisted as the runner kind does.
fn chain_job(cx: &Ctx, id: &str, only_if: Option<&str>) -> String {
    let x = steps::chain_xtask(cx);
    let mut s = format!(
        "  {id}:\n    name: {}{}\n",
        if id == "ci" { "chain" } else { id },
        if cx.matrix() {
            " ${{ matrix.cell }}"
        } else {
            ""
        },
    );
    if let Some(cond) = only_if {
        let _ = writeln!(s, "    if: ${{{{ {cond} }}}}");
    }
    let _ = write!(
        s,
        "    runs-on: {}\n    timeout-minutes: 120\n    permissions:\n      contents: read\n      pull-requests: write # `ci --comment` posts the run summary on pull requests\n",
        cx.runs_on()
    );
    if cx.matrix() {
        s += &matrix_strategy(&cx.cells);
    }
    s += &job_env(cx);
    s += "    steps:\n";
    s += &steps::checkout_orchestrator(cx, None);
    s += &steps::xtask_build(cx, cx.chain_features().as_deref(), true);
    s += &steps::checkout_chain(&x);
    let selector = if cx.matrix() { " --cell \"$CELL\"" } else { "" };
    s += &steps::toolchains(&x, selector, cx.matrix());
    s += &steps::tools(cx);
    s += &steps::require_bucket(cx);
    s += &steps::restore_cache_root(cx, &x, None);
    s += &run_chain(cx, &x);
    s += &steps::report_html(&x);
    let name = if cx.matrix() {
        "bllvm-ci-run-${{ matrix.cell }}"
    } else {
        "bllvm-ci-run"
    };
    s += &steps::upload_run(name);
    s += &steps::save_cache_root(cx);
    s
}

/// The step that runs the whole chain: the PR comment's token, the webhooks, the remote
/// cache's settings; `--release` on a release (binaries with `SHA256SUMS` in the run dir).
fn run_chain(cx: &Ctx, x: &str) -> String {
    let mut s = format!(
        "      - name: run the chain\n        working-directory: {ORCH_DIR}\n        env:\n          GITHUB_TOKEN: ${{{{ github.token }}}}\n"
    );
    for var in cx.webhook_vars() {
        let _ = writeln!(s, "          {var}: ${{{{ secrets.{var} }}}}");
    }
    s += &steps::remote_env(cx);
    s += "          RELEASE: ${{ github.event_name == 'release' && 'release' || '' }}\n";
    let mut cmd = format!(
        "{x} ci --keep-going --comment --run-dir \"$BLLVM_CI_RUN_DIR\" ${{RELEASE:+--release}}"
    );
    if cx.matrix() {
        s += "          CELL: ${{ matrix.cell }}\n";
        cmd += " --cell \"$CELL\"";
    }
    let _ = writeln!(s, "        run: {cmd}");
    s
}

/// After a successful `release` run, walk the release set through the chain; after a
/// successful `workflow_dispatch` with `from`, dispatch that repo's dependents. The
/// dispatch token is a secret of the job's environment, given to the two steps that
/// dispatch and to nothing else.
fn propagate(cx: &Ctx, needs: &str) -> String {
    let token = token_var(&cx.manifest.chain);
    // With fan-out one of the two jobs it needs is skipped on every run: require that
    // none failed or was cancelled instead of GitHub's default (all succeeded).
    let base = "github.event_name == 'release' || (github.event_name == 'workflow_dispatch' && inputs.from != '')";
    let cond = if needs.starts_with('[') {
        format!("!cancelled() && !contains(needs.*.result, 'failure') && ({base})")
    } else {
        base.to_owned()
    };
    let mut s = format!(
        "\n  propagate:\n    name: propagate\n    needs: {needs}\n    if: ${{{{ {cond} }}}}\n    runs-on: {}\n    timeout-minutes: 15\n    # The dispatch token is a secret of this environment only.\n    environment: {}\n    permissions:\n      contents: read\n",
        cx.runs_on(),
        cx.settings.environment
    );
    s += &job_env(cx);
    s += "    steps:\n";
    s += &steps::checkout_orchestrator(cx, None);
    s += &steps::xtask_build(cx, None, true);
    s += &steps::checkout_chain("cargo xtask");
    let _ = write!(
        s,
        r#"      - name: walk the release set through the chain
        if: ${{{{ github.event_name == 'release' }}}}
        working-directory: {ORCH_DIR}
        env:
          {token}: ${{{{ secrets.{token} }}}}
          TAG: ${{{{ github.event.release.tag_name }}}}
        run: cargo xtask chain --release "${{TAG#v}}" --execute
      - name: dispatch the dependents of the chosen repo
        if: ${{{{ github.event_name == 'workflow_dispatch' }}}}
        working-directory: {ORCH_DIR}
        env:
          {token}: ${{{{ secrets.{token} }}}}
          FROM: ${{{{ inputs.from }}}}
          TRIGGER: ${{{{ inputs.trigger }}}}
        run: cargo xtask chain --from "$FROM" --trigger "$TRIGGER"
"#
    );
    s
}
