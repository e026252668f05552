//! Every Blob service call the driver makes, each through [`Client::call`]: one place that
//! signs requests, bounds them in time, retries throttling, 5xx and connection failures with
//! backoff, records each call's latency and outcome (metric and log), and turns failures into
//! [`StorageError`]s.
//!
//! Nothing here knows how a file is laid out over blocks: these are the service's operations
//! on blob names.

use std::time::{Duration, Instant, SystemTime};

use ::http::{HeaderMap, Method, StatusCode};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::sync::OnceCell;

use super::http::{self, HttpClient};
use super::settings::{AzureAuth, AzureSettings, AzureSetupError};
use super::sign::{
    encode_path, encode_query, DelegationKey, SharedKey, SignedRequest, API_VERSION,
};
use super::token::{self, TokenCredential, TokenError, TokenSource};
use super::xml::{self, Block, ListedBlob};
use crate::storage::drivers::rest_io;
use crate::storage::{relative_path, ByteStream, StorageError};

/// TCP and TLS connection set-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request (its body included: one block) to the response head.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the next piece of a response body.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Error answers are read up to this size, for their code.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Names per listing page (the service allows up to 5000).
const LIST_PAGE: u32 = 1000;
/// Pages of one listing, at most.
const MAX_PAGES: usize = 1_000_000;
/// A pending server-side copy is polled at most this many times (about ten minutes).
const MAX_COPY_POLLS: u32 = 600;
/// Redirect URLs stay valid this long (as distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);
/// User delegation keys are asked for this long.
const DELEGATION_KEY_VALIDITY: Duration = Duration::from_secs(2 * 60 * 60);
/// A user delegation key is replaced once less than this is left (more than a redirect's
/// validity, so every URL it signs stays valid as long as it says).
const DELEGATION_KEY_RENEW: Duration = Duration::from_secs(30 * 60);

/// When a write may replace what is at its name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Condition<'a> {
    /// Whatever is there.
    Always,
    /// Only if nothing is there (`If-None-Match: *`).
    Absent,
    /// Only if the blob there has this entity tag (`If-Match`).
    Matches(&'a str),
}

impl Condition<'_> {
    fn header(self) -> Option<(String, String)> {
        match self {
            Condition::Always => None,
            Condition::Absent => Some(("if-none-match".into(), "*".into())),
            Condition::Matches(etag) => Some(("if-match".into(), etag.to_string())),
        }
    }
}

/// What `Get Blob Properties` says of a blob.
#[derive(Debug, Clone)]
pub(super) struct Properties {
    /// Content length.
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
}

/// The committed blocks of a blob, with the blob's entity tag and size.
#[derive(Debug, Clone)]
pub(super) struct BlockList {
    /// Blocks in order.
    pub blocks: Vec<Block>,
    /// Entity tag of the blob they were read from.
    pub etag: String,
    /// Content length of that blob.
    pub size: u64,
}

/// One request, before signing.
struct Request<'a> {
    op: &'static str,
    method: Method,
    /// Blob name; `None` addresses the container.
    blob: Option<&'a str>,
    /// Addresses the service (the account) rather than the container.
    at_service: bool,
    query: Vec<(&'static str, String)>,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Request<'a> {
    fn new(op: &'static str, method: Method, blob: Option<&'a str>) -> Self {
        Request {
            op,
            method,
            blob,
            at_service: false,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    fn condition(mut self, condition: Condition<'_>) -> Self {
        self.headers.extend(condition.header());
        self
    }

    fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// Why a call failed, before it becomes a [`StorageError`].
#[derive(Debug)]
enum Failure {
    /// The service answered with an error status.
    Status {
        status: StatusCode,
        code: String,
        message: String,
    },
    /// No answer: connection refused or cut, or a timeout.
    Transport {
        kind: std::io::ErrorKind,
        message: String,
    },
    /// No access token to authorize the request with.
    Credential(TokenError),
}

impl Failure {
    /// Worth another attempt: throttling, server errors, no answer.
    fn transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
            }
            Failure::Transport { .. } => true,
            // The identity provider did not answer; a refusal will not change.
            Failure::Credential(e) => matches!(e, TokenError::Failed(_)),
        }
    }

    /// The one mapping from the service's failures to the driver's errors.
    fn into_storage_error(self, op: &'static str, path: &str) -> StorageError {
        match self {
            Failure::Status { status, .. } if status == StatusCode::NOT_FOUND => {
                StorageError::NotFound(path.to_string())
            }
            // Only conditional writes fail these ways: another writer got there first (or
            // committed the blob, discarding the blocks this one staged).
            Failure::Status { status, code, .. }
                if status == StatusCode::PRECONDITION_FAILED
                    || code == "BlobAlreadyExists"
                    || code == "InvalidBlockList" =>
            {
                StorageError::Busy(path.to_string())
            }
            Failure::Status {
                status,
                code,
                message,
            } => {
                // Throttled or failing after every retry: the backend is unavailable.
                let kind = if matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504) {
                    std::io::ErrorKind::ResourceBusy
                } else {
                    std::io::ErrorKind::Other
                };
                StorageError::Io {
                    op,
                    path: path.to_string(),
                    source: std::io::Error::new(kind, format!("HTTP {status} {code}: {message}")),
                }
            }
            Failure::Transport { kind, message } => StorageError::Io {
                op,
                path: path.to_string(),
                source: std::io::Error::new(kind, message),
            },
            // Without a token nothing can be read or written: unavailable until one is had.
            Failure::Credential(e) => StorageError::Unavailable {
                op,
                path: path.to_string(),
                reason: format!("no storage access token: {e}"),
            },
        }
    }
}

/// A hyper failure as a [`Failure`]: what kind of "no answer" it was.
fn transport(err: hyper_util::client::legacy::Error) -> Failure {
    let (kind, message) = rest_io::transport_failure(&err);
    Failure::Transport { kind, message }
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// How requests are authorized.
enum Auth {
    SharedKey(SharedKey),
    /// `Authorization: Bearer` with Entra ID tokens; redirect URLs are signed with a user
    /// delegation key, cached until it is due.
    Bearer {
        tokens: TokenCredential,
        delegation: Box<tokio::sync::Mutex<Option<(DelegationKey, Instant)>>>,
    },
}

/// The token sources of a configured authorization (`None` for Shared Key).
pub(super) fn token_sources(
    auth: &AzureAuth,
    env: &dyn Fn(&str) -> Option<String>,
) -> Option<Vec<TokenSource>> {
    match auth {
        AzureAuth::SharedKey(_) => None,
        AzureAuth::ClientSecret {
            tenant,
            client_id,
            secret,
        } => Some(vec![TokenSource::ClientSecret {
            authority: token::authority(env),
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            secret: secret.clone(),
        }]),
        AzureAuth::Default => {
            let (chain, skipped) = token::default_chain(env);
            for why in skipped {
                tracing::debug!(
                    target: "wharf::storage::azure",
                    reason = %why, "default credentials: source skipped"
                );
            }
            Some(chain)
        }
    }
}

/// One container's client, shared by the driver and its open writers.
pub(super) struct Client {
    http: HttpClient,
    auth: Auth,
    account: String,
    /// Encoded URL path of the service (`/`, or `/account/` on an emulator).
    service_path: String,
    /// `scheme://authority` of the service.
    origin: String,
    /// Encoded URL path of the container (`/c`, or `/account/c` on an emulator).
    container_path: String,
    container: String,
    https: bool,
    /// See [`AzureSettings::name_prefix`].
    prefix: String,
    max_attempts: u32,
    retry_delay: Duration,
    /// Set once the container is known to exist (created if missing, as distribution 2.8).
    container_ready: OnceCell<()>,
}

impl Client {
    /// Builds the client; nothing is sent until the first call.
    pub(super) fn new(s: &AzureSettings) -> Result<Self, AzureSetupError> {
        let env = |name: &str| std::env::var(name).ok();
        let auth = match token_sources(&s.auth, &env) {
            None => {
                let AzureAuth::SharedKey(key) = &s.auth else {
                    unreachable!("only Shared Key has no token sources")
                };
                Auth::SharedKey(
                    SharedKey::new(&s.account, key)
                        .map_err(|e| AzureSetupError(format!("accountkey is not base64: {e}")))?,
                )
            }
            Some(sources) => Auth::Bearer {
                tokens: TokenCredential::new(sources),
                delegation: Box::new(tokio::sync::Mutex::new(None)),
            },
        };
        let uri: ::http::Uri = s
            .service_url
            .parse()
            .map_err(|e| AzureSetupError(format!("serviceurl {:?}: {e}", s.service_url)))?;
        let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) else {
            return Err(AzureSetupError(format!(
                "serviceurl {:?} needs a scheme and a host",
                s.service_url
            )));
        };
        if scheme != "http" && scheme != "https" {
            return Err(AzureSetupError(format!(
                "serviceurl {:?}: only http and https",
                s.service_url
            )));
        }
        let base_path = uri.path().trim_end_matches('/');
        let http = http::client(CONNECT_TIMEOUT, s.skip_verify)
            .map_err(|e| AzureSetupError(format!("TLS set-up: {e}")))?;
        Ok(Client {
            http,
            auth,
            account: s.account.clone(),
            service_path: format!("{base_path}/"),
            origin: format!("{scheme}://{authority}"),
            container_path: format!("{base_path}/{}", encode_path(&s.container)),
            container: s.container.clone(),
            https: scheme == "https",
            prefix: s.name_prefix.clone(),
            max_attempts: s.max_attempts.max(1),
            retry_delay: s.retry_delay,
            container_ready: OnceCell::new(),
        })
    }

    /// The blob name of a driver path.
    pub(super) fn name(&self, path: &str) -> Result<String, StorageError> {
        relative_path(path)?;
        Ok(format!("{}{}", self.prefix, &path[1..]))
    }

    /// The name prefix of everything under a driver path.
    pub(super) fn dir_prefix(&self, path: &str) -> Result<String, StorageError> {
        let name = self.name(path)?;
        Ok(if name.is_empty() || name.ends_with('/') {
            name
        } else {
            format!("{name}/")
        })
    }

    /// The encoded URL path of a blob.
    fn blob_path(&self, name: &str) -> String {
        format!("{}/{}", self.container_path, encode_path(name))
    }

    /// Signs and sends one attempt; the response head is bounded in time.
    async fn send_once(&self, req: &Request<'_>) -> Result<::http::Response<Incoming>, Failure> {
        let url_path = match req.blob {
            Some(name) => self.blob_path(name),
            None if req.at_service => self.service_path.clone(),
            None => self.container_path.clone(),
        };
        let mut headers = req.headers.clone();
        headers.push((
            "x-ms-date".into(),
            httpdate::fmt_http_date(SystemTime::now()),
        ));
        headers.push(("x-ms-version".into(), API_VERSION.into()));
        if req.method == Method::PUT || !req.body.is_empty() {
            headers.push(("content-length".into(), req.body.len().to_string()));
        }
        let authorization = match &self.auth {
            Auth::SharedKey(key) => key.authorization(&SignedRequest {
                method: req.method.as_str(),
                path: &url_path,
                query: &req.query,
                headers: &headers,
            }),
            Auth::Bearer { tokens, .. } => {
                let token = tokens.token().await.map_err(Failure::Credential)?;
                format!("Bearer {token}")
            }
        };
        let query: Vec<String> = req
            .query
            .iter()
            .map(|(n, v)| format!("{n}={}", encode_query(v)))
            .collect();
        let uri = if query.is_empty() {
            format!("{}{url_path}", self.origin)
        } else {
            format!("{}{url_path}?{}", self.origin, query.join("&"))
        };
        let mut builder = ::http::Request::builder()
            .method(req.method.clone())
            .uri(&uri)
            .header("authorization", authorization);
        for (name, value) in &headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let request =
            builder
                .body(Full::new(req.body.clone()))
                .map_err(|e| Failure::Transport {
                    kind: std::io::ErrorKind::InvalidInput,
                    message: format!("{uri}: {e}"),
                })?;
        match tokio::time::timeout(RESPONSE_TIMEOUT, self.http.request(request)).await {
            Err(_) => Err(Failure::Transport {
                kind: std::io::ErrorKind::TimedOut,
                message: format!("no answer within {RESPONSE_TIMEOUT:?}"),
            }),
            Ok(Err(e)) => Err(transport(e)),
            Ok(Ok(response)) if response.status().is_success() => Ok(response),
            Ok(Ok(response)) => Err(error_answer(response).await),
        }
    }

    /// Sends with bounded retries and exponential backoff on transient failures.
    async fn send_retrying(
        &self,
        req: &Request<'_>,
    ) -> Result<::http::Response<Incoming>, Failure> {
        rest_io::retrying(
            "azure",
            req.op,
            self.max_attempts,
            self.retry_delay,
            Failure::transient,
            || self.send_once(req),
        )
        .await
    }

    /// Runs one call: container check, retries, metric, log, error mapping.
    async fn call(
        &self,
        req: Request<'_>,
        path: &str,
    ) -> Result<::http::Response<Incoming>, StorageError> {
        let op = req.op;
        self.ensure_container(path).await?;
        self.call_raw(req)
            .await
            .map_err(|f| f.into_storage_error(op, path))
    }

    /// Sends with retries and records the call's latency and outcome; failures unmapped.
    async fn call_raw(&self, req: Request<'_>) -> Result<::http::Response<Incoming>, Failure> {
        let started = Instant::now();
        let op = req.op;
        let result = self.send_retrying(&req).await;
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Failure::Status { status, .. }) if status.is_client_error() => "refused",
            Err(_) => "error",
        };
        crate::ops::metrics::external_call("azure", op, elapsed, outcome != "error");
        let name = req.blob.unwrap_or("");
        match &result {
            Err(f) if outcome == "error" => tracing::warn!(
                target: "wharf::storage::azure",
                op, name, elapsed_ms, outcome, failure = ?f, "blob service call failed"
            ),
            _ => tracing::debug!(
                target: "wharf::storage::azure",
                op, name, elapsed_ms, outcome, "blob service call"
            ),
        }
        result
    }

    /// Creates the container on first use when it is missing, as distribution 2.8 does at
    /// start-up; a failure is retried by the next call.
    async fn ensure_container(&self, path: &str) -> Result<(), StorageError> {
        self.container_ready
            .get_or_try_init(|| async {
                let req = Request::new("CreateContainer", Method::PUT, None)
                    .query("restype", "container");
                let result = match self.call_raw(req).await {
                    Ok(_) => Ok(()),
                    // It exists already.
                    Err(Failure::Status { status, .. }) if status == StatusCode::CONFLICT => Ok(()),
                    Err(f) => Err(f.into_storage_error("CreateContainer", path)),
                };
                if let Err(e) = &result {
                    tracing::warn!(
                        target: "wharf::storage::azure",
                        container = %self.container, error = %e, "cannot create the container"
                    );
                }
                result
            })
            .await
            .map(|_| ())
    }

    /// `Get Blob Properties`.
    pub(super) async fn properties(
        &self,
        name: &str,
        path: &str,
    ) -> Result<Properties, StorageError> {
        let response = self
            .call(
                Request::new("GetBlobProperties", Method::HEAD, Some(name)),
                path,
            )
            .await?;
        let headers = response.headers();
        Ok(Properties {
            size: header(headers, "content-length").parse().unwrap_or(0),
            modified: httpdate::parse_http_date(header(headers, "last-modified")).ok(),
        })
    }

    /// `Get Blob`, of `len` bytes (to the end when `None`) from `offset` when a range is given.
    pub(super) async fn get(
        &self,
        name: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ByteStream, StorageError> {
        let mut req = Request::new("GetBlob", Method::GET, Some(name));
        if let Some((offset, len)) = range {
            let value = rest_io::range_value(offset, len);
            req = req.header("x-ms-range", value);
        }
        let response = self.call(req, path).await?;
        Ok(rest_io::body_stream(
            path,
            response.into_body(),
            BODY_IDLE_TIMEOUT,
        ))
    }

    /// A whole (small) blob in memory.
    pub(super) async fn get_all(&self, name: &str, path: &str) -> Result<Bytes, StorageError> {
        rest_io::collect(self.get(name, path, None).await?).await
    }

    /// `Put Blob` of a block blob in one request. An append blob there (distribution 3 writes
    /// small files as append blobs) cannot be replaced by a block blob: it is deleted first,
    /// as distribution does.
    pub(super) async fn put_blob(
        &self,
        name: &str,
        path: &str,
        content: Bytes,
        condition: Condition<'_>,
    ) -> Result<(), StorageError> {
        self.ensure_container(path).await?;
        let req = || {
            Request::new("PutBlob", Method::PUT, Some(name))
                .header("x-ms-blob-type", "BlockBlob")
                .header("content-type", "application/octet-stream")
                .condition(condition)
                .body(content.clone())
        };
        match self.call_raw(req()).await {
            Ok(_) => Ok(()),
            Err(Failure::Status { code, .. })
                if code == "InvalidBlobType" && matches!(condition, Condition::Always) =>
            {
                match self.delete(name, path, Condition::Always).await {
                    Ok(()) | Err(StorageError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
                self.call_raw(req())
                    .await
                    .map(|_| ())
                    .map_err(|f| f.into_storage_error("PutBlob", path))
            }
            Err(f) => Err(f.into_storage_error("PutBlob", path)),
        }
    }

    /// `Put Block`: stages a block, invisible until a block list names it.
    pub(super) async fn put_block(
        &self,
        name: &str,
        path: &str,
        id: &str,
        data: Bytes,
    ) -> Result<(), StorageError> {
        let req = Request::new("PutBlock", Method::PUT, Some(name))
            .query("comp", "block")
            .query("blockid", id)
            .body(data);
        self.call(req, path).await.map(|_| ())
    }

    /// `Put Block List`: the blob becomes the blocks named, in order. Returns its entity tag.
    pub(super) async fn put_block_list(
        &self,
        name: &str,
        path: &str,
        list: String,
        condition: Condition<'_>,
    ) -> Result<String, StorageError> {
        let req = Request::new("PutBlockList", Method::PUT, Some(name))
            .query("comp", "blocklist")
            .header("content-type", "application/xml")
            .header("x-ms-blob-content-type", "application/octet-stream")
            .condition(condition)
            .body(Bytes::from(list));
        let response = self.call(req, path).await?;
        Ok(header(response.headers(), "etag").to_string())
    }

    /// `Get Block List` of the committed blocks.
    pub(super) async fn block_list(
        &self,
        name: &str,
        path: &str,
    ) -> Result<BlockList, StorageError> {
        let req = Request::new("GetBlockList", Method::GET, Some(name))
            .query("comp", "blocklist")
            .query("blocklisttype", "committed");
        let response = self.call(req, path).await?;
        let etag = header(response.headers(), "etag").to_string();
        let size = header(response.headers(), "x-ms-blob-content-length")
            .parse()
            .unwrap_or(0);
        let text = read_text("GetBlockList", path, response.into_body()).await?;
        let blocks = xml::committed_blocks(&text).map_err(|e| io_error("GetBlockList", path, e))?;
        Ok(BlockList { blocks, etag, size })
    }

    /// `Copy Blob` within the container, waiting for a pending copy to finish. With
    /// `source_etag`, the copy happens only if the source still has that entity tag.
    pub(super) async fn copy(
        &self,
        source: &str,
        target: &str,
        path: &str,
        source_etag: Option<&str>,
    ) -> Result<(), StorageError> {
        let source_url = format!("{}{}", self.origin, self.blob_path(source));
        let mut req = Request::new("CopyBlob", Method::PUT, Some(target))
            .header("x-ms-copy-source", source_url);
        if let Some(etag) = source_etag {
            req = req.header("x-ms-source-if-match", etag);
        }
        let response = self.call(req, path).await?;
        let mut status = header(response.headers(), "x-ms-copy-status").to_string();
        let mut polls = 0;
        while status == "pending" {
            polls += 1;
            if polls > MAX_COPY_POLLS {
                return Err(io_error(
                    "CopyBlob",
                    path,
                    "server-side copy still pending after ten minutes",
                ));
            }
            let delay = self
                .retry_delay
                .saturating_mul(polls)
                .min(Duration::from_secs(1));
            tokio::time::sleep(delay).await;
            let req = Request::new("GetBlobProperties", Method::HEAD, Some(target));
            let response = self.call(req, path).await?;
            status = header(response.headers(), "x-ms-copy-status").to_string();
        }
        match status.as_str() {
            // Copies within an account may complete at once without saying so.
            "success" | "" => Ok(()),
            other => Err(io_error(
                "CopyBlob",
                path,
                format!("server-side copy ended {other}"),
            )),
        }
    }

    /// `Delete Blob` with its snapshots.
    pub(super) async fn delete(
        &self,
        name: &str,
        path: &str,
        condition: Condition<'_>,
    ) -> Result<(), StorageError> {
        let req = Request::new("DeleteBlob", Method::DELETE, Some(name))
            .header("x-ms-delete-snapshots", "include")
            .condition(condition);
        self.call(req, path).await.map(|_| ())
    }

    /// Every blob under `prefix` (and, with a delimiter, the virtual directories one level
    /// down), following pages.
    pub(super) async fn list(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        path: &str,
    ) -> Result<(Vec<ListedBlob>, Vec<String>), StorageError> {
        let mut blobs = Vec::new();
        let mut prefixes = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .list_page(prefix, delimiter, marker.as_deref(), LIST_PAGE, path)
                .await?;
            blobs.extend(page.blobs);
            prefixes.extend(page.prefixes);
            marker = page.next_marker;
            if marker.is_none() {
                return Ok((blobs, prefixes));
            }
        }
        Err(io_error("ListBlobs", path, "too many pages"))
    }

    /// True when any blob's name starts with `prefix`.
    pub(super) async fn any_under(&self, prefix: &str, path: &str) -> Result<bool, StorageError> {
        let page = self.list_page(prefix, None, None, 1, path).await?;
        Ok(!page.blobs.is_empty())
    }

    async fn list_page(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        marker: Option<&str>,
        max: u32,
        path: &str,
    ) -> Result<xml::BlobPage, StorageError> {
        let mut req = Request::new("ListBlobs", Method::GET, None)
            .query("restype", "container")
            .query("comp", "list");
        if !prefix.is_empty() {
            req = req.query("prefix", prefix);
        }
        if let Some(d) = delimiter {
            req = req.query("delimiter", d);
        }
        if let Some(m) = marker {
            req = req.query("marker", m);
        }
        req = req.query("maxresults", max.to_string());
        let response = self.call(req, path).await?;
        let text = read_text("ListBlobs", path, response.into_body()).await?;
        xml::blob_page(&text).map_err(|e| io_error("ListBlobs", path, e))
    }

    /// A URL that reads the blob for the next twenty minutes: a read-only service SAS signed
    /// with the account key, or with Entra ID tokens a user delegation SAS.
    pub(super) async fn signed_url(&self, name: &str, path: &str) -> Result<String, StorageError> {
        let now = chrono::Utc::now();
        // A little in the past: clocks differ.
        let start = iso_time(now - chrono::Duration::seconds(60));
        let expiry =
            iso_time(now + chrono::Duration::from_std(REDIRECT_VALIDITY).unwrap_or_default());
        let sas = match &self.auth {
            Auth::SharedKey(key) => {
                key.blob_read_sas(&self.container, name, &start, &expiry, self.https)
            }
            Auth::Bearer { delegation, .. } => {
                let mut cached = delegation.lock().await;
                let fresh = cached
                    .as_ref()
                    .filter(|(_, renew_at)| Instant::now() < *renew_at)
                    .map(|(key, _)| key.clone());
                let key = match fresh {
                    Some(key) => key,
                    None => {
                        let key = self.delegation_key(path).await?;
                        let renew_at =
                            Instant::now() + DELEGATION_KEY_VALIDITY - DELEGATION_KEY_RENEW;
                        *cached = Some((key.clone(), renew_at));
                        key
                    }
                };
                key.blob_read_sas(&self.container, name, &start, &expiry, self.https)
            }
        };
        Ok(format!("{}{}?{sas}", self.origin, self.blob_path(name)))
    }

    /// `Get User Delegation Key`, valid for [`DELEGATION_KEY_VALIDITY`].
    async fn delegation_key(&self, path: &str) -> Result<DelegationKey, StorageError> {
        let now = chrono::Utc::now();
        let start = iso_time(now - chrono::Duration::seconds(60));
        let expiry =
            iso_time(now + chrono::Duration::from_std(DELEGATION_KEY_VALIDITY).unwrap_or_default());
        let mut req = Request::new("GetUserDelegationKey", Method::POST, None)
            .query("restype", "service")
            .query("comp", "userdelegationkey")
            .header("content-type", "application/xml")
            .body(Bytes::from(format!(
                "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
                 <KeyInfo><Start>{start}</Start><Expiry>{expiry}</Expiry></KeyInfo>"
            )));
        req.at_service = true;
        let response = self
            .call_raw(req)
            .await
            .map_err(|f| f.into_storage_error("GetUserDelegationKey", path))?;
        let text = read_text("GetUserDelegationKey", path, response.into_body()).await?;
        let fields =
            xml::delegation_key(&text).map_err(|e| io_error("GetUserDelegationKey", path, e))?;
        DelegationKey::new(&self.account, fields.signed, &fields.value).map_err(|e| {
            io_error(
                "GetUserDelegationKey",
                path,
                format!("key is not base64: {e}"),
            )
        })
    }
}

pub(super) use rest_io::io_error;

/// ISO 8601 UTC to the second, as SAS fields are written.
fn iso_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Reads an error answer's code and message (bounded in size and time).
async fn error_answer(response: ::http::Response<Incoming>) -> Failure {
    let status = response.status();
    let header_code = header(response.headers(), "x-ms-error-code").to_string();
    let body = http_body_util::Limited::new(response.into_body(), MAX_ERROR_BODY);
    let text = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.collect()).await {
        Ok(Ok(collected)) => String::from_utf8_lossy(&collected.to_bytes()).into_owned(),
        _ => String::new(),
    };
    let text = text.trim_start_matches('\u{feff}');
    let code = if header_code.is_empty() {
        xml::error_code(text).unwrap_or_default()
    } else {
        header_code
    };
    let message: String = text.chars().take(300).collect();
    Failure::Status {
        status,
        code,
        message,
    }
}

/// A (small) XML answer as text.
async fn read_text(op: &'static str, path: &str, body: Incoming) -> Result<String, StorageError> {
    let mut stream = rest_io::body_stream(path, body, BODY_IDLE_TIMEOUT);
    let mut buf = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    let text = String::from_utf8(buf.to_vec()).map_err(|e| io_error(op, path, e))?;
    Ok(text.trim_start_matches('\u{feff}').to_string())
}
