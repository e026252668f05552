//! The registry domain: blobs, uploads, manifests, tags, referrers. No HTTP here.
//!
//! `Registry`'s entry points, by file:
//! - `mod.rs`: [`Registry::new`] over a driver, [`Registry::with_cache`] adds a blob-descriptor
//!   cache, [`Registry::driver`] and [`Registry::options`] tell what it runs on.
//! - `blobs.rs`: [`Registry::stat_blob`] finds a blob linked in a repository,
//!   [`Registry::read_blob`] streams a range of it, [`Registry::blob_redirect`] names a URL to
//!   fetch it from, [`Registry::delete_blob`] unlinks it, [`Registry::mount_blob`] links a blob
//!   another repository has.
//! - `mount.rs`: [`Registry::mount_anonymous`] mounts a blob from any repository the caller may pull.
//! - `upload_sessions.rs`: [`Registry::start_upload`] opens a session, [`Registry::upload_status`]
//!   tells where it stands, [`Registry::append_upload`] adds a chunk,
//!   [`Registry::complete_upload`] verifies and publishes the blob, [`Registry::cancel_upload`]
//!   drops the session, [`Registry::put_blob`] stores a blob in one request.
//! - `manifest_store.rs`: [`Registry::put_manifest`] stores and tags a manifest,
//!   [`Registry::resolve_manifest`] turns a tag or digest into a digest,
//!   [`Registry::get_manifest`] fetches one, [`Registry::delete_manifest`] deletes by digest or
//!   tag, [`Registry::list_tags`] lists a repository's tags.
//! - `catalog.rs`: [`Registry::repositories`] lists every repository, [`Registry::catalog`] and
//!   [`Registry::tags`] page through repositories and tags.
//! - `referrers.rs`: [`Registry::referrers`] lists the manifests whose subject is a digest.
//! - `pull_through.rs`: [`Registry::cache_manifest`] and [`Registry::store_fetched_blob`] store what a
//!   pull-through cache fetched, verified; `expire_cached_*` remove it when its time is up.
//! - `purge.rs`: [`Registry::purge_uploads`] deletes stale upload sessions.
//! - `gc.rs`: [`Registry::garbage_collect`] marks and sweeps unreferenced blobs and manifests.
//!
//! Beside them: `manifest_format.rs` (media types, parsing and checks of a manifest body),
//! `upload_token.rs` (the signed `_state` token of a session), `hash_state.rs` (resumable
//! hashers), `reference.rs` (names and tags), `layout.rs` (paths in distribution's storage
//! tree), `error.rs` (what operations refuse).

/// Digests live in the leaf `crate::digest` (the cache uses them too); re-exported for
/// callers that reach them through the registry.
pub use crate::digest;
pub mod error;
pub mod gc;
pub mod gc_guard;
pub mod gc_online;
pub mod hash_state;
pub mod layout;
pub mod manifest_format;
pub mod purge;
pub mod reference;
pub mod upload_token;

mod blobs;
mod catalog;
mod manifest_cache;
mod manifest_store;
mod mount;
mod pull_through;
mod referrers;
mod upload_sessions;

use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::Stream;

pub use blobs::BlobInfo;
pub use catalog::{path_order, Page};
pub use manifest_store::{tags_of, ManifestReference, StoredManifest};
pub use mount::{MountSearch, MAX_SUGGESTED, SEARCH_BUDGET};
pub use referrers::Referrer;
pub use upload_sessions::{UploadProgress, UploadRequest};

use crate::cache::BlobDescriptorCache;
use crate::digest::Digest;
use crate::storage::StorageDriver;
use error::{RegistryError, Result};

/// A request body as the registry consumes it: a stream of byte chunks.
pub type BodyStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send>>;

/// Which children of a pushed index must already be in the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexChildren {
    /// Every child (`platforms: all`, the default).
    All,
    /// None (`platforms: none`).
    None,
    /// Children whose platform is listed, as (architecture, os).
    Platforms(Vec<(String, String)>),
}

/// Behaviour switches from the configuration.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// `storage.delete.enabled`.
    pub delete_enabled: bool,
    /// `storage.maintenance.readonly.enabled`.
    pub read_only: bool,
    /// `catalog.maxentries`.
    pub catalog_max_entries: usize,
    /// `tags.maxtags`.
    pub max_tags: usize,
    /// `validation.manifests.urls.allow` (regular expressions).
    pub urls_allow: Vec<regex::Regex>,
    /// `validation.manifests.urls.deny` (regular expressions).
    pub urls_deny: Vec<regex::Regex>,
    /// Which index children must exist (`validation.manifests.indexes`).
    pub index_children: IndexChildren,
    /// `storage.tag.concurrencylimit`: parallel tag lookups when deleting.
    pub tag_concurrency: usize,
    /// `validation.disabled`.
    pub validation_disabled: bool,
    /// `storage.redirect.disable`.
    pub redirect_disabled: bool,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            delete_enabled: false,
            read_only: false,
            catalog_max_entries: 1000,
            max_tags: 1000,
            urls_allow: Vec::new(),
            urls_deny: Vec::new(),
            index_children: IndexChildren::All,
            tag_concurrency: 8,
            validation_disabled: false,
            redirect_disabled: false,
        }
    }
}

/// Memory for manifest bodies kept by digest.
const MANIFEST_CACHE_BYTES: usize = 32 << 20;

/// The registry: all operations on repositories, over one storage driver.
pub struct Registry {
    driver: Arc<dyn StorageDriver>,
    options: RegistryOptions,
    /// Key for upload state tokens (`http.secret`).
    secret: Vec<u8>,
    /// Parsed manifest summaries by digest; manifests are immutable, so
    /// entries never go stale, only away.
    summaries: referrers::SummaryCache,
    /// Manifest bodies by digest, served once the repository's link was read.
    manifests: manifest_cache::ManifestCache,
    /// Blob-descriptor cache (`storage.cache.blobdescriptor`), if any.
    cache: Option<Arc<dyn BlobDescriptorCache>>,
    /// Read-only mode switched at run time, cluster-wide (`wharf maintenance readonly`).
    read_only_switch: Arc<std::sync::atomic::AtomicBool>,
    /// The last reading of the collector's pass marker (see `gc_guard`).
    pass_seen: gc_guard::PassReading,
}

impl Registry {
    /// A registry over `driver`, signing upload state with `secret`.
    pub fn new(driver: Arc<dyn StorageDriver>, options: RegistryOptions, secret: Vec<u8>) -> Self {
        Self {
            driver,
            options,
            secret,
            summaries: referrers::SummaryCache::new(10_000),
            manifests: manifest_cache::ManifestCache::new(MANIFEST_CACHE_BYTES),
            cache: None,
            read_only_switch: Arc::default(),
            pass_seen: gc_guard::PassReading::default(),
        }
    }

    /// The run-time read-only switch: while it is on, writes are refused as with
    /// `storage.maintenance.readonly.enabled`.
    pub fn read_only_switch(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.read_only_switch.clone()
    }

    /// Shares `switch` as the run-time read-only switch (a registry rebuilt on a
    /// configuration reload keeps the node's).
    pub fn with_read_only_switch(mut self, switch: Arc<std::sync::atomic::AtomicBool>) -> Self {
        self.read_only_switch = switch;
        self
    }

    /// Uses `cache` for blob descriptors.
    pub fn with_cache(mut self, cache: Arc<dyn BlobDescriptorCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The storage driver, for health checks.
    pub fn driver(&self) -> &Arc<dyn StorageDriver> {
        &self.driver
    }

    /// The configured behaviour.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    fn check_writable(&self) -> Result<()> {
        if self.options.read_only
            || self
                .read_only_switch
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Err(RegistryError::Unsupported(
                "registry is in read-only mode".into(),
            ));
        }
        Ok(())
    }

    fn check_delete(&self) -> Result<()> {
        self.check_writable()?;
        if !self.options.delete_enabled {
            return Err(RegistryError::Unsupported(
                "deletes are disabled (storage.delete.enabled)".into(),
            ));
        }
        Ok(())
    }

    /// Reads a link file and parses the digest in it.
    async fn read_link(&self, path: &str) -> Result<Option<Digest>> {
        match self.driver.get_content(path).await {
            Ok(b) => {
                let text = String::from_utf8_lossy(&b);
                Ok(text.trim().parse::<Digest>().ok())
            }
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn write_link(&self, path: &str, digest: &Digest) -> Result<()> {
        self.put_small(path, Bytes::from(digest.to_string())).await
    }

    /// Writes a small file, again if a concurrent delete of its directory (garbage collection
    /// removing a link) took the directory away mid-write; bounded.
    async fn put_small(&self, path: &str, content: Bytes) -> Result<()> {
        let mut attempt = 0;
        loop {
            match self.driver.put_content(path, content.clone()).await {
                Err(e) if e.is_not_found() && attempt < 3 => attempt += 1,
                other => return Ok(other?),
            }
        }
    }

    /// The digests named by the entries of `dir(algorithm)` (`.../<algorithm>/<hex>`), for
    /// every algorithm; entries that are not digests are skipped.
    async fn digests_in(&self, dir: impl Fn(&str) -> String) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for algorithm in digest::Algorithm::ALL {
            for hex in self.list_or_empty(&dir(algorithm.name())).await? {
                if let Ok(d) = format!("{}:{hex}", algorithm.name()).parse::<Digest>() {
                    out.push(d);
                }
            }
        }
        Ok(out)
    }

    /// Lists a directory, treating a missing one as empty.
    async fn list_or_empty(&self, path: &str) -> Result<Vec<String>> {
        match self.driver.list(path).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_not_found() => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }
}
