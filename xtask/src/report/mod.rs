//! Layer 5: outputs. What a run is turned into for people and machines: GitHub Actions
//! groups, annotations and step summary, metrics and their trends, notifications, the
//! error knowledge base's hints, graph renderings.

pub mod console;
pub mod explain;
pub mod gha;
pub mod graph;
pub mod metrics;
pub mod notify;
pub mod progress;
pub mod trends;
