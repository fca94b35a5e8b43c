//! Layer 7: tools for developing this crate — benchmarks, stress scenarios, the demo and
//! property tests. Production code never imports them.

pub mod bench;
pub mod bench_noop;
pub mod demo;
#[cfg(test)]
mod props;
pub mod stress;
pub mod stress_proc;
