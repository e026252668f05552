//! What the workloads push: blobs made cheaply unique, and a tiny image to tag and list.
//!
//! A blob of `size` bytes is one shared pseudo-random buffer of `size - 16` bytes followed by a
//! 16-byte suffix (blob id, run nonce). The buffer is generated and hashed once; each blob's
//! digest is then a clone of that SHA-256 state fed 16 more bytes, and its body is the shared
//! buffer sent as `Bytes` slices. So no blob is ever copied or hashed in full by the client,
//! which leaves the machine's CPU to the server under test.

use bytes::Bytes;
use rand::{rngs::StdRng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};

use crate::client::OutBody;

pub const SUFFIX: u64 = 16;

pub struct BlobSource {
    prefix: Bytes,
    prefix_hash: Sha256,
    nonce: u64,
}

pub struct Blob {
    pub digest: String,
    prefix: Bytes,
    suffix: Bytes,
}

impl BlobSource {
    /// Blobs of `size` bytes (at least 16). The same `seed` and `nonce` give the same blobs, so a
    /// later run can find what an earlier `--seed-only` run pushed.
    pub fn new(size: u64, seed: u64, nonce: u64) -> BlobSource {
        assert!(size >= SUFFIX, "blobs are at least {SUFFIX} bytes");
        let mut prefix = vec![0u8; (size - SUFFIX) as usize];
        StdRng::seed_from_u64(seed).fill_bytes(&mut prefix);
        let mut prefix_hash = Sha256::new();
        prefix_hash.update(&prefix);
        BlobSource {
            prefix: prefix.into(),
            prefix_hash,
            nonce,
        }
    }

    pub fn blob(&self, id: u64) -> Blob {
        let mut suffix = Vec::with_capacity(SUFFIX as usize);
        suffix.extend_from_slice(&id.to_le_bytes());
        suffix.extend_from_slice(&self.nonce.to_le_bytes());
        let mut hash = self.prefix_hash.clone();
        hash.update(&suffix);
        Blob {
            digest: format!("sha256:{}", wharf::digest::hex_lower(&hash.finalize())),
            prefix: self.prefix.clone(),
            suffix: suffix.into(),
        }
    }
}

impl Blob {
    pub fn len(&self) -> u64 {
        (self.prefix.len() + self.suffix.len()) as u64
    }

    pub fn body(&self) -> OutBody {
        OutBody::from_slices(vec![self.prefix.clone(), self.suffix.clone()])
    }

    /// Bytes `start..end` of the blob, for one chunk of a chunked upload.
    pub fn part(&self, start: u64, end: u64) -> OutBody {
        let split = self.prefix.len() as u64;
        let clamp = |at: u64, lo: u64, hi: u64| at.clamp(lo, hi) - lo;
        let from_prefix = self
            .prefix
            .slice(clamp(start, 0, split) as usize..clamp(end, 0, split) as usize);
        let from_suffix = self.suffix.slice(
            clamp(start, split, self.len()) as usize..clamp(end, split, self.len()) as usize,
        );
        OutBody::from_slices(vec![from_prefix, from_suffix])
    }
}

pub fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", wharf::digest::hex_lower(&Sha256::digest(data)))
}

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// A one-layer OCI image of about 1.5 KiB in all, always the same bytes.
pub struct TinyImage {
    pub config: Bytes,
    pub config_digest: String,
    pub layer: Bytes,
    pub layer_digest: String,
    pub manifest: Bytes,
}

impl TinyImage {
    pub fn new() -> TinyImage {
        let mut layer = vec![0u8; 1024];
        StdRng::seed_from_u64(7).fill_bytes(&mut layer);
        let layer_digest = sha256(&layer);
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }))
        .expect("static JSON");
        let config_digest = sha256(&config);
        let manifest = serde_json::to_vec_pretty(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config.len(),
            },
            "layers": [{
                "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": layer_digest,
                "size": layer.len(),
            }],
        }))
        .expect("static JSON");
        TinyImage {
            config: config.into(),
            config_digest,
            layer: layer.into(),
            layer_digest,
            manifest: manifest.into(),
        }
    }
}
