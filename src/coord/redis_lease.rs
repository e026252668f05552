//! Leases in Redis: `SET key token NX PX ttl` to take, a compare-and-extend script to renew,
//! a compare-and-delete script to release. Expiry is Redis's own clock, so nodes' clocks do
//! not matter. Every call has a deadline.

use std::time::Duration;

use deadpool_redis::redis::{self, AsyncCommands};
use deadpool_redis::{Config as PoolConfig, Pool, PoolConfig as PoolSize, Runtime, Timeouts};

use crate::config::RedisConfig;
use crate::coord::lease::{now_ms, LeaseBackend, LeaseError, LeaseRecord};

/// Extends the key's expiry only while it still holds our record's token.
const RENEW: &str = r"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0";

/// Deletes the key only while it still holds our record's token.
const RELEASE: &str = r"
local v = redis.call('GET', KEYS[1])
if v and cjson.decode(v)['token'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

/// Leases in Redis.
pub struct RedisLeases {
    pool: Pool,
    deadline: Duration,
}

impl RedisLeases {
    /// A small lazily connecting pool from the `redis` section.
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let url = crate::cache::redis::redis_url(cfg)?;
        let dial = cfg
            .dialtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500));
        let read = cfg
            .readtimeout
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_millis(500));
        let mut pool_cfg = PoolConfig::from_url(url);
        let mut size = PoolSize::new(4);
        size.timeouts = Timeouts {
            wait: Some(dial),
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
        })
    }

    fn key(name: &str) -> String {
        format!("wharf::lease::{name}")
    }

    async fn run<T, F, Fut>(&self, op: F) -> Result<T, LeaseError>
    where
        F: FnOnce(deadpool_redis::Connection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        tokio::time::timeout(self.deadline, async {
            let conn = self
                .pool
                .get()
                .await
                .map_err(|e| LeaseError::Redis(e.to_string()))?;
            op(conn).await.map_err(|e| LeaseError::Redis(e.to_string()))
        })
        .await
        .unwrap_or_else(|_| {
            Err(LeaseError::Redis(format!(
                "timed out after {:?}",
                self.deadline
            )))
        })
    }
}

fn ttl_ms(record: &LeaseRecord) -> u64 {
    record.expires_ms.saturating_sub(now_ms()).max(1)
}

#[async_trait::async_trait]
impl LeaseBackend for RedisLeases {
    async fn acquire(&self, name: &str, record: &LeaseRecord) -> Result<Option<u64>, LeaseError> {
        let value = serde_json::to_string(record).expect("lease record serializes");
        let key = Self::key(name);
        let ttl = ttl_ms(record);
        let set: Option<String> = self
            .run(|mut c| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(ttl)
                    .query_async(&mut *c)
                    .await
            })
            .await?;
        Ok(set.map(|_| 0))
    }

    async fn renew(
        &self,
        name: &str,
        version: u64,
        record: &LeaseRecord,
    ) -> Result<Option<u64>, LeaseError> {
        let value = serde_json::to_string(record).expect("lease record serializes");
        let key = Self::key(name);
        let token = record.token.clone();
        let ttl = ttl_ms(record);
        let renewed: i64 = self
            .run(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(RENEW)
                    .arg(1)
                    .arg(&key)
                    .arg(&token)
                    .arg(&value)
                    .arg(ttl)
                    .query_async(&mut *c)
                    .await
            })
            .await?;
        Ok((renewed == 1).then_some(version))
    }

    async fn release(
        &self,
        name: &str,
        _version: u64,
        record: &LeaseRecord,
    ) -> Result<(), LeaseError> {
        let key = Self::key(name);
        let token = record.token.clone();
        let _: i64 = self
            .run(|mut c| async move {
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(&key)
                    .arg(&token)
                    .query_async(&mut *c)
                    .await
            })
            .await?;
        Ok(())
    }

    async fn holder(&self, name: &str) -> Result<Option<LeaseRecord>, LeaseError> {
        let key = Self::key(name);
        let value: Option<String> = self.run(|mut c| async move { c.get(&key).await }).await?;
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
