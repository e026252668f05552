//! Writers: appends that survive across requests and nodes, and atomic whole-object writes.
//!
//! A file is one object. An append reads the object's size and generation (the storage
//! truth: any node can continue from it), stores each full chunk of new bytes as a part
//! object in the driver's scratch area (invisible at the file's path), and on commit composes
//! the file from the old object and the parts in one `compose` conditional on the generation
//! it started from. That is the only step that changes the file, so a writer that fails, is
//! cancelled or is dropped leaves it as it was.
//!
//! Before composing, a writer claims the generation it appends to by creating a small claim
//! object with `ifGenerationMatch=0`: of two writers opened at the same point only the first
//! to commit succeeds, even where `compose` preconditions are not enforced (emulators).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::client::{io_error, Client, Object};
use crate::storage::{FileWriter, StorageError};

/// Sources one `compose` takes at most.
const MAX_COMPOSE_SOURCES: usize = 32;
/// Part objects deleted at once.
const DELETE_CONCURRENCY: usize = 16;

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: the stored object, then the parts.
    Append {
        /// Generation of the object the writer started from; `None`: there was none.
        base: Option<u64>,
    },
    /// `atomic_writer(path)`: the parts replace whatever is there.
    Atomic,
}

/// An open writer, buffering at most one chunk.
pub(super) struct GcsWriter {
    client: Arc<Client>,
    path: String,
    name: String,
    kind: Kind,
    chunk: usize,
    /// Part objects stored by this writer, in order.
    parts: Vec<String>,
    /// Bytes not stored yet.
    buf: BytesMut,
    /// Size of the file with everything written so far.
    size: u64,
    /// Committed or cancelled: nothing left to clean up on drop.
    finished: bool,
}

impl GcsWriter {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(
        client: Arc<Client>,
        path: &str,
        chunk: usize,
    ) -> Result<Self, StorageError> {
        let name = client.name(path)?;
        Ok(GcsWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Atomic,
            chunk,
            parts: Vec::new(),
            buf: BytesMut::new(),
            size: 0,
            finished: false,
        })
    }

    /// A writer appending at `offset` to what is stored at `path`.
    pub(super) async fn append(
        client: Arc<Client>,
        path: &str,
        offset: u64,
        chunk: usize,
    ) -> Result<Self, StorageError> {
        let name = client.name(path)?;
        let base = match client.metadata(&name, path).await {
            Ok(object) => {
                if object.size() != offset {
                    return Err(StorageError::OffsetMismatch {
                        path: path.to_string(),
                        expected: offset,
                        actual: object.size(),
                    });
                }
                Some(object.generation())
            }
            Err(StorageError::NotFound(_)) if offset == 0 => None,
            Err(e) => return Err(e),
        };
        Ok(GcsWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Append { base },
            chunk,
            parts: Vec::new(),
            buf: BytesMut::new(),
            size: offset,
            finished: false,
        })
    }

    /// Stores `data` as the next part.
    async fn store_part(&mut self, data: Bytes) -> Result<(), StorageError> {
        let part = part_name(&self.client);
        self.client.upload(&part, &self.path, data, None).await?;
        self.parts.push(part);
        Ok(())
    }

    /// Claims the append to generation `base` of the file (0: no file): only one writer
    /// ever succeeds; the others get `Busy`.
    async fn claim(&self, base: u64) -> Result<(), StorageError> {
        let claim = format!("{}{base}", claims_prefix(&self.client, &self.name));
        self.client
            .upload(&claim, &self.path, Bytes::new(), Some(0))
            .await
            .map(|_| ())
    }

    /// Stores what is buffered and composes the file; returns its generation.
    async fn publish(&mut self) -> Result<u64, StorageError> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.store_part(rest).await?;
        }
        let result = match self.kind {
            Kind::Append { base } => {
                if self.parts.is_empty() {
                    if let Some(generation) = base {
                        // Nothing new: the file stays as it is.
                        return Ok(generation);
                    }
                }
                self.claim(base.unwrap_or(0)).await?;
                let mut sources = Vec::new();
                if base.is_some() {
                    sources.push(self.name.clone());
                }
                sources.extend(self.parts.iter().cloned());
                let if_generation = Some(base.unwrap_or(0));
                if sources.is_empty() {
                    self.client
                        .upload(&self.name, &self.path, Bytes::new(), if_generation)
                        .await
                } else {
                    compose_all(&self.client, sources, &self.name, &self.path, if_generation).await
                }
            }
            Kind::Atomic => {
                let sources = self.parts.clone();
                compose_all(&self.client, sources, &self.name, &self.path, None).await
            }
        };
        self.finished = true;
        let parts = std::mem::take(&mut self.parts);
        delete_parts(&self.client, &self.path, parts).await;
        result.map(|o: Object| o.generation())
    }
}

/// A fresh part object's name.
fn part_name(client: &Client) -> String {
    format!(
        "{}parts/{}",
        client.scratch_prefix(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Where the claims of appends to the object `name` (or under it, for a directory prefix)
/// are kept.
pub(super) fn claims_prefix(client: &Client, name: &str) -> String {
    if name.is_empty() {
        format!("{}claims/", client.scratch_prefix())
    } else {
        format!("{}claims/{name}/", client.scratch_prefix())
    }
}

/// Composes `target` from any number of sources, grouping them 32 at a time into
/// intermediate parts first when there are more.
async fn compose_all(
    client: &Client,
    mut sources: Vec<String>,
    target: &str,
    path: &str,
    if_generation: Option<u64>,
) -> Result<Object, StorageError> {
    let mut intermediates = Vec::new();
    let rounds = sources.len();
    for _ in 0..rounds {
        if sources.len() <= MAX_COMPOSE_SOURCES {
            break;
        }
        let group: Vec<String> = sources.drain(..MAX_COMPOSE_SOURCES).collect();
        let part = part_name(client);
        if let Err(e) = client.compose(&group, &part, path, None).await {
            delete_parts(client, path, intermediates).await;
            return Err(e);
        }
        intermediates.push(part.clone());
        sources.insert(0, part);
    }
    let result = client.compose(&sources, target, path, if_generation).await;
    delete_parts(client, path, intermediates).await;
    result
}

/// Deletes part objects; failures only leave garbage in the scratch area, logged.
async fn delete_parts(client: &Client, path: &str, parts: Vec<String>) {
    let results: Vec<Result<(), StorageError>> = futures_util::stream::iter(parts)
        .map(|p| async move { client.delete(&p, path, None).await })
        .buffer_unordered(DELETE_CONCURRENCY)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => tracing::warn!(
                target: "wharf::storage::gcs", error = %e, "part object not deleted"
            ),
        }
    }
}

#[async_trait::async_trait]
impl FileWriter for GcsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(&data);
        while self.buf.len() >= self.chunk {
            let part = self.buf.split_to(self.chunk).freeze();
            self.store_part(part).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        if matches!(self.kind, Kind::Atomic) && self.parts.is_empty() {
            // One chunk at most: one upload.
            self.finished = true;
            let content = self.buf.split().freeze();
            return self
                .client
                .upload(&self.name, &self.path, content, None)
                .await
                .map(|_| ());
        }
        self.publish().await.map(|_| ())
    }

    async fn commit_to(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        if matches!(self.kind, Kind::Atomic) {
            return Err(io_error(
                "commit",
                &self.path,
                "commit_to is for append writers",
            ));
        }
        let target = self.client.name(to)?;
        let generation = self.publish().await?;
        // No append may follow the bytes being placed.
        self.claim(generation).await?;
        match self
            .client
            .rewrite(&self.name, &target, &self.path, Some(generation))
            .await
        {
            Ok(()) => {}
            Err(StorageError::Busy(_)) => return Err(StorageError::Changed(self.path.clone())),
            Err(e) => return Err(e),
        }
        match self
            .client
            .delete(&self.name, &self.path, Some(generation))
            .await
        {
            Ok(()) | Err(StorageError::NotFound(_)) | Err(StorageError::Busy(_)) => {}
            Err(e) => return Err(e),
        }
        forget_claims(&self.client, &self.name, &self.path).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.finished = true;
        let parts = std::mem::take(&mut self.parts);
        delete_parts(&self.client, &self.path, parts).await;
        Ok(())
    }
}

impl Drop for GcsWriter {
    // A writer dropped mid-request: its parts are deleted in the background.
    fn drop(&mut self) {
        if self.finished || self.parts.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let path = std::mem::take(&mut self.path);
        let parts = std::mem::take(&mut self.parts);
        runtime.spawn(async move { delete_parts(&client, &path, parts).await });
    }
}

/// Deletes the append claims of the object `name` and of everything under it.
pub(super) async fn forget_claims(
    client: &Client,
    name: &str,
    path: &str,
) -> Result<(), StorageError> {
    let (claims, _) = client
        .list(&claims_prefix(client, name), false, path)
        .await?;
    let names = claims.into_iter().map(|o| o.name).collect();
    delete_parts(client, path, names).await;
    Ok(())
}
