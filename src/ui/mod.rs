//! The web console at `ui.path`: server-side rendered pages over the registry layer, with
//! access decided by the registry's own authentication (see `access`).
//!
//! `route` turns a request into a [`route::Page`], `session` reads and writes the login
//! cookie, `access` asks htpasswd or the token issuer what the viewer may do, `view` reads what
//! a page shows from the registry, `html` renders it. This file wires them per page.

pub mod access;
pub mod html;
pub mod realm;
pub mod route;
pub mod session;
pub mod view;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use sha2::Digest as _;

use crate::api::body::{full, Body, RequestBody};
use crate::api::App;
use crate::auth::{Access, Authenticator, PeerAddr};
use crate::config::Config;
use crate::registry::error::RegistryError;
use crate::registry::path_order;
use crate::registry::reference::RepositoryName;
use crate::registry::ManifestReference;
use access::{AccessError, TokenRealm, Viewer};
use route::{Page, PageError, TagOrder};
use session::Login;

/// The style sheet, compiled in.
const STYLE: &str = include_str!("assets/style.css");
/// Largest login or deletion form read.
const MAX_FORM: usize = 16 * 1024;
/// Tags summarised on one repository page.
const MAX_TAGS: usize = 1000;
/// Repository names looked at (for access) to fill one page of the list.
const MAX_SCANNED: usize = 5000;

/// The console's settings, from `ui` and `http`.
pub struct Console {
    base: String,
    key: Vec<u8>,
    host: Option<String>,
    page_size: usize,
    session_ttl: Duration,
    secure_cookie: bool,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a page answers: a status and HTML, a redirect, or a resource.
struct Answer {
    status: StatusCode,
    content_type: &'static str,
    body: String,
    location: Option<String>,
    cookie: Option<String>,
}

impl Answer {
    fn html(status: StatusCode, body: String) -> Self {
        Self {
            status,
            content_type: "text/html; charset=utf-8",
            body,
            location: None,
            cookie: None,
        }
    }

    fn redirect(to: String) -> Self {
        Self {
            status: StatusCode::SEE_OTHER,
            content_type: "text/plain; charset=utf-8",
            body: String::new(),
            location: Some(to),
            cookie: None,
        }
    }
}

/// Everything about the request a page needs besides the registry.
struct Visit<'a> {
    app: &'a App,
    viewer: Viewer,
    host: String,
    read_only: bool,
    uri: String,
}

impl Console {
    /// The console `config.ui` asks for, if enabled. The cookie key derives from `secret` (the
    /// node's `http.secret`, so every node accepts every node's logins, and a reload keeps them).
    pub fn from_config(config: &Config, secret: &[u8]) -> Option<Self> {
        if !config.ui.enabled {
            return None;
        }
        let mut key = sha2::Sha256::new();
        key.update(b"wharf console login\0");
        key.update(secret);
        Some(Self {
            base: config.ui.path.clone(),
            key: key.finalize().to_vec(),
            host: config.ui.registryhost.clone(),
            page_size: config.ui.pagesize,
            session_ttl: config.ui.sessionttl,
            secure_cookie: config.http.tls.is_some(),
        })
    }

    /// True for paths under `ui.path` (and the path without its final `/`).
    pub fn serves(&self, path: &str) -> bool {
        path.starts_with(&self.base) || path == self.base.trim_end_matches('/')
    }

    /// Answers one console request; never fails, problems become pages with a 4xx (or, for a
    /// storage failure, 5xx) status.
    pub async fn handle(&self, app: &App, req: Request<RequestBody>) -> Response<Body> {
        let path = req.uri().path().to_string();
        let answer = if path == self.base.trim_end_matches('/') {
            Answer::redirect(self.base.clone())
        } else {
            self.page(app, req).await
        };
        self.respond(answer)
    }

    fn respond(&self, a: Answer) -> Response<Body> {
        let mut resp = Response::new(full(a.body));
        *resp.status_mut() = a.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(a.content_type),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
            ),
        );
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        if let Some(l) = a.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
            h.insert(header::LOCATION, l);
        }
        if let Some(c) = a.cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
            h.insert(header::SET_COOKIE, c);
        }
        resp
    }

    fn frame<'a>(&'a self, v: &'a Visit<'a>) -> html::Frame<'a> {
        html::Frame {
            base: &self.base,
            user: v.viewer.user(),
            auth: v.app.auth.is_some(),
            read_only: v.read_only,
            host: &v.host,
        }
    }

    fn cookie(&self, value: &str, max_age: u64) -> String {
        format!(
            "{}={value}; Path={}; Max-Age={max_age}; HttpOnly; SameSite=Strict{}",
            session::COOKIE,
            self.base,
            if self.secure_cookie { "; Secure" } else { "" }
        )
    }

    async fn page(&self, app: &App, req: Request<RequestBody>) -> Answer {
        let (parts, body) = req.into_parts();
        let post = match parts.method {
            Method::GET | Method::HEAD => false,
            Method::POST => true,
            _ => {
                let mut a = Answer::html(StatusCode::METHOD_NOT_ALLOWED, String::new());
                a.content_type = "text/plain; charset=utf-8";
                a.body = "the console takes GET, HEAD and POST\n".into();
                return a;
            }
        };
        let login = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|c| session::cookie(c, session::COOKIE))
            .and_then(|c| Login::open(c, &self.key, now()));
        let host = self.host.clone().unwrap_or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string()
        });
        let registry = &app.registry;
        let visit = Visit {
            app,
            viewer: Viewer {
                login,
                peer: parts.extensions.get::<PeerAddr>().copied(),
                realm: TokenRealm::of(app, &parts.headers),
            },
            host,
            read_only: registry.options().read_only
                || registry
                    .read_only_switch()
                    .load(std::sync::atomic::Ordering::Relaxed),
            uri: parts
                .uri
                .path_and_query()
                .map_or_else(|| self.base.clone(), |p| p.to_string()),
        };
        let rest = &parts.uri.path()[self.base.len().min(parts.uri.path().len())..];
        let query = parts.uri.query().unwrap_or("");
        let page = match Page::parse(post, rest, query) {
            Ok(p) => p,
            Err(PageError::NotFound) => {
                return self.message(
                    &visit,
                    StatusCode::NOT_FOUND,
                    "Not found",
                    "There is no such page.",
                )
            }
            Err(PageError::Invalid(why)) => {
                return self.message(&visit, StatusCode::BAD_REQUEST, "Bad request", &why)
            }
        };
        if post && !same_origin(&parts.headers) {
            return self.message(
                &visit,
                StatusCode::FORBIDDEN,
                "Refused",
                "This form was not sent from the console.",
            );
        }
        let form = if post {
            read_form(body).await
        } else {
            Ok(Vec::new())
        };
        let Ok(form) = form else {
            return self.message(
                &visit,
                StatusCode::PAYLOAD_TOO_LARGE,
                "Bad request",
                "The form is too large.",
            );
        };
        let result = match page {
            Page::Style => {
                let mut a = Answer::html(StatusCode::OK, STYLE.to_string());
                a.content_type = "text/css; charset=utf-8";
                return a;
            }
            Page::Login { submit: false } => {
                let then = route::query_value(query, "then").unwrap_or_default();
                return Answer::html(
                    StatusCode::OK,
                    html::login(&self.frame(&visit), None, &then),
                );
            }
            Page::Login { submit: true } => return self.sign_in(&visit, &form).await,
            Page::Logout => {
                let mut a = Answer::redirect(self.base.clone());
                a.cookie = Some(self.cookie("", 0));
                return a;
            }
            Page::Repositories { query, last } => {
                self.repositories(&visit, &query, last.as_deref()).await
            }
            Page::Tags { name, order } => self.tags(&visit, &name, order).await,
            Page::Image { name, reference } => self.image(&visit, &name, &reference, query).await,
            Page::Delete {
                name,
                reference,
                confirmed,
            } => {
                self.delete(&visit, &name, &reference, query, confirmed)
                    .await
            }
        };
        match result {
            Ok(a) => a,
            Err(Failure::Access(AccessError::LoginNeeded)) => {
                let then = html::q(&visit.uri);
                Answer::redirect(format!("{}login?then={then}", self.base))
            }
            Err(Failure::Access(AccessError::Issuer(why))) => {
                tracing::warn!(error = %why, "console: token realm");
                self.sign_in_failed(&visit, &why, &visit.uri)
            }
            Err(Failure::Hidden) => self.message(
                &visit,
                StatusCode::NOT_FOUND,
                "Not found",
                "No such repository or image, or you may not see it.",
            ),
            Err(Failure::Registry(e)) => {
                let (status, title) = registry_status(&e);
                if status.is_server_error() {
                    tracing::warn!(error = %e, "console: registry failure");
                }
                self.message(&visit, status, title, &e.to_string())
            }
        }
    }

    fn message(&self, v: &Visit, status: StatusCode, title: &str, text: &str) -> Answer {
        Answer::html(status, html::message(&self.frame(v), title, text))
    }

    /// The login form saying why the sign-in service could not be used. A 403: the console
    /// works, the viewer cannot be signed in until the realm answers.
    fn sign_in_failed(&self, v: &Visit, why: &str, then: &str) -> Answer {
        let text = format!("The sign-in service failed: {why}");
        Answer::html(
            StatusCode::FORBIDDEN,
            html::login(&self.frame(v), Some(text.as_str()), then),
        )
    }

    async fn sign_in(&self, v: &Visit<'_>, form: &[u8]) -> Answer {
        let field = |k: &str| {
            form_urlencoded::parse(form)
                .find(|(f, _)| f == k)
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let login = Login {
            user: field("username"),
            password: field("password"),
        };
        let then = field("then");
        let viewer = Viewer {
            login: Some(login.clone()),
            peer: v.viewer.peer,
            realm: v.viewer.realm.clone(),
        };
        match access::check_login(v.app, &viewer).await {
            Ok(()) if !login.user.is_empty() => {
                // Only back into the console: `then` must not send the browser elsewhere.
                let to = if then.starts_with(&self.base) && !then.contains("//") {
                    then
                } else {
                    self.base.clone()
                };
                let mut a = Answer::redirect(to);
                let ttl = self.session_ttl.as_secs();
                a.cookie = Some(self.cookie(&login.seal(&self.key, now() + ttl), ttl));
                a
            }
            Err(AccessError::Issuer(why)) => {
                tracing::warn!(error = %why, "console: token realm");
                self.sign_in_failed(v, &why, &then)
            }
            _ => Answer::html(
                StatusCode::FORBIDDEN,
                html::login(&self.frame(v), Some("Wrong user name or password."), &then),
            ),
        }
    }

    async fn repositories(
        &self,
        v: &Visit<'_>,
        query: &str,
        last: Option<&str>,
    ) -> Result<Answer, Failure> {
        let scoped = matches!(v.app.auth, Some(Authenticator::Token(_)));
        // Checks the login (or anonymous access) before listing anything.
        access::permitted(v.app, &v.viewer, &[]).await?;
        let needle = query.to_lowercase();
        // A search reads every name; the plain list reads a page's worth from a walk that
        // seeks to `last` and stops.
        let matching = if needle.is_empty() {
            None
        } else {
            let mut all = v.app.registry.repositories().await?;
            all.retain(|n| n.to_lowercase().contains(&needle));
            Some(all)
        };
        let names = Names {
            matching: matching.as_deref(),
            registry: &v.app.registry,
        };
        let mut shown = Vec::new();
        let mut cursor = last.map(str::to_string);
        let mut scanned = 0;
        while shown.len() < self.page_size && scanned < MAX_SCANNED {
            let chunk = names.after(cursor.as_deref(), self.page_size).await?;
            if chunk.is_empty() {
                break;
            }
            let allowed = if scoped {
                let wanted: Vec<Access> = chunk
                    .iter()
                    .map(|n| Access::repository(n, "pull"))
                    .collect();
                access::permitted(v.app, &v.viewer, &wanted).await?
            } else {
                vec![true; chunk.len()]
            };
            for (n, ok) in chunk.into_iter().zip(allowed) {
                scanned += 1;
                cursor = Some(n.clone());
                if ok {
                    shown.push(n);
                    if shown.len() == self.page_size {
                        break;
                    }
                }
            }
        }
        // A next page only when a name follows the last one examined.
        let mut next = cursor.filter(|c| Some(c.as_str()) != last);
        if let Some(c) = &next {
            if names.after(Some(c), 1).await?.is_empty() {
                next = None;
            }
        }
        // Counting what a scoped viewer may not see would tell them it exists.
        let total = matching.as_ref().filter(|_| !scoped).map(Vec::len);
        Ok(Answer::html(
            StatusCode::OK,
            html::repositories(
                &self.frame(v),
                query,
                &shown,
                next.as_deref(),
                total,
                scoped,
            ),
        ))
    }

    /// Pull (else `Hidden`, or a login for an anonymous viewer) and whether the viewer may
    /// delete in `name`.
    async fn may_see(&self, v: &Visit<'_>, name: &RepositoryName) -> Result<bool, Failure> {
        let wanted = [
            Access::repository(name.as_str(), "pull"),
            Access::repository(name.as_str(), "delete"),
        ];
        let allowed = access::permitted(v.app, &v.viewer, &wanted).await?;
        if !allowed[0] {
            return Err(if v.viewer.login.is_none() {
                Failure::Access(AccessError::LoginNeeded)
            } else {
                Failure::Hidden
            });
        }
        let options = v.app.registry.options();
        Ok(allowed[1] && options.delete_enabled && !v.read_only)
    }

    async fn tags(
        &self,
        v: &Visit<'_>,
        name: &RepositoryName,
        order: TagOrder,
    ) -> Result<Answer, Failure> {
        let can_delete = self.may_see(v, name).await?;
        let mut tags = v.app.registry.list_tags(name).await?;
        tags.truncate(MAX_TAGS);
        let mut rows = view::summaries(&v.app.registry, name, &tags).await?;
        if order == TagOrder::Date {
            rows.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.tag.cmp(&b.tag)));
        }
        Ok(Answer::html(
            StatusCode::OK,
            html::tags(
                &self.frame(v),
                name.as_str(),
                &rows,
                order == TagOrder::Date,
                can_delete,
            ),
        ))
    }

    async fn image(
        &self,
        v: &Visit<'_>,
        name: &RepositoryName,
        reference: &ManifestReference,
        query: &str,
    ) -> Result<Answer, Failure> {
        let can_delete = self.may_see(v, name).await?;
        let detail = view::detail(&v.app.registry, name, reference).await?;
        let shown = route::query_value(query, "ref").unwrap_or_default();
        Ok(Answer::html(
            StatusCode::OK,
            html::image(&self.frame(v), name.as_str(), &shown, &detail, can_delete),
        ))
    }

    async fn delete(
        &self,
        v: &Visit<'_>,
        name: &RepositoryName,
        reference: &ManifestReference,
        query: &str,
        confirmed: bool,
    ) -> Result<Answer, Failure> {
        let can_delete = self.may_see(v, name).await?;
        if !can_delete {
            let why = if v.read_only {
                "The registry is in read-only mode."
            } else if !v.app.registry.options().delete_enabled {
                "Deletion is disabled on this registry (storage.delete.enabled)."
            } else {
                "You may not delete in this repository."
            };
            return Ok(self.message(v, StatusCode::FORBIDDEN, "Cannot delete", why));
        }
        let shown = route::query_value(query, "ref").unwrap_or_default();
        if !confirmed {
            v.app.registry.resolve_manifest(name, reference).await?;
            return Ok(Answer::html(
                StatusCode::OK,
                html::confirm_delete(&self.frame(v), name.as_str(), &shown),
            ));
        }
        let removed = v.app.registry.delete_manifest(name, reference).await?;
        tracing::info!(
            repository = %name,
            reference = %shown,
            tags = ?removed,
            user = v.viewer.user().unwrap_or(""),
            "console: deleted"
        );
        Ok(Answer::redirect(format!(
            "{}repository?name={}",
            self.base,
            html::q(name.as_str())
        )))
    }
}

/// Where the repository list's names come from: a search's matches, or the registry's
/// listing read page by page.
struct Names<'a> {
    matching: Option<&'a [String]>,
    registry: &'a crate::registry::Registry,
}

impl Names<'_> {
    /// Up to `n` names after `last`, in listing order.
    async fn after(&self, last: Option<&str>, n: usize) -> Result<Vec<String>, RegistryError> {
        match self.matching {
            Some(m) => {
                let start = last.map_or(0, |l| {
                    m.partition_point(|x| path_order(x, l) != std::cmp::Ordering::Greater)
                });
                Ok(m[start..].iter().take(n).cloned().collect())
            }
            None => self.registry.repositories_after(last, n).await,
        }
    }
}

/// Why a page could not be shown.
enum Failure {
    Access(AccessError),
    /// Not visible to this viewer: answered as if it did not exist.
    Hidden,
    Registry(RegistryError),
}

impl From<AccessError> for Failure {
    fn from(e: AccessError) -> Self {
        Failure::Access(e)
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        Failure::Registry(e)
    }
}

fn registry_status(e: &RegistryError) -> (StatusCode, &'static str) {
    match e {
        RegistryError::NameUnknown(_)
        | RegistryError::ManifestUnknown(_)
        | RegistryError::BlobUnknown(_)
        | RegistryError::ManifestBlobUnknown(_) => (StatusCode::NOT_FOUND, "Not found"),
        RegistryError::Unsupported(_) => (StatusCode::METHOD_NOT_ALLOWED, "Not allowed"),
        RegistryError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "Unavailable"),
        RegistryError::Storage(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Storage failure"),
        _ => (StatusCode::BAD_REQUEST, "Bad request"),
    }
}

/// A form POST must come from a console page: browsers send `Origin` (and
/// `Sec-Fetch-Site`) with forms; another site's form is refused.
fn same_origin(headers: &http::HeaderMap) -> bool {
    let text = |n: header::HeaderName| headers.get(n).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return false;
        }
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => origin
            .split_once("://")
            .is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
        (None, _) => true,
    }
}

async fn read_form(body: RequestBody) -> Result<Vec<u8>, ()> {
    http_body_util::BodyExt::collect(http_body_util::Limited::new(body, MAX_FORM))
        .await
        .map(|c| c.to_bytes().to_vec())
        .map_err(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_from_other_sites_are_refused() {
        let h = |pairs: &[(&'static str, &'static str)]| {
            let mut m = http::HeaderMap::new();
            for (k, v) in pairs {
                m.insert(*k, HeaderValue::from_static(v));
            }
            m
        };
        assert!(same_origin(&h(&[
            ("host", "r:5000"),
            ("origin", "http://r:5000")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "r:5000"),
            ("origin", "http://evil:5000")
        ])));
        assert!(!same_origin(&h(&[
            ("host", "r:5000"),
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(same_origin(&h(&[("host", "r:5000")])));
    }
}
