//! Following a blob fetch under way elsewhere (another request, another node): the fetch
//! appends to a file of its own in the shared storage, named after its claim's token, beside
//! a record of the size the upstream announced; a waiting request reads that file as it grows
//! and passes the bytes on, hashing them, instead of waiting for the whole download. Only for
//! storage that can read a file while it is appended ([`StorageDriver::reads_growing_files`]).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::digest::Digest;
use crate::registry::hash_state::HashState;
use crate::registry::{BlobInfo, Registry};
use crate::storage::{ByteStream, StorageDriver, StorageError};

use super::cache_state::STATE_ROOT;
use super::claims::Claims;

/// How often a follower looks for new bytes.
const POLL: Duration = Duration::from_millis(50);
/// How often a follower asks whether the fetch's claim is still held.
const CLAIM_CHECK: Duration = Duration::from_secs(1);
/// A fetch whose file did not grow for this long is given up by its followers.
const STALL: Duration = Duration::from_secs(120);
/// Most fetch directories one sweep looks at.
const SWEEP_BATCH: usize = 1000;

fn root() -> String {
    format!("{STATE_ROOT}/fetching")
}

fn dir(token: &str) -> String {
    format!("{}/{token}", root())
}

/// The file a fetch holding the claim `token` appends the blob's bytes to.
pub fn data_path(token: &str) -> String {
    format!("{}/data", dir(token))
}

fn record_path(token: &str) -> String {
    format!("{}/record", dir(token))
}

/// What a fetch announces to its followers before its first byte.
#[derive(Debug, Serialize, Deserialize)]
struct FetchRecord {
    digest: String,
    size: Option<u64>,
}

/// Announces that the claim `token` fetches `digest` (of `size` bytes, when known).
pub async fn announce(
    driver: &dyn StorageDriver,
    token: &str,
    digest: &Digest,
    size: Option<u64>,
) -> Result<(), StorageError> {
    let record = FetchRecord {
        digest: digest.to_string(),
        size,
    };
    let body = serde_json::to_vec(&record).unwrap_or_default();
    driver
        .put_content_lazy(&record_path(token), Bytes::from(body))
        .await
}

/// Removes a finished fetch's file and record.
pub async fn forget(driver: &dyn StorageDriver, token: &str) {
    if let Err(e) = driver.delete_lazy(&dir(token)).await {
        if !e.is_not_found() {
            tracing::debug!(error = %e, fetch = token, "could not remove a finished fetch's file");
        }
    }
}

/// The size announced by the fetch holding `token`, once it announced `digest`; `None` while
/// it has not (yet).
pub async fn announced(
    driver: &dyn StorageDriver,
    token: &str,
    digest: &Digest,
) -> Option<Option<u64>> {
    let raw = driver.get_content(&record_path(token)).await.ok()?;
    let record: FetchRecord = serde_json::from_slice(&raw).ok()?;
    (record.digest == digest.to_string()).then_some(record.size)
}

/// What a follower needs to know.
pub struct Fetch {
    /// The storage holding the growing file.
    pub driver: Arc<dyn StorageDriver>,
    /// Where the verified blob lands.
    pub registry: Arc<Registry>,
    /// The claims, to see whether the fetch is still under way.
    pub claims: Claims,
    /// The fetch's claim.
    pub claim: String,
    /// Its holder's token.
    pub token: String,
    /// The blob.
    pub digest: Digest,
    /// Its size, when the upstream announced one.
    pub size: Option<u64>,
}

/// The blob's bytes as the fetch writes them: from its growing file, then (once it is moved
/// into place) from the stored blob. The last chunk is held back until the bytes hash to the
/// digest; the stream ends with an error if the fetch fails or stalls.
pub fn follow(fetch: Fetch) -> ByteStream {
    let (tx, rx) = mpsc::channel::<Result<Bytes, StorageError>>(8);
    tokio::spawn(async move {
        let digest = fetch.digest.to_string();
        if let Err(why) = pass_on(&fetch, &tx).await {
            tracing::warn!(blob = %digest, fetch = %fetch.token, reason = %why, "following a fetch failed");
            let _ = tx
                .send(Err(StorageError::io(
                    "mirror",
                    &digest,
                    std::io::Error::other(why),
                )))
                .await;
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// Where the next bytes come from.
enum Source {
    /// The fetch's file, this long so far.
    Growing(u64),
    /// The stored blob, this long.
    Stored(u64),
    /// Nothing new.
    Nothing,
}

/// Reads and sends until the whole blob went out; `Err` says why it cannot.
async fn pass_on(f: &Fetch, tx: &mpsc::Sender<Result<Bytes, StorageError>>) -> Result<(), String> {
    let partial = data_path(&f.token);
    let mut hasher = HashState::new(f.digest.kind());
    let mut offset = 0u64;
    let mut last: Option<Bytes> = None;
    let mut grew_at = Instant::now();
    let mut claim_checked = Instant::now();
    // Bounded by STALL per lack of progress; the count only guards against a storage that
    // keeps growing a file forever.
    for _ in 0..10_000_000u64 {
        let source = match f.driver.stat(&partial).await {
            Ok(info) if !info.is_dir && info.size > offset => Source::Growing(info.size),
            _ => match f.registry.stat_blob_data(&f.digest).await {
                Ok(Some(size)) => Source::Stored(size),
                Ok(None) => Source::Nothing,
                Err(e) => return Err(format!("cannot look for the stored blob: {e}")),
            },
        };
        let (stream, end, stored) = match source {
            Source::Growing(end) => {
                match f.driver.reader(&partial, offset, Some(end - offset)).await {
                    Ok(stream) => (stream, end, false),
                    // Moved into place meanwhile: read on from there.
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(format!("cannot read the fetch's file: {e}")),
                }
            }
            Source::Stored(end) if end < offset => {
                return Err(format!("stored blob is {end} bytes, {offset} already sent"))
            }
            Source::Stored(end) if end == offset => {
                return finish(f, hasher, offset, last, tx).await;
            }
            Source::Stored(end) => {
                let blob = BlobInfo {
                    digest: f.digest.clone(),
                    size: end,
                };
                let stream = f
                    .registry
                    .read_blob(&blob, offset, end - offset)
                    .await
                    .map_err(|e| format!("cannot read the stored blob: {e}"))?;
                (stream, end, true)
            }
            Source::Nothing => {
                if f.size.is_some_and(|s| s == offset) {
                    return finish(f, hasher, offset, last, tx).await;
                }
                if grew_at.elapsed() >= STALL {
                    return Err(format!("no new bytes for {STALL:?}"));
                }
                if claim_checked.elapsed() >= CLAIM_CHECK {
                    claim_checked = Instant::now();
                    if f.claims.holder_token(&f.claim).await.as_deref() != Some(&f.token)
                        && f.registry
                            .stat_blob_data(&f.digest)
                            .await
                            .ok()
                            .flatten()
                            .is_none()
                    {
                        return Err("the fetch ended without storing the blob".into());
                    }
                }
                tokio::time::sleep(POLL).await;
                continue;
            }
        };
        let mut stream = stream;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| format!("reading: {e}"))?;
            offset += chunk.len() as u64;
            hasher.update(&chunk);
            if let Some(previous) = last.replace(chunk) {
                if tx.send(Ok(previous)).await.is_err() {
                    // The client went away.
                    return Ok(());
                }
            }
        }
        if offset != end {
            return Err(format!("read up to {offset}, expected {end}"));
        }
        if f.size.is_some_and(|s| offset > s) {
            return Err(format!("the fetch's file is longer than {offset} bytes"));
        }
        grew_at = Instant::now();
        if stored || f.size == Some(offset) {
            return finish(f, hasher, offset, last, tx).await;
        }
    }
    Err("gave up following the fetch".into())
}

/// Sends the held-back last chunk once everything sent hashes to the digest.
async fn finish(
    f: &Fetch,
    hasher: HashState,
    offset: u64,
    last: Option<Bytes>,
    tx: &mpsc::Sender<Result<Bytes, StorageError>>,
) -> Result<(), String> {
    let actual = hasher.digest();
    if actual != f.digest {
        return Err(format!("{offset} bytes read hash to {actual}"));
    }
    if let Some(last) = last {
        let _ = tx.send(Ok(last)).await;
    }
    Ok(())
}

/// Removes the files of fetches that ended without cleaning up (their node died) once
/// untouched for `idle`; a bounded number per call. Returns how many were removed.
pub async fn forget_abandoned(driver: &dyn StorageDriver, idle: Duration) -> usize {
    let tokens = match driver.list(&root()).await {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return 0,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list fetches under way");
            return 0;
        }
    };
    let mut removed = 0;
    for token in tokens.into_iter().take(SWEEP_BATCH) {
        let mut newest: Option<SystemTime> = None;
        for path in [data_path(&token), record_path(&token)] {
            if let Ok(info) = driver.stat(&path).await {
                newest = newest.max(info.modified);
            }
        }
        let idle_long = newest
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age >= idle);
        if idle_long && driver.delete(&dir(&token)).await.is_ok() {
            removed += 1;
        }
    }
    removed
}
