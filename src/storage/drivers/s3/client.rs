//! Every S3 call the driver makes, each through [`Inner::call`]: one place that turns SDK
//! errors into [`StorageError`]s and records each call's latency and outcome (metric and log).
//! Timeouts and bounded retries are the SDK client's, configured in [`super::settings`].
//!
//! Nothing here knows how a file is laid out over objects: these are S3's operations on keys.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectOutput;
use aws_sdk_s3::operation::head_object::HeadObjectOutput;
use aws_sdk_s3::operation::list_multipart_uploads::ListMultipartUploadsOutput;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectCannedAcl,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use super::spool::PartBody;
use crate::error_chain::error_chain;
use crate::storage::{relative_path, StorageError};

/// Smallest part S3 accepts, except for the last one.
pub const MIN_PART: u64 = 5 << 20;
/// Presigned blob URLs stay valid this long (as distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);
/// Keys per `DeleteObjects` request (the S3 maximum).
const DELETE_BATCH: usize = 1000;

/// Characters escaped in `x-amz-copy-source` (everything but unreserved and `/`).
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Attributes every written object gets.
#[derive(Debug, Clone, Default)]
pub(super) struct WriteOptions {
    pub acl: Option<ObjectCannedAcl>,
    pub storage_class: Option<StorageClass>,
    pub sse: Option<ServerSideEncryption>,
    pub kms_key: Option<String>,
}

/// One bucket's client, shared by the driver and its open writers.
pub(super) struct Inner {
    pub(super) client: Client,
    /// Signs redirect URLs (against `redirectendpoint` when configured).
    pub(super) presigner: Client,
    /// Driver name in metric labels and logs.
    pub(super) name: &'static str,
    pub(super) bucket: String,
    /// `""` or `"<rootdirectory>/"`.
    pub(super) root: String,
    /// Multipart part size.
    pub(super) part_size: u64,
    /// Part size of multipart copies.
    pub(super) copy_chunk: u64,
    /// Parts copied at once in a multipart copy.
    pub(super) copy_concurrency: usize,
    /// Objects larger than this are copied in parts.
    pub(super) copy_threshold: u64,
    pub(super) write: WriteOptions,
    /// Log every call at info level.
    pub(super) log_calls: bool,
}

/// A failed SDK call as a [`StorageError`]; 404s become `NotFound`.
pub(super) fn sdk_error<E>(
    op: &'static str,
    path: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StorageError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let not_found = matches!(err.code(), Some("NoSuchKey" | "NotFound" | "NoSuchUpload"))
        || matches!(&err, SdkError::ServiceError(e) if e.raw().status().as_u16() == 404);
    if not_found {
        return StorageError::NotFound(path.to_string());
    }
    // Conditional writes fail these ways when someone else changed the object first, and a
    // completion when a part it names was replaced: another writer got there first.
    let lost_race = matches!(
        err.code(),
        Some(
            "PreconditionFailed"
                | "ConditionalRequestConflict"
                | "InvalidPart"
                | "InvalidPartOrder"
                | "EntityTooSmall"
        )
    ) || matches!(&err, SdkError::ServiceError(e) if e.raw().status().as_u16() == 412);
    if lost_race {
        return StorageError::Busy(path.to_string());
    }
    if is_unavailable(&err) {
        return StorageError::Unavailable {
            op,
            path: path.to_string(),
            reason: DisplayErrorContext(&err).to_string(),
        };
    }
    StorageError::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::other(DisplayErrorContext(&err).to_string()),
    }
}

/// Whether a failed call (already retried by the SDK) says the store is unreachable or
/// refusing for load, rather than refusing the request itself.
fn is_unavailable<E>(err: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> bool
where
    E: ProvideErrorMetadata,
{
    let throttled = matches!(
        err.code(),
        Some(
            "SlowDown"
                | "Throttling"
                | "ThrottlingException"
                | "RequestTimeout"
                | "ServiceUnavailable"
                | "InternalError"
                | "RequestTimeTooSkewed"
        )
    );
    let status = match err {
        SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
        SdkError::ResponseError(e) => Some(e.raw().status().as_u16()),
        _ => None,
    };
    throttled
        || status.is_some_and(|s| s == 429 || s >= 500)
        || matches!(
            err,
            SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
        )
}

/// A `GetObject` body that stopped before its end: the object was there, so the connection
/// failed, and the read may be retried later (503, never 500).
pub(super) fn body_cut(path: &str, err: &(dyn std::error::Error + 'static)) -> StorageError {
    StorageError::Unavailable {
        op: "read",
        path: path.to_string(),
        reason: error_chain(err),
    }
}

/// An I/O error of operation `op` on `path`.
pub(super) fn io_error(op: &'static str, path: &str, message: impl Into<String>) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::other(message.into()),
    }
}

/// When a `PutObject` may replace what is at its key.
#[derive(Debug, Clone, Copy)]
pub(super) enum PutCondition<'a> {
    /// Whatever is there.
    Always,
    /// Only if nothing is there (`If-None-Match: *`).
    Absent,
    /// Only if the object there has this entity tag (`If-Match`).
    Matches(&'a str),
}

/// A part as `ListParts` reports it.
pub(super) struct ListedPart {
    /// Part number and entity tag, as completion wants them.
    pub part: CompletedPart,
    /// Bytes in the part.
    pub size: u64,
}

/// A server-side copy of (ranges of) an object into parts of an open multipart upload.
pub(super) struct PartCopy {
    /// Key of the object copied.
    pub source: String,
    /// Entity tag the source must still have, when given.
    pub source_etag: Option<String>,
    /// Key of the multipart upload.
    pub key: String,
    /// Driver path, for errors and logs.
    pub path: String,
    /// The multipart upload.
    pub upload: String,
}

/// Splits `[0, len)` into copy ranges of `chunk` bytes; a short last range is merged into the
/// one before, so that every range but a lone one is at least [`MIN_PART`].
pub(super) fn copy_ranges(len: u64, chunk: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < len {
        let mut end = (start + chunk).min(len);
        if len - end < MIN_PART {
            end = len;
        }
        out.push((start, end));
        start = end;
    }
    out
}

impl Inner {
    /// The object key of a driver path.
    pub(super) fn key(&self, path: &str) -> Result<String, StorageError> {
        relative_path(path)?;
        Ok(format!("{}{}", self.root, &path[1..]))
    }

    /// The key prefix of everything under a driver path.
    pub(super) fn dir_prefix(&self, path: &str) -> Result<String, StorageError> {
        let key = self.key(path)?;
        Ok(if key.is_empty() || key.ends_with('/') {
            key
        } else {
            format!("{key}/")
        })
    }

    /// `x-amz-copy-source` of a key.
    fn copy_source(&self, key: &str) -> String {
        format!("{}/{}", self.bucket, utf8_percent_encode(key, COPY_SOURCE))
    }

    /// Runs one SDK call with its latency and outcome recorded.
    async fn call<T, E, F, Fut>(&self, op: &'static str, key: &str, f: F) -> Result<T, StorageError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, aws_sdk_s3::config::http::HttpResponse>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let started = Instant::now();
        let result = f().await.map_err(|e| sdk_error(op, key, e));
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StorageError::NotFound(_)) => "not_found",
            Err(_) => "error",
        };
        crate::ops::metrics::external_call("s3", op, elapsed, outcome != "error");
        match &result {
            Err(e) if outcome == "error" => tracing::warn!(
                target: "wharf::storage::s3",
                driver = self.name, op, key, elapsed_ms, outcome, error = %e,
                "object storage call failed"
            ),
            _ if self.log_calls => tracing::info!(
                target: "wharf::storage::s3",
                driver = self.name, op, key, elapsed_ms, outcome, "object storage call"
            ),
            _ => tracing::debug!(
                target: "wharf::storage::s3",
                driver = self.name, op, key, elapsed_ms, outcome, "object storage call"
            ),
        }
        result
    }

    /// One `HeadObject`.
    pub(super) async fn head_object(
        &self,
        key: &str,
        path: &str,
    ) -> Result<HeadObjectOutput, StorageError> {
        self.call("HeadObject", path, || {
            self.client
                .head_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        })
        .await
    }

    /// Writes a whole object, when `condition` holds (else [`StorageError::Busy`]).
    pub(super) async fn put(
        &self,
        key: &str,
        path: &str,
        body: Bytes,
        metadata: Option<HashMap<String, String>>,
        condition: PutCondition<'_>,
    ) -> Result<(), StorageError> {
        self.put_tagged(key, path, &PartBody::Memory(body), metadata, condition)
            .await
            .map(|_| ())
    }

    /// [`Self::put`], returning the new object's entity tag when the store gives it.
    pub(super) async fn put_tagged(
        &self,
        key: &str,
        path: &str,
        body: &PartBody,
        metadata: Option<HashMap<String, String>>,
        condition: PutCondition<'_>,
    ) -> Result<Option<String>, StorageError> {
        let len = body.len();
        let body = body.stream(path).await?;
        let w = &self.write;
        let (if_match, if_none_match) = match condition {
            PutCondition::Always => (None, None),
            PutCondition::Absent => (None, Some("*".to_string())),
            PutCondition::Matches(etag) => (Some(etag.to_string()), None),
        };
        let out = self
            .call("PutObject", path, || {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .set_if_match(if_match.clone())
                    .set_if_none_match(if_none_match.clone())
                    .content_type("application/octet-stream")
                    .content_length(len as i64)
                    .body(body)
                    .set_acl(w.acl.clone())
                    .set_storage_class(w.storage_class.clone())
                    .set_server_side_encryption(w.sse.clone())
                    .set_ssekms_key_id(w.kms_key.clone())
                    .set_metadata(metadata.clone())
                    .send()
            })
            .await?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// Opens a multipart upload on `key`.
    pub(super) async fn create_upload(
        &self,
        key: &str,
        path: &str,
    ) -> Result<String, StorageError> {
        let w = &self.write;
        let out = self
            .call("CreateMultipartUpload", path, || {
                self.client
                    .create_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .content_type("application/octet-stream")
                    .set_acl(w.acl.clone())
                    .set_storage_class(w.storage_class.clone())
                    .set_server_side_encryption(w.sse.clone())
                    .set_ssekms_key_id(w.kms_key.clone())
                    .send()
            })
            .await?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| io_error("CreateMultipartUpload", path, "no upload id in the answer"))
    }

    /// Uploads one part; returns its entity tag.
    pub(super) async fn upload_part(
        &self,
        key: &str,
        path: &str,
        upload: &str,
        number: i32,
        body: &PartBody,
    ) -> Result<String, StorageError> {
        let len = body.len();
        let body = body.stream(path).await?;
        let out = self
            .call("UploadPart", path, || {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload)
                    .part_number(number)
                    .content_length(len as i64)
                    .body(body)
                    .send()
            })
            .await?;
        out.e_tag()
            .map(str::to_string)
            .ok_or_else(|| io_error("UploadPart", path, "no ETag in the answer"))
    }

    /// Copies `[start, end)` of `copy.source` into part `number`, server-side.
    pub(super) async fn copy_part(
        &self,
        copy: &PartCopy,
        number: i32,
        (start, end): (u64, u64),
    ) -> Result<String, StorageError> {
        let out = self
            .call("UploadPartCopy", &copy.path, || {
                self.client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(&copy.key)
                    .upload_id(&copy.upload)
                    .part_number(number)
                    .copy_source(self.copy_source(&copy.source))
                    .copy_source_range(format!("bytes={start}-{}", end - 1))
                    .set_copy_source_if_match(copy.source_etag.clone())
                    .send()
            })
            .await?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string)
            .ok_or_else(|| io_error("UploadPartCopy", &copy.path, "no ETag in the answer"))
    }

    /// Copies ranges of `copy.source` into consecutive parts from `first`, at most
    /// `copy_concurrency` at a time; returns the parts in order.
    pub(super) async fn copy_parts(
        &self,
        copy: &PartCopy,
        first: i32,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<CompletedPart>, StorageError> {
        // Owned inputs per copy: the futures must be `Send` for any borrow of the caller's.
        let jobs: Vec<(i32, (u64, u64))> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| (first + i as i32, *r))
            .collect();
        let copies = jobs.into_iter().map(|(number, range)| async move {
            let etag = self.copy_part(copy, number, range).await?;
            Ok::<_, StorageError>(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            )
        });
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(copies)
            .buffer_unordered(self.copy_concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// Publishes a multipart upload as the object at `key`; returns the object's entity tag.
    /// S3 checks every part's entity tag: a part replaced since is [`StorageError::Busy`].
    pub(super) async fn complete(
        &self,
        key: &str,
        path: &str,
        upload: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<Option<String>, StorageError> {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        let out = self
            .call("CompleteMultipartUpload", path, || {
                self.client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload)
                    .multipart_upload(done.clone())
                    .send()
            })
            .await?;
        Ok(out.e_tag().map(str::to_string))
    }

    /// The multipart upload distribution's writer continues on `key`: the first open on
    /// exactly that key in `ListMultipartUploads` order (oldest first).
    pub(super) async fn first_upload(
        &self,
        key: &str,
        path: &str,
    ) -> Result<Option<String>, StorageError> {
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        // Keys sort before the longer keys they prefix, so the first page nearly always
        // answers; the bound only guards against a store that never stops paginating.
        for _ in 0..1000 {
            let page = self
                .list_uploads(key, path, key_marker.clone(), id_marker.clone())
                .await?;
            for upload in page.uploads() {
                match upload.key() {
                    Some(k) if k == key => return Ok(upload.upload_id().map(str::to_string)),
                    Some(k) if k > key => return Ok(None),
                    _ => {}
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() && id_marker.is_none() {
                break;
            }
        }
        Ok(None)
    }

    /// Drops a multipart upload and its parts; an upload already gone is fine.
    pub(super) async fn abort(&self, key: &str, upload: &str) -> Result<(), StorageError> {
        match self
            .call("AbortMultipartUpload", key, || {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload)
                    .send()
            })
            .await
        {
            Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Parts 1..=up_to of an upload, as `ListParts` gives them.
    pub(super) async fn list_parts(
        &self,
        key: &str,
        path: &str,
        upload: &str,
        up_to: i32,
    ) -> Result<Vec<ListedPart>, StorageError> {
        let mut parts = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .call("ListParts", path, || {
                    self.client
                        .list_parts()
                        .bucket(&self.bucket)
                        .key(key)
                        .upload_id(upload)
                        .set_part_number_marker(marker.clone())
                        .send()
                })
                .await?;
            for p in page.parts() {
                let number = p.part_number().unwrap_or(0);
                if number >= 1 && number <= up_to {
                    parts.push(ListedPart {
                        part: CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(p.e_tag().map(str::to_string))
                            .build(),
                        size: p.size().unwrap_or(0).max(0) as u64,
                    });
                }
            }
            if !page.is_truncated().unwrap_or(false) {
                break;
            }
            marker = page.next_part_number_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        Ok(parts)
    }

    /// Copies a plain object server-side: `CopyObject`, or a multipart copy above the threshold.
    pub(super) async fn copy_object(
        &self,
        from: &str,
        to: &str,
        path: &str,
        size: u64,
    ) -> Result<(), StorageError> {
        let w = &self.write;
        if size <= self.copy_threshold {
            self.call("CopyObject", path, || {
                self.client
                    .copy_object()
                    .bucket(&self.bucket)
                    .key(to)
                    .copy_source(self.copy_source(from))
                    .metadata_directive(MetadataDirective::Replace)
                    .content_type("application/octet-stream")
                    .set_acl(w.acl.clone())
                    .set_storage_class(w.storage_class.clone())
                    .set_server_side_encryption(w.sse.clone())
                    .set_ssekms_key_id(w.kms_key.clone())
                    .send()
            })
            .await?;
            return Ok(());
        }
        let upload = self.create_upload(to, path).await?;
        let ranges = copy_ranges(size, self.copy_chunk);
        let copy = PartCopy {
            source: from.to_string(),
            source_etag: None,
            key: to.to_string(),
            path: path.to_string(),
            upload: upload.clone(),
        };
        let copied = self.copy_parts(&copy, 1, &ranges).await;
        let result = match copied {
            Ok(parts) => self.complete(to, path, &upload, parts).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if result.is_err() {
            if let Err(e) = self.abort(to, &upload).await {
                tracing::warn!(error = %e, key = to, "could not abort a failed multipart copy");
            }
        }
        result
    }

    /// One `GetObject`, of a range `(start, len)` when given, of the version `etag` when given.
    pub(super) async fn get_object(
        &self,
        key: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
        etag: Option<&str>,
    ) -> Result<GetObjectOutput, StorageError> {
        self.call("GetObject", path, || {
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .set_range(range.map(|(start, len)| match len {
                    Some(len) => format!("bytes={start}-{}", start + len - 1),
                    None => format!("bytes={start}-"),
                }))
                .set_if_match(etag.map(str::to_string))
                .send()
        })
        .await
    }

    /// Whether any object has a key starting with `prefix`.
    pub(super) async fn any_under(&self, prefix: &str, path: &str) -> Result<bool, StorageError> {
        let page = self
            .call("ListObjectsV2", path, || {
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(prefix)
                    .max_keys(1)
                    .send()
            })
            .await?;
        Ok(page.key_count().unwrap_or(0) > 0 || !page.contents().is_empty())
    }

    /// The keys starting with `prefix` and, with a `delimiter`, the common prefixes that
    /// stand for the keys past it, each in listing order.
    pub(super) async fn list_objects(
        &self,
        prefix: &str,
        path: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>), StorageError> {
        let (mut keys, mut prefixes) = (Vec::new(), Vec::new());
        let mut token: Option<String> = None;
        loop {
            let page = self
                .call("ListObjectsV2", path, || {
                    self.client
                        .list_objects_v2()
                        .bucket(&self.bucket)
                        .prefix(prefix)
                        .set_delimiter(delimiter.map(str::to_string))
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            let common = page.common_prefixes().iter().filter_map(|p| p.prefix());
            prefixes.extend(common.map(str::to_string));
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .map(str::to_string),
            );
            token = page.next_continuation_token().map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        Ok((keys, prefixes))
    }

    /// One page of the open multipart uploads on keys starting with `prefix`, from the
    /// markers of the page before.
    pub(super) async fn list_uploads(
        &self,
        prefix: &str,
        path: &str,
        key_marker: Option<String>,
        id_marker: Option<String>,
    ) -> Result<ListMultipartUploadsOutput, StorageError> {
        self.call("ListMultipartUploads", path, || {
            self.client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.clone())
                .set_upload_id_marker(id_marker.clone())
                .send()
        })
        .await
    }

    /// Deletes one object.
    pub(super) async fn delete_object(&self, key: &str, path: &str) -> Result<(), StorageError> {
        self.call("DeleteObject", path, || {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
        })
        .await?;
        Ok(())
    }

    /// Deletes objects: one `DeleteObject`, or `DeleteObjects` in batches; a key any batch
    /// fails to delete fails the call.
    pub(super) async fn delete_objects(
        &self,
        keys: &[String],
        path: &str,
    ) -> Result<(), StorageError> {
        if let [key] = keys {
            return self.delete_object(key, path).await;
        }
        for batch in keys.chunks(DELETE_BATCH) {
            let objects = batch
                .iter()
                .map(|k| ObjectIdentifier::builder().key(k).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| io_error("DeleteObjects", path, e.to_string()))?;
            let delete = Delete::builder()
                .set_objects(Some(objects))
                .quiet(true)
                .build()
                .map_err(|e| io_error("DeleteObjects", path, e.to_string()))?;
            let out = self
                .call("DeleteObjects", path, || {
                    self.client
                        .delete_objects()
                        .bucket(&self.bucket)
                        .delete(delete.clone())
                        .send()
                })
                .await?;
            if let Some(failed) = out.errors().first() {
                return Err(io_error(
                    "DeleteObjects",
                    path,
                    format!(
                        "{} of {} keys not deleted, first {:?}: {}",
                        out.errors().len(),
                        batch.len(),
                        failed.key().unwrap_or_default(),
                        failed.message().unwrap_or_default()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// A presigned `GetObject` URL for `key`, valid as long as distribution's.
    pub(super) async fn presign_get(&self, key: &str, path: &str) -> Result<String, StorageError> {
        let presigning = PresigningConfig::expires_in(REDIRECT_VALIDITY)
            .map_err(|e| io_error("presign", path, e.to_string()))?;
        let request = self
            .presigner
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(presigning)
            .await
            .map_err(|e| sdk_error("presign", path, e))?;
        Ok(request.uri().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_ranges_keep_parts_above_the_minimum() {
        let mib = 1 << 20;
        assert_eq!(copy_ranges(0, 32 * mib), vec![]);
        assert_eq!(copy_ranges(3 * mib, 32 * mib), vec![(0, 3 * mib)]);
        // A 6 MiB tail is a valid last part; a 4 MiB one joins the part before it.
        assert_eq!(
            copy_ranges(70 * mib, 32 * mib),
            vec![(0, 32 * mib), (32 * mib, 64 * mib), (64 * mib, 70 * mib)]
        );
        assert_eq!(
            copy_ranges(68 * mib, 32 * mib),
            vec![(0, 32 * mib), (32 * mib, 68 * mib)]
        );
        assert_eq!(
            copy_ranges(64 * mib + 1, 32 * mib),
            vec![(0, 32 * mib), (32 * mib, 64 * mib + 1)]
        );
        assert_eq!(
            copy_ranges(80 * mib, 32 * mib),
            vec![(0, 32 * mib), (32 * mib, 64 * mib), (64 * mib, 80 * mib)]
        );
    }
}
