//! Redis cache (`blobdescriptor: redis`) with distribution's key schema, so
//! wharf and registry:2 nodes can share one Redis:
//! `blobs::<digest>` HASH {digest, size, mediatype},
//! `repository::<name>::blobs` SET of digests,
//! `repository::<name>::blobs::<digest>` HASH {mediatype};
//! plus Wharf's own `wharf::blobs::<digest>::repositories` SET, the
//! repositories a blob was seen linked in (hints for anonymous mounts;
//! registry:2 neither reads nor updates it, so it may hold stale names).
//!
//! Redis is optional for correctness, so it must never make a request slow:
//! every call has a deadline, and after a failure the cache is skipped for a
//! back-off period (doubling up to 30 s) during which only one request at a
//! time probes whether Redis is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Config as PoolConfig, Pool, PoolConfig as PoolSize, Runtime, Timeouts};

use crate::cache::{BlobDescriptorCache, CacheError, Descriptor};
use crate::config::RedisConfig;
use crate::registry::digest::Digest;

const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Circuit breaker state.
struct Breaker {
    /// Skip Redis until then.
    open_until: Option<Instant>,
    backoff: Duration,
}

/// Redis-backed blob descriptors.
pub struct RedisCache {
    pool: Pool,
    /// Deadline for one whole cache operation (connect included).
    deadline: Duration,
    breaker: Mutex<Breaker>,
    probing: AtomicBool,
    /// Link removals that could not reach Redis; replayed before the next
    /// operation that does, so a deleted link is never served from the cache.
    pending_clears: Mutex<Vec<(String, Digest)>>,
}

/// Bound on remembered link removals; beyond it the oldest are dropped and
/// logged (an operator should then flush the cache).
const MAX_PENDING: usize = 100_000;

pub(crate) fn redis_url(cfg: &RedisConfig) -> Result<String, String> {
    let addr =
        cfg.addresses().into_iter().next().ok_or_else(|| {
            "redis: no address configured (redis.addr or redis.addrs)".to_string()
        })?;
    let user = cfg.username.as_deref().unwrap_or("");
    let auth = match cfg.password.as_deref() {
        Some(p) if !p.is_empty() => format!(
            "{}:{}@",
            percent_encoding::utf8_percent_encode(user, percent_encoding::NON_ALPHANUMERIC),
            percent_encoding::utf8_percent_encode(p, percent_encoding::NON_ALPHANUMERIC)
        ),
        _ => String::new(),
    };
    Ok(format!("redis://{auth}{addr}/{}", cfg.db))
}

impl RedisCache {
    /// A lazily connecting pool from the `redis` section (2.8 or v3 keys).
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let url = redis_url(cfg)?;
        let max = cfg
            .maxactiveconns
            .or(cfg.poolsize)
            .or(cfg.pool.as_ref().and_then(|p| p.maxactive))
            .filter(|&n| n > 0)
            .unwrap_or(64);
        let dial = cfg
            .dialtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500));
        let read = cfg
            .readtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500));
        let mut pool_cfg = PoolConfig::from_url(url);
        let mut size = PoolSize::new(max);
        size.timeouts = Timeouts {
            wait: Some(cfg.pooltimeout.unwrap_or(dial)),
            create: Some(dial),
            recycle: Some(read),
        };
        pool_cfg.pool = Some(size);
        let pool = pool_cfg
            .create_pool(Some(Runtime::Tokio1))
            .map_err(|e| format!("redis: {e}"))?;
        Ok(Self {
            pool,
            deadline: dial + read,
            breaker: Mutex::new(Breaker {
                open_until: None,
                backoff: MIN_BACKOFF,
            }),
            probing: AtomicBool::new(false),
            pending_clears: Mutex::new(Vec::new()),
        })
    }

    /// Runs `op` unless the breaker is open; failures open it.
    async fn guarded<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let probe = {
            let breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
            match breaker.open_until {
                Some(t) if Instant::now() < t => return Err(CacheError::BackingOff),
                Some(_) => true,
                None => false,
            }
        };
        if probe && self.probing.swap(true, Ordering::AcqRel) {
            // Another request is already checking whether Redis is back.
            return Err(CacheError::BackingOff);
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.deadline, async {
            let mut conn = self
                .pool
                .get()
                .await
                .map_err(|e| CacheError::Backend(e.to_string()))?;
            self.replay_clears(&mut conn).await?;
            op(conn)
                .await
                .map_err(|e| CacheError::Backend(e.to_string()))
        })
        .await
        .unwrap_or_else(|_| {
            Err(CacheError::Backend(format!(
                "timed out after {:?}",
                self.deadline
            )))
        });
        if probe {
            self.probing.store(false, Ordering::Release);
        }
        let mut breaker = self.breaker.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(_) => {
                if breaker.open_until.take().is_some() {
                    tracing::info!("redis cache is back");
                }
                breaker.backoff = MIN_BACKOFF;
            }
            Err(e) => {
                if breaker.open_until.is_none() {
                    tracing::warn!(error = %e, elapsed = ?started.elapsed(), "redis cache failing; using storage only");
                }
                breaker.open_until = Some(Instant::now() + breaker.backoff);
                breaker.backoff = (breaker.backoff * 2).min(MAX_BACKOFF);
            }
        }
        result
    }
}

impl RedisCache {
    /// Applies link removals recorded while Redis was unreachable.
    async fn replay_clears(&self, conn: &mut deadpool_redis::Connection) -> Result<(), CacheError> {
        let pending = std::mem::take(
            &mut *self
                .pending_clears
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        if pending.is_empty() {
            return Ok(());
        }
        let mut p = redis::pipe();
        for (repo, d) in &pending {
            p.srem(repo_set_key(repo), d.to_string()).ignore();
            p.del(repo_blob_key(repo, d)).ignore();
            p.srem(holders_key(d), repo).ignore();
        }
        match p.query_async::<()>(&mut **conn).await {
            Ok(()) => {
                tracing::info!(count = pending.len(), "replayed cache removals");
                Ok(())
            }
            Err(e) => {
                self.remember_clears(pending);
                Err(CacheError::Backend(e.to_string()))
            }
        }
    }

    fn remember_clears(&self, mut items: Vec<(String, Digest)>) {
        let mut pending = self
            .pending_clears
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pending.append(&mut items);
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
            tracing::error!(
                dropped = excess,
                "too many cache removals pending; flush the redis cache once it is back"
            );
        }
    }
}

fn blob_key(d: &Digest) -> String {
    format!("blobs::{d}")
}

fn repo_set_key(repo: &str) -> String {
    format!("repository::{repo}::blobs")
}

fn repo_blob_key(repo: &str, d: &Digest) -> String {
    format!("repository::{repo}::blobs::{d}")
}

fn holders_key(d: &Digest) -> String {
    format!("wharf::blobs::{d}::repositories")
}

fn descriptor(fields: &std::collections::HashMap<String, String>) -> Option<Descriptor> {
    Some(Descriptor {
        size: fields.get("size")?.parse().ok()?,
        media_type: fields.get("mediatype").cloned().unwrap_or_default(),
    })
}

#[async_trait::async_trait]
impl BlobDescriptorCache for RedisCache {
    fn tracks_links(&self) -> bool {
        true
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError> {
        let key = blob_key(digest);
        let fields: std::collections::HashMap<String, String> = self
            .guarded(|mut c| async move { c.hgetall(key).await })
            .await?;
        Ok(descriptor(&fields))
    }

    async fn stat_in_repo(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Descriptor>, CacheError> {
        let (set, blob) = (repo_set_key(repo), blob_key(digest));
        let member = digest.to_string();
        let (is_member, fields): (bool, std::collections::HashMap<String, String>) = self
            .guarded(|mut c| async move {
                redis::pipe()
                    .sismember(set, member)
                    .hgetall(blob)
                    .query_async(&mut *c)
                    .await
            })
            .await?;
        Ok(if is_member { descriptor(&fields) } else { None })
    }

    async fn set(
        &self,
        repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        let d = digest.to_string();
        let blob = blob_key(digest);
        let size = desc.size.to_string();
        let mt = desc.media_type.clone();
        let repo_keys = repo.map(|r| (repo_set_key(r), repo_blob_key(r, digest), r.to_string()));
        let holders = holders_key(digest);
        self.guarded(|mut c| async move {
            let mut p = redis::pipe();
            p.hset_multiple(
                &blob,
                &[
                    ("digest", d.as_str()),
                    ("size", size.as_str()),
                    ("mediatype", mt.as_str()),
                ],
            )
            .ignore();
            if let Some((set, rblob, name)) = &repo_keys {
                p.sadd(set, &d).ignore();
                p.hset(rblob, "mediatype", &mt).ignore();
                p.sadd(&holders, name).ignore();
            }
            p.query_async::<()>(&mut *c).await
        })
        .await
    }

    async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, CacheError> {
        let key = holders_key(digest);
        let count = isize::try_from(limit).unwrap_or(isize::MAX);
        self.guarded(|mut c| async move { c.srandmember_multiple(key, count).await })
            .await
    }

    async fn clear_in_repo(&self, repo: &str, digest: &Digest) -> Result<(), CacheError> {
        let (set, rblob, d, holders, name) = (
            repo_set_key(repo),
            repo_blob_key(repo, digest),
            digest.to_string(),
            holders_key(digest),
            repo.to_string(),
        );
        let result = self
            .guarded(|mut c| async move {
                redis::pipe()
                    .srem(set, d)
                    .ignore()
                    .del(rblob)
                    .ignore()
                    .srem(holders, name)
                    .ignore()
                    .query_async::<()>(&mut *c)
                    .await
            })
            .await;
        if result.is_err() {
            self.remember_clears(vec![(repo.to_string(), digest.clone())]);
        }
        result
    }

    async fn clear(&self, digest: &Digest, repos: &[String]) -> Result<(), CacheError> {
        let blob = blob_key(digest);
        let d = digest.to_string();
        let repo_keys: Vec<(String, String)> = repos
            .iter()
            .map(|r| (repo_set_key(r), repo_blob_key(r, digest)))
            .collect();
        let holders = holders_key(digest);
        self.guarded(|mut c| async move {
            let mut p = redis::pipe();
            p.del(&blob).ignore();
            p.del(&holders).ignore();
            for (set, rblob) in &repo_keys {
                p.srem(set, &d).ignore();
                p.del(rblob).ignore();
            }
            p.query_async::<()>(&mut *c).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_urls_from_both_key_styles() {
        let mut cfg: RedisConfig =
            serde_yaml::from_str("addr: localhost:6379\npassword: \"p@ss\"\ndb: 2").unwrap();
        assert_eq!(redis_url(&cfg).unwrap(), "redis://:p%40ss@localhost:6379/2");
        cfg = serde_yaml::from_str("addrs: [r1:6379, r2:6379]\nusername: u\npassword: x").unwrap();
        assert_eq!(redis_url(&cfg).unwrap(), "redis://u:x@r1:6379/0");
    }
}
