//! `.github/chain-template/bllvm-chain.yml`, the workflow each chain repo copies into its
//! own `.github/workflows/` to take part: check out itself and this orchestrator side by
//! side, `cargo xtask checkout`, `cargo xtask ci --only <self>` on the manifest's runner
//! kind, then — never on pull requests — `cargo xtask chain --from <self>` in a job of
//! its own that holds the dispatch token's environment.

use std::fmt::Write as _;

use super::model::{Ctx, ORCH_DIR};
use super::shared::{concurrency, header, job_env, token_var, types_list};
use super::steps;
use crate::github::dispatch::DEFAULT_TOKEN_ENV;

/// What the template says about the dispatch token.
fn token_note(token: &str, environment: &str) -> String {
    if token == DEFAULT_TOKEN_ENV {
        "Propagation uses the\n# workflow GITHUB_TOKEN, which cannot dispatch to other repos: set `token-env` in the\n# manifest's [chain] table to the name of a secret holding a token with\n# `contents: write` on the downstream repos, and add that secret to each repo.".to_owned()
    } else {
        format!("Propagation needs the\n# secret {token}: a token with `contents: write` on the downstream repos, as a secret of\n# the environment `{environment}` in each repo.")
    }
}

/// The whole file.
pub fn workflow(cx: &Ctx) -> String {
    let mut s = String::new();
    header(&mut s, &cx.manifest_path);
    let token = token_var(&cx.manifest.chain);
    let _ = write!(
        s,
        r#"#
# Copy this file to .github/workflows/bllvm-chain.yml in each repo of the chain. The
# repo's name on GitHub must be its name in the manifest. {token_note}
name: bllvm-chain
# The chain id in the run's title is how a dispatched run is found (GitHub returns no run
# id for a dispatch): search the runs for it, or read `display_title` in the REST API.
run-name: bllvm-chain ${{{{ github.event_name }}}} ${{{{ github.event.client_payload.chain_id }}}}

on:
  push:
    branches: [main]
  pull_request:
  repository_dispatch:
    types: [{types}]
  workflow_dispatch:

# Nothing by default: every job asks for what it needs.
permissions: {{}}

{concurrency}
env:
  CARGO_TERM_COLOR: always
  CHAIN_REPO: ${{{{ github.event.repository.name }}}}

jobs:
"#,
        types = types_list(&cx.manifest.chain),
        token_note = token_note(token, &cx.settings.environment),
        concurrency = concurrency("bllvm-chain", " || github.run_id"),
    );
    s += &chain_job(cx);
    s += &propagate_job(cx, token);
    s
}

/// Build and test this repo (`ci --only "$CHAIN_REPO"`) with the chain around it.
fn chain_job(cx: &Ctx) -> String {
    let x = steps::chain_xtask(cx);
    let mut s = format!(
        "  chain:\n    name: chain\n    runs-on: {}\n    timeout-minutes: 90\n    permissions:\n      contents: read\n",
        cx.runs_on()
    );
    s += &job_env(cx);
    let _ = write!(
        s,
        "    steps:\n      - name: check out this repo\n        uses: {}\n        with:\n          path: ${{{{ github.event.repository.name }}}}\n          persist-credentials: false\n",
        super::pins::CHECKOUT.uses()
    );
    s += &steps::checkout_orchestrator(cx, Some(&cx.manifest.chain.orchestrator));
    s += &steps::xtask_build(cx, cx.chain_features().as_deref(), true);
    s += &steps::checkout_chain(&x)
        .replace("check out the chain", "check out the rest of the chain");
    s += &steps::toolchains(&x, " --only \"$CHAIN_REPO\"", false);
    s += &steps::tools(cx);
    s += &steps::require_bucket(cx);
    s += &steps::restore_cache_root(cx, &x, Some("\"$CHAIN_REPO\""));
    let _ = write!(
        s,
        "      - name: build and test this repo\n        working-directory: {ORCH_DIR}\n        env:\n{}          GITHUB_TOKEN: ${{{{ github.token }}}}\n        run: {x} ci --only \"$CHAIN_REPO\" --run-dir \"$BLLVM_CI_RUN_DIR\"\n",
        steps::remote_env(cx)
    );
    s += &steps::upload_run("bllvm-ci-run");
    s += &steps::save_cache_root(cx);
    s
}

/// Dispatch the repos that depend on this one, after a successful build, never on pull
/// requests; the token is a secret of the job's environment, given to that step only.
fn propagate_job(cx: &Ctx, token: &str) -> String {
    let mut s = format!(
        "\n  propagate:\n    name: propagate\n    needs: chain\n    if: ${{{{ github.event_name != 'pull_request' }}}}\n    runs-on: {}\n    timeout-minutes: 15\n    # The dispatch token is a secret of this environment only.\n    environment: {}\n    permissions:\n      contents: read\n",
        cx.runs_on(),
        cx.settings.environment
    );
    s += &job_env(cx);
    s += "    steps:\n";
    s += &steps::checkout_orchestrator(cx, Some(&cx.manifest.chain.orchestrator));
    s += &steps::xtask_build(cx, None, true);
    s += &steps::checkout_chain("cargo xtask");
    let _ = write!(
        s,
        "      - name: propagate to the repos that depend on this one\n        working-directory: {ORCH_DIR}\n        env:\n          {token}: ${{{{ secrets.{token} }}}}\n        run: cargo xtask chain --from \"$CHAIN_REPO\"\n"
    );
    s
}
