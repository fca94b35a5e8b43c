//! Integration tests: one binary, one module per concern.
mod cache;
mod chain;
mod debugging;
mod gha;
mod layers;
mod matrix;
mod release;
mod reliability;
mod reliability_input;
mod reliability_secrets;
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
