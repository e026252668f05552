//! Running online garbage-collection passes under the cluster-wide `gc` lease: when one is
//! due, on whichever node takes the lease; counted, timed and logged once per pass.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::coord::lease::{now_ms, HeldLease, Lease, LeaseBackend};
use crate::coord::redis_lease::RedisLeases;
use crate::coord::storage_lease::StorageLeases;
use crate::registry::gc_online::{OnlineOptions, OnlineReport, PassFence};
use crate::registry::Registry;
use crate::storage::StorageDriver;

/// Name of the collector's lease.
pub const GC_LEASE: &str = "gc";

impl PassFence for HeldLease {
    fn is_held(&self) -> bool {
        HeldLease::is_held(self)
    }

    fn expires_ms(&self) -> u64 {
        HeldLease::expires_ms(self)
    }
}

/// Where the cluster's leases live: Redis when a `redis` section is configured, else the
/// shared storage.
pub fn lease_backend(
    config: &Config,
    driver: Arc<dyn StorageDriver>,
) -> Result<Arc<dyn LeaseBackend>, String> {
    Ok(match &config.redis {
        Some(redis) if !redis.addresses().is_empty() => Arc::new(RedisLeases::new(redis)?),
        _ => Arc::new(StorageLeases::new(driver)),
    })
}

/// Pass options from the `gc` section; with an in-memory blob-descriptor cache (the nodes of a
/// cluster share their cache setting), passes wait for nodes' caches before deleting.
pub fn options(config: &Config) -> OnlineOptions {
    let gc = &config.gc;
    let in_memory = matches!(
        config.storage.cache.blobdescriptor,
        Some(crate::config::BlobDescriptorCache::Inmemory)
    );
    OnlineOptions {
        grace: gc.graceperiod,
        delete_untagged: gc.deleteuntagged,
        dry_run: gc.dryrun,
        wait_for_memory_caches: in_memory,
    }
}

/// Why a pass did not run or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Another node holds the lease.
    #[error("another node is collecting (lease held by {0})")]
    Busy(String),
    /// The lease backend failed.
    #[error(transparent)]
    Lease(#[from] crate::coord::LeaseError),
    /// The pass stopped (storage, cache, or the lease lost mid-pass) after doing what its
    /// report counts.
    #[error("{source} (before it stopped, the pass deleted {} blobs, {} bytes and {} manifests)",
        report.blobs_deleted, report.bytes_deleted, report.manifests_deleted)]
    Stopped {
        /// What the pass did before it stopped.
        report: Box<OnlineReport>,
        /// Why it stopped.
        source: crate::registry::error::RegistryError,
    },
}

/// Takes the lease and runs one pass; the lease is released when it ends.
pub async fn run_pass(
    registry: &Registry,
    lease: &Lease,
    opts: &OnlineOptions,
) -> Result<OnlineReport, PassError> {
    let Some(held) = lease.try_acquire().await? else {
        let holder = lease
            .holder()
            .await
            .ok()
            .flatten()
            .map_or_else(|| "unknown".to_string(), |r| r.holder);
        return Err(PassError::Busy(holder));
    };
    let result = run_fenced(registry, &held, opts).await;
    held.release().await;
    result
}

/// One pass while `fence` holds the lease, with its metrics, log line and `/debug/vars`
/// entry. A pass that stops counts as `lost_lease` when the fence no longer holds, else as
/// `failure`; what it deleted before counts in the metrics and its log line either way.
pub async fn run_fenced(
    registry: &Registry,
    fence: &dyn PassFence,
    opts: &OnlineOptions,
) -> Result<OnlineReport, PassError> {
    let started = Instant::now();
    let (r, outcome) = registry.collect_online(opts, fence).await;
    let elapsed = started.elapsed();
    let result = match &outcome {
        Ok(()) => "success",
        Err(_) if fence.is_held() => "failure",
        Err(_) => "lost_lease",
    };
    crate::ops::gc_metrics::pass(
        result,
        elapsed,
        r.blobs_deleted,
        r.bytes_deleted,
        r.manifests_deleted,
        r.dry_run,
    );
    let error = outcome.as_ref().err().map(ToString::to_string);
    macro_rules! pass_line {
        ($level:ident, $message:literal) => {
            tracing::$level!(
                result,
                error = error.as_deref().unwrap_or(""),
                generation = r.generation,
                repositories = r.repositories,
                marked = r.marked,
                blobs_deleted = r.blobs_deleted,
                bytes_deleted = r.bytes_deleted,
                manifests_deleted = r.manifests_deleted,
                kept_young = r.kept_young,
                kept_touched = r.kept_touched,
                dry_run = r.dry_run,
                elapsed_ms = elapsed.as_millis() as u64,
                $message
            )
        };
    }
    if outcome.is_ok() {
        pass_line!(info, "garbage collection pass done");
    } else {
        pass_line!(warn, "garbage collection pass stopped");
    }
    crate::ops::cluster_status::gc_pass(serde_json::json!({
        "result": result, "ended_ms": now_ms(), "report": r, "error": error,
    }));
    match outcome {
        Ok(()) => Ok(r),
        Err(source) => Err(PassError::Stopped {
            report: Box::new(r),
            source,
        }),
    }
}

/// Runs passes until dropped: every node checks now and then whether a pass is due (the pass
/// marker's start is older than `interval`) and, if so, tries to take the lease; the node that
/// gets it re-reads the marker (another may just have finished) and collects. Dropped mid-pass
/// (at shutdown), it leaves what a killed collector leaves, which the next pass finishes.
pub async fn run<R>(owner: Arc<R>, lease: Lease, opts: OnlineOptions, interval: Duration)
where
    R: AsRef<Registry> + Send + Sync + 'static,
{
    let interval = interval.max(Duration::from_secs(1));
    let tick = (interval / 10).clamp(Duration::from_millis(500), Duration::from_secs(30));
    {
        let registry: &Registry = (*owner).as_ref();
        loop {
            let jitter =
                Duration::from_millis(rand::random::<u64>() % (tick.as_millis() as u64 / 2 + 1));
            tokio::time::sleep(tick + jitter).await;
            if let Ok(Some(r)) = lease.holder().await {
                crate::ops::cluster_status::gc_lease_holder(Some(&r.holder));
            } else {
                crate::ops::cluster_status::gc_lease_holder(None);
            }
            match due(registry, interval).await {
                Ok(false) => continue,
                Ok(true) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read the garbage collection marker");
                    continue;
                }
            }
            let held = match lease.try_acquire().await {
                Ok(Some(held)) => held,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot take the garbage collection lease");
                    continue;
                }
            };
            // Another node may have finished a pass between the check and the lease.
            if matches!(due(registry, interval).await, Ok(true)) {
                let _ = run_fenced(registry, &held, &opts).await;
            }
            held.release().await;
        }
    }
}

/// True when the last pass started `interval` ago or more (or never ran).
async fn due(
    registry: &Registry,
    interval: Duration,
) -> Result<bool, crate::registry::error::RegistryError> {
    let pass = registry.gc_pass_state().await?;
    Ok(now_ms().saturating_sub(pass.started_ms) >= interval.as_millis() as u64)
}
