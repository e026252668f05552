//! A SHA-256 hasher whose mid-state can be exported and resumed anywhere.
//!
//! The serialized form is Go's `sha256.MarshalBinary` (108 bytes), the same bytes
//! distribution stores in `hashstates/sha256/<offset>`, so uploads can move
//! between wharf and registry:2 nodes without rehashing.

use crate::registry::digest::Digest;

const MAGIC: &[u8; 4] = b"sha\x03";
/// Length of Go's marshalled SHA-256 state.
pub const GO_STATE_LEN: usize = 4 + 32 + 64 + 8;
const INITIAL: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Streaming SHA-256 with an exportable state.
#[derive(Clone)]
pub struct Sha256State {
    h: [u32; 8],
    block: [u8; 64],
    /// Total bytes hashed so far; `len % 64` bytes are pending in `block`.
    len: u64,
}

/// A marshalled state that is not Go's 108-byte SHA-256 format.
#[derive(Debug, thiserror::Error)]
#[error("invalid sha256 hash state")]
pub struct InvalidHashState;

impl Default for Sha256State {
    fn default() -> Self {
        Self {
            h: INITIAL,
            block: [0; 64],
            len: 0,
        }
    }
}

impl Sha256State {
    /// A fresh hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when nothing has been hashed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        let pending = (self.len % 64) as usize;
        self.len += data.len() as u64;
        if pending > 0 {
            let take = (64 - pending).min(data.len());
            self.block[pending..pending + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if pending + take < 64 {
                return;
            }
            sha2::block_api::compress256(&mut self.h, std::slice::from_ref(&self.block));
        }
        let (blocks, tail) = data.as_chunks::<64>();
        if !blocks.is_empty() {
            sha2::block_api::compress256(&mut self.h, blocks);
        }
        self.block[..tail.len()].copy_from_slice(tail);
    }

    /// The digest of everything fed so far (the state itself is left untouched).
    pub fn digest(&self) -> Digest {
        let mut h = self.h;
        let pending = (self.len % 64) as usize;
        let mut tail = [0u8; 128];
        tail[..pending].copy_from_slice(&self.block[..pending]);
        tail[pending] = 0x80;
        let total = if pending < 56 { 64 } else { 128 };
        tail[total - 8..total].copy_from_slice(&(self.len * 8).to_be_bytes());
        let (blocks, _) = tail[..total].as_chunks::<64>();
        sha2::block_api::compress256(&mut h, blocks);
        let mut out = [0u8; 32];
        for (chunk, word) in out.chunks_exact_mut(4).zip(h) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        Digest::from_sha256(&out)
    }

    /// Go's `MarshalBinary` form.
    pub fn to_go_bytes(&self) -> [u8; GO_STATE_LEN] {
        let mut out = [0u8; GO_STATE_LEN];
        out[..4].copy_from_slice(MAGIC);
        for (i, word) in self.h.iter().enumerate() {
            out[4 + i * 4..8 + i * 4].copy_from_slice(&word.to_be_bytes());
        }
        let pending = (self.len % 64) as usize;
        out[36..36 + pending].copy_from_slice(&self.block[..pending]);
        out[100..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    /// Parses Go's `MarshalBinary` form.
    pub fn from_go_bytes(b: &[u8]) -> Result<Self, InvalidHashState> {
        if b.len() != GO_STATE_LEN || &b[..4] != MAGIC {
            return Err(InvalidHashState);
        }
        let mut h = [0u32; 8];
        for (i, word) in h.iter_mut().enumerate() {
            *word = u32::from_be_bytes(b[4 + i * 4..8 + i * 4].try_into().expect("4 bytes"));
        }
        let mut block = [0u8; 64];
        block.copy_from_slice(&b[36..100]);
        let len = u64::from_be_bytes(b[100..].try_into().expect("8 bytes"));
        Ok(Self { h, block, len })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest as _;

    fn reference(data: &[u8]) -> Digest {
        Digest::from_sha256(&sha2::Sha256::digest(data).into())
    }

    #[test]
    fn matches_sha2_for_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for n in [0, 1, 55, 56, 63, 64, 65, 127, 128, 129, 1000] {
            for split in [0, 1, 13, 64, n / 2, n] {
                let split = split.min(n);
                let mut s = Sha256State::new();
                s.update(&data[..split]);
                s.update(&data[split..n]);
                assert_eq!(s.digest(), reference(&data[..n]), "n={n} split={split}");
                assert_eq!(s.len(), n as u64);
            }
        }
    }

    #[test]
    fn resumes_from_go_state() {
        let data =
            b"hello world, this is more than one block of data to hash across a resume point!!";
        let mut s = Sha256State::new();
        s.update(&data[..70]);
        let bytes = s.to_go_bytes();
        let mut resumed = Sha256State::from_go_bytes(&bytes).unwrap();
        resumed.update(&data[70..]);
        assert_eq!(resumed.digest(), reference(data));
    }

    #[test]
    fn reads_a_state_written_by_go() {
        // Go: h := sha256.New(); h.Write([]byte("hello world")); h.(encoding.BinaryMarshaler).MarshalBinary()
        let mut go = Vec::new();
        go.extend_from_slice(b"sha\x03");
        for w in INITIAL {
            go.extend_from_slice(&w.to_be_bytes());
        }
        let mut block = [0u8; 64];
        block[..11].copy_from_slice(b"hello world");
        go.extend_from_slice(&block);
        go.extend_from_slice(&11u64.to_be_bytes());
        let s = Sha256State::from_go_bytes(&go).unwrap();
        assert_eq!(s.digest(), reference(b"hello world"));
        assert_eq!(s.to_go_bytes().as_slice(), go.as_slice());
    }

    #[test]
    fn refuses_foreign_states() {
        assert!(Sha256State::from_go_bytes(&[0u8; GO_STATE_LEN]).is_err());
        assert!(Sha256State::from_go_bytes(b"sha\x03").is_err());
    }
}
