//! The fan-out variant of the chain job (`[workflows] fan-out = true`): GitHub Actions is
//! the scheduler. One job builds xtask once for the run; one job per cargo repo runs
//! `ci --only REPO` against the shared cache (hosted cache or remote bucket) with
//! `needs:` taken from the repo graph; a final `summary` job gathers every repo job's
//! `summary.json` into one step summary and one PR comment.
//!
//! A `release` event runs the full chain whatever `--only` says, so on a release the repo
//! jobs and the summary are skipped and the `release` job (`ci.rs`) runs the chain whole.
//!
//! The graph is read from the checkouts when the file is generated; each repo job runs
//! `workflows --check` after checking the chain out, so a graph that changed since (a new
//! dependency between two repos) fails the run with the fix instead of running jobs in
//! the wrong order.

use std::fmt::Write as _;

use super::model::{job_id, Ctx, ORCH_DIR};
use super::shared::{job_env, matrix_strategy};
use super::steps;
use crate::engine::manifest::RunnerKind;
use crate::engine::matrix::Cell;

/// Where the summary job downloads the repo jobs' `summary.json` artifacts.
const SUMMARIES: &str = "${{ github.workspace }}/bllvm-ci-summaries";

/// Every job of the fan-out: `xtask` (not on self-hosted runners, whose checkouts keep
/// their own build), one per repo, `summary`.
pub fn jobs(cx: &Ctx) -> String {
    let mut s = String::new();
    if cx.kind() != RunnerKind::SelfHosted {
        s += &xtask_job(cx);
    }
    for (repo, needs) in &cx.needs {
        s += &repo_job(cx, repo, needs);
    }
    s += &summary_job(cx);
    s
}

/// The job that compiles xtask once per `Cargo.lock`, toolchain and feature set and
/// saves each build for the other jobs to restore.
fn xtask_job(cx: &Ctx) -> String {
    let mut s = format!(
        "  xtask:\n    name: build xtask\n    runs-on: {}\n    timeout-minutes: 30\n    permissions:\n      contents: read\n    steps:\n",
        cx.runs_on()
    );
    s += &steps::checkout_orchestrator(cx, None);
    s += &steps::xtask_build(cx, None, true);
    if let Some(f) = cx.chain_features() {
        s += &steps::xtask_build(cx, Some(&f), true);
    }
    s
}

/// The cells `repo` takes part in (none without a matrix).
fn cells_of<'c>(cx: &'c Ctx, repo: &str) -> Vec<&'c Cell> {
    if !cx.matrix() {
        return Vec::new();
    }
    let Ok(r) = cx.manifest.repo(repo) else {
        return Vec::new();
    };
    cx.cells
        .iter()
        .filter(|c| c.has(r, &cx.manifest.defaults.variant))
        .collect()
}

/// The artifact names of `repo`'s summaries: one per cell, or one.
pub fn summary_names(cx: &Ctx, repo: &str) -> Vec<String> {
    let cells = cells_of(cx, repo);
    if cells.is_empty() {
        return vec![format!("bllvm-ci-summary-{repo}")];
    }
    cells
        .iter()
        .map(|c| format!("bllvm-ci-summary-{repo}-{}", c.name()))
        .collect()
}

/// `repo`'s job: after its upstreams' jobs, `ci --only REPO` (per cell with a matrix).
fn repo_job(cx: &Ctx, repo: &str, needs: &[String]) -> String {
    let x = steps::chain_xtask(cx);
    let cells: Vec<Cell> = cells_of(cx, repo).into_iter().cloned().collect();
    let matrix = !cells.is_empty();
    let mut ids: Vec<String> = needs.iter().map(|n| job_id(n)).collect();
    if cx.kind() != RunnerKind::SelfHosted {
        ids.insert(0, "xtask".to_owned());
    }
    let mut s = format!(
        "\n  {}:\n    name: {repo}{}\n",
        job_id(repo),
        if matrix { " ${{ matrix.cell }}" } else { "" }
    );
    if !ids.is_empty() {
        let _ = writeln!(s, "    needs: [{}]", ids.join(", "));
    }
    // A release runs the whole chain in the `release` job (see `ci.rs`).
    s += "    if: ${{ github.event_name != 'release' }}\n";
    let _ = write!(
        s,
        "    runs-on: {}\n    timeout-minutes: 90\n    permissions:\n      contents: read\n",
        cx.runs_on()
    );
    if matrix {
        s += &matrix_strategy(&cells);
    }
    s += &job_env(cx);
    s += "    steps:\n";
    s += &steps::checkout_orchestrator(cx, None);
    s += &steps::xtask_build(cx, cx.chain_features().as_deref(), false);
    s += &steps::checkout_chain(&x);
    let _ = write!(
        s,
        "      - name: check that the job graph is still the chain's graph\n        working-directory: {ORCH_DIR}\n        run: {x} workflows --check\n"
    );
    let selector = if matrix {
        format!(" --only {repo} --cell \"$CELL\"")
    } else {
        format!(" --only {repo}")
    };
    s += &steps::toolchains(&x, &selector, matrix);
    s += &steps::tools(cx);
    s += &steps::require_bucket(cx);
    s += &steps::restore_cache_root(cx, &x, Some(repo));
    s += &run_repo(cx, &x, repo, matrix);
    let suffix = if matrix {
        format!("{repo}-${{{{ matrix.cell }}}}")
    } else {
        repo.to_owned()
    };
    s += &steps::upload_run(&format!("bllvm-ci-run-{suffix}"));
    s += &steps::upload_summary(&format!("bllvm-ci-summary-{suffix}"));
    s += &steps::save_cache_root(cx);
    s
}

/// `ci --only REPO` with the webhooks and the remote cache's settings (the summary job
/// writes the PR comment).
fn run_repo(cx: &Ctx, x: &str, repo: &str, matrix: bool) -> String {
    let mut s = format!(
        "      - name: build and test {repo}\n        working-directory: {ORCH_DIR}\n        env:\n"
    );
    for var in cx.webhook_vars() {
        let _ = writeln!(s, "          {var}: ${{{{ secrets.{var} }}}}");
    }
    s += &steps::remote_env(cx);
    s += "          RELEASE: ${{ github.event_name == 'release' && 'release' || '' }}\n";
    let mut cmd = format!(
        "{x} ci --keep-going --only {repo} --run-dir \"$BLLVM_CI_RUN_DIR\" ${{RELEASE:+--release}}"
    );
    if matrix {
        s += "          CELL: ${{ matrix.cell }}\n";
        cmd += " --cell \"$CELL\"";
    }
    let _ = writeln!(s, "        run: {cmd}");
    s
}

/// The job after every repo job (also when some failed): one step summary and one PR
/// comment from their `summary.json` artifacts, failing when a repo failed or its job
/// left no summary.
fn summary_job(cx: &Ctx) -> String {
    let ids: Vec<String> = cx.needs.iter().map(|(r, _)| job_id(r)).collect();
    let expect: String = cx
        .needs
        .iter()
        .flat_map(|(r, _)| summary_names(cx, r))
        .map(|n| format!(" --expect {n}"))
        .collect();
    let mut s = format!(
        "\n  summary:\n    name: summary\n    needs: [{}]\n    if: ${{{{ always() && github.event_name != 'release' }}}}\n    runs-on: {}\n    timeout-minutes: 15\n    permissions:\n      contents: read\n      pull-requests: write # one comment with the whole run's summary on pull requests\n",
        ids.join(", "),
        cx.runs_on()
    );
    s += &job_env(cx);
    s += "    steps:\n";
    s += &steps::checkout_orchestrator(cx, None);
    s += &steps::xtask_build(cx, None, false);
    let _ = write!(
        s,
        "      - name: download the repo jobs' summaries\n        uses: {}\n        with:\n          pattern: bllvm-ci-summary-*\n          path: {SUMMARIES}\n      - name: one step summary and one PR comment for the run\n        working-directory: {ORCH_DIR}\n        env:\n          GITHUB_TOKEN: ${{{{ github.token }}}}\n          SUMMARIES: {SUMMARIES}\n        run: cargo xtask workflows gather \"$SUMMARIES\" --comment{expect}\n",
        super::pins::DOWNLOAD_ARTIFACT.uses()
    );
    s
}
