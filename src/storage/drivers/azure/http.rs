//! The HTTP client under the Azure calls: hyper 1 with rustls (ring), HTTP/1.1, pooled, with a
//! connect timeout, and `skipverify` when configured.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// The pooled client every call goes through.
pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Idle pooled connections are closed after this long (the service drops them after a while).
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Builds the client; `skip_verify` accepts any server certificate.
pub(super) fn client(connect_timeout: Duration, skip_verify: bool) -> std::io::Result<HttpClient> {
    crate::tls_client::client(&crate::tls_client::ClientOptions {
        service: "Azure Blob storage",
        skip_verify,
        connect_timeout: Some(connect_timeout),
        pool_idle: POOL_IDLE,
    })
}
