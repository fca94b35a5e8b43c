//! The one toolchain rule as the commands apply it (`engine/toolchain.rs`): what the
//! plan shows, and what preflight says about a `RUSTUP_TOOLCHAIN` set for `cargo xtask`.

use crate::support::xtask;

fn sample() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../ci/sample/chain.toml")
}

#[test]
fn a_deliberate_rustup_toolchain_is_reported_as_ignored() {
    // The rustup proxy exports the toolchain it picked; a different value was set by the
    // user, and every repo builds with its own pin instead: preflight says so, with the fix.
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args(["preflight", "--manifest", sample(), "--cache-dir"])
        .arg(dir.path())
        .env("RUSTUP_TOOLCHAIN", "nightly-1999-01-01")
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("RUSTUP_TOOLCHAIN=nightly-1999-01-01 from the environment is ignored")
            && text.contains("pass --toolchain nightly-1999-01-01"),
        "{text}"
    );
    // Without it, nothing is said.
    let out = xtask()
        .args(["preflight", "--manifest", sample(), "--cache-dir"])
        .arg(dir.path())
        .env_remove("RUSTUP_TOOLCHAIN")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!text.contains("is ignored"), "{text}");
}

#[test]
fn plan_v_names_the_toolchain_source_and_the_exact_commands() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args([
            "plan",
            "-v",
            "--toolchain",
            "stable",
            "--only",
            "bllvm-muhash",
        ])
        .args(["--manifest", sample(), "--cache-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("toolchain: --toolchain stable"), "{text}");
    assert!(
        text.contains("run clippy: cargo clippy --workspace --all-targets -- -D warnings"),
        "{text}"
    );
    assert!(text.contains("RUSTUP_TOOLCHAIN=stable"), "{text}");
}

#[test]
fn plan_v_names_the_secrets_a_step_goes_without_never_their_values() {
    let dir = tempfile::tempdir().unwrap();
    let out = xtask()
        .args(["plan", "-v", "--only", "bllvm-muhash"])
        .args(["--manifest", sample(), "--cache-dir"])
        .arg(dir.path())
        .env("AWS_SECRET_ACCESS_KEY", "plan-v-secret-value")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("env withheld:") && text.contains("AWS_SECRET_ACCESS_KEY"),
        "{text}"
    );
    assert!(!text.contains("plan-v-secret-value"), "{text}");
}
