//! Amazon S3 and S3-compatible object stores (MinIO, Ceph RGW, Aliyun OSS through its S3 API).
//!
//! Keys are distribution's: `<rootdirectory>/docker/registry/v2/...` without the leading `/`,
//! so a bucket written by registry:2 is served as is, and the reverse.
//!
//! A file being appended to (an upload's `data`) is, between requests, one object at its key
//! whose body holds the bytes after the last full part, and whose metadata names an open
//! multipart upload holding the parts before them (see [`writer`]). Any node finds it again with
//! one `HeadObject`, without reading the data back. Final blobs are placed by server-side
//! operations only: `CompleteMultipartUpload`, `CopyObject`, `UploadPartCopy`.
//!
//! Every call has a timeout, bounded retries with backoff on throttling, 5xx and connection
//! failures (the SDK's standard retry mode), and a `tracing` event with its latency and outcome.

mod http;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    AppName, BehaviorVersion, Credentials, Region, RequestChecksumCalculation,
    ResponseChecksumValidation, SharedCredentialsProvider,
};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream as SdkStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, Delete, MetadataDirective, ObjectCannedAcl,
    ObjectIdentifier, ServerSideEncryption, StorageClass,
};
use aws_sdk_s3::Client;
use bytes::{Bytes, BytesMut};
use futures_util::{StreamExt, TryStreamExt};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::config::{OssConfig, S3Config};
use crate::storage::{
    path_components, ByteStream, FileInfo, FileWriter, StorageDriver, StorageError,
};

pub use writer::MIN_PART;

/// Presigned blob URLs stay valid this long (as distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);
/// Attempts per call, the first included (standard retry mode: throttling, 5xx, I/O errors).
const MAX_ATTEMPTS: u32 = 4;
/// First retry delay; doubles with jitter up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest delay between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// TCP and TLS connection set-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request to the response head (covers uploading one part).
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(120);
/// One attempt, response head included.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(180);
/// A whole call, retries and backoff included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(600);
/// Keys per `DeleteObjects` request (the S3 maximum).
const DELETE_BATCH: usize = 1000;
/// Metadata keys of an object that is the tail of an open multipart upload.
const META_UPLOAD: &str = "wharf-upload-id";
const META_PARTS: &str = "wharf-parts";
const META_PARTS_SIZE: &str = "wharf-parts-size";
/// A digest chained over the entity tags of parts 1..=parts, in order: what the writers that
/// uploaded them saw. Parts can be overwritten by number, so a writer racing another at the
/// same offset could swap one; the chain tells before the file is published.
const META_PARTS_DIGEST: &str = "wharf-parts-digest";

/// Characters escaped in `x-amz-copy-source` (everything but unreserved and `/`).
const COPY_SOURCE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// What the driver needs, from `storage.s3` or `storage.oss`.
#[derive(Debug, Clone)]
pub struct S3Settings {
    /// `s3` or `oss`, for logs and errors.
    pub driver_name: &'static str,
    /// Bucket name.
    pub bucket: String,
    /// Signing region.
    pub region: String,
    /// Endpoint URL (with scheme) of a non-AWS service.
    pub endpoint: Option<String>,
    /// Endpoint URL used in presigned redirect URLs instead of `endpoint`.
    pub redirect_endpoint: Option<String>,
    /// Bucket in the path instead of the host name.
    pub force_path_style: bool,
    /// Static credentials (access key, secret key, session token); the AWS chain when absent.
    pub credentials: Option<(String, String, Option<String>)>,
    /// Key prefix: `rootdirectory` without leading and trailing `/`.
    pub root: String,
    /// Multipart part size.
    pub chunk_size: u64,
    /// Part size of multipart copies.
    pub copy_chunk_size: u64,
    /// Parts copied at once in a multipart copy.
    pub copy_max_concurrency: usize,
    /// Objects larger than this are copied in parts.
    pub copy_threshold: u64,
    /// Server-side encryption.
    pub encrypt: bool,
    /// KMS key for server-side encryption.
    pub key_id: Option<String>,
    /// Storage class of written objects (`NONE`: the bucket's default).
    pub storage_class: String,
    /// Canned ACL of written objects.
    pub object_acl: Option<String>,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Text added to the User-Agent.
    pub user_agent: Option<String>,
    /// Dual-stack endpoints.
    pub dual_stack: bool,
    /// Transfer acceleration endpoints.
    pub accelerate: bool,
    /// FIPS endpoints.
    pub fips: bool,
    /// Log every call at info level (`loglevel` other than `off`).
    pub log_calls: bool,
}

fn with_scheme(endpoint: &str, secure: bool) -> String {
    if endpoint.contains("://") {
        endpoint.to_string()
    } else if secure {
        format!("https://{endpoint}")
    } else {
        format!("http://{endpoint}")
    }
}

impl S3Settings {
    /// Settings for `storage.s3`. As distribution 2.8, a `regionendpoint` implies path-style
    /// addressing; `secure: false` means plain HTTP; `v4auth: false` is ignored (SigV4 only).
    pub fn from_s3(c: &S3Config) -> Self {
        let endpoint = match &c.regionendpoint {
            Some(e) if !e.is_empty() => Some(with_scheme(e, c.secure)),
            _ if !c.secure => Some(format!("http://s3.{}.amazonaws.com", c.region)),
            _ => None,
        };
        let credentials = match (&c.accesskey, &c.secretkey) {
            (Some(a), Some(s)) if !a.is_empty() => {
                Some((a.clone(), s.clone(), c.sessiontoken.clone()))
            }
            _ => None,
        };
        S3Settings {
            driver_name: "s3",
            bucket: c.bucket.clone(),
            region: c.region.clone(),
            force_path_style: c.forcepathstyle || c.regionendpoint.is_some(),
            endpoint,
            redirect_endpoint: c
                .redirectendpoint
                .as_deref()
                .filter(|e| !e.is_empty())
                .map(|e| with_scheme(e, c.secure)),
            credentials,
            root: c.rootdirectory.trim_matches('/').to_string(),
            chunk_size: c.chunksize,
            copy_chunk_size: c.multipartcopychunksize,
            copy_max_concurrency: c.multipartcopymaxconcurrency.max(1) as usize,
            copy_threshold: c.multipartcopythresholdsize,
            encrypt: c.encrypt,
            key_id: c.keyid.clone().filter(|k| !k.is_empty()),
            storage_class: c.storageclass.clone(),
            object_acl: Some(c.objectacl.clone()),
            skip_verify: c.skipverify,
            user_agent: c.useragent.clone().filter(|u| !u.is_empty()),
            dual_stack: c.usedualstack,
            accelerate: c.accelerate,
            fips: c.usefipsendpoint,
            log_calls: c
                .loglevel
                .as_deref()
                .is_some_and(|l| !l.is_empty() && !l.eq_ignore_ascii_case("off")),
        }
    }

    /// Settings for `storage.oss` (distribution 2.8's keys) on OSS's S3-compatible API:
    /// `region: oss-cn-beijing` signs as `cn-beijing` against `oss-cn-beijing.aliyuncs.com`
    /// (`oss-cn-beijing-internal.aliyuncs.com` with `internal`), or `endpoint` when given;
    /// virtual-hosted addressing.
    pub fn from_oss(c: &OssConfig) -> Self {
        let region = c
            .region
            .strip_prefix("oss-")
            .unwrap_or(&c.region)
            .to_string();
        let host = match &c.endpoint {
            Some(e) if !e.is_empty() => e.clone(),
            _ if c.internal => format!("oss-{region}-internal.aliyuncs.com"),
            _ => format!("oss-{region}.aliyuncs.com"),
        };
        S3Settings {
            driver_name: "oss",
            bucket: c.bucket.clone(),
            endpoint: Some(with_scheme(&host, c.secure)),
            region,
            redirect_endpoint: None,
            force_path_style: false,
            credentials: Some((c.accesskeyid.clone(), c.accesskeysecret.clone(), None)),
            root: c.rootdirectory.trim_matches('/').to_string(),
            chunk_size: c.chunksize,
            copy_chunk_size: 32 << 20,
            copy_max_concurrency: 100,
            copy_threshold: 32 << 20,
            encrypt: c.encrypt,
            key_id: c.encryptionkeyid.clone().filter(|k| !k.is_empty()),
            storage_class: "NONE".into(),
            object_acl: None,
            skip_verify: false,
            user_agent: None,
            dual_stack: false,
            accelerate: false,
            fips: false,
            log_calls: false,
        }
    }
}

/// Attributes every written object gets.
#[derive(Debug, Clone, Default)]
struct WriteOptions {
    acl: Option<ObjectCannedAcl>,
    storage_class: Option<StorageClass>,
    sse: Option<ServerSideEncryption>,
    kms_key: Option<String>,
}

/// Driver over one bucket.
#[derive(Clone)]
pub struct S3Driver {
    s3: Arc<Inner>,
}

/// Shared by the driver and its open writers.
pub(crate) struct Inner {
    client: Client,
    presigner: Client,
    name: &'static str,
    bucket: String,
    /// `""` or `"<rootdirectory>/"`.
    root: String,
    part_size: u64,
    copy_chunk: u64,
    copy_concurrency: usize,
    copy_threshold: u64,
    write: WriteOptions,
    log_calls: bool,
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("storage.{driver}: {reason}")]
pub struct S3SetupError {
    driver: &'static str,
    reason: String,
}

/// The standard AWS credential chain (environment, profile, web identity, ECS, IMDS), built on
/// first use so that the driver can be constructed outside an async context.
#[derive(Debug)]
struct DefaultChain {
    chain:
        tokio::sync::OnceCell<aws_config::default_provider::credentials::DefaultCredentialsChain>,
    region: Region,
    http: aws_sdk_s3::config::SharedHttpClient,
}

impl aws_sdk_s3::config::ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        aws_credential_types::provider::future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| async {
                    let conf = aws_config::provider_config::ProviderConfig::without_region()
                        .with_region(Some(self.region.clone()))
                        .with_http_client(self.http.clone());
                    aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                        .configure(conf)
                        .region(self.region.clone())
                        .build()
                        .await
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

impl S3Driver {
    /// Builds the client; nothing is sent until the first call.
    pub fn new(settings: &S3Settings) -> Result<Self, S3SetupError> {
        let fail = |reason: String| S3SetupError {
            driver: settings.driver_name,
            reason,
        };
        let http = http::client(CONNECT_TIMEOUT, settings.skip_verify)
            .map_err(|e| fail(format!("TLS set-up: {e}")))?;
        let region = Region::new(settings.region.clone());
        let credentials = match &settings.credentials {
            Some((access, secret, token)) => SharedCredentialsProvider::new(Credentials::new(
                access,
                secret,
                token.clone(),
                None,
                "wharf-config",
            )),
            None => SharedCredentialsProvider::new(DefaultChain {
                chain: tokio::sync::OnceCell::new(),
                region: region.clone(),
                http: http.clone(),
            }),
        };
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(region)
            .credentials_provider(credentials)
            .http_client(http)
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(MAX_ATTEMPTS)
                    .with_initial_backoff(INITIAL_BACKOFF)
                    .with_max_backoff(MAX_BACKOFF),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .read_timeout(FIRST_BYTE_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .force_path_style(settings.force_path_style)
            .use_dual_stack(settings.dual_stack)
            .accelerate(settings.accelerate)
            .use_fips(settings.fips)
            // Plain Content-Length bodies: many S3-compatible stores refuse aws-chunked uploads.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if let Some(endpoint) = &settings.endpoint {
            builder = builder.endpoint_url(endpoint);
        }
        if let Some(agent) = &settings.user_agent {
            // The SDK only allows token characters in its app name.
            let token: String = agent
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .collect();
            let name = AppName::new(token).map_err(|e| fail(format!("useragent: {e}")))?;
            builder = builder.app_name(name);
        }
        let config = builder.build();
        let client = Client::from_conf(config.clone());
        let presigner = match &settings.redirect_endpoint {
            Some(e) => Client::from_conf(config.to_builder().endpoint_url(e).build()),
            None => client.clone(),
        };
        let sse = settings.encrypt.then(|| {
            if settings.key_id.is_some() {
                ServerSideEncryption::AwsKms
            } else {
                ServerSideEncryption::Aes256
            }
        });
        let storage_class = (!settings.storage_class.is_empty()
            && !settings.storage_class.eq_ignore_ascii_case("NONE"))
        .then(|| StorageClass::from(settings.storage_class.as_str()));
        Ok(S3Driver {
            s3: Arc::new(Inner {
                client,
                presigner,
                // Distribution registers its S3 driver as `s3aws`: metric labels and logs match.
                name: match settings.driver_name {
                    "s3" => "s3aws",
                    other => other,
                },
                bucket: settings.bucket.clone(),
                root: if settings.root.is_empty() {
                    String::new()
                } else {
                    format!("{}/", settings.root)
                },
                part_size: settings.chunk_size.max(MIN_PART),
                copy_chunk: settings.copy_chunk_size.max(MIN_PART),
                copy_concurrency: settings.copy_max_concurrency.max(1),
                copy_threshold: settings.copy_threshold,
                write: WriteOptions {
                    acl: settings.object_acl.as_deref().map(ObjectCannedAcl::from),
                    storage_class,
                    sse,
                    kms_key: settings.key_id.clone().filter(|_| settings.encrypt),
                },
                log_calls: settings.log_calls,
            }),
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
        let cutoff = SystemTime::now()
            .checked_sub(age)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let s3 = &self.s3;
        let mut stale = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = s3
                .call("ListMultipartUploads", &s3.root, || {
                    s3.client
                        .list_multipart_uploads()
                        .bucket(&s3.bucket)
                        .prefix(&s3.root)
                        .set_key_marker(key_marker.clone())
                        .set_upload_id_marker(id_marker.clone())
                        .send()
                })
                .await?;
            for upload in page.uploads() {
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok());
                if let (Some(key), Some(id), Some(started)) =
                    (upload.key(), upload.upload_id(), started)
                {
                    if started < cutoff {
                        stale.push((key.to_string(), id.to_string()));
                    }
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
        for (key, id) in &stale {
            if dry_run {
                tracing::info!(key, upload_id = id, "upload purge (dry run): would abort");
            } else {
                s3.abort(key, id).await?;
                tracing::info!(
                    key,
                    upload_id = id,
                    "upload purge: aborted a stale multipart upload"
                );
            }
        }
        Ok(stale.len())
    }
}

/// A failed SDK call as a [`StorageError`]; 404s become `NotFound`.
fn sdk_error<E>(
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
    // Only conditional writes fail these ways: someone else changed the object first.
    let lost_race = matches!(
        err.code(),
        Some("PreconditionFailed" | "ConditionalRequestConflict")
    ) || matches!(&err, SdkError::ServiceError(e) if e.raw().status().as_u16() == 412);
    if lost_race {
        return StorageError::Busy(path.to_string());
    }
    let kind = match &err {
        SdkError::TimeoutError(_) => std::io::ErrorKind::TimedOut,
        SdkError::DispatchFailure(f) if f.is_timeout() => std::io::ErrorKind::TimedOut,
        SdkError::DispatchFailure(_) => std::io::ErrorKind::ConnectionAborted,
        _ => std::io::ErrorKind::Other,
    };
    StorageError::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::new(kind, DisplayErrorContext(&err).to_string()),
    }
}

fn io_error(op: &'static str, path: &str, message: impl Into<String>) -> StorageError {
    StorageError::Io {
        op,
        path: path.to_string(),
        source: std::io::Error::other(message.into()),
    }
}

/// When a `PutObject` may replace what is at its key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PutCondition<'a> {
    /// Whatever is there.
    Always,
    /// Only if nothing is there (`If-None-Match: *`).
    Absent,
    /// Only if the object there has this entity tag (`If-Match`).
    Matches(&'a str),
}

/// How a stored object stands: a plain file, or the tail of an open multipart upload.
#[derive(Debug, Clone, Default)]
pub(crate) struct Layout {
    /// The open multipart upload holding the first `parts` parts.
    pub upload: Option<String>,
    /// Parts 1..=parts of `upload` hold the start of the file.
    pub parts: i32,
    /// Bytes in those parts.
    pub parts_size: u64,
    /// Bytes in the object body, after the parts.
    pub body: u64,
    /// Entity tag of the object.
    pub etag: Option<String>,
    /// [`chain_part`] over the parts' entity tags, when recorded (tails written before it
    /// was recorded have none).
    pub parts_digest: Option<String>,
}

/// Extends a parts digest with the next part's entity tag.
pub(crate) fn chain_part(digest: &str, etag: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(digest.as_bytes());
    h.update(b"\n");
    h.update(etag.trim_matches('"').as_bytes());
    crate::registry::digest::hex_lower(&h.finalize())
}

impl Layout {
    fn from_object(
        metadata: Option<&HashMap<String, String>>,
        body: u64,
        etag: Option<&str>,
    ) -> Self {
        let meta = |k: &str| metadata.and_then(|m| m.get(k));
        let upload = meta(META_UPLOAD).filter(|u| !u.is_empty()).cloned();
        Layout {
            parts: meta(META_PARTS).and_then(|v| v.parse().ok()).unwrap_or(0),
            parts_size: meta(META_PARTS_SIZE)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            upload: upload.clone(),
            body,
            etag: etag.map(str::to_string),
            parts_digest: meta(META_PARTS_DIGEST).cloned(),
        }
        .checked()
    }

    /// Metadata without an upload id is ignored: the object is a plain file.
    fn checked(mut self) -> Self {
        if self.upload.is_none() {
            self.parts = 0;
            self.parts_size = 0;
        }
        self
    }

    /// Logical size of the file.
    pub fn size(&self) -> u64 {
        self.parts_size + self.body
    }

    /// Metadata recording this layout on the tail object.
    pub fn metadata(&self) -> Option<HashMap<String, String>> {
        let upload = self.upload.as_ref()?;
        let mut meta = HashMap::from([
            (META_UPLOAD.to_string(), upload.clone()),
            (META_PARTS.to_string(), self.parts.to_string()),
            (META_PARTS_SIZE.to_string(), self.parts_size.to_string()),
        ]);
        if let Some(digest) = &self.parts_digest {
            meta.insert(META_PARTS_DIGEST.to_string(), digest.clone());
        }
        Some(meta)
    }
}

/// Splits `[0, len)` into copy ranges of `chunk` bytes; a short last range is merged into the
/// one before, so that every range but a lone one is at least [`MIN_PART`].
pub(crate) fn copy_ranges(len: u64, chunk: u64) -> Vec<(u64, u64)> {
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
    fn key(&self, path: &str) -> Result<String, StorageError> {
        path_components(path)?;
        Ok(format!("{}{}", self.root, &path[1..]))
    }

    /// The key prefix of everything under a driver path.
    fn dir_prefix(&self, path: &str) -> Result<String, StorageError> {
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
    pub(crate) async fn call<T, E, F, Fut>(
        &self,
        op: &'static str,
        key: &str,
        f: F,
    ) -> Result<T, StorageError>
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

    /// Where an object stands, from its metadata.
    pub(crate) async fn head(
        &self,
        key: &str,
        path: &str,
    ) -> Result<(Layout, Option<SystemTime>), StorageError> {
        let out = self
            .call("HeadObject", path, || {
                self.client
                    .head_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send()
            })
            .await?;
        let layout = Layout::from_object(
            out.metadata(),
            out.content_length().unwrap_or(0).max(0) as u64,
            out.e_tag(),
        );
        let modified = out
            .last_modified()
            .and_then(|t| SystemTime::try_from(*t).ok());
        Ok((layout, modified))
    }

    /// Writes a whole object, when `condition` holds (else [`StorageError::Busy`]).
    pub(crate) async fn put(
        &self,
        key: &str,
        path: &str,
        body: Bytes,
        metadata: Option<HashMap<String, String>>,
        condition: PutCondition<'_>,
    ) -> Result<(), StorageError> {
        let w = &self.write;
        let (if_match, if_none_match) = match condition {
            PutCondition::Always => (None, None),
            PutCondition::Absent => (None, Some("*".to_string())),
            PutCondition::Matches(etag) => (Some(etag.to_string()), None),
        };
        self.call("PutObject", path, || {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .set_if_match(if_match.clone())
                .set_if_none_match(if_none_match.clone())
                .content_type("application/octet-stream")
                .content_length(body.len() as i64)
                .body(SdkStream::from(body.clone()))
                .set_acl(w.acl.clone())
                .set_storage_class(w.storage_class.clone())
                .set_server_side_encryption(w.sse.clone())
                .set_ssekms_key_id(w.kms_key.clone())
                .set_metadata(metadata.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    /// Opens a multipart upload on `key`.
    pub(crate) async fn create_upload(
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
    pub(crate) async fn upload_part(
        &self,
        key: &str,
        path: &str,
        upload: &str,
        number: i32,
        body: Bytes,
    ) -> Result<String, StorageError> {
        let out = self
            .call("UploadPart", path, || {
                self.client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload)
                    .part_number(number)
                    .content_length(body.len() as i64)
                    .body(SdkStream::from(body.clone()))
                    .send()
            })
            .await?;
        out.e_tag()
            .map(str::to_string)
            .ok_or_else(|| io_error("UploadPart", path, "no ETag in the answer"))
    }

    /// Copies `[start, end)` of the object at `source` into a part, server-side.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn copy_part(
        &self,
        source: &str,
        source_etag: Option<&str>,
        key: &str,
        path: &str,
        upload: &str,
        number: i32,
        (start, end): (u64, u64),
    ) -> Result<String, StorageError> {
        let out = self
            .call("UploadPartCopy", path, || {
                self.client
                    .upload_part_copy()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload)
                    .part_number(number)
                    .copy_source(self.copy_source(source))
                    .copy_source_range(format!("bytes={start}-{}", end - 1))
                    .set_copy_source_if_match(source_etag.map(str::to_string))
                    .send()
            })
            .await?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string)
            .ok_or_else(|| io_error("UploadPartCopy", path, "no ETag in the answer"))
    }

    /// Copies ranges of `source` into consecutive parts from `first`, at most
    /// `copy_concurrency` at a time; returns the parts in order.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn copy_parts(
        &self,
        source: &str,
        source_etag: Option<&str>,
        key: &str,
        path: &str,
        upload: &str,
        first: i32,
        ranges: &[(u64, u64)],
    ) -> Result<Vec<CompletedPart>, StorageError> {
        // Owned inputs per copy: the futures must be `Send` for any borrow of the caller's.
        let jobs: Vec<(i32, (u64, u64))> = ranges
            .iter()
            .enumerate()
            .map(|(i, r)| (first + i as i32, *r))
            .collect();
        let (source, etag, key, path, upload) = (
            source.to_string(),
            source_etag.map(str::to_string),
            key.to_string(),
            path.to_string(),
            upload.to_string(),
        );
        let copies = jobs.into_iter().map(|(number, range)| {
            let (source, etag, key, path, upload) = (
                source.clone(),
                etag.clone(),
                key.clone(),
                path.clone(),
                upload.clone(),
            );
            async move {
                let etag = self
                    .copy_part(
                        &source,
                        etag.as_deref(),
                        &key,
                        &path,
                        &upload,
                        number,
                        range,
                    )
                    .await?;
                Ok::<_, StorageError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .e_tag(etag)
                        .build(),
                )
            }
        });
        let mut parts: Vec<CompletedPart> = futures_util::stream::iter(copies)
            .buffer_unordered(self.copy_concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// Publishes a multipart upload as the object at `key`.
    pub(crate) async fn complete(
        &self,
        key: &str,
        path: &str,
        upload: &str,
        parts: Vec<CompletedPart>,
    ) -> Result<(), StorageError> {
        let done = CompletedMultipartUpload::builder()
            .set_parts(Some(parts))
            .build();
        self.call("CompleteMultipartUpload", path, || {
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload)
                .multipart_upload(done.clone())
                .send()
        })
        .await?;
        Ok(())
    }

    /// Drops a multipart upload and its parts; an upload already gone is fine.
    pub(crate) async fn abort(&self, key: &str, upload: &str) -> Result<(), StorageError> {
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

    /// Parts 1..=count of an upload, checked against the size recorded beside them.
    async fn listed_parts(
        &self,
        key: &str,
        path: &str,
        layout: &Layout,
    ) -> Result<Vec<CompletedPart>, StorageError> {
        let upload = layout.upload.as_deref().unwrap_or_default();
        let mut parts = Vec::new();
        let mut size = 0u64;
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
                if number >= 1 && number <= layout.parts {
                    size += p.size().unwrap_or(0).max(0) as u64;
                    parts.push(
                        CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(p.e_tag().map(str::to_string))
                            .build(),
                    );
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
        parts.sort_by_key(|p| p.part_number());
        parts.dedup_by_key(|p| p.part_number());
        if let Some(recorded) = &layout.parts_digest {
            let listed = parts.iter().fold(String::new(), |d, p| {
                chain_part(&d, p.e_tag().unwrap_or_default())
            });
            if &listed != recorded {
                return Err(StorageError::Changed(path.to_string()));
            }
        }
        if parts.len() != layout.parts as usize || size != layout.parts_size {
            return Err(io_error(
                "ListParts",
                path,
                format!(
                    "multipart upload holds {} parts ({size} bytes), {} parts ({} bytes) were recorded",
                    parts.len(),
                    layout.parts,
                    layout.parts_size
                ),
            ));
        }
        Ok(parts)
    }

    /// Turns the tail object of an open multipart upload into the whole file, server-side:
    /// the tail becomes the last part and the upload is completed onto the same key.
    pub(crate) async fn finish_in_place(
        &self,
        key: &str,
        path: &str,
        layout: &Layout,
    ) -> Result<Layout, StorageError> {
        let Some(upload) = layout.upload.as_deref() else {
            return Ok(layout.clone());
        };
        let mut parts = self.listed_parts(key, path, layout).await?;
        if layout.body > 0 || parts.is_empty() {
            let number = layout.parts + 1;
            let etag = if layout.body > 0 {
                self.copy_part(
                    key,
                    layout.etag.as_deref(),
                    key,
                    path,
                    upload,
                    number,
                    (0, layout.body),
                )
                .await?
            } else {
                self.upload_part(key, path, upload, number, Bytes::new())
                    .await?
            };
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .e_tag(etag)
                    .build(),
            );
        }
        self.complete(key, path, upload, parts).await?;
        Ok(Layout {
            body: layout.size(),
            ..Layout::default()
        })
    }

    /// Copies a plain object server-side: `CopyObject`, or a multipart copy above the threshold.
    async fn copy_object(
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
        let copied = self
            .copy_parts(from, None, to, path, &upload, 1, &ranges)
            .await;
        let result = match copied {
            Ok(parts) => self.complete(to, path, &upload, parts).await,
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
    pub(crate) async fn get_object(
        &self,
        key: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
        etag: Option<&str>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
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

    /// Reads a file: the whole body, or a range. The tail of an open upload is first
    /// completed in place, so that the whole file is read.
    async fn get(
        &self,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<aws_sdk_s3::operation::get_object::GetObjectOutput, StorageError> {
        let key = self.key(path)?;
        for _ in 0..2 {
            let out = self.get_object(&key, path, range, None).await?;
            let layout = Layout::from_object(out.metadata(), 0, out.e_tag());
            if layout.upload.is_none() {
                return Ok(out);
            }
            // The parts of an open upload cannot be read: make it a plain object first.
            let (layout, _) = self.head(&key, path).await?;
            self.finish_in_place(&key, path, &layout).await?;
        }
        Err(io_error(
            "GetObject",
            path,
            "the file keeps changing while being read",
        ))
    }
}

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
                Some(Err(e)) => {
                    let err = StorageError::Io {
                        op: "read",
                        path: path.clone(),
                        source: std::io::Error::other(DisplayErrorContext(&e).to_string()),
                    };
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

    async fn get_content(&self, path: &str) -> Result<Bytes, StorageError> {
        let out = self.s3.get(path, None).await?;
        let size = out.content_length().unwrap_or(0).max(0) as usize;
        let mut body = out.body;
        let mut buf = BytesMut::with_capacity(size);
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| io_error("read", path, DisplayErrorContext(&e).to_string()))?;
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

    async fn reader(
        &self,
        path: &str,
        offset: u64,
        len: Option<u64>,
    ) -> Result<ByteStream, StorageError> {
        if len == Some(0) || offset > 0 {
            // An empty range cannot be asked for, and S3 refuses ranges starting at the end.
            let info = self.stat(path).await?;
            if info.is_dir {
                return Err(StorageError::NotFound(path.to_string()));
            }
            if offset > info.size {
                return Err(StorageError::InvalidOffset {
                    path: path.to_string(),
                    offset,
                    size: info.size,
                });
            }
            if offset == info.size || len == Some(0) {
                return Ok(Box::pin(futures_util::stream::empty()));
            }
        }
        let range = (offset > 0 || len.is_some()).then_some((offset, len));
        let out = self.s3.get(path, range).await?;
        Ok(into_stream(path, out.body))
    }

    async fn stat(&self, path: &str) -> Result<FileInfo, StorageError> {
        let s3 = &self.s3;
        let key = s3.key(path)?;
        if !key.is_empty() && !key.ends_with('/') {
            match s3.head(&key, path).await {
                Ok((layout, modified)) => {
                    return Ok(FileInfo {
                        size: layout.size(),
                        is_dir: false,
                        modified,
                    })
                }
                Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        // A "directory" is any key under the prefix.
        let prefix = s3.dir_prefix(path)?;
        let page = s3
            .call("ListObjectsV2", path, || {
                s3.client
                    .list_objects_v2()
                    .bucket(&s3.bucket)
                    .prefix(&prefix)
                    .max_keys(1)
                    .send()
            })
            .await?;
        if page.key_count().unwrap_or(0) > 0 || !page.contents().is_empty() {
            Ok(FileInfo {
                size: 0,
                is_dir: true,
                modified: None,
            })
        } else {
            Err(StorageError::NotFound(path.to_string()))
        }
    }

    async fn list(&self, path: &str) -> Result<Vec<String>, StorageError> {
        let entries = self.list_entries(path).await?;
        Ok(entries.into_iter().map(|(name, _)| name).collect())
    }

    // The delimited listing says which children are directories (common prefixes): no HEADs.
    async fn list_entries(&self, path: &str) -> Result<Vec<(String, bool)>, StorageError> {
        let s3 = &self.s3;
        let prefix = s3.dir_prefix(path)?;
        let mut entries = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = s3
                .call("ListObjectsV2", path, || {
                    s3.client
                        .list_objects_v2()
                        .bucket(&s3.bucket)
                        .prefix(&prefix)
                        .delimiter("/")
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            for dir in page.common_prefixes() {
                if let Some(name) = dir.prefix().and_then(|p| p.strip_prefix(prefix.as_str())) {
                    let name = name.trim_end_matches('/');
                    if !name.is_empty() {
                        entries.push((name.to_string(), true));
                    }
                }
            }
            for object in page.contents() {
                if let Some(name) = object.key().and_then(|k| k.strip_prefix(prefix.as_str())) {
                    if !name.is_empty() {
                        entries.push((name.to_string(), false));
                    }
                }
            }
            token = page.next_continuation_token().map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        if entries.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        // A name both an object and a prefix is reported once, as a directory.
        entries.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        entries.dedup_by(|a, b| a.0 == b.0);
        Ok(entries)
    }

    async fn move_to(&self, from: &str, to: &str) -> Result<(), StorageError> {
        let s3 = &self.s3;
        let (source, target) = (s3.key(from)?, s3.key(to)?);
        let (layout, _) = s3.head(&source, from).await?;
        let layout = s3.finish_in_place(&source, from, &layout).await?;
        s3.copy_object(&source, &target, from, layout.size())
            .await?;
        s3.call("DeleteObject", from, || {
            s3.client
                .delete_object()
                .bucket(&s3.bucket)
                .key(&source)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn delete(&self, path: &str) -> Result<(), StorageError> {
        let s3 = &self.s3;
        let key = s3.key(path)?;
        let prefix = s3.dir_prefix(path)?;
        let wanted = |k: &str| k == key || k.starts_with(prefix.as_str());
        // Everything at or under the path: listing by the bare key also returns siblings that
        // merely start with it (`v1` and `v10`), which are left alone.
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = s3
                .call("ListObjectsV2", path, || {
                    s3.client
                        .list_objects_v2()
                        .bucket(&s3.bucket)
                        .prefix(&key)
                        .set_continuation_token(token.clone())
                        .send()
                })
                .await?;
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key())
                    .filter(|k| wanted(k))
                    .map(str::to_string),
            );
            token = page.next_continuation_token().map(str::to_string);
            if !page.is_truncated().unwrap_or(false) || token.is_none() {
                break;
            }
        }
        // Open multipart uploads below it (sessions cancelled mid-chunk) go too.
        let uploads = s3
            .call("ListMultipartUploads", path, || {
                s3.client
                    .list_multipart_uploads()
                    .bucket(&s3.bucket)
                    .prefix(&key)
                    .send()
            })
            .await?;
        let open: Vec<(String, String)> = uploads
            .uploads()
            .iter()
            .filter_map(|u| Some((u.key()?.to_string(), u.upload_id()?.to_string())))
            .filter(|(k, _)| wanted(k))
            .collect();
        if keys.is_empty() && open.is_empty() {
            return Err(StorageError::NotFound(path.to_string()));
        }
        if keys.len() == 1 {
            s3.call("DeleteObject", path, || {
                s3.client
                    .delete_object()
                    .bucket(&s3.bucket)
                    .key(&keys[0])
                    .send()
            })
            .await?;
        } else {
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
                let out = s3
                    .call("DeleteObjects", path, || {
                        s3.client
                            .delete_objects()
                            .bucket(&s3.bucket)
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
        }
        for (k, id) in &open {
            s3.abort(k, id).await?;
        }
        Ok(())
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(
            writer::S3Writer::append(self.s3.clone(), path, offset).await?,
        ))
    }

    async fn atomic_writer(&self, path: &str) -> Result<Box<dyn FileWriter>, StorageError> {
        Ok(Box::new(writer::S3Writer::atomic(self.s3.clone(), path)?))
    }

    async fn redirect_url(&self, path: &str) -> Result<Option<String>, StorageError> {
        let s3 = &self.s3;
        let key = s3.key(path)?;
        let presigning = PresigningConfig::expires_in(REDIRECT_VALIDITY)
            .map_err(|e| io_error("presign", path, e.to_string()))?;
        let request = s3
            .presigner
            .get_object()
            .bucket(&s3.bucket)
            .key(&key)
            .presigned(presigning)
            .await
            .map_err(|e| sdk_error("presign", path, e))?;
        Ok(Some(request.uri().to_string()))
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

    #[test]
    fn layout_reads_its_metadata() {
        let meta = HashMap::from([
            (META_UPLOAD.to_string(), "u1".to_string()),
            (META_PARTS.to_string(), "3".to_string()),
            (META_PARTS_SIZE.to_string(), "30".to_string()),
        ]);
        let l = Layout::from_object(Some(&meta), 4, Some("\"e\""));
        assert_eq!(
            (l.upload.as_deref(), l.parts, l.size()),
            (Some("u1"), 3, 34)
        );
        assert_eq!(l.metadata().unwrap(), meta);
        let plain = Layout::from_object(None, 9, None);
        assert_eq!(
            (plain.upload.as_deref(), plain.parts, plain.size()),
            (None, 0, 9)
        );
        assert!(Layout::default().metadata().is_none());
    }

    #[test]
    fn settings_follow_distribution() {
        let s3 = S3Config {
            region: "us-east-1".into(),
            bucket: "b".into(),
            regionendpoint: Some("127.0.0.1:9000".into()),
            secure: false,
            rootdirectory: "/registry/".into(),
            ..S3Config::default()
        };
        let s = S3Settings::from_s3(&s3);
        assert_eq!(s.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(s.force_path_style);
        assert_eq!(s.root, "registry");
        assert!(s.credentials.is_none());
        let oss = OssConfig {
            accesskeyid: "a".into(),
            accesskeysecret: "s".into(),
            region: "oss-cn-beijing".into(),
            bucket: "b".into(),
            internal: true,
            ..OssConfig::default()
        };
        let o = S3Settings::from_oss(&oss);
        assert_eq!(o.region, "cn-beijing");
        assert_eq!(
            o.endpoint.as_deref(),
            Some("https://oss-cn-beijing-internal.aliyuncs.com")
        );
        assert!(!o.force_path_style);
    }
}
