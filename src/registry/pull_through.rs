//! Storing what a pull-through cache fetched: verified before anything is written, and
//! without the references a push must have (a cached manifest's blobs come later, on demand).
//! The read-only switch does not apply: filling a cache is not a client's write.

use bytes::Bytes;

use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::manifest_format::{self, MAX_MANIFEST_SIZE};
use crate::registry::reference::{RepositoryName, Tag};
use crate::registry::BlobInfo;
use crate::registry::UploadRequest;
use crate::registry::{layout, BodyStream, Registry, StoredManifest};

impl Registry {
    /// Stores a fetched manifest in `repo`, tagged `tag` if given. Its digest is computed
    /// with `expected`'s algorithm (or sha256) and must equal `expected` when given.
    pub async fn cache_manifest(
        &self,
        repo: &RepositoryName,
        tag: Option<&Tag>,
        expected: Option<&Digest>,
        body: Bytes,
    ) -> Result<StoredManifest> {
        if body.len() > MAX_MANIFEST_SIZE {
            return Err(RegistryError::ManifestInvalid(format!(
                "manifest is {} bytes, the limit is {MAX_MANIFEST_SIZE}",
                body.len()
            )));
        }
        let digest = match expected {
            Some(e) => Digest::of_with(e.kind(), &body),
            None => Digest::of(&body),
        };
        if let Some(e) = expected.filter(|e| **e != digest) {
            return Err(RegistryError::DigestInvalid(format!(
                "manifest digest {digest} does not match {e}"
            )));
        }
        let media_type = manifest_format::detect_media_type(&body).ok_or_else(|| {
            RegistryError::ManifestInvalid("not a manifest of a known media type".into())
        })?;
        let data = layout::blob_data(digest.algorithm(), digest.hex());
        if self.stat_blob_data(&digest).await? != Some(body.len() as u64) {
            self.put_small(&data, body.clone()).await?;
        }
        let revision = layout::revision_link(repo.as_str(), digest.algorithm(), digest.hex());
        self.write_link(&revision, &digest).await?;
        if let Some(tag) = tag {
            self.tag_manifest(repo, tag, &digest).await?;
        }
        Ok(StoredManifest {
            digest,
            media_type,
            body,
        })
    }

    /// Streams a fetched blob into storage and links it in `repo`; stored only when the bytes
    /// hash to `digest` (and number `size`, when known).
    pub async fn store_fetched_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: Option<u64>,
        body: BodyStream,
    ) -> Result<BlobInfo> {
        let pass = self.gc_pass_before().await?;
        let request = UploadRequest {
            range: None,
            content_length: size,
            body,
        };
        let (blob, spare) = self.store_verified(digest, request).await?;
        self.link_blob_settled(repo, digest, pass, spare, true)
            .await?;
        Ok(blob)
    }

    /// Links into `repo` a blob whose data is already stored (fetched for another
    /// repository); `None` when it is not.
    pub async fn link_stored_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        let Some(size) = self.stat_blob_data(digest).await? else {
            return Ok(None);
        };
        match self.link_blob(repo, digest).await {
            Ok(()) => Ok(Some(BlobInfo {
                digest: digest.clone(),
                size,
            })),
            // Collected meanwhile: fetch it again.
            Err(RegistryError::BlobUnknown(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes an expired blob's link from `repo`; its data goes with garbage collection.
    pub async fn expire_cached_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let link = layout::layer_link(repo.as_str(), digest.algorithm(), digest.hex());
        match self.driver.delete(link.trim_end_matches("/link")).await {
            Ok(()) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if let Some(cache) = &self.cache {
            let _ = cache.clear_in_repo(repo.as_str(), digest).await;
        }
        Ok(())
    }

    /// Removes an expired manifest's revision from `repo` and the tags pointing at it.
    pub async fn expire_cached_manifest(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
    ) -> Result<()> {
        for tag in self.list_or_empty(&layout::tags_dir(repo.as_str())).await? {
            let current = self
                .read_link(&layout::tag_current_link(repo.as_str(), &tag))
                .await?;
            if current.as_ref() == Some(digest) {
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
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
