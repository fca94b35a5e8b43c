//! Consensus rules of the sample chain.

use bllvm_primitives::{Hash256, Height};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A block header, as far as the sample's rules need one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Height of the block.
    pub height: Height,
    /// Hash of the previous block's header.
    pub prev: Hash256,
    /// Coins the block's coinbase claims, in satoshis.
    pub claimed: u64,
}

/// Why a header breaks a rule.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RuleError {
    /// The coinbase claims more than the subsidy.
    #[error("block {height} claims {claimed} sat, more than its subsidy")]
    Overclaim {
        /// Height of the block.
        height: Height,
        /// What it claimed.
        claimed: u64,
    },
}

/// The block subsidy at `height`, in satoshis: 50 BTC halving every 210,000 blocks.
pub fn subsidy(height: Height) -> u64 {
    let halvings = height / 210_000;
    if halvings >= 64 {
        0
    } else {
        (50 * 100_000_000u64) >> halvings
    }
}

/// Check `header` against the subsidy rule.
pub fn check(header: &Header) -> Result<(), RuleError> {
    if header.claimed > subsidy(header.height) {
        return Err(RuleError::Overclaim {
            height: header.height,
            claimed: header.claimed,
        });
    }
    Ok(())
}

/// The header's id: a single SHA-256 over its fields (the sample's own encoding).
pub fn header_id(header: &Header) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(header.height.to_le_bytes());
    h.update(header.prev.0);
    h.update(header.claimed.to_le_bytes());
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halving() {
        assert_eq!(subsidy(0), 5_000_000_000);
        assert_eq!(subsidy(840_000), 312_500_000);
        let h = Header {
            height: 0,
            prev: Hash256([0; 32]),
            claimed: 6_000_000_000,
        };
        assert!(check(&h).is_err());
        assert_ne!(header_id(&h), [0; 32]);
        // The dev-dependency edge (bllvm-muhash → bllvm-consensus) is used here only.
        assert_ne!(bllvm_muhash::muhash(&[1, 2]), 0);
    }
}
