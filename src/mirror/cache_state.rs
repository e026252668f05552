//! What the cache remembers beside distribution's tree, in the shared storage so every node
//! sees it: when each cached tag was last checked upstream, and when fetched content expires.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::coord::lease::now_ms;
use crate::digest::Digest;
use crate::registry::reference::RepositoryName;
use crate::registry::Registry;
use crate::storage::StorageDriver;

/// Root of the cache's own records.
pub const STATE_ROOT: &str = "/wharf/mirror";
/// Most expiry records one sweep looks at.
const SWEEP_BATCH: usize = 2000;

/// What an expiry record removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A blob's link in a repository.
    Blob,
    /// A manifest revision and its tags.
    Manifest,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExpiryRecord {
    kind: Kind,
    repository: String,
    digest: String,
    expires_ms: u64,
}

/// The cache's records in the shared storage.
#[derive(Clone)]
pub struct CacheState {
    driver: Arc<dyn StorageDriver>,
}

impl CacheState {
    /// Records kept in `driver`.
    pub fn new(driver: Arc<dyn StorageDriver>) -> Self {
        Self { driver }
    }

    fn tag_path(repo: &RepositoryName, tag: &str) -> String {
        format!("{STATE_ROOT}/tagchecks/{repo}/{tag}")
    }

    fn expiry_dir() -> String {
        format!("{STATE_ROOT}/expiry")
    }

    /// True when `tag` was confirmed upstream less than `interval` ago.
    pub async fn tag_checked_within(
        &self,
        repo: &RepositoryName,
        tag: &str,
        interval: Duration,
    ) -> bool {
        if interval.is_zero() {
            return false;
        }
        let Ok(text) = self.driver.get_content(&Self::tag_path(repo, tag)).await else {
            return false;
        };
        let Some(at) = String::from_utf8_lossy(&text).trim().parse::<u64>().ok() else {
            return false;
        };
        now_ms().saturating_sub(at) < interval.as_millis() as u64
    }

    /// Records that `tag` was confirmed upstream now; a failure only costs another check.
    pub async fn tag_checked(&self, repo: &RepositoryName, tag: &str) {
        let path = Self::tag_path(repo, tag);
        if let Err(e) = self
            .driver
            .put_content(&path, Bytes::from(now_ms().to_string()))
            .await
        {
            tracing::debug!(error = %e, "could not record a tag check");
        }
    }

    /// Records that fetched content expires after `ttl`; a re-fetch moves the time on.
    pub async fn expire_later(
        &self,
        kind: Kind,
        repo: &RepositoryName,
        digest: &Digest,
        ttl: Duration,
    ) {
        let record = ExpiryRecord {
            kind,
            repository: repo.to_string(),
            digest: digest.to_string(),
            expires_ms: now_ms() + ttl.as_millis() as u64,
        };
        let key = Digest::of(format!("{kind:?}\n{repo}\n{digest}").as_bytes());
        let path = format!("{}/{}", Self::expiry_dir(), key.hex());
        let body = serde_json::to_vec(&record).unwrap_or_default();
        if let Err(e) = self.driver.put_content(&path, Bytes::from(body)).await {
            tracing::warn!(error = %e, repository = %repo, %digest, "could not record when cached content expires");
        }
    }

    /// Removes the content of expired records, then the records; stops when `still_held`
    /// turns false. Returns how many were removed.
    pub async fn sweep(
        &self,
        registry: &Registry,
        still_held: &(dyn Fn() -> bool + Sync),
    ) -> usize {
        let names = match self.driver.list(&Self::expiry_dir()).await {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return 0,
            Err(e) => {
                tracing::warn!(error = %e, "cache expiry: cannot list records");
                return 0;
            }
        };
        let now = now_ms();
        let mut removed = 0;
        for name in names.into_iter().take(SWEEP_BATCH) {
            if !still_held() {
                break;
            }
            let path = format!("{}/{name}", Self::expiry_dir());
            let Ok(raw) = self.driver.get_content(&path).await else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<ExpiryRecord>(&raw) else {
                let _ = self.driver.delete(&path).await;
                continue;
            };
            if record.expires_ms > now {
                continue;
            }
            let (Some(repo), Ok(digest)) = (
                RepositoryName::parse(&record.repository),
                record.digest.parse::<Digest>(),
            ) else {
                let _ = self.driver.delete(&path).await;
                continue;
            };
            let done = match record.kind {
                Kind::Blob => registry.expire_cached_blob(&repo, &digest).await,
                Kind::Manifest => registry.expire_cached_manifest(&repo, &digest).await,
            };
            match done {
                Ok(()) => {
                    let _ = self.driver.delete(&path).await;
                    let kind = match record.kind {
                        Kind::Blob => "blob",
                        Kind::Manifest => "manifest",
                    };
                    super::metrics::METRICS
                        .expired
                        .with_label_values(&[kind])
                        .inc();
                    tracing::info!(repository = %repo, %digest, kind, "cached content expired");
                    removed += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, repository = %repo, %digest, "cache expiry failed; retried next sweep")
                }
            }
        }
        removed
    }
}
