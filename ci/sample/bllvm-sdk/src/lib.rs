//! SDK of the sample chain.

/// Node status and a protocol announcement, for tools built on the SDK.
pub fn describe(height: u32) -> (String, String) {
    (bllvm_node::status(height), bllvm_protocol::announce(height))
}

#[cfg(test)]
mod tests {
    #[test]
    fn describes() {
        assert!(super::describe(1).0.starts_with("tip 1 "));
    }
}
