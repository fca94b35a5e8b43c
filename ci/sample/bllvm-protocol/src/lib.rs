//! Protocol layer of the sample chain.

use bllvm_primitives::Height;

/// A message announcing the subsidy at a height, hex-encoded.
pub fn announce(height: Height) -> String {
    let s = format!(
        "{}:{}",
        bllvm_primitives::height_string(height),
        bllvm_consensus::subsidy(height)
    );
    hex::encode(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn announces() {
        assert_eq!(super::announce(0), hex::encode("0:5000000000"));
    }
}
