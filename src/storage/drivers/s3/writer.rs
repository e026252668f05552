//! Writers: appends that survive across requests and nodes, and atomic whole-object writes.
//!
//! An append stores the file in the [`tail`](super::tail) layout. Committing a writer uploads
//! its full parts, then replaces the tail object in one conditional `PutObject`: that is the
//! only step that changes what the file is, so a writer that fails or is cancelled leaves the
//! file as it was (parts it uploaded past the recorded count are ignored, overwritten by the
//! next writer, or dropped when the upload completes).
//!
//! Resuming needs only `HeadObject`. The kept part of the tail joins the next part: it is read
//! back when under the 5 MiB part minimum (so at most 5 MiB per request), and copied
//! server-side (`UploadPartCopy`) when larger. Chunks smaller than the minimum therefore
//! cost no re-copy of what came before, unlike distribution's complete-and-copy.

use std::sync::Arc;

use aws_sdk_s3::types::CompletedPart;
use bytes::{Bytes, BytesMut};

use super::client::{copy_ranges, Inner, PartCopy, PutCondition, MIN_PART};
use super::tail::{self, chain_part, Layout};
use crate::storage::{FileWriter, StorageError};

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: the file is the recorded parts plus the tail object.
    Append {
        /// This writer opened the multipart upload (abort it if the writer gives up).
        created_upload: bool,
    },
    /// `atomic_writer(path)`: nothing at the key until commit completes the upload.
    Atomic {
        /// Parts uploaded so far, for completion.
        completed: Vec<CompletedPart>,
    },
}

/// An open writer, buffering at most one part.
pub(super) struct S3Writer {
    s3: Arc<Inner>,
    path: String,
    key: String,
    kind: Kind,
    upload: Option<String>,
    /// Parts 1..=parts hold the start of the file.
    parts: i32,
    /// Bytes in those parts.
    parts_size: u64,
    /// Bytes after the parts, not yet stored.
    buf: BytesMut,
    /// [`chain_part`] over the parts' entity tags, when known.
    parts_digest: Option<String>,
    /// For appends, the entity tag of the tail object the writer started from (`None`: no
    /// file yet). The tail is replaced only if it is still that one, so of two writers opened
    /// at the same point only the first to commit succeeds.
    base: Option<String>,
    /// Committed or cancelled: nothing to clean up on drop.
    finished: bool,
}

impl S3Writer {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(s3: Arc<Inner>, path: &str) -> Result<Self, StorageError> {
        let key = s3.key(path)?;
        Ok(S3Writer {
            s3,
            path: path.to_string(),
            key,
            kind: Kind::Atomic {
                completed: Vec::new(),
            },
            upload: None,
            parts: 0,
            parts_size: 0,
            buf: BytesMut::new(),
            parts_digest: None,
            base: None,
            finished: false,
        })
    }

    /// A writer appending at `offset` to what is stored at `path`.
    pub(super) async fn append(
        s3: Arc<Inner>,
        path: &str,
        offset: u64,
    ) -> Result<Self, StorageError> {
        let key = s3.key(path)?;
        let mut w = S3Writer {
            s3: s3.clone(),
            path: path.to_string(),
            key: key.clone(),
            kind: Kind::Append {
                created_upload: false,
            },
            upload: None,
            parts: 0,
            parts_size: 0,
            buf: BytesMut::new(),
            parts_digest: Some(String::new()),
            base: None,
            finished: false,
        };
        if offset == 0 {
            // A new file: the commit checks that nothing was written meanwhile (an older
            // upload left at this key by a crash is orphaned and purged later).
            return Ok(w);
        }
        let (layout, _) = Layout::head(&s3, &key, path).await?;
        if layout.size() != offset {
            return Err(StorageError::OffsetMismatch {
                path: path.to_string(),
                expected: offset,
                actual: layout.size(),
            });
        }
        w.base = layout.etag.clone();
        w.upload = layout.upload.clone();
        w.parts = layout.parts;
        w.parts_size = layout.parts_size;
        w.parts_digest = if layout.parts == 0 {
            Some(String::new())
        } else {
            layout.parts_digest.clone()
        };
        let keep = offset - layout.parts_size;
        if keep == 0 {
            return Ok(w);
        }
        if keep < MIN_PART {
            let out = s3
                .get_object(&key, path, Some((0, Some(keep))), layout.etag.as_deref())
                .await?;
            let mut body = out.body;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| StorageError::Io {
                    op: "read",
                    path: path.to_string(),
                    source: std::io::Error::other(e.to_string()),
                })?;
                w.buf.extend_from_slice(&chunk);
            }
            if w.buf.len() as u64 != keep {
                return Err(StorageError::OffsetMismatch {
                    path: path.to_string(),
                    expected: offset,
                    actual: layout.parts_size + w.buf.len() as u64,
                });
            }
        } else {
            let upload = w.ensure_upload().await?;
            let ranges = copy_ranges(keep, s3.copy_chunk);
            let copy = PartCopy {
                source: key.clone(),
                source_etag: layout.etag.clone(),
                key: key.clone(),
                path: path.to_string(),
                upload,
            };
            let copied = s3.copy_parts(&copy, w.parts + 1, &ranges).await;
            let copied = match copied {
                Ok(parts) => parts,
                Err(e) => {
                    w.give_up().await;
                    return Err(e);
                }
            };
            for part in &copied {
                w.chain(part.e_tag().unwrap_or_default());
            }
            w.parts += ranges.len() as i32;
            w.parts_size += keep;
        }
        Ok(w)
    }

    async fn ensure_upload(&mut self) -> Result<String, StorageError> {
        if let Some(id) = &self.upload {
            return Ok(id.clone());
        }
        let id = self.s3.create_upload(&self.key, &self.path).await?;
        if let Kind::Append { created_upload } = &mut self.kind {
            *created_upload = true;
        }
        self.upload = Some(id.clone());
        Ok(id)
    }

    /// Records the next part's entity tag in the parts digest.
    fn chain(&mut self, etag: &str) {
        if let Some(d) = &mut self.parts_digest {
            *d = chain_part(d, etag);
        }
    }

    /// Uploads `data` as the next part.
    async fn push_part(&mut self, data: Bytes) -> Result<(), StorageError> {
        let upload = self.ensure_upload().await?;
        let number = self.parts + 1;
        let len = data.len() as u64;
        let etag = self
            .s3
            .upload_part(&self.key, &self.path, &upload, number, data)
            .await?;
        self.chain(&etag);
        if let Kind::Atomic { completed } = &mut self.kind {
            completed.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
        }
        self.parts = number;
        self.parts_size += len;
        Ok(())
    }

    /// The multipart upload this writer opened, if any, and which nothing refers to yet.
    fn own_upload(&self) -> Option<String> {
        match &self.kind {
            Kind::Append { created_upload } if *created_upload => self.upload.clone(),
            Kind::Atomic { .. } => self.upload.clone(),
            _ => None,
        }
    }

    async fn give_up(&mut self) {
        self.finished = true;
        self.buf.clear();
        if let Some(upload) = self.own_upload() {
            if let Err(e) = self.s3.abort(&self.key, &upload).await {
                tracing::warn!(error = %e, key = self.key, "could not abort a multipart upload; upload purging will");
            }
        }
    }
}

impl Drop for S3Writer {
    /// A writer dropped mid-request (client gone) aborts the upload it opened.
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let (Some(upload), Ok(rt)) = (self.own_upload(), tokio::runtime::Handle::try_current()) {
            let (s3, key) = (self.s3.clone(), self.key.clone());
            rt.spawn(async move {
                if let Err(e) = s3.abort(&key, &upload).await {
                    tracing::warn!(error = %e, key, "could not abort a multipart upload; upload purging will");
                }
            });
        }
    }
}

#[async_trait::async_trait]
impl FileWriter for S3Writer {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.buf.extend_from_slice(&data);
        let part = self.s3.part_size as usize;
        while self.buf.len() >= part {
            let chunk = self.buf.split_to(part).freeze();
            self.push_part(chunk).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.parts_size + self.buf.len() as u64
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        let tail = self.buf.split().freeze();
        let result = match &self.kind {
            Kind::Append { .. } => {
                let layout = Layout {
                    upload: self.upload.clone(),
                    parts: self.parts,
                    parts_size: self.parts_size,
                    parts_digest: self.parts_digest.clone(),
                    ..Layout::default()
                };
                let condition = match &self.base {
                    Some(etag) => PutCondition::Matches(etag),
                    None => PutCondition::Absent,
                };
                self.s3
                    .put(&self.key, &self.path, tail, layout.metadata(), condition)
                    .await
            }
            Kind::Atomic { .. } if self.upload.is_none() => {
                self.s3
                    .put(&self.key, &self.path, tail, None, PutCondition::Always)
                    .await
            }
            Kind::Atomic { .. } => {
                let pushed = if tail.is_empty() {
                    Ok(())
                } else {
                    self.push_part(tail).await
                };
                match (pushed, &mut self.kind, &self.upload) {
                    (Ok(()), Kind::Atomic { completed }, Some(upload)) => {
                        let parts = std::mem::take(completed);
                        self.s3.complete(&self.key, &self.path, upload, parts).await
                    }
                    (Err(e), _, _) => Err(e),
                    _ => unreachable!("atomic writer with an upload"),
                }
            }
        };
        match result {
            Ok(()) => {
                self.finished = true;
                Ok(())
            }
            // A failed publish of an atomic write leaves nothing behind. A failed tail write
            // may still have landed (the answer was lost), naming the upload: it stays, and
            // is aborted by upload purging if nothing uses it.
            Err(e) if matches!(self.kind, Kind::Atomic { .. }) => {
                self.give_up().await;
                Err(e)
            }
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        if matches!(self.kind, Kind::Atomic { .. }) {
            return Err(StorageError::InvalidPath(to.to_string()));
        }
        let s3 = self.s3.clone();
        let (key, path) = (self.key.clone(), self.path.clone());
        let target = s3.key(to)?;
        self.commit().await?;
        // The file as committed, made whole in place and copied server-side. Unlike the
        // filesystem's locked rename, a writer opened after this commit could still append
        // before the copy; the registry's upload URLs make that a client racing itself.
        tail::move_file(&s3, &key, &target, &path).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.give_up().await;
        Ok(())
    }
}
