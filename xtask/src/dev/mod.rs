//! Layer 7: tools for developing this crate — benchmarks, stress scenarios, the demo and
//! property tests. Production code never imports them.
//!
//! Only the demo is in the default build (README's first command is `cargo xtask demo`);
//! the benchmarks and the stress scenarios are compiled with the `dev` feature
//! (`cargo run -p xtask --features dev -- bench ...`), so a CI runner does not compile them.

#[cfg(feature = "dev")]
pub mod bench;
#[cfg(feature = "dev")]
pub mod bench_chain;
#[cfg(feature = "dev")]
pub mod bench_noop;
#[cfg(feature = "dev")]
pub mod bench_remote;
#[cfg(feature = "dev")]
pub mod bench_runners;
pub mod demo;
#[cfg(feature = "dev")]
pub mod mutants;
#[cfg(test)]
mod props;
#[cfg(any(test, feature = "dev"))]
pub mod rng;
#[cfg(feature = "dev")]
pub mod stress;
