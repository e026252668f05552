//! Manifests as a client pushes them: media types, the builders for images, indexes and
//! artifacts, and the five kinds a registry:2 drop-in stores.

use serde_json::{json, Value};

use super::fixtures::{sha256_digest, Blob};

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";
/// The digest of `{}`, the OCI empty descriptor's blob.
pub const EMPTY_DIGEST: &str =
    "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

/// Every manifest type a registry:2 drop-in accepts in `Accept`.
pub const ACCEPT_ALL_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// Manifest bytes as pushed, with their media type and digest.
#[derive(Clone, Debug)]
pub struct Manifest {
    pub media_type: String,
    pub body: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    /// Serialize with an indentation a server would not produce by itself, so a server that
    /// re-serializes is caught.
    pub fn from_value(media_type: &str, value: &Value) -> Self {
        let mut body = Vec::new();
        let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
        let mut ser = serde_json::Serializer::with_formatter(&mut body, formatter);
        serde::Serialize::serialize(value, &mut ser).expect("serialize manifest");
        body.push(b'\n');
        let digest = sha256_digest(&body);
        Manifest {
            media_type: media_type.to_string(),
            body,
            digest,
        }
    }

    /// The length of the body.
    pub fn size(&self) -> u64 {
        self.body.len() as u64
    }

    /// The descriptor another manifest uses to refer to this one.
    pub fn descriptor(&self) -> Value {
        descriptor(&self.media_type, &self.digest, self.size())
    }

    /// The body, parsed.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("manifest JSON")
    }
}

/// `{"mediaType", "digest", "size"}`.
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

/// `{"os", "architecture"}`.
pub fn platform(os: &str, arch: &str) -> Value {
    json!({"os": os, "architecture": arch})
}

/// An image config whose content depends on `seed` and lists `layer_count` diff ids.
pub fn image_config(arch: &str, seed: u64, layer_count: usize) -> Blob {
    let diff_ids: Vec<String> = (0..layer_count)
        .map(|i| sha256_digest(format!("{seed}-{i}").as_bytes()))
        .collect();
    let value = json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [format!("WHARF_TEST_SEED={seed}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    Blob::new(serde_json::to_vec(&value).unwrap())
}

/// An image manifest of `media_type` over a config and layers given as (media type, blob);
/// `extra` fields are merged in.
pub fn image_manifest(
    media_type: &str,
    config: (&str, &Blob),
    layers: &[(&str, &Blob)],
    extra: Option<Value>,
) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(config.0, &config.1.digest, config.1.size()),
        "layers": layers
            .iter()
            .map(|(mt, b)| descriptor(mt, &b.digest, b.size()))
            .collect::<Vec<_>>(),
    });
    if let Some(Value::Object(extra)) = extra {
        for (k, v) in extra {
            value[k] = v;
        }
    }
    Manifest::from_value(media_type, &value)
}

/// An index (or Docker list) of `media_type` over child manifests with their platforms.
pub fn index_manifest(media_type: &str, children: &[(&Manifest, Value)]) -> Manifest {
    let manifests: Vec<Value> = children
        .iter()
        .map(|(m, platform)| {
            let mut d = m.descriptor();
            d["platform"] = platform.clone();
            d
        })
        .collect();
    let value = json!({"schemaVersion": 2, "mediaType": media_type, "manifests": manifests});
    Manifest::from_value(media_type, &value)
}

/// An OCI artifact: `artifactType`, the empty config, one layer, an optional `subject`.
pub fn artifact_manifest(
    artifact_type: &str,
    payload: &Blob,
    subject: Option<&Manifest>,
    annotations: Option<Value>,
) -> Manifest {
    let mut value = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": artifact_type,
        "config": descriptor(OCI_EMPTY, EMPTY_DIGEST, 2),
        "layers": [descriptor("application/vnd.example.payload", &payload.digest, payload.size())],
    });
    if let Some(subject) = subject {
        value["subject"] = subject.descriptor();
    }
    if let Some(annotations) = annotations {
        value["annotations"] = annotations;
    }
    Manifest::from_value(OCI_MANIFEST, &value)
}

/// The five kinds of manifest a registry:2 drop-in stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    DockerManifest,
    DockerList,
    OciManifest,
    OciIndex,
    OciArtifact,
}

/// Every [`Kind`].
pub const ALL_KINDS: [Kind; 5] = [
    Kind::DockerManifest,
    Kind::DockerList,
    Kind::OciManifest,
    Kind::OciIndex,
    Kind::OciArtifact,
];

impl Kind {
    /// The `mediaType` a manifest of this kind carries.
    pub fn media_type(self) -> &'static str {
        match self {
            Kind::DockerManifest => DOCKER_MANIFEST,
            Kind::DockerList => DOCKER_LIST,
            Kind::OciManifest | Kind::OciArtifact => OCI_MANIFEST,
            Kind::OciIndex => OCI_INDEX,
        }
    }

    /// An OCI media type (not Docker's).
    pub fn is_oci(self) -> bool {
        matches!(self, Kind::OciManifest | Kind::OciIndex | Kind::OciArtifact)
    }
}
