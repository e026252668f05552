//! Redis cache (`blobdescriptor: redis`) with distribution's key schema, so
//! wharf and registry:2 nodes can share one Redis:
//! `blobs::<digest>` HASH {digest, size, mediatype},
//! `repository::<name>::blobs` SET of digests,
//! `repository::<name>::blobs::<digest>` HASH {mediatype};
//! plus Wharf's own `wharf::blobs::<digest>::repositories` SET, the
//! repositories a blob was seen linked in (hints for anonymous mounts;
//! registry:2 neither reads nor updates it, so it may hold stale names).
//!
//! Links read on the tracked connection are also held in the process ([`LocalLinks`]) until
//! Redis reports a change of a key they were read from. Serving one waits for a `PING` on that
//! connection sent after the request arrived ([`SharedPing`]), so a delete answered on any node
//! before is never served; concurrent HEADs share that round trip instead of each reading the
//! link again.
//!
//! Redis is optional for correctness, so it must never make a request slow:
//! connections are made and checked off the request path (see
//! [`crate::cache::redis_client`]), every call has a deadline, and while Redis
//! does not answer the cache is skipped without sending anything.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use redis::{Cmd, Value};

use crate::cache::local_links::LocalLinks;
use crate::cache::redis_client::{Connection, Invalidations, RedisClient, RedisSettings};
use crate::cache::shared_ping::SharedPing;
use crate::cache::{BlobDescriptorCache, CacheError, Descriptor};
use crate::config::RedisConfig;
use crate::digest::Digest;

/// Redis-backed blob descriptors.
pub struct RedisCache {
    backend: Arc<Backend>,
}

/// The connection, and what must reach Redis before anything else does.
struct Backend {
    client: RedisClient,
    /// Deadline for one cache operation.
    deadline: Duration,
    /// Link removals that could not reach Redis; replayed before the next
    /// operation that does, and by a background task as soon as Redis answers, so a deleted
    /// link is never served from the cache, here or by another node.
    pending_clears: Mutex<Vec<(String, Digest)>>,
    /// Whether the background replay runs.
    replaying: AtomicBool,
    /// Links read on the tracked connection, until Redis says they changed.
    local: Arc<LocalLinks>,
    /// `PING`s on the tracked connection, which order a held link after the changes before it.
    current: Arc<SharedPing>,
}

/// Applies Redis's invalidation messages to the links held in the process.
struct KeyInvalidations {
    local: Arc<LocalLinks>,
}

/// What a key read on the tracked connection holds.
#[derive(Debug, PartialEq, Eq)]
enum TrackedKey {
    /// `blobs::<digest>`: a blob's descriptor.
    Blob(Digest),
    /// `repository::<name>::blobs`: the digests a repository links.
    Repository(String),
}

impl TrackedKey {
    fn parse(key: &[u8]) -> Option<Self> {
        let key = std::str::from_utf8(key).ok()?;
        if let Some(digest) = key.strip_prefix("blobs::") {
            return digest.parse().ok().map(TrackedKey::Blob);
        }
        key.strip_prefix("repository::")?
            .strip_suffix("::blobs")
            .map(|repo| TrackedKey::Repository(repo.to_string()))
    }
}

impl Invalidations for KeyInvalidations {
    fn changed(&self, keys: Option<Vec<Vec<u8>>>) {
        let Some(keys) = keys else {
            self.local.forget_all();
            return;
        };
        for key in keys {
            match TrackedKey::parse(&key) {
                Some(TrackedKey::Blob(digest)) => self.local.forget_blob(&digest),
                Some(TrackedKey::Repository(repo)) => self.local.forget_repo(&repo),
                // Not a key links are read from: forget everything rather than guess.
                None => self.local.forget_all(),
            }
        }
    }

    fn lost(&self, generation: u64) {
        self.local.lost(generation);
    }
}

/// Bound on remembered link removals; beyond it the oldest are dropped and
/// logged (an operator should then flush the cache).
const MAX_PENDING: usize = 100_000;

/// How often the background replay looks for a connection.
const REPLAY_INTERVAL: Duration = Duration::from_millis(250);

impl RedisCache {
    /// A cache over the `redis` section (2.8 or 3.x keys: one server,
    /// Sentinel or Cluster, TLS); connects in the background.
    pub fn new(cfg: &RedisConfig) -> Result<Self, String> {
        let settings = RedisSettings::from_config(cfg)?;
        let deadline = settings.read;
        let local = Arc::new(LocalLinks::default());
        let invalidations = Arc::new(KeyInvalidations {
            local: local.clone(),
        });
        Ok(Self {
            backend: Arc::new(Backend {
                client: RedisClient::start_tracking(settings, invalidations),
                deadline,
                pending_clears: Mutex::new(Vec::new()),
                replaying: AtomicBool::new(false),
                local,
                current: Arc::new(SharedPing::default()),
            }),
        })
    }

    async fn run(&self, cmds: Vec<Cmd>) -> Result<Vec<Value>, CacheError> {
        self.backend.run(cmds).await
    }

    /// The link of `digest` in `repo` when held in the process and no change made before this
    /// call has been reported for it since.
    async fn held_link(&self, repo: &str, digest: &Digest) -> Option<Descriptor> {
        let backend = &self.backend;
        let generation = backend.client.tracked_generation()?;
        backend.local.get(generation, repo, digest)?;
        let pinger = Arc::downgrade(backend);
        let ping = move || ping_tracked(pinger.clone());
        let pinged = backend.current.after_now(backend.deadline, ping).await;
        if pinged != Some(generation) {
            return None;
        }
        backend.local.get(generation, repo, digest)
    }

    /// Whether `digest` is linked in `repo`, read on the tracked connection (and then held in
    /// the process); `None` when there is no tracked connection or a removal waits to be
    /// replayed (Redis may still list the link).
    async fn stat_in_repo_tracked(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Option<Result<Option<Descriptor>, CacheError>> {
        let backend = &self.backend;
        if !backend.pending().is_empty() {
            return None;
        }
        let (generation, conn) = backend.client.tracked()?;
        let epoch = backend.local.epoch();
        let replies = match Connection::Server(conn)
            .run(link_query(repo, digest), backend.deadline)
            .await
        {
            Ok(replies) => replies,
            Err(e) => {
                backend.client.failed(generation, &e);
                return Some(Err(CacheError::Backend(e.to_string())));
            }
        };
        let found = linked_descriptor(replies);
        if let Ok(Some(desc)) = &found {
            backend
                .local
                .insert(generation, epoch, repo, digest, desc.clone());
        }
        Some(found)
    }
}

/// One `PING` on the tracked connection; the connection's generation when answered.
async fn ping_tracked(backend: Weak<Backend>) -> Option<u64> {
    let backend = backend.upgrade()?;
    let (generation, conn) = backend.client.tracked()?;
    let mut conn = Connection::Server(conn);
    match conn.run(vec![redis::cmd("PING")], backend.deadline).await {
        Ok(_) => Some(generation),
        Err(e) => {
            backend.client.failed(generation, &e);
            None
        }
    }
}

/// The reads that say whether `repo` links `digest`, and its descriptor.
fn link_query(repo: &str, digest: &Digest) -> Vec<Cmd> {
    vec![
        redis::cmd("SISMEMBER")
            .arg(repo_set_key(repo))
            .arg(digest.to_string())
            .clone(),
        descriptor_query(digest),
    ]
}

/// The replies to [`link_query`]: the descriptor when the repository links the blob.
fn linked_descriptor(replies: Vec<Value>) -> Result<Option<Descriptor>, CacheError> {
    let mut replies = replies.into_iter();
    let is_member: bool = parse(replies.next())?;
    let found = descriptor(replies.next())?;
    Ok(found.filter(|_| is_member))
}

impl Backend {
    /// Runs `cmds` (after any pending removals) on the current connection;
    /// with none, fails at once.
    async fn run(self: &Arc<Self>, cmds: Vec<Cmd>) -> Result<Vec<Value>, CacheError> {
        let (generation, mut conn) = self.client.connection().ok_or(CacheError::Unavailable)?;
        let pending = self.take_clears();
        let replayed = pending.len();
        let mut all = clear_commands(&pending);
        all.extend(cmds);
        if all.is_empty() {
            return Ok(Vec::new());
        }
        match conn.run(all, self.deadline).await {
            Ok(mut replies) => {
                if replayed > 0 {
                    tracing::info!(count = replayed, "replayed cache removals");
                }
                Ok(replies.split_off(replayed.saturating_mul(3).min(replies.len())))
            }
            Err(e) => {
                self.remember_clears(pending);
                self.client.failed(generation, &e);
                Err(CacheError::Backend(e.to_string()))
            }
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Vec<(String, Digest)>> {
        self.pending_clears
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn take_clears(&self) -> Vec<(String, Digest)> {
        std::mem::take(&mut *self.pending())
    }

    fn remember_clears(self: &Arc<Self>, mut items: Vec<(String, Digest)>) {
        if items.is_empty() {
            return;
        }
        let mut pending = self.pending();
        pending.append(&mut items);
        if pending.len() > MAX_PENDING {
            let excess = pending.len() - MAX_PENDING;
            pending.drain(..excess);
            tracing::error!(
                dropped = excess,
                "too many cache removals pending; flush the redis cache once it is back"
            );
        }
        drop(pending);
        if !self.replaying.swap(true, Ordering::AcqRel) {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(replay_when_back(Arc::downgrade(self)));
            } else {
                self.replaying.store(false, Ordering::Release);
            }
        }
    }
}

/// Replays remembered removals as soon as Redis answers, without waiting for a request to
/// need the cache; ends when none are left or the cache is gone.
async fn replay_when_back(backend: Weak<Backend>) {
    loop {
        tokio::time::sleep(REPLAY_INTERVAL).await;
        let Some(backend) = backend.upgrade() else {
            return;
        };
        if backend.pending().is_empty() {
            backend.replaying.store(false, Ordering::Release);
            // Removals remembered between the check and the store found the task running.
            if backend.pending().is_empty() || backend.replaying.swap(true, Ordering::AcqRel) {
                return;
            }
        }
        if backend.client.connection().is_some() {
            let _ = backend.run(Vec::new()).await;
        }
    }
}

/// The three commands that forget each repository's link to a blob.
fn clear_commands(links: &[(String, Digest)]) -> Vec<Cmd> {
    let mut cmds = Vec::with_capacity(links.len() * 3);
    for (repo, d) in links {
        cmds.push(
            redis::cmd("SREM")
                .arg(repo_set_key(repo))
                .arg(d.to_string())
                .clone(),
        );
        cmds.push(redis::cmd("DEL").arg(repo_blob_key(repo, d)).clone());
        cmds.push(redis::cmd("SREM").arg(holders_key(d)).arg(repo).clone());
    }
    cmds
}

fn parse<T: redis::FromRedisValue>(value: Option<Value>) -> Result<T, CacheError> {
    redis::from_redis_value(value.unwrap_or(Value::Nil))
        .map_err(|e| CacheError::Backend(format!("unexpected reply: {e}")))
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

/// Reads the two fields a descriptor needs (`HMGET`: two values, no field names to parse).
fn descriptor_query(digest: &Digest) -> Cmd {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(blob_key(digest)).arg("size").arg("mediatype");
    cmd
}

/// The reply to [`descriptor_query`]; an entry without a readable size is no entry.
fn descriptor(reply: Option<Value>) -> Result<Option<Descriptor>, CacheError> {
    let (size, media_type): (Option<String>, Option<String>) = parse(reply)?;
    Ok(size.and_then(|s| s.parse().ok()).map(|size| Descriptor {
        size,
        media_type: media_type.unwrap_or_default(),
    }))
}

#[async_trait::async_trait]
impl BlobDescriptorCache for RedisCache {
    fn tracks_links(&self) -> bool {
        true
    }

    async fn stat(&self, digest: &Digest) -> Result<Option<Descriptor>, CacheError> {
        let replies = self.run(vec![descriptor_query(digest)]).await?;
        descriptor(replies.into_iter().next())
    }

    async fn stat_in_repo(
        &self,
        repo: &str,
        digest: &Digest,
    ) -> Result<Option<Descriptor>, CacheError> {
        if let Some(found) = self.held_link(repo, digest).await {
            return Ok(Some(found));
        }
        if let Some(result) = self.stat_in_repo_tracked(repo, digest).await {
            return result;
        }
        linked_descriptor(self.run(link_query(repo, digest)).await?)
    }

    async fn set(
        &self,
        repo: Option<&str>,
        digest: &Digest,
        desc: &Descriptor,
    ) -> Result<(), CacheError> {
        let d = digest.to_string();
        let mut cmds = vec![redis::cmd("HSET")
            .arg(blob_key(digest))
            .arg("digest")
            .arg(&d)
            .arg("size")
            .arg(desc.size)
            .arg("mediatype")
            .arg(&desc.media_type)
            .clone()];
        if let Some(repo) = repo {
            cmds.push(redis::cmd("SADD").arg(repo_set_key(repo)).arg(&d).clone());
            cmds.push(
                redis::cmd("HSET")
                    .arg(repo_blob_key(repo, digest))
                    .arg("mediatype")
                    .arg(&desc.media_type)
                    .clone(),
            );
            cmds.push(
                redis::cmd("SADD")
                    .arg(holders_key(digest))
                    .arg(repo)
                    .clone(),
            );
        }
        self.run(cmds).await.map(drop)
    }

    async fn repositories_holding(
        &self,
        digest: &Digest,
        limit: usize,
    ) -> Result<Vec<String>, CacheError> {
        let count = isize::try_from(limit).unwrap_or(isize::MAX);
        let replies = self
            .run(vec![redis::cmd("SRANDMEMBER")
                .arg(holders_key(digest))
                .arg(count)
                .clone()])
            .await?;
        parse(replies.into_iter().next())
    }

    async fn clear_in_repo(&self, repo: &str, digest: &Digest) -> Result<(), CacheError> {
        let link = [(repo.to_string(), digest.clone())];
        // Forgotten here before and after Redis is: a read that raced the removal is not kept.
        self.backend.local.forget_link(repo, digest);
        let result = self.run(clear_commands(&link)).await.map(drop);
        if result.is_err() {
            self.backend.remember_clears(link.to_vec());
        }
        self.backend.local.forget_link(repo, digest);
        result
    }

    async fn clear(&self, digest: &Digest, repos: &[String]) -> Result<(), CacheError> {
        let d = digest.to_string();
        let mut cmds = vec![
            redis::cmd("DEL").arg(blob_key(digest)).clone(),
            redis::cmd("DEL").arg(holders_key(digest)).clone(),
        ];
        for repo in repos {
            cmds.push(redis::cmd("SREM").arg(repo_set_key(repo)).arg(&d).clone());
            cmds.push(redis::cmd("DEL").arg(repo_blob_key(repo, digest)).clone());
        }
        self.backend.local.forget_blob(digest);
        let result = self.run(cmds).await.map(drop);
        self.backend.local.forget_blob(digest);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_distributions_schema() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(blob_key(&d), format!("blobs::{d}"));
        assert_eq!(repo_set_key("a/b"), "repository::a/b::blobs");
        assert_eq!(
            repo_blob_key("a/b", &d),
            format!("repository::a/b::blobs::{d}")
        );
        assert_eq!(clear_commands(&[("a/b".into(), d)]).len(), 3);
    }

    #[test]
    fn names_the_keys_links_are_read_from() {
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        assert_eq!(
            TrackedKey::parse(blob_key(&d).as_bytes()),
            Some(TrackedKey::Blob(d.clone()))
        );
        assert_eq!(
            TrackedKey::parse(repo_set_key("a/b").as_bytes()),
            Some(TrackedKey::Repository("a/b".into()))
        );
        assert_eq!(TrackedKey::parse(repo_blob_key("a/b", &d).as_bytes()), None);
        assert_eq!(TrackedKey::parse(b"blobs::nonsense"), None);
    }

    #[test]
    fn reads_a_descriptor_from_its_two_fields() {
        let reply = |size: Value, media: Value| Some(Value::Array(vec![size, media]));
        let text = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let found = descriptor(reply(text("12"), text("application/octet-stream"))).unwrap();
        assert_eq!(
            found.map(|d| (d.size, d.media_type)),
            Some((12, "application/octet-stream".into()))
        );
        assert_eq!(
            descriptor(reply(text("7"), Value::Nil))
                .unwrap()
                .map(|d| d.size),
            Some(7)
        );
        // No entry, or one another writer left without a size.
        assert!(descriptor(reply(Value::Nil, Value::Nil)).unwrap().is_none());
        assert!(descriptor(reply(text("x"), Value::Nil)).unwrap().is_none());
    }
}
