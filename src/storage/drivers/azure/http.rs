//! The HTTP client under the Azure calls: hyper 1 with rustls (ring), HTTP/1.1, pooled, with a
//! connect timeout, and `skipverify` when configured.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// The pooled client every call goes through.
pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Idle pooled connections are closed after this long (the service drops them after a while).
const POOL_IDLE: Duration = Duration::from_secs(15);

/// Builds the client; `skip_verify` accepts any server certificate.
pub(super) fn client(connect_timeout: Duration, skip_verify: bool) -> std::io::Result<HttpClient> {
    let tls = crate::tls_client::client_config(skip_verify, "Azure Blob storage")?;
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(connect_timeout));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(POOL_IDLE)
        .build(https))
}
