//! HTTP API: route a request, check access, call the registry, shape the answer.

pub mod body;
pub mod error;
pub mod events;
pub mod file_body;
pub mod headers;
pub mod route;
pub mod urls;

mod blobs;
mod catalog;
mod manifests;
mod referrers;
mod uploads;

use http::{HeaderValue, Method, Request, Response, StatusCode};

use crate::auth::{Access, Authenticator};
use crate::ops::health::Health;
use crate::registry::reference::{RepositoryName, MAX_NAME_LENGTH};
use crate::registry::{BodyStream, Registry};
use body::{empty, full, Body, RequestBody};
use error::{ApiError, ErrorCode};
use route::{Route, RouteError};
use urls::UrlBuilder;

/// Everything a request handler needs.
pub struct App {
    /// The registry.
    pub registry: std::sync::Arc<Registry>,
    /// Builds `Location` and `Link` URLs.
    pub urls: UrlBuilder,
    /// Access control, when configured.
    pub auth: Option<Authenticator>,
    /// The built-in token issuer, when configured.
    pub issuer: Option<crate::auth::issuer::TokenIssuer>,
    /// Health checks; while one fails every request gets 503.
    pub health: Health,
    /// Webhook notifications, when an endpoint is enabled.
    pub notifier: Option<std::sync::Arc<crate::notify::Notifier>>,
    /// The pull-through cache, in proxy mode.
    pub mirror: Option<std::sync::Arc<crate::mirror::Mirror>>,
}

/// What the access log and metrics want to know about a handled request.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    /// Distribution's handler label (`blob`, `manifest`, ...).
    pub handler: &'static str,
    /// Repository, when the route names one.
    pub repository: Option<String>,
    /// Authenticated user.
    pub user: Option<String>,
}

/// A request as handlers see it: parts plus a body that a handler may take.
pub struct Req {
    /// Method, URI, headers.
    pub parts: http::request::Parts,
    /// The body, until a handler takes it.
    body: Option<RequestBody>,
}

impl Req {
    /// A query parameter, percent-decoded. `+` stays `+`: no parameter of this
    /// API holds spaces, while media types (`artifactType`) hold `+`.
    pub fn query(&self, key: &str) -> Option<String> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        self.parts.uri.query()?.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k) == key).then(|| decode(v))
        })
    }

    /// Every value of a repeated query parameter, percent-decoded, in order;
    /// at most `limit + 1`, so a caller can refuse more than `limit`
    /// without holding them all.
    pub fn query_all(&self, key: &str, limit: usize) -> Vec<String> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        };
        let Some(query) = self.parts.uri.query() else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k) == key).then(|| decode(v))
            })
            .take(limit.saturating_add(1))
            .collect()
    }

    /// A header as text.
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The declared `Content-Length`, or 0 for a request that has no body at all (HTTP/1.1
    /// without `Content-Length` or `Transfer-Encoding`, HTTP/2 with END_STREAM on its head).
    pub fn content_length(&self) -> Option<u64> {
        match self.header(http::header::CONTENT_LENGTH) {
            Some(v) => v.trim().parse().ok(),
            None => self
                .body
                .as_ref()
                .filter(|b| http_body::Body::is_end_stream(*b))
                .map(|_| 0),
        }
    }

    /// Takes the body (once).
    pub fn take_body(&mut self) -> Option<RequestBody> {
        self.body.take()
    }

    /// Takes the body as a stream of chunks.
    pub fn body_stream(&mut self) -> BodyStream {
        use futures_util::TryStreamExt;
        match self.body.take() {
            Some(b) => {
                Box::pin(http_body_util::BodyDataStream::new(b).map_err(std::io::Error::other))
            }
            None => Box::pin(futures_util::stream::empty()),
        }
    }

    /// Reads and drops what no handler consumed, so the client reads our
    /// answer instead of a connection reset; bounded in bytes and time.
    async fn drain(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        let drain = async {
            let mut left: usize = 4 << 20;
            while let Some(Ok(frame)) = http_body_util::BodyExt::frame(&mut body).await {
                let n = frame.data_ref().map_or(0, |d| d.len());
                if n >= left {
                    break;
                }
                left -= n;
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), drain).await;
    }
}

/// Handles one request; never fails, errors become registry error JSON.
pub async fn handle(app: &App, req: Request<RequestBody>) -> (Response<Body>, RequestInfo) {
    let (parts, body) = req.into_parts();
    let mut req = Req {
        parts,
        body: Some(body),
    };
    let mut info = RequestInfo::default();
    let resp = match route(app, &mut req, &mut info).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    };
    req.drain().await;
    (resp, info)
}

async fn route(
    app: &App,
    req: &mut Req,
    info: &mut RequestInfo,
) -> Result<Response<Body>, ApiError> {
    if let Some(issuer) = app.issuer.as_ref() {
        if req.parts.uri.path() == issuer.path() {
            info.handler = "token";
            return token_endpoint(issuer, req).await;
        }
    }
    if let Some(failure) = app.health.failure() {
        return Err(ApiError::new(
            ErrorCode::Unavailable,
            format!("health check failed: please see /debug/health ({failure})"),
        ));
    }
    let path = app
        .urls
        .strip_prefix(req.parts.uri.path())
        .ok_or_else(ApiError::route_not_found)?;
    let route = match Route::parse(path) {
        Ok(r) => r,
        Err(RouteError::NotFound) => return Err(ApiError::route_not_found()),
        Err(RouteError::NameInvalid(name)) => {
            return Err(ApiError::new(ErrorCode::NameInvalid, name))
        }
    };
    info.handler = route.handler_name();
    info.repository = route.repository().map(|r| r.to_string());
    if route == Route::Root {
        return Ok(root_response());
    }
    let mount_source = match route {
        Route::Uploads(_) => mount_source(req)?,
        _ => None,
    };
    if let Some(auth) = &app.auth {
        let access = required_access(&route, &req.parts.method);
        // Pull on a mount's source is asked for, not required: without it the
        // mount becomes a plain upload (see `uploads::start`).
        let also_ask: Vec<Access> = mount_source
            .iter()
            .map(|from| Access::repository(from.as_str(), "pull"))
            .filter(|a| !access.contains(a))
            .collect();
        match auth.authorize(&req.parts.headers, &access, &also_ask).await {
            Ok(grant) => {
                info.user = grant.user.clone();
                req.parts.extensions.insert(grant);
            }
            Err(denial) => {
                let detail: Vec<serde_json::Value> = denial
                    .access
                    .iter()
                    .map(|a| serde_json::json!({"Type": a.kind, "Class": "", "Name": a.name, "Action": a.action}))
                    .collect();
                let challenge = HeaderValue::from_str(&denial.challenge)
                    .unwrap_or(HeaderValue::from_static("Basic"));
                return Err(ApiError::new(ErrorCode::Unauthorized, detail)
                    .with_header(http::header::WWW_AUTHENTICATE, challenge));
            }
        }
    }
    let method = req.parts.method.clone();
    // A cache takes no writes (registry:2's proxy mode).
    if app.mirror.is_some()
        && route.repository().is_some()
        && !matches!(method, Method::GET | Method::HEAD)
    {
        return Err(ApiError::new(
            ErrorCode::Unsupported,
            "this registry is a pull-through cache: pushes and deletes go to the upstream",
        ));
    }
    match route {
        Route::Root => Ok(root_response()),
        Route::Base => match method {
            Method::GET | Method::HEAD => Ok(json_response(StatusCode::OK, b"{}".to_vec())),
            _ => Err(ApiError::method_not_allowed("GET, HEAD")),
        },
        Route::Catalog => match method {
            Method::GET => catalog::catalog(app, req).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        Route::Tags(name) => match method {
            Method::GET => catalog::tags(app, req, &name).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        Route::Manifest(name, reference) => match method {
            Method::GET | Method::HEAD => manifests::get(app, req, &name, &reference).await,
            Method::PUT => manifests::put(app, req, &name, &reference).await,
            Method::DELETE => manifests::delete(app, req, &name, &reference).await,
            _ => Err(ApiError::method_not_allowed("GET, HEAD, PUT, DELETE")),
        },
        Route::Blob(name, digest) => match method {
            Method::GET | Method::HEAD => blobs::get(app, req, &name, &digest).await,
            Method::DELETE => blobs::delete(app, req, &name, &digest).await,
            _ => Err(ApiError::method_not_allowed("GET, HEAD, DELETE")),
        },
        Route::Uploads(name) => match method {
            Method::POST => uploads::start(app, req, &name).await,
            _ => Err(ApiError::method_not_allowed("POST")),
        },
        Route::Upload(name, uuid) => match method {
            Method::GET | Method::HEAD => uploads::status(app, req, &name, &uuid).await,
            Method::PATCH => uploads::patch(app, req, &name, &uuid).await,
            Method::PUT => uploads::put(app, req, &name, &uuid).await,
            Method::DELETE => uploads::cancel(app, req, &name, &uuid).await,
            _ => Err(ApiError::method_not_allowed(
                "GET, HEAD, PATCH, PUT, DELETE",
            )),
        },
        Route::Referrers(name, digest) => match method {
            Method::GET => referrers::get(app, req, &name, &digest).await,
            _ => Err(ApiError::method_not_allowed("GET")),
        },
    }
}

/// The token endpoint of the built-in issuer.
async fn token_endpoint(
    issuer: &crate::auth::issuer::TokenIssuer,
    req: &mut Req,
) -> Result<Response<Body>, ApiError> {
    let peer = req
        .parts
        .extensions
        .get::<crate::auth::PeerAddr>()
        .map(|p| p.0);
    let headers = req.parts.headers.clone();
    let caller = crate::auth::issuer::Caller {
        peer,
        headers: &headers,
    };
    let answer = match req.parts.method {
        Method::GET => {
            issuer
                .get(req.parts.uri.query().unwrap_or(""), caller)
                .await
        }
        Method::POST => {
            let form = match req.take_body() {
                Some(body) => {
                    http_body_util::BodyExt::collect(http_body_util::Limited::new(body, 64 * 1024))
                        .await
                        .map_err(|_| {
                            ApiError::new(ErrorCode::SizeInvalid, "token request form too large")
                        })?
                        .to_bytes()
                }
                None => Default::default(),
            };
            issuer.post(&form, caller).await
        }
        _ => return Err(ApiError::method_not_allowed("GET, POST")),
    };
    let mut resp = json_response(
        answer.status,
        serde_json::to_vec(&answer.body).unwrap_or_default(),
    );
    let h = resp.headers_mut();
    h.insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    if let Some(challenge) = answer.challenge {
        h.insert(http::header::WWW_AUTHENTICATE, header_value(&challenge));
    }
    Ok(resp)
}

/// The access a request needs (distribution's `app.go` rules): reads need
/// pull, writes pull+push, deletes delete, the catalog `registry:catalog:*`.
/// A mount's `pull` on the source is not required: without it the mount is
/// skipped and a normal upload starts (see [`may_pull`]).
pub fn required_access(route: &Route, method: &Method) -> Vec<Access> {
    let Some(repo) = route.repository() else {
        return match route {
            Route::Catalog => vec![Access {
                kind: "registry",
                name: "catalog".into(),
                action: "*",
            }],
            _ => Vec::new(),
        };
    };
    let name = repo.as_str();
    match *method {
        Method::GET | Method::HEAD => vec![Access::repository(name, "pull")],
        Method::DELETE => vec![Access::repository(name, "delete")],
        _ => vec![
            Access::repository(name, "pull"),
            Access::repository(name, "push"),
        ],
    }
}

/// The `from` of a cross-repository mount (`POST .../blobs/uploads/?mount=&from=`),
/// checked against the name grammar like any repository in a path.
pub fn mount_source(req: &Req) -> Result<Option<RepositoryName>, ApiError> {
    if req.parts.method != Method::POST || req.query("mount").is_none() {
        return Ok(None);
    }
    match req.query("from").filter(|f| !f.is_empty()) {
        None => Ok(None),
        Some(from) => RepositoryName::parse(&from).map(Some).ok_or_else(|| {
            let shown: String = from.chars().take(MAX_NAME_LENGTH + 16).collect();
            ApiError::new(ErrorCode::NameInvalid, format!("from={shown}"))
        }),
    }
}

/// Whether the request's credentials allow pulling from `repository` (always, without auth).
pub fn may_pull(req: &Req, repository: &str) -> bool {
    req.parts
        .extensions
        .get::<crate::auth::Grant>()
        .is_none_or(|g| g.permits(&Access::repository(repository, "pull")))
}

/// `/`: 200, empty, not cached; no authentication, as in distribution.
fn root_response() -> Response<Body> {
    let mut resp = Response::new(empty());
    resp.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-cache"),
    );
    resp
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// An empty response whose header map has room for a blob's or a manifest's headers plus
/// those the server adds after the handler (configured ones, the request id): the usual set
/// fits without regrowing the map. These answer most requests.
fn roomy_response() -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.headers_mut() = http::HeaderMap::with_capacity(12);
    resp
}

/// Builds a header value from text that is known to be printable ASCII.
pub fn header_value(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_follows_distribution_rules() {
        let r = Route::parse("/v2/a/blobs/uploads/").unwrap();
        let names = |v: Vec<Access>| v.iter().map(Access::to_string).collect::<Vec<_>>();
        assert_eq!(
            names(required_access(&r, &Method::POST)),
            ["repository:a:pull", "repository:a:push"]
        );
        let m = Route::parse("/v2/a/manifests/x").unwrap();
        assert_eq!(
            names(required_access(&m, &Method::HEAD)),
            ["repository:a:pull"]
        );
        assert_eq!(
            names(required_access(&m, &Method::DELETE)),
            ["repository:a:delete"]
        );
        assert_eq!(
            names(required_access(&Route::Catalog, &Method::GET)),
            ["registry:catalog:*"]
        );
        assert!(required_access(&Route::Base, &Method::GET).is_empty());
    }
}
