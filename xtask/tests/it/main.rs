//! Integration tests: one binary, one module per concern.
mod cache;
mod chain;
mod compiler_cache;
mod debugging;
mod follow;
mod gha;
mod hostile;
mod layers;
mod lifecycle;
mod matrix;
mod persistence;
mod realchain;
mod release;
mod reliability;
mod reliability_input;
mod reliability_secrets;
mod resolution;
// The remote cache's end-to-end tests need its S3 backend: the test command is
// `cargo test --workspace --locked --features remote` (README, `.ci/run`).
#[cfg(feature = "remote")]
mod remote;
#[cfg(feature = "remote")]
mod seaweed;
mod skip;
mod spine;
mod support;
mod testing;
mod tidy;
mod toolchain;
mod tools;
mod trust_inputs;
mod trust_secrets;
mod workflows;

/// Without the `remote` feature the remote cache's tests are not compiled at all; under CI
/// that must fail rather than pass without them.
#[cfg(not(feature = "remote"))]
#[test]
fn the_remote_cache_tests_are_compiled_under_ci() {
    assert!(
        !support::under_ci(),
        "the remote cache tests need the S3 backend: run `cargo test --workspace --locked --features remote`"
    );
}
