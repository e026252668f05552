//! Every JSON API call the driver makes, each through [`Client::call`]: one place that
//! authorizes requests, bounds them in time, retries throttling, 5xx and connection failures
//! with backoff, records each call's latency and outcome (metric and log), and turns failures
//! into [`StorageError`]s.
//!
//! Nothing here knows how a file is laid out over parts: these are the service's operations
//! on object names.

use std::time::{Duration, Instant, SystemTime};

use ::http::{Method, StatusCode};
use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use super::auth::{self, CachedToken, Credentials, TokenAnswer, TokenCache};
use super::settings::{GcsSettings, GcsSetupError};
use super::sign::{encode, UrlToSign};
use crate::storage::drivers::rest_io;
use crate::storage::{relative_path, ByteStream, StorageError};

/// The pooled client every call goes through.
type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// TCP and TLS connection set-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request (its body included: one chunk) to the response head.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the next piece of a response body.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Error and JSON answers are read up to this size.
const MAX_JSON_BODY: usize = 16 << 20;
/// Names per listing page (the service allows up to 1000).
const LIST_PAGE: u32 = 1000;
/// Pages of one listing, at most.
const MAX_PAGES: usize = 1_000_000;
/// A server-side rewrite is continued at most this many times.
const MAX_REWRITE_STEPS: usize = 10_000;
/// Redirect URLs stay valid this long (as distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);
/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(15);

/// What the service says of an object.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Object {
    pub name: String,
    /// Decimal string, as the JSON API sends it.
    #[serde(default)]
    size: String,
    #[serde(default)]
    generation: String,
    #[serde(default)]
    updated: Option<String>,
    /// Set on composite objects by the service (not by every emulator).
    #[serde(default, rename = "componentCount")]
    component_count: Option<u64>,
    /// Custom metadata.
    #[serde(default)]
    metadata: std::collections::HashMap<String, String>,
}

impl Object {
    /// Content length.
    pub(super) fn size(&self) -> u64 {
        self.size.parse().unwrap_or(0)
    }

    /// The object's generation: changes on every write of the name.
    pub(super) fn generation(&self) -> u64 {
        self.generation.parse().unwrap_or(0)
    }

    /// The non-composite objects this one is made of: the service's count, else the one
    /// the driver records on what it composes (emulators may not count), else 1.
    pub(super) fn components(&self) -> u64 {
        self.component_count
            .or_else(|| self.metadata.get(COMPONENTS_KEY)?.parse().ok())
            .unwrap_or(1)
            .max(1)
    }

    /// Last modification.
    pub(super) fn modified(&self) -> Option<SystemTime> {
        let t = chrono::DateTime::parse_from_rfc3339(self.updated.as_deref()?).ok()?;
        Some(SystemTime::from(t))
    }
}

/// Custom metadata key under which composed objects carry their component count.
pub(super) const COMPONENTS_KEY: &str = "wharf-components";

/// One page of a listing.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page {
    #[serde(default)]
    items: Vec<Object>,
    #[serde(default)]
    prefixes: Vec<String>,
    #[serde(default)]
    next_page_token: Option<String>,
}

/// A rewrite step's answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Rewrite {
    done: bool,
    #[serde(default)]
    rewrite_token: Option<String>,
}

/// One request, before authorization.
struct Request {
    op: &'static str,
    method: Method,
    /// Path and query after the endpoint.
    target: String,
    content_type: Option<String>,
    range: Option<String>,
    /// `Content-Range` of a resumable upload chunk.
    content_range: Option<String>,
    body: Bytes,
    /// A status that is an answer here, not a failure: `308` (more bytes expected) for a
    /// resumable upload chunk, `499` (cancelled) for a session's cancellation.
    also_ok: Option<u16>,
}

impl Request {
    fn new(op: &'static str, method: Method, target: String) -> Self {
        Request {
            op,
            method,
            target,
            content_type: None,
            range: None,
            content_range: None,
            body: Bytes::new(),
            also_ok: None,
        }
    }

    fn json(mut self, body: serde_json::Value) -> Self {
        self.content_type = Some("application/json".into());
        self.body = Bytes::from(body.to_string());
        self
    }
}

/// Why a call failed, before it becomes a [`StorageError`].
#[derive(Debug)]
enum Failure {
    /// The service answered with an error status.
    Status { status: StatusCode, message: String },
    /// No answer: connection refused or cut, or a timeout; or no token.
    Transport {
        kind: std::io::ErrorKind,
        message: String,
    },
}

impl Failure {
    /// Worth another attempt: throttling, server errors, no answer.
    fn transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
            }
            Failure::Transport { .. } => true,
        }
    }

    /// The one mapping from the service's failures to the driver's errors.
    fn into_storage_error(self, op: &'static str, path: &str) -> StorageError {
        match self {
            Failure::Status { status, .. } if status == StatusCode::NOT_FOUND => {
                StorageError::NotFound(path.to_string())
            }
            // Only conditional calls fail so: another writer got there first.
            Failure::Status { status, .. } if status == StatusCode::PRECONDITION_FAILED => {
                StorageError::Busy(path.to_string())
            }
            Failure::Status { status, message } => {
                if matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504) {
                    StorageError::Unavailable {
                        op,
                        path: path.to_string(),
                        reason: format!("HTTP {status}: {message}"),
                    }
                } else {
                    io_error(op, path, format!("HTTP {status}: {message}"))
                }
            }
            Failure::Transport { kind, message } => StorageError::Io {
                op,
                path: path.to_string(),
                source: std::io::Error::new(kind, message),
            },
        }
    }
}

/// A hyper failure as a [`Failure`]: what kind of "no answer" it was.
fn transport(err: hyper_util::client::legacy::Error) -> Failure {
    let (kind, message) = rest_io::transport_failure(&err);
    Failure::Transport { kind, message }
}

/// One bucket's client, shared by the driver and its open writers.
pub(super) struct Client {
    http: HttpClient,
    credentials: Credentials,
    /// No authorization header (an emulator), even with a key that signs URLs.
    anonymous: bool,
    token: TokenCache,
    endpoint: String,
    bucket: String,
    /// See [`GcsSettings::name_prefix`].
    prefix: String,
    max_attempts: u32,
    retry_delay: Duration,
    /// See [`GcsSettings::user_agent`].
    user_agent: Option<String>,
    /// One permit per call in flight (see [`GcsSettings::max_concurrency`]).
    in_flight: tokio::sync::Semaphore,
}

impl Client {
    /// Builds the client; nothing is sent until the first call.
    pub(super) fn new(s: &GcsSettings) -> Result<Self, GcsSetupError> {
        let uri: ::http::Uri = s
            .endpoint
            .parse()
            .map_err(|e| GcsSetupError(format!("endpoint {:?}: {e}", s.endpoint)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(GcsSetupError(format!(
                "endpoint {:?} needs http(s) and a host",
                s.endpoint
            )));
        }
        let http = crate::tls_client::client(&crate::tls_client::ClientOptions {
            service: "Google Cloud Storage",
            skip_verify: false,
            connect_timeout: Some(CONNECT_TIMEOUT),
            pool_idle: POOL_IDLE,
        })
        .map_err(|e| GcsSetupError(format!("TLS set-up: {e}")))?;
        Ok(Client {
            http,
            credentials: Credentials::new(s)?,
            anonymous: s.anonymous,
            token: TokenCache::default(),
            endpoint: s.endpoint.clone(),
            bucket: s.bucket.clone(),
            prefix: s.name_prefix.clone(),
            max_attempts: s.max_attempts.max(1),
            retry_delay: s.retry_delay,
            user_agent: s.user_agent.clone(),
            in_flight: tokio::sync::Semaphore::new(s.max_concurrency.max(1)),
        })
    }

    /// The object name of a driver path (distribution's `pathToKey`).
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

    /// Where the driver keeps its own objects (parts of open writes, append claims), beside
    /// the root directory and never inside a driver path.
    pub(super) fn scratch_prefix(&self) -> String {
        match self.prefix.strip_suffix('/') {
            Some(root) => format!("{root}.wharf-scratch/"),
            None => ".wharf-scratch/".to_string(),
        }
    }

    /// The scratch directory's name as a child of `/` (hidden from listings there).
    pub(super) fn scratch_entry(&self) -> Option<&'static str> {
        self.prefix.is_empty().then_some(".wharf-scratch")
    }

    fn object_target(&self, name: &str) -> String {
        format!("/storage/v1/b/{}/o/{}", encode(&self.bucket), encode(name))
    }

    /// An access token, renewed when due.
    async fn authorization(&self) -> Result<Option<String>, Failure> {
        if self.anonymous || matches!(self.credentials, Credentials::Anonymous) {
            return Ok(None);
        }
        let mut cached = self.token.lock().await;
        if let Some(t) = cached.as_ref() {
            if SystemTime::now() < t.renew_at {
                return Ok(Some(format!("Bearer {}", t.value)));
            }
        }
        let answer = self.fetch_token().await?;
        let value = format!("Bearer {}", answer.access_token);
        *cached = Some(CachedToken {
            value: answer.access_token,
            renew_at: auth::renew_at(answer.expires_in),
        });
        Ok(Some(value))
    }

    /// Asks the key's token URI (or the metadata server) for a token.
    async fn fetch_token(&self) -> Result<TokenAnswer, Failure> {
        let no_token = |message: String| Failure::Transport {
            kind: std::io::ErrorKind::PermissionDenied,
            message,
        };
        let request = if let Some(assertion) = self.credentials.assertion() {
            let (uri, jwt) = assertion.map_err(|e| no_token(format!("signing the JWT: {e}")))?;
            let form = form_urlencoded::Serializer::new(String::new())
                .append_pair("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")
                .append_pair("assertion", &jwt)
                .finish();
            ::http::Request::post(uri)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form)))
        } else {
            let uri = self.credentials.metadata_url().unwrap_or_default();
            ::http::Request::get(uri)
                .header("metadata-flavor", "Google")
                .body(Full::new(Bytes::new()))
        }
        .map_err(|e| no_token(e.to_string()))?;
        let response =
            match tokio::time::timeout(RESPONSE_TIMEOUT, self.http.request(request)).await {
                Err(_) => return Err(no_token("token endpoint: no answer".into())),
                Ok(Err(e)) => return Err(transport(e)),
                Ok(Ok(r)) => r,
            };
        if !response.status().is_success() {
            return Err(error_answer(response).await);
        }
        let body = read_limited(response.into_body()).await?;
        serde_json::from_slice(&body).map_err(|e| no_token(format!("token answer: {e}")))
    }

    /// Sends one attempt; the response head is bounded in time.
    async fn send_once(&self, req: &Request) -> Result<::http::Response<Incoming>, Failure> {
        let uri = format!("{}{}", self.endpoint, req.target);
        let mut builder = ::http::Request::builder()
            .method(req.method.clone())
            .uri(&uri);
        if let Some(token) = self.authorization().await? {
            builder = builder.header("authorization", token);
        }
        if let Some(agent) = &self.user_agent {
            builder = builder.header("user-agent", agent.as_str());
        }
        if let Some(ct) = &req.content_type {
            builder = builder.header("content-type", ct.as_str());
        }
        if let Some(range) = &req.range {
            builder = builder.header("range", range.as_str());
        }
        if let Some(range) = &req.content_range {
            builder = builder.header("content-range", range.as_str());
        }
        if req.method == Method::POST || req.method == Method::PUT {
            builder = builder.header("content-length", req.body.len());
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
            Ok(Ok(response)) if req.also_ok == Some(response.status().as_u16()) => Ok(response),
            Ok(Ok(response)) => Err(error_answer(response).await),
        }
    }

    /// Sends with bounded retries and exponential backoff on transient failures.
    async fn send_retrying(&self, req: &Request) -> Result<::http::Response<Incoming>, Failure> {
        rest_io::retrying(
            "gcs",
            req.op,
            self.max_attempts,
            self.retry_delay,
            Failure::transient,
            || self.send_once(req),
        )
        .await
    }

    /// Runs one call: retries, metric, log, error mapping.
    async fn call(
        &self,
        req: Request,
        path: &str,
    ) -> Result<::http::Response<Incoming>, StorageError> {
        let op = req.op;
        let started = Instant::now();
        // Held until the answer's head (as distribution's regulator holds one per driver
        // call); a body read afterwards is not counted. The semaphore is never closed.
        let permit = self.in_flight.acquire().await;
        let result = self.send_retrying(&req).await;
        drop(permit);
        let elapsed = started.elapsed();
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(Failure::Status { status, .. }) if status.is_client_error() => "refused",
            Err(_) => "error",
        };
        crate::ops::metrics::external_call("gcs", op, elapsed, outcome != "error");
        match &result {
            Err(f) if outcome == "error" => tracing::warn!(
                target: "wharf::storage::gcs",
                op, path, elapsed_ms, outcome, failure = ?f, "storage call failed"
            ),
            _ => tracing::debug!(
                target: "wharf::storage::gcs",
                op, path, elapsed_ms, outcome, "storage call"
            ),
        }
        result.map_err(|f| f.into_storage_error(op, path))
    }

    /// A call whose answer is a JSON document.
    async fn call_json<T: serde::de::DeserializeOwned>(
        &self,
        req: Request,
        path: &str,
    ) -> Result<T, StorageError> {
        let op = req.op;
        let response = self.call(req, path).await?;
        let body = read_limited(response.into_body())
            .await
            .map_err(|f| f.into_storage_error(op, path))?;
        serde_json::from_slice(&body).map_err(|e| io_error(op, path, e))
    }

    /// `objects.get` (metadata).
    pub(super) async fn metadata(&self, name: &str, path: &str) -> Result<Object, StorageError> {
        let req = Request::new("GetObject", Method::GET, self.object_target(name));
        self.call_json(req, path).await
    }

    /// The object's bytes, `len` (to the end when `None`) from `offset` when a range is given.
    pub(super) async fn get(
        &self,
        name: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ByteStream, StorageError> {
        let mut req = Request::new(
            "ReadObject",
            Method::GET,
            format!("{}?alt=media", self.object_target(name)),
        );
        if let Some((offset, len)) = range {
            req.range = Some(rest_io::range_value(offset, len));
        }
        let response = self.call(req, path).await?;
        Ok(rest_io::body_stream(
            path,
            response.into_body(),
            BODY_IDLE_TIMEOUT,
        ))
    }

    /// Generation `generation` of the object, whole, even if the name has been written since.
    pub(super) async fn get_generation(
        &self,
        name: &str,
        path: &str,
        generation: u64,
    ) -> Result<ByteStream, StorageError> {
        let req = Request::new(
            "ReadObject",
            Method::GET,
            format!(
                "{}?alt=media&generation={generation}",
                self.object_target(name)
            ),
        );
        let response = self.call(req, path).await?;
        Ok(rest_io::body_stream(
            path,
            response.into_body(),
            BODY_IDLE_TIMEOUT,
        ))
    }

    /// A whole (small) object in memory.
    pub(super) async fn get_all(&self, name: &str, path: &str) -> Result<Bytes, StorageError> {
        rest_io::collect(self.get(name, path, None).await?).await
    }

    /// An upload of `content` in one request; with `if_generation`, only if the object's
    /// generation is that (0: only if there is none). Returns what was stored.
    ///
    /// Conditional uploads are multipart inserts (metadata and bytes in one body, so the
    /// content is copied once): fake-gcs-server honours `ifGenerationMatch` only there. They
    /// carry small files (claims, leases, empty files); unconditional ones, parts of a chunk,
    /// go as media uploads, which send the buffer as is.
    pub(super) async fn upload(
        &self,
        name: &str,
        path: &str,
        content: Bytes,
        if_generation: Option<u64>,
    ) -> Result<Object, StorageError> {
        let bucket = encode(&self.bucket);
        let req = match if_generation {
            None => {
                let target = format!(
                    "/upload/storage/v1/b/{bucket}/o?uploadType=media&name={}",
                    encode(name)
                );
                let mut req = Request::new("UploadObject", Method::POST, target);
                req.content_type = Some("application/octet-stream".into());
                req.body = content;
                req
            }
            Some(g) => {
                let target = format!(
                    "/upload/storage/v1/b/{bucket}/o?uploadType=multipart&ifGenerationMatch={g}"
                );
                let mut req = Request::new("UploadObject", Method::POST, target);
                // A fresh boundary: never a line of the bytes.
                let boundary = format!("wharf-{}", uuid::Uuid::new_v4().simple());
                req.content_type = Some(format!("multipart/related; boundary={boundary}"));
                req.body = multipart_body(&boundary, name, &content);
                req
            }
        };
        self.call_json(req, path).await
    }

    /// `objects.compose`: `target` becomes the sources' bytes in order (at most 32 sources);
    /// with `if_generation`, only if its generation is that (0: only if there is none).
    /// `components` is recorded in the target's metadata.
    pub(super) async fn compose(
        &self,
        sources: &[String],
        target: &str,
        path: &str,
        if_generation: Option<u64>,
        components: u64,
    ) -> Result<Object, StorageError> {
        let mut url = format!("{}/compose", self.object_target(target));
        if let Some(g) = if_generation {
            url.push_str(&format!("?ifGenerationMatch={g}"));
        }
        let sources: Vec<serde_json::Value> = sources
            .iter()
            .map(|n| serde_json::json!({ "name": n }))
            .collect();
        let req = Request::new("ComposeObject", Method::POST, url).json(serde_json::json!({
            "sourceObjects": sources,
            "destination": {
                "contentType": "application/octet-stream",
                "metadata": { COMPONENTS_KEY: components.to_string() },
            },
        }));
        self.call_json(req, path).await
    }

    /// Opens a resumable upload session that creates `name` when finalized; returns the
    /// session's id. Nothing is visible at `name` until then.
    pub(super) async fn start_session(
        &self,
        name: &str,
        path: &str,
    ) -> Result<String, StorageError> {
        let target = format!(
            "/upload/storage/v1/b/{}/o?uploadType=resumable",
            encode(&self.bucket)
        );
        let req = Request::new("StartUpload", Method::POST, target).json(serde_json::json!({
            "name": name,
            "contentType": "application/octet-stream",
        }));
        let response = self.call(req, path).await?;
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .unwrap_or_default();
        session_id(location).ok_or_else(|| {
            io_error(
                "StartUpload",
                path,
                "no upload_id in the session's Location",
            )
        })
    }

    /// Sends the bytes at `offset` of a resumable upload; with `total`, they are the last and
    /// the object is created (returned). Intermediate chunks are multiples of 256 KiB.
    pub(super) async fn put_chunk(
        &self,
        session: &str,
        path: &str,
        offset: u64,
        data: Bytes,
        total: Option<u64>,
    ) -> Result<Option<Object>, StorageError> {
        let len = data.len() as u64;
        let total_text = total.map_or("*".to_string(), |t| t.to_string());
        let range = if len == 0 {
            format!("bytes */{total_text}")
        } else {
            format!("bytes {offset}-{}/{total_text}", offset + len - 1)
        };
        let mut req = Request::new("UploadChunk", Method::PUT, self.session_target(session));
        req.content_type = Some("application/octet-stream".into());
        req.content_range = Some(range);
        req.body = data;
        req.also_ok = Some(308);
        if total.is_none() {
            let response = self.call(req, path).await?;
            // The answer's body says nothing needed; the connection is reused once it is read.
            let _ = read_limited(response.into_body()).await;
            return Ok(None);
        }
        self.call_json(req, path).await.map(Some)
    }

    /// Cancels a resumable upload session (the service answers 499 when it did).
    pub(super) async fn cancel_session(
        &self,
        session: &str,
        path: &str,
    ) -> Result<(), StorageError> {
        let mut req = Request::new("CancelUpload", Method::DELETE, self.session_target(session));
        req.also_ok = Some(499);
        match self.call(req, path).await {
            Ok(_) | Err(StorageError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn session_target(&self, session: &str) -> String {
        format!(
            "/upload/storage/v1/b/{}/o?uploadType=resumable&upload_id={}",
            encode(&self.bucket),
            encode(session)
        )
    }

    /// `objects.rewrite` within the bucket, continued until done; with `source_generation`,
    /// only if the source still has that generation.
    pub(super) async fn rewrite(
        &self,
        source: &str,
        target: &str,
        path: &str,
        source_generation: Option<u64>,
    ) -> Result<(), StorageError> {
        let base = format!(
            "{}/rewriteTo/b/{}/o/{}",
            self.object_target(source),
            encode(&self.bucket),
            encode(target)
        );
        let mut token: Option<String> = None;
        for _ in 0..MAX_REWRITE_STEPS {
            let mut query = Vec::new();
            if let Some(g) = source_generation {
                query.push(format!("ifSourceGenerationMatch={g}"));
            }
            if let Some(t) = &token {
                query.push(format!("rewriteToken={}", encode(t)));
            }
            let url = if query.is_empty() {
                base.clone()
            } else {
                format!("{base}?{}", query.join("&"))
            };
            let req = Request::new("RewriteObject", Method::POST, url).json(serde_json::json!({}));
            let step: Rewrite = self.call_json(req, path).await?;
            if step.done {
                return Ok(());
            }
            token = step.rewrite_token;
            if token.is_none() {
                return Err(io_error(
                    "RewriteObject",
                    path,
                    "rewrite not done, no token",
                ));
            }
        }
        Err(io_error("RewriteObject", path, "rewrite did not finish"))
    }

    /// `objects.delete`; with `if_generation`, only that generation.
    pub(super) async fn delete(
        &self,
        name: &str,
        path: &str,
        if_generation: Option<u64>,
    ) -> Result<(), StorageError> {
        let mut target = self.object_target(name);
        if let Some(g) = if_generation {
            target.push_str(&format!("?ifGenerationMatch={g}"));
        }
        let req = Request::new("DeleteObject", Method::DELETE, target);
        self.call(req, path).await.map(|_| ())
    }

    /// Every object under `prefix` (and, with a delimiter, the prefixes one level down),
    /// following pages.
    pub(super) async fn list(
        &self,
        prefix: &str,
        delimiter: bool,
        path: &str,
    ) -> Result<(Vec<Object>, Vec<String>), StorageError> {
        self.list_as("ListObjects", prefix, delimiter, path).await
    }

    /// [`Self::list`], counted and logged as `op`: what is listed (a folder of the tree, or
    /// the scratch objects of one file) is told apart in the metrics.
    pub(super) async fn list_as(
        &self,
        op: &'static str,
        prefix: &str,
        delimiter: bool,
        path: &str,
    ) -> Result<(Vec<Object>, Vec<String>), StorageError> {
        let mut objects = Vec::new();
        let mut prefixes = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .list_page(op, prefix, delimiter, token.as_deref(), LIST_PAGE, path)
                .await?;
            objects.extend(page.items);
            prefixes.extend(page.prefixes);
            token = page.next_page_token.filter(|t| !t.is_empty());
            if token.is_none() {
                return Ok((objects, prefixes));
            }
        }
        Err(io_error(op, path, "too many pages"))
    }

    /// True when any object's name starts with `prefix`.
    pub(super) async fn any_under(&self, prefix: &str, path: &str) -> Result<bool, StorageError> {
        let page = self
            .list_page("ListObjects", prefix, false, None, 1, path)
            .await?;
        Ok(!page.items.is_empty())
    }

    async fn list_page(
        &self,
        op: &'static str,
        prefix: &str,
        delimiter: bool,
        token: Option<&str>,
        max: u32,
        path: &str,
    ) -> Result<Page, StorageError> {
        let mut target = format!(
            "/storage/v1/b/{}/o?maxResults={max}&prefix={}",
            encode(&self.bucket),
            encode(prefix)
        );
        if delimiter {
            target.push_str("&delimiter=%2F");
        }
        if let Some(t) = token {
            target.push_str(&format!("&pageToken={}", encode(t)));
        }
        let req = Request::new(op, Method::GET, target);
        self.call_json(req, path).await
    }

    /// A URL that reads the object for the next twenty minutes (V4 signed); `None` without a
    /// service-account key to sign with.
    pub(super) fn signed_url(
        &self,
        name: &str,
        path: &str,
    ) -> Result<Option<String>, StorageError> {
        let Some((email, key)) = self.credentials.url_signer() else {
            return Ok(None);
        };
        let timestamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ").to_string();
        UrlToSign {
            endpoint: &self.endpoint,
            bucket: &self.bucket,
            object: name,
            email,
            timestamp: &timestamp,
            expires_secs: REDIRECT_VALIDITY.as_secs(),
        }
        .sign(key)
        .map(Some)
        .map_err(|e| io_error("SignUrl", path, e))
    }
}

/// The `upload_id` query parameter of a session URL.
fn session_id(location: &str) -> Option<String> {
    let query = location.split_once('?')?.1;
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "upload_id")
        .map(|(_, v)| v.into_owned())
        .filter(|v| !v.is_empty())
}

/// A multipart insert's body: the object's metadata, then its bytes.
fn multipart_body(boundary: &str, name: &str, content: &[u8]) -> Bytes {
    let metadata = serde_json::json!({ "name": name, "contentType": "application/octet-stream" });
    let mut body = BytesMut::with_capacity(content.len() + 256);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\ncontent-type: application/json; charset=UTF-8\r\n\r\n\
             {metadata}\r\n--{boundary}\r\ncontent-type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(content);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body.freeze()
}

pub(super) use rest_io::io_error;

/// A (small) answer body, bounded in size and time.
async fn read_limited(body: Incoming) -> Result<Bytes, Failure> {
    let limited = http_body_util::Limited::new(body, MAX_JSON_BODY);
    match tokio::time::timeout(BODY_IDLE_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => Err(Failure::Transport {
            kind: std::io::ErrorKind::ConnectionAborted,
            message: e.to_string(),
        }),
        Err(_) => Err(Failure::Transport {
            kind: std::io::ErrorKind::TimedOut,
            message: format!("answer not read within {BODY_IDLE_TIMEOUT:?}"),
        }),
    }
}

/// Reads an error answer's message (bounded in size and time).
async fn error_answer(response: ::http::Response<Incoming>) -> Failure {
    let status = response.status();
    let text = match read_limited(response.into_body()).await {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(_) => String::new(),
    };
    Failure::Status {
        status,
        message: text.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn settings(endpoint: String, max_concurrency: usize) -> GcsSettings {
        GcsSettings {
            bucket: "b".into(),
            endpoint,
            anonymous: true,
            key: None,
            name_prefix: String::new(),
            chunk_size: 256 << 10,
            max_attempts: 1,
            retry_delay: Duration::from_millis(1),
            user_agent: Some("fleet-agent/1".into()),
            max_concurrency,
        }
    }

    /// Reads one request head from a fresh connection.
    async fn request_head(listener: &TcpListener) -> (tokio::net::TcpStream, String) {
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && head.len() < 64 << 10 {
            if conn.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        (conn, String::from_utf8_lossy(&head).to_ascii_lowercase())
    }

    const NOT_FOUND: &[u8] =
        b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";

    /// `useragent` goes out on every call; with `maxconcurrency` 1 a second call waits for
    /// the first one's answer before it is sent.
    #[tokio::test]
    async fn calls_carry_the_user_agent_and_wait_for_a_free_slot() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let client = std::sync::Arc::new(Client::new(&settings(endpoint, 1)).unwrap());
        let calls: Vec<_> = ["a", "b"]
            .into_iter()
            .map(|name| {
                let client = client.clone();
                tokio::spawn(async move { client.metadata(name, "/x").await })
            })
            .collect();
        let (mut first, head) = request_head(&listener).await;
        assert!(head.contains("user-agent: fleet-agent/1"), "{head}");
        // While the first call has no answer, the second is not sent: nothing connects.
        let early = tokio::time::timeout(Duration::from_millis(300), listener.accept()).await;
        assert!(
            early.is_err(),
            "a second call went out while the first was in flight"
        );
        first.write_all(NOT_FOUND).await.unwrap();
        drop(first);
        let (mut second, head) = request_head(&listener).await;
        assert!(head.contains("user-agent: fleet-agent/1"), "{head}");
        second.write_all(NOT_FOUND).await.unwrap();
        drop(second);
        for call in calls {
            assert!(call.await.unwrap().unwrap_err().is_not_found());
        }
    }
}
