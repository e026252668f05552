//! OpenStack Swift, authenticated with tempauth (v1) or Keystone (v2, v3), over one container, laid out as
//! distribution 2.8's Swift driver lays it out (see `names`): a container written by
//! registry:2 is served as is, and the reverse.
//!
//! A PATCH on Swift, in order:
//! 1. [`StorageDriver::writer`] reads the upload's manifest and lists its segments: their
//!    total must be the offset, else `OffsetMismatch`.
//! 2. Each write buffers the body and uploads every full chunk as the next segment.
//! 3. The commit checks that the manifest is still the one the writer opened on (`Busy`
//!    otherwise), uploads the rest and rewrites the manifest with the digest of the segments.
//!
//! The closing PUT commits the same way, then publishes the upload at the blob's name while
//! its segments are those recorded: up to the cluster's largest object (`max_file_size`) as a
//! plain object (a server-side `COPY` of the DLO), a larger one as a DLO over server-side
//! copies of the segments under a prefix of its own, as registry:2 leaves one; then it deletes
//! the upload's manifest and segments.
//!
//! Every call has timeouts, bounded retries with backoff on throttling, 5xx and connection
//! failures, a metric and a `tracing` event.
//!
//! Modules, each importing only those after it: `writer` (appends and atomic writes),
//! `client` (every Swift call, authentication), `keystone` (Keystone token requests and
//! catalogs), `names` (object names, signatures), `settings` (configuration to settings: the
//! only one that reads `config`).

mod client;
mod keystone;
mod names;
mod settings;
mod writer;

use std::sync::Arc;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::storage::drivers::bulk_delete::delete_each;
use crate::storage::{
    relative_path, ByteStream, FileInfo, FileWriter, StorageDriver, StorageError,
};
use client::{Client, Listed, CLAIM_META};
use names::{object_name, parse_manifest, segment_name, segments_digest};
use writer::{fresh_segments, list_segments, put_dlo_manifest, Note, Segment, SwiftWriter};

pub use keystone::KeystoneSettings;
pub use settings::{SwiftSettings, SwiftSetupError};

/// Segments copied at once when a large file is published.
const COPY_CONCURRENCY: usize = 8;
/// How long an exclusive creator waits for racing creators' writes to land before it reads
/// back which one Swift kept.
const CLAIM_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Driver over one container.
#[derive(Clone)]
pub struct SwiftDriver {
    client: Arc<Client>,
}

impl SwiftDriver {
    /// Builds the client; nothing is sent until the first call (which authenticates, creates
    /// the container when it is missing and sets up temp URLs).
    pub fn new(settings: &SwiftSettings) -> Result<Self, SwiftSetupError> {
        Ok(SwiftDriver {
            client: Arc::new(Client::new(settings)?),
        })
    }

    /// The object name of a driver path.
    fn name(&self, path: &str) -> Result<String, StorageError> {
        relative_path(path)?;
        Ok(object_name(self.client.prefix(), path))
    }
}

/// `Changed` unless the segments under `segments` have the digest `expected`.
async fn check_record(
    client: &Client,
    segments: &str,
    expected: &str,
    path: &str,
) -> Result<(), StorageError> {
    let listed = list_segments(client, segments, path).await?;
    if segments_digest(listed.iter().map(|s| s.md5.as_str())) == expected {
        Ok(())
    } else {
        Err(StorageError::Changed(path.to_string()))
    }
}

/// Deletes a DLO's segments (one by one: bulk delete may be off).
async fn delete_segments(client: &Client, segments: &str, path: &str) -> Result<(), StorageError> {
    let listed = list_segments(client, segments, path).await?;
    delete_listed(client, segments, listed, path).await
}

/// Deletes `listed`, segments under `segments`.
async fn delete_listed(
    client: &Client,
    segments: &str,
    listed: Vec<Segment>,
    path: &str,
) -> Result<(), StorageError> {
    delete_each(listed, |s| async move {
        client.delete(&segment_name(segments, s.number), path).await
    })
    .await
}

/// Warns that segments nothing points at any more stay: garbage, not lost data.
fn warn_undeleted(segments: &str, why: &str, e: &StorageError) {
    tracing::warn!(
        target: "wharf::storage::swift",
        %segments, error = %e, "cannot delete the segments of {why}"
    );
}

/// Deletes segments nothing points at any more; a failure leaves garbage, not lost data.
async fn drop_segments(client: &Client, segments: &str, path: &str, why: &str) {
    if let Err(e) = delete_segments(client, segments, path).await {
        warn_undeleted(segments, why, &e);
    }
}

/// The segment prefix of the DLO at `name`, if a DLO is there.
async fn dlo_segments(
    client: &Client,
    name: &str,
    path: &str,
) -> Result<Option<String>, StorageError> {
    match client.head(name, path).await {
        Ok(head) => Ok(head
            .manifest
            .as_deref()
            .and_then(parse_manifest)
            .map(|(_, prefix)| prefix.to_string())),
        Err(StorageError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Publishes the DLO `name` over `segments` at `target` (driver path `to`) if its segments are
/// those `recorded` (when given), then deletes the DLO and its segments. Up to Swift's largest
/// object the file becomes a plain object (a server-side copy); a larger one stays a DLO, as
/// registry:2 leaves one, over copies of the segments under a prefix of its own (a writer still
/// appending to the source cannot add to it). What `target` held before goes, segments too.
async fn publish_large(
    client: &Client,
    name: &str,
    segments: &str,
    target: &str,
    to: &str,
    path: &str,
    recorded: Option<&str>,
) -> Result<(), StorageError> {
    let listed = list_segments(client, segments, path).await?;
    let digest = segments_digest(listed.iter().map(|s| s.md5.as_str()));
    if recorded.is_some_and(|r| r != digest) {
        return Err(StorageError::Changed(path.to_string()));
    }
    let replaced = dlo_segments(client, target, path).await?;
    let size: u64 = listed.iter().map(|s| s.bytes).sum();
    let published = if size > client.max_file_size(path).await? {
        Some(publish_segments(client, &listed, segments, target, to, path).await?)
    } else {
        match client.copy(name, target, path).await {
            Ok(_) => {}
            // Published (or cancelled) by another request since its segments were listed.
            Err(StorageError::NotFound(_)) => return Err(StorageError::Changed(path.to_string())),
            Err(e) => return Err(e),
        }
        // A segment replaced during the copy may have been read half old, half new.
        if let Err(e) = check_record(client, segments, &digest, path).await {
            client.delete(target, path).await.ok();
            return Err(e);
        }
        None
    };
    if let Some(old) = replaced.filter(|old| Some(old) != published.as_ref() && old != segments) {
        drop_segments(client, &old, path, "a replaced file").await;
    }
    match client.delete(name, path).await {
        Ok(()) | Err(StorageError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    // The segments are those listed: a publication whose segments changed since was refused.
    if let Err(e) = delete_listed(client, segments, listed, path).await {
        warn_undeleted(segments, "a published file", &e);
    }
    Ok(())
}

/// Copies `listed` (segments under `from`) server-side under a fresh prefix for `to`, numbered
/// from 1, checks the copies are those bytes, and writes the DLO manifest at `target` over
/// them; returns the prefix.
async fn publish_segments(
    client: &Client,
    listed: &[Segment],
    from: &str,
    target: &str,
    to: &str,
    path: &str,
) -> Result<String, StorageError> {
    let fresh = fresh_segments(client, to);
    let pairs: Vec<(String, String)> = listed
        .iter()
        .enumerate()
        .map(|(i, s)| (segment_name(from, s.number), segment_name(&fresh, i + 1)))
        .collect();
    let copies: Vec<Result<String, StorageError>> = futures_util::stream::iter(pairs)
        .map(|(source, copy)| async move { client.copy(&source, &copy, path).await })
        .buffered(COPY_CONCURRENCY)
        .collect()
        .await;
    let copied: Result<Vec<String>, StorageError> = copies.into_iter().collect();
    let checked = copied.and_then(|md5s| {
        // A segment replaced since the listing was copied as it is now.
        if md5s
            .iter()
            .map(String::as_str)
            .eq(listed.iter().map(|s| s.md5.as_str()))
        {
            Ok(segments_digest(md5s.iter().map(String::as_str)))
        } else {
            Err(StorageError::Changed(path.to_string()))
        }
    });
    let manifest = match checked {
        Ok(digest) => put_dlo_manifest(client, target, path, &fresh, &digest, false).await,
        Err(e) => Err(e),
    };
    if let Err(e) = manifest {
        drop_segments(client, &fresh, path, "an unpublished file").await;
        return Err(e);
    }
    Ok(fresh)
}

/// Authenticates and readies the container as the registry starts (distribution 2.8 refuses
/// to start when it cannot): `Err` says why, for the start-up error.
pub async fn check_start(settings: &SwiftSettings) -> Result<(), SwiftSetupError> {
    Client::new(settings)?
        .start_up()
        .await
        .map_err(SwiftSetupError)
}

#[async_trait::async_trait]
impl StorageDriver for SwiftDriver {
    fn name(&self) -> &'static str {
        "swift"
    }

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let name = self.name(path)?;
        self.client.get_all(&name, path).await
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let name = self.name(path)?;
        self.client.put(&name, path, content, &[]).await.map(|_| ())
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        // Swift checks `If-None-Match: *` before it stores the object, so creators racing
        // within one request's time may all pass; the newest write is the one kept. Each
        // creator tags its write, lets racing writes land, and wins only if its tag is kept.
        let name = self.name(path)?;
        let claim = uuid::Uuid::new_v4().simple().to_string();
        let headers = [
            ("if-none-match", "*".to_string()),
            (CLAIM_META, claim.clone()),
        ];
        match self.client.put(&name, path, content, &headers).await {
            Ok(_) => {}
            Err(StorageError::Busy(_)) => return Ok(false),
            Err(e) => return Err(e),
        }
        tokio::time::sleep(CLAIM_SETTLE).await;
        let head = self.client.head(&name, path).await?;
        Ok(head.claim.as_deref() == Some(claim.as_str()))
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        let name = self.name(path)?;
        // A file here is one object, open for appends or not: the file-only stat sizes every
        // read, and a missing file costs no listing to tell it from a folder.
        let Some(range) = crate::storage::object_range(self, path, (offset, len), true).await?
        else {
            return Ok(Box::pin(futures_util::stream::empty()));
        };
        self.client.get(&name, path, range).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let name = self.name(path)?;
        match self.client.head(&name, path).await {
            Ok(head) => {
                return Ok(FileInfo {
                    size: head.size,
                    is_dir: false,
                    modified: head.modified,
                })
            }
            Err(StorageError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        // A "directory" is any object under the prefix.
        let under = self
            .client
            .list_page("ListObjects", &format!("{name}/"), None, None, 1, path)
            .await?;
        if under.is_empty() {
            Err(StorageError::NotFound(path.to_string()))
        } else {
            Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            })
        }
    }

    // One HEAD: a missing sealed file needs no listing to tell it from a folder.
    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        let name = self.name(path)?;
        if name.is_empty() || name.ends_with('/') {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let head = self.client.head(&name, path).await?;
        Ok(FileInfo {
            size: head.size,
            is_dir: false,
            modified: head.modified,
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let entries = self.list_entries(path).await?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    // The delimited listing says which children are directories: no per-child calls.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let prefix = format!("{}/", self.name(path)?);
        let listed = self.client.list(&prefix, Some('/'), path).await?;
        let mut entries: Vec<(String, bool)> = listed
            .into_iter()
            .filter_map(|l| match l {
                Listed::Subdir(d) => d
                    .strip_prefix(prefix.as_str())
                    .map(|d| (d.trim_end_matches('/').to_string(), true)),
                Listed::Object { name, .. } => name
                    .strip_prefix(prefix.as_str())
                    .map(|n| (n.to_string(), false)),
            })
            .filter(|(n, _)| !n.is_empty())
            .collect();
        if entries.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        // A name both an object and a prefix is reported once, as a directory.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let (source, target) = (self.name(from)?, self.name(to)?);
        let head = self.client.head(&source, from).await?;
        if let Some((_, segments)) = head.manifest.as_deref().and_then(parse_manifest) {
            return publish_large(
                &self.client,
                &source,
                segments,
                &target,
                to,
                from,
                head.recorded.as_deref(),
            )
            .await;
        }
        let replaced = dlo_segments(&self.client, &target, from).await?;
        self.client.copy(&source, &target, from).await?;
        if let Some(old) = replaced {
            drop_segments(&self.client, &old, from, "a replaced file").await;
        }
        match self.client.delete(&source, from).await {
            Ok(()) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let name = self.name(path)?;
        let under = format!("{name}/");
        // Everything at or under the path: listing by the bare name also returns siblings
        // that merely start with it (`v1` and `v10`), which are left alone.
        let listed = self.client.list(&name, None, path).await?;
        let doomed: Vec<(String, u64)> = listed
            .into_iter()
            .filter_map(|l| match l {
                Listed::Object { name: n, bytes, .. } if n == name || n.starts_with(&under) => {
                    Some((n, bytes))
                }
                _ => None,
            })
            .collect();
        if doomed.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let client = &self.client;
        delete_each(doomed, |(n, bytes)| async move {
            // A DLO's manifest is an empty object: its segments go with it.
            if bytes == 0 {
                let head = client.head(&n, path).await?;
                if let Some((_, segments)) = head.manifest.as_deref().and_then(parse_manifest) {
                    delete_segments(client, segments, path).await?;
                }
            }
            client.delete(&n, path).await
        })
        .await
    }

    // registry:2 continues an upload only from its manifest, which its own POST writes with no
    // segments yet: an upload started here gets one too, in one conditional PUT (the file is
    // new, so there is nothing to look at first).
    async fn prepare_append(&self, path: &str) -> Result<(), StorageError> {
        writer::create_empty(&self.client, path).await.map(|_| ())
    }

    async fn prepare_append_noted(&self, path: &str) -> Result<Option<String>, StorageError> {
        let note = writer::create_empty(&self.client, path).await?;
        Ok(Some(note.encode()))
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(
            SwiftWriter::append(self.client.clone(), path, offset).await?,
        ))
    }

    // The note saves the `HEAD` of the manifest when its segments are still as noted.
    async fn writer_noted(
        &self,
        path: &str,
        offset: u64,
        note: Option<&str>,
    ) -> Result<Box<dyn FileWriter>, StorageError> {
        let client = self.client.clone();
        let writer = match note.and_then(|n| Note::parse(&client, n)) {
            Some(note) => SwiftWriter::append_noted(client, path, offset, &note).await?,
            None => SwiftWriter::append(client, path, offset).await?,
        };
        Ok(Box::new(writer))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(SwiftWriter::atomic(self.client.clone(), path)?))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let name = self.name(path)?;
        self.client.temp_url(&name, path).await
    }
}
