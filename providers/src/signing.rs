//! Digest helpers shared by the adapters' signature formulas.

use md5::Md5;
use sha2::{Digest, Sha256, Sha384, Sha512};
use subtle::ConstantTimeEq;

/// The hash functions acquirers let a merchant choose for request signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashAlgorithm {
    #[default]
    Md5,
    Sha256,
    Sha384,
    Sha512,
}

impl HashAlgorithm {
    /// Lower-case hex digest of `input`.
    pub fn hex_digest(self, input: &[u8]) -> String {
        match self {
            HashAlgorithm::Md5 => hex::encode(Md5::digest(input)),
            HashAlgorithm::Sha256 => hex::encode(Sha256::digest(input)),
            HashAlgorithm::Sha384 => hex::encode(Sha384::digest(input)),
            HashAlgorithm::Sha512 => hex::encode(Sha512::digest(input)),
        }
    }
}

/// Compares a received hex signature with the expected one in constant time, ignoring case
/// (acquirers accept and send either).
pub fn hex_signature_matches(received: &str, expected_lower: &str) -> bool {
    let received = received.to_ascii_lowercase();
    received.as_bytes().ct_eq(expected_lower.as_bytes()).into()
}
