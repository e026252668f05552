//! Manifest bodies by digest, in memory. A digest names its bytes forever, so an entry never
//! goes stale; whether a repository still holds the manifest is not cached: callers read the
//! repository's link first on every request, so a delete on any node takes effect at once.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::digest::Digest;
use crate::registry::manifest_store::StoredManifest;

/// Bodies larger than this are read from storage every time.
const MAX_ENTRY: usize = 256 << 10;

/// A bounded map from digest to manifest, evicting the oldest entries first.
pub(crate) struct ManifestCache {
    inner: Mutex<Entries>,
    max_bytes: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<Digest, StoredManifest>,
    /// Insertion order, for eviction.
    order: VecDeque<Digest>,
    bytes: usize,
}

impl ManifestCache {
    /// A cache holding at most `max_bytes` of manifest bodies.
    pub(crate) fn new(max_bytes: usize) -> Self {
        Self {
            inner: Mutex::default(),
            max_bytes,
        }
    }

    /// The manifest with this digest, if cached.
    pub(crate) fn get(&self, digest: &Digest) -> Option<StoredManifest> {
        let entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        entries.map.get(digest).cloned()
    }

    /// Keeps `manifest` (when small enough), evicting the oldest entries to stay in bounds.
    pub(crate) fn insert(&self, manifest: &StoredManifest) {
        let size = manifest.body.len();
        if size > MAX_ENTRY || size > self.max_bytes {
            return;
        }
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if entries.map.contains_key(&manifest.digest) {
            return;
        }
        while entries.bytes + size > self.max_bytes {
            let Some(oldest) = entries.order.pop_front() else {
                break;
            };
            if let Some(gone) = entries.map.remove(&oldest) {
                entries.bytes -= gone.body.len();
            }
        }
        entries.bytes += size;
        entries.order.push_back(manifest.digest.clone());
        entries
            .map
            .insert(manifest.digest.clone(), manifest.clone());
    }

    /// Forgets a manifest whose bytes were removed from storage.
    pub(crate) fn remove(&self, digest: &Digest) {
        let mut entries = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(gone) = entries.map.remove(digest) {
            entries.bytes -= gone.body.len();
            entries.order.retain(|d| d != digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn manifest(n: u8, len: usize) -> StoredManifest {
        let body = Bytes::from(vec![n; len]);
        StoredManifest {
            digest: Digest::of(&body),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            body,
        }
    }

    #[test]
    fn stays_within_its_bytes_evicting_the_oldest() {
        let cache = ManifestCache::new(3000);
        let (a, b, c) = (manifest(1, 1000), manifest(2, 1000), manifest(3, 1500));
        cache.insert(&a);
        cache.insert(&b);
        cache.insert(&a);
        assert!(cache.get(&a.digest).is_some() && cache.get(&b.digest).is_some());
        cache.insert(&c);
        assert!(cache.get(&a.digest).is_none(), "the oldest goes first");
        assert_eq!(cache.get(&b.digest).unwrap().body, b.body);
        assert_eq!(cache.get(&c.digest).unwrap().body, c.body);
        cache.remove(&b.digest);
        assert!(cache.get(&b.digest).is_none());
        let entries = cache.inner.lock().unwrap();
        assert_eq!(entries.bytes, 1500);
        assert_eq!(entries.order.len(), 1);
        drop(entries);
        // Too big to keep.
        let big = manifest(4, MAX_ENTRY + 1);
        cache.insert(&big);
        assert!(cache.get(&big.digest).is_none());
    }
}
