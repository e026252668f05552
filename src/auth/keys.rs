//! Public keys that sign tokens: loading (PEM certificate bundles, JWKS files), the key IDs
//! auth servers put in `kid` (libtrust, RFC 7638 thumbprint, JWKS `kid`) and `x5c` chains.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, TrustAnchor, UnixTime};
use sha2::Digest as _;
use x509_parser::prelude::FromDer;

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_P256: &str = "1.2.840.10045.3.1.7";
const OID_P384: &str = "1.3.132.0.34";
const OID_ED25519: &str = "1.3.101.112";

/// Why a key, certificate or chain was refused.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A file could not be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("{key}: {}: {reason}", path.display())]
    Content {
        /// The configuration key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A public key of a type tokens cannot be signed with.
    #[error("unsupported public key: {0}")]
    Unsupported(String),
    /// A certificate that does not parse.
    #[error("malformed certificate: {0}")]
    Certificate(String),
    /// An `x5c` chain that does not lead to a trusted root.
    #[error("untrusted certificate chain: {0}")]
    Chain(String),
}

/// A public key that can verify JWS signatures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA modulus and exponent, big-endian without leading zeros.
    Rsa {
        /// Modulus.
        n: Vec<u8>,
        /// Public exponent.
        e: Vec<u8>,
    },
    /// ECDSA P-256 point coordinates.
    P256 {
        /// X coordinate (32 bytes).
        x: Vec<u8>,
        /// Y coordinate (32 bytes).
        y: Vec<u8>,
    },
    /// ECDSA P-384 point coordinates.
    P384 {
        /// X coordinate (48 bytes).
        x: Vec<u8>,
        /// Y coordinate (48 bytes).
        y: Vec<u8>,
    },
    /// Ed25519 public key.
    Ed25519 {
        /// The 32-byte key.
        x: Vec<u8>,
    },
}

fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
    let start = bytes
        .iter()
        .position(|b| *b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    bytes[start..].to_vec()
}

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn b64url_decode(text: &str) -> Result<Vec<u8>, KeyError> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|e| KeyError::Unsupported(format!("bad base64url in JWK: {e}")))
}

/// Splits an uncompressed SEC1 point `04 || x || y` into coordinates.
fn ec_point(point: &[u8], size: usize) -> Result<(Vec<u8>, Vec<u8>), KeyError> {
    match point.split_first() {
        Some((4, rest)) if rest.len() == 2 * size => {
            Ok((rest[..size].to_vec(), rest[size..].to_vec()))
        }
        _ => Err(KeyError::Unsupported(
            "EC key is not an uncompressed point of its curve".into(),
        )),
    }
}

// Minimal DER writer for SubjectPublicKeyInfo.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .iter()
            .copied()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

fn der_uint(bytes: &[u8]) -> Vec<u8> {
    let mut v = strip_zeros(bytes);
    if v.is_empty() || v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    der(0x02, &v)
}

fn der_bits(bytes: &[u8]) -> Vec<u8> {
    let mut v = vec![0u8];
    v.extend_from_slice(bytes);
    der(0x03, &v)
}

const DER_OID_RSA: &[u8] = &[
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];
const DER_NULL: &[u8] = &[0x05, 0x00];
const DER_OID_EC: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const DER_OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const DER_OID_P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
const DER_OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// RFC 4648 base32, standard alphabet, no padding.
fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for b in bytes {
        buffer = (buffer << 8) | u32::from(*b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((buffer >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

impl PublicKey {
    /// Reads a DER `SubjectPublicKeyInfo`.
    pub fn from_spki_der(der: &[u8]) -> Result<Self, KeyError> {
        let (_, spki) = x509_parser::x509::SubjectPublicKeyInfo::from_der(der)
            .map_err(|e| KeyError::Unsupported(format!("malformed public key: {e}")))?;
        Self::from_spki(&spki)
    }

    fn from_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo<'_>) -> Result<Self, KeyError> {
        let bits = spki.subject_public_key.data.as_ref();
        match spki.algorithm.algorithm.to_id_string().as_str() {
            OID_RSA => match spki.parsed() {
                Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => Ok(PublicKey::Rsa {
                    n: strip_zeros(rsa.modulus),
                    e: strip_zeros(rsa.exponent),
                }),
                _ => Err(KeyError::Unsupported("malformed RSA public key".into())),
            },
            OID_EC => {
                let curve = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    .map(|o| o.to_id_string())
                    .unwrap_or_default();
                match curve.as_str() {
                    OID_P256 => ec_point(bits, 32).map(|(x, y)| PublicKey::P256 { x, y }),
                    OID_P384 => ec_point(bits, 48).map(|(x, y)| PublicKey::P384 { x, y }),
                    other => Err(KeyError::Unsupported(format!("EC curve {other}"))),
                }
            }
            OID_ED25519 if bits.len() == 32 => Ok(PublicKey::Ed25519 { x: bits.to_vec() }),
            other => Err(KeyError::Unsupported(format!("key algorithm {other}"))),
        }
    }

    /// The public key of a DER certificate.
    pub fn from_certificate(der: &[u8]) -> Result<Self, KeyError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        Self::from_spki(cert.public_key())
    }

    /// Reads an RSA, EC (P-256, P-384) or OKP (Ed25519) JWK.
    pub fn from_jwk(jwk: &Jwk) -> Result<Self, KeyError> {
        match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => Ok(PublicKey::Rsa {
                n: strip_zeros(&b64url_decode(&p.n)?),
                e: strip_zeros(&b64url_decode(&p.e)?),
            }),
            AlgorithmParameters::EllipticCurve(p) => {
                let (x, y) = (b64url_decode(&p.x)?, b64url_decode(&p.y)?);
                match p.curve {
                    EllipticCurve::P256 if x.len() == 32 && y.len() == 32 => {
                        Ok(PublicKey::P256 { x, y })
                    }
                    EllipticCurve::P384 if x.len() == 48 && y.len() == 48 => {
                        Ok(PublicKey::P384 { x, y })
                    }
                    _ => Err(KeyError::Unsupported(
                        "EC JWK of an unsupported curve".into(),
                    )),
                }
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                let x = b64url_decode(&p.x)?;
                match p.curve {
                    EllipticCurve::Ed25519 if x.len() == 32 => Ok(PublicKey::Ed25519 { x }),
                    _ => Err(KeyError::Unsupported("OKP JWK other than Ed25519".into())),
                }
            }
            AlgorithmParameters::OctetKey(_) => Err(KeyError::Unsupported(
                "symmetric (oct) keys are not accepted".into(),
            )),
            _ => Err(KeyError::Unsupported("unknown JWK type".into())),
        }
    }

    /// The DER `SubjectPublicKeyInfo` (what libtrust hashes).
    pub fn spki_der(&self) -> Vec<u8> {
        let (alg, bits) = match self {
            PublicKey::Rsa { n, e } => {
                let rsa = der(0x30, &[der_uint(n), der_uint(e)].concat());
                (der(0x30, &[DER_OID_RSA, DER_NULL].concat()), rsa)
            }
            PublicKey::P256 { x, y } => (
                der(0x30, &[DER_OID_EC, DER_OID_P256].concat()),
                [&[4u8][..], x, y].concat(),
            ),
            PublicKey::P384 { x, y } => (
                der(0x30, &[DER_OID_EC, DER_OID_P384].concat()),
                [&[4u8][..], x, y].concat(),
            ),
            PublicKey::Ed25519 { x } => (der(0x30, DER_OID_ED25519), x.clone()),
        };
        der(0x30, &[alg, der_bits(&bits)].concat())
    }

    /// The libtrust key ID of registry 2.x auth servers: SHA-256 of the DER public key, first
    /// 240 bits, base32, twelve groups of four joined by `:`.
    pub fn libtrust_kid(&self) -> String {
        let hash = sha2::Sha256::digest(self.spki_der());
        let text = base32(&hash[..30]);
        let groups: Vec<&str> = (0..12).map(|i| &text[i * 4..i * 4 + 4]).collect();
        groups.join(":")
    }

    /// The RFC 7638 JWK thumbprint (SHA-256, base64url).
    pub fn thumbprint(&self) -> String {
        let json = match self {
            PublicKey::Rsa { n, e } => {
                format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b64url(e), b64url(n))
            }
            PublicKey::P256 { x, y } | PublicKey::P384 { x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                if matches!(self, PublicKey::P256 { .. }) {
                    "P-256"
                } else {
                    "P-384"
                },
                b64url(x),
                b64url(y)
            ),
            PublicKey::Ed25519 { x } => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b64url(x))
            }
        };
        b64url(&sha2::Sha256::digest(json.as_bytes()))
    }

    /// The key in the form `jsonwebtoken` verifies with.
    pub fn decoding_key(&self) -> DecodingKey {
        match self {
            PublicKey::Rsa { n, e } => DecodingKey::from_rsa_raw_components(n, e),
            PublicKey::P256 { x, y } | PublicKey::P384 { x, y } => {
                DecodingKey::from_ec_der(&[&[4u8][..], x, y].concat())
            }
            PublicKey::Ed25519 { x } => DecodingKey::from_ed_der(x),
        }
    }

    /// The JWS algorithms this key can verify.
    pub fn algorithms(&self) -> &'static [Algorithm] {
        use Algorithm::*;
        match self {
            PublicKey::Rsa { .. } => &[RS256, RS384, RS512, PS256, PS384, PS512],
            PublicKey::P256 { .. } => &[ES256],
            PublicKey::P384 { .. } => &[ES384],
            PublicKey::Ed25519 { .. } => &[EdDSA],
        }
    }
}

/// A key tokens may be signed with, and the IDs it is known by.
#[derive(Clone)]
pub struct TrustedKey {
    /// The key.
    pub public: PublicKey,
    /// Ready for `jsonwebtoken`.
    pub decoding: DecodingKey,
    /// `kid` from the JWKS file, if it came from one.
    pub jwks_kid: Option<String>,
    /// RFC 7638 thumbprint.
    pub thumbprint: String,
    /// libtrust key ID.
    pub libtrust: String,
}

impl TrustedKey {
    /// Wraps a public key with its IDs.
    pub fn new(public: PublicKey, jwks_kid: Option<String>) -> Self {
        Self {
            decoding: public.decoding_key(),
            thumbprint: public.thumbprint(),
            libtrust: public.libtrust_kid(),
            jwks_kid,
            public,
        }
    }

    /// True when `kid` names this key in any of the supported forms.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.jwks_kid.as_deref() == Some(kid) || self.thumbprint == kid || self.libtrust == kid
    }
}

/// The keys and root certificates `auth.token` trusts.
#[derive(Default, Clone)]
pub struct TrustedKeys {
    keys: Vec<TrustedKey>,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, KeyError> {
    std::fs::read(path).map_err(|source| KeyError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

/// Every certificate in a PEM file (`key` names the setting in errors).
pub fn read_certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, KeyError> {
    let text = read(key, path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| KeyError::Content {
            key,
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(KeyError::Content {
            key,
            path: path.to_path_buf(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

impl TrustedKeys {
    /// Loads `rootcertbundle` (every certificate's key is trusted, and each certificate is a
    /// root for `x5c` chains) and `jwks`.
    pub fn load(bundle: Option<&Path>, jwks: Option<&Path>) -> Result<Self, KeyError> {
        let mut keys = Self::default();
        if let Some(path) = bundle {
            for cert in read_certificates("auth.token.rootcertbundle", path)? {
                keys.add_certificate(cert).map_err(|e| KeyError::Content {
                    key: "auth.token.rootcertbundle",
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                })?;
            }
        }
        if let Some(path) = jwks {
            let text = read("auth.token.jwks", path)?;
            let set: JwkSet = serde_json::from_slice(&text).map_err(|e| KeyError::Content {
                key: "auth.token.jwks",
                path: path.to_path_buf(),
                reason: format!("not a JWKS document: {e}"),
            })?;
            for jwk in &set.keys {
                match PublicKey::from_jwk(jwk) {
                    Ok(public) => keys
                        .keys
                        .push(TrustedKey::new(public, jwk.common.key_id.clone())),
                    Err(e) => tracing::warn!(
                        kid = jwk.common.key_id.as_deref().unwrap_or(""),
                        "auth.token.jwks: skipping a key: {e}"
                    ),
                }
            }
        }
        Ok(keys)
    }

    /// Trusts a certificate: its key, and the certificate as a chain root.
    pub fn add_certificate(&mut self, cert: CertificateDer<'static>) -> Result<(), KeyError> {
        let public = PublicKey::from_certificate(&cert)?;
        if !self.keys.iter().any(|k| k.public == public) {
            self.keys.push(TrustedKey::new(public, None));
        }
        if let Ok(anchor) = webpki::anchor_from_trusted_cert(&cert) {
            self.anchors.push(anchor.to_owned());
        }
        self.roots.push(cert);
        Ok(())
    }

    /// How many keys are trusted.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when no key is trusted.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key a `kid` names (JWKS kid, thumbprint or libtrust ID).
    pub fn by_kid(&self, kid: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.has_kid(kid))
    }

    /// The trusted key equal to `public`.
    pub fn by_public_key(&self, public: &PublicKey) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| &k.public == public)
    }

    /// Verifies an `x5c` chain (leaf first) against the bundle and returns the leaf's key.
    pub fn verify_chain(&self, chain: &[Vec<u8>]) -> Result<TrustedKey, KeyError> {
        let leaf = chain
            .first()
            .ok_or_else(|| KeyError::Chain("empty x5c".into()))?;
        let (_, cert) = x509_parser::parse_x509_certificate(leaf)
            .map_err(|e| KeyError::Certificate(e.to_string()))?;
        let public = PublicKey::from_spki(cert.public_key())?;
        if self.roots.iter().any(|r| r.as_ref() == leaf.as_slice()) {
            if !cert.validity().is_valid() {
                return Err(KeyError::Chain(
                    "certificate expired or not yet valid".into(),
                ));
            }
            return Ok(TrustedKey::new(public, None));
        }
        let leaf_der = CertificateDer::from(leaf.as_slice());
        let end_entity = webpki::EndEntityCert::try_from(&leaf_der)
            .map_err(|e| KeyError::Certificate(format!("{e:?}")))?;
        let intermediates: Vec<CertificateDer<'_>> = chain[1..]
            .iter()
            .map(|c| CertificateDer::from(c.as_slice()))
            .collect();
        end_entity
            .verify_for_usage(
                rustls::crypto::ring::default_provider()
                    .signature_verification_algorithms
                    .all,
                &self.anchors,
                &intermediates,
                UnixTime::now(),
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| KeyError::Chain(format!("{e:?}")))?;
        Ok(TrustedKey::new(public, None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b""), "");
        assert_eq!(base32(b"f"), "MY");
        assert_eq!(base32(b"fooba"), "MZXW6YTB");
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
    }

    #[test]
    fn spki_round_trips_for_every_key_type() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            let pair = rcgen::KeyPair::generate_for(alg).unwrap();
            let der = rcgen::PublicKeyData::subject_public_key_info(&pair);
            let key = PublicKey::from_spki_der(&der).unwrap();
            assert_eq!(key.spki_der(), der);
            let kid = key.libtrust_kid();
            assert_eq!(kid.len(), 12 * 4 + 11);
            assert_eq!(kid.split(':').count(), 12);
        }
        let rsa = PublicKey::Rsa {
            n: vec![0xc3; 256],
            e: vec![1, 0, 1],
        };
        assert_eq!(PublicKey::from_spki_der(&rsa.spki_der()).unwrap(), rsa);
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        // RFC 7638 section 3.1.
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let key = PublicKey::Rsa {
            n: b64url_decode(n).unwrap(),
            e: b64url_decode("AQAB").unwrap(),
        };
        assert_eq!(
            key.thumbprint(),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }
}
