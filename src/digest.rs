//! Content digests (`sha256:<hex>`, `sha512:<hex>`) as the registry accepts them from clients.

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

/// A digest algorithm the registry computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    /// SHA-256, the canonical algorithm.
    Sha256,
    /// SHA-512 (OCI distribution-spec, `digest-algorithm=sha512`).
    Sha512,
}

impl Algorithm {
    /// Every algorithm, in the order storage is walked.
    pub const ALL: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

    /// The name used in digests and storage paths.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// The algorithm named `name`, if it is one this registry computes.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "sha256" => Some(Algorithm::Sha256),
            "sha512" => Some(Algorithm::Sha512),
            _ => None,
        }
    }

    /// Length of the hex encoding.
    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }
}

/// A validated digest of an algorithm the registry computes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Builds a digest from the raw 32-byte SHA-256 output.
    pub fn from_sha256(bytes: &[u8; 32]) -> Self {
        Self {
            algorithm: Algorithm::Sha256,
            hex: hex_lower(bytes),
        }
    }

    /// Builds a digest from the raw 64-byte SHA-512 output.
    pub fn from_sha512(bytes: &[u8; 64]) -> Self {
        Self {
            algorithm: Algorithm::Sha512,
            hex: hex_lower(bytes),
        }
    }

    /// The SHA-256 digest of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self::of_with(Algorithm::Sha256, data)
    }

    /// The digest of `data` with `algorithm`.
    pub fn of_with(algorithm: Algorithm, data: &[u8]) -> Self {
        use sha2::Digest as _;
        match algorithm {
            Algorithm::Sha256 => Self::from_sha256(&sha2::Sha256::digest(data).into()),
            Algorithm::Sha512 => Self::from_sha512(&sha2::Sha512::digest(data).into()),
        }
    }

    /// The lower-case hex encoding.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The algorithm's name as it appears in paths and digests.
    pub fn algorithm(&self) -> &'static str {
        self.algorithm.name()
    }

    /// The algorithm.
    pub fn kind(&self) -> Algorithm {
        self.algorithm
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses with the OCI grammar: `algorithm ":" encoded`, where the
    /// algorithm is `[a-z0-9]+(?:[+._-][a-z0-9]+)*`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, encoded) = s
            .split_once(':')
            .ok_or_else(|| DigestError::Format(s.to_string()))?;
        if !is_algorithm_grammar(name)
            || encoded.is_empty()
            || !encoded
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"=_-".contains(&b))
        {
            return Err(DigestError::Format(s.to_string()));
        }
        let algorithm = Algorithm::from_name(name)
            .ok_or_else(|| DigestError::UnsupportedAlgorithm(name.to_string()))?;
        if encoded.len() != algorithm.hex_len()
            || !encoded
                .bytes()
                .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        {
            return Err(DigestError::Encoding {
                algorithm: name.to_string(),
                encoded: encoded.to_string(),
            });
        }
        Ok(Self {
            algorithm,
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
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
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
            "sha384:abc".parse::<Digest>(),
            Err(DigestError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn sha512_digests() {
        let d = Digest::of_with(Algorithm::Sha512, b"");
        assert_eq!(
            d.to_string(),
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
        );
        assert_eq!(d.to_string().parse::<Digest>().unwrap(), d);
        assert_eq!(d.algorithm(), "sha512");
        assert!(matches!(
            "sha512:abc".parse::<Digest>(),
            Err(DigestError::Encoding { .. })
        ));
        // A sha256-length encoding under sha512 is not a sha512 digest.
        assert!(format!("sha512:{}", Digest::of(b"").hex())
            .parse::<Digest>()
            .is_err());
    }
}
