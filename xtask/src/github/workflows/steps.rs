//! The steps the generated jobs are made of, each a function returning its YAML lines
//! (list items at six spaces, as under `jobs.<id>.steps`).
//!
//! Rules every step keeps (issue 14, "workflow hygiene"): every `uses:` is a pinned
//! commit with its tag ([`super::pins`]); checkouts set `persist-credentials: false`; an
//! expression is never spliced into a `run:` script — values reach the shell through
//! `env:`; secrets appear only in the `env:` of the one step that needs them.

use std::fmt::Write as _;

use super::model::{xtask, Ctx, ORCH_DIR, TRUSTED};
use super::pins;
use crate::engine::manifest::RunnerKind;

/// Check out the orchestrator at `bllvm-ci` (`repository` names it when the workflow
/// runs in another repo). Self-hosted runners keep the checkout between runs, so it is
/// not cleaned by the action but by the next step, which spares `target/` (the xtask
/// build) and nothing else.
pub fn checkout_orchestrator(cx: &Ctx, repository: Option<&str>) -> String {
    let mut s = format!(
        "      - name: check out the orchestrator\n        uses: {}\n        with:\n",
        pins::CHECKOUT.uses()
    );
    if let Some(r) = repository {
        let _ = writeln!(s, "          repository: {r}");
    }
    let _ = writeln!(
        s,
        "          path: {ORCH_DIR}\n          persist-credentials: false"
    );
    if cx.kind() == RunnerKind::SelfHosted {
        s += "          # The runner's disk persists: keep target/ (the xtask build) and clean the rest below.\n          clean: false\n";
        let _ = write!(
            s,
            "      - name: clean the orchestrator checkout except its target/ (the xtask build)\n        working-directory: {ORCH_DIR}\n        run: git clean -ffdx --exclude=/target/\n"
        );
    }
    s
}

/// The `actions/cache` key of the xtask build with `features` (`default` for none):
/// runner OS and architecture, the toolchain that builds it (`rustc -vV`), the features,
/// `Cargo.lock`, then the xtask sources. The restore key stops after `Cargo.lock`, so a
/// source change restores every dependency and recompiles xtask alone.
fn xtask_key(features: &str) -> (String, String) {
    let prefix = format!(
        "xtask-${{{{ runner.os }}}}-${{{{ runner.arch }}}}-${{{{ steps.xtask-key-{features}.outputs.rustc }}}}-{features}-${{{{ hashFiles('{ORCH_DIR}/Cargo.lock') }}}}-"
    );
    let key = format!(
        "{prefix}${{{{ hashFiles('{ORCH_DIR}/Cargo.toml', '{ORCH_DIR}/.cargo/config.toml', '{ORCH_DIR}/xtask/**') }}}}"
    );
    (key, prefix)
}

/// Restore (and, with `save`, save) the xtask build for `features`, then build it
/// `--locked`: the build is compiled once per `Cargo.lock`, toolchain and feature set and
/// restored in every other job. On self-hosted runners the build stays in the persistent
/// checkout's `target/` instead. `save` is set in the job that owns the build.
pub fn xtask_build(cx: &Ctx, features: Option<&str>, save: bool) -> String {
    let flag = features.map_or(String::new(), |f| format!(" --features {f}"));
    let build = format!(
        "      - name: build xtask{}\n        working-directory: {ORCH_DIR}\n        run: cargo build --package xtask --locked{flag}\n",
        features.map_or(String::new(), |f| format!(" with features {f}"))
    );
    if cx.kind() == RunnerKind::SelfHosted {
        return build;
    }
    let set = features.unwrap_or("default");
    let (key, prefix) = xtask_key(set);
    let paths = format!(
        "            ~/.cargo/registry/index/\n            ~/.cargo/registry/cache/\n            ~/.cargo/git/db/\n            {ORCH_DIR}/target/\n            !{ORCH_DIR}/target/debug/incremental/\n"
    );
    let mut s = format!(
        "      - name: key the xtask build on the toolchain that builds it\n        id: xtask-key-{set}\n        working-directory: {ORCH_DIR}\n        run: echo \"rustc=$(rustc -vV | sha256sum | cut -c1-16)\" >> \"$GITHUB_OUTPUT\"\n      - name: restore the xtask build ({set})\n        id: xtask-cache-{set}\n        uses: {}\n        with:\n          path: |\n{paths}          key: {key}\n          restore-keys: {prefix}\n{build}",
        pins::CACHE_RESTORE.uses()
    );
    if save {
        // A pull request's cache is scoped to its own ref by GitHub: no other branch
        // restores it, so the build may be saved on every event.
        let _ = write!(
            s,
            "      - name: save the xtask build ({set})\n        if: ${{{{ steps.xtask-cache-{set}.outputs.cache-hit != 'true' }}}}\n        uses: {}\n        with:\n          path: |\n{paths}          key: {key}\n",
            pins::CACHE_SAVE.uses()
        );
    }
    s
}

/// `cargo xtask checkout`: clone (or update) every repo of the chain beside the
/// orchestrator.
pub fn checkout_chain(x: &str) -> String {
    format!(
        "      - name: check out the chain\n        working-directory: {ORCH_DIR}\n        run: {x} checkout\n"
    )
}

/// Install the toolchains the manifest and the checkouts' `rust-toolchain.toml` pins name
/// for this job (`selector`: `--only REPO`, `--cell "$CELL"` or nothing), each with
/// clippy and rustfmt (default steps), and the components on rustup's default toolchain.
pub fn toolchains(x: &str, selector: &str, matrix: bool) -> String {
    let env = if matrix {
        "        env:\n          CELL: ${{ matrix.cell }}\n"
    } else {
        ""
    };
    format!(
        "      - name: install the toolchains the manifest and the checkouts pin, with clippy and rustfmt\n        working-directory: {ORCH_DIR}\n{env}        run: |\n          {x} workflows toolchains{selector} > \"$RUNNER_TEMP/toolchains.txt\"\n          while read -r toolchain; do\n            rustup toolchain install \"$toolchain\" --profile minimal --component clippy,rustfmt --no-self-update\n          done < \"$RUNNER_TEMP/toolchains.txt\"\n          rustup component add clippy rustfmt\n"
    )
}

/// cargo-nextest (the test step's runner and JUnit report) and, where a repo runs the
/// `coverage` step, cargo-tarpaulin: pinned versions, checksummed downloads.
pub fn tools(cx: &Ctx) -> String {
    let mut tools = format!("cargo-nextest@{}", pins::NEXTEST_VERSION);
    if cx.coverage() {
        let _ = write!(tools, ",cargo-tarpaulin@{}", pins::TARPAULIN_VERSION);
    }
    format!(
        "      - name: install {tools} (pinned, sha256-checked)\n        uses: {}\n        with:\n          tool: {tools}\n          fallback: none\n",
        pins::INSTALL_ACTION.uses()
    )
}

/// Hosted runners: compute the cache root's keys (`cargo xtask cache actions-key`, for
/// `only` in a fan-out job) and restore the cache root through GitHub's cache service.
pub fn restore_cache_root(cx: &Ctx, x: &str, only: Option<&str>) -> String {
    if cx.kind() != RunnerKind::Hosted {
        return String::new();
    }
    let only = only.map_or(String::new(), |r| format!(" --only {r}"));
    format!(
        "      - name: compute the keys of the cache root\n        id: keys\n        working-directory: {ORCH_DIR}\n        run: {x} cache actions-key --manifest ci/chain.toml{only}\n      - name: restore the cache root\n        id: cache-root\n        uses: {}\n        with:\n          path: {dir}\n          key: ${{{{ steps.keys.outputs.key }}}}\n          restore-keys: ${{{{ steps.keys.outputs.restore-keys }}}}\n",
        pins::CACHE_RESTORE.uses(),
        dir = cx.cache_dir(),
    )
}

/// Hosted runners: save the cache root after the run, also when the run failed (what it
/// built is still good), on trusted events only, and not when the key was an exact hit
/// (a key is written once).
pub fn save_cache_root(cx: &Ctx) -> String {
    if cx.kind() != RunnerKind::Hosted {
        return String::new();
    }
    format!(
        "      - name: save the cache root (trusted events only, also after a failed run)\n        if: ${{{{ always() && steps.keys.outputs.key != '' && steps.cache-root.outputs.cache-hit != 'true' && ({TRUSTED}) }}}}\n        uses: {}\n        with:\n          path: {dir}\n          key: ${{{{ steps.keys.outputs.key }}}}\n",
        pins::CACHE_SAVE.uses(),
        dir = cx.cache_dir(),
    )
}

/// The `env:` lines (ten spaces in) a remote-cache job's run step gets: the bucket
/// settings from repository variables (an unset one leaves the manifest's value), the
/// credentials from secrets, and read-only on untrusted events.
pub fn remote_env(cx: &Ctx) -> String {
    if cx.chain_features().is_none() {
        return String::new();
    }
    let mut s = String::new();
    for var in [
        "BLLVM_CI_CACHE_BUCKET",
        "BLLVM_CI_CACHE_ENDPOINT",
        "BLLVM_CI_CACHE_REGION",
        "BLLVM_CI_CACHE_KEY_PREFIX",
    ] {
        let _ = writeln!(s, "          {var}: ${{{{ vars.{var} }}}}");
    }
    for var in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        let _ = writeln!(s, "          {var}: ${{{{ secrets.{var} }}}}");
    }
    let _ = writeln!(
        s,
        "          BLLVM_CI_CACHE_READ_ONLY: ${{{{ !({TRUSTED}) }}}}"
    );
    s
}

/// A remote job whose manifest names no bucket fails before the run when the repository
/// variable is not set either, instead of running without the shared cache.
pub fn require_bucket(cx: &Ctx) -> String {
    let named = cx
        .manifest
        .cache
        .remote
        .as_ref()
        .is_some_and(|r| r.bucket.is_some());
    if cx.kind() != RunnerKind::Remote || named {
        return String::new();
    }
    "      - name: require the remote cache's bucket\n        env:\n          BLLVM_CI_CACHE_BUCKET: ${{ vars.BLLVM_CI_CACHE_BUCKET }}\n        run: |\n          if [ -z \"$BLLVM_CI_CACHE_BUCKET\" ]; then\n            echo \"::error::runner = \\\"remote\\\": set the repository variable BLLVM_CI_CACHE_BUCKET (or [cache.remote] bucket in the manifest)\"\n            exit 1\n          fi\n".to_owned()
}

/// The HTML page of the build trends (`cargo xtask report --html`) into the run dir.
pub fn report_html(x: &str) -> String {
    format!(
        "      - name: write the build trends as HTML into the run dir\n        if: ${{{{ always() }}}}\n        working-directory: {ORCH_DIR}\n        run: |\n          if [ -f \"$BLLVM_CI_CACHE_DIR/metrics/history.jsonl\" ]; then\n            {x} report --html \"$BLLVM_CI_RUN_DIR/report.html\"\n          else\n            echo \"no metrics history in the cache root yet: no trends page\"\n          fi\n"
    )
}

/// Upload the run dir (logs, `summary.json`, JUnit, coverage, release files with
/// `SHA256SUMS`, the HTML report) as the artifact `name`, also after a failure.
pub fn upload_run(name: &str) -> String {
    format!(
        "      - name: upload the run's logs, summary, JUnit, coverage, release files and report\n        if: ${{{{ always() }}}}\n        uses: {}\n        with:\n          name: {name}\n          path: ${{{{ env.BLLVM_CI_RUN_DIR }}}}\n          if-no-files-found: warn\n          retention-days: 14\n",
        pins::UPLOAD_ARTIFACT.uses()
    )
}

/// Upload the job's `summary.json` alone as the artifact `name`, for the fan-out summary
/// job (small, so the summary job downloads no logs).
pub fn upload_summary(name: &str) -> String {
    format!(
        "      - name: upload summary.json for the summary job\n        if: ${{{{ always() }}}}\n        uses: {}\n        with:\n          name: {name}\n          path: ${{{{ env.BLLVM_CI_RUN_DIR }}}}/**/summary.json\n          if-no-files-found: ignore\n          retention-days: 14\n",
        pins::UPLOAD_ARTIFACT.uses()
    )
}

/// The `run:` command prefix of xtask in a chain job of this manifest.
pub fn chain_xtask(cx: &Ctx) -> String {
    xtask(cx.chain_features().as_deref())
}
