//! Accept loop, connection handling and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Instrument;

use crate::api::body::Body;
use crate::api::error::{ApiError, ErrorCode};
use crate::api::file_body::SendfileQueue;
use crate::api::{self, App};
use crate::http::cors::{self, Decision};
use crate::http::limits::{head_size, IdleTimeout, Limits};
use crate::http::owned_chunks::OwnedChunks;
use crate::http::paced_reads::PacedReads;
use crate::http::read_ahead::ReadAhead;
use crate::http::sendfile::SendfileStream;
use crate::ops;

/// What a request is served with under one configuration: the application and what the
/// server adds to its answers. A reload replaces it whole; a request reads it once, when it
/// starts, so requests in flight finish under the configuration they started with.
pub struct Site {
    /// The API's state.
    pub app: Arc<App>,
    /// `http.headers` plus the API version header, added to every response.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// `log.accesslog.disabled` inverted.
    pub access_log: bool,
    /// `http.cors`, when it allows an origin.
    pub cors: Option<crate::http::cors::Cors>,
    /// The web console, when `ui.enabled`.
    pub console: Option<Arc<crate::ui::Console>>,
}

/// The site new requests are served with.
pub type Sites = Arc<arc_swap::ArcSwap<Site>>;

/// Server behaviour from `http.*` that holds for the life of the process.
#[derive(Clone)]
pub struct ServerSettings {
    /// After the shutdown signal, how long to go on accepting connections
    /// (answering with `Connection: close`) while load balancers notice that
    /// readiness turned false.
    pub drain_grace: Duration,
    /// Once accepting has stopped, how long in-flight requests may run before
    /// the remaining connections are closed.
    pub drain_timeout: Duration,
    /// `http.limits`.
    pub limits: Limits,
    /// `http.http2.disabled` inverted.
    pub http2: bool,
    /// `http.tls`, when set.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
}

/// A bound listener: TCP or a Unix socket (`http.net: unix`).
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix domain socket.
    Unix(tokio::net::UnixListener),
}

impl Listener {
    /// Binds `addr` as distribution would: `:5000` means every interface. With `reuse_port`
    /// another process of the same user may bind the same address while this one listens
    /// (the kernel spreads new connections over both), which is how a new binary takes over.
    pub async fn bind(net: &str, addr: &str, reuse_port: bool) -> std::io::Result<Self> {
        if net == "unix" {
            let _ = std::fs::remove_file(addr);
            return Ok(Self::Unix(tokio::net::UnixListener::bind(addr)?));
        }
        let mut last = None;
        for candidate in tcp_addresses(addr) {
            let bound = if reuse_port {
                bind_reusable(&candidate)
                    .await
                    .and_then(tokio::net::TcpListener::from_std)
            } else {
                tokio::net::TcpListener::bind(candidate).await
            };
            match bound {
                Ok(l) => return Ok(Self::Tcp(l)),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
    }

    /// The bound address, for logs.
    pub fn local_addr(&self) -> String {
        match self {
            Self::Tcp(l) => l.local_addr().map(|a| a.to_string()).unwrap_or_default(),
            Self::Unix(l) => l
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
                .unwrap_or_default(),
        }
    }
}

/// Where `addr` may listen, in order of preference: distribution reads `:5000` as every
/// interface, IPv6 and IPv4 where the system allows, else IPv4 only.
fn tcp_addresses(addr: &str) -> Vec<String> {
    match addr.strip_prefix(':') {
        Some(port) => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
        None => vec![addr.to_string()],
    }
}

/// A non-blocking listener on `addr` with SO_REUSEPORT set (and SO_REUSEADDR, as Go and
/// tokio set it). Linux only lets sockets of the same effective user share a port.
async fn bind_reusable(addr: &str) -> std::io::Result<std::net::TcpListener> {
    let mut last = None;
    for resolved in tokio::net::lookup_host(addr).await? {
        match reusable_socket(resolved) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

fn reusable_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    if addr.is_ipv6() && addr.ip().is_unspecified() {
        // `[::]` takes IPv4 as well, as tokio's default socket does on Linux.
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds `addr` (read as [`Listener::bind`] reads it) outside any runtime, for a server
/// that runs on a runtime of its own (the debug server).
pub fn bind_tcp_std(addr: &str, reuse_port: bool) -> std::io::Result<std::net::TcpListener> {
    let mut last = None;
    for candidate in tcp_addresses(addr) {
        let bound = if reuse_port {
            std::net::ToSocketAddrs::to_socket_addrs(&candidate).and_then(|mut all| {
                all.next()
                    .ok_or_else(|| std::io::Error::other("no address to listen on"))
                    .and_then(reusable_socket)
            })
        } else {
            std::net::TcpListener::bind(candidate)
        };
        match bound {
            Ok(l) => {
                l.set_nonblocking(true)?;
                return Ok(l);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no address to listen on")))
}

/// Serves until `shutdown` resolves, then drains in two steps: for
/// `drain_grace` new connections are still accepted (so requests a load
/// balancer sends before it notices the node is leaving are not refused),
/// every response asking the client to close its connection; then the
/// listener is closed and in-flight requests get `drain_timeout` to finish.
pub async fn serve(
    sites: Sites,
    listener: Listener,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.limits.header_read_timeout)
        // Clients may shut down their sending side while awaiting the answer.
        .half_close(true)
        .max_headers(settings.limits.max_headers)
        // Heads are checked against max_header_bytes per request; the buffer only bounds them.
        .max_buf_size((256 * 1024).max(settings.limits.max_header_bytes + 8192));
    builder
        .http2()
        .max_header_list_size(u32::try_from(settings.limits.max_header_bytes).unwrap_or(u32::MAX));
    if !settings.http2 {
        builder = builder.http1_only();
    }
    let builder = Arc::new(builder);
    let graceful = GracefulShutdown::new();
    let settings = Arc::new(settings);
    let draining = Arc::new(AtomicBool::new(false));
    let stop_accepting = {
        let (draining, grace) = (draining.clone(), settings.drain_grace);
        async move {
            shutdown.await;
            draining.store(true, Ordering::SeqCst);
            tracing::info!(grace = ?grace, "shutting down: still accepting connections during the grace period");
            tokio::time::sleep(grace).await;
        }
    };
    tokio::pin!(stop_accepting);
    let connections = Arc::new(tokio::sync::Semaphore::new(settings.limits.max_connections));
    let connections_ctx = Connections {
        builder,
        sites,
        settings: settings.clone(),
        draining: draining.clone(),
    };
    loop {
        // At the cap, new connections wait in the listen backlog until one closes.
        let permit = tokio::select! {
            () = &mut stop_accepting => break,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            () = &mut stop_accepting => break,
            accepted = accept(&listener) => accepted,
        };
        let (io, remote) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Running out of file descriptors must not spin the loop.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        connections_ctx.spawn(graceful.watcher(), io, remote, Some(permit));
    }
    // Connections the kernel queued on this socket before it closes would be reset with it:
    // take them first (with SO_REUSEPORT another process is accepting the rest by now).
    let queued = flush_accept_queue(listener);
    for (io, remote) in queued {
        connections_ctx.spawn(graceful.watcher(), io, remote, None);
    }
    tracing::info!(timeout = ?settings.drain_timeout, "stopped accepting; draining connections");
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timeout reached; closing remaining connections");
    } else {
        tracing::info!("all connections drained");
    }
}

/// What every connection is served with.
struct Connections {
    builder: Arc<auto::Builder<TokioExecutor>>,
    sites: Sites,
    settings: Arc<ServerSettings>,
    draining: Arc<AtomicBool>,
}

impl Connections {
    /// Serves one accepted connection in a task of its own (TLS handshake first, when
    /// configured, bounded like the request head); `permit` holds its place under
    /// `http.limits.maxconnections` until it closes.
    fn spawn(
        &self,
        watcher: hyper_util::server::graceful::Watcher,
        io: Accepted,
        remote: String,
        permit: Option<tokio::sync::OwnedSemaphorePermit>,
    ) {
        let tls = self.settings.tls.clone();
        // Plain HTTP/1 over TCP sends blob files with sendfile (see `http::sendfile`).
        let (io, sendfile): (Box<dyn Io>, _) = match (io, &tls) {
            (Accepted::Tcp(s), None) => {
                let queue = SendfileQueue::default();
                (Box::new(SendfileStream::new(s, queue.clone())), Some(queue))
            }
            (Accepted::Tcp(s), Some(_)) => (Box::new(s), None),
            (Accepted::Unix(s), _) => (Box::new(s), None),
        };
        let (sites, settings, draining) = (
            self.sites.clone(),
            self.settings.clone(),
            self.draining.clone(),
        );
        let builder = self.builder.clone();
        let peer = Arc::new(Peer::new(remote));
        let remote = peer.clone();
        let service = hyper::service::service_fn(move |req| {
            let site = sites.load_full();
            let (settings, remote) = (settings.clone(), peer.clone());
            let draining = draining.clone();
            let sendfile = sendfile.clone();
            async move {
                let mut req = req;
                if let Some(queue) = sendfile.filter(|_| req.version() < http::Version::HTTP_2) {
                    req.extensions_mut().insert(queue);
                }
                Ok::<_, Infallible>(handle(&site, &settings, &draining, req, &remote).await)
            }
        });
        let timeout = self.settings.limits.header_read_timeout;
        tokio::spawn(async move {
            let result = match tls {
                None => {
                    watcher
                        .watch(builder.serve_connection(TokioIo::new(PacedReads::new(io)), service))
                        .await
                }
                Some(tls) => {
                    // rustls reads its transport 4 KiB at a time; see `http::read_ahead`.
                    let accepted = tokio::time::timeout(timeout, tls.accept(ReadAhead::new(io)));
                    let mut stream = match accepted.await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::debug!(remote = %remote.text, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(remote = %remote.text, "TLS handshake timed out");
                            return;
                        }
                    };
                    stream
                        .get_mut()
                        .1
                        .set_buffer_limit(Some(crate::http::tls::SEND_BUFFER));
                    watcher
                        .watch(
                            builder
                                .serve_connection(TokioIo::new(PacedReads::new(stream)), service),
                        )
                        .await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            drop(permit);
        });
    }
}

/// Closes `listener`, returning the connections already waiting in its accept queue.
fn flush_accept_queue(listener: Listener) -> Vec<(Accepted, String)> {
    let mut queued: Vec<(Accepted, String)> = Vec::new();
    let Listener::Tcp(listener) = listener else {
        return queued;
    };
    let Ok(listener) = listener.into_std() else {
        return queued;
    };
    if listener.set_nonblocking(true).is_err() {
        return queued;
    }
    // Bounded: a queue holds at most the backlog.
    for _ in 0..4096 {
        let Ok((stream, addr)) = listener.accept() else {
            break;
        };
        let stream = stream
            .set_nonblocking(true)
            .and_then(|()| tokio::net::TcpStream::from_std(stream));
        if let Ok(stream) = stream {
            let _ = stream.set_nodelay(true);
            queued.push((Accepted::Tcp(stream), addr.to_string()));
        }
    }
    drop(listener);
    queued
}

/// Any stream a connection can run on.
trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// An accepted connection's stream.
enum Accepted {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<(Accepted, String)> {
    match listener {
        Listener::Tcp(l) => {
            let (s, addr): (tokio::net::TcpStream, SocketAddr) = l.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Accepted::Tcp(s), addr.to_string()))
        }
        Listener::Unix(l) => {
            let (s, _) = l.accept().await?;
            Ok((Accepted::Unix(s), "unix".to_string()))
        }
    }
}

/// The other end of a connection, as the access log and handlers see it.
struct Peer {
    /// `ip:port`, or `unix` for a Unix socket.
    text: String,
    /// The peer's address, for address-based access rules.
    ip: Option<std::net::IpAddr>,
}

impl Peer {
    fn new(text: String) -> Self {
        let ip = text
            .parse::<SocketAddr>()
            .ok()
            .map(|a| a.ip().to_canonical());
        Self { text, ip }
    }
}

/// One request: the API, then the common headers and the access log line.
async fn handle(
    site: &Site,
    settings: &ServerSettings,
    draining: &AtomicBool,
    mut req: Request<Incoming>,
    peer: &Peer,
) -> Response<Body> {
    // HTTP/2 carries the host as :authority; handlers read `Host`, as Go's r.Host does.
    if !req.headers().contains_key(http::header::HOST) {
        if let Some(host) = req
            .uri()
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            req.headers_mut().insert(http::header::HOST, host);
        }
    }
    if let Some(ip) = peer.ip {
        req.extensions_mut().insert(crate::auth::PeerAddr(ip));
    }
    let remote = peer.text.as_str();
    let app = &site.app;
    let started = Instant::now();
    let method = req.method().clone();
    let http1 = req.version() < http::Version::HTTP_2;
    let request_size = req
        .headers()
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .unwrap_or(0);
    let has_body = request_size > 0 || req.headers().contains_key(http::header::TRANSFER_ENCODING);
    if has_body {
        own_header_values(req.headers_mut());
        own_uri(req.uri_mut());
    }
    // Shares the URI's buffer rather than copying it; taken after `own_uri`, or a request whose
    // body trickles in would keep the connection's read buffer alive through this copy.
    let uri = req.uri().clone();
    let path = uri.path();
    let user_agent = site.access_log.then(|| {
        req.headers()
            .get(http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    });
    let request_id_header = req
        .headers()
        .get("x-request-id")
        .filter(|v| v.len() <= 128 && v.as_bytes().iter().all(|b| b.is_ascii_graphic()))
        .cloned()
        .unwrap_or_else(new_request_id);
    let request_id = request_id_header.to_str().unwrap_or("");
    let handler = app
        .urls
        .strip_prefix(path)
        .and_then(|p| api::route::Route::parse(p).ok())
        .map_or("none", |route| route.handler_name());
    let timer = ops::metrics::RequestTimer::start(handler, &method, request_size);
    let (span, trace_id) =
        ops::telemetry::request_span(&method, path, handler, request_id, req.headers());
    let limits = &settings.limits;
    let cors = site
        .cors
        .as_ref()
        .map_or(Decision::Pass, |c| c.decide(req.method(), req.headers()));
    let (resp, info) = if let Decision::Preflight(_) | Decision::Refused = cors {
        // Preflights carry no credentials: answered here, before authentication and handlers.
        (
            preflight_response(&cors),
            api::RequestInfo {
                handler: "preflight",
                ..Default::default()
            },
        )
    } else if head_size(req.method(), req.uri(), req.headers()) > limits.max_header_bytes
        || req.headers().len() > limits.max_headers
    {
        let e = ApiError::new(
            ErrorCode::HeadersTooLarge,
            format!(
                "request headers exceed http.limits (maxheaderbytes {}, maxheaders {})",
                limits.max_header_bytes, limits.max_headers
            ),
        );
        (e.into_response(), api::RequestInfo::default())
    } else {
        let timeout = limits.body_idle_timeout;
        if app.notifier.is_some() {
            req.extensions_mut().insert(api::events::ClientInfo {
                remote: remote.to_string(),
                request_id: request_id.to_string(),
            });
        }
        let req = req.map(|b| {
            IdleTimeout::new(OwnedChunks::new(b), timeout)
                .map_err(std::io::Error::other)
                .boxed()
        });
        match site.console.as_ref().filter(|c| c.serves(path)) {
            Some(console) => (
                console.handle(app, req).instrument(span.clone()).await,
                api::RequestInfo {
                    handler: "console",
                    ..Default::default()
                },
            ),
            None => api::handle(app, req).instrument(span.clone()).await,
        }
    };
    let status = resp.status().as_u16();
    ops::telemetry::record_response(&span, info.repository.as_deref(), status);
    let mut resp =
        resp.map(|body| ops::metrics::MeteredBody::new(body, timer, status).boxed_unsync());
    let h = resp.headers_mut();
    for (name, value) in &site.headers {
        h.append(name.clone(), value.clone());
    }
    h.insert("x-request-id", request_id_header.clone());
    match &cors {
        Decision::Preflight(extra) | Decision::Actual(extra) => cors::apply(h, extra),
        Decision::Pass | Decision::Refused => cors::forbid_wildcard_credentials(h),
    }
    // Shutting down: the client's next request should open a new connection,
    // which the load balancer sends to a node that stays. A refused request
    // may leave its body unread (a foreign upload token is refused before the
    // chunk is read), and then the connection cannot carry another request:
    // say so, or the client's next request on it fails.
    let refused_body = has_body && status >= 400;
    if http1 && (refused_body || draining.load(Ordering::SeqCst)) {
        h.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if site.access_log {
        let length = resp
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        tracing::info!(
            target: "access",
            remote = remote,
            method = %method,
            path = %path,
            status = resp.status().as_u16(),
            bytes = length,
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            handler = info.handler,
            repository = info.repository.as_deref().unwrap_or(""),
            user = info.user.as_deref().unwrap_or(""),
            user_agent = user_agent.as_deref().unwrap_or(""),
            request_id = request_id,
            trace_id = trace_id.as_deref(),
            "request"
        );
    }
    resp
}

/// A version 4 UUID, as distribution gives each request, from the thread's CSPRNG: the
/// operating system's generator costs a system call per request.
fn new_request_id() -> HeaderValue {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = uuid::Builder::from_random_bytes(rand::random())
        .into_uuid()
        .hyphenated()
        .encode_lower(&mut text);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Copies header values out of the connection's read buffer, which hyper hands them out as
/// slices of: a request whose body trickles in for seconds would otherwise keep the buffer
/// its head arrived in alive beside the one its body is read into.
fn own_header_values(headers: &mut http::HeaderMap) {
    for value in headers.values_mut() {
        if let Ok(mut owned) = HeaderValue::from_bytes(value.as_bytes()) {
            owned.set_sensitive(value.is_sensitive());
            *value = owned;
        }
    }
}

/// Copies the request target out of the connection's read buffer too: hyper parses it into a
/// `Uri` that shares the buffer, which would keep it alive for as long as the body takes.
fn own_uri(uri: &mut http::Uri) {
    if let Ok(owned) = http::Uri::try_from(uri.to_string()) {
        *uri = owned;
    }
}

/// The answer to a preflight: 204 for an allowed origin (its headers are added with the
/// others), 403 with registry error JSON for any other.
fn preflight_response(decision: &Decision) -> Response<Body> {
    match decision {
        Decision::Refused => ApiError::new(
            ErrorCode::Denied,
            "origin not allowed by http.cors.allowedorigins",
        )
        .into_response(),
        _ => {
            let mut resp = Response::new(crate::api::body::empty());
            *resp.status_mut() = http::StatusCode::NO_CONTENT;
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_with_a_body_keeps_nothing_of_the_read_buffer() {
        let buffer = bytes::Bytes::from_static(
            b"/v2/a/b/blobs/uploads/0f0e?_state=abc&digest=sha256%3A01 application/octet-stream",
        );
        let inside = |s: &[u8]| {
            let (start, at) = (buffer.as_ptr() as usize, s.as_ptr() as usize);
            at >= start && at < start + buffer.len()
        };
        // As hyper hands them out: slices of the buffer the head was read into.
        let mut uri = http::Uri::from_maybe_shared(buffer.slice(0..56)).unwrap();
        let mut headers = http::HeaderMap::new();
        let value = HeaderValue::from_maybe_shared(buffer.slice(57..)).unwrap();
        headers.insert(http::header::CONTENT_TYPE, value);
        assert!(inside(uri.path().as_bytes()));
        assert!(inside(headers[http::header::CONTENT_TYPE].as_bytes()));

        own_uri(&mut uri);
        own_header_values(&mut headers);
        assert_eq!(uri.path(), "/v2/a/b/blobs/uploads/0f0e");
        assert_eq!(uri.query(), Some("_state=abc&digest=sha256%3A01"));
        assert!(!inside(uri.path().as_bytes()) && !inside(uri.query().unwrap().as_bytes()));
        assert_eq!(
            headers[http::header::CONTENT_TYPE],
            "application/octet-stream"
        );
        assert!(!inside(headers[http::header::CONTENT_TYPE].as_bytes()));
    }

    #[test]
    fn request_ids_are_distinct_version_4_uuids() {
        let id = new_request_id();
        let parsed = uuid::Uuid::parse_str(id.to_str().unwrap()).unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(parsed.get_version_num(), 4);
        assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
        assert_ne!(id, new_request_id());
    }
}
