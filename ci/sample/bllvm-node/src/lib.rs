//! Node of the sample chain.

use serde::{Deserialize, Serialize};

/// What the node reports about its tip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The tip's height.
    pub height: u32,
    /// The protocol's announcement for it, hex-encoded.
    pub announce: String,
}

/// Why the node cannot serve a request.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The height is past the tip.
    #[error("height {0} is past the tip")]
    PastTip(u32),
}

/// The status at `height`.
pub fn status_at(height: u32) -> Status {
    Status {
        height,
        announce: bllvm_protocol::announce(height),
    }
}

/// What the node would print for `height`.
pub fn status(height: u32) -> String {
    let s = status_at(height);
    format!("tip {} {}", s.height, s.announce)
}

/// The status at `height` when the tip is at `tip`.
pub fn status_below(height: u32, tip: u32) -> Result<Status, NodeError> {
    if height > tip {
        return Err(NodeError::PastTip(height));
    }
    Ok(status_at(height))
}
