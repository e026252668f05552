//! One upstream registry: requests with its credentials (Basic, or a bearer token from a realm
//! it may receive them), redirects followed without credentials, and the back-off an upstream
//! asks for with `Retry-After` or earns with errors.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::error_chain::error_chain;
use crate::mirror::challenge::{self, Challenge};
use crate::mirror::metrics::METRICS;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Time allowed for an upstream's answer head (the body is bounded per chunk by the caller).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);
/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;
/// Largest token answer read.
const MAX_TOKEN_ANSWER: usize = 64 * 1024;
/// Back-off after an upstream error that did not say how long to wait.
const DEFAULT_BACKOFF: Duration = Duration::from_secs(5);
/// Longest back-off honoured, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

/// Why an upstream request gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Unreachable, timed out, 429 or 5xx: try again after the given time.
    #[error("upstream {upstream} unavailable: {reason}")]
    Unavailable {
        /// Upstream's name.
        upstream: String,
        /// What happened.
        reason: String,
        /// How long the upstream is left alone.
        retry_after: Duration,
    },
    /// The upstream refused the configured credentials (or their absence).
    #[error("upstream {upstream} refused access: {reason}")]
    Denied {
        /// Upstream's name.
        upstream: String,
        /// What happened.
        reason: String,
    },
}

/// Settings of one upstream.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// Label in metrics and logs: the prefix, or the host for `proxy.remoteurl`.
    pub name: String,
    /// Base URL, without a trailing `/`.
    pub url: String,
    /// Username and password, if any.
    pub credentials: Option<(String, String)>,
    /// Token realms on other hosts that may receive the credentials.
    pub token_realms: Vec<String>,
}

/// A client for one upstream registry.
pub struct Upstream {
    settings: UpstreamSettings,
    client: HttpsClient,
    /// Bearer tokens by scope, with their expiry.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic credentials: send them from the start.
    basic: std::sync::atomic::AtomicBool,
    /// No request goes upstream before this instant.
    backoff_until: Mutex<Option<Instant>>,
}

impl Upstream {
    /// A client for `settings`.
    pub fn new(settings: UpstreamSettings) -> Arc<Self> {
        Arc::new(Self {
            settings,
            client: client(),
            tokens: Mutex::default(),
            basic: Default::default(),
            backoff_until: Mutex::default(),
        })
    }

    /// Label in metrics and logs.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The upstream's host, without port.
    pub fn host(&self) -> String {
        challenge::origin(&self.settings.url)
            .map(|(_, h, _)| h)
            .unwrap_or_default()
    }

    /// `GET` or `HEAD` of `/v2/<repo>/<tail>`: the answer once it is not a challenge or a
    /// redirect. 429 and 5xx become [`UpstreamError::Unavailable`]; 401/403 after
    /// authenticating become [`UpstreamError::Denied`]; other statuses are the caller's.
    pub async fn get(
        &self,
        method: Method,
        repo: &str,
        tail: &str,
        accept: Option<&str>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        if let Some(left) = self.backoff_left() {
            return Err(self.unavailable("backing off after earlier errors", left));
        }
        let url = format!("{}/v2/{repo}/{tail}", self.settings.url);
        let scope = format!("repository:{repo}:pull");
        let mut auth = self.known_authorization(&scope);
        let mut answer = self.exchange(&method, &url, accept, auth.clone()).await?;
        if answer.status() == StatusCode::UNAUTHORIZED {
            let offered = answer
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .filter_map(challenge::parse)
                .collect::<Vec<_>>();
            auth = self.answer_challenges(&offered, &scope).await?;
            if auth.is_none() {
                return Err(UpstreamError::Denied {
                    upstream: self.name().to_string(),
                    reason: "authentication required and no credentials can answer it".into(),
                });
            }
            answer = self.exchange(&method, &url, accept, auth).await?;
        }
        let answer = self.follow_redirects(&method, &url, accept, answer).await?;
        let status = answer.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.record_error(status.as_u16());
            return Err(UpstreamError::Denied {
                upstream: self.name().to_string(),
                reason: format!("answered {status}"),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            self.record_error(status.as_u16());
            let wait = retry_after(answer.headers()).unwrap_or(DEFAULT_BACKOFF);
            return Err(self.back_off(format!("answered {status}"), wait));
        }
        if !status.is_success() {
            self.record_error(status.as_u16());
        }
        Ok(answer)
    }

    /// Sends one request; transport failures and timeouts start a back-off.
    async fn exchange(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        authorization: Option<String>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut builder = Request::builder().method(method.clone()).uri(url).header(
            header::USER_AGENT,
            concat!("wharf/", env!("CARGO_PKG_VERSION")),
        );
        if let Some(accept) = accept {
            builder = builder.header(header::ACCEPT, accept);
        }
        if let Some(a) = authorization.and_then(|a| HeaderValue::from_str(&a).ok()) {
            builder = builder.header(header::AUTHORIZATION, a);
        }
        let request = builder
            .body(Empty::new())
            .map_err(|e| self.back_off(format!("bad request URL {url}: {e}"), DEFAULT_BACKOFF))?;
        METRICS
            .upstream_requests
            .with_label_values(&[self.name(), method.as_str()])
            .inc();
        match tokio::time::timeout(HEAD_TIMEOUT, self.client.request(request)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.record_error(0);
                Err(self.back_off(
                    format!("request failed: {}", error_chain(&e)),
                    DEFAULT_BACKOFF,
                ))
            }
            Err(_) => {
                self.record_error(0);
                Err(self.back_off(
                    format!("no answer within {HEAD_TIMEOUT:?}"),
                    DEFAULT_BACKOFF,
                ))
            }
        }
    }

    /// Follows 3xx answers, never with credentials: a redirect target (blob storage) is not
    /// the upstream.
    async fn follow_redirects(
        &self,
        method: &Method,
        url: &str,
        accept: Option<&str>,
        mut answer: Response<Incoming>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut current = url.to_string();
        for _ in 0..MAX_REDIRECTS {
            if !answer.status().is_redirection() || answer.status() == StatusCode::NOT_MODIFIED {
                return Ok(answer);
            }
            let Some(location) = answer
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|l| resolve(&current, l))
            else {
                return Ok(answer);
            };
            current = location;
            answer = self.exchange(method, &current, accept, None).await?;
        }
        Err(self.back_off("too many redirects".into(), DEFAULT_BACKOFF))
    }

    /// The Authorization header already known for `scope`: a live token, or Basic when the
    /// upstream asked for it before.
    fn known_authorization(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((token, until)) = tokens.get(scope) {
            if Instant::now() < *until {
                return Some(format!("Bearer {token}"));
            }
        }
        if self.basic.load(std::sync::atomic::Ordering::Relaxed) {
            return self.basic_header();
        }
        None
    }

    fn basic_header(&self) -> Option<String> {
        let (user, pass) = self.settings.credentials.as_ref()?;
        Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        ))
    }

    /// An Authorization header answering one of the challenges, if any can be.
    async fn answer_challenges(
        &self,
        offered: &[Challenge],
        scope: &str,
    ) -> Result<Option<String>, UpstreamError> {
        for c in offered {
            if let Challenge::Bearer { realm, service, .. } = c {
                let token = self.fetch_token(realm, service.as_deref(), scope).await?;
                return Ok(Some(format!("Bearer {token}")));
            }
        }
        if offered.contains(&Challenge::Basic) && self.settings.credentials.is_some() {
            self.basic.store(true, std::sync::atomic::Ordering::Relaxed);
            return Ok(self.basic_header());
        }
        Ok(None)
    }

    /// Gets a pull token for `scope` from `realm`; the credentials go along only when the
    /// realm may receive them (see [`challenge::may_receive_credentials`]).
    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &str,
    ) -> Result<String, UpstreamError> {
        let query = {
            let mut query = form_urlencoded::Serializer::new(String::new());
            if let Some(service) = service {
                query.append_pair("service", service);
            }
            query.append_pair("scope", scope);
            query.finish()
        };
        let separator = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{separator}{query}");
        let trusted = challenge::may_receive_credentials(
            realm,
            &self.settings.url,
            &self.settings.token_realms,
        );
        if !trusted && self.settings.credentials.is_some() {
            tracing::warn!(upstream = %self.name(), realm, "token realm is on another host and not listed in tokenrealms: asking it without credentials");
        }
        let auth = if trusted { self.basic_header() } else { None };
        let answer = self.exchange(&Method::GET, &url, None, auth).await?;
        let status = answer.status();
        let body = tokio::time::timeout(
            HEAD_TIMEOUT,
            http_body_util::Limited::new(answer.into_body(), MAX_TOKEN_ANSWER).collect(),
        )
        .await
        .map_err(|_| self.back_off("token answer timed out".into(), DEFAULT_BACKOFF))?
        .map_err(|e| self.back_off(format!("token answer: {e}"), DEFAULT_BACKOFF))?
        .to_bytes();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.record_error(status.as_u16());
            return Err(UpstreamError::Denied {
                upstream: self.name().to_string(),
                reason: format!("token realm answered {status}"),
            });
        }
        if !status.is_success() {
            self.record_error(status.as_u16());
            return Err(self.back_off(format!("token realm answered {status}"), DEFAULT_BACKOFF));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let parsed: TokenAnswer = serde_json::from_slice(&body)
            .map_err(|e| self.back_off(format!("token answer: {e}"), DEFAULT_BACKOFF))?;
        let token = parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| self.back_off("token answer without a token".into(), DEFAULT_BACKOFF))?;
        // Kept a little shorter than granted, so it is never sent as it expires.
        let life = Duration::from_secs(parsed.expires_in.unwrap_or(60).clamp(10, 3600) - 5);
        self.tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(scope.to_string(), (token.clone(), Instant::now() + life));
        Ok(token)
    }

    /// Time left in the current back-off, if any.
    pub fn backoff_left(&self) -> Option<Duration> {
        let until = (*self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()))?;
        until
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Starts (or extends) a back-off of `wait` and describes it.
    fn back_off(&self, reason: String, wait: Duration) -> UpstreamError {
        let wait = wait.min(MAX_BACKOFF);
        let mut until = self.backoff_until.lock().unwrap_or_else(|e| e.into_inner());
        let candidate = Instant::now() + wait;
        if until.is_none_or(|u| u < candidate) {
            *until = Some(candidate);
        }
        tracing::warn!(upstream = %self.name(), %reason, retry_after = ?wait, "upstream unavailable");
        UpstreamError::Unavailable {
            upstream: self.name().to_string(),
            reason,
            retry_after: wait,
        }
    }

    fn unavailable(&self, reason: &str, wait: Duration) -> UpstreamError {
        UpstreamError::Unavailable {
            upstream: self.name().to_string(),
            reason: reason.into(),
            retry_after: wait,
        }
    }

    /// Counts an error answer (0: no answer at all).
    fn record_error(&self, status: u16) {
        let label = if status == 0 {
            "none".to_string()
        } else {
            status.to_string()
        };
        METRICS
            .upstream_errors
            .with_label_values(&[self.name(), &label])
            .inc();
    }

    /// Forgets a back-off once the upstream answered well again.
    pub fn recovered(&self) {
        *self.backoff_until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// `Retry-After` as seconds or an HTTP date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// `location` made absolute against `base`.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    let uri: http::Uri = base.parse().ok()?;
    let origin = format!("{}://{}", uri.scheme_str()?, uri.authority()?);
    if location.starts_with("//") {
        return Some(format!("{}:{location}", uri.scheme_str()?));
    }
    if location.starts_with('/') {
        return Some(format!("{origin}{location}"));
    }
    let dir = uri.path().rsplit_once('/').map_or("", |(d, _)| d);
    Some(format!("{origin}{dir}/{location}"))
}

/// An HTTP(S) client trusting the system's roots.
fn client() -> HttpsClient {
    crate::tls_client::https_client("upstream registries", Some(Duration::from_secs(10)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_against_the_request() {
        let base = "http://127.0.0.1:5000/v2/a/blobs/sha256:x";
        assert_eq!(
            resolve(base, "https://s3/x?sig=1").as_deref(),
            Some("https://s3/x?sig=1")
        );
        assert_eq!(
            resolve(base, "/data/x").as_deref(),
            Some("http://127.0.0.1:5000/data/x")
        );
        assert_eq!(resolve(base, "//cdn/x").as_deref(), Some("http://cdn/x"));
        assert_eq!(
            resolve(base, "y").as_deref(),
            Some("http://127.0.0.1:5000/v2/a/blobs/y")
        );
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&h), Some(Duration::ZERO));
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h), None);
    }
}
