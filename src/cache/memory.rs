//! Bounded in-process cache (`blobdescriptor: inmemory`).
//!
//! Only the global digest -> size map is kept: blob content never changes,
//! while repository links can be removed by another node, which a
//! process-local cache would not hear about.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::cache::{BlobDescriptorCache, CacheError, Descriptor};
use crate::registry::digest::Digest;

/// Digest -> descriptor, evicting the oldest entry beyond `capacity`.
pub struct MemoryCache {
    inner: Mutex<Inner>,
    capacity: usize,
}

struct Inner {
    map: HashMap<Digest, Descriptor>,
    order: VecDeque<Digest>,
}

impl MemoryCache {
    /// A cache of at most `capacity` entries (`0`: unbounded, as distribution).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
            }),
            capacity,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait::async_trait]
impl BlobDescriptorCache for MemoryCache {
    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError> {
        Ok(self.lock().map.get(digest).cloned())
    }

    async fn stat_in_repo(
        &self,
        _repo: &str,
        _digest: &Digest,
    ) -> Result<Option<Descriptor>, CacheError> {
        Ok(None)
    }

    async fn set(
        &self,
        _repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        let mut inner = self.lock();
        if inner.map.insert(digest.clone(), desc.clone()).is_none() {
            inner.order.push_back(digest.clone());
            while self.capacity > 0 && inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
        Ok(())
    }

    async fn clear_in_repo(&self, _repo: &str, _digest: &Digest) -> Result<(), CacheError> {
        Ok(())
    }

    async fn clear(&self, digest: &Digest, _repos: &[String]) -> Result<(), CacheError> {
        let mut inner = self.lock();
        if inner.map.remove(digest).is_some() {
            inner.order.retain(|d| d != digest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stays_within_capacity() {
        let c = MemoryCache::new(2);
        let d = |i: u8| Digest::of(&[i]);
        let desc = Descriptor {
            size: 1,
            media_type: "x".into(),
        };
        for i in 0..3 {
            c.set(Some("r"), &d(i), &desc).await.unwrap();
        }
        assert!(c.stat(&d(0)).await.unwrap().is_none());
        assert!(c.stat(&d(2)).await.unwrap().is_some());
        c.clear(&d(2), &[]).await.unwrap();
        assert!(c.stat(&d(2)).await.unwrap().is_none());
        assert!(c.stat_in_repo("r", &d(1)).await.unwrap().is_none());
    }
}
