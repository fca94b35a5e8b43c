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
mod remote;
mod seaweed;
mod skip;
mod spine;
mod support;
mod testing;
mod tidy;
