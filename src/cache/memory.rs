//! Bounded in-process cache (`blobdescriptor: inmemory`).
//!
//! Only the global digest -> size map answers lookups: blob content never
//! changes, while repository links can be removed by another node, which a
//! process-local cache would not hear about. The repositories a blob was
//! last seen in are kept too, as hints for anonymous mounts (checked against
//! storage before use).
//!
//! Given a [`CacheValidity`], sizes are answered only while it allows and the map is emptied
//! whenever its epoch changes, so that a blob another node's collector deletes is never
//! answered from here (see `validity`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use std::sync::Arc;

use crate::cache::validity::CacheValidity;
use crate::cache::{BlobDescriptorCache, CacheError, Descriptor};
use crate::digest::Digest;

/// Digest -> descriptor, evicting the oldest entry beyond `capacity`.
pub struct MemoryCache {
    inner: Mutex<Inner>,
    capacity: usize,
    validity: Option<Arc<CacheValidity>>,
}

struct Inner {
    map: HashMap<Digest, Descriptor>,
    order: VecDeque<Digest>,
    /// Repositories the blob was last seen in, newest last.
    holders: HashMap<Digest, Vec<String>>,
    /// The validity epoch the map's entries were made in.
    epoch: u64,
}

/// Repositories remembered per blob.
const HOLDERS_PER_BLOB: usize = 8;

impl MemoryCache {
    /// A cache of at most `capacity` entries (`0`: unbounded, as distribution).
    pub fn new(capacity: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                holders: HashMap::new(),
                epoch: 0,
            }),
            capacity,
            validity: None,
        }
    }

    /// Answers sizes only while `validity` allows.
    pub fn with_validity(mut self, validity: Arc<CacheValidity>) -> Self {
        self.validity = Some(validity);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The map locked, or `None` when it must not be used now; emptied first when the epoch
    /// changed since its entries were made.
    fn usable_map(&self) -> (std::sync::MutexGuard<'_, Inner>, bool) {
        let mut inner = self.lock();
        let Some(validity) = &self.validity else {
            return (inner, true);
        };
        match validity.current() {
            Some(epoch) => {
                if inner.epoch != epoch {
                    inner.map.clear();
                    inner.order.clear();
                    inner.epoch = epoch;
                }
                (inner, true)
            }
            None => (inner, false),
        }
    }
}

#[async_trait::async_trait]
impl BlobDescriptorCache for MemoryCache {
    // Only when it stops answering for collections (see `validity`).
    fn vouches_for_data(&self) -> bool {
        self.validity.is_some()
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError> {
        let (inner, usable) = self.usable_map();
        Ok(if usable {
            inner.map.get(digest).cloned()
        } else {
            None
        })
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
        repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        let (mut inner, usable) = self.usable_map();
        // Every HEAD of a stored blob sets what is already here: that costs no allocation.
        let changed = usable && inner.map.get(digest) != Some(desc);
        if changed && inner.map.insert(digest.clone(), desc.clone()).is_none() {
            inner.order.push_back(digest.clone());
            while self.capacity > 0 && inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                    inner.holders.remove(&old);
                }
            }
        }
        if let Some(repo) = repo {
            let newest = inner
                .holders
                .get(digest)
                .and_then(|h| h.last())
                .is_some_and(|r| r == repo);
            if !newest {
                let holders = inner.holders.entry(digest.clone()).or_default();
                holders.retain(|r| r != repo);
                holders.push(repo.to_string());
                if holders.len() > HOLDERS_PER_BLOB {
                    holders.remove(0);
                }
            }
        }
        Ok(())
    }

    async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, CacheError> {
        let inner = self.lock();
        Ok(inner
            .holders
            .get(digest)
            .map_or_else(Vec::new, |h| h.iter().rev().take(limit).cloned().collect()))
    }

    async fn clear_in_repo(&self, repo: &str, digest: &Digest) -> Result<(), CacheError> {
        let mut inner = self.lock();
        if let Some(holders) = inner.holders.get_mut(digest) {
            holders.retain(|r| r != repo);
        }
        Ok(())
    }

    async fn clear(&self, digest: &Digest, _repos: &[String]) -> Result<(), CacheError> {
        let mut inner = self.lock();
        inner.holders.remove(digest);
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

    #[tokio::test]
    async fn remembers_recent_holders_as_hints() {
        let c = MemoryCache::new(2);
        let d = |i: u8| Digest::of(&[i]);
        let desc = Descriptor {
            size: 1,
            media_type: "x".into(),
        };
        for i in 0..10 {
            c.set(Some(&format!("r{i}")), &d(0), &desc).await.unwrap();
        }
        c.set(Some("r3"), &d(0), &desc).await.unwrap();
        // Set again as it is: nothing moves.
        c.set(Some("r3"), &d(0), &desc).await.unwrap();
        let holders = c.repositories_holding(&d(0), 3).await.unwrap();
        assert_eq!(holders, ["r3", "r9", "r8"]);
        // A different descriptor replaces the one held.
        let bigger = Descriptor {
            size: 2,
            ..desc.clone()
        };
        c.set(Some("r3"), &d(0), &bigger).await.unwrap();
        assert_eq!(c.stat(&d(0)).await.unwrap(), Some(bigger));
        c.set(Some("r3"), &d(0), &desc).await.unwrap();
        assert_eq!(c.repositories_holding(&d(0), 100).await.unwrap().len(), 8);
        c.clear_in_repo("r3", &d(0)).await.unwrap();
        assert_eq!(c.repositories_holding(&d(0), 1).await.unwrap(), ["r9"]);
        // Evicted with the blob.
        c.set(Some("a"), &d(1), &desc).await.unwrap();
        c.set(Some("b"), &d(2), &desc).await.unwrap();
        assert!(c.repositories_holding(&d(0), 10).await.unwrap().is_empty());
        c.clear(&d(2), &[]).await.unwrap();
        assert!(c.repositories_holding(&d(2), 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn follows_its_validity() {
        let validity = Arc::new(CacheValidity::new(std::time::Duration::from_secs(60)));
        let c = MemoryCache::new(0).with_validity(validity.clone());
        let d = Digest::of(b"x");
        let desc = Descriptor {
            size: 1,
            media_type: "x".into(),
        };
        c.set(Some("r"), &d, &desc).await.unwrap();
        assert!(c.stat(&d).await.unwrap().is_none(), "no reading yet");
        validity.observe(std::time::Instant::now(), 2, true);
        c.set(Some("r"), &d, &desc).await.unwrap();
        assert_eq!(c.stat(&d).await.unwrap(), Some(desc.clone()));
        validity.observe(std::time::Instant::now(), 3, false);
        assert!(c.stat(&d).await.unwrap().is_none(), "a collection runs");
        validity.observe(std::time::Instant::now(), 4, true);
        assert!(
            c.stat(&d).await.unwrap().is_none(),
            "emptied on a new epoch"
        );
        // Hints survive: they are checked against storage before use.
        assert_eq!(c.repositories_holding(&d, 1).await.unwrap(), ["r"]);
    }
}
