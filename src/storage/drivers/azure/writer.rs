//! Writers: appends that survive across requests and nodes, and atomic whole-blob writes.
//!
//! A file is a block blob. An append reads the committed block list (the storage truth: any
//! node can continue from it), stages each full block of new bytes with `Put Block`
//! (invisible to readers), and on commit names the old blocks then the new ones in one
//! `Put Block List` conditional on the entity tag it started from. That is the only step that
//! changes the file, so a writer that fails, is cancelled or is dropped leaves it as it was
//! (its staged blocks are discarded by the service), and of two writers opened at the same
//! point only the first to commit succeeds. A writer that moves the file elsewhere with
//! nothing to add (a PUT closing an upload with no last chunk) copies it on the condition of
//! the entity tag it opened, with no `Put Block List`.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};

use super::client::{io_error, Client, Condition};
use super::xml;
use crate::storage::{FileWriter, StorageError};

/// Bytes buffered before they are staged as a block: at most one block per open writer
/// (distribution's chunk size).
pub const BLOCK_SIZE: usize = 4 << 20;

/// A new block id: unique, and of the same length as every other id this driver makes (the
/// service requires one length per blob).
fn block_id() -> String {
    STANDARD.encode(format!("wharf-{}", uuid::Uuid::new_v4().simple()))
}

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: the committed blocks, then the staged ones.
    Append {
        /// Entity tag of the blob the writer started from; `None`: there was no blob.
        base: Option<String>,
        /// Ids of the blob's committed blocks.
        committed: Vec<String>,
    },
    /// `atomic_writer(path)`: the staged blocks replace whatever is there.
    Atomic,
}

/// An open writer, buffering at most one block.
pub(super) struct AzureWriter {
    client: Arc<Client>,
    path: String,
    name: String,
    kind: Kind,
    /// Blocks staged by this writer, in order.
    staged: Vec<String>,
    /// Bytes not staged yet.
    buf: BytesMut,
    /// Size of the file with everything written so far.
    size: u64,
}

impl AzureWriter {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(client: Arc<Client>, path: &str) -> Result<Self, StorageError> {
        let name = client.name(path)?;
        Ok(AzureWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Atomic,
            staged: Vec::new(),
            buf: BytesMut::new(),
            size: 0,
        })
    }

    /// A writer appending at `offset` to what is stored at `path`.
    pub(super) async fn append(
        client: Arc<Client>,
        path: &str,
        offset: u64,
    ) -> Result<Self, StorageError> {
        let name = client.name(path)?;
        let (base, committed) = match client.block_list(&name, path).await {
            // Blocks staged on a name never committed: no file yet.
            Ok(list) if list.etag.is_empty() && list.blocks.is_empty() => (None, Vec::new()),
            Ok(list) => {
                if list.size != offset {
                    return Err(StorageError::OffsetMismatch {
                        path: path.to_string(),
                        expected: offset,
                        actual: list.size,
                    });
                }
                let in_blocks: u64 = list.blocks.iter().map(|b| b.size).sum();
                if in_blocks != list.size {
                    // Written in one `Put Blob`, or an append blob: not made of blocks.
                    return Err(io_error(
                        "writer",
                        path,
                        "the blob is not a block list this driver can append to",
                    ));
                }
                let ids = list.blocks.into_iter().map(|b| b.id).collect();
                (Some(list.etag), ids)
            }
            Err(StorageError::NotFound(_)) => (None, Vec::new()),
            Err(e) => return Err(e),
        };
        if base.is_none() && offset != 0 {
            return Err(StorageError::NotFound(path.to_string()));
        }
        Ok(AzureWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Append { base, committed },
            staged: Vec::new(),
            buf: BytesMut::new(),
            size: offset,
        })
    }

    /// Stages `data` as the next block.
    async fn stage(&mut self, data: Bytes) -> Result<(), StorageError> {
        let id = block_id();
        self.client
            .put_block(&self.name, &self.path, &id, data)
            .await?;
        self.staged.push(id);
        Ok(())
    }

    /// Stages what is buffered and publishes the block list; returns the blob's entity tag.
    async fn publish(&mut self) -> Result<String, StorageError> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.stage(rest).await?;
        }
        let staged = self.staged.iter().map(|id| (id.as_str(), false));
        let (list, condition) = match &self.kind {
            Kind::Append { base, committed } => {
                let old = committed.iter().map(|id| (id.as_str(), true));
                let condition = match base {
                    Some(etag) => Condition::Matches(etag),
                    None => Condition::Absent,
                };
                (xml::block_list(old.chain(staged)), condition)
            }
            Kind::Atomic => (xml::block_list(staged), Condition::Always),
        };
        self.client
            .put_block_list(&self.name, &self.path, list, condition)
            .await
    }

    /// Commits, then copies the blob to `to` if it is still exactly what this writer committed;
    /// returns the entity tag copied.
    async fn place_at(&mut self, to: &str) -> Result<String, StorageError> {
        if matches!(self.kind, Kind::Atomic) {
            return Err(io_error(
                "commit",
                &self.path,
                "commit_to is for append writers",
            ));
        }
        let target = self.client.name(to)?;
        // Nothing to add (a PUT closing an upload with no last chunk): the blob stays as this
        // writer opened it, and the copy's condition does what the block list's would.
        let unchanged = match &self.kind {
            Kind::Append {
                base: Some(etag), ..
            } if self.staged.is_empty() && self.buf.is_empty() => Some(etag.clone()),
            _ => None,
        };
        let etag = match &unchanged {
            Some(etag) => etag.clone(),
            None => self.publish().await?,
        };
        // Copied only if still exactly what this writer committed (or opened, unchanged: then a
        // change is another writer's commit, which this one's would have lost to).
        match self
            .client
            .copy(&self.name, &target, &self.path, Some(&etag))
            .await
        {
            Ok(()) => {}
            Err(StorageError::Busy(_)) if unchanged.is_some() => {
                return Err(StorageError::Busy(self.path.clone()))
            }
            Err(StorageError::Busy(_)) => return Err(StorageError::Changed(self.path.clone())),
            Err(e) => return Err(e),
        }
        Ok(etag)
    }
}

#[async_trait::async_trait]
impl FileWriter for AzureWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(&data);
        while self.buf.len() >= BLOCK_SIZE {
            let block = self.buf.split_to(BLOCK_SIZE).freeze();
            self.stage(block).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        if !matches!(self.kind, Kind::Atomic) {
            return self.publish().await.map(|_| ());
        }
        if self.staged.is_empty() {
            // One block at most: one `Put Blob`, which stages nothing another writer's
            // commit could discard.
            let content = self.buf.split().freeze();
            return self
                .client
                .put_blob(&self.name, &self.path, content, Condition::Always)
                .await;
        }
        match self.publish().await {
            // Another replacement of the name (a writer of the same blob, a put or a delete)
            // committed while this one was staging, and the service discarded the blocks
            // staged here. That write came after this one began, so this replacement is
            // ordered just before it and already overwritten: nothing is lost.
            Err(StorageError::Busy(_)) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn commit_to(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let etag = self.place_at(to).await?;
        match self
            .client
            .delete(&self.name, &self.path, Condition::Matches(&etag))
            .await
        {
            Ok(()) | Err(StorageError::NotFound(_)) | Err(StorageError::Busy(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // The source goes with the folder's delete (`delete_known_tree`).
    async fn commit_to_leaving_source(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        self.place_at(to).await.map(|_| ())
    }

    // Staged blocks never become visible; the service discards them.
    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_are_unique_and_of_one_length() {
        let a = block_id();
        let b = block_id();
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
        assert!(STANDARD.decode(&a).unwrap().len() <= 64);
    }
}
