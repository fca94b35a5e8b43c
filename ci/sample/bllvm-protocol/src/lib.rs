//! Protocol layer of the sample chain.

use bllvm_primitives::Height;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A message announcing the subsidy at a height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The height, as text.
    pub height: String,
    /// The subsidy there, in satoshis.
    pub subsidy: u64,
    /// Hex of the first 4 bytes of the payload's SHA-256 (a checksum, as the P2P header's).
    pub checksum: String,
}

/// The announcement for `height`.
pub fn announcement(height: Height) -> Announcement {
    let text = bllvm_primitives::height_string(height);
    let subsidy = bllvm_consensus::subsidy(height);
    let digest = Sha256::digest(format!("{text}:{subsidy}"));
    Announcement {
        height: text,
        subsidy,
        checksum: hex::encode(&digest[..4]),
    }
}

/// A message announcing the subsidy at a height, hex-encoded.
pub fn announce(height: Height) -> String {
    let a = announcement(height);
    hex::encode(format!("{}:{}", a.height, a.subsidy))
}

#[cfg(test)]
mod tests {
    #[test]
    fn announces() {
        assert_eq!(super::announce(0), hex::encode("0:5000000000"));
        assert_eq!(super::announcement(0).checksum.len(), 8);
    }
}
