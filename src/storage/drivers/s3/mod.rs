//! Amazon S3 and S3-compatible object stores (MinIO, Ceph RGW, Aliyun OSS through its S3 API).
//!
//! Keys are distribution's: `<rootdirectory>/docker/registry/v2/...` without the leading `/`,
//! so a bucket written by registry:2 is served as is, and the reverse.
//!
//! Uploads in progress are kept as distribution keeps them, so registry:2 and Wharf nodes over
//! one bucket continue each other's uploads. A POST opens a multipart upload on the upload's
//! `data` key ([`StorageDriver::prepare_append`]). A PATCH, in order:
//! 1. [`StorageDriver::writer`] finds the file: the first open multipart upload on the key
//!    (`ListMultipartUploads`), its parts (`ListParts`) and Wharf's parts record beside it;
//!    any other size than the offset is `OffsetMismatch`. Given the note of the last commit
//!    ([`StorageDriver::writer_noted`]: the record it wrote), only the parts of the noted
//!    upload are listed, while that upload is still open.
//! 2. Each write buffers the body and uploads every full part (`UploadPart`); after a short
//!    last part, the upload is first completed and a new one opened from the object.
//! 3. The commit uploads the rest as the last part and replaces the parts record, conditional
//!    on the record the writer opened with: of two writers racing at one offset only the
//!    first to commit succeeds.
//!    The new record and its entity tag are the commit's note.
//!
//! The closing PUT completes the upload with exactly the parts the writer knows and copies the
//! object to the blob's key: final blobs are placed by server-side operations only
//! (`CompleteMultipartUpload`, `CopyObject`, `UploadPartCopy`).
//!
//! Sealed files (blob data, links, manifests: [`StorageDriver::stat_sealed`]) are the object at
//! their key, read with one `HeadObject` or `GetObject`. A multipart upload open on such a key
//! is another writer's copy of the same content (a large blob pushed to two repositories at
//! once), never part of the file: completing it from a reader would publish its parts so far.
//!
//! Every call has a timeout, bounded retries with backoff on throttling, 5xx and connection
//! failures (the SDK's standard retry mode), a metric and a `tracing` event with its latency
//! and outcome.
//!
//! Modules, each importing only those after it: `writer` (appends and atomic writes),
//! `appended` (the layout of an appended file), `purge` (stale multipart uploads), `bulk`
//! (deleting many trees at once),
//! `settings` (configuration to client: the only one that reads `config`), `client` (every
//! S3 call), `spool` (bytes waiting to become a part), `http` (the HTTP client under the SDK).

mod appended;
mod bulk;
mod client;
mod http;
mod purge;
mod settings;
mod spool;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream as SdkStream;
use bytes::{Bytes, BytesMut};

use crate::storage::drivers::bulk_delete::names_in_folder;
use crate::storage::{ByteStream, FileInfo, FileWriter, StorageDriver, StorageError};
use client::{body_cut, Inner, PutCondition};
use writer::S3Writer;

pub use client::MIN_PART;
pub use settings::{S3Settings, S3SetupError};

/// Driver over one bucket.
#[derive(Clone)]
pub struct S3Driver {
    s3: Arc<Inner>,
}

impl S3Driver {
    /// Builds the client; nothing is sent until the first call.
    pub fn new(settings: &S3Settings) -> Result<Self, S3SetupError> {
        Ok(S3Driver {
            s3: Arc::new(settings::build(settings)?),
        })
    }

    /// Aborts the multipart uploads under the root started more than `age` ago: uploads left
    /// by crashed or abandoned writers, and the open parts of upload sessions that are
    /// themselves old enough to be purged. Returns how many were (or, with `dry_run`, would
    /// be) aborted.
    pub async fn purge_multipart_uploads(
        &self,
        age: Duration,
        dry_run: bool,
    ) -> Result<usize, StorageError> {
        purge::purge_multipart_uploads(&self.s3, crate::storage::stale_before(age), dry_run).await
    }

    /// `len` bytes from `offset` of the file at `path`, read as a sealed file or as one that
    /// may be open for appends.
    async fn read(
        &self,
        path: &str,
        range: (u64, Option<u64>),
        sealed: bool,
    ) -> Result<ByteStream, StorageError> {
        let Some(range) = crate::storage::object_range(self, path, range, sealed).await? else {
            return Ok(Box::pin(futures_util::stream::empty()));
        };
        let out = appended::get(&self.s3, path, range, !sealed).await?;
        first_bytes(path, out.body).await
    }
}

/// A read's stream once its first bytes are in: storage failing at once is an error the
/// caller tells its client about, never a success with an empty body; a failure later ends
/// the stream with an error, which aborts the response.
async fn first_bytes(path: &str, body: SdkStream) -> Result<ByteStream, StorageError> {
    use futures_util::StreamExt as _;
    let mut stream = into_stream(path, body);
    match stream.next().await {
        None => Ok(Box::pin(futures_util::stream::empty())),
        Some(Err(e)) => Err(e),
        Some(Ok(first)) => Ok(Box::pin(
            futures_util::stream::iter([Ok(first)]).chain(stream),
        )),
    }
}

/// A `GetObject` body as a driver stream; a read error ends it.
fn into_stream(path: &str, body: SdkStream) -> ByteStream {
    let path = path.to_string();
    Box::pin(futures_util::stream::unfold(
        (body, path, false),
        |(mut body, path, failed)| async move {
            if failed {
                return None;
            }
            match body.next().await {
                None => None,
                Some(Ok(bytes)) => Some((Ok(bytes), (body, path, false))),
                // The object was there: a body that stops is the connection failing.
                Some(Err(e)) => {
                    let err = body_cut(&path, &e);
                    Some((Err(err), (body, path, true)))
                }
            }
        },
    ))
}

#[async_trait::async_trait]
impl StorageDriver for S3Driver {
    fn name(&self) -> &'static str {
        self.s3.name
    }

    // Small files are sealed: the object is the file, whatever uploads are open on its key
    // (files open for appends are read through `reader`).
    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let out = appended::get(&self.s3, path, None, false).await?;
        let size = out.content_length().unwrap_or(0).max(0) as usize;
        let mut body = out.body;
        let mut buf = BytesMut::with_capacity(size);
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| body_cut(path, &e))?;
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    async fn put_content(&self, path: &str, content: Bytes) -> Result<(), StorageError> {
        let key = self.s3.key(path)?;
        self.s3
            .put(&key, path, content, None, PutCondition::Always)
            .await
    }

    async fn put_content_if_absent(
        &self,
        path: &str,
        content: Bytes,
    ) -> Result<bool, StorageError> {
        let key = self.s3.key(path)?;
        match self
            .s3
            .put(&key, path, content, None, PutCondition::Absent)
            .await
        {
            Ok(()) => Ok(true),
            Err(StorageError::Busy(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.read(path, (offset, len), false).await
    }

    async fn sealed_reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        self.read(path, (offset, len), true).await
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let s3 = &self.s3;
        let key = s3.key(path)?;
        if !key.is_empty() && !key.ends_with('/') {
            if let Some((size, modified)) = appended::stat(s3, &key, path).await? {
                return Ok(FileInfo {
                    size,
                    is_dir: false,
                    modified,
                });
            }
        }
        // A "directory" is any key under the prefix.
        if s3.any_under(&s3.dir_prefix(path)?, path).await? {
            Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            })
        } else {
            Err(StorageError::NotFound(path.to_string()))
        }
    }

    // One `HeadObject`: a sealed file is the object at its key, even one a completion left
    // (a multipart copy) while another writer's copy of the same content is still open there.
    async fn stat_sealed(&self, path: &str) -> Result<FileInfo, StorageError> {
        let key = self.s3.key(path)?;
        if key.is_empty() || key.ends_with('/') {
            return Err(StorageError::NotFound(path.to_string()));
        }
        let out = self.s3.head_object(&key, path).await?;
        Ok(FileInfo {
            size: out.content_length().unwrap_or(0).max(0) as u64,
            is_dir: false,
            modified: out
                .last_modified()
                .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
        })
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let entries = self.list_entries(path).await?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    // The delimited listing says which children are directories (common prefixes): no HEADs.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let s3 = &self.s3;
        let prefix = s3.dir_prefix(path)?;
        let (keys, dirs) = s3.list_objects(&prefix, path, Some("/")).await?;
        let name = |k: &String| k.strip_prefix(prefix.as_str()).map(str::to_string);
        let dirs = dirs
            .iter()
            .filter_map(name)
            .map(|d| (d.trim_end_matches('/').to_string(), true));
        let files = keys.iter().filter_map(name).map(|f| (f, false));
        let mut entries: Vec<(String, bool)> =
            dirs.chain(files).filter(|(n, _)| !n.is_empty()).collect();
        if entries.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        // A name both an object and a prefix is reported once, as a directory.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    // One listing without a delimiter: a page per thousand keys, whatever the folders.
    async fn list_files(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let s3 = &self.s3;
        let prefix = s3.dir_prefix(path)?;
        let (keys, _) = s3.list_objects(&prefix, path, None).await?;
        Ok(keys
            .iter()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .filter(|k| !k.is_empty() && !k.ends_with('/'))
            .map(str::to_string)
            .collect())
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let s3 = &self.s3;
        let (source, target) = (s3.key(from)?, s3.key(to)?);
        appended::move_file(s3, &source, &target, from).await
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let s3 = &self.s3;
        let key = s3.key(path)?;
        let prefix = s3.dir_prefix(path)?;
        let wanted = |k: &str| k == key || k.starts_with(prefix.as_str());
        // Everything at or under the path: listing by the bare key also returns siblings that
        // merely start with it (`v1` and `v10`), which are left alone.
        let (mut keys, _) = s3.list_objects(&key, path, None).await?;
        keys.retain(|k| wanted(k));
        // Open multipart uploads below it (sessions cancelled mid-chunk) go too.
        let uploads = s3.list_uploads(&key, path, None, None).await?;
        let open: Vec<(String, String)> = uploads
            .uploads()
            .iter()
            .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
            .filter(|(k, _)| wanted(k))
            .collect();
        if keys.is_empty() && open.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        s3.delete_objects(&keys, path).await?;
        for (k, id) in &open {
            s3.abort(k, id).await?;
        }
        Ok(())
    }

    // One `DeleteObjects` of the named files and their parts records: no listing of the tree
    // and no search for open multipart uploads (the caller knows none is left open).
    async fn delete_known_tree(&self, dir: &str, files: &[String]) -> Result<(), StorageError> {
        let s3 = &self.s3;
        let prefix = s3.dir_prefix(dir)?;
        let keys: Vec<String> = names_in_folder(&prefix, files, |f| s3.key(f))?
            .into_iter()
            .flat_map(|key| [appended::record_key(&key), key])
            .collect();
        if keys.is_empty() {
            return Ok(());
        }
        s3.delete_objects(&keys, dir).await
    }

    async fn delete_many(&self, paths: &[String]) -> Result<(), StorageError> {
        bulk::delete_trees(&self.s3, paths).await
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        self.writer_noted(path, offset, None).await
    }

    // The note is the record the last writer wrote: its upload's parts are listed and checked
    // against it, instead of finding the upload and reading the record.
    async fn writer_noted(
        &self,
        path: &str,
        offset: u64,
        note: Option<&str>,
    ) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(
            S3Writer::append(self.s3.clone(), path, offset, note).await?,
        ))
    }

    async fn prepare_append(&self, path: &str) -> Result<(), StorageError> {
        S3Writer::prepare(&self.s3, path).await.map(|_| ())
    }

    async fn prepare_append_noted(&self, path: &str) -> Result<Option<String>, StorageError> {
        S3Writer::prepare(&self.s3, path).await.map(Some)
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(S3Writer::atomic(self.s3.clone(), path)?))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let key = self.s3.key(path)?;
        Ok(Some(self.s3.presign_get(&key, path).await?))
    }
}
