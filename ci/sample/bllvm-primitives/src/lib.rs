//! Foundational types of the sample chain.
//!
//! Its third-party dependencies (`serde` with derive, `sha2`, `thiserror`, `itoa`) are the
//! ones most of the real chain's repos share, so a cold chain build compiles them once per
//! repo unless a compiler cache shares them.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A block height.
pub type Height = u32;

/// A 32-byte hash (double SHA-256, as Bitcoin's block and transaction ids).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    /// `sha256(sha256(data))`.
    pub fn double_sha256(data: &[u8]) -> Hash256 {
        Hash256(Sha256::digest(Sha256::digest(data)).into())
    }
}

/// Why a height could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    /// Not a decimal number that fits a height.
    #[error("`{0}` is not a block height")]
    NotAHeight(String),
}

/// Render a height with `itoa` (a small crates.io dependency, so the registry cache matters).
pub fn height_string(h: Height) -> String {
    itoa::Buffer::new().format(h).to_owned()
}

/// Parse a height written by [`height_string`].
pub fn parse_height(s: &str) -> Result<Height, ParseError> {
    s.parse().map_err(|_| ParseError::NotAHeight(s.to_owned()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders() {
        assert_eq!(super::height_string(840_000), "840000");
        assert_eq!(super::parse_height("840000"), Ok(840_000));
        assert!(super::parse_height("x").is_err());
        assert_ne!(super::Hash256::double_sha256(b"a"), super::Hash256([0; 32]));
    }
}
