//! The HTTP client under the S3 SDK: hyper 1 with rustls (ring), HTTP/1.1, pooled, with a
//! connect timeout and a time-to-first-byte timeout, and `skipverify` when configured.

use std::time::Duration;

use aws_smithy_runtime_api::client::connection::{CaptureSmithyConnection, ConnectionMetadata};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::retry::ErrorKind;
use hyper_util::client::legacy::connect::{
    capture_connection, CaptureConnection, HttpConnector as TcpConnector,
};
use hyper_util::client::legacy::Client;

type Connector = hyper_rustls::HttpsConnector<TcpConnector>;

/// Idle pooled connections are closed after this long (S3 closes them after about 20 s).
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Builds the SDK's HTTP client; `skip_verify` accepts any server certificate.
pub(crate) fn client(
    connect_timeout: Duration,
    skip_verify: bool,
) -> std::io::Result<SharedHttpClient> {
    let client = crate::tls_client::client(&crate::tls_client::ClientOptions {
        service: "object storage",
        skip_verify,
        connect_timeout: Some(connect_timeout),
        pool_idle: POOL_IDLE,
    })?;
    Ok(SharedHttpClient::new(Hyper { client }))
}

/// A hyper client as the SDK's [`HttpClient`].
#[derive(Clone)]
struct Hyper {
    client: Client<Connector, SdkBody>,
}

impl std::fmt::Debug for Hyper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hyper")
    }
}

impl HttpClient for Hyper {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        _components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(Call {
            client: self.client.clone(),
            read_timeout: settings.read_timeout(),
        })
    }
}

/// One request through the shared pool, bounded by the time to the response head.
#[derive(Clone)]
struct Call {
    client: Client<Connector, SdkBody>,
    read_timeout: Option<Duration>,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Call")
    }
}

impl HttpConnector for Call {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let mut request = match request.try_into_http1x() {
            Ok(r) => r,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        // After a transient error (a 5xx, a throttle, a broken answer) the SDK closes the
        // connection that carried it instead of reusing it; it reaches it through this.
        let captured = capture_connection(&mut request);
        if let Some(smithy) = request.extensions().get::<CaptureSmithyConnection>() {
            smithy.set_connection_retriever(move || connection_metadata(&captured));
        }
        let fut = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, fut).await {
                    Ok(r) => r,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => fut.await,
            }
            .map_err(connector_error)?;
            let response = if small_xml(&response) {
                let (mut parts, body) = response.into_parts();
                let bytes = http_body_util::BodyExt::collect(body)
                    .await
                    .map_err(|e| ConnectorError::io(e.into()))?
                    .to_bytes();
                let bytes = result_roots(bytes);
                parts
                    .headers
                    .insert(http::header::CONTENT_LENGTH, bytes.len().into());
                http::Response::from_parts(parts, SdkBody::from(bytes))
            } else {
                response.map(SdkBody::from_body_1_x)
            };
            HttpResponse::try_from(response).map_err(|e| ConnectorError::other(e.into(), None))
        })
    }
}

/// The SDK's handle on the pooled connection a request went out on: closing it takes it out
/// of the pool once its answer is read.
fn connection_metadata(captured: &CaptureConnection) -> Option<ConnectionMetadata> {
    let proxied = captured.connection_metadata().as_ref()?.is_proxied();
    let captured = captured.clone();
    Some(
        ConnectionMetadata::builder()
            .proxied(proxied)
            .poison_fn(move || {
                if let Some(connected) = captured.connection_metadata().as_ref() {
                    connected.poison();
                }
            })
            .build(),
    )
}

/// A short XML answer (at most 64 KiB): listings, multipart results, errors.
fn small_xml<B>(response: &http::Response<B>) -> bool {
    let header = |name| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    header(http::header::CONTENT_TYPE).contains("xml")
        && header(http::header::CONTENT_LENGTH)
            .parse::<u64>()
            .is_ok_and(|len| len <= 64 * 1024)
}

/// Renames the `<ListPartsResponse>` and `<CompleteMultipartUploadResponse>` roots some
/// S3-compatible servers (moto among them) answer with, to S3's `...Result`, which the SDK
/// requires.
fn result_roots(body: bytes::Bytes) -> bytes::Bytes {
    let head = &body[..body.len().min(256)];
    for root in ["ListPartsResponse", "CompleteMultipartUploadResponse"] {
        if head.windows(root.len()).any(|w| w == root.as_bytes()) {
            let text =
                String::from_utf8_lossy(&body).replace(root, &root.replace("Response", "Result"));
            return bytes::Bytes::from(text);
        }
    }
    body
}

/// Classifies a hyper failure so the SDK retries what is transient.
fn connector_error(err: hyper_util::client::legacy::Error) -> ConnectorError {
    if err.is_connect() {
        return ConnectorError::io(err.into());
    }
    let hyper = find_source::<hyper::Error>(&err);
    match hyper {
        Some(h) if h.is_timeout() => ConnectorError::timeout(err.into()),
        Some(h) if h.is_incomplete_message() => {
            ConnectorError::other(err.into(), Some(ErrorKind::TransientError))
        }
        Some(h) if h.is_user() => ConnectorError::user(err.into()),
        Some(h) if h.is_closed() || h.is_canceled() => ConnectorError::io(err.into()),
        _ if find_source::<std::io::Error>(&err).is_some() => ConnectorError::io(err.into()),
        _ => ConnectorError::other(err.into(), Some(ErrorKind::TransientError)),
    }
}

fn find_source<'a, E: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<E>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}
