//! Writers: appends that survive across requests, nodes and binaries, and atomic whole-object
//! writes.
//!
//! An append keeps the file in distribution's [layout](super::appended): parts of one open
//! multipart upload. Full parts are uploaded as the body arrives; the commit uploads the rest
//! as the (possibly short) last part, then replaces the parts record, conditional on the record
//! the writer opened with: of two writers opened at one offset only the first to commit is
//! acknowledged, and a part the loser replaced is caught before the file is published.
//!
//! Appending after a short last part is distribution's way too: the upload is completed onto
//! the file's key and a new one opened from that object, its bytes copied server-side when
//! they make a whole part, else read back (under 5 MiB) and sent again with the new bytes.

use std::sync::Arc;

use aws_sdk_s3::types::CompletedPart;
use bytes::Bytes;

use super::appended::{self, parts_digest, Appended, Note, Part, Record};
use super::client::{Inner, PutCondition, MIN_PART};
use super::spool::{PartBody, Spool};
use crate::storage::{FileWriter, StorageError};

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: the file is the parts of an open upload.
    Append {
        /// The file as the writer opened it.
        opened: Appended,
        /// The parts may be followed by more as they are (checked, or made so).
        ready: bool,
        /// An upload this writer opened that nothing acknowledged refers to yet: aborted if
        /// the writer gives up.
        created: Option<String>,
        /// Opened from a note, by listing the upload's parts just now.
        noted: bool,
    },
    /// `atomic_writer(path)`: nothing at the key until commit. Files larger than a part are
    /// uploaded under a staging key, completed there and copied: an open upload on a file's
    /// own key is an appended file, which readers would complete.
    Atomic {
        /// Where the parts go.
        staging: String,
    },
}

/// An open writer, holding at most one part (plus, right after a restart, the bytes of a
/// short file read back), in memory only while small (see [`Spool`]).
pub(super) struct S3Writer {
    s3: Arc<Inner>,
    path: String,
    key: String,
    kind: Kind,
    upload: Option<String>,
    /// Parts 1..=n hold the start of the file.
    parts: Vec<Part>,
    /// Bytes after the parts, not yet stored.
    buf: Spool,
    /// Committed or cancelled: nothing to clean up on drop.
    finished: bool,
}

impl S3Writer {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(s3: Arc<Inner>, path: &str) -> Result<Self, StorageError> {
        let key = s3.key(path)?;
        let staging = match key.rsplit_once('/') {
            Some((dir, name)) => format!("{dir}/_staging_{name}_{}", uuid::Uuid::new_v4()),
            None => format!("_staging_{key}_{}", uuid::Uuid::new_v4()),
        };
        Ok(S3Writer {
            s3,
            path: path.to_string(),
            key,
            kind: Kind::Atomic { staging },
            upload: None,
            parts: Vec::new(),
            buf: Spool::default(),
            finished: false,
        })
    }

    /// A writer appending at `offset` to what is stored at `path`, opened from the last
    /// writer's note when it still holds.
    pub(super) async fn append(
        s3: Arc<Inner>,
        path: &str,
        offset: u64,
        note: Option<&str>,
    ) -> Result<Self, StorageError> {
        let key = s3.key(path)?;
        // The upload of a note taken before any writer committed went away: a later writer
        // completed it (appending after a short part), or it was aborted with the file.
        let mut fresh_gone = false;
        let noted = match note.and_then(Note::decode) {
            Some(note) => {
                let fresh = note.is_fresh();
                let noted = Appended::from_note(&s3, &key, path, note).await?;
                fresh_gone = fresh && noted.is_none();
                noted
            }
            None => None,
        };
        let from_note = noted.is_some();
        let opened = match noted {
            Some(file) => file,
            None => Appended::load(&s3, &key, path, false).await?,
        };
        if fresh_gone && !opened.exists() {
            // Nothing at all where the upload was: the file was deleted (a cancelled or
            // purged upload session), which a writer must not bring back.
            return Err(StorageError::NotFound(path.to_string()));
        }
        opened.check(path)?;
        if opened.size() != offset {
            return Err(StorageError::OffsetMismatch {
                path: path.to_string(),
                expected: offset,
                actual: opened.size(),
            });
        }
        Ok(S3Writer {
            s3,
            path: path.to_string(),
            key,
            upload: opened.upload.clone(),
            parts: opened.parts.clone(),
            kind: Kind::Append {
                opened,
                ready: false,
                created: None,
                noted: from_note,
            },
            buf: Spool::default(),
            finished: false,
        })
    }

    /// Opens an empty file for appends: an upload with no parts. Returns the note for its
    /// first writer (no record yet).
    pub(super) async fn prepare(s3: &Inner, path: &str) -> Result<String, StorageError> {
        let key = s3.key(path)?;
        let upload = s3.create_upload(&key, path).await?;
        let record = Record {
            upload,
            parts: 0,
            digest: parts_digest(&[]),
            whole: None,
        };
        Ok(Note { record, etag: None }.encode())
    }

    /// Makes sure parts can be added after `self.parts`: an upload exists, and its last part
    /// is not short (else distribution's restart from the completed object).
    async fn make_ready(&mut self) -> Result<(), StorageError> {
        let s3 = self.s3.clone();
        let (key, path) = (self.key.clone(), self.path.clone());
        match &mut self.kind {
            Kind::Atomic { staging } => {
                if self.upload.is_none() {
                    self.upload = Some(s3.create_upload(staging, &path).await?);
                }
                Ok(())
            }
            Kind::Append { ready: true, .. } => Ok(()),
            Kind::Append {
                opened,
                ready,
                created,
                noted,
            } => {
                // A reader may have made the file whole since it was opened (completing its
                // upload and opening another with the same bytes), as may registry:2's
                // writer: go on from the file as it is now, if it still holds what it held.
                // A writer opened from a note listed its upload's parts just now; should the
                // upload be completed since, its part upload fails and the request is told
                // to go on from the stored size.
                if !*noted && s3.first_upload(&key, &path).await? != self.upload {
                    let now = Appended::load(&s3, &key, &path, false).await?;
                    now.check(&path)?;
                    if now.size() != opened.size() {
                        return Err(StorageError::Busy(path));
                    }
                    self.upload = now.upload.clone();
                    self.parts = now.parts.clone();
                    *opened = now;
                }
                let short_last = self.parts.last().is_some_and(|p| p.size < MIN_PART);
                let object = opened.object.clone().filter(|(size, _)| *size > 0);
                match (&self.upload, short_last, object) {
                    (Some(_), false, _) => {}
                    (None, _, None) => {
                        let upload = s3.create_upload(&key, &path).await?;
                        *created = Some(upload.clone());
                        self.upload = Some(upload);
                    }
                    (upload, _, object) => {
                        // The file becomes the object at the key, and a new upload starts
                        // from it.
                        let (size, etag) = match (upload, object) {
                            (Some(_), _) => {
                                opened
                                    .complete_in_place(&s3, &key, &path, &self.parts)
                                    .await?
                            }
                            (None, Some(object)) => object,
                            (None, None) => unreachable!("matched above"),
                        };
                        let (upload, parts) =
                            Appended::reopen(&s3, &key, &path, size, &etag).await?;
                        if size < MIN_PART {
                            // Part 1 is a copy of the short file, so that it stays whole if
                            // this writer stops; its bytes are read back and sent again as
                            // the start of the new part 1.
                            let start = appended::read_small(&s3, &key, &path, &etag).await?;
                            self.buf.prepend(start, &path).await?;
                            self.parts.clear();
                        } else {
                            self.parts = parts;
                        }
                        self.upload = Some(upload);
                    }
                }
                *ready = true;
                Ok(())
            }
        }
    }

    /// Uploads the next part; [`Self::make_ready`] was called.
    async fn push_part(&mut self, body: PartBody) -> Result<(), StorageError> {
        let upload = self.upload.clone().expect("an upload is ready");
        let number = self.parts.len() as i32 + 1;
        let size = body.len();
        let etag = match self
            .s3
            .upload_part(self.upload_key(), &self.path, &upload, number, &body)
            .await
        {
            Ok(etag) => etag,
            // Another writer completed the upload meanwhile (appending after a short part, or
            // a reader): this one lost the race. Stores answer that with 404 or even 500.
            Err(e) if matches!(self.kind, Kind::Append { .. }) => {
                let current = self.s3.first_upload(&self.key, &self.path).await;
                return Err(match current {
                    Ok(current) if current.as_deref() != Some(upload.as_str()) => {
                        StorageError::Busy(self.path.clone())
                    }
                    _ => e,
                });
            }
            Err(e) => return Err(e),
        };
        self.parts.push(Part { number, etag, size });
        Ok(())
    }

    /// The key of this writer's multipart upload.
    fn upload_key(&self) -> &str {
        match &self.kind {
            Kind::Append { .. } => &self.key,
            Kind::Atomic { staging } => staging,
        }
    }

    /// The multipart upload this writer opened, if any, and which nothing refers to yet.
    fn own_upload(&self) -> Option<String> {
        match &self.kind {
            Kind::Append { created, .. } => created.clone(),
            Kind::Atomic { .. } => self.upload.clone(),
        }
    }

    async fn give_up(&mut self) {
        self.finished = true;
        self.buf.clear();
        if let Some(upload) = self.own_upload() {
            if let Err(e) = self.s3.abort(self.upload_key(), &upload).await {
                tracing::warn!(error = %e, key = self.key, "could not abort a multipart upload; upload purging will");
            }
        }
    }

    /// Uploads what is buffered as the last part.
    async fn flush(&mut self) -> Result<(), StorageError> {
        if !self.buf.is_empty() {
            self.make_ready().await?;
            let n = self.buf.len();
            let rest = self.buf.front(n, &self.path).await?;
            self.push_part(rest).await?;
            self.buf.consume(n, &self.path).await?;
        }
        Ok(())
    }

    /// Stores the rest and replaces the record; returns the note for the next writer.
    async fn commit_append(&mut self) -> Result<Option<String>, StorageError> {
        self.flush().await?;
        if self.upload.is_none() {
            // Nothing stored yet: an empty upload, which registry:2 nodes find and continue.
            self.upload = Some(self.s3.create_upload(&self.key, &self.path).await?);
        }
        let Kind::Append { opened, .. } = &self.kind else {
            unreachable!("an append")
        };
        let record = Record {
            upload: self.upload.clone().unwrap_or_default(),
            parts: self.parts.len(),
            digest: parts_digest(&self.parts),
            whole: None,
        };
        let etag = opened
            .write_record(&self.s3, &self.key, &self.path, &record)
            .await?;
        Ok(etag.map(|etag| {
            Note {
                record,
                etag: Some(etag),
            }
            .encode()
        }))
    }

    async fn commit_atomic(&mut self) -> Result<(), StorageError> {
        match self.upload.clone() {
            None => {
                let n = self.buf.len();
                let body = self.buf.front(n, &self.path).await?;
                self.s3
                    .put_tagged(&self.key, &self.path, &body, None, PutCondition::Always)
                    .await
                    .map(|_| ())
            }
            Some(upload) => {
                self.flush().await?;
                let staging = self.upload_key().to_string();
                let parts: Vec<CompletedPart> = self.parts.iter().map(Part::completed).collect();
                self.s3
                    .complete(&staging, &self.path, &upload, parts)
                    .await?;
                let size = self.size();
                let copied = self
                    .s3
                    .copy_object(&staging, &self.key, &self.path, size)
                    .await;
                if let Err(e) = self.s3.delete_object(&staging, &self.path).await {
                    tracing::warn!(error = %e, key = staging, "could not delete a staged upload");
                }
                copied
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
            let (s3, key) = (self.s3.clone(), self.upload_key().to_string());
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
    async fn write(&mut self, mut data: Bytes) -> Result<(), StorageError> {
        let part = self.s3.part_size.max(MIN_PART);
        // Bounded: each round holds more bytes or stores a part.
        while !data.is_empty() || self.buf.len() >= part {
            // At most a part is held: a longer body goes up part by part as it arrives.
            let room = part.saturating_sub(self.buf.len()).min(data.len() as u64);
            let now = data.split_to(room as usize);
            self.buf.push(&now, &self.path).await?;
            while self.buf.len() >= part {
                // First: a restart may put the bytes of a short file in front of the buffer.
                self.make_ready().await?;
                let chunk = self.buf.front(part, &self.path).await?;
                self.push_part(chunk).await?;
                self.buf.consume(part, &self.path).await?;
            }
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.parts.iter().map(|p| p.size).sum::<u64>() + self.buf.len()
    }

    async fn commit(self: Box<Self>) -> Result<(), StorageError> {
        self.commit_noted().await.map(|_| ())
    }

    async fn commit_noted(mut self: Box<Self>) -> Result<Option<String>, StorageError> {
        let result = match self.kind {
            Kind::Append { .. } => self.commit_append().await,
            Kind::Atomic { .. } => self.commit_atomic().await.map(|()| None),
        };
        match result {
            Ok(note) => {
                self.finished = true;
                Ok(note)
            }
            // A failed publish of an atomic write leaves nothing behind.
            Err(e) if matches!(self.kind, Kind::Atomic { .. }) => {
                self.give_up().await;
                Err(e)
            }
            // Parts an append uploaded stay: they are the client's next bytes, which the file
            // (as registry:2 counts it too) now holds.
            Err(e) => {
                self.finished = true;
                Err(e)
            }
        }
    }

    async fn commit_to(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let (s3, key, path) = (self.s3.clone(), self.key.clone(), self.path.clone());
        self.publish(to).await?;
        appended::remove(&s3, &key, &path).await
    }

    // The caller's delete of the folder removes the file and its record, in the same request
    // as the folder's other files.
    async fn commit_to_leaving_source(self: Box<Self>, to: &str) -> Result<(), StorageError> {
        self.publish(to).await
    }

    async fn cancel(mut self: Box<Self>) -> Result<(), StorageError> {
        self.give_up().await;
        Ok(())
    }
}

impl S3Writer {
    /// Completes the file in place and copies it to `to`; the file stays where it was.
    async fn publish(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        let Kind::Append { .. } = self.kind else {
            return Err(StorageError::InvalidPath(to.to_string()));
        };
        let target = self.s3.key(to)?;
        self.finished = true;
        self.flush().await?;
        let Kind::Append { opened, .. } = &self.kind else {
            unreachable!("an append")
        };
        let mut file = opened.clone();
        file.upload = self.upload.clone();
        if file.upload.is_none() && file.object.is_none() {
            // Nothing was ever stored: an empty file.
            self.s3
                .put(
                    &self.key,
                    &self.path,
                    Bytes::new(),
                    None,
                    PutCondition::Always,
                )
                .await?;
            file.object = Some((0, String::new()));
        }
        // Completed with exactly the parts this writer knows (S3 refuses a completion naming
        // a part that was replaced since), then copied.
        let (size, _) = file
            .complete_in_place(&self.s3, &self.key, &self.path, &self.parts)
            .await?;
        self.s3
            .copy_object(&self.key, &target, &self.path, size)
            .await
    }
}
