//! The HTTP side of the load generator: one HTTP/1.1 connection per load stream (no pool, so a
//! stream's requests never queue behind another's), over TCP or TLS (rustls, trusting the CA
//! given with `--cacert`), the request bodies the workloads send, and the few Docker Registry
//! V2 exchanges they are built from (start an upload, push a blob, ...).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio::time::{Interval, MissedTickBehavior};
use tokio_rustls::TlsConnector;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// Largest frame a body hands to hyper at once; the data itself is never copied.
const FRAME: usize = 1 << 20;

/// Where the load goes. Only loopback addresses are accepted: this tool never sends traffic
/// anywhere else.
pub struct Target {
    addr: SocketAddr,
    host: HeaderValue,
    tls: Option<Tls>,
}

/// The TLS side of a `https://` target.
struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

/// How `https://` connections are made.
pub struct TlsOptions {
    /// PEM file of the CA that signed the server's certificate.
    pub ca: Option<String>,
    /// Offer session tickets from earlier connections (abbreviated handshakes); off, every
    /// connection makes a full handshake.
    pub resume: bool,
}

/// A rustls client trusting only `ca`, speaking HTTP/1.1 (ALPN), ring as the crypto provider
/// (what the server uses).
fn tls_connector(options: &TlsOptions) -> Result<TlsConnector> {
    let path = options
        .ca
        .as_deref()
        .ok_or("an https:// --url needs --cacert (the CA that signed the server's certificate)")?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| format!("--cacert {path}: {e}"))? {
        roots.add(cert.map_err(|e| format!("--cacert {path}: {e}"))?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    if !options.resume {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsConnector::from(Arc::new(config)))
}

impl Target {
    /// Parses `http[s]://HOST[:PORT][/]` where HOST is 127.x.y.z, `localhost` or `[::1]`.
    pub fn parse(url: &str, tls: &TlsOptions) -> Result<Target> {
        let (rest, secure) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (rest, false),
            (_, Some(rest)) => (rest, true),
            _ => return Err("--url must start with http:// or https://".into()),
        };
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(
                format!("--url {url}: give the registry base, e.g. http://127.0.0.1:5000").into(),
            );
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p.parse::<u16>()?),
            _ => (authority, if secure { 443 } else { 80 }),
        };
        let ip: IpAddr = match host.trim_start_matches('[').trim_end_matches(']') {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            other => other
                .parse()
                .map_err(|_| format!("--url {url}: host must be a loopback IP or localhost"))?,
        };
        if !ip.is_loopback() {
            return Err(format!(
                "--url {url}: only loopback targets (127.0.0.0/8, ::1) are allowed"
            )
            .into());
        }
        let tls = match secure {
            false => None,
            true => Some(Tls {
                connector: tls_connector(tls)?,
                name: ServerName::IpAddress(ip.into()),
            }),
        };
        Ok(Target {
            addr: SocketAddr::new(ip, port),
            host: HeaderValue::from_str(authority)?,
            tls,
        })
    }
}

/// One keep-alive connection, re-opened after any error.
pub struct Conn {
    target: Arc<Target>,
    sender: Option<SendRequest<OutBody>>,
}

impl Conn {
    pub fn new(target: Arc<Target>) -> Conn {
        Conn {
            target,
            sender: None,
        }
    }

    /// Forgets the connection: after an error or a timeout its HTTP/1 state is unknown.
    pub fn reset(&mut self) {
        self.sender = None;
    }

    pub async fn connect(&mut self) -> Result<()> {
        let usable = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !usable {
            let tcp = TcpStream::connect(self.target.addr).await?;
            tcp.set_nodelay(true)?;
            let sender = match &self.target.tls {
                None => handshake(tcp).await?,
                Some(tls) => {
                    let stream = tls.connector.connect(tls.name.clone(), tcp).await?;
                    handshake(stream).await?
                }
            };
            self.sender = Some(sender);
        }
        Ok(())
    }

    /// Sends one request on this connection. Bodies with a length get `Content-Length`.
    /// The caller must consume the response body before the next request.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: OutBody,
    ) -> Result<Response<Incoming>> {
        self.connect().await?;
        let mut request = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, self.target.host.clone());
        if body.len() > 0 || [Method::POST, Method::PUT, Method::PATCH].contains(&method) {
            request = request.header(header::CONTENT_LENGTH, body.len());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sender = self.sender.as_mut().ok_or("not connected")?;
        Ok(sender.send_request(request.body(body)?).await?)
    }
}

/// Starts HTTP/1.1 on `io`; the connection runs in a task of its own until the sender is
/// dropped.
async fn handshake<T>(io: T) -> Result<SendRequest<OutBody>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        // Errors surface on the request that was in flight; nothing to add here.
        let _ = connection.await;
    });
    Ok(sender)
}

/// A request body: either slices of shared buffers (sent without copying, `Content-Length`
/// known) or a trickle that sends one small piece per interval.
pub enum OutBody {
    Slices {
        chunks: VecDeque<Bytes>,
        remaining: u64,
    },
    Trickle {
        piece: Bytes,
        pieces_left: u64,
        interval: Interval,
    },
}

impl OutBody {
    pub fn empty() -> OutBody {
        OutBody::from_slices(Vec::new())
    }

    pub fn from_slices(chunks: Vec<Bytes>) -> OutBody {
        let remaining = chunks.iter().map(|c| c.len() as u64).sum();
        OutBody::Slices {
            chunks: chunks.into_iter().filter(|c| !c.is_empty()).collect(),
            remaining,
        }
    }

    /// `pieces` copies of `piece`, one every `every`, the first at once.
    pub fn trickle(piece: Bytes, pieces: u64, every: Duration) -> OutBody {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        OutBody::Trickle {
            piece,
            pieces_left: pieces,
            interval,
        }
    }

    /// Bytes still to be sent.
    pub fn len(&self) -> u64 {
        match self {
            OutBody::Slices { remaining, .. } => *remaining,
            OutBody::Trickle {
                piece, pieces_left, ..
            } => piece.len() as u64 * pieces_left,
        }
    }
}

impl http_body::Body for OutBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        match self.get_mut() {
            OutBody::Slices { chunks, remaining } => {
                let Some(front) = chunks.front_mut() else {
                    return Poll::Ready(None);
                };
                let frame = if front.len() > FRAME {
                    front.split_to(FRAME)
                } else {
                    chunks.pop_front().unwrap_or_default()
                };
                *remaining -= frame.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(frame))))
            }
            OutBody::Trickle {
                piece,
                pieces_left,
                interval,
            } => {
                if *pieces_left == 0 {
                    return Poll::Ready(None);
                }
                if interval.poll_tick(cx).is_pending() {
                    return Poll::Pending;
                }
                *pieces_left -= 1;
                Poll::Ready(Some(Ok(Frame::data(piece.clone()))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.len() == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len())
    }
}

/// Reads and counts the whole response body, keeping none of it.
pub async fn drain(response: Response<Incoming>) -> Result<u64> {
    let mut body = response.into_body();
    let mut total = 0u64;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            total += data.len() as u64;
        }
    }
    Ok(total)
}

/// Reads a small response body (JSON listings, manifests, error documents).
pub async fn read_small(response: Response<Incoming>, limit: usize) -> Result<Bytes> {
    let mut body = response.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            if out.len() + data.len() > limit {
                return Err(format!("response body larger than {limit} bytes").into());
            }
            out.extend_from_slice(data);
        }
    }
    Ok(out.into())
}

/// Passes the response on if its status is `want`; otherwise fails with the status and the
/// start of the body, which for a registry is its `{"errors":[...]}` document.
pub async fn expect(
    response: Response<Incoming>,
    want: StatusCode,
    what: &str,
) -> Result<Response<Incoming>> {
    if response.status() == want {
        return Ok(response);
    }
    let status = response.status();
    let body = read_small(response, 1 << 20).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&body[..body.len().min(300)])
        .trim()
        .to_string();
    Err(format!("{what}: expected {want}, got {status}: {text}").into())
}

/// Path and query of the `Location` header. An absolute URL's scheme and host are dropped:
/// the next request goes to our own target on our own connection whatever host it names.
pub fn location(response: &Response<Incoming>) -> Result<String> {
    let value = response
        .headers()
        .get(header::LOCATION)
        .ok_or("response has no Location header")?
        .to_str()?;
    Ok(location_path(value)?.to_string())
}

/// `http://h:p/v2/x?y` -> `/v2/x?y`; `/v2/x` stays as it is.
pub fn location_path(value: &str) -> Result<&str> {
    let path = match value.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => value,
    };
    if path.starts_with('/') {
        Ok(path)
    } else {
        Err(format!("unexpected Location {value:?}").into())
    }
}

/// Adds `name=value` to a path that may already carry a query (upload URLs carry `_state`).
pub fn with_query(path: &str, name: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{name}={value}")
}

// --- Docker Registry V2 exchanges -----------------------------------------------------------

const OCTETS: (&str, &str) = ("content-type", "application/octet-stream");

/// `POST /v2/<repo>/blobs/uploads/` -> the upload's URL.
pub async fn start_upload(conn: &mut Conn, repo: &str) -> Result<String> {
    let path = format!("/v2/{repo}/blobs/uploads/");
    let response = conn
        .send(Method::POST, &path, &[], OutBody::empty())
        .await?;
    let response = expect(response, StatusCode::ACCEPTED, "POST upload").await?;
    let url = location(&response)?;
    drain(response).await?;
    Ok(url)
}

/// Monolithic push: POST, then PUT `?digest=` carrying the whole blob.
pub async fn push_blob(conn: &mut Conn, repo: &str, digest: &str, body: OutBody) -> Result<()> {
    let upload = start_upload(conn, repo).await?;
    finish_upload(conn, &upload, digest, body).await
}

/// PUT `<upload>?digest=` with whatever is left of the blob (possibly nothing).
pub async fn finish_upload(
    conn: &mut Conn,
    upload: &str,
    digest: &str,
    body: OutBody,
) -> Result<()> {
    let put = with_query(upload, "digest", digest);
    let response = conn.send(Method::PUT, &put, &[OCTETS], body).await?;
    let response = expect(response, StatusCode::CREATED, "PUT blob").await?;
    drain(response).await?;
    Ok(())
}

/// PATCH one chunk at `start` with `Content-Range: start-end` -> the upload's next URL.
pub async fn patch_chunk(
    conn: &mut Conn,
    upload: &str,
    start: u64,
    body: OutBody,
) -> Result<String> {
    let len = body.len();
    let range = format!("{}-{}", start, (start + len).saturating_sub(1));
    let headers = [OCTETS, ("content-range", range.as_str())];
    let response = conn.send(Method::PATCH, upload, &headers, body).await?;
    let response = expect(response, StatusCode::ACCEPTED, "PATCH chunk").await?;
    let next = location(&response)?;
    drain(response).await?;
    Ok(next)
}

/// Links a blob that `from` already has into `repo` (cross-repository mount). A registry may
/// answer 202 and open a session instead; the blob is then pushed in full.
pub async fn mount_blob(
    conn: &mut Conn,
    repo: &str,
    from: &str,
    digest: &str,
    data: &Bytes,
) -> Result<()> {
    let path = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
    let response = conn
        .send(Method::POST, &path, &[], OutBody::empty())
        .await?;
    match response.status() {
        StatusCode::CREATED => {
            drain(response).await?;
            Ok(())
        }
        StatusCode::ACCEPTED => {
            let upload = location(&response)?;
            drain(response).await?;
            finish_upload(
                conn,
                &upload,
                digest,
                OutBody::from_slices(vec![data.clone()]),
            )
            .await
        }
        _ => expect(response, StatusCode::CREATED, "POST mount")
            .await
            .map(|_| ()),
    }
}

pub async fn put_manifest(
    conn: &mut Conn,
    repo: &str,
    reference: &str,
    media_type: &str,
    body: &Bytes,
) -> Result<()> {
    let path = format!("/v2/{repo}/manifests/{reference}");
    let headers = [("content-type", media_type)];
    let response = conn
        .send(
            Method::PUT,
            &path,
            &headers,
            OutBody::from_slices(vec![body.clone()]),
        )
        .await?;
    let response = expect(response, StatusCode::CREATED, "PUT manifest").await?;
    drain(response).await?;
    Ok(())
}

/// GET that must answer `want`; returns the number of body bytes.
pub async fn get(
    conn: &mut Conn,
    path: &str,
    headers: &[(&str, &str)],
    want: StatusCode,
) -> Result<u64> {
    let response = conn
        .send(Method::GET, path, headers, OutBody::empty())
        .await?;
    let response = expect(response, want, "GET").await?;
    drain(response).await
}

/// HEAD that must answer 200; returns its `Content-Length`. Timed at the response headers:
/// there is no body to wait for.
pub async fn head(conn: &mut Conn, path: &str) -> Result<u64> {
    let response = conn.send(Method::HEAD, path, &[], OutBody::empty()).await?;
    let response = expect(response, StatusCode::OK, "HEAD").await?;
    let length = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    drain(response).await?;
    Ok(length)
}
