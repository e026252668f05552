//! Manifests: content in `blobs/`, a revision link per repository, tags.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::registry::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::manifest::{self, Manifest, MAX_MANIFEST_SIZE};
use crate::registry::reference::{RepositoryName, Tag};
use crate::registry::{IndexChildren, Registry};
use crate::storage::layout;

/// A manifest reference from a URL: a tag or a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestReference {
    /// By tag.
    Tag(Tag),
    /// By digest.
    Digest(Digest),
}

impl ManifestReference {
    /// Parses a URL reference; anything with `:` is a digest.
    pub fn parse(s: &str) -> Result<Self> {
        if s.contains(':') {
            Ok(Self::Digest(s.parse()?))
        } else {
            Tag::parse(s)
                .map(Self::Tag)
                .ok_or_else(|| RegistryError::TagInvalid(s.to_string()))
        }
    }
}

/// The tags a push points at its manifest: the reference's, then the extra
/// ones, each once, in order.
pub fn tags_of<'a>(reference: &'a ManifestReference, extra_tags: &'a [Tag]) -> Vec<&'a Tag> {
    let mut tags: Vec<&Tag> = Vec::with_capacity(extra_tags.len() + 1);
    if let ManifestReference::Tag(tag) = reference {
        tags.push(tag);
    }
    for tag in extra_tags {
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    tags
}

/// A manifest as stored.
#[derive(Debug, Clone)]
pub struct StoredManifest {
    /// Its digest.
    pub digest: Digest,
    /// Media type read from the body.
    pub media_type: String,
    /// The exact bytes pushed.
    pub body: Bytes,
}

impl Registry {
    /// Stores a manifest and points at it the reference's tag, if it is one,
    /// and `extra_tags` (OCI multi-tag push). Returns the digest and the
    /// parsed manifest.
    pub async fn put_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestReference,
        extra_tags: &[Tag],
        content_type: &str,
        body: Bytes,
    ) -> Result<(Digest, Manifest)> {
        self.check_writable()?;
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestInvalid(format!(
                "manifest is {} bytes, the limit is {MAX_MANIFEST_SIZE}",
                body.len()
            )));
        }
        let digest = Digest::of(&body);
        if let ManifestReference::Digest(expected) = reference {
            if expected != &digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "manifest digest {digest} does not match {expected}"
                )));
            }
        }
        let parsed = manifest::parse(content_type, &body)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        if !self.options.validation_disabled {
            self.check_references(repo, &parsed).await?;
        }
        let blob = layout::blob_data(digest.algorithm(), digest.hex());
        if self.stat_blob_data(&digest).await? != Some(body.len() as u64) {
            self.driver.put_content(&blob, body.clone()).await?;
        }
        let revision = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
        self.write_link(&revision, &digest).await?;
        for tag in tags_of(reference, extra_tags) {
            self.tag_manifest(repo, tag, &digest).await?;
        }
        Ok((digest, parsed))
    }

    /// Points `tag` at `digest`, recording it in the tag's history first.
    async fn tag_manifest(&self, repo: &RepositoryName, tag: &Tag, digest: &Digest) -> Result<()> {
        let index = layout::tag_index_link(
            repo.as_str(),
            tag.as_str(),
            digest.algorithm(),
            digest.hex(),
        );
        self.write_link(&index, digest).await?;
        self.write_link(
            &layout::tag_current_link(repo.as_str(), tag.as_str()),
            digest,
        )
        .await
    }

    async fn check_references(&self, repo: &RepositoryName, m: &Manifest) -> Result<()> {
        for d in m.config.iter().chain(&m.layers) {
            if !d.urls.is_empty() {
                self.check_urls(&d.urls)?;
                continue;
            }
            match self.stat_blob(repo, &d.digest).await {
                Ok(_) => {}
                Err(RegistryError::BlobUnknown(dg)) => {
                    return Err(RegistryError::ManifestBlobUnknown(dg))
                }
                Err(e) => return Err(e),
            }
        }
        for child in &m.manifests {
            let required = match &self.options.index_children {
                IndexChildren::All => true,
                IndexChildren::None => false,
                IndexChildren::Platforms(list) => {
                    child.platform.as_ref().is_some_and(|p| list.contains(p))
                }
            };
            if required && !self.has_revision(repo, &child.digest).await? {
                return Err(RegistryError::ManifestBlobUnknown(child.digest.clone()));
            }
        }
        Ok(())
    }

    fn check_urls(&self, urls: &[String]) -> Result<()> {
        let matches =
            |patterns: &[regex::Regex], url: &str| patterns.iter().any(|p| p.is_match(url));
        for url in urls {
            let allowed =
                self.options.urls_allow.is_empty() || matches(&self.options.urls_allow, url);
            if !allowed || matches(&self.options.urls_deny, url) {
                return Err(RegistryError::ManifestInvalid(format!(
                    "layer URL not allowed: {url}"
                )));
            }
        }
        Ok(())
    }

    async fn has_revision(&self, repo: &RepositoryName, digest: &Digest) -> Result<bool> {
        let link = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
        Ok(self.read_link(&link).await?.as_ref() == Some(digest))
    }

    /// Resolves a reference to a digest present in `repo`.
    pub async fn resolve_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Digest> {
        let digest = match reference {
            ManifestReference::Digest(d) => d.clone(),
            ManifestReference::Tag(t) => self
                .read_link(&layout::tag_current_link(repo.as_str(), t.as_str()))
                .await?
                .ok_or_else(|| RegistryError::ManifestUnknown(format!("{repo}:{t}")))?,
        };
        if !self.has_revision(repo, &digest).await? {
            return Err(RegistryError::ManifestUnknown(format!("{repo}@{digest}")));
        }
        Ok(digest)
    }

    /// Fetches a manifest by tag or digest.
    pub async fn get_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<StoredManifest> {
        let digest = self.resolve_manifest(repo, reference).await?;
        self.read_manifest(&digest).await
    }

    /// Reads a manifest's content by digest.
    pub(crate) async fn read_manifest(&self, digest: &Digest) -> Result<StoredManifest> {
        let path = layout::blob_data(digest.algorithm(), digest.hex());
        let body = match self.driver.get_content(&path).await {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(RegistryError::ManifestUnknown(digest.to_string()))
            }
            Err(e) => return Err(e.into()),
        };
        let media_type = manifest::detect_media_type(&body).ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("{digest}: unrecognised content"))
        })?;
        Ok(StoredManifest {
            digest: digest.clone(),
            media_type,
            body,
        })
    }

    /// Deletes by digest (the revision and every tag on it) or by tag (the tag only).
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<()> {
        self.check_delete()?;
        match reference {
            ManifestReference::Tag(tag) => {
                match self
                    .driver
                    .delete(&layout::tag_dir(repo.as_str(), tag.as_str()))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => {
                        Err(RegistryError::ManifestUnknown(format!("{repo}:{tag}")))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            ManifestReference::Digest(digest) => {
                if !self.has_revision(repo, digest).await? {
                    return Err(RegistryError::ManifestUnknown(format!("{repo}@{digest}")));
                }
                // Find the tags on this digest with bounded parallelism
                // (`storage.tag.concurrencylimit`), then untag them.
                let tags = self.list_or_empty(&layout::tags_dir(repo.as_str())).await?;
                let lookups = futures_util::stream::iter(tags)
                    .map(|tag| async move {
                        let current = self
                            .read_link(&layout::tag_current_link(repo.as_str(), &tag))
                            .await;
                        (tag, current)
                    })
                    .buffer_unordered(self.options.tag_concurrency.max(1))
                    .collect::<Vec<_>>()
                    .await;
                for (tag, current) in lookups {
                    if current?.as_ref() == Some(digest) {
                        match self
                            .driver
                            .delete(&layout::tag_dir(repo.as_str(), &tag))
                            .await
                        {
                            Ok(()) => {}
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                let link = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
                match self.driver.delete(link.trim_end_matches("/link")).await {
                    Ok(()) => Ok(()),
                    Err(e) if e.is_not_found() => {
                        Err(RegistryError::ManifestUnknown(digest.to_string()))
                    }
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// The tags of a repository, sorted; `NameUnknown` when it has none.
    pub async fn list_tags(&self, repo: &RepositoryName) -> Result<Vec<String>> {
        match self.driver.list(&layout::tags_dir(repo.as_str())).await {
            Ok(mut tags) => {
                tags.sort_unstable();
                Ok(tags)
            }
            Err(e) if e.is_not_found() => Err(RegistryError::NameUnknown(repo.to_string())),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_each_tag_once() {
        let t = |s: &str| Tag::parse(s).unwrap();
        let by_tag = ManifestReference::Tag(t("a"));
        let extra = [t("b"), t("a"), t("c"), t("b")];
        let names = |v: Vec<&Tag>| v.iter().map(|t| t.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(names(tags_of(&by_tag, &extra)), ["a", "b", "c"]);
        let by_digest = ManifestReference::Digest(Digest::of(b"m"));
        assert_eq!(names(tags_of(&by_digest, &extra)), ["b", "a", "c"]);
        assert!(tags_of(&by_digest, &[]).is_empty());
    }

    #[test]
    fn parses_references() {
        assert!(matches!(
            ManifestReference::parse("latest"),
            Ok(ManifestReference::Tag(_))
        ));
        assert!(matches!(
            ManifestReference::parse("sha256:zz"),
            Err(RegistryError::DigestInvalid(_))
        ));
        assert!(matches!(
            ManifestReference::parse("md5:00"),
            Err(RegistryError::DigestUnsupported(_))
        ));
        assert!(matches!(
            ManifestReference::parse("-bad"),
            Err(RegistryError::TagInvalid(_))
        ));
    }
}
