//! Consensus rules of the sample chain.

use bllvm_primitives::Height;

/// The block subsidy at `height`, in satoshis: 50 BTC halving every 210,000 blocks.
pub fn subsidy(height: Height) -> u64 {
    let halvings = height / 210_000;
    if halvings >= 64 {
        0
    } else {
        (50 * 100_000_000u64) >> halvings
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn halving() {
        assert_eq!(super::subsidy(0), 5_000_000_000);
        assert_eq!(super::subsidy(840_000), 312_500_000);
        // The dev-dependency edge (bllvm-muhash → bllvm-consensus) is used here only.
        assert_ne!(bllvm_muhash::muhash(&[1, 2]), 0);
    }
}
