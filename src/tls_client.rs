//! TLS for the HTTP clients Wharf uses to reach other services (object storage, upstream
//! registries, notification endpoints): the system's roots, or with `skipverify` any
//! certificate (signatures still checked).

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The client TLS configuration; `skip_verify` accepts any server certificate. Without system
/// roots, HTTPS to `service` fails (logged once here) while plain HTTP endpoints still work.
pub(crate) fn client_config(
    skip_verify: bool,
    service: &str,
) -> std::io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?;
    if skip_verify {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
            .with_no_client_auth());
    }
    use hyper_rustls::ConfigBuilderExt;
    Ok(match builder.clone().with_native_roots() {
        Ok(b) => b.with_no_client_auth(),
        Err(e) => {
            tracing::warn!(
                error = %e,
                "no system CA certificates: HTTPS to {service} will fail \
                 (install ca-certificates, or set SSL_CERT_FILE)"
            );
            builder
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        }
    })
}

/// How a client built by [`client`] connects.
pub(crate) struct ClientOptions<'a> {
    /// Named in the log when HTTPS cannot work.
    pub service: &'a str,
    /// Accept any server certificate (`skipverify`).
    pub skip_verify: bool,
    /// Bound on establishing a TCP connection.
    pub connect_timeout: Option<Duration>,
    /// Idle pooled connections are closed after this long.
    pub pool_idle: Duration,
}

/// A pooled HTTP/1 client for `http://` and `https://` URLs of `service`, trusting the
/// system's roots (or `SSL_CERT_FILE`).
pub(crate) fn https_client<B>(
    service: &str,
    connect_timeout: Option<Duration>,
) -> Client<hyper_rustls::HttpsConnector<HttpConnector>, B>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    client(&ClientOptions {
        service,
        skip_verify: false,
        connect_timeout,
        pool_idle: Duration::from_secs(30),
    })
    .expect("ring supports the default protocol versions")
}

/// A pooled HTTP/1 client as `options` say.
pub(crate) fn client<B>(
    options: &ClientOptions<'_>,
) -> std::io::Result<Client<hyper_rustls::HttpsConnector<HttpConnector>, B>>
where
    B: hyper::body::Body + Send,
    B::Data: Send,
{
    let tls = client_config(options.skip_verify, options.service)?;
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(options.connect_timeout);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(options.pool_idle)
        .build(https))
}

/// `skipverify: true`: any certificate is accepted, signatures are still checked.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
