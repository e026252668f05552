//! Content digests (`sha256:<hex>`) as the registry accepts them from clients.

use std::fmt;
use std::str::FromStr;

/// Why a digest string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The text is not `algorithm:encoded`.
    #[error("invalid digest format: {0:?}")]
    Format(String),
    /// The algorithm is well-formed but not one this registry computes.
    #[error("unsupported digest algorithm: {0:?}")]
    UnsupportedAlgorithm(String),
    /// The encoded part has the wrong length or characters for its algorithm.
    #[error("invalid {algorithm} digest encoding: {encoded:?}")]
    Encoding {
        /// The algorithm named by the digest.
        algorithm: String,
        /// The offending encoded part.
        encoded: String,
    },
}

/// A validated `sha256` digest; the only algorithm blobs are stored under.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// The algorithm name as it appears in paths and digests.
    pub const ALGORITHM: &'static str = "sha256";

    /// Builds a digest from the raw 32-byte SHA-256 output.
    pub fn from_sha256(bytes: &[u8; 32]) -> Self {
        Self {
            hex: hex_lower(bytes),
        }
    }

    /// Computes the digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        use sha2::Digest as _;
        Self::from_sha256(&sha2::Sha256::digest(data).into())
    }

    /// The lower-case hex encoding.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm, always `sha256`.
    pub fn algorithm(&self) -> &'static str {
        Self::ALGORITHM
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses with the OCI grammar: `algorithm ":" encoded`, where the
    /// algorithm is `[a-z0-9]+(?:[+._-][a-z0-9]+)*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (algorithm, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(s.to_string()))?;
        if !is_algorithm_grammar(algorithm)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(DigestError::Format(s.to_string()));
        }
        if algorithm != Self::ALGORITHM {
            return Err(DigestError::UnsupportedAlgorithm(algorithm.to_string()));
        }
        if encoded.len() != 64
            || !encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Encoding {
                algorithm: algorithm.to_string(),
                encoded: encoded.to_string(),
            });
        }
        Ok(Self {
            hex: encoded.to_string(),
        })
    }
}

fn is_algorithm_grammar(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Lower-case hex of `bytes`.
pub fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(HEX[(b >> 4) as usize] as char);
        out.push(HEX[(b & 15) as usize] as char);
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", Self::ALGORITHM, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_prints_canonical_form() {
        let d: Digest = EMPTY.parse().unwrap();
        assert_eq!(d.to_string(), EMPTY);
        assert_eq!(Digest::of(b""), d);
    }

    #[test]
    fn refuses_malformed_digests() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            ":abc",
            "SHA256:abc",
            "sha256:../../etc",
            "sha256:/x",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Format(_))),
                "{bad}"
            );
        }
        let upper = EMPTY.to_uppercase().replace("SHA256", "sha256");
        assert!(matches!(
            upper.parse::<Digest>(),
            Err(DigestError::Encoding { .. })
        ));
        assert!(matches!(
            "sha256:abcd".parse::<Digest>(),
            Err(DigestError::Encoding { .. })
        ));
        assert!(matches!(
            "sha256:xyz".parse::<Digest>(),
            Err(DigestError::Encoding { .. })
        ));
    }

    #[test]
    fn refuses_other_algorithms() {
        assert!(matches!(
            "md5:d41d8cd98f00b204e9800998ecf8427e".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(a)) if a == "md5"
        ));
        assert!(matches!(
            "sha512:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }
}
