//! Blob-descriptor cache: what size a blob has, and whether a repository
//! links it. Never required for correctness: every miss or failure falls
//! back to storage.

pub mod instrumented;
pub mod local_links;
pub mod memory;
pub mod redis;
pub mod redis_client;
pub mod shared_ping;
pub mod validity;

use crate::digest::Digest;

/// Cached facts about a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Size in bytes.
    pub size: u64,
    /// Media type (distribution stores `application/octet-stream` for layers).
    pub media_type: String,
}

/// A cache failure; callers log it and use storage.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend does not answer now; nothing was sent.
    #[error("cache unavailable")]
    Unavailable,
    /// The backend failed or timed out.
    #[error("cache backend: {0}")]
    Backend(String),
}

/// A store of blob descriptors, global and per repository.
#[async_trait::async_trait]
pub trait BlobDescriptorCache: Send + Sync + 'static {
    /// The descriptor of a blob, if cached.
    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError>;
    /// True when [`Self::stat_in_repo`] can answer, i.e. a cached link may be
    /// served instead of reading storage (and so must never outlive a delete).
    fn tracks_links(&self) -> bool {
        false
    }
    /// True when a size [`Self::stat`] answers proves the blob's data is stored: no entry
    /// outlives a collection that may have deleted it (see [`validity`]).
    fn vouches_for_data(&self) -> bool {
        false
    }
    /// The descriptor of a blob as linked in `repo`, if cached; `None` when the
    /// cache does not track repository links or does not know.
    async fn stat_in_repo(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Descriptor>, CacheError>;
    /// Records a blob (and its link in `repo`, when given).
    async fn set(
        &self,
        repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError>;
    /// Repositories recently seen linking a blob, at most `limit`: a hint
    /// (for anonymous mounts) to be checked against storage, never proof.
    async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, CacheError>;
    /// Forgets a repository's link to a blob.
    async fn clear_in_repo(&self, repo: &str, digest: &Digest) -> Result<(), CacheError>;
    /// Forgets a blob everywhere (after garbage collection).
    async fn clear(&self, digest: &Digest, repos: &[String]) -> Result<(), CacheError>;
}
