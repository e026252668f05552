//! Keeps a node's in-memory blob-descriptor cache in step with the cluster's collections: the
//! pass marker is read every [`CACHE_VIEW_REFRESH`] and each reading is handed to the cache's
//! [`CacheValidity`]. The collector's half: it deletes no blob until
//! [`CACHE_VIEW_MAX_AGE`] (and a margin) after writing the running marker, so every node that
//! still answers from its cache by then has read that marker and emptied its cache.

use std::sync::Arc;
use std::time::Instant;

use crate::cache::validity::CacheValidity;
use crate::registry::gc_guard::{CACHE_VIEW_MAX_AGE, CACHE_VIEW_REFRESH};
use crate::registry::Registry;

/// Reads the pass marker until dropped; a failed read leaves the last reading to age out.
pub async fn watch<R>(owner: Arc<R>, validity: Arc<CacheValidity>)
where
    R: AsRef<Registry> + Send + Sync + 'static,
{
    let registry: &Registry = (*owner).as_ref();
    debug_assert!(CACHE_VIEW_REFRESH < CACHE_VIEW_MAX_AGE);
    loop {
        let started = Instant::now();
        match registry.gc_pass_state().await {
            // Every pass start and end is a new epoch: entries made before it are dropped.
            Ok(pass) => validity.observe(
                started,
                pass.generation * 2 + u64::from(pass.running),
                !pass.running,
            ),
            Err(e) => tracing::debug!(error = %e, "cannot read the garbage collection marker"),
        }
        tokio::time::sleep(CACHE_VIEW_REFRESH).await;
    }
}
