//! One HTTP client for every test. An [`Endpoint`] (a registry, a cluster node or haproxy in
//! front of them) builds requests; [`send`] reads the whole answer into a [`Resp`] and checks
//! the header every registry answer carries, panicking on a transport error; [`try_send`]
//! reports transport errors instead, for clients that count failures (load, nodes being
//! killed). The error-JSON assertions check registry errors the way clients parse them.

use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use reqwest::blocking::{Body, Client, RequestBuilder};
use reqwest::Method;
use serde_json::Value;

/// The `Docker-Distribution-API-Version` every answer carries.
pub const API_VERSION: &str = "registry/2.0";

/// The response header naming the node that answered (a cluster node sets it through
/// `http.headers`).
pub const NODE_HEADER: &str = "x-wharf-node";

/// The client every endpoint uses: no redirects followed, bounded connects and requests, idle
/// connections dropped soon (nodes restart behind a balancer).
pub fn http_client() -> Client {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(600))
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(5))
        .build()
        .expect("http client")
}

/// A base URL (`http://127.0.0.1:<port>`) and a connection pool.
#[derive(Clone)]
pub struct Endpoint {
    base: String,
    client: Client,
}

impl Endpoint {
    /// A client of `base` (`http://127.0.0.1:<port>`).
    pub fn new(base: &str) -> Endpoint {
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            client: http_client(),
        }
    }

    /// A client of `base` that sends HTTP Basic credentials with every request.
    pub fn with_basic_auth(base: &str, user: &str, password: &str) -> Endpoint {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::with_authorization(base, &format!("Basic {token}"))
    }

    /// A client of `base` that sends a bearer token with every request.
    pub fn with_bearer(base: &str, token: &str) -> Endpoint {
        Self::with_authorization(base, &format!("Bearer {token}"))
    }

    fn with_authorization(base: &str, value: &str) -> Endpoint {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(value).unwrap(),
        );
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            client: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(600))
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(5))
                .default_headers(headers)
                .build()
                .expect("http client"),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `127.0.0.1:<port>`, as skopeo wants it.
    pub fn host(&self) -> &str {
        self.base
            .split_once("://")
            .map_or(self.base.as_str(), |(_, host)| host)
    }

    /// An absolute URL for a path (`/v2/...`) or a `Location` value (absolute ones are used as
    /// they are).
    pub fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_string()
        } else if location.starts_with('/') {
            format!("{}{}", self.base, location)
        } else {
            format!("{}/{}", self.base, location)
        }
    }

    /// A `Location` pointed at this endpoint instead of whichever host it names.
    pub fn here(&self, location: &str) -> String {
        format!("{}{}", self.base, location_path(location))
    }

    /// A request to a path or a `Location`.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.resolve(path))
    }

    /// `GET`, see [`Endpoint::request`].
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `HEAD`, see [`Endpoint::request`].
    pub fn head(&self, path: &str) -> RequestBuilder {
        self.request(Method::HEAD, path)
    }

    /// `POST`, see [`Endpoint::request`].
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `PUT`, see [`Endpoint::request`].
    pub fn put(&self, path: &str) -> RequestBuilder {
        self.request(Method::PUT, path)
    }

    /// `PATCH`, see [`Endpoint::request`].
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// `DELETE`, see [`Endpoint::request`].
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// Sends and requires `expected` and the API version header; anything else (a transport
    /// error included) is a [`Failure`] named `what`.
    pub fn expect(
        &self,
        what: &str,
        request: RequestBuilder,
        expected: u16,
    ) -> Result<Resp, Failure> {
        let resp = try_send(request).map_err(|error| Failure {
            what: what.to_string(),
            answer: None,
            error,
        })?;
        if resp.status != expected {
            return Err(Failure::answer(what, &format!("expected {expected}"), resp));
        }
        if resp.header("docker-distribution-api-version") != Some(API_VERSION) {
            return Err(Failure::answer(
                what,
                &format!("no Docker-Distribution-API-Version: {API_VERSION}"),
                resp,
            ));
        }
        Ok(resp)
    }
}

/// A fully read response; header names are lower-case.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// From sending the request to the end of the body.
    pub elapsed: Duration,
}

impl Resp {
    /// The first value of a header (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header (any case).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .filter(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The header, or a panic naming it and the response.
    pub fn must_header(&self, name: &str) -> &str {
        self.header(name)
            .unwrap_or_else(|| panic!("response has no {name} header: {}", self.describe()))
    }

    /// The cluster node that answered ([`NODE_HEADER`]), or "".
    pub fn node(&self) -> &str {
        self.header(NODE_HEADER).unwrap_or("")
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON, or a panic showing it.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.describe()))
    }

    /// The first error code of an OCI error body.
    pub fn error_code(&self) -> Option<String> {
        let v: Value = serde_json::from_slice(&self.body).ok()?;
        v["errors"][0]["code"].as_str().map(str::to_string)
    }

    /// Status, headers and (up to 2000 bytes of) body, for failure messages.
    pub fn describe(&self) -> String {
        let mut body = self.text();
        if body.len() > 2000 {
            let mut cut = 2000;
            while !body.is_char_boundary(cut) {
                cut -= 1;
            }
            body.truncate(cut);
            body.push('…');
        }
        format!("{} {:?} {}", self.status, self.headers, body)
    }

    /// Panics with the whole answer unless the status is `status`.
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status,
            status,
            "unexpected status: {}",
            self.describe()
        );
        self
    }
}

/// Sends a request and reads the whole answer; `Err` only for transport errors (connection
/// refused, reset, timeout).
pub fn try_send(request: RequestBuilder) -> Result<Resp, String> {
    let (client, request) = request.build_split();
    let request = request.map_err(|e| format!("building the request: {e:#}"))?;
    let what = format!("{} {}", request.method(), request.url());
    let started = Instant::now();
    let resp = client
        .execute(request)
        .map_err(|e| format!("{what}: {e:#}"))?;
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_ascii_lowercase(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .bytes()
        .map_err(|e| format!("{what}: reading the body: {e:#}"))?
        .to_vec();
    Ok(Resp {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    })
}

/// Sends a request, reads the whole answer, and checks the header every response must carry;
/// panics on a transport error.
pub fn send(request: RequestBuilder) -> Resp {
    let resp = try_send(request).unwrap_or_else(|e| panic!("HTTP request failed: {e}"));
    assert_api_version(&resp);
    resp
}

/// A request that did not get the expected answer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub what: String,
    /// None for a transport error (connection refused, reset, timeout).
    pub answer: Option<Box<Resp>>,
    pub error: String,
}

impl Failure {
    /// An answer that is not the one expected.
    pub fn answer(what: &str, error: &str, resp: Resp) -> Failure {
        Failure {
            what: what.to_string(),
            answer: Some(Box::new(resp)),
            error: error.to_string(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.answer {
            Some(a) => write!(
                f,
                "{} ({}): from {} ({} ms): {}",
                self.what,
                self.error,
                a.node(),
                a.elapsed.as_millis(),
                a.describe()
            ),
            None => write!(f, "{}: {}", self.what, self.error),
        }
    }
}

/// A request body: bytes, or a reader of a known length.
pub enum Payload {
    Bytes(Vec<u8>),
    Reader(Box<dyn Read + Send + 'static>, u64),
}

impl Payload {
    /// The length the body declares.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Reader(_, len) => *len,
        }
    }

    /// `request` with this body as `application/octet-stream`, its length declared.
    pub fn attach(self, request: RequestBuilder) -> RequestBuilder {
        let request = request.header("content-type", "application/octet-stream");
        match self {
            Payload::Bytes(b) => request
                .header("content-length", b.len().to_string())
                .body(b),
            Payload::Reader(r, len) => request.body(Body::sized(r, len)),
        }
    }
}

/// A body that trickles out: a piece, then a pause, until done (a slow client).
pub struct Trickle {
    data: Vec<u8>,
    pos: usize,
    piece: usize,
    pause: Duration,
}

impl Trickle {
    /// `data` sent in `pieces` pieces over about `over`.
    pub fn new(data: Vec<u8>, pieces: usize, over: Duration) -> Trickle {
        let piece = data.len().div_ceil(pieces.max(1)).max(1);
        Trickle {
            data,
            pos: 0,
            piece,
            pause: over / pieces.max(1) as u32,
        }
    }

    /// As a request body of known length.
    pub fn payload(self) -> Payload {
        let len = self.data.len() as u64;
        Payload::Reader(Box::new(self), len)
    }
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.data.len() {
            return Ok(0);
        }
        // Pause at each piece boundary, whatever the size of the caller's buffer.
        let in_piece = self.pos % self.piece;
        if self.pos > 0 && in_piece == 0 {
            thread::sleep(self.pause);
        }
        let n = buf
            .len()
            .min(self.piece - in_piece)
            .min(self.data.len() - self.pos);
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The path (and query) of a `Location` value, whether absolute or relative.
pub fn location_path(location: &str) -> String {
    match location.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => rest[i..].to_string(),
            None => "/".to_string(),
        },
        None => location.to_string(),
    }
}

/// Append `digest=<d>` to an upload URL that may already have a query.
pub fn with_digest(location: &str, digest: &str) -> String {
    let sep = if location.contains('?') { '&' } else { '?' };
    format!("{location}{sep}digest={digest}")
}

/// The `rel="next"` target of a `Link` header, if any.
pub fn next_link(resp: &Resp) -> Option<String> {
    for value in resp.header_all("link") {
        for part in value.split(',') {
            let part = part.trim();
            if !part.contains("rel=\"next\"") && !part.contains("rel=next") {
                continue;
            }
            let start = part.find('<')? + 1;
            let end = part[start..].find('>')? + start;
            return Some(part[start..end].to_string());
        }
    }
    None
}

/// Every response carries `Docker-Distribution-API-Version: registry/2.0`.
pub fn assert_api_version(resp: &Resp) {
    assert_eq!(
        resp.header("docker-distribution-api-version"),
        Some(API_VERSION),
        "every response carries Docker-Distribution-API-Version: {}",
        resp.describe()
    );
}

/// The error body `{"errors":[{"code","message","detail"?}]}` with one of `statuses` and the first
/// error's code one of `codes`.
pub fn assert_error_in(resp: &Resp, statuses: &[u16], codes: &[&str]) {
    assert!(
        statuses.contains(&resp.status),
        "expected status in {statuses:?} with code in {codes:?}, got {}",
        resp.describe()
    );
    let content_type = resp.header("content-type").unwrap_or("");
    assert!(
        content_type.starts_with("application/json"),
        "error responses are JSON, got Content-Type {content_type:?}: {}",
        resp.describe()
    );
    let body: Value = serde_json::from_slice(&resp.body)
        .unwrap_or_else(|e| panic!("error body is not JSON ({e}): {}", resp.describe()));
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("error body has no errors array: {}", resp.describe()));
    assert!(
        !errors.is_empty(),
        "empty errors array: {}",
        resp.describe()
    );
    for error in errors {
        assert!(error["code"].is_string(), "error without code: {error}");
        assert!(
            error["message"].is_string(),
            "error without message: {error}"
        );
    }
    let first = errors[0]["code"].as_str().unwrap();
    assert!(
        codes.contains(&first),
        "expected code in {codes:?}, got {first}: {}",
        resp.describe()
    );
}

/// An error JSON with exactly this status and first code.
pub fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_error_in(resp, &[status], &[code]);
}

/// Either an error JSON with one of `codes`, or (for routes distribution does not match at all)
/// a plain 404; never a 5xx.
pub fn assert_error_or_plain_404(resp: &Resp, statuses: &[u16], codes: &[&str]) {
    assert!(resp.status < 500, "server error: {}", resp.describe());
    if resp.status == 404 && !resp.header("content-type").unwrap_or("").contains("json") {
        return;
    }
    assert_error_in(resp, statuses, codes);
}

/// The answer to a request a server may refuse before reading its whole body: either an error
/// JSON as given, or a connection reset/closed by the server before the client finished sending
/// (TCP may then lose the answer). Callers must still check that nothing was stored.
pub fn assert_refused(result: io::Result<Resp>, statuses: &[u16], codes: &[&str]) {
    match result {
        Ok(resp) => {
            assert_api_version(&resp);
            assert_error_in(&resp, statuses, codes);
        }
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
            ),
            "no answer, and not a reset either: {e}"
        ),
    }
}
