//! OCI image layouts (`oci-layout`, `index.json`, `blobs/sha256/…`) for skopeo to copy from and to.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use serde_json::{json, Value};

use super::fixtures::{digest_hex, sha256_digest, unique_seed, Prng};
use super::manifest::{
    descriptor, index_manifest, platform, Manifest, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST,
};

/// An OCI image layout folder and the references its `index.json` names.
pub struct OciLayout {
    pub dir: PathBuf,
    refs: Vec<Value>,
}

impl OciLayout {
    /// A new, empty layout in `dir` (created if missing).
    pub fn create(dir: &Path) -> Self {
        fs::create_dir_all(dir.join("blobs/sha256")).expect("create layout");
        fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)
            .expect("write oci-layout");
        let layout = OciLayout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        };
        layout.write_index();
        layout
    }

    /// A layout another tool wrote (read-only use).
    pub fn create_existing(dir: &Path) -> Self {
        OciLayout {
            dir: dir.to_path_buf(),
            refs: Vec::new(),
        }
    }

    fn write_index(&self) {
        let index = json!({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.refs});
        fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&index).unwrap(),
        )
        .expect("write index.json");
    }

    /// Store bytes under `blobs/sha256/<hex>`; returns the digest.
    pub fn add_blob(&self, data: &[u8]) -> String {
        let digest = sha256_digest(data);
        let path = self.dir.join("blobs/sha256").join(digest_hex(&digest));
        fs::write(path, data).expect("write blob");
        digest
    }

    /// Name a manifest in `index.json` with `org.opencontainers.image.ref.name`.
    pub fn tag(&mut self, tag: &str, manifest: &Manifest) {
        let mut d = manifest.descriptor();
        d["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
        self.refs.push(d);
        self.write_index();
    }

    /// A single-platform image with `layer_count` gzip'd tar layers; blobs and manifest stored.
    pub fn image(&self, arch: &str, layer_count: usize) -> Manifest {
        let sizes: Vec<usize> = (0..layer_count).map(|i| 4096 + 1024 * i).collect();
        self.image_with_layers(arch, &sizes)
    }

    /// A single-platform image with one gzip'd tar layer per size, each holding that many
    /// random bytes (so the layer is a little larger); blobs and manifest stored.
    pub fn image_with_layers(&self, arch: &str, sizes: &[usize]) -> Manifest {
        let layer_count = sizes.len();
        let seed = unique_seed();
        let mut prng = Prng::new(seed);
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, &size) in sizes.iter().enumerate() {
            let content = prng.bytes(size);
            let tar = tar_with_file(&format!("layer{i}/data.bin"), &content);
            diff_ids.push(sha256_digest(&tar));
            let gz = gzip(&tar);
            let digest = self.add_blob(&gz);
            layers.push(descriptor(OCI_LAYER, &digest, gz.len() as u64));
        }
        let config = serde_json::to_vec(&json!({
            "architecture": arch,
            "os": "linux",
            "config": {"Env": [format!("WHARF_TEST_SEED={seed}")]},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": (0..layer_count).map(|i| json!({"created_by": format!("layer {i}")})).collect::<Vec<_>>(),
        }))
        .unwrap();
        let config_digest = self.add_blob(&config);
        let manifest = Manifest::from_value(
            OCI_MANIFEST,
            &json!({
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": descriptor(OCI_CONFIG, &config_digest, config.len() as u64),
                "layers": layers,
            }),
        );
        self.add_blob(&manifest.body);
        manifest
    }

    /// A linux/amd64 + linux/arm64 index; every blob stored. Returns (index, children).
    pub fn multi_arch(&self, layer_count: usize) -> (Manifest, Vec<Manifest>) {
        let amd64 = self.image("amd64", layer_count);
        let arm64 = self.image("arm64", layer_count);
        let index = index_manifest(
            OCI_INDEX,
            &[
                (&amd64, platform("linux", "amd64")),
                (&arm64, platform("linux", "arm64")),
            ],
        );
        self.add_blob(&index.body);
        (index, vec![amd64, arm64])
    }

    /// The digest `index.json` gives for `tag`.
    pub fn digest_of(&self, tag: &str) -> Option<String> {
        let index: Value =
            serde_json::from_slice(&fs::read(self.dir.join("index.json")).ok()?).ok()?;
        index["manifests"]
            .as_array()?
            .iter()
            .find(|d| d["annotations"]["org.opencontainers.image.ref.name"].as_str() == Some(tag))
            .and_then(|d| d["digest"].as_str().map(str::to_string))
    }

    /// The bytes stored for `digest`, if any.
    pub fn blob(&self, digest: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.join("blobs/sha256").join(digest_hex(digest))).ok()
    }
}

/// A ustar archive holding one regular file.
pub fn tar_with_file(name: &str, content: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    let name_bytes = name.as_bytes();
    assert!(name_bytes.len() < 100, "tar name too long");
    header[..name_bytes.len()].copy_from_slice(name_bytes);
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{:0width$o}\0", value, width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], content.len() as u64);
    octal(&mut header[136..148], 1_700_000_000);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].copy_from_slice(b"        ");
    let sum: u64 = header.iter().map(|&b| b as u64).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());

    let mut out = header.to_vec();
    out.extend_from_slice(content);
    let pad = (512 - content.len() % 512) % 512;
    out.resize(out.len() + pad + 1024, 0);
    out
}

/// `data` gzip'd (fast level).
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip finish")
}

/// A layout at `<dir>/layout` holding one two-layer amd64 image tagged `v1`; its path.
pub fn one_image_layout(dir: &Path) -> PathBuf {
    let path = dir.join("layout");
    let mut layout = OciLayout::create(&path);
    let image = layout.image("amd64", 2);
    layout.tag("v1", &image);
    path
}
