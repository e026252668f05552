//! A [`BlobDescriptorCache`] decorator feeding distribution's cache metrics
//! (`registry_storage_cache_{requests,hits,errors}_total`), the latency of
//! every Redis call, and a client span per Redis call for traces.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use tracing::Instrument;

use super::{BlobDescriptorCache, CacheError, Descriptor};
use crate::digest::Digest;
use crate::ops::{metrics, telemetry};

/// Wraps a cache; behaves exactly like it, plus metrics and spans.
pub struct InstrumentedCache {
    backend: &'static str,
    inner: Arc<dyn BlobDescriptorCache>,
}

impl InstrumentedCache {
    /// Instruments `inner`; `backend` is `redis` or `inmemory`.
    pub fn new(backend: &'static str, inner: Arc<dyn BlobDescriptorCache>) -> Self {
        Self { backend, inner }
    }

    /// Runs one cache call: an external call (timed, traced) when the backend
    /// is a remote one; a call skipped while it does not answer is not timed.
    async fn call<T, F>(&self, operation: &'static str, call: F) -> Result<T, CacheError>
    where
        F: Future<Output = Result<T, CacheError>>,
    {
        if self.backend != "redis" {
            return call.await;
        }
        let started = Instant::now();
        let result = call
            .instrument(telemetry::client_span("redis", operation))
            .await;
        if !matches!(result, Err(CacheError::Unavailable)) {
            metrics::external_call("redis", operation, started.elapsed(), result.is_ok());
        }
        result
    }

    /// Counts a lookup as distribution does: a request, a hit when found, an
    /// error when the cache failed.
    fn count(result: &Result<Option<Descriptor>, CacheError>) {
        match result {
            Ok(found) => metrics::cache_request(found.is_some()),
            Err(_) => {
                metrics::cache_request(false);
                metrics::cache_error();
            }
        }
    }
}

#[async_trait::async_trait]
impl BlobDescriptorCache for InstrumentedCache {
    fn tracks_links(&self) -> bool {
        self.inner.tracks_links()
    }

    fn vouches_for_data(&self) -> bool {
        self.inner.vouches_for_data()
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError> {
        let result = self.call("stat", self.inner.stat(digest)).await;
        Self::count(&result);
        result
    }

    async fn stat_in_repo(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Descriptor>, CacheError> {
        let result = self
            .call("stat_in_repo", self.inner.stat_in_repo(repo, digest))
            .await;
        Self::count(&result);
        result
    }

    async fn set(
        &self,
        repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        let result = self.call("set", self.inner.set(repo, digest, desc)).await;
        if result.is_err() {
            metrics::cache_error();
        }
        result
    }

    async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, CacheError> {
        let result = self
            .call(
                "repositories_holding",
                self.inner.repositories_holding(digest, limit),
            )
            .await;
        if result.is_err() {
            metrics::cache_error();
        }
        result
    }

    async fn clear_in_repo(&self, repo: &str, digest: &Digest) -> Result<(), CacheError> {
        let result = self
            .call("clear_in_repo", self.inner.clear_in_repo(repo, digest))
            .await;
        if result.is_err() {
            metrics::cache_error();
        }
        result
    }

    async fn clear(&self, digest: &Digest, repos: &[String]) -> Result<(), CacheError> {
        let result = self.call("clear", self.inner.clear(digest, repos)).await;
        if result.is_err() {
            metrics::cache_error();
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::memory::MemoryCache;

    fn sample(name: &str) -> f64 {
        let text = String::from_utf8(metrics::render()).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map_or(0.0, |v| v.parse().unwrap())
    }

    #[tokio::test]
    async fn counts_requests_and_hits() {
        let cache = InstrumentedCache::new("inmemory", Arc::new(MemoryCache::new(10)));
        let digest: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let (requests, hits) = (
            sample("registry_storage_cache_requests_total"),
            sample("registry_storage_cache_hits_total"),
        );
        assert_eq!(cache.stat(&digest).await.unwrap(), None);
        let desc = Descriptor {
            size: 3,
            media_type: "application/octet-stream".into(),
        };
        cache.set(None, &digest, &desc).await.unwrap();
        assert_eq!(cache.stat(&digest).await.unwrap(), Some(desc));
        // Other tests may count too: at least ours are there.
        assert!(sample("registry_storage_cache_requests_total") >= requests + 2.0);
        assert!(sample("registry_storage_cache_hits_total") > hits);
    }
}
