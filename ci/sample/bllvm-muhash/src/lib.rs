//! A toy rolling set hash (stands in for the real MuHash leaf crate).

use sha2::{Digest, Sha256};

/// Fold `items` into one 64-bit value, independent of order: each item's SHA-256 (its
/// first 8 bytes) is added.
pub fn muhash(items: &[u64]) -> u64 {
    items.iter().fold(0u64, |acc, x| {
        let d = Sha256::digest(x.to_le_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&d[..8]);
        acc.wrapping_add(u64::from_le_bytes(first))
    })
}
