//! Node of the sample chain.

/// What the node would print for `height`.
pub fn status(height: u32) -> String {
    format!("tip {height} {}", bllvm_protocol::announce(height))
}
