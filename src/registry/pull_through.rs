//! Storing what a pull-through cache fetched: verified before anything is written, and
//! without the references a push must have (a cached manifest's blobs come later, on demand).
//! The read-only switch does not apply: filling a cache is not a client's write.

use bytes::Bytes;

use crate::digest::Digest;
use crate::registry::blobs::SpareCopy;
use crate::registry::error::{RegistryError, Result};
use crate::registry::hash_state::HashState;
use crate::registry::manifest_format::{self, MAX_MANIFEST_SIZE};
use crate::registry::reference::{RepositoryName, Tag};
use crate::registry::upload_sessions::pump;
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
    /// hash to `digest` (and number `size`, when known). With `visible_at`, the bytes are
    /// appended to that file as they arrive, so that others can read them while they come,
    /// and the file is moved into the blob's place once verified; it is left removed or empty.
    pub async fn store_fetched_blob(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        size: Option<u64>,
        body: BodyStream,
        visible_at: Option<&str>,
    ) -> Result<BlobInfo> {
        let pass = self.gc_pass_state().await?;
        let request = UploadRequest {
            range: None,
            content_length: size,
            body,
        };
        let (blob, spare) = match visible_at {
            None => self.store_verified(digest, request).await?,
            Some(path) => self.store_verified_at(path, digest, request).await?,
        };
        self.link_blob_settled(repo, digest, pass, spare).await?;
        Ok(blob)
    }

    /// Appends `body` to the new file `path`, verifies it, and moves it into the blob's place
    /// (or keeps it as the spare copy when the blob is stored already).
    async fn store_verified_at(
        &self,
        path: &str,
        digest: &Digest,
        mut body: UploadRequest,
    ) -> Result<(BlobInfo, Option<SpareCopy>)> {
        let expected = body.expected_len()?;
        let mut hasher = HashState::new(digest.kind());
        let mut writer = self.driver.writer(path, 0).await?;
        let pumped = pump(&mut body, expected, &mut hasher, Some(&mut writer)).await;
        let verified = pumped.and_then(|()| {
            let actual = hasher.digest();
            if &actual == digest {
                Ok(())
            } else {
                Err(RegistryError::DigestInvalid(format!(
                    "digest {digest} does not match the fetched content ({actual})"
                )))
            }
        });
        if let Err(e) = verified {
            if let Err(c) = writer.cancel().await {
                tracing::debug!(error = %c, "could not drop a refused fetch");
            }
            return Err(e);
        }
        let blob = BlobInfo {
            digest: digest.clone(),
            size: hasher.len(),
        };
        if self.stat_blob_data(digest).await?.is_some() {
            return Ok((blob, Some(SpareCopy::Session(writer))));
        }
        writer
            .commit_to(&layout::blob_data(digest.algorithm(), digest.hex()))
            .await?;
        Ok((blob, None))
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
