//! Manifest media types and the parts of a manifest the registry checks.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::digest::Digest;

/// Docker image manifest, schema 2.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 1 (refused, as by distribution without `compatibility.schema1`).
pub const DOCKER_SCHEMA1: &[&str] = &[
    "application/vnd.docker.distribution.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
];

/// Largest manifest body accepted.
pub const MAX_MANIFEST_SIZE: usize = 4 << 20;

/// A content descriptor as found in manifests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Media type of the target.
    pub media_type: String,
    /// Digest of the target.
    pub digest: Digest,
    /// Size of the target in bytes.
    pub size: u64,
    /// External URLs (foreign layers).
    pub urls: Vec<String>,
    /// Platform, for index entries: (architecture, os).
    pub platform: Option<(String, String)>,
}

/// The facts about a manifest that validation, tagging and referrers need.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// Media type, from the body (or the Content-Type it was pushed with).
    pub media_type: String,
    /// Config descriptor (image manifests).
    pub config: Option<Descriptor>,
    /// Layers (image manifests).
    pub layers: Vec<Descriptor>,
    /// Child manifests (indexes).
    pub manifests: Vec<Descriptor>,
    /// The manifest this one refers to.
    pub subject: Option<Descriptor>,
    /// Declared artifact type.
    pub artifact_type: Option<String>,
    /// Annotations, kept verbatim for referrers answers.
    pub annotations: Option<Map<String, Value>>,
}

impl Manifest {
    /// True for indexes and manifest lists.
    pub fn is_index(&self) -> bool {
        self.media_type == OCI_INDEX || self.media_type == DOCKER_MANIFEST_LIST
    }

    /// The artifact type for referrers: `artifactType`, else the config's media type.
    pub fn effective_artifact_type(&self) -> Option<&str> {
        self.artifact_type
            .as_deref()
            .or_else(|| self.config.as_ref().map(|c| c.media_type.as_str()))
    }
}

/// Why a manifest body was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    /// Anything structurally wrong, with a human reason.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDescriptor {
    media_type: Option<String>,
    digest: Option<String>,
    size: Option<i64>,
    #[serde(default)]
    urls: Vec<String>,
    platform: Option<RawPlatform>,
}

#[derive(Deserialize)]
struct RawPlatform {
    architecture: Option<String>,
    os: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<i64>,
    media_type: Option<String>,
    config: Option<RawDescriptor>,
    layers: Option<Vec<RawDescriptor>>,
    manifests: Option<Vec<RawDescriptor>>,
    subject: Option<RawDescriptor>,
    artifact_type: Option<String>,
    annotations: Option<Map<String, Value>>,
}

fn invalid(msg: impl Into<String>) -> ManifestError {
    ManifestError::Invalid(msg.into())
}

fn descriptor(raw: RawDescriptor, what: &str) -> Result<Descriptor, ManifestError> {
    let digest = raw
        .digest
        .ok_or_else(|| invalid(format!("{what}: missing digest")))?
        .parse::<Digest>()
        .map_err(|e| invalid(format!("{what}: {e}")))?;
    let size = raw
        .size
        .ok_or_else(|| invalid(format!("{what}: missing size")))?;
    let size = u64::try_from(size).map_err(|_| invalid(format!("{what}: negative size")))?;
    Ok(Descriptor {
        media_type: raw.media_type.unwrap_or_default(),
        digest,
        size,
        urls: raw.urls,
        platform: raw
            .platform
            .map(|p| (p.architecture.unwrap_or_default(), p.os.unwrap_or_default())),
    })
}

/// The media type a stored manifest is served with, read from its body.
pub fn detect_media_type(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<i64>,
        media_type: Option<String>,
        manifests: Option<Value>,
        signatures: Option<Value>,
    }
    let probe: Probe = serde_json::from_slice(body).ok()?;
    match (probe.schema_version, probe.media_type) {
        (_, Some(mt)) if !mt.is_empty() => Some(mt),
        (Some(1), _) if probe.signatures.is_some() => Some(DOCKER_SCHEMA1[1].to_string()),
        (Some(1), _) => Some(DOCKER_SCHEMA1[0].to_string()),
        (Some(2), _) if probe.manifests.is_some() => Some(OCI_INDEX.to_string()),
        (Some(2), _) => Some(OCI_MANIFEST.to_string()),
        _ => None,
    }
}

/// Parses a pushed manifest. `content_type` is the request's Content-Type,
/// which must name one of the four supported types and agree with the body.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Manifest, ManifestError> {
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    if DOCKER_SCHEMA1.contains(&content_type) {
        return Err(invalid("schema 1 manifests are not supported"));
    }
    if ![
        DOCKER_MANIFEST,
        DOCKER_MANIFEST_LIST,
        OCI_MANIFEST,
        OCI_INDEX,
    ]
    .contains(&content_type)
    {
        return Err(invalid(format!(
            "unsupported manifest media type {content_type:?}"
        )));
    }
    let raw: RawManifest =
        serde_json::from_slice(body).map_err(|e| invalid(format!("invalid JSON: {e}")))?;
    if raw.schema_version != Some(2) {
        return Err(invalid("schemaVersion must be 2"));
    }
    if let Some(mt) = raw.media_type.as_deref() {
        if mt != content_type {
            return Err(invalid(format!(
                "mediaType {mt:?} in the manifest does not match the Content-Type {content_type:?}"
            )));
        }
    }
    let is_index = content_type == OCI_INDEX || content_type == DOCKER_MANIFEST_LIST;
    let mut m = Manifest {
        media_type: content_type.to_string(),
        config: None,
        layers: Vec::new(),
        manifests: Vec::new(),
        subject: raw.subject.map(|s| descriptor(s, "subject")).transpose()?,
        artifact_type: raw.artifact_type,
        annotations: raw.annotations,
    };
    if is_index {
        if raw.config.is_some() || raw.layers.is_some() {
            return Err(invalid("an index has no config or layers"));
        }
        let children = raw
            .manifests
            .ok_or_else(|| invalid("index without manifests"))?;
        m.manifests = children
            .into_iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("manifests[{i}]")))
            .collect::<Result<_, _>>()?;
    } else {
        if raw.manifests.is_some() {
            return Err(invalid("an image manifest has no manifests list"));
        }
        let config = raw.config.ok_or_else(|| invalid("missing config"))?;
        m.config = Some(descriptor(config, "config")?);
        m.layers = raw
            .layers
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .map(|(i, d)| descriptor(d, &format!("layers[{i}]")))
            .collect::<Result<_, _>>()?;
        if content_type == DOCKER_MANIFEST && m.layers.is_empty() {
            return Err(invalid("a Docker image manifest needs at least one layer"));
        }
    }
    Ok(m)
}

/// Parses a stored manifest (media type read from the body).
pub fn parse_stored(body: &[u8]) -> Result<Manifest, ManifestError> {
    let mt = detect_media_type(body).ok_or_else(|| invalid("unrecognised stored manifest"))?;
    parse(&mt, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";

    #[test]
    fn parses_an_oci_artifact_with_subject() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{OCI_MANIFEST}","artifactType":"application/x-sbom",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"{D}","size":2}},
            "layers":[{{"mediaType":"application/x-sbom","digest":"{D}","size":2}}],
            "subject":{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":10}},
            "annotations":{{"a":"b"}}}}"#
        );
        let m = parse(OCI_MANIFEST, body.as_bytes()).unwrap();
        assert_eq!(m.subject.unwrap().digest.to_string(), D);
        assert_eq!(m.artifact_type.as_deref(), Some("application/x-sbom"));
        assert_eq!(m.layers.len(), 1);
        assert_eq!(
            detect_media_type(body.as_bytes()).as_deref(),
            Some(OCI_MANIFEST)
        );
    }

    #[test]
    fn refuses_bad_manifests() {
        let ok_index = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{D}","size":1}}]}}"#
        );
        assert!(parse(OCI_INDEX, ok_index.as_bytes()).is_ok());
        assert_eq!(
            detect_media_type(ok_index.as_bytes()).as_deref(),
            Some(OCI_INDEX)
        );
        for (ct, body) in [
            ("text/plain", "{}".to_string()),
            (OCI_MANIFEST, "not json".to_string()),
            (OCI_MANIFEST, r#"{"schemaVersion":1}"#.to_string()),
            (
                OCI_MANIFEST,
                format!(r#"{{"schemaVersion":2,"mediaType":"{OCI_INDEX}","manifests":[]}}"#),
            ),
            (
                OCI_MANIFEST,
                r#"{"schemaVersion":2,"config":{"digest":"sha256:zz","size":1}}"#.to_string(),
            ),
            (
                OCI_MANIFEST,
                format!(r#"{{"schemaVersion":2,"config":{{"digest":"{D}","size":-1}}}}"#),
            ),
            (OCI_INDEX, r#"{"schemaVersion":2}"#.to_string()),
            (DOCKER_SCHEMA1[0], "{}".to_string()),
        ] {
            assert!(parse(ct, body.as_bytes()).is_err(), "{ct} {body}");
        }
    }
}
