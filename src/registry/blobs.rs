//! Blobs as seen through a repository: a `_layers` link plus shared data.

use crate::cache::Descriptor;
use crate::digest::Digest;
use crate::registry::error::{RegistryError, Result};
use crate::registry::layout;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;
use crate::storage::{ByteStream, FileRegion, FileWriter, StorageDriver, StorageError};

/// Size and identity of a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Content digest.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
}

impl Registry {
    /// Size of a blob's shared data, if it exists.
    pub(crate) async fn stat_blob_data(&self, digest: &Digest) -> Result<Option<u64>> {
        Ok(self
            .driver
            .size_of(&layout::blob_data(digest.algorithm(), digest.hex()))
            .await?)
    }

    /// A blob linked in `repo`: the cache when it knows, else the link file
    /// and the data's size, which then go to the cache.
    pub async fn stat_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<BlobInfo> {
        if let Some(cache) = &self.cache {
            match cache.stat_in_repo(repo.as_str(), digest).await {
                Ok(Some(d)) => {
                    return Ok(BlobInfo {
                        digest: digest.clone(),
                        size: d.size,
                    })
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(error = %e, "cache lookup failed"),
            }
        }
        let link = layout::layer_link(repo.as_str(), digest.algorithm(), digest.hex());
        if self.read_link(&link).await?.as_ref() != Some(digest) {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        let cached = match &self.cache {
            Some(cache) => cache.stat(digest).await.ok().flatten(),
            None => None,
        };
        let size = match cached {
            Some(d) => d.size,
            None => self
                .stat_blob_data(digest)
                .await?
                .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?,
        };
        self.cache_blob(Some(repo), digest, size).await;
        // A delete may have removed the link after it was read here and
        // cleared the cache before the line above filled it: look again, so
        // a deleted link is never left in a cache that serves links.
        if self.cache.as_ref().is_some_and(|c| c.tracks_links())
            && self.read_link(&link).await?.as_ref() != Some(digest)
        {
            self.uncache_link(repo, digest).await;
            return Err(RegistryError::BlobUnknown(digest.clone()));
        }
        Ok(BlobInfo {
            digest: digest.clone(),
            size,
        })
    }

    /// Forgets a cached link; a failure is remembered by the cache and
    /// replayed, else the entry expires with the cache.
    async fn uncache_link(&self, repo: &RepositoryName, digest: &Digest) {
        if let Some(cache) = &self.cache {
            if let Err(e) = cache.clear_in_repo(repo.as_str(), digest).await {
                tracing::warn!(error = %e, "could not clear the cached link; it expires with the cache");
            }
        }
    }

    /// Records a blob in the cache; failures only cost a later storage read.
    pub(crate) async fn cache_blob(
        &self,
        repo: Option<&RepositoryName>,
        digest: &Digest,
        size: u64,
    ) {
        if let Some(cache) = &self.cache {
            let desc = Descriptor {
                size,
                media_type: "application/octet-stream".into(),
            };
            if let Err(e) = cache.set(repo.map(|r| r.as_str()), digest, &desc).await {
                tracing::debug!(error = %e, "cache update failed");
            }
        }
    }

    /// Streams `len` bytes from `offset` of a blob linked in `repo`.
    pub async fn read_blob(&self, blob: &BlobInfo, offset: u64, len: u64) -> Result<ByteStream> {
        let path = layout::blob_data(blob.digest.algorithm(), blob.digest.hex());
        match self.driver.sealed_reader(&path, offset, Some(len)).await {
            Ok(s) => Ok(s),
            Err(StorageError::NotFound(_)) => Err(RegistryError::BlobUnknown(blob.digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// `len` bytes of a blob from `offset` as a region of a local file, when the storage
    /// keeps blobs in local files.
    pub async fn blob_file(
        &self,
        blob: &BlobInfo,
        offset: u64,
        len: u64,
    ) -> Result<Option<FileRegion>> {
        let path = layout::blob_data(blob.digest.algorithm(), blob.digest.hex());
        match self.driver.file_region(&path, offset, len).await {
            Ok(r) => Ok(r),
            Err(StorageError::NotFound(_)) => Err(RegistryError::BlobUnknown(blob.digest.clone())),
            Err(e) => Err(e.into()),
        }
    }

    /// Where to send a client for the blob's bytes, unless redirects are off
    /// or the backend cannot serve them directly.
    pub async fn blob_redirect(&self, blob: &BlobInfo) -> Result<Option<String>> {
        if self.options.redirect_disabled {
            return Ok(None);
        }
        let path = layout::blob_data(blob.digest.algorithm(), blob.digest.hex());
        Ok(self.driver.redirect_url(&path).await?)
    }

    /// Unlinks a blob from `repo`; the data stays until garbage collection.
    pub async fn delete_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        self.check_delete()?;
        self.stat_blob(repo, digest).await?;
        let link = layout::layer_link(repo.as_str(), digest.algorithm(), digest.hex());
        let dir = link.trim_end_matches("/link");
        // Cache before and after: a stale "linked" answer must outlive
        // neither the delete nor a read that raced with it (see `stat_blob`).
        self.uncache_link(repo, digest).await;
        let deleted = match self.driver.delete(dir).await {
            Ok(()) => Ok(()),
            Err(e) if e.is_not_found() => Err(RegistryError::BlobUnknown(digest.clone())),
            Err(e) => Err(e.into()),
        };
        self.uncache_link(repo, digest).await;
        deleted
    }

    /// Links into `repo` a blob that `from` already has; `None` when it does not.
    pub async fn mount_blob(
        &self,
        repo: &RepositoryName,
        from: &RepositoryName,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>> {
        self.check_writable()?;
        let info = match self.stat_blob(from, digest).await {
            Ok(info) => info,
            Err(RegistryError::BlobUnknown(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        self.link_blob(repo, digest).await?;
        Ok(Some(info))
    }

    /// Makes a blob part of `repo`, then checks (against storage) that its data is still
    /// there: a garbage-collection pass may have removed it since the caller looked, and a
    /// link to nothing must not be acknowledged (see `gc_guard`).
    pub(crate) async fn link_blob(&self, repo: &RepositoryName, digest: &Digest) -> Result<()> {
        let pass = self.gc_pass_state().await?;
        self.link_blob_settled(repo, digest, pass, None, false)
            .await
    }

    /// [`Self::link_blob`] for an upload: `pass` was read before the caller found the data
    /// already stored, and `spare` holds the uploaded bytes it did not publish. Should a
    /// collection have removed the data meanwhile, the spare copy is published instead of
    /// failing the upload. `verified`: the caller found or wrote the data after reading `pass`.
    pub(crate) async fn link_blob_settled(
        &self,
        repo: &RepositoryName,
        digest: &Digest,
        pass: crate::registry::gc_guard::PassState,
        mut spare: Option<SpareCopy>,
        verified: bool,
    ) -> Result<()> {
        let link = layout::layer_link(repo.as_str(), digest.algorithm(), digest.hex());
        let data = layout::blob_data(digest.algorithm(), digest.hex());
        self.write_link(&link, digest).await?;
        let mut reference = [crate::registry::gc_guard::Reference {
            digest: digest.clone(),
            paths: vec![data.clone()],
            verified,
        }];
        let mut pass = pass;
        // Bounded: a restored copy is younger than any grace period, so a second round
        // only waits out a sweeper that was already deciding.
        for _ in 0..3 {
            if self.settle_references(pass, &reference).await?.is_empty() {
                if let Some(spare) = spare.take() {
                    spare.discard().await;
                }
                return Ok(());
            }
            let Some(copy) = spare.take() else { break };
            tracing::info!(blob = %digest, "blob collected during its upload; storing the uploaded copy");
            pass = self.gc_pass_state().await?;
            copy.publish(self.driver.as_ref(), &data).await?;
            reference[0].verified = true;
            self.write_link(&link, digest).await?;
        }
        if let Some(spare) = spare {
            spare.discard().await;
        }
        let _ = self.driver.delete(link.trim_end_matches("/link")).await;
        self.uncache_link(repo, digest).await;
        Err(RegistryError::BlobUnknown(digest.clone()))
    }
}

/// Uploaded bytes of a blob that was already stored, kept unpublished until the upload's link
/// is settled with any garbage-collection pass.
pub(crate) enum SpareCopy {
    /// An atomic writer to a spare path outside the blob's directory: published by committing
    /// it and moving the file into place.
    Atomic(Box<dyn FileWriter>, String),
    /// An upload session's data: published by `commit_to` the blob's path.
    Session(Box<dyn FileWriter>),
}

impl SpareCopy {
    async fn publish(self, driver: &dyn StorageDriver, data: &str) -> Result<()> {
        match self {
            SpareCopy::Atomic(w, spare) => {
                w.commit().await?;
                driver.move_to(&spare, data).await?;
            }
            SpareCopy::Session(w) => w.commit_to(data).await?,
        }
        Ok(())
    }

    /// Drops the copy; the stored data stands.
    pub(crate) async fn discard(self) {
        let w = match self {
            SpareCopy::Atomic(w, _) | SpareCopy::Session(w) => w,
        };
        if let Err(e) = w.cancel().await {
            tracing::debug!(error = %e, "could not drop a spare upload copy");
        }
    }
}
