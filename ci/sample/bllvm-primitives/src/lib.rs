//! Foundational types of the sample chain.

/// A block height.
pub type Height = u32;

/// Render a height with `itoa` (a small crates.io dependency, so the registry cache matters).
pub fn height_string(h: Height) -> String {
    itoa::Buffer::new().format(h).to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders() {
        assert_eq!(super::height_string(840_000), "840000");
    }
}
