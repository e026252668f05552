//! Writers: appends that survive across requests and nodes, and atomic whole-file writes.
//!
//! A file being appended to is a dynamic large object (DLO), as distribution 2.8 makes it: a
//! manifest at the file's name whose `X-Object-Manifest` names a segment prefix, and numbered
//! segments under it, each at most one chunk. Any node continues from storage alone: it lists
//! the segments (their sizes sum to the file's) and uploads the next numbers. Segments are
//! visible as soon as they are stored, so a writer that fails may leave whole segments of its
//! first bytes appended, as S3's parts are. Each commit records in the manifest a digest of
//! the segments' MD5s in order; a commit refuses (`Busy`) when another writer committed since
//! this one opened, and publication refuses (`Changed`) a file whose segments no longer match
//! the record (a racing writer replaced one).
//!
//! An atomic write buffers one chunk; a small file is one `PUT`, a larger one becomes
//! segments under a prefix of its own and appears with its manifest on commit.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rand::Rng;

use super::client::{io_error, Client, Head, Listed, SEGMENTS_META};
use super::names::{
    object_name, parse_manifest, segment_name, segment_number, segment_prefix, segments_digest,
};
use crate::storage::{relative_path, FileWriter, StorageError};

/// A segment of a DLO as listed: its number and MD5.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// From 1.
    pub number: usize,
    /// Stored size.
    pub bytes: u64,
    /// MD5 (the listing's hash, a `PUT`'s ETag).
    pub md5: String,
}

/// The segments under `segments`, in order (other objects under the prefix are ignored).
pub(super) async fn list_segments(
    client: &Client,
    segments: &str,
    path: &str,
) -> Result<Vec<Segment>, StorageError> {
    let listed = client
        .list_as("ListSegments", &format!("{segments}/"), None, path)
        .await?;
    let mut out: Vec<Segment> = listed
        .into_iter()
        .filter_map(|l| match l {
            Listed::Object {
                name, bytes, hash, ..
            } => segment_number(segments, &name).map(|number| Segment {
                number,
                bytes,
                md5: hash,
            }),
            Listed::Subdir(_) => None,
        })
        .collect();
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// What the file's name held when an append writer opened, checked again at commit.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Base {
    /// Nothing.
    Absent,
    /// A plain object, copied as the first segment.
    Plain,
    /// A DLO over these segments with this record.
    Manifest {
        segments: String,
        recorded: Option<String>,
    },
}

/// What commit publishes.
enum Kind {
    /// `writer(path, offset)`: segments after those there, then the manifest.
    Append {
        base: Base,
        /// MD5s of the segments there when opened.
        committed: Vec<String>,
    },
    /// `atomic_writer(path)`: one `PUT`, or segments and a manifest.
    Atomic,
}

/// An open writer, buffering at most one chunk.
pub(super) struct SwiftWriter {
    client: Arc<Client>,
    path: String,
    name: String,
    kind: Kind,
    /// The segment prefix this writer uploads under.
    segments: String,
    /// Number of the next segment.
    next: usize,
    /// Segments uploaded by this writer: number and MD5.
    uploaded: Vec<(usize, String)>,
    buf: BytesMut,
    size: u64,
}

/// A fresh segment prefix for `path`.
pub(super) fn fresh_segments(client: &Client, path: &str) -> String {
    let random: [u8; 32] = rand::thread_rng().gen();
    segment_prefix(client.prefix(), path, &random)
}

/// Writes at `name` the DLO manifest over `segments`, recording `digest` (of the segments'
/// MD5s in order); only where nothing is stored when `fresh` (else `Busy`).
pub(super) async fn put_dlo_manifest(
    client: &Client,
    name: &str,
    path: &str,
    segments: &str,
    digest: &str,
    fresh: bool,
) -> Result<(), StorageError> {
    let mut headers = vec![
        (
            "x-object-manifest",
            format!("{}/{segments}", client.container()),
        ),
        (SEGMENTS_META, digest.to_string()),
    ];
    if fresh {
        headers.push(("if-none-match", "*".to_string()));
    }
    client
        .put(name, path, Bytes::new(), &headers)
        .await
        .map(|_| ())
}

/// What an append's commit wrote, for the next writer of the file: its DLO's segment prefix and
/// the digest of the segments' MD5s it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    /// The segment prefix.
    pub segments: String,
    /// The recorded digest.
    pub recorded: String,
}

impl Note {
    /// The note as text (`<segments> <digest>`).
    pub fn encode(&self) -> String {
        format!("{} {}", self.segments, self.recorded)
    }

    /// A note of this container's segments, or `None` for anything else.
    pub fn parse(client: &Client, text: &str) -> Option<Note> {
        let (segments, recorded) = text.split_once(' ')?;
        // Spelled as `segment_prefix` spells this container's segments.
        let area = format!("{}/segments/", client.prefix());
        let ours = segments.starts_with(area.trim_start_matches('/'));
        (ours && !recorded.is_empty() && !recorded.contains(' ')).then(|| Note {
            segments: segments.to_string(),
            recorded: recorded.to_string(),
        })
    }
}

/// Creates `path` as an empty DLO over fresh segments, as registry:2's POST does; `Busy` if
/// anything is stored there. Returns the note of the empty file.
pub(super) async fn create_empty(client: &Client, path: &str) -> Result<Note, StorageError> {
    relative_path(path)?;
    let name = object_name(client.prefix(), path);
    let segments = fresh_segments(client, path);
    let recorded = segments_digest(std::iter::empty());
    put_dlo_manifest(client, &name, path, &segments, &recorded, true).await?;
    Ok(Note { segments, recorded })
}

impl SwiftWriter {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(client: Arc<Client>, path: &str) -> Result<Self, StorageError> {
        relative_path(path)?;
        let name = object_name(client.prefix(), path);
        let segments = fresh_segments(&client, path);
        Ok(SwiftWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Atomic,
            segments,
            next: 1,
            uploaded: Vec::new(),
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
        relative_path(path)?;
        let name = object_name(client.prefix(), path);
        let head = client.head(&name, path).await;
        Self::opened(client, path, name, offset, head).await
    }

    /// [`Self::append`] given the note of the file's last commit: when the segments it names
    /// still hold exactly `offset` bytes with the digest it recorded, the file is opened from
    /// that listing alone (its manifest is checked at commit, as always). At offset 0 the file
    /// must still be there: a POST made it, and its absence means the upload was cancelled.
    pub(super) async fn append_noted(
        client: Arc<Client>,
        path: &str,
        offset: u64,
        note: &Note,
    ) -> Result<Self, StorageError> {
        relative_path(path)?;
        let name = object_name(client.prefix(), path);
        if offset == 0 {
            let head = match client.head(&name, path).await {
                Err(StorageError::NotFound(_)) => {
                    return Err(StorageError::NotFound(path.to_string()))
                }
                head => head,
            };
            return Self::opened(client, path, name, offset, head).await;
        }
        let listed = list_segments(&client, &note.segments, path).await?;
        let size: u64 = listed.iter().map(|s| s.bytes).sum();
        let digest = segments_digest(listed.iter().map(|s| s.md5.as_str()));
        if size != offset || digest != note.recorded {
            return Self::append(client, path, offset).await;
        }
        Ok(Self::over_segments(
            client,
            path,
            name,
            note.segments.clone(),
            Some(digest),
            listed,
        ))
    }

    /// An append writer after the DLO segments `listed` under `segments`, which hold the whole
    /// file; `recorded` is the digest its manifest recorded.
    fn over_segments(
        client: Arc<Client>,
        path: &str,
        name: String,
        segments: String,
        recorded: Option<String>,
        listed: Vec<Segment>,
    ) -> Self {
        let size = listed.iter().map(|s| s.bytes).sum();
        let next = listed.last().map_or(1, |s| s.number + 1);
        SwiftWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Append {
                base: Base::Manifest {
                    segments: segments.clone(),
                    recorded,
                },
                committed: listed.into_iter().map(|s| s.md5).collect(),
            },
            segments,
            next,
            uploaded: Vec::new(),
            buf: BytesMut::new(),
            size,
        }
    }

    /// An append writer at `offset` of the file `name`, given what a `HEAD` of it answered.
    async fn opened(
        client: Arc<Client>,
        path: &str,
        name: String,
        offset: u64,
        head: Result<Head, StorageError>,
    ) -> Result<Self, StorageError> {
        let mismatch = |actual: u64| StorageError::OffsetMismatch {
            path: path.to_string(),
            expected: offset,
            actual,
        };
        let (base, segments, committed, next) = match head {
            Err(StorageError::NotFound(_)) if offset == 0 => {
                (Base::Absent, fresh_segments(&client, path), Vec::new(), 1)
            }
            Err(e) => return Err(e),
            Ok(head) if head.slo => {
                return Err(io_error(
                    "writer",
                    path,
                    "a static large object cannot be appended to",
                ))
            }
            Ok(head) => match head.manifest.as_deref().and_then(parse_manifest) {
                Some((_, prefix)) => {
                    let listed = list_segments(&client, prefix, path).await?;
                    let size: u64 = listed.iter().map(|s| s.bytes).sum();
                    if size != offset {
                        return Err(mismatch(size));
                    }
                    let (segments, recorded) = (prefix.to_string(), head.recorded.clone());
                    return Ok(Self::over_segments(
                        client, path, name, segments, recorded, listed,
                    ));
                }
                None => {
                    if head.size != offset {
                        return Err(mismatch(head.size));
                    }
                    // distribution moves a plain object to segment 0 and numbers the next
                    // from 2 (one past the count); a copy leaves the file as it is until this
                    // writer commits.
                    let segments = fresh_segments(&client, path);
                    let mut md5s = Vec::new();
                    if head.size > 0 {
                        let first = segment_name(&segments, 0);
                        md5s.push(client.copy(&name, &first, path).await?);
                    }
                    let next = md5s.len() + 1;
                    (Base::Plain, segments, md5s, next)
                }
            },
        };
        Ok(SwiftWriter {
            client,
            path: path.to_string(),
            name,
            kind: Kind::Append { base, committed },
            segments,
            next,
            uploaded: Vec::new(),
            buf: BytesMut::new(),
            size: offset,
        })
    }

    /// Uploads `data` as the next segment.
    async fn upload(&mut self, data: Bytes) -> Result<(), StorageError> {
        let name = segment_name(&self.segments, self.next);
        let md5 = self.client.put(&name, &self.path, data, &[]).await?;
        self.uploaded.push((self.next, md5));
        self.next += 1;
        Ok(())
    }

    /// Uploads what is buffered (when anything is).
    async fn flush(&mut self) -> Result<(), StorageError> {
        if !self.buf.is_empty() {
            let rest = self.buf.split().freeze();
            self.upload(rest).await?;
        }
        Ok(())
    }

    /// `Busy` unless the file's name holds what it held when this writer opened.
    async fn check_base(&self, base: &Base) -> Result<(), StorageError> {
        let now = match self.client.head(&self.name, &self.path).await {
            Err(StorageError::NotFound(_)) => Base::Absent,
            Err(e) => return Err(e),
            Ok(head) => match head.manifest.as_deref().and_then(parse_manifest) {
                Some((_, prefix)) => Base::Manifest {
                    segments: prefix.to_string(),
                    recorded: head.recorded,
                },
                None => Base::Plain,
            },
        };
        if &now == base {
            Ok(())
        } else {
            Err(StorageError::Busy(self.path.clone()))
        }
    }

    /// Writes the manifest naming this writer's segments, with the digest of `md5s`; returns
    /// the digest.
    async fn put_manifest(&self, md5s: &[String]) -> Result<String, StorageError> {
        let digest = segments_digest(md5s.iter().map(String::as_str));
        put_dlo_manifest(
            &self.client,
            &self.name,
            &self.path,
            &self.segments,
            &digest,
            false,
        )
        .await?;
        Ok(digest)
    }

    /// Commits an append: checks nobody committed meanwhile, uploads the rest, writes the
    /// manifest. Returns the recorded digest. With nothing appended to a manifest that records
    /// its segments, the stored manifest is the one this commit would write: it is left as it
    /// is, and looked at only when not `publishing` (publication checks the segments against
    /// the record itself).
    async fn commit_append(&mut self, publishing: bool) -> Result<String, StorageError> {
        let Kind::Append { base, committed } = &self.kind else {
            return Err(io_error("commit", &self.path, "not an append writer"));
        };
        let (base, committed) = (base.clone(), committed.clone());
        if self.buf.is_empty() && self.uploaded.is_empty() {
            let digest = segments_digest(committed.iter().map(String::as_str));
            if matches!(&base, Base::Manifest { recorded: Some(r), .. } if *r == digest) {
                if !publishing {
                    self.check_base(&base).await?;
                }
                return Ok(digest);
            }
        }
        self.check_base(&base).await?;
        self.flush().await?;
        let md5s: Vec<String> = committed
            .into_iter()
            .chain(self.uploaded.iter().map(|(_, m)| m.clone()))
            .collect();
        self.put_manifest(&md5s).await
    }

    /// Deletes the segments this writer uploaded.
    async fn remove_uploaded(&self) -> Result<(), StorageError> {
        for (number, _) in &self.uploaded {
            let name = segment_name(&self.segments, *number);
            match self.client.delete(&name, &self.path).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl FileWriter for SwiftWriter {
    async fn write(&mut self, data: Bytes) -> Result<(), StorageError> {
        self.size += data.len() as u64;
        self.buf.extend_from_slice(&data);
        let chunk = self.client.chunk_size();
        while self.buf.len() >= chunk {
            let segment = self.buf.split_to(chunk).freeze();
            self.upload(segment).await?;
        }
        Ok(())
    }

    fn size(&self) -> u64 {
        self.size
    }

    async fn commit_noted(mut self: Box<Self>) -> Result<Option<String>, StorageError> {
        if matches!(self.kind, Kind::Atomic) {
            return self.commit().await.map(|()| None);
        }
        let recorded = self.commit_append(false).await?;
        let note = Note {
            segments: self.segments.clone(),
            recorded,
        };
        Ok(Some(note.encode()))
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        if !matches!(self.kind, Kind::Atomic) {
            return self.commit_append(false).await.map(|_| ());
        }
        if self.uploaded.is_empty() {
            // One chunk at most: one `PUT`.
            let content = self.buf.split().freeze();
            return self
                .client
                .put(&self.name, &self.path, content, &[])
                .await
                .map(|_| ());
        }
        self.flush().await?;
        let md5s: Vec<String> = self.uploaded.iter().map(|(_, m)| m.clone()).collect();
        self.put_manifest(&md5s).await.map(|_| ())
    }

    async fn commit_to(mut self: Box<Self>, to: &str) -> Result<(), StorageError> {
        if matches!(self.kind, Kind::Atomic) {
            return Err(io_error(
                "commit",
                &self.path,
                "commit_to is for append writers",
            ));
        }
        relative_path(to)?;
        let recorded = self.commit_append(true).await?;
        let target = object_name(self.client.prefix(), to);
        super::publish_large(
            &self.client,
            &self.name,
            &self.segments,
            &target,
            to,
            &self.path,
            Some(&recorded),
        )
        .await
    }

    async fn cancel(self: Box<Self>) -> Result<(), StorageError> {
        self.remove_uploaded().await
    }
}
