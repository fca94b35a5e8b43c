//! SDK of the sample chain.

use serde::{Deserialize, Serialize};

/// Node status and a protocol announcement, for tools built on the SDK.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// The node's status line.
    pub status: String,
    /// The protocol's announcement.
    pub announce: String,
}

/// Node status and a protocol announcement, for tools built on the SDK.
pub fn describe(height: u32) -> (String, String) {
    (bllvm_node::status(height), bllvm_protocol::announce(height))
}

/// [`describe`] as one serializable value.
pub fn description(height: u32) -> Description {
    let (status, announce) = describe(height);
    Description { status, announce }
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes() {
        assert!(super::describe(1).0.starts_with("tip 1 "));
        assert!(super::description(1).status.starts_with("tip 1 "));
    }
}
