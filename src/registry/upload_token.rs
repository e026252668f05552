//! The upload session state carried in the `_state` query parameter.
//!
//! The format is distribution's (`registry/handlers/hmac.go`): URL-safe base64
//! (with padding) of `HMAC-SHA256(secret, json) || json`. Wharf adds the SHA-256
//! mid-state as an extra JSON field; Go ignores unknown fields, so tokens stay
//! valid on registry:2 nodes and theirs on ours.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde::{Deserialize, Serialize};

use crate::digest::Algorithm;
use crate::registry::hash_state::HashState;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;
const MAC_LEN: usize = 32;

/// Everything a node needs to continue an upload it has never seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Repository the session belongs to.
    #[serde(rename = "Name")]
    pub name: String,
    /// Session id, the `<uuid>` in the upload URL.
    #[serde(rename = "UUID")]
    pub uuid: String,
    /// Bytes received so far.
    #[serde(rename = "Offset")]
    pub offset: u64,
    /// Session start, RFC 3339.
    #[serde(rename = "StartedAt")]
    pub started_at: String,
    /// The session's digest algorithm when not `sha256` (`?digest-algorithm=` on POST).
    #[serde(rename = "Algorithm", default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// Go-format SHA-256 state of the first `offset` bytes, base64; absent in
    /// tokens minted by registry:2, and when the state is not known.
    #[serde(
        rename = "Sha256State",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sha256_state: Option<String>,
    /// The same for a `sha512` session.
    #[serde(
        rename = "Sha512State",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sha512_state: Option<String>,
    /// The storage driver's note on the session's data at `offset`
    /// ([`crate::storage::FileWriter::commit_noted`]), when it keeps one.
    #[serde(rename = "WharfNote", default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Offsets of the `hashstates` files the session holds, when every file in its folder is
    /// known (it was started and continued by Wharf only, with this token's lineage), so that
    /// finishing it deletes them without listing the folder; `None`: not known.
    #[serde(
        rename = "WharfHashstates",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub hashstates: Option<Vec<u64>>,
}

/// Why a `_state` token was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UploadStateError {
    /// Not base64, too short, or not the expected JSON.
    #[error("malformed upload state")]
    Malformed,
    /// The MAC does not match: tampered, or signed with another secret.
    #[error("upload state signature mismatch")]
    BadSignature,
}

impl UploadState {
    /// Serializes and signs with `secret`.
    pub fn sign(&self, secret: &[u8]) -> String {
        let json = serde_json::to_vec(self).expect("upload state serializes");
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(&json);
        let mut token = mac.finalize().into_bytes().to_vec();
        token.extend_from_slice(&json);
        base64::engine::general_purpose::URL_SAFE.encode(token)
    }

    /// Checks the MAC in constant time and decodes.
    pub fn verify(token: &str, secret: &[u8]) -> Result<Self, UploadStateError> {
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(token)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
            .map_err(|_| UploadStateError::Malformed)?;
        if raw.len() <= MAC_LEN {
            return Err(UploadStateError::Malformed);
        }
        let (sig, json) = raw.split_at(MAC_LEN);
        let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(json);
        mac.verify_slice(sig)
            .map_err(|_| UploadStateError::BadSignature)?;
        serde_json::from_slice(json).map_err(|_| UploadStateError::Malformed)
    }

    /// The session's digest algorithm; an unknown name (a token from a newer node) is refused.
    pub fn algorithm(&self) -> Result<Algorithm, UploadStateError> {
        match self.algorithm.as_deref() {
            None => Ok(Algorithm::Sha256),
            Some(name) => Algorithm::from_name(name).ok_or(UploadStateError::Malformed),
        }
    }

    /// The hash state carried in the token, when present and consistent with `offset`.
    pub fn hasher(&self) -> Option<HashState> {
        let algorithm = self.algorithm().ok()?;
        let encoded = match algorithm {
            Algorithm::Sha256 => self.sha256_state.as_deref()?,
            Algorithm::Sha512 => self.sha512_state.as_deref()?,
        };
        let raw = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .ok()?;
        let state = HashState::from_go_bytes(algorithm, &raw).ok()?;
        (state.len() == self.offset).then_some(state)
    }

    /// Records `hasher` as the state of the first `hasher.len()` bytes.
    pub fn set_hasher(&mut self, hasher: &HashState) {
        self.at_offset(hasher.len());
        let encoded = base64::engine::general_purpose::STANDARD.encode(hasher.to_go_bytes());
        match hasher.algorithm() {
            Algorithm::Sha256 => self.sha256_state = Some(encoded),
            Algorithm::Sha512 => self.sha512_state = Some(encoded),
        }
    }

    /// Records a `hashstates` file written at `offset`; past a few, the folder is listed when
    /// the session ends instead (the token stays short).
    pub fn add_hashstate(&mut self, offset: u64) {
        const KEPT: usize = 32;
        if let Some(offsets) = &mut self.hashstates {
            if offsets.len() >= KEPT {
                self.hashstates = None;
            } else if !offsets.contains(&offset) {
                offsets.push(offset);
            }
        }
    }

    /// The state of a token that does not describe what is stored: other requests may have
    /// written files in the session's folder that it does not know of.
    pub fn forget_files(&mut self) {
        self.hashstates = None;
    }

    /// Moves the session to `offset` without a hash state (the next node rehashes).
    pub fn at_offset(&mut self, offset: u64) {
        self.offset = offset;
        self.sha256_state = None;
        self.sha512_state = None;
        self.note = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> UploadState {
        UploadState {
            name: "foo/bar".into(),
            uuid: "3f0c0c6e-0000-4000-8000-000000000001".into(),
            offset: 11,
            started_at: "2026-11-23T03:13:18Z".into(),
            algorithm: None,
            sha256_state: None,
            sha512_state: None,
            note: None,
            hashstates: None,
        }
    }

    #[test]
    fn round_trips_and_matches_go_json_shape() {
        let s = state();
        let token = s.sign(b"secret");
        assert_eq!(UploadState::verify(&token, b"secret").unwrap(), s);
        let raw = base64::engine::general_purpose::URL_SAFE
            .decode(&token)
            .unwrap();
        assert_eq!(
            std::str::from_utf8(&raw[32..]).unwrap(),
            r#"{"Name":"foo/bar","UUID":"3f0c0c6e-0000-4000-8000-000000000001","Offset":11,"StartedAt":"2026-11-23T03:13:18Z"}"#
        );
    }

    #[test]
    fn refuses_foreign_secret_and_tampering() {
        let token = state().sign(b"secret");
        assert_eq!(
            UploadState::verify(&token, b"other"),
            Err(UploadStateError::BadSignature)
        );
        let mut raw = base64::engine::general_purpose::URL_SAFE
            .decode(&token)
            .unwrap();
        let last = raw.len() - 3;
        raw[last] ^= 1;
        let tampered = base64::engine::general_purpose::URL_SAFE.encode(raw);
        assert_eq!(
            UploadState::verify(&tampered, b"secret"),
            Err(UploadStateError::BadSignature)
        );
        assert_eq!(
            UploadState::verify("!!", b"secret"),
            Err(UploadStateError::Malformed)
        );
        assert_eq!(
            UploadState::verify("", b"secret"),
            Err(UploadStateError::Malformed)
        );
    }

    #[test]
    fn carries_the_hash_state() {
        let mut s = state();
        let mut h = HashState::new(Algorithm::Sha256);
        h.update(b"hello world");
        s.set_hasher(&h);
        let back = UploadState::verify(&s.sign(b"k"), b"k").unwrap();
        assert_eq!(back.hasher().unwrap().digest(), h.digest());
        let mut wrong = back.clone();
        wrong.offset = 3;
        assert!(wrong.hasher().is_none());
        let mut moved = back.clone();
        moved.at_offset(11);
        assert!(moved.hasher().is_none());
        let mut s512 = state();
        s512.algorithm = Some("sha512".into());
        let mut h = HashState::new(Algorithm::Sha512);
        h.update(b"hello world");
        s512.set_hasher(&h);
        let back = UploadState::verify(&s512.sign(b"k"), b"k").unwrap();
        assert_eq!(back.algorithm().unwrap(), Algorithm::Sha512);
        assert_eq!(back.hasher().unwrap().digest(), h.digest());
        s512.algorithm = Some("md5".into());
        assert!(s512.algorithm().is_err());
    }
}
