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

use super::client::{io_error, Client, Listed, SEGMENTS_META};
use super::names::{
    object_name, parse_manifest, segment_name, segment_number, segment_prefix, segments_digest,
};
use crate::storage::{path_components, FileWriter, StorageError};

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

impl SwiftWriter {
    /// A writer whose content appears at `path` only on commit.
    pub(super) fn atomic(client: Arc<Client>, path: &str) -> Result<Self, StorageError> {
        path_components(path)?;
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
        path_components(path)?;
        let name = object_name(client.prefix(), path);
        let mismatch = |actual: u64| StorageError::OffsetMismatch {
            path: path.to_string(),
            expected: offset,
            actual,
        };
        let (base, segments, committed, next) = match client.head(&name, path).await {
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
                    let next = listed.last().map_or(1, |s| s.number + 1);
                    let base = Base::Manifest {
                        segments: prefix.to_string(),
                        recorded: head.recorded.clone(),
                    };
                    let md5s = listed.into_iter().map(|s| s.md5).collect();
                    (base, prefix.to_string(), md5s, next)
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
        let headers = [
            (
                "x-object-manifest",
                format!("{}/{}", self.client.container(), self.segments),
            ),
            (SEGMENTS_META, digest.clone()),
        ];
        self.client
            .put(&self.name, &self.path, Bytes::new(), &headers)
            .await?;
        Ok(digest)
    }

    /// Commits an append: checks nobody committed meanwhile, uploads the rest, writes the
    /// manifest. Returns the recorded digest.
    async fn commit_append(&mut self) -> Result<String, StorageError> {
        let Kind::Append { base, committed } = &self.kind else {
            return Err(io_error("commit", &self.path, "not an append writer"));
        };
        let (base, committed) = (base.clone(), committed.clone());
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

    async fn commit(mut self: Box<Self>) -> Result<(), StorageError> {
        if !matches!(self.kind, Kind::Atomic) {
            return self.commit_append().await.map(|_| ());
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
        path_components(to)?;
        let recorded = self.commit_append().await?;
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
