//! TLS on the main listener (`http.tls`) with rustls: ALPN h2 and http/1.1, client
//! certificates when `clientcas` is set, and the certificate re-read from disk when its files
//! change (checked at most once a second, on handshakes).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme, SupportedCipherSuite};

use crate::config::TlsConfig;

/// How often certificate files are checked for changes.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// Encrypted bytes a connection may hold before its writes wait for the socket. rustls'
/// default (64 KiB) split each 512 KiB chunk of a blob download into eight encrypt-and-`writev`
/// rounds, each waking the client; at 1 MiB a chunk goes out in one, for about 40 % fewer
/// system calls per byte served.
pub const SEND_BUFFER: usize = 1 << 20;

/// Why TLS could not be set up; every message names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    /// A file could not be read.
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        /// Configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// OS error.
        source: std::io::Error,
    },
    /// A file holds nothing usable.
    #[error("{key}: {}: {reason}", path.display())]
    Content {
        /// Configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Key and certificate are not a pair.
    #[error("http.tls.key: {} does not match http.tls.certificate {}", key.display(), certificate.display())]
    Mismatch {
        /// Key file.
        key: PathBuf,
        /// Certificate file.
        certificate: PathBuf,
    },
    /// A setting with an unusable value.
    #[error("{key}: {reason}")]
    Invalid {
        /// Configuration key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|source| TlsSetupError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read(key, path)?)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::Content {
            key,
            path: path.to_path_buf(),
            reason: format!("not a PEM certificate file: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::Content {
            key,
            path: path.to_path_buf(),
            reason: "no PEM certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// Loads and pairs a certificate chain and its key.
fn load_pair(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<CertifiedKey, TlsSetupError> {
    let chain = certificates("http.tls.certificate", cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read("http.tls.key", key_path)?).map_err(|e| {
        TlsSetupError::Content {
            key: "http.tls.key",
            path: key_path.to_path_buf(),
            reason: format!("no PEM private key: {e}"),
        }
    })?;
    CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => TlsSetupError::Mismatch {
            key: key_path.to_path_buf(),
            certificate: cert_path.to_path_buf(),
        },
        other => TlsSetupError::Content {
            key: "http.tls.key",
            path: key_path.to_path_buf(),
            reason: format!("unusable private key: {other}"),
        },
    })
}

fn mtime(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves the certificate from disk, re-reading it when either file changes.
#[derive(Debug)]
struct ReloadingCertificate {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    seen: Mutex<(Instant, Option<SystemTime>, Option<SystemTime>)>,
}

impl ReloadingCertificate {
    fn check(&self) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.0.elapsed() < RELOAD_CHECK {
            return;
        }
        seen.0 = Instant::now();
        let stamps = (mtime(&self.cert_path), mtime(&self.key_path));
        if (seen.1, seen.2) == stamps {
            return;
        }
        match load_pair(&self.cert_path, &self.key_path, &self.provider) {
            Ok(pair) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(pair);
                (seen.1, seen.2) = stamps;
                tracing::info!(certificate = %self.cert_path.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                // Keep serving the old pair; files may be mid-replacement. Retried next second.
                tracing::warn!(error = %e, "TLS certificate not reloaded");
            }
        }
    }
}

impl ResolvesServerCert for ReloadingCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.check();
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

/// `request-client-cert` and `require-any-client-cert`: a certificate is asked for (or
/// required) and its signature checked, but not its chain, as Go does.
#[derive(Debug)]
struct AnyClientCertificate {
    mandatory: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for AnyClientCertificate {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Cipher suites by their Go (IANA) names; Go's CBC, RC4 and 3DES suites have no rustls
/// equivalent and are refused.
fn cipher_suite(name: &str) -> Option<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    Some(match name {
        "TLS_AES_128_GCM_SHA256" => cs::TLS13_AES_128_GCM_SHA256,
        "TLS_AES_256_GCM_SHA384" => cs::TLS13_AES_256_GCM_SHA384,
        "TLS_CHACHA20_POLY1305_SHA256" => cs::TLS13_CHACHA20_POLY1305_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256" => cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384" => cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305"
        | "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        }
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305" | "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256" => {
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        }
        _ => return None,
    })
}

/// Cipher suites in Go's order of preference (crypto/tls on hardware with AES): nodes of a mixed
/// fleet share a name, and a client resuming a registry:2 (Go) session here must be offered a
/// suite of the same hash, even after a HelloRetryRequest, or it withdraws its ticket and the
/// handshake fails (`MissingPskExtensionInSecondClientHello`).
fn go_ordered_suites() -> Vec<SupportedCipherSuite> {
    use rustls::crypto::ring::cipher_suite as cs;
    vec![
        cs::TLS13_AES_128_GCM_SHA256,
        cs::TLS13_CHACHA20_POLY1305_SHA256,
        cs::TLS13_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
    ]
}

/// The crypto provider restricted to `http.tls.ciphersuites`. As in Go, TLS 1.3 suites stay
/// enabled unless the list names some of them; suites and key-exchange groups (X25519, P-256,
/// P-384) come in Go's order.
fn provider(config: &TlsConfig) -> Result<CryptoProvider, TlsSetupError> {
    use rustls::crypto::ring::kx_group;
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites = go_ordered_suites();
    provider.kx_groups = vec![kx_group::X25519, kx_group::SECP256R1, kx_group::SECP384R1];
    if config.ciphersuites.is_empty() {
        return Ok(provider);
    }
    let mut chosen = Vec::new();
    for name in &config.ciphersuites {
        let suite = cipher_suite(name).ok_or_else(|| TlsSetupError::Invalid {
            key: "http.tls.ciphersuites",
            reason: format!(
                "{name} is not supported (only AEAD suites: ECDHE with AES-GCM or ChaCha20-Poly1305, and the TLS 1.3 suites)"
            ),
        })?;
        chosen.push(suite);
    }
    let names_tls13 = chosen.iter().any(|s| s.tls13().is_some());
    provider
        .cipher_suites
        .retain(|s| chosen.contains(s) || (!names_tls13 && s.tls13().is_some()));
    Ok(provider)
}

/// Builds the TLS acceptor from `http.tls` (`http2` adds `h2` to ALPN).
pub fn acceptor(
    config: &TlsConfig,
    http2: bool,
) -> Result<tokio_rustls::TlsAcceptor, TlsSetupError> {
    if config.letsencrypt.is_some() && config.certificate.is_none() {
        return Err(TlsSetupError::Invalid {
            key: "http.tls.letsencrypt",
            reason:
                "ACME certificates are not supported; give http.tls.certificate and http.tls.key"
                    .into(),
        });
    }
    let cert_path = config.certificate.clone().ok_or(TlsSetupError::Invalid {
        key: "http.tls.certificate",
        reason: "required when http.tls is set".into(),
    })?;
    let key_path = config.key.clone().ok_or(TlsSetupError::Invalid {
        key: "http.tls.key",
        reason: "required when http.tls.certificate is set".into(),
    })?;
    let provider = Arc::new(provider(config)?);
    let pair = load_pair(&cert_path, &key_path, &provider)?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match config.minimumtls.as_str() {
        "tls1.3" => &[&rustls::version::TLS13],
        "tls1.2" | "" => &[&rustls::version::TLS13, &rustls::version::TLS12],
        other => {
            tracing::warn!(
                "http.tls.minimumtls: {other} is below what rustls offers; TLS 1.2 is the minimum"
            );
            &[&rustls::version::TLS13, &rustls::version::TLS12]
        }
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| TlsSetupError::Invalid {
            key: "http.tls.ciphersuites",
            reason: format!("no cipher suite left for the allowed TLS versions: {e}"),
        })?;
    let builder = if config.clientcas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in &config.clientcas {
            for cert in certificates("http.tls.clientcas", path)? {
                roots.add(cert).map_err(|e| TlsSetupError::Content {
                    key: "http.tls.clientcas",
                    path: path.clone(),
                    reason: format!("unusable CA certificate: {e}"),
                })?;
            }
        }
        let verifier: Arc<dyn ClientCertVerifier> = match config.clientauth.as_str() {
            "request-client-cert" | "require-any-client-cert" => Arc::new(AnyClientCertificate {
                mandatory: config.clientauth == "require-any-client-cert",
                provider: provider.clone(),
            }),
            mode => {
                let b =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
                let b = if mode == "verify-client-cert-if-given" {
                    b.allow_unauthenticated()
                } else {
                    b
                };
                b.build().map_err(|e| TlsSetupError::Invalid {
                    key: "http.tls.clientcas",
                    reason: e.to_string(),
                })?
            }
        };
        builder.with_client_cert_verifier(verifier)
    };
    let resolver = ReloadingCertificate {
        seen: Mutex::new((Instant::now(), mtime(&cert_path), mtime(&key_path))),
        cert_path,
        key_path,
        provider,
        current: RwLock::new(Arc::new(pair)),
    };
    let mut server = builder.with_cert_resolver(Arc::new(resolver));
    // Go picks suites by its own order too; see `go_ordered_suites`.
    server.ignore_client_order = true;
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(server)))
}
