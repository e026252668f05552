//! Pull-through cache (registry:2's `proxy` mode): manifests and blobs missing from storage
//! are fetched from an upstream registry, verified against their digests, stored, and served
//! to the first client while they are fetched.
//!
//! - `select.rs`: which upstream serves a repository, under which names.
//! - `upstream.rs`: requests to an upstream with its credentials; `challenge.rs` decides where
//!   they may go.
//! - `claims.rs`: one fetch per object across the cluster; `follow.rs`: the other requests
//!   for a blob read it as the fetch writes it.
//! - `cache_state.rs`: when tags were last checked upstream, and when cached content expires.
//! - `metrics.rs`: hits, misses, coalesced waits, stale serves, upstream traffic.

pub mod cache_state;
pub mod challenge;
pub mod claims;
pub mod follow;
pub mod metrics;
pub mod select;
pub mod upstream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method, StatusCode};
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::config::ProxyConfig;
use crate::coord::LeaseBackend;
use crate::digest::Digest;
use crate::registry::error::RegistryError;
use crate::registry::manifest_format::MAX_MANIFEST_SIZE;
use crate::registry::reference::RepositoryName;
use crate::registry::{BlobInfo, ManifestReference, Registry, StoredManifest};
use crate::storage::{ByteStream, StorageDriver, StorageError};
use cache_state::CacheState;
use claims::{release, Claim, Claims};
use metrics::METRICS;
use upstream::{Upstream, UpstreamError, UpstreamSettings};

/// registry:2's default time to live of cached content.
pub const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Most pages of an upstream's tag list read.
const MAX_TAG_PAGES: usize = 100;
/// Largest page of an upstream's tag list read.
const MAX_TAG_PAGE: usize = 4 << 20;
/// How often expired content is looked for, unless a time to live is shorter.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often a cached tag is checked upstream unless configured.
pub const DEFAULT_TAG_RECHECK: Duration = Duration::from_secs(30);
/// How long a request waits for a fetch under way elsewhere.
const WAIT_LIMIT: Duration = Duration::from_secs(600);
/// How often a waiting request looks for the fetched object.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// How often a waiting request looks for the announcement of a fetch it can follow.
const FOLLOW_POLL: Duration = Duration::from_millis(50);
/// Longest pause between two chunks of an upstream body.
const CHUNK_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest a fetch waits on a client that does not read; the fetch then goes on without it.
const CLIENT_STALL: Duration = Duration::from_secs(30);
/// The manifest types asked for upstream.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Why a pull through the cache failed.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// A local failure or answer (unknown manifest or blob, storage).
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The upstream could not be used.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The upstream's content does not match its digest; nothing was stored.
    #[error("upstream {upstream} served content that does not match {digest}")]
    Mismatch {
        /// Upstream's name.
        upstream: String,
        /// The digest asked for.
        digest: String,
    },
    /// A fetch under way elsewhere did not finish in time.
    #[error("gave up waiting for a fetch of {0} under way on another request")]
    WaitTimedOut(String),
}

/// One configured upstream.
struct Entry {
    prefix: String,
    upstream: Arc<Upstream>,
    ttl: Option<Duration>,
    tag_recheck: Duration,
}

/// A repository as the cache serves it.
#[derive(Clone)]
pub struct Target {
    entry: usize,
    /// Name the cache stores it under.
    pub local: RepositoryName,
    /// Name asked for upstream.
    pub remote: String,
    /// The namespace a `?ns=` query selected, for `OCI-Namespace`.
    pub namespace: Option<String>,
}

/// A manifest as the cache serves it.
pub struct ManifestAnswer {
    /// The manifest.
    pub manifest: StoredManifest,
    /// Served from the cache without the upstream's confirmation of its tag.
    pub stale: bool,
}

/// A blob as the cache serves it.
pub enum BlobAnswer {
    /// In storage: serve it from there.
    Cached(BlobInfo),
    /// Being fetched: these bytes, cut short with an error if they prove wrong.
    Streaming {
        /// Size, when the upstream said.
        size: Option<u64>,
        /// The bytes.
        body: ByteStream,
    },
    /// A HEAD answered by the upstream without fetching.
    Upstream {
        /// Size, when the upstream said.
        size: Option<u64>,
    },
}

/// The pull-through cache.
pub struct Mirror {
    entries: Vec<Entry>,
    claims: Claims,
    state: CacheState,
    driver: Arc<dyn StorageDriver>,
    /// `proxy.cachewritetimeout`: longest a fetched blob may take to be stored.
    cache_write_timeout: Option<Duration>,
}

impl Mirror {
    /// The cache `proxy` configures, if it names any upstream.
    pub fn from_config(
        proxy: &ProxyConfig,
        leases: Option<Arc<dyn LeaseBackend>>,
        driver: Arc<dyn StorageDriver>,
    ) -> Option<Self> {
        let ttl = |t: Option<Duration>| match t {
            None => Some(DEFAULT_TTL),
            Some(d) if d.is_zero() => None,
            Some(d) => Some(d),
        };
        let recheck = proxy.tagrecheck.unwrap_or(DEFAULT_TAG_RECHECK);
        let mut entries = Vec::new();
        for u in &proxy.upstreams {
            entries.push(Entry {
                prefix: u.bare_prefix().to_string(),
                upstream: Upstream::new(UpstreamSettings {
                    name: u.bare_prefix().to_string(),
                    url: u.remoteurl.trim_end_matches('/').to_string(),
                    credentials: credentials(&u.username, &u.password),
                    token_realms: u.tokenrealms.clone(),
                }),
                ttl: ttl(u.ttl),
                tag_recheck: u.tagrecheck.unwrap_or(recheck),
            });
        }
        if let Some(url) = proxy.remoteurl.as_deref().filter(|u| !u.is_empty()) {
            let url = url.trim_end_matches('/').to_string();
            let name = challenge::origin(&url)
                .map(|(_, host, port)| format!("{host}:{port}"))
                .unwrap_or_else(|| url.clone());
            entries.push(Entry {
                prefix: String::new(),
                upstream: Upstream::new(UpstreamSettings {
                    name,
                    url,
                    credentials: credentials(&proxy.username, &proxy.password),
                    token_realms: proxy.tokenrealms.clone(),
                }),
                ttl: ttl(proxy.ttl),
                tag_recheck: recheck,
            });
        }
        if entries.is_empty() {
            return None;
        }
        if !driver.reads_growing_files() {
            tracing::info!(driver = driver.name(), "this storage cannot read a blob while it is written: requests for a blob fetched elsewhere wait until it is stored");
        }
        Some(Self {
            entries,
            claims: Claims::new(leases),
            state: CacheState::new(driver.clone()),
            driver,
            cache_write_timeout: proxy.cachewritetimeout.filter(|d| !d.is_zero()),
        })
    }

    /// The upstream serving `name` (as in the request path), given a `?ns=` query.
    pub fn target(&self, name: &RepositoryName, ns: Option<&str>) -> Option<Target> {
        let hosts: Vec<String> = self.entries.iter().map(|e| e.upstream.host()).collect();
        let candidates: Vec<select::Candidate<'_>> = self
            .entries
            .iter()
            .zip(&hosts)
            .map(|(e, host)| select::Candidate {
                prefix: &e.prefix,
                host,
            })
            .collect();
        let s = select::select(&candidates, name.as_str(), ns)?;
        let local = RepositoryName::parse(&s.local)?;
        Some(Target {
            entry: s.upstream,
            local,
            remote: s.remote,
            namespace: s
                .by_namespace
                .then(|| self.entries[s.upstream].prefix.clone()),
        })
    }

    fn upstream(&self, t: &Target) -> &Arc<Upstream> {
        &self.entries[t.entry].upstream
    }

    /// A manifest by tag or digest: from the cache when it is there (a tag checked upstream at
    /// most once per interval), else fetched, verified and stored.
    pub async fn manifest(
        &self,
        registry: &Registry,
        t: &Target,
        reference: &ManifestReference,
    ) -> Result<ManifestAnswer, MirrorError> {
        let entry = &self.entries[t.entry];
        let label = entry.upstream.name();
        let cached = match registry.get_manifest(&t.local, reference).await {
            Ok(m) => Some(m),
            Err(RegistryError::ManifestUnknown(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let tag = match reference {
            ManifestReference::Digest(_) => {
                if let Some(m) = cached {
                    METRICS.hits.with_label_values(&[label, "manifest"]).inc();
                    return Ok(ManifestAnswer {
                        manifest: m,
                        stale: false,
                    });
                }
                None
            }
            ManifestReference::Tag(tag) => Some(tag),
        };
        if let (Some(tag), Some(m)) = (tag, &cached) {
            if self
                .state
                .tag_checked_within(&t.local, tag.as_str(), entry.tag_recheck)
                .await
            {
                METRICS.hits.with_label_values(&[label, "manifest"]).inc();
                return Ok(ManifestAnswer {
                    manifest: m.clone(),
                    stale: false,
                });
            }
        }
        let claim_name = format!(
            "mirror-manifest-{}",
            &Digest::of(format!("{}\n{reference}", t.local).as_bytes()).hex()[..32]
        );
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut counted_wait = false;
        let mut round = 0u64;
        loop {
            match self.claims.claim(&claim_name).await {
                Claim::Mine(held) => {
                    let result = self
                        .refresh_manifest(registry, t, reference, cached.clone())
                        .await;
                    release(held).await;
                    return result;
                }
                Claim::Taken => {
                    // Someone is checking this tag right now: the cached copy is as good.
                    if let Some(m) = &cached {
                        METRICS.hits.with_label_values(&[label, "manifest"]).inc();
                        return Ok(ManifestAnswer {
                            manifest: m.clone(),
                            stale: false,
                        });
                    }
                }
            }
            if !counted_wait {
                METRICS
                    .coalesced
                    .with_label_values(&[label, "manifest"])
                    .inc();
                counted_wait = true;
            }
            // Look for the other fetch's result every poll; claim again every fourth.
            for _ in 0..4 {
                if Instant::now() >= deadline {
                    return Err(MirrorError::WaitTimedOut(format!(
                        "{}:{reference}",
                        t.local
                    )));
                }
                tokio::time::sleep(WAIT_POLL).await;
                round += 1;
                match registry.get_manifest(&t.local, reference).await {
                    Ok(m) => {
                        return Ok(ManifestAnswer {
                            manifest: m,
                            stale: false,
                        })
                    }
                    Err(RegistryError::ManifestUnknown(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            tracing::debug!(round, claim = %claim_name, "still waiting for a manifest fetch");
        }
    }

    /// Under the claim: checks a cached tag upstream (HEAD), fetching the manifest when it
    /// changed or is not cached; serves the cached copy, stale, when the upstream cannot say.
    async fn refresh_manifest(
        &self,
        registry: &Registry,
        t: &Target,
        reference: &ManifestReference,
        cached: Option<StoredManifest>,
    ) -> Result<ManifestAnswer, MirrorError> {
        let entry = &self.entries[t.entry];
        let upstream = &entry.upstream;
        let label = upstream.name();
        // Another request may have stored it between our look and our claim.
        let cached = match cached {
            Some(m) => Some(m),
            None => registry.get_manifest(&t.local, reference).await.ok(),
        };
        let tag = match reference {
            ManifestReference::Tag(tag) => Some(tag.clone()),
            ManifestReference::Digest(_) => None,
        };
        if let (Some(m), None) = (&cached, &tag) {
            METRICS.hits.with_label_values(&[label, "manifest"]).inc();
            return Ok(ManifestAnswer {
                manifest: m.clone(),
                stale: false,
            });
        }
        let tail = format!("manifests/{reference}");
        if let (Some(m), Some(tag)) = (&cached, &tag) {
            let head = upstream
                .get(Method::HEAD, &t.remote, &tail, Some(MANIFEST_ACCEPT))
                .await;
            let current = match head {
                Ok(answer) if answer.status().is_success() => {
                    upstream.recovered();
                    answer
                        .headers()
                        .get("docker-content-digest")
                        .and_then(|v| v.to_str().ok())
                        .and_then(|v| v.parse::<Digest>().ok())
                }
                Ok(answer) => {
                    tracing::warn!(upstream = %label, repository = %t.local, tag = tag.as_str(), status = %answer.status(), "tag check upstream failed; serving the cached manifest");
                    return Ok(self.stale(label, m));
                }
                Err(e) => {
                    tracing::warn!(upstream = %label, repository = %t.local, tag = tag.as_str(), error = %e, "tag check upstream failed; serving the cached manifest");
                    return Ok(self.stale(label, m));
                }
            };
            if current.as_ref() == Some(&m.digest) {
                self.state.tag_checked(&t.local, tag.as_str()).await;
                METRICS.hits.with_label_values(&[label, "manifest"]).inc();
                return Ok(ManifestAnswer {
                    manifest: m.clone(),
                    stale: false,
                });
            }
        }
        METRICS.misses.with_label_values(&[label, "manifest"]).inc();
        let fetched = match self.fetch_manifest(registry, t, reference).await {
            Ok(m) => m,
            Err(MirrorError::Upstream(e)) => match &cached {
                Some(m) => {
                    tracing::warn!(upstream = %label, repository = %t.local, error = %e, "manifest fetch failed; serving the cached one");
                    return Ok(self.stale(label, m));
                }
                None => return Err(e.into()),
            },
            Err(e) => return Err(e),
        };
        if let Some(tag) = &tag {
            self.state.tag_checked(&t.local, tag.as_str()).await;
        }
        if let Some(ttl) = entry.ttl {
            self.state
                .expire_later(cache_state::Kind::Manifest, &t.local, &fetched.digest, ttl)
                .await;
        }
        Ok(ManifestAnswer {
            manifest: fetched,
            stale: false,
        })
    }

    fn stale(&self, label: &str, m: &StoredManifest) -> ManifestAnswer {
        METRICS.stale.with_label_values(&[label]).inc();
        ManifestAnswer {
            manifest: m.clone(),
            stale: true,
        }
    }

    /// GETs a manifest upstream, verifies it and stores it.
    async fn fetch_manifest(
        &self,
        registry: &Registry,
        t: &Target,
        reference: &ManifestReference,
    ) -> Result<StoredManifest, MirrorError> {
        let upstream = self.upstream(t);
        let answer = upstream
            .get(
                Method::GET,
                &t.remote,
                &format!("manifests/{reference}"),
                Some(MANIFEST_ACCEPT),
            )
            .await?;
        match answer.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                return Err(
                    RegistryError::ManifestUnknown(format!("{}:{reference}", t.local)).into(),
                )
            }
            other => {
                return Err(UpstreamError::Unavailable {
                    upstream: upstream.name().to_string(),
                    reason: format!("manifest answered {other}"),
                    retry_after: Duration::from_secs(5),
                }
                .into())
            }
        }
        upstream.recovered();
        let announced = answer
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let body = tokio::time::timeout(
            upstream::HEAD_TIMEOUT,
            http_body_util::Limited::new(answer.into_body(), MAX_MANIFEST_SIZE).collect(),
        )
        .await
        .map_err(|_| UpstreamError::Unavailable {
            upstream: upstream.name().to_string(),
            reason: "manifest body timed out".into(),
            retry_after: Duration::from_secs(5),
        })?
        .map_err(|e| UpstreamError::Unavailable {
            upstream: upstream.name().to_string(),
            reason: format!("manifest body: {e}"),
            retry_after: Duration::from_secs(5),
        })?
        .to_bytes();
        METRICS
            .upstream_bytes
            .with_label_values(&[upstream.name()])
            .inc_by(body.len() as u64);
        // By digest the reference is the truth; by tag the announced digest must agree.
        let (tag, expected) = match reference {
            ManifestReference::Digest(d) => (None, Some(d.clone())),
            ManifestReference::Tag(tag) => (Some(tag), announced),
        };
        match registry
            .cache_manifest(&t.local, tag, expected.as_ref(), body)
            .await
        {
            Ok(m) => Ok(m),
            Err(RegistryError::DigestInvalid(why)) => {
                METRICS
                    .digest_mismatches
                    .with_label_values(&[upstream.name()])
                    .inc();
                tracing::warn!(upstream = %upstream.name(), repository = %t.local, %why, "upstream manifest refused");
                Err(MirrorError::Mismatch {
                    upstream: upstream.name().to_string(),
                    digest: reference.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// A blob: from the cache, else fetched once across the cluster and streamed while it is
    /// stored; a HEAD of an uncached blob asks the upstream without fetching.
    pub async fn blob(
        &self,
        registry: &Arc<Registry>,
        t: &Target,
        digest: &Digest,
        head: bool,
    ) -> Result<BlobAnswer, MirrorError> {
        let entry = &self.entries[t.entry];
        let label = entry.upstream.name();
        if let Some(info) = self.cached_blob(registry, t, digest).await? {
            METRICS.hits.with_label_values(&[label, "blob"]).inc();
            return Ok(BlobAnswer::Cached(info));
        }
        if head {
            let answer = entry
                .upstream
                .get(Method::HEAD, &t.remote, &format!("blobs/{digest}"), None)
                .await?;
            return match answer.status() {
                StatusCode::OK => Ok(BlobAnswer::Upstream {
                    size: content_length(answer.headers()),
                }),
                StatusCode::NOT_FOUND => Err(RegistryError::BlobUnknown(digest.clone()).into()),
                other => Err(UpstreamError::Unavailable {
                    upstream: label.to_string(),
                    reason: format!("blob HEAD answered {other}"),
                    retry_after: Duration::from_secs(5),
                }
                .into()),
            };
        }
        let claim_name = format!("mirror-blob-{}", digest.hex());
        let deadline = Instant::now() + WAIT_LIMIT;
        let mut counted_wait = false;
        loop {
            if let Claim::Mine(held) = self.claims.claim(&claim_name).await {
                // The fetch this request waited for may have finished just before the claim.
                match self.cached_blob(registry, t, digest).await {
                    Ok(Some(info)) => {
                        release(held).await;
                        return Ok(BlobAnswer::Cached(info));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        release(held).await;
                        return Err(e);
                    }
                }
                // Stored for another repository: linked here once the upstream confirms
                // this repository has it, without downloading it again.
                match self.link_if_upstream_has(registry, t, digest).await {
                    Ok(Some(info)) => {
                        release(held).await;
                        METRICS.hits.with_label_values(&[label, "blob"]).inc();
                        return Ok(BlobAnswer::Cached(info));
                    }
                    Ok(None) => {}
                    Err(e) => {
                        release(held).await;
                        return Err(e);
                    }
                }
                METRICS.misses.with_label_values(&[label, "blob"]).inc();
                return self.fetch_blob(registry.clone(), t, digest, held).await;
            }
            if !counted_wait {
                METRICS.coalesced.with_label_values(&[label, "blob"]).inc();
                counted_wait = true;
            }
            if self.driver.reads_growing_files() {
                if let Some(answer) = self
                    .follow_fetch(registry, t, digest, &claim_name, deadline)
                    .await?
                {
                    return Ok(answer);
                }
                continue;
            }
            for _ in 0..4 {
                if Instant::now() >= deadline {
                    return Err(MirrorError::WaitTimedOut(digest.to_string()));
                }
                tokio::time::sleep(WAIT_POLL).await;
                if let Some(info) = self.cached_blob(registry, t, digest).await? {
                    return Ok(BlobAnswer::Cached(info));
                }
            }
        }
    }

    /// Waits for the fetch holding `claim` to announce itself, then streams the blob from
    /// what it writes; `None` when the claim ended first (the caller claims again).
    async fn follow_fetch(
        &self,
        registry: &Arc<Registry>,
        t: &Target,
        digest: &Digest,
        claim: &str,
        deadline: Instant,
    ) -> Result<Option<BlobAnswer>, MirrorError> {
        // Bounded by the deadline; the count only guards the loop.
        for _ in 0..100_000u32 {
            if Instant::now() >= deadline {
                return Err(MirrorError::WaitTimedOut(digest.to_string()));
            }
            if let Some(info) = self.cached_blob(registry, t, digest).await? {
                return Ok(Some(BlobAnswer::Cached(info)));
            }
            let Some(token) = self.claims.holder_token(claim).await else {
                return Ok(None);
            };
            if let Some(size) = follow::announced(self.driver.as_ref(), &token, digest).await {
                tracing::debug!(blob = %digest, fetch = %token, "following a fetch under way");
                let body = follow::follow(follow::Fetch {
                    driver: self.driver.clone(),
                    registry: registry.clone(),
                    claims: self.claims.clone(),
                    claim: claim.to_string(),
                    token,
                    digest: digest.clone(),
                    size,
                });
                return Ok(Some(BlobAnswer::Streaming { size, body }));
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
        Ok(None)
    }

    /// The blob from storage, if the repository has it.
    async fn cached_blob(
        &self,
        registry: &Registry,
        t: &Target,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>, MirrorError> {
        match registry.stat_blob(&t.local, digest).await {
            Ok(info) => Ok(Some(info)),
            Err(RegistryError::BlobUnknown(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Links a blob already stored (for another repository) into this one when the upstream
    /// answers a HEAD for it in this repository: the upstream, not the cache, says who may
    /// read what. `None` when it is not stored or the upstream does not have it here.
    async fn link_if_upstream_has(
        &self,
        registry: &Registry,
        t: &Target,
        digest: &Digest,
    ) -> Result<Option<BlobInfo>, MirrorError> {
        if registry.stat_blob_data(digest).await?.is_none() {
            return Ok(None);
        }
        let answer = self
            .upstream(t)
            .get(Method::HEAD, &t.remote, &format!("blobs/{digest}"), None)
            .await?;
        if answer.status() != StatusCode::OK {
            return Ok(None);
        }
        Ok(registry.link_stored_blob(&t.local, digest).await?)
    }

    /// GETs a blob upstream; a task streams it into storage and to the returned body at once,
    /// holding the last chunk back until the digest is verified, so a client never receives
    /// a complete wrong blob.
    async fn fetch_blob(
        &self,
        registry: Arc<Registry>,
        t: &Target,
        digest: &Digest,
        held: Option<crate::coord::HeldLease>,
    ) -> Result<BlobAnswer, MirrorError> {
        let entry = &self.entries[t.entry];
        let upstream = entry.upstream.clone();
        let answer = match upstream
            .get(Method::GET, &t.remote, &format!("blobs/{digest}"), None)
            .await
        {
            Ok(a) => a,
            Err(e) => {
                release(held).await;
                return Err(e.into());
            }
        };
        match answer.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => {
                release(held).await;
                return Err(RegistryError::BlobUnknown(digest.clone()).into());
            }
            other => {
                release(held).await;
                return Err(UpstreamError::Unavailable {
                    upstream: upstream.name().to_string(),
                    reason: format!("blob answered {other}"),
                    retry_after: Duration::from_secs(5),
                }
                .into());
            }
        }
        upstream.recovered();
        let size = content_length(answer.headers());
        // Announced where other requests can follow the bytes as they are written.
        let mut visible = None;
        if let Some(held) = held.as_ref().filter(|_| self.driver.reads_growing_files()) {
            let token = held.token();
            match follow::announce(self.driver.as_ref(), &token, digest, size).await {
                Ok(()) => visible = Some(token),
                Err(e) => {
                    tracing::warn!(blob = %digest, error = %e, "cannot announce a fetch; others wait for it to be stored")
                }
            }
        }
        let driver = self.driver.clone();
        let write_limit = self.cache_write_timeout;
        let (client_tx, client_rx) = mpsc::channel::<Result<Bytes, StorageError>>(8);
        let (store_tx, store_rx) = mpsc::channel::<std::io::Result<Bytes>>(8);
        let (local, digest, ttl) = (t.local.clone(), digest.clone(), entry.ttl);
        let state = self.state.clone();
        tokio::spawn(async move {
            let label = upstream.name().to_string();
            let pump = async {
                let mut body = answer.into_body();
                let mut last: Option<Bytes> = None;
                let mut client_open = true;
                loop {
                    let frame = match tokio::time::timeout(CHUNK_TIMEOUT, body.frame()).await {
                        Err(_) => Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "upstream body stalled",
                        )),
                        Ok(None) => break,
                        Ok(Some(Err(e))) => Err(std::io::Error::other(e)),
                        Ok(Some(Ok(frame))) => Ok(frame),
                    };
                    let data = match frame {
                        Ok(frame) => match frame.into_data() {
                            Ok(data) => data,
                            Err(_) => continue,
                        },
                        Err(e) => {
                            let _ = store_tx.send(Err(e)).await;
                            break;
                        }
                    };
                    METRICS
                        .upstream_bytes
                        .with_label_values(&[&label])
                        .inc_by(data.len() as u64);
                    if let Some(previous) = last.replace(data.clone()) {
                        if client_open {
                            let sent =
                                tokio::time::timeout(CLIENT_STALL, client_tx.send(Ok(previous)))
                                    .await;
                            client_open = matches!(sent, Ok(Ok(())));
                        }
                    }
                    if store_tx.send(Ok(data)).await.is_err() {
                        break;
                    }
                }
                drop(store_tx);
                last
            };
            let incoming = futures_util::stream::unfold(store_rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            });
            let partial = visible.as_deref().map(follow::data_path);
            let store = registry.store_fetched_blob(
                &local,
                &digest,
                size,
                Box::pin(incoming),
                partial.as_deref(),
            );
            let both = async { tokio::join!(pump, store) };
            // registry:2 (3.x) bounds the cache write by `cachewritetimeout`; dropping the
            // store on expiry cancels its writer, so nothing is stored.
            let (last, stored) = match write_limit {
                None => both.await,
                Some(limit) => match tokio::time::timeout(limit, both).await {
                    Ok(done) => done,
                    Err(_) => (
                        None,
                        Err(RegistryError::Unavailable(format!(
                            "storing the fetched blob took longer than proxy.cachewritetimeout ({limit:?})"
                        ))),
                    ),
                },
            };
            match stored {
                Ok(_) => {
                    if let Some(last) = last {
                        let _ = client_tx.send(Ok(last)).await;
                    }
                    if let Some(ttl) = ttl {
                        state
                            .expire_later(cache_state::Kind::Blob, &local, &digest, ttl)
                            .await;
                    }
                }
                Err(e) => {
                    if matches!(
                        e,
                        RegistryError::DigestInvalid(_) | RegistryError::SizeInvalid(_)
                    ) {
                        METRICS.digest_mismatches.with_label_values(&[&label]).inc();
                    }
                    tracing::warn!(upstream = %label, repository = %local, blob = %digest, error = %e, "blob fetch failed; nothing stored");
                    let _ = client_tx
                        .send(Err(StorageError::io(
                            "mirror",
                            &digest.to_string(),
                            std::io::Error::other(e.to_string()),
                        )))
                        .await;
                }
            }
            if let Some(token) = &visible {
                follow::forget(driver.as_ref(), token).await;
            }
            release(held).await;
        });
        let body = futures_util::stream::unfold(client_rx, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        Ok(BlobAnswer::Streaming {
            size,
            body: Box::pin(body),
        })
    }

    /// A repository's tags as registry:2's proxy lists them: the upstream's (every page of
    /// them) when it answers, else the cached ones.
    pub async fn tags(&self, registry: &Registry, t: &Target) -> Result<Vec<String>, MirrorError> {
        let upstream = self.upstream(t);
        match self.upstream_tags(upstream, t).await {
            Ok(tags) => return Ok(tags),
            Err(why) => {
                tracing::warn!(upstream = %upstream.name(), repository = %t.local, %why, "cannot list tags upstream; listing the cached ones")
            }
        }
        Ok(registry.list_tags(&t.local).await?)
    }

    /// Every page of the upstream's tag list; `Err` says why there is none.
    async fn upstream_tags(&self, upstream: &Upstream, t: &Target) -> Result<Vec<String>, String> {
        #[derive(serde::Deserialize)]
        struct TagList {
            tags: Option<Vec<String>>,
        }
        let mut tags = Vec::new();
        let mut tail = "tags/list".to_string();
        for _ in 0..MAX_TAG_PAGES {
            let answer = upstream
                .get(Method::GET, &t.remote, &tail, None)
                .await
                .map_err(|e| e.to_string())?;
            if answer.status() != StatusCode::OK {
                return Err(format!("tags/list answered {}", answer.status()));
            }
            upstream.recovered();
            let next = answer
                .headers()
                .get(header::LINK)
                .and_then(|v| v.to_str().ok())
                .and_then(next_page_query);
            let body = tokio::time::timeout(
                upstream::HEAD_TIMEOUT,
                http_body_util::Limited::new(answer.into_body(), MAX_TAG_PAGE).collect(),
            )
            .await
            .map_err(|_| "tags/list body timed out".to_string())?
            .map_err(|e| format!("tags/list body: {e}"))?
            .to_bytes();
            let page: TagList =
                serde_json::from_slice(&body).map_err(|e| format!("tags/list body: {e}"))?;
            tags.extend(
                page.tags
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|tag| crate::registry::reference::Tag::parse(tag).is_some()),
            );
            match next {
                Some(query) => tail = format!("tags/list?{query}"),
                None => {
                    tags.sort_unstable();
                    tags.dedup();
                    return Ok(tags);
                }
            }
        }
        Err(format!("more than {MAX_TAG_PAGES} pages of tags"))
    }

    /// How often expired content is looked for: every minute, or twice per time to live when
    /// one is shorter than two minutes (at most once a second).
    pub fn sweep_interval(&self) -> Duration {
        self.entries
            .iter()
            .filter_map(|e| e.ttl)
            .map(|ttl| ttl / 2)
            .min()
            .unwrap_or(SWEEP_EVERY)
            .clamp(Duration::from_secs(1), SWEEP_EVERY)
    }

    /// Removes expired content, a bounded number of records per call, while `held` says the
    /// sweep's lease is still this node's.
    pub async fn sweep_expired(
        &self,
        registry: &Registry,
        still_held: &(dyn Fn() -> bool + Sync),
    ) -> usize {
        let removed = self.state.sweep(registry, still_held).await;
        if still_held() {
            self.claims.forget_idle().await;
        }
        if still_held() {
            follow::forget_abandoned(self.driver.as_ref(), claims::CLAIM_IDLE).await;
        }
        removed
    }
}

fn credentials(user: &Option<String>, pass: &Option<String>) -> Option<(String, String)> {
    match (user.as_deref(), pass.as_deref()) {
        (Some(u), p) if !u.is_empty() => Some((u.to_string(), p.unwrap_or("").to_string())),
        _ => None,
    }
}

/// The query of a `Link: <...?last=x&n=y>; rel="next"` header.
fn next_page_query(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        if !params.contains("rel=\"next\"") && !params.contains("rel=next") {
            return None;
        }
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        let (_, query) = target.split_once('?')?;
        Some(query.to_string())
    })
}

fn content_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}
