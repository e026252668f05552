//! Every Swift call the driver makes, each through [`Client::call`]: one place that adds the
//! token (authenticating first, and again when it expires), bounds requests in time, retries
//! throttling (429, 498), 5xx and connection failures with backoff, records each call's
//! latency and outcome (metric and log), and turns failures into [`StorageError`]s.
//!
//! Nothing here knows how a file is laid out over segments: these are Swift's operations on
//! object names.

use std::time::{Duration, Instant, SystemTime};

use ::http::{HeaderMap, Method, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use rand::Rng;
use tokio::sync::{OnceCell, RwLock};

use super::keystone::{self, KeystoneSettings, V2Credentials};
use super::names::{encode_path, encode_query, hex_string, temp_url_signature};
use super::settings::{SwiftSettings, SwiftSetupError};
use crate::storage::drivers::rest_io;
use crate::storage::{ByteStream, StorageError};

/// The pooled client every call goes through.
type HttpClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// TCP and TLS connection set-up.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// From sending a request (its body included: one segment) to the response head; a server-side
/// copy answers only when done.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest wait for the next piece of a response body.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle pooled connections are closed after this long.
const POOL_IDLE: Duration = Duration::from_secs(15);
/// Error answers are read up to this size.
const MAX_ERROR_BODY: usize = 64 * 1024;
/// Names per listing page (Swift allows up to 10 000).
const LIST_PAGE: usize = 1000;
/// Pages of one listing, at most.
const MAX_PAGES: usize = 100_000;
/// Temp URLs stay valid this long (as distribution).
const REDIRECT_VALIDITY: Duration = Duration::from_secs(20 * 60);
/// Longest wait for a token (every request of an authentication, as distribution bounds it).
const AUTH_TIMEOUT: Duration = Duration::from_secs(60);
/// A Keystone token is renewed this long before it expires.
const TOKEN_RENEW_MARGIN: Duration = Duration::from_secs(120);
/// Keystone's token answers (with their catalogs) are read up to this size.
const MAX_TOKEN_BODY: usize = 4 << 20;
/// Small JSON answers (`/info`, listings) are read up to this size.
const MAX_JSON_BODY: usize = 64 << 20;

/// What a request addresses.
#[derive(Debug, Clone, Copy)]
pub(super) enum Target<'a> {
    /// The account (temp URL key).
    Account,
    /// The container.
    Container,
    /// An object in the container.
    Object(&'a str),
}

/// One request, before the token is added.
pub(super) struct Request<'a> {
    op: &'static str,
    method: Method,
    target: Target<'a>,
    query: Vec<(&'static str, String)>,
    headers: Vec<(String, String)>,
    body: Bytes,
}

impl<'a> Request<'a> {
    pub(super) fn new(op: &'static str, method: Method, target: Target<'a>) -> Self {
        Request {
            op,
            method,
            target,
            query: Vec::new(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub(super) fn query(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub(super) fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    pub(super) fn body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// Why a call failed, before it becomes a [`StorageError`].
#[derive(Debug)]
pub(super) enum Failure {
    /// Swift answered with an error status.
    Status { status: StatusCode, message: String },
    /// No answer: connection refused or cut, or a timeout.
    Transport {
        kind: std::io::ErrorKind,
        message: String,
    },
}

impl Failure {
    /// Worth another attempt: throttling (498 is Swift's rate limit), server errors, no answer.
    fn transient(&self) -> bool {
        match self {
            Failure::Status { status, .. } => {
                matches!(status.as_u16(), 408 | 429 | 498 | 500 | 502 | 503 | 504)
            }
            Failure::Transport { .. } => true,
        }
    }

    /// The one mapping from Swift's failures to the driver's errors.
    pub(super) fn into_storage_error(self, op: &'static str, path: &str) -> StorageError {
        match self {
            Failure::Status { status, .. } if status == StatusCode::NOT_FOUND => {
                StorageError::NotFound(path.to_string())
            }
            // Only conditional writes (`If-None-Match: *`) fail this way.
            Failure::Status { status, .. } if status == StatusCode::PRECONDITION_FAILED => {
                StorageError::Busy(path.to_string())
            }
            Failure::Status { status, message } => {
                // Throttled or failing after every retry, or refusing our credentials: the
                // backend is unavailable.
                let kind = if matches!(status.as_u16(), 401 | 403 | 429 | 498 | 500..=599) {
                    std::io::ErrorKind::ResourceBusy
                } else {
                    std::io::ErrorKind::Other
                };
                StorageError::Io {
                    op,
                    path: path.to_string(),
                    source: std::io::Error::new(kind, format!("HTTP {status}: {message}")),
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

/// A response header as text (empty when absent).
pub(super) fn header<'h>(headers: &'h HeaderMap, name: &str) -> &'h str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// A token and the storage URL it is for.
#[derive(Clone)]
struct Session {
    token: String,
    /// `http://host:port/v1/AUTH_account`, no trailing `/`.
    storage_url: String,
    /// When Keystone said the token expires.
    expires: Option<SystemTime>,
}

impl Session {
    /// Still usable and not the token just refused, nor about to expire.
    fn usable(&self, stale: Option<&str>) -> bool {
        let expiring = self
            .expires
            .is_some_and(|at| SystemTime::now() + TOKEN_RENEW_MARGIN >= at);
        Some(self.token.as_str()) != stale && !expiring
    }
}

/// Swift's largest object when `/info` does not say (its default `max_file_size`).
const DEFAULT_MAX_FILE_SIZE: u64 = 5 << 30;

/// What the cluster said at start-up.
#[derive(Debug, Clone)]
struct Cluster {
    /// How redirects are signed.
    temp_url: TempUrl,
    /// The largest object Swift stores (`max_file_size`): a larger file stays a DLO.
    max_file_size: u64,
}

/// What the cluster said at start-up that shapes redirects.
#[derive(Debug, Clone, Default)]
struct TempUrl {
    /// The key temp URLs are signed with; none: no redirects.
    key: Option<String>,
    /// Methods the cluster (or the config) allows.
    methods: Vec<String>,
}

/// One entry of a container listing.
#[derive(Debug, Clone)]
pub(super) enum Listed {
    /// An object: name, size and MD5.
    Object {
        name: String,
        bytes: u64,
        hash: String,
    },
    /// A pseudo-directory (with a delimiter), its name ending in the delimiter.
    Subdir(String),
}

/// What `HEAD` says of an object.
#[derive(Debug, Clone)]
pub(super) struct Head {
    /// Content length (a DLO's: its segments' total).
    pub size: u64,
    /// Last modification.
    pub modified: Option<SystemTime>,
    /// `X-Object-Manifest`: a DLO's segment container and prefix.
    pub manifest: Option<String>,
    /// True for a static large object's manifest.
    pub slo: bool,
    /// The segments digest a writer recorded (`X-Object-Meta-Wharf-Segments`).
    pub recorded: Option<String>,
    /// The token of the exclusive creation that wrote the object (`X-Object-Meta-Wharf-Claim`).
    pub claim: Option<String>,
}

/// The metadata header naming an exclusive creation.
pub(super) const CLAIM_META: &str = "x-object-meta-wharf-claim";

/// The metadata header holding a writer's segments digest.
pub(super) const SEGMENTS_META: &str = "x-object-meta-wharf-segments";

/// One container's client, shared by the driver and its open writers.
pub(super) struct Client {
    http: HttpClient,
    settings: SwiftSettings,
    session: RwLock<Option<Session>>,
    /// Set once the container exists and the temp URL key is known.
    ready: OnceCell<Cluster>,
}

impl Client {
    /// Builds the client; nothing is sent until the first call.
    pub(super) fn new(s: &SwiftSettings) -> Result<Self, SwiftSetupError> {
        let uri: ::http::Uri = s
            .auth_url
            .parse()
            .map_err(|e| SwiftSetupError(format!("authurl {:?}: {e}", s.auth_url)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
            return Err(SwiftSetupError(format!(
                "authurl {:?} needs http or https and a host",
                s.auth_url
            )));
        }
        let http = crate::tls_client::client(&crate::tls_client::ClientOptions {
            service: "OpenStack Swift",
            skip_verify: s.skip_verify,
            connect_timeout: Some(CONNECT_TIMEOUT),
            pool_idle: POOL_IDLE,
        })
        .map_err(|e| SwiftSetupError(format!("TLS set-up: {e}")))?;
        Ok(Client {
            http,
            settings: s.clone(),
            session: RwLock::new(None),
            ready: OnceCell::new(),
        })
    }

    /// See [`SwiftSettings::prefix`].
    pub(super) fn prefix(&self) -> &str {
        &self.settings.prefix
    }

    /// See [`SwiftSettings::chunk_size`].
    pub(super) fn chunk_size(&self) -> usize {
        self.settings.chunk_size
    }

    /// The container's name.
    pub(super) fn container(&self) -> &str {
        &self.settings.container
    }

    /// Sends one request once, bounded in time; error answers are read for their message.
    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(String, String)],
        body: Bytes,
    ) -> Result<::http::Response<Incoming>, Failure> {
        let mut builder = ::http::Request::builder().method(method.clone()).uri(uri);
        for (name, value) in headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if method == Method::PUT || method == Method::POST || !body.is_empty() {
            builder = builder.header("content-length", body.len().to_string());
        }
        let request = builder
            .body(Full::new(body))
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

    /// A token and storage URL from Keystone or tempauth, as configured.
    async fn authenticate(&self) -> Result<Session, Failure> {
        let result = match &self.settings.keystone {
            Some(k) if k.version == 2 => self.authenticate_v2(k).await,
            Some(k) => self.authenticate_v3(k).await,
            None => self.authenticate_v1().await,
        };
        result.map_err(|f| match f {
            // A refusal of the identity service is about the credentials or the auth URL (a
            // Keystone without v2.0 answers 404), never about the object being addressed.
            Failure::Status { status, message }
                if status.is_client_error()
                    && !matches!(status.as_u16(), 401 | 403 | 408 | 429 | 498) =>
            {
                Failure::Status {
                    status: StatusCode::FORBIDDEN,
                    message: format!("authentication answered {status}: {message}"),
                }
            }
            other => other,
        })
    }

    /// Keystone v3: a password-authenticated, scoped token and the catalog's object store.
    async fn authenticate_v3(&self, k: &KeystoneSettings) -> Result<Session, Failure> {
        let s = &self.settings;
        let body = keystone::v3_request(&s.username, &s.password, k);
        let response = self.post_token(k, &body).await?;
        let subject = header(response.headers(), "x-subject-token").to_string();
        let answer = read_token_answer(response).await?;
        keystone::v3_grant(&subject, &answer, k)
            .map(Session::from)
            .map_err(bad_token_answer)
    }

    /// Keystone v2.0: the password or API key form first as ncw/swift guesses it, the other
    /// when the first is refused.
    async fn authenticate_v2(&self, k: &KeystoneSettings) -> Result<Session, Failure> {
        let s = &self.settings;
        let first = V2Credentials::first_for(&s.password);
        let mut refused = None;
        for form in [first, first.other()] {
            let body = keystone::v2_request(&s.username, &s.password, k, form);
            match self.post_token(k, &body).await {
                Ok(response) => {
                    let answer = read_token_answer(response).await?;
                    return keystone::v2_grant(&answer, k)
                        .map(Session::from)
                        .map_err(bad_token_answer);
                }
                Err(Failure::Status { status, message })
                    if matches!(status.as_u16(), 400 | 401) =>
                {
                    refused = Some(Failure::Status { status, message });
                }
                Err(other) => return Err(other),
            }
        }
        Err(refused.expect("both forms were refused"))
    }

    /// `POST` of a token request to Keystone.
    async fn post_token(
        &self,
        k: &KeystoneSettings,
        body: &serde_json::Value,
    ) -> Result<::http::Response<Incoming>, Failure> {
        let url = keystone::token_url(&self.settings.auth_url, k.version);
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), "application/json".to_string()),
        ];
        let body = Bytes::from(body.to_string());
        self.send(Method::POST, &url, &headers, body)
            .await
            .map_err(|f| match f {
                Failure::Status { status, message } => Failure::Status {
                    status,
                    message: format!("Keystone refused the credentials: {message}"),
                },
                other => other,
            })
    }

    /// Tempauth (v1): the user and key for a token and the storage URL.
    async fn authenticate_v1(&self) -> Result<Session, Failure> {
        let headers = vec![
            ("x-auth-user".to_string(), self.settings.username.clone()),
            ("x-auth-key".to_string(), self.settings.password.clone()),
        ];
        let response = self
            .send(Method::GET, &self.settings.auth_url, &headers, Bytes::new())
            .await?;
        let h = response.headers();
        let token = header(h, "x-auth-token");
        let token = if token.is_empty() {
            header(h, "x-storage-token")
        } else {
            token
        };
        let storage_url = header(h, "x-storage-url").trim_end_matches('/');
        if token.is_empty() || storage_url.is_empty() {
            return Err(Failure::Status {
                status: StatusCode::BAD_GATEWAY,
                message: "authentication answered without a token or a storage URL".into(),
            });
        }
        Ok(Session {
            token: token.to_string(),
            storage_url: storage_url.to_string(),
            expires: None,
        })
    }

    /// The current session, authenticating when there is none (or `stale` is the one that
    /// was just refused).
    async fn session(&self, stale: Option<&str>) -> Result<Session, Failure> {
        if let Some(s) = self.session.read().await.as_ref() {
            if s.usable(stale) {
                return Ok(s.clone());
            }
        }
        let mut slot = self.session.write().await;
        if let Some(s) = slot.as_ref() {
            if s.usable(stale) {
                return Ok(s.clone());
            }
        }
        let started = Instant::now();
        let result = match tokio::time::timeout(AUTH_TIMEOUT, self.authenticate()).await {
            Ok(result) => result,
            Err(_) => Err(Failure::Transport {
                kind: std::io::ErrorKind::TimedOut,
                message: format!("no token within {AUTH_TIMEOUT:?}"),
            }),
        };
        crate::ops::metrics::external_call(
            "swift",
            "Authenticate",
            started.elapsed(),
            result.is_ok(),
        );
        let session = match result {
            Ok(session) => session,
            Err(f) => {
                // Renewing early failed: the current token serves until it really expires.
                if let Some(s) = slot.as_ref() {
                    let alive = s.expires.is_some_and(|at| SystemTime::now() < at);
                    if alive && Some(s.token.as_str()) != stale {
                        tracing::warn!(
                            target: "wharf::storage::swift",
                            failure = ?f, "cannot renew the Keystone token yet"
                        );
                        return Ok(s.clone());
                    }
                }
                return Err(f);
            }
        };
        *slot = Some(session.clone());
        Ok(session)
    }

    /// The URL of a request's target in a session.
    fn url(&self, session: &Session, req: &Request<'_>) -> String {
        let mut url = session.storage_url.clone();
        match req.target {
            Target::Account => {}
            Target::Container => {
                url.push('/');
                url.push_str(&encode_path(&self.settings.container));
            }
            Target::Object(name) => {
                url.push('/');
                url.push_str(&encode_path(&self.settings.container));
                url.push('/');
                url.push_str(&encode_path(name));
            }
        }
        if !req.query.is_empty() {
            let query: Vec<String> = req
                .query
                .iter()
                .map(|(n, v)| format!("{n}={}", encode_query(v)))
                .collect();
            url.push('?');
            url.push_str(&query.join("&"));
        }
        url
    }

    /// One attempt: the token added, and renewed once when refused.
    async fn send_once(&self, req: &Request<'_>) -> Result<::http::Response<Incoming>, Failure> {
        let mut session = self.session(None).await?;
        for renewed in [false, true] {
            let mut headers = req.headers.clone();
            headers.push(("x-auth-token".into(), session.token.clone()));
            let url = self.url(&session, req);
            match self
                .send(req.method.clone(), &url, &headers, req.body.clone())
                .await
            {
                Err(Failure::Status { status, .. })
                    if status == StatusCode::UNAUTHORIZED && !renewed =>
                {
                    session = self.session(Some(&session.token)).await?;
                }
                other => return other,
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// Sends with bounded retries and exponential backoff on transient failures.
    async fn send_retrying(
        &self,
        req: &Request<'_>,
    ) -> Result<::http::Response<Incoming>, Failure> {
        rest_io::retrying(
            "swift",
            req.op,
            self.settings.max_attempts,
            self.settings.retry_delay,
            Failure::transient,
            || self.send_once(req),
        )
        .await
    }

    /// Sends with retries and records the call's latency and outcome; failures unmapped.
    pub(super) async fn call_raw(
        &self,
        req: Request<'_>,
    ) -> Result<::http::Response<Incoming>, Failure> {
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
        crate::ops::metrics::external_call("swift", op, elapsed, outcome != "error");
        let name = match req.target {
            Target::Object(name) => name,
            _ => "",
        };
        match &result {
            Err(f) if outcome == "error" => tracing::warn!(
                target: "wharf::storage::swift",
                op, name, elapsed_ms, outcome, failure = ?f, "Swift call failed"
            ),
            _ => tracing::debug!(
                target: "wharf::storage::swift",
                op, name, elapsed_ms, outcome, "Swift call"
            ),
        }
        result
    }

    /// Runs one call once the container is ready: retries, metric, log, error mapping.
    pub(super) async fn call(
        &self,
        req: Request<'_>,
        path: &str,
    ) -> Result<::http::Response<Incoming>, StorageError> {
        let op = req.op;
        self.ready(path).await?;
        self.call_raw(req)
            .await
            .map_err(|f| f.into_storage_error(op, path))
    }

    /// Authenticates and readies the container now, as distribution 2.8 does when it starts;
    /// why not, in words.
    pub(super) async fn start_up(&self) -> Result<(), String> {
        let url = &self.settings.auth_url;
        match self.session(None).await {
            Ok(_) => {}
            Err(Failure::Status { status, message }) if matches!(status.as_u16(), 401 | 403) => {
                return Err(format!(
                    "{url} refused the credentials ({status}): {message}"
                ))
            }
            Err(Failure::Status { status, message }) => {
                return Err(format!(
                    "authentication at {url} failed ({status}): {message}"
                ))
            }
            Err(Failure::Transport { message, .. }) => {
                return Err(format!(
                    "cannot reach the authentication service at {url}: {message}"
                ))
            }
        }
        self.ready("/")
            .await
            .map(|_| ())
            .map_err(|e| format!("container {:?}: {e}", self.settings.container))
    }

    /// The largest object the cluster stores (`/info`'s `max_file_size`, else Swift's default).
    pub(super) async fn max_file_size(&self, path: &str) -> Result<u64, StorageError> {
        Ok(self.ready(path).await?.max_file_size)
    }

    /// On first use, as distribution 2.8 does at start-up: creates the container when it is
    /// missing, learns from `/info` whether temp URLs work (and with which methods), and
    /// sets the temp URL key on the container (Swift 2.3 and later) or the account. A failure
    /// is retried by the next call.
    async fn ready(&self, path: &str) -> Result<&Cluster, StorageError> {
        self.ready
            .get_or_try_init(|| async {
                let result = self.prepare(path).await;
                if let Err(e) = &result {
                    tracing::warn!(
                        target: "wharf::storage::swift",
                        container = %self.settings.container, error = %e,
                        "cannot prepare the Swift container"
                    );
                }
                result
            })
            .await
    }

    async fn prepare(&self, path: &str) -> Result<Cluster, StorageError> {
        let head = Request::new("HeadContainer", Method::HEAD, Target::Container);
        match self.call_raw(head).await {
            Ok(_) => {}
            Err(Failure::Status { status, .. }) if status == StatusCode::NOT_FOUND => {
                let create = Request::new("CreateContainer", Method::PUT, Target::Container);
                self.call_raw(create)
                    .await
                    .map_err(|f| f.into_storage_error("CreateContainer", path))?;
            }
            Err(f) => return Err(f.into_storage_error("HeadContainer", path)),
        }
        let info = self.info().await;
        let max_file_size = info
            .as_ref()
            .and_then(|i| i["swift"]["max_file_size"].as_u64())
            .unwrap_or(DEFAULT_MAX_FILE_SIZE);
        let temp_url = self.prepare_temp_url(info, path).await?;
        Ok(Cluster {
            temp_url,
            max_file_size,
        })
    }

    /// Learns from `/info` (or the config) whether temp URLs work and sets their key.
    async fn prepare_temp_url(
        &self,
        info: Option<serde_json::Value>,
        path: &str,
    ) -> Result<TempUrl, StorageError> {
        let (container_key, methods) = match info {
            Some(info) => {
                let version = info["swift"]["version"].as_str().unwrap_or("").to_string();
                let methods = info["tempurl"]["methods"]
                    .as_array()
                    .map(|m| {
                        m.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                // distribution compares the version strings as strings.
                (version.as_str() >= "2.3.0", methods)
            }
            None => (
                self.settings.temp_url_container_key,
                self.settings.temp_url_methods.clone(),
            ),
        };
        if methods.is_empty() {
            return Ok(TempUrl::default());
        }
        let (target, key_header) = if container_key {
            (Target::Container, "x-container-meta-temp-url-key")
        } else {
            (Target::Account, "x-account-meta-temp-url-key")
        };
        let head = Request::new("HeadTempURLKey", Method::HEAD, target);
        let response = self
            .call_raw(head)
            .await
            .map_err(|f| f.into_storage_error("HeadTempURLKey", path))?;
        let current = header(response.headers(), key_header).to_string();
        let wanted = match &self.settings.secret_key {
            Some(key) => key.clone(),
            None if !current.is_empty() => current.clone(),
            None => {
                let random: [u8; 32] = rand::thread_rng().gen();
                hex_string(&random)
            }
        };
        let mut key = Some(current.clone()).filter(|k| !k.is_empty());
        if current != wanted {
            let post = Request::new("SetTempURLKey", Method::POST, target)
                .header(key_header, wanted.clone());
            // As distribution: a key that cannot be set means no redirects, not a failure.
            match self.call_raw(post).await {
                Ok(_) => key = Some(wanted),
                Err(f) => tracing::warn!(
                    target: "wharf::storage::swift",
                    failure = ?f, "cannot set the temp URL key: no redirects"
                ),
            }
        }
        Ok(TempUrl { key, methods })
    }

    /// `GET /info`, the cluster's capabilities; `None` when it does not answer.
    async fn info(&self) -> Option<serde_json::Value> {
        let session = self.session(None).await.ok()?;
        let uri: ::http::Uri = session.storage_url.parse().ok()?;
        let url = format!("{}://{}/info", uri.scheme_str()?, uri.authority()?);
        let started = Instant::now();
        let result = self.send(Method::GET, &url, &[], Bytes::new()).await;
        crate::ops::metrics::external_call("swift", "Info", started.elapsed(), result.is_ok());
        let body = read_limited(result.ok()?.into_body(), MAX_JSON_BODY)
            .await
            .ok()?;
        serde_json::from_slice(&body).ok()
    }

    /// `HEAD` of an object.
    pub(super) async fn head(&self, name: &str, path: &str) -> Result<Head, StorageError> {
        let response = self
            .call(
                Request::new("HeadObject", Method::HEAD, Target::Object(name)),
                path,
            )
            .await?;
        let h = response.headers();
        let manifest = header(h, "x-object-manifest");
        let recorded = header(h, SEGMENTS_META);
        let claim = header(h, CLAIM_META);
        Ok(Head {
            size: header(h, "content-length").parse().unwrap_or(0),
            modified: httpdate::parse_http_date(header(h, "last-modified")).ok(),
            manifest: (!manifest.is_empty()).then(|| manifest.to_string()),
            slo: header(h, "x-static-large-object").eq_ignore_ascii_case("true"),
            recorded: (!recorded.is_empty()).then(|| recorded.to_string()),
            claim: (!claim.is_empty()).then(|| claim.to_string()),
        })
    }

    /// `GET` of an object, of `len` bytes (to the end when `None`) from `offset` when a range
    /// is given.
    pub(super) async fn get(
        &self,
        name: &str,
        path: &str,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<ByteStream, StorageError> {
        let mut req = Request::new("GetObject", Method::GET, Target::Object(name));
        if let Some((offset, len)) = range {
            let value = rest_io::range_value(offset, len);
            req = req.header("range", value);
        }
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

    /// `PUT` of an object with `headers`; returns its ETag (the MD5 of the content).
    pub(super) async fn put(
        &self,
        name: &str,
        path: &str,
        content: Bytes,
        headers: &[(&str, String)],
    ) -> Result<String, StorageError> {
        let mut req = Request::new("PutObject", Method::PUT, Target::Object(name))
            .header("content-type", "application/octet-stream")
            .body(content);
        for (n, v) in headers {
            req = req.header(n, v.clone());
        }
        let response = self.call(req, path).await?;
        Ok(header(response.headers(), "etag")
            .trim_matches('"')
            .to_string())
    }

    /// Server-side `COPY` of an object within the container (a DLO is copied as the bytes it
    /// serves, into a plain object); returns the copy's ETag.
    pub(super) async fn copy(
        &self,
        source: &str,
        target: &str,
        path: &str,
    ) -> Result<String, StorageError> {
        let destination = format!(
            "{}/{}",
            encode_path(&self.settings.container),
            encode_path(target)
        );
        let req = Request::new("CopyObject", copy_method(), Target::Object(source))
            .header("destination", destination);
        let response = self.call(req, path).await?;
        Ok(header(response.headers(), "etag")
            .trim_matches('"')
            .to_string())
    }

    /// `DELETE` of one object.
    pub(super) async fn delete(&self, name: &str, path: &str) -> Result<(), StorageError> {
        let req = Request::new("DeleteObject", Method::DELETE, Target::Object(name));
        self.call(req, path).await.map(|_| ())
    }

    /// Every object under `prefix` (and, with a delimiter, the pseudo-directories one level
    /// down), following pages.
    pub(super) async fn list(
        &self,
        prefix: &str,
        delimiter: Option<char>,
        path: &str,
    ) -> Result<Vec<Listed>, StorageError> {
        self.list_as("ListObjects", prefix, delimiter, path).await
    }

    /// [`Self::list`], counted and logged as `op`: what is listed (a folder of the tree, or
    /// the segments of one file) is told apart in the metrics.
    pub(super) async fn list_as(
        &self,
        op: &'static str,
        prefix: &str,
        delimiter: Option<char>,
        path: &str,
    ) -> Result<Vec<Listed>, StorageError> {
        let mut out = Vec::new();
        let mut marker: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let page = self
                .list_page(op, prefix, delimiter, marker.as_deref(), LIST_PAGE, path)
                .await?;
            let full = page.len() >= LIST_PAGE;
            marker = page.last().map(|l| match l {
                Listed::Object { name, .. } => name.clone(),
                Listed::Subdir(s) => s.clone(),
            });
            out.extend(page);
            if !full {
                return Ok(out);
            }
        }
        Err(io_error(op, path, "too many pages"))
    }

    /// One listing page of at most `limit` entries after `marker`, counted and logged as `op`.
    pub(super) async fn list_page(
        &self,
        op: &'static str,
        prefix: &str,
        delimiter: Option<char>,
        marker: Option<&str>,
        limit: usize,
        path: &str,
    ) -> Result<Vec<Listed>, StorageError> {
        let mut req = Request::new(op, Method::GET, Target::Container)
            .query("format", "json")
            .query("limit", limit.to_string());
        if !prefix.is_empty() {
            req = req.query("prefix", prefix);
        }
        if let Some(d) = delimiter {
            req = req.query("delimiter", d.to_string());
        }
        if let Some(m) = marker {
            req = req.query("marker", m);
        }
        let response = self.call(req, path).await?;
        // Older Swift answers an empty listing with no content at all.
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(Vec::new());
        }
        let body = read_limited(response.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|source| StorageError::Io {
                op,
                path: path.to_string(),
                source,
            })?;
        parse_listing(&body).map_err(|source| StorageError::Io {
            op,
            path: path.to_string(),
            source,
        })
    }

    /// A temp URL that reads the object for the next twenty minutes, when the cluster allows
    /// `GET` temp URLs and the key is set.
    pub(super) async fn temp_url(
        &self,
        name: &str,
        path: &str,
    ) -> Result<Option<String>, StorageError> {
        let temp = &self.ready(path).await?.temp_url;
        let Some(key) = &temp.key else {
            return Ok(None);
        };
        if !temp.methods.iter().any(|m| m == "GET") {
            return Ok(None);
        }
        let session = self
            .session(None)
            .await
            .map_err(|f| f.into_storage_error("TempURL", path))?;
        let expires = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
            + REDIRECT_VALIDITY.as_secs();
        let uri: ::http::Uri = session
            .storage_url
            .parse()
            .map_err(|e| io_error("TempURL", path, e))?;
        // Signed over the unescaped path, as the middleware sees it.
        let signed_path = format!("{}/{}/{name}", uri.path(), self.settings.container);
        let mut signature = temp_url_signature(key, "GET", expires, &signed_path);
        if let Some(access) = &self.settings.access_key {
            signature = format!("{}:{access}:{signature}", self.settings.tenant_id);
        }
        Ok(Some(format!(
            "{}/{}/{}?temp_url_sig={}&temp_url_expires={expires}",
            session.storage_url,
            encode_path(&self.settings.container),
            encode_path(name),
            encode_query(&signature)
        )))
    }
}

/// Swift's `COPY` method, which `http` has no constant for.
fn copy_method() -> Method {
    Method::from_bytes(b"COPY").expect("COPY is a valid method")
}

/// A JSON listing page. One that ends mid-document was cut short (an answer without a length
/// ends when the connection closes): an outage, as a cut body is; any other is invalid data.
fn parse_listing(body: &[u8]) -> Result<Vec<Listed>, std::io::Error> {
    use std::io::{Error, ErrorKind};
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        let kind = if e.is_eof() {
            ErrorKind::ConnectionAborted
        } else {
            ErrorKind::InvalidData
        };
        Error::new(kind, format!("listing: {e}"))
    })?;
    let entries = value
        .as_array()
        .ok_or_else(|| Error::new(ErrorKind::InvalidData, "a listing is a JSON array"))?;
    entries
        .iter()
        .map(|e| {
            if let Some(subdir) = e["subdir"].as_str() {
                return Ok(Listed::Subdir(subdir.to_string()));
            }
            let name = e["name"].as_str().ok_or_else(|| {
                Error::new(ErrorKind::InvalidData, "a listed object without a name")
            })?;
            Ok(Listed::Object {
                name: name.to_string(),
                bytes: e["bytes"].as_u64().unwrap_or(0),
                hash: e["hash"].as_str().unwrap_or("").to_string(),
            })
        })
        .collect()
}

pub(super) use rest_io::io_error;

/// A body read whole, up to `limit` bytes, bounded in time.
async fn read_limited(body: Incoming, limit: usize) -> Result<Bytes, std::io::Error> {
    use std::io::{Error, ErrorKind};
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(BODY_IDLE_TIMEOUT, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
            Err(Error::new(ErrorKind::InvalidData, e.to_string()))
        }
        // The answer was cut: the service went away mid-answer, which is an outage.
        Ok(Err(e)) => Err(Error::new(ErrorKind::ConnectionAborted, e.to_string())),
        Err(_) => Err(Error::new(
            ErrorKind::TimedOut,
            format!("no whole answer within {BODY_IDLE_TIMEOUT:?}"),
        )),
    }
}

impl From<keystone::Grant> for Session {
    fn from(g: keystone::Grant) -> Self {
        Session {
            token: g.token,
            storage_url: g.storage_url,
            expires: g.expires,
        }
    }
}

/// A token answer's body (bounded in size and time).
async fn read_token_answer(response: ::http::Response<Incoming>) -> Result<Bytes, Failure> {
    read_limited(response.into_body(), MAX_TOKEN_BODY)
        .await
        .map_err(|e| Failure::Transport {
            kind: e.kind(),
            message: format!("Keystone's token answer: {e}"),
        })
}

/// A token answer without what the driver needs: the identity service is not usable.
fn bad_token_answer(message: String) -> Failure {
    Failure::Status {
        status: StatusCode::BAD_GATEWAY,
        message: format!("Keystone: {message}"),
    }
}

/// Reads an error answer's message (bounded in size and time).
async fn error_answer(response: ::http::Response<Incoming>) -> Failure {
    let status = response.status();
    let text = read_limited(response.into_body(), MAX_ERROR_BODY)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Failure::Status {
        status,
        message: text.chars().take(300).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_renewed_before_keystone_expiry_or_when_refused() {
        let session = |expires: Option<Duration>| Session {
            token: "t".into(),
            storage_url: "http://s/v1/AUTH_p".into(),
            expires: expires.map(|d| SystemTime::now() + d),
        };
        assert!(session(None).usable(None));
        assert!(!session(None).usable(Some("t")));
        assert!(session(None).usable(Some("older")));
        assert!(session(Some(Duration::from_secs(3600))).usable(None));
        assert!(!session(Some(TOKEN_RENEW_MARGIN / 2)).usable(None));
    }

    #[test]
    fn listings_parse_objects_and_subdirs() {
        let body = br#"[{"subdir": "files/a/"},
            {"bytes": 5, "hash": "5d41402abc4b2a76b9719d911017c592", "name": "files/b",
             "content_type": "x", "last_modified": "2026-12-06T08:04:17.585000"}]"#;
        let listed = parse_listing(body).unwrap();
        assert!(matches!(&listed[0], Listed::Subdir(s) if s == "files/a/"));
        match &listed[1] {
            Listed::Object { name, bytes, hash } => {
                assert_eq!((name.as_str(), *bytes), ("files/b", 5));
                assert_eq!(hash, "5d41402abc4b2a76b9719d911017c592");
            }
            other => panic!("{other:?}"),
        }
        let kind = |body: &[u8]| parse_listing(body).unwrap_err().kind();
        assert_eq!(kind(b"{}"), std::io::ErrorKind::InvalidData);
        assert_eq!(kind(b"[{\"name\": 5}]"), std::io::ErrorKind::InvalidData);
        // Cut mid-answer: the service went away, which the registry answers 503.
        assert_eq!(kind(&body[..40]), std::io::ErrorKind::ConnectionAborted);
        assert_eq!(kind(b""), std::io::ErrorKind::ConnectionAborted);
    }
}
