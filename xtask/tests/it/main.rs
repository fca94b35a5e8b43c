//! Integration tests: one binary, one module per concern.
mod cache;
mod debugging;
mod chain;
mod spine;
mod support;
mod tidy;
mod skip;
mod gha;
mod testing;
mod matrix;
mod release;
mod reliability;
mod remote;
mod seaweed;
mod reliability_input;
mod reliability_secrets;
