//! A toy rolling set hash (stands in for the real MuHash leaf crate).

/// Fold `items` into one 64-bit value, independent of order.
pub fn muhash(items: &[u64]) -> u64 {
    items.iter().fold(0u64, |acc, x| {
        acc.wrapping_add(x.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    })
}
