//! SHA-256 and SHA-512 hashers whose mid-state can be exported and resumed anywhere.
//!
//! The serialized form is Go's `MarshalBinary` of `crypto/sha256` and `crypto/sha512`, the same
//! bytes distribution stores in `hashstates/<algorithm>/<offset>`, so uploads can move between
//! wharf and registry:2 nodes without rehashing.

use crate::digest::{Algorithm, Digest};

/// A marshalled state that is not Go's format for the algorithm.
#[derive(Debug, thiserror::Error)]
#[error("invalid hash state")]
pub struct InvalidHashState;

/// What differs between the two SHA-2 widths.
trait Core {
    /// Words of the chaining state.
    type Word: Copy + Default;
    /// Block size in bytes.
    const BLOCK: usize;
    /// Bytes of the length field in the padding.
    const LEN_FIELD: usize;
    /// Go's marshalling magic.
    const MAGIC: &'static [u8; 4];
    /// The initial chaining state.
    const INITIAL: [Self::Word; 8];
    /// Compresses whole blocks (`data.len()` is a multiple of `BLOCK`).
    fn compress(h: &mut [Self::Word; 8], data: &[u8]);
    /// Appends a word big-endian.
    fn put(word: Self::Word, out: &mut Vec<u8>);
    /// Reads a big-endian word.
    fn get(bytes: &[u8]) -> Self::Word;
    /// Bytes per word.
    const WORD: usize;
}

#[derive(Clone)]
struct Sha256Core;
#[derive(Clone)]
struct Sha512Core;

impl Core for Sha256Core {
    type Word = u32;
    const BLOCK: usize = 64;
    const LEN_FIELD: usize = 8;
    const MAGIC: &'static [u8; 4] = b"sha\x03";
    const INITIAL: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    const WORD: usize = 4;
    fn compress(h: &mut [u32; 8], data: &[u8]) {
        let (blocks, rest) = data.as_chunks::<64>();
        debug_assert!(rest.is_empty());
        sha2::block_api::compress256(h, blocks);
    }
    fn put(word: u32, out: &mut Vec<u8>) {
        out.extend_from_slice(&word.to_be_bytes());
    }
    fn get(bytes: &[u8]) -> u32 {
        u32::from_be_bytes(bytes.try_into().expect("4 bytes"))
    }
}

impl Core for Sha512Core {
    type Word = u64;
    const BLOCK: usize = 128;
    const LEN_FIELD: usize = 16;
    const MAGIC: &'static [u8; 4] = b"sha\x07";
    const INITIAL: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    const WORD: usize = 8;
    fn compress(h: &mut [u64; 8], data: &[u8]) {
        let (blocks, rest) = data.as_chunks::<128>();
        debug_assert!(rest.is_empty());
        sha2::block_api::compress512(h, blocks);
    }
    fn put(word: u64, out: &mut Vec<u8>) {
        out.extend_from_slice(&word.to_be_bytes());
    }
    fn get(bytes: &[u8]) -> u64 {
        u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
    }
}

/// Streaming SHA-2 of one width with an exportable state.
#[derive(Clone)]
struct MidState<C: Core> {
    h: [C::Word; 8],
    /// Pending bytes (`len % BLOCK` of them), in a buffer large enough for either width.
    block: [u8; 128],
    /// Total bytes hashed so far.
    len: u64,
}

impl<C: Core> MidState<C> {
    fn new() -> Self {
        Self {
            h: C::INITIAL,
            block: [0; 128],
            len: 0,
        }
    }

    fn update(&mut self, mut data: &[u8]) {
        let pending = (self.len % C::BLOCK as u64) as usize;
        self.len += data.len() as u64;
        if pending > 0 {
            let take = (C::BLOCK - pending).min(data.len());
            self.block[pending..pending + take].copy_from_slice(&data[..take]);
            data = &data[take..];
            if pending + take < C::BLOCK {
                return;
            }
            C::compress(&mut self.h, &self.block[..C::BLOCK]);
        }
        let whole = data.len() - data.len() % C::BLOCK;
        if whole > 0 {
            C::compress(&mut self.h, &data[..whole]);
        }
        self.block[..data.len() - whole].copy_from_slice(&data[whole..]);
    }

    /// The final chaining state, big-endian (the state itself is left untouched).
    fn finish(&self) -> Vec<u8> {
        let mut h = self.h;
        let pending = (self.len % C::BLOCK as u64) as usize;
        let mut tail = [0u8; 256];
        tail[..pending].copy_from_slice(&self.block[..pending]);
        tail[pending] = 0x80;
        let total = if pending < C::BLOCK - C::LEN_FIELD {
            C::BLOCK
        } else {
            2 * C::BLOCK
        };
        tail[total - 8..total].copy_from_slice(&(self.len.wrapping_mul(8)).to_be_bytes());
        C::compress(&mut h, &tail[..total]);
        let mut out = Vec::with_capacity(8 * C::WORD);
        for word in h {
            C::put(word, &mut out);
        }
        out
    }

    fn go_len() -> usize {
        4 + 8 * C::WORD + C::BLOCK + 8
    }

    fn to_go_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(Self::go_len());
        out.extend_from_slice(C::MAGIC);
        for word in self.h {
            C::put(word, &mut out);
        }
        let pending = (self.len % C::BLOCK as u64) as usize;
        out.extend_from_slice(&self.block[..pending]);
        out.resize(4 + 8 * C::WORD + C::BLOCK, 0);
        out.extend_from_slice(&self.len.to_be_bytes());
        out
    }

    fn from_go_bytes(b: &[u8]) -> Result<Self, InvalidHashState> {
        if b.len() != Self::go_len() || &b[..4] != C::MAGIC {
            return Err(InvalidHashState);
        }
        let mut h = [C::Word::default(); 8];
        for (i, word) in h.iter_mut().enumerate() {
            *word = C::get(&b[4 + i * C::WORD..4 + (i + 1) * C::WORD]);
        }
        let at = 4 + 8 * C::WORD;
        let mut block = [0u8; 128];
        block[..C::BLOCK].copy_from_slice(&b[at..at + C::BLOCK]);
        let len = u64::from_be_bytes(b[at + C::BLOCK..].try_into().expect("8 bytes"));
        Ok(Self { h, block, len })
    }
}

/// A resumable hasher of one of the registry's digest algorithms.
#[derive(Clone)]
pub struct HashState(Width);

#[derive(Clone)]
enum Width {
    Sha256(MidState<Sha256Core>),
    Sha512(MidState<Sha512Core>),
}

impl HashState {
    /// A fresh hasher for `algorithm`.
    pub fn new(algorithm: Algorithm) -> Self {
        Self(match algorithm {
            Algorithm::Sha256 => Width::Sha256(MidState::new()),
            Algorithm::Sha512 => Width::Sha512(MidState::new()),
        })
    }

    /// The algorithm.
    pub fn algorithm(&self) -> Algorithm {
        match &self.0 {
            Width::Sha256(_) => Algorithm::Sha256,
            Width::Sha512(_) => Algorithm::Sha512,
        }
    }

    /// Bytes hashed so far.
    pub fn len(&self) -> u64 {
        match &self.0 {
            Width::Sha256(s) => s.len,
            Width::Sha512(s) => s.len,
        }
    }

    /// True when nothing has been hashed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match &mut self.0 {
            Width::Sha256(s) => s.update(data),
            Width::Sha512(s) => s.update(data),
        }
    }

    /// The digest of everything fed so far (the state itself is left untouched).
    pub fn digest(&self) -> Digest {
        match &self.0 {
            Width::Sha256(s) => Digest::from_sha256(&s.finish().try_into().expect("32 bytes")),
            Width::Sha512(s) => Digest::from_sha512(&s.finish().try_into().expect("64 bytes")),
        }
    }

    /// Go's `MarshalBinary` form.
    pub fn to_go_bytes(&self) -> Vec<u8> {
        match &self.0 {
            Width::Sha256(s) => s.to_go_bytes(),
            Width::Sha512(s) => s.to_go_bytes(),
        }
    }

    /// Parses Go's `MarshalBinary` form of `algorithm`.
    pub fn from_go_bytes(algorithm: Algorithm, b: &[u8]) -> Result<Self, InvalidHashState> {
        Ok(Self(match algorithm {
            Algorithm::Sha256 => Width::Sha256(MidState::from_go_bytes(b)?),
            Algorithm::Sha512 => Width::Sha512(MidState::from_go_bytes(b)?),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(algorithm: Algorithm, data: &[u8]) -> Digest {
        Digest::of_with(algorithm, data)
    }

    #[test]
    fn matches_sha2_for_every_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + 3) as u8).collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for n in [
                0, 1, 55, 56, 63, 64, 65, 111, 112, 127, 128, 129, 255, 256, 1000,
            ] {
                for split in [0, 1, 13, 64, 128, n / 2, n] {
                    let split = split.min(n);
                    let mut s = HashState::new(algorithm);
                    s.update(&data[..split]);
                    s.update(&data[split..n]);
                    assert_eq!(
                        s.digest(),
                        reference(algorithm, &data[..n]),
                        "{algorithm:?} n={n} split={split}"
                    );
                    assert_eq!(s.len(), n as u64);
                }
            }
        }
    }

    #[test]
    fn resumes_from_go_state() {
        let data = [7u8; 300];
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            for cut in [0, 70, 128, 200, 300] {
                let mut s = HashState::new(algorithm);
                s.update(&data[..cut]);
                let bytes = s.to_go_bytes();
                let mut resumed = HashState::from_go_bytes(algorithm, &bytes).unwrap();
                resumed.update(&data[cut..]);
                assert_eq!(resumed.digest(), reference(algorithm, &data));
            }
        }
        assert_eq!(HashState::new(Algorithm::Sha256).to_go_bytes().len(), 108);
        assert_eq!(HashState::new(Algorithm::Sha512).to_go_bytes().len(), 204);
    }

    #[test]
    fn reads_a_state_written_by_go() {
        // Go: h := sha256.New(); h.Write([]byte("hello world")); h.(encoding.BinaryMarshaler).MarshalBinary()
        let mut go = Vec::new();
        go.extend_from_slice(b"sha\x03");
        for w in Sha256Core::INITIAL {
            go.extend_from_slice(&w.to_be_bytes());
        }
        let mut block = [0u8; 64];
        block[..11].copy_from_slice(b"hello world");
        go.extend_from_slice(&block);
        go.extend_from_slice(&11u64.to_be_bytes());
        let s = HashState::from_go_bytes(Algorithm::Sha256, &go).unwrap();
        assert_eq!(s.digest(), reference(Algorithm::Sha256, b"hello world"));
        assert_eq!(s.to_go_bytes(), go);
        // The same for sha512.New(): magic "sha\x07", eight 64-bit words, a 128-byte block.
        let mut go = Vec::new();
        go.extend_from_slice(b"sha\x07");
        for w in Sha512Core::INITIAL {
            go.extend_from_slice(&w.to_be_bytes());
        }
        let mut block = [0u8; 128];
        block[..11].copy_from_slice(b"hello world");
        go.extend_from_slice(&block);
        go.extend_from_slice(&11u64.to_be_bytes());
        let s = HashState::from_go_bytes(Algorithm::Sha512, &go).unwrap();
        assert_eq!(s.digest(), reference(Algorithm::Sha512, b"hello world"));
    }

    #[test]
    fn refuses_foreign_states() {
        assert!(HashState::from_go_bytes(Algorithm::Sha256, &[0u8; 108]).is_err());
        assert!(HashState::from_go_bytes(Algorithm::Sha256, b"sha\x03").is_err());
        let sha256 = HashState::new(Algorithm::Sha256).to_go_bytes();
        assert!(HashState::from_go_bytes(Algorithm::Sha512, &sha256).is_err());
    }
}
