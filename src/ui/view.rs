//! What the console's pages show, read through the registry (never a storage redirect): image
//! summaries for tag lists, and the whole of one manifest or index. No HTML here.

use futures_util::TryStreamExt;
use serde_json::Value;

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::manifest_format::{self, Descriptor, Manifest};
use crate::registry::reference::RepositoryName;
use crate::registry::{ManifestReference, Referrer, Registry};

/// Largest image config read for display.
const MAX_CONFIG: u64 = 1 << 20;
/// Children of an index looked into for dates and sizes.
const MAX_CHILDREN: usize = 32;

/// An image config's fields the console shows.
#[derive(Debug, Clone, Default)]
pub struct ImageConfig {
    /// `created`.
    pub created: Option<String>,
    /// `os/architecture[/variant]`.
    pub platform: Option<String>,
    /// `config.Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `config.Cmd`.
    pub cmd: Vec<String>,
    /// `config.Env`.
    pub env: Vec<String>,
    /// `config.Labels`, sorted.
    pub labels: Vec<(String, String)>,
    /// `history`: (created, created_by, empty layer).
    pub history: Vec<(String, String, bool)>,
}

/// One line of a tag list.
#[derive(Debug, Clone)]
pub struct ImageSummary {
    /// The tag.
    pub tag: String,
    /// The manifest's digest.
    pub digest: Digest,
    /// Its media type.
    pub media_type: String,
    /// Manifest, config and layers (for an index: of every child read).
    pub size: u64,
    /// Newest `created` of the image (or the index's children).
    pub created: Option<String>,
    /// Platforms.
    pub platforms: Vec<String>,
}

/// A child manifest of an index.
#[derive(Debug, Clone)]
pub struct Child {
    /// Its descriptor.
    pub descriptor: Descriptor,
    /// `os/architecture[/variant]` from the index.
    pub platform: String,
}

/// A manifest or index with everything a page shows.
#[derive(Debug, Clone)]
pub struct ImageDetail {
    /// Digest of the manifest.
    pub digest: Digest,
    /// Media type.
    pub media_type: String,
    /// Manifest body size.
    pub manifest_size: u64,
    /// The index's children.
    pub children: Vec<Child>,
    /// Config descriptor (image manifests).
    pub config_descriptor: Option<Descriptor>,
    /// The config, when it is a JSON image config.
    pub config: Option<ImageConfig>,
    /// Layers.
    pub layers: Vec<Descriptor>,
    /// `artifactType` or the config media type.
    pub artifact_type: Option<String>,
    /// The manifest this one refers to.
    pub subject: Option<Digest>,
    /// Manifests whose subject this is.
    pub referrers: Vec<Referrer>,
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::Array(a)) => a
            .iter()
            .map(|s| s.as_str().map_or_else(|| s.to_string(), str::to_string))
            .collect(),
        Some(Value::String(s)) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// Reads an image config's JSON; anything that is not an object gives `None`.
pub fn parse_config(body: &[u8]) -> Option<ImageConfig> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = v.as_object()?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let inner = v.get("config").or_else(|| v.get("container_config"));
    let platform = match (text("os"), text("architecture")) {
        (Some(os), Some(arch)) => Some(match text("variant") {
            Some(var) => format!("{os}/{arch}/{var}"),
            None => format!("{os}/{arch}"),
        }),
        _ => None,
    };
    let mut labels: Vec<(String, String)> = inner
        .and_then(|c| c.get("Labels"))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    labels.sort();
    let history = v
        .get("history")
        .and_then(Value::as_array)
        .map(|h| {
            h.iter()
                .map(|e| {
                    let t = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    let by = match t("created_by") {
                        by if by.is_empty() => t("comment"),
                        by => by,
                    };
                    let empty = e
                        .get("empty_layer")
                        .and_then(Value::as_bool)
                        .unwrap_or(false);
                    (t("created"), by, empty)
                })
                .collect()
        })
        .unwrap_or_default();
    Some(ImageConfig {
        created: text("created"),
        platform,
        entrypoint: strings(inner.and_then(|c| c.get("Entrypoint"))),
        cmd: strings(inner.and_then(|c| c.get("Cmd"))),
        env: strings(inner.and_then(|c| c.get("Env"))),
        labels,
        history,
    })
}

/// `os/architecture[/variant]` of an index entry, read from the raw index.
fn child_platforms(body: &[u8]) -> Vec<String> {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    v.get("manifests")
        .and_then(Value::as_array)
        .map(|m| {
            m.iter()
                .map(|d| {
                    let p = d.get("platform");
                    let f = |k: &str| p.and_then(|p| p.get(k)).and_then(Value::as_str);
                    match (f("os"), f("architecture"), f("variant")) {
                        (Some(os), Some(a), Some(v)) => format!("{os}/{a}/{v}"),
                        (Some(os), Some(a), None) => format!("{os}/{a}"),
                        _ => "unknown".to_string(),
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

fn parse(body: &[u8]) -> Result<Manifest> {
    manifest_format::parse_stored(body).map_err(|e| RegistryError::ManifestInvalid(e.to_string()))
}

/// Reads a small blob (an image config) of `repo` through the registry, at most `MAX_CONFIG`.
async fn read_config(
    registry: &Registry,
    repo: &RepositoryName,
    digest: &Digest,
) -> Result<Vec<u8>> {
    let blob = registry.stat_blob(repo, digest).await?;
    if blob.size > MAX_CONFIG {
        return Ok(Vec::new());
    }
    let mut stream = registry.read_blob(&blob, 0, blob.size).await?;
    let mut out = Vec::with_capacity(blob.size as usize);
    while let Some(chunk) = stream.try_next().await.map_err(RegistryError::Storage)? {
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The config of an image manifest, when it is a readable JSON image config.
async fn config_of(
    registry: &Registry,
    repo: &RepositoryName,
    m: &Manifest,
) -> Option<ImageConfig> {
    let c = m.config.as_ref()?;
    let body = read_config(registry, repo, &c.digest).await.ok()?;
    parse_config(&body)
}

/// Size, created and platform of an image manifest.
async fn image_facts(
    registry: &Registry,
    repo: &RepositoryName,
    body_len: u64,
    m: &Manifest,
) -> (u64, Option<String>, Option<String>) {
    let size = body_len
        + m.config.as_ref().map_or(0, |c| c.size)
        + m.layers.iter().map(|l| l.size).sum::<u64>();
    let config = config_of(registry, repo, m).await;
    let (created, platform) = config.map_or((None, None), |c| (c.created, c.platform));
    (size, created, platform)
}

/// The line of a tag list for `tag`.
pub async fn summary(
    registry: &Registry,
    repo: &RepositoryName,
    tag: &str,
) -> Result<ImageSummary> {
    let reference = ManifestReference::parse(tag)?;
    let stored = registry.get_manifest(repo, &reference).await?;
    let m = parse(&stored.body)?;
    let mut s = ImageSummary {
        tag: tag.to_string(),
        digest: stored.digest.clone(),
        media_type: stored.media_type.clone(),
        size: stored.body.len() as u64,
        created: None,
        platforms: Vec::new(),
    };
    if m.is_index() {
        s.platforms = child_platforms(&stored.body);
        for child in m.manifests.iter().take(MAX_CHILDREN) {
            let Ok(c) = registry
                .get_manifest(repo, &ManifestReference::Digest(child.digest.clone()))
                .await
            else {
                continue;
            };
            let Ok(cm) = parse(&c.body) else { continue };
            let (size, created, _) = image_facts(registry, repo, c.body.len() as u64, &cm).await;
            s.size += size;
            if created > s.created {
                s.created = created;
            }
        }
    } else {
        let (size, created, platform) = image_facts(registry, repo, s.size, &m).await;
        s.size = size;
        s.created = created;
        s.platforms.extend(platform);
    }
    Ok(s)
}

/// Summaries of `tags`, a few at a time; tags deleted meanwhile are left out.
pub async fn summaries(
    registry: &Registry,
    repo: &RepositoryName,
    tags: &[String],
) -> Result<Vec<ImageSummary>> {
    let mut found: Vec<Result<ImageSummary>> = Vec::with_capacity(tags.len());
    for group in tags.chunks(8) {
        let reads: Vec<_> = group.iter().map(|t| summary(registry, repo, t)).collect();
        found.extend(futures_util::future::join_all(reads).await);
    }
    let mut out = Vec::new();
    for s in found {
        match s {
            Ok(s) => out.push(s),
            Err(RegistryError::ManifestUnknown(_) | RegistryError::ManifestInvalid(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// Everything about one manifest or index.
pub async fn detail(
    registry: &Registry,
    repo: &RepositoryName,
    reference: &ManifestReference,
) -> Result<ImageDetail> {
    let stored = registry.get_manifest(repo, reference).await?;
    let m = parse(&stored.body)?;
    let platforms = child_platforms(&stored.body);
    let children = m
        .manifests
        .iter()
        .enumerate()
        .map(|(i, d)| Child {
            descriptor: d.clone(),
            platform: platforms.get(i).cloned().unwrap_or_default(),
        })
        .collect();
    let config = config_of(registry, repo, &m).await;
    let referrers = registry.referrers(repo, &stored.digest, None).await?;
    Ok(ImageDetail {
        digest: stored.digest.clone(),
        media_type: stored.media_type.clone(),
        manifest_size: stored.body.len() as u64,
        children,
        config_descriptor: m.config.clone(),
        config,
        artifact_type: m.artifact_type.clone(),
        layers: m.layers.clone(),
        subject: m.subject.as_ref().map(|s| s.digest.clone()),
        referrers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_configs_are_read_leniently() {
        let c = parse_config(
            br#"{"created":"2024-01-02T03:04:05Z","os":"linux","architecture":"arm64","variant":"v8",
            "config":{"Entrypoint":["/bin/app"],"Cmd":"serve","Env":["A=1"],"Labels":{"b":"2","a":"1"}},
            "history":[{"created":"2024-01-01T00:00:00Z","created_by":"RUN x","empty_layer":true},{"comment":"c"}]}"#,
        )
        .unwrap();
        assert_eq!(c.platform.as_deref(), Some("linux/arm64/v8"));
        assert_eq!(c.entrypoint, ["/bin/app"]);
        assert_eq!(c.cmd, ["serve"]);
        assert_eq!(
            c.labels,
            [("a".into(), "1".into()), ("b".into(), "2".into())]
        );
        assert_eq!(
            c.history[0],
            ("2024-01-01T00:00:00Z".into(), "RUN x".into(), true)
        );
        assert_eq!(c.history[1].1, "c");
        assert!(parse_config(b"[]").is_none());
        assert!(parse_config(b"{}").unwrap().platform.is_none());
    }
}
