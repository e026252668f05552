//! Leases in Redis: `SET key token NX PX ttl` to take, a compare-and-extend script to renew,
//! a compare-and-delete script to release. Expiry is Redis's own clock, so nodes' clocks do
//! not matter. Every call has a deadline.

use std::time::{Duration, Instant};

use redis::{Cmd, Value};

use crate::cache::redis_client::{RedisClient, RedisSettings};
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

/// Leases in Redis, over the same kind of connection as the cache (one server, Sentinel,
/// Cluster, TLS), made and checked in the background.
pub struct RedisLeases {
    client: RedisClient,
    deadline: Duration,
}

impl RedisLeases {
    /// Leases over the `redis` section; connects in the background.
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let settings = RedisSettings::from_config(cfg)?;
        let deadline = settings.dial + settings.read;
        Ok(Self {
            client: RedisClient::start(settings),
            deadline,
        })
    }

    fn key(name: &str) -> String {
        format!("wharf::lease::{name}")
    }

    /// Runs one command, waiting up to the deadline for a connection (a lease call is
    /// background work, so unlike the cache it may wait for Redis to come up).
    async fn run(&self, cmd: Cmd) -> Result<Value, LeaseError> {
        let until = Instant::now() + self.deadline;
        let (generation, mut conn) = loop {
            if let Some(found) = self.client.connection() {
                break found;
            }
            if Instant::now() >= until {
                return Err(LeaseError::Redis("not connected".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        match conn.run(vec![cmd], self.deadline).await {
            Ok(mut replies) => Ok(replies.pop().unwrap_or(Value::Nil)),
            Err(e) => {
                self.client.failed(generation, &e);
                Err(LeaseError::Redis(e.to_string()))
            }
        }
    }
}

/// A reply as an integer (scripts answer 0 or 1).
fn integer(value: &Value) -> i64 {
    redis::from_redis_value_ref::<i64>(value).unwrap_or(0)
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
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(&value).arg("NX").arg("PX").arg(ttl);
        let set = self.run(cmd).await?;
        Ok((set != Value::Nil).then_some(0))
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
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RENEW)
            .arg(1)
            .arg(&key)
            .arg(&token)
            .arg(&value)
            .arg(ttl);
        let renewed = integer(&self.run(cmd).await?);
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
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(RELEASE).arg(1).arg(&key).arg(&token);
        self.run(cmd).await?;
        Ok(())
    }

    async fn holder(&self, name: &str) -> Result<Option<LeaseRecord>, LeaseError> {
        let key = Self::key(name);
        let value = self.run(redis::cmd("GET").arg(&key).clone()).await?;
        let value: Option<String> = redis::from_redis_value_ref(&value).ok().flatten();
        Ok(value.and_then(|v| serde_json::from_str(&v).ok()))
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}
