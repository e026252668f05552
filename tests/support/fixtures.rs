//! Test data: digests, a fast seeded PRNG (as bytes or as a stream never held in memory), blobs
//! with their digests, and random cut points for chunked uploads.

use std::collections::BTreeSet;
use std::io::{self, Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256:<hex>` of `data`.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(data)))
}

/// The hex part of `sha256:<hex>`.
pub fn digest_hex(digest: &str) -> &str {
    digest.split_once(':').map(|(_, h)| h).unwrap_or(digest)
}

/// A `Write` sink that hashes what goes through it.
#[derive(Default)]
pub struct HashingSink {
    hasher: Sha256,
    pub written: u64,
}

impl HashingSink {
    /// `sha256:<hex>` of everything written.
    pub fn digest(self) -> String {
        format!("sha256:{}", hex(&self.hasher.finalize()))
    }
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// xoshiro256** seeded through splitmix64: fast, deterministic test data.
#[derive(Clone)]
pub struct Prng {
    s: [u64; 4],
}

impl Prng {
    /// A generator whose output depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Prng {
            s: [next(), next(), next(), next()],
        }
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Fills `buf`, 8 bytes per step (the last step's extra bytes are dropped).
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for chunk in &mut chunks {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let bytes = self.next_u64().to_le_bytes();
            let n = tail.len();
            tail.copy_from_slice(&bytes[..n]);
        }
    }

    /// `len` bytes.
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.fill(&mut buf);
        buf
    }
}

/// `len` bytes of a seeded PRNG stream, produced on demand (never held in memory).
/// Reads are whole multiples of 8 bytes except the last, so the stream does not depend on the
/// reader's buffer sizes.
pub struct PrngReader {
    prng: Prng,
    remaining: u64,
    pending: Vec<u8>,
}

impl PrngReader {
    /// The stream of `Prng::new(seed)`, `len` bytes long.
    pub fn new(seed: u64, len: u64) -> Self {
        PrngReader {
            prng: Prng::new(seed),
            remaining: len,
            pending: Vec::new(),
        }
    }
}

impl Read for PrngReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        if self.pending.is_empty() {
            let n = self.remaining.min(64 * 1024) as usize;
            let words = n.div_ceil(8);
            let mut block = vec![0u8; words * 8];
            self.prng.fill(&mut block);
            block.truncate(n);
            self.pending = block;
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The sha256 digest of a PRNG stream.
pub fn prng_digest(seed: u64, len: u64) -> String {
    let mut sink = HashingSink::default();
    io::copy(&mut PrngReader::new(seed, len), &mut sink).expect("hash stream");
    sink.digest()
}

static UNIQUE: AtomicU64 = AtomicU64::new(1);

/// A seed unique within this test process.
pub fn unique_seed() -> u64 {
    let pid = std::process::id() as u64;
    (pid << 32) ^ UNIQUE.fetch_add(1, Ordering::Relaxed)
}

/// Bytes with their digest.
#[derive(Clone, Debug)]
pub struct Blob {
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    /// `data` with its sha256 digest.
    pub fn new(data: Vec<u8>) -> Self {
        let digest = sha256_digest(&data);
        Blob { data, digest }
    }

    /// `len` bytes no other blob of this test process has.
    pub fn random(len: usize) -> Self {
        Blob::new(Prng::new(unique_seed()).bytes(len))
    }

    /// The length in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// Cut points splitting `len` bytes into `chunks` random, non-empty chunks (fewer when two cuts
/// coincide).
pub fn random_cuts(prng: &mut Prng, len: usize, chunks: usize) -> Vec<usize> {
    let mut cuts = BTreeSet::new();
    for _ in 0..chunks - 1 {
        cuts.insert(1 + (prng.next_u64() as usize) % (len - 1));
    }
    cuts.into_iter().collect()
}
