//! Layer 6: one CI job end to end — preflight, resolve the plan, restore the chain-wide
//! stages, run, and hand the finished summary to the reports.

pub mod preflight;
