//! Writers: appends that survive across requests and nodes, and atomic whole-object writes.
//!
//! A file is one object. An append reads the object's size, generation and component count
//! (the storage truth: any node can continue from it), streams the new bytes into ONE part
//! object in the driver's scratch area through a resumable upload session (a full chunk is
//! sent as soon as it is buffered, so at most one chunk is held), and on commit composes the
//! file from the old object and that part in one `compose` conditional on the generation it
//! started from. That is the only step that changes the file, so a writer that fails, is
//! cancelled or is dropped leaves it as it was.
//!
//! Each append adds one component to the file. When the next one would pass the service's
//! limit of [`MAX_COMPONENTS`], the writer first copies the old object through itself into a
//! fresh, non-composite part (streamed, one chunk held; the way Google documents to reset the
//! count) and composes from that copy instead: the file is then made of two components.
//!
//! Before composing, a writer claims the generation it appends to by creating a small claim
//! object with `ifGenerationMatch=0`: of two writers opened at the same point only the first
//! to commit succeeds, even where `compose` preconditions are not enforced (emulators).
//!
//! An open session is named by a marker object in the scratch area (its content is the
//! session's id), deleted when the part is finished: upload purging cancels the sessions and
//! deletes the parts and claims that nodes which died mid-request left behind.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::client::{io_error, Client};
use crate::storage::drivers::bulk_delete::delete_each;
use crate::storage::{FileWriter, StorageError};

/// Components a GCS object may be made of: `compose` refuses to make more.
pub(super) const MAX_COMPONENTS: u64 = 1024;

/// The object an append starts from.
#[derive(Debug, Clone, Copy)]
struct Base {
    generation: u64,
    size: u64,
    components: u64,
}

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: the stored object (`None`: there was none), then the part.
    Append { base: Option<Base> },
    /// `atomic_writer(path)`: the session creates the file itself when finished.
    Atomic,
}

/// A resumable upload session creating one object when finished.
struct Session {
    /// The object it creates.
    name: String,
    id: String,
    /// The scratch object naming the session, for purging; `None` for atomic writes.
    marker: Option<String>,
    /// Bytes sent so far.
    sent: u64,
}

impl Session {
    /// Opens a session for `name`; with `marked`, records it in the scratch area first.
    async fn open(
        client: &Client,
        name: String,
        path: &str,
        marked: bool,
    ) -> Result<Session, StorageError> {
        let id = client.start_session(&name, path).await?;
        let mut session = Session {
            name,
            id,
            marker: None,
            sent: 0,
        };
        if marked {
            let marker = format!(
                "{}{}",
                sessions_prefix(client),
                uuid::Uuid::new_v4().simple()
            );
            if let Err(e) = client
                .upload(&marker, path, Bytes::from(session.id.clone()), None)
                .await
            {
                session.abort(client, path).await;
                return Err(e);
            }
            session.marker = Some(marker);
        }
        Ok(session)
    }

    /// Sends a full chunk (a multiple of 256 KiB).
    async fn send(&mut self, client: &Client, path: &str, data: Bytes) -> Result<(), StorageError> {
        let len = data.len() as u64;
        client
            .put_chunk(&self.id, path, self.sent, data, None)
            .await?;
        self.sent += len;
        Ok(())
    }

    /// Sends the last bytes: the object is created; returns its size.
    async fn finish(self, client: &Client, path: &str, rest: Bytes) -> Result<u64, StorageError> {
        let total = self.sent + rest.len() as u64;
        let result = client
            .put_chunk(&self.id, path, self.sent, rest, Some(total))
            .await;
        match result {
            Ok(object) => {
                let size = object.map_or(total, |o| o.size());
                if let Some(marker) = self.marker {
                    delete_scratch(client, path, vec![marker]).await;
                }
                if size != total {
                    return Err(io_error(
                        "UploadChunk",
                        path,
                        format!("the finished part holds {size} bytes, not {total}"),
                    ));
                }
                Ok(size)
            }
            Err(e) => {
                self.abort(client, path).await;
                Err(e)
            }
        }
    }

    /// Cancels the session and forgets its marker; failures only leave garbage for purging.
    async fn abort(self, client: &Client, path: &str) {
        if let Err(e) = client.cancel_session(&self.id, path).await {
            tracing::debug!(target: "wharf::storage::gcs", error = %e, "upload session not cancelled");
        }
        if let Some(marker) = self.marker {
            delete_scratch(client, path, vec![marker]).await;
        }
    }
}

/// An open writer, buffering at most one chunk.
pub(super) struct GcsWriter {
    client: Arc<Client>,
    path: String,
    name: String,
    kind: Kind,
    chunk: usize,
    /// The session the bytes stream into, once a full chunk was written.
    session: Option<Session>,
    /// Finished part objects of this writer, deleted once it is done.
    parts: Vec<String>,
    /// Bytes not sent yet.
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
            session: None,
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
                Some(Base {
                    generation: object.generation(),
                    size: object.size(),
                    components: object.components(),
                })
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
            session: None,
            parts: Vec::new(),
            buf: BytesMut::new(),
            size: offset,
            finished: false,
        })
    }

    /// Sends a full chunk, opening the session on the first one.
    async fn send_chunk(&mut self, data: Bytes) -> Result<(), StorageError> {
        let session = match &mut self.session {
            Some(s) => s,
            None => {
                let (target, marked) = match self.kind {
                    Kind::Atomic => (self.name.clone(), false),
                    Kind::Append { .. } => (part_name(&self.client), true),
                };
                let opened = Session::open(&self.client, target, &self.path, marked).await?;
                self.session.insert(opened)
            }
        };
        session.send(&self.client, &self.path, data).await
    }

    /// Stores what is not stored yet as this writer's one part (finishing the session, or
    /// in one upload when it never needed one); `None`: nothing was written.
    async fn store_part(&mut self) -> Result<Option<String>, StorageError> {
        let rest = self.buf.split().freeze();
        if let Some(session) = self.session.take() {
            let part = session.name.clone();
            // Listed first: deleted with the others even if finishing fails half-way.
            self.parts.push(part.clone());
            session.finish(&self.client, &self.path, rest).await?;
            return Ok(Some(part));
        }
        if rest.is_empty() {
            return Ok(None);
        }
        let part = part_name(&self.client);
        self.parts.push(part.clone());
        self.client.upload(&part, &self.path, rest, None).await?;
        Ok(Some(part))
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

    /// Composes the file from the old object and the new part; returns its generation.
    async fn append_part(&mut self, base: Option<Base>) -> Result<u64, StorageError> {
        let part = self.store_part().await?;
        let Some(base) = base else {
            // The file's first bytes (or an empty file).
            return self.create(part).await;
        };
        let Some(part) = part else {
            // Nothing new: the file stays as it is.
            return Ok(base.generation);
        };
        let mut sources = Vec::with_capacity(2);
        let mut components = 1;
        if base.components + 1 > MAX_COMPONENTS {
            // Read at the generation the claim is for: a copy of exactly those bytes.
            let flat = self.flatten(base).await?;
            sources.push(flat);
            components += 1;
        } else {
            sources.push(self.name.clone());
            components += base.components;
        }
        sources.push(part);
        self.claim(base.generation).await?;
        let object = self
            .client
            .compose(
                &sources,
                &self.name,
                &self.path,
                Some(base.generation),
                components,
            )
            .await?;
        Ok(object.generation())
    }

    /// The file created from `part` (empty when `None`), only if there is none yet.
    async fn create(&mut self, part: Option<String>) -> Result<u64, StorageError> {
        self.claim(0).await?;
        let object = match part {
            Some(part) => {
                self.client
                    .compose(&[part], &self.name, &self.path, Some(0), 1)
                    .await?
            }
            None => {
                self.client
                    .upload(&self.name, &self.path, Bytes::new(), Some(0))
                    .await?
            }
        };
        Ok(object.generation())
    }

    /// Copies generation `base` of the file through this node into a new non-composite
    /// part (a chunk at a time); returns the part's name.
    async fn flatten(&mut self, base: Base) -> Result<String, StorageError> {
        let client = self.client.clone();
        let path = self.path.clone();
        let part = part_name(&client);
        self.parts.push(part.clone());
        let mut session = Session::open(&client, part.clone(), &path, true).await?;
        let mut stream = match client
            .get_generation(&self.name, &path, base.generation)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                session.abort(&client, &path).await;
                return Err(e);
            }
        };
        let mut buf = BytesMut::new();
        while let Some(piece) = stream.next().await {
            let sent = match piece {
                Ok(piece) => {
                    buf.extend_from_slice(&piece);
                    let mut sent = Ok(());
                    while sent.is_ok() && buf.len() >= self.chunk {
                        let chunk = buf.split_to(self.chunk).freeze();
                        sent = session.send(&client, &path, chunk).await;
                    }
                    sent
                }
                Err(e) => Err(e),
            };
            if let Err(e) = sent {
                session.abort(&client, &path).await;
                return Err(e);
            }
        }
        let size = session.finish(&client, &path, buf.freeze()).await?;
        if size != base.size {
            return Err(io_error(
                "flatten",
                &path,
                format!("copied {size} bytes of {}", base.size),
            ));
        }
        tracing::info!(
            target: "wharf::storage::gcs",
            path, components = base.components, size,
            "upload object copied to a single component"
        );
        Ok(part)
    }

    /// Appends what was written, claims the result so no append follows it, and copies it to
    /// `to`; the generation copied.
    async fn place_at(&mut self, to: &str) -> Result<u64, StorageError> {
        let Kind::Append { base } = self.kind else {
            return Err(io_error(
                "commit",
                &self.path,
                "commit_to is for append writers",
            ));
        };
        let target = self.client.name(to)?;
        let appended = self.append_part(base).await;
        self.clean_up().await;
        let generation = appended?;
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
        Ok(generation)
    }

    /// Ends the writer: its session cancelled, its parts deleted.
    async fn clean_up(&mut self) {
        self.finished = true;
        if let Some(session) = self.session.take() {
            session.abort(&self.client, &self.path).await;
        }
        let parts = std::mem::take(&mut self.parts);
        delete_scratch(&self.client, &self.path, parts).await;
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

/// Where the markers of open upload sessions are kept.
pub(super) fn sessions_prefix(client: &Client) -> String {
    format!("{}sessions/", client.scratch_prefix())
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

/// Deletes scratch objects; failures only leave garbage in the scratch area, logged.
async fn delete_scratch(client: &Client, path: &str, names: Vec<String>) {
    let deleted = delete_each(
        names,
        |p| async move { client.delete(&p, path, None).await },
    );
    if let Err(e) = deleted.await {
        tracing::warn!(target: "wharf::storage::gcs", error = %e, "scratch object not deleted");
    }
}

#[async_trait::async_trait]
impl FileWriter for GcsWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(&data);
        while self.buf.len() >= self.chunk {
            let chunk = self.buf.split_to(self.chunk).freeze();
            self.send_chunk(chunk).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let result = match self.kind {
            Kind::Atomic => match self.session.take() {
                // Finishing the session creates the file.
                Some(session) => {
                    let rest = self.buf.split().freeze();
                    session
                        .finish(&self.client, &self.path, rest)
                        .await
                        .map(|_| ())
                }
                // One chunk at most: one upload.
                None => {
                    let content = self.buf.split().freeze();
                    self.client
                        .upload(&self.name, &self.path, content, None)
                        .await
                        .map(|_| ())
                }
            },
            Kind::Append { base } => self.append_part(base).await.map(|_| ()),
        };
        self.clean_up().await;
        result
    }

    async fn commit_to(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let generation = self.place_at(to).await?;
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

    // The source and its claims go with the folder's delete (`delete_known_tree`).
    async fn commit_to_leaving_source(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        self.place_at(to).await.map(|_| ())
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.clean_up().await;
        Ok(())
    }
}

impl Drop for GcsWriter {
    // A writer dropped mid-request: its session is cancelled and its parts deleted in the
    // background.
    fn drop(&mut self) {
        if self.finished || (self.session.is_none() && self.parts.is_empty()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.client.clone();
        let path = std::mem::take(&mut self.path);
        let session = self.session.take();
        let parts = std::mem::take(&mut self.parts);
        runtime.spawn(async move {
            if let Some(session) = session {
                session.abort(&client, &path).await;
            }
            delete_scratch(&client, &path, parts).await
        });
    }
}

/// Deletes the append claims of the object `name` and of everything under it.
pub(super) async fn forget_claims(
    client: &Client,
    name: &str,
    path: &str,
) -> Result<(), StorageError> {
    let (claims, _) = client
        .list_as("ListClaims", &claims_prefix(client, name), false, path)
        .await?;
    let names = claims.into_iter().map(|o| o.name).collect();
    delete_scratch(client, path, names).await;
    Ok(())
}
