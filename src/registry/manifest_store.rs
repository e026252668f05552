//! Manifests: content in `blobs/`, a revision link per repository, tags.

use bytes::Bytes;
use futures_util::StreamExt;

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::layout;
use crate::registry::manifest_format::{self, Manifest, MAX_MANIFEST_SIZE};
use crate::registry::reference::{RepositoryName, Tag};
use crate::registry::{IndexChildren, Registry};

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

impl std::fmt::Display for ManifestReference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tag(t) => f.write_str(t.as_str()),
            Self::Digest(d) => write!(f, "{d}"),
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

/// How a descriptor's `urls` are treated, as registry:2 treats them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UrlRule {
    /// Not a layer type that may live elsewhere: `urls` are not looked at and
    /// the blob must be in the repository.
    Ignored,
    /// A Docker foreign layer: `urls` are required and checked; the blob
    /// need not be here.
    Foreign,
    /// An OCI layer: `urls`, if any, are checked; the blob must be here
    /// unless the layer is non-distributable and has `urls`.
    Checked {
        /// Not a non-distributable type.
        distributable: bool,
    },
}

/// registry:2's rule (its schema2 and OCI manifest handlers) for a
/// descriptor of `media_type` in a manifest of `manifest_type`.
fn url_rule(manifest_type: &str, media_type: &str) -> UrlRule {
    const DOCKER_FOREIGN: &str = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
    const OCI_LAYERS: [(&str, bool); 4] = [
        ("application/vnd.oci.image.layer.v1.tar", true),
        ("application/vnd.oci.image.layer.v1.tar+gzip", true),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar",
            false,
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            false,
        ),
    ];
    match manifest_type {
        manifest_format::DOCKER_MANIFEST if media_type == DOCKER_FOREIGN => UrlRule::Foreign,
        manifest_format::OCI_MANIFEST => OCI_LAYERS
            .iter()
            .find(|(t, _)| *t == media_type)
            .map_or(UrlRule::Ignored, |&(_, distributable)| UrlRule::Checked {
                distributable,
            }),
        _ => UrlRule::Ignored,
    }
}

/// Whether a layer URL passes `validation.manifests.urls`, as in registry:2:
/// `http`/`https` without a fragment; with neither `allow` nor `deny` set
/// nothing is admitted; with `allow` set a URL must match one of its
/// patterns; a match in `deny` refuses it.
pub fn url_admitted(url: &str, allow: &[regex::Regex], deny: &[regex::Regex]) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let well_formed = (lower.starts_with("http://") || lower.starts_with("https://"))
        && !url.contains('#')
        && !url.bytes().any(|b| b.is_ascii_control() || b == b' ')
        && url
            .parse::<http::Uri>()
            .is_ok_and(|u| u.host().is_some_and(|h| !h.is_empty()));
    let matches = |patterns: &[regex::Regex]| patterns.iter().any(|p| p.is_match(url));
    let allowed = if allow.is_empty() {
        !deny.is_empty()
    } else {
        matches(allow)
    };
    well_formed && allowed && !matches(deny)
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
        // Pushed by digest, the manifest is hashed with that digest's algorithm.
        let digest = match reference {
            ManifestReference::Digest(expected) => Digest::of_with(expected.kind(), &body),
            ManifestReference::Tag(_) => Digest::of(&body),
        };
        if let ManifestReference::Digest(expected) = reference {
            if expected != &digest {
                return Err(RegistryError::DigestInvalid(format!(
                    "manifest digest {digest} does not match {expected}"
                )));
            }
        }
        let parsed = manifest_format::parse(content_type, &body)
            .map_err(|e| RegistryError::ManifestInvalid(e.to_string()))?;
        // Read before anything referenced is looked at: see `gc_guard`.
        let pass = self.gc_pass_before().await?;
        if !self.options.validation_disabled {
            self.check_references(repo, &parsed).await?;
        }
        self.store_revision(repo, &digest, &body, &parsed, pass)
            .await?;
        for tag in tags_of(reference, extra_tags) {
            self.tag_manifest(repo, tag, &digest).await?;
        }
        Ok((digest, parsed))
    }

    /// Writes the manifest's content and revision link, then settles its references with any
    /// garbage-collection pass that overlapped since `pass` was read: content or a revision
    /// link the sweeper removed is written again (the bytes are here); a referenced blob or
    /// child it removed makes the push fail, revision link removed, as if it had never been
    /// there. Checked against storage, never a cache, so a node's stale cache cannot let a
    /// manifest reference a collected blob.
    async fn store_revision(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        body: &Bytes,
        parsed: &Manifest,
        pass: crate::registry::gc_guard::PassState,
    ) -> Result<()> {
        use crate::registry::gc_guard::Reference;
        let blob = layout::blob_data(digest.algorithm(), digest.hex());
        let revision = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
        // Its own files are written below, after `pass` was read.
        let mut refs = vec![Reference {
            digest: digest.clone(),
            paths: vec![blob.clone(), revision.clone()],
            verified: true,
        }];
        if !self.options.validation_disabled {
            refs.extend(self.required_references(repo, parsed));
        }
        let mut pass = pass;
        // Bounded: each round only repeats when a sweeper removed this very manifest.
        for _ in 0..3 {
            if self.stat_blob_data(digest).await? != Some(body.len() as u64) {
                self.put_small(&blob, body.clone()).await?;
            }
            self.write_link(&revision, digest).await?;
            let missing = self.settle_references(pass, &refs).await?;
            if missing.is_empty() {
                return Ok(());
            }
            if let Some(gone) = missing.iter().find(|d| *d != digest) {
                let _ = self.driver.delete(revision.trim_end_matches("/link")).await;
                return Err(RegistryError::ManifestBlobUnknown(gone.clone()));
            }
            pass = self.gc_pass_state().await?;
            // Checked before this reading: checked again after the next writes.
            for r in refs.iter_mut().skip(1) {
                r.verified = false;
            }
        }
        Err(RegistryError::Unavailable(format!(
            "{digest} was collected while it was pushed; retry"
        )))
    }

    /// What a manifest needs stored to be served: the blobs `check_references` required, and
    /// the index children it required, each by its files.
    fn required_references(
        &self,
        repo: &RepositoryName,
        m: &Manifest,
    ) -> Vec<crate::registry::gc_guard::Reference> {
        use crate::registry::gc_guard::Reference;
        let mut refs = Vec::new();
        for d in m.config.iter().chain(&m.layers) {
            let required = match url_rule(&m.media_type, &d.media_type) {
                UrlRule::Ignored => true,
                UrlRule::Foreign => false,
                UrlRule::Checked { distributable } => distributable || d.urls.is_empty(),
            };
            if required {
                refs.push(Reference {
                    digest: d.digest.clone(),
                    paths: vec![layout::blob_data(d.digest.algorithm(), d.digest.hex())],
                    // `check_references` found the data in storage after the first reading,
                    // or a cache that vouches for stored data did, else a cache answered.
                    verified: self.cache.as_ref().is_none_or(|c| c.vouches_for_data()),
                });
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
            if required {
                let (alg, hex) = (child.digest.algorithm(), child.digest.hex());
                refs.push(Reference {
                    digest: child.digest.clone(),
                    paths: vec![
                        layout::blob_data(alg, hex),
                        layout::revision_link(repo.as_str(), alg, hex),
                    ],
                    verified: false,
                });
            }
        }
        refs
    }

    /// Points `tag` at `digest`, recording it in the tag's history first.
    pub(super) async fn tag_manifest(
        &self,
        repo: &RepositoryName,
        tag: &Tag,
        digest: &Digest,
    ) -> Result<()> {
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
            let must_be_present = match url_rule(&m.media_type, &d.media_type) {
                UrlRule::Ignored => true,
                UrlRule::Foreign => {
                    if d.urls.is_empty() {
                        return Err(RegistryError::ManifestInvalid(format!(
                            "foreign layer {} has no urls",
                            d.digest
                        )));
                    }
                    self.check_urls(&d.urls)?;
                    false
                }
                UrlRule::Checked { distributable } => {
                    self.check_urls(&d.urls)?;
                    distributable || d.urls.is_empty()
                }
            };
            if !must_be_present {
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
        for url in urls {
            if !url_admitted(url, &self.options.urls_allow, &self.options.urls_deny) {
                let shown: String = url.chars().take(200).collect();
                return Err(RegistryError::ManifestInvalid(format!(
                    "layer URL not allowed by validation.manifests.urls: {shown}"
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
        // The link was just read: the repository holds this digest, whose bytes never change.
        let digest = self.resolve_manifest(repo, reference).await?;
        if let Some(cached) = self.manifests.get(&digest) {
            return Ok(cached);
        }
        let stored = self.read_manifest(&digest).await?;
        self.manifests.insert(&stored);
        Ok(stored)
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
        let media_type = manifest_format::detect_media_type(&body).ok_or_else(|| {
            RegistryError::ManifestUnknown(format!("{digest}: unrecognised content"))
        })?;
        Ok(StoredManifest {
            digest: digest.clone(),
            media_type,
            body,
        })
    }

    /// Deletes by digest (the revision and every tag on it) or by tag (the tag only); returns
    /// the tags removed.
    pub async fn delete_manifest(
        &self,
        repo: &RepositoryName,
        reference: &ManifestReference,
    ) -> Result<Vec<String>> {
        self.check_delete()?;
        match reference {
            ManifestReference::Tag(tag) => {
                match self
                    .driver
                    .delete(&layout::tag_dir(repo.as_str(), tag.as_str()))
                    .await
                {
                    Ok(()) => Ok(vec![tag.as_str().to_string()]),
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
                let mut untagged = Vec::new();
                for (tag, current) in lookups {
                    if current?.as_ref() == Some(digest) {
                        match self
                            .driver
                            .delete(&layout::tag_dir(repo.as_str(), &tag))
                            .await
                        {
                            Ok(()) => untagged.push(tag),
                            Err(e) if e.is_not_found() => {}
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                let link = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
                match self.driver.delete(link.trim_end_matches("/link")).await {
                    Ok(()) => Ok(untagged),
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
    fn admits_urls_as_registry2_does() {
        let re = |p: &[&str]| -> Vec<regex::Regex> {
            p.iter().map(|p| regex::Regex::new(p).unwrap()).collect()
        };
        let url = "https://layers.example.com/a.tar.gz";
        // Nothing configured: nothing admitted.
        assert!(!url_admitted(url, &[], &[]));
        // Allow only.
        let allow = re(&["^https?://([^/]+\\.)*example\\.com/"]);
        assert!(url_admitted(url, &allow, &[]));
        assert!(!url_admitted("https://elsewhere.org/a", &allow, &[]));
        // Allow and deny.
        let deny = re(&["^https?://layers\\.example\\.com/secret"]);
        assert!(url_admitted(url, &allow, &deny));
        assert!(!url_admitted(
            "https://layers.example.com/secret/x",
            &allow,
            &deny
        ));
        // Deny only: what deny does not match passes (registry:2 sets no allow pattern then).
        assert!(url_admitted("https://elsewhere.org/a", &[], &deny));
        // Never: other schemes, fragments, no host, spaces.
        let any = re(&[""]);
        for bad in [
            "ftp://example.com/a",
            "https://example.com/a#frag",
            "https:///a",
            "https://exa mple.com/a",
            "example.com/a",
            "file:///etc/passwd",
        ] {
            assert!(!url_admitted(bad, &any, &[]), "{bad}");
        }
        assert!(url_admitted("HTTP://example.com/a", &any, &[]));
    }

    #[test]
    fn url_rules_follow_the_manifest_type() {
        use crate::registry::manifest_format::{DOCKER_MANIFEST, OCI_MANIFEST};
        let foreign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
        let nondist = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
        let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(url_rule(DOCKER_MANIFEST, foreign), UrlRule::Foreign);
        assert_eq!(url_rule(OCI_MANIFEST, foreign), UrlRule::Ignored);
        assert_eq!(
            url_rule(OCI_MANIFEST, nondist),
            UrlRule::Checked {
                distributable: false
            }
        );
        assert_eq!(
            url_rule(OCI_MANIFEST, gzip),
            UrlRule::Checked {
                distributable: true
            }
        );
        assert_eq!(url_rule(DOCKER_MANIFEST, nondist), UrlRule::Ignored);
        assert_eq!(
            url_rule(OCI_MANIFEST, "application/vnd.example+json"),
            UrlRule::Ignored
        );
    }

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
