//! Keys, certificates, JWTs and a small token server for the auth and TLS tests.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, PublicKeyData};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::process::run_bounded;

/// A private key and a certificate for it.
pub struct Identity {
    pub key: KeyPair,
    pub key_pem: String,
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
}

impl Identity {
    /// The DER SubjectPublicKeyInfo.
    pub fn spki(&self) -> Vec<u8> {
        self.key.subject_public_key_info()
    }

    /// Write `<name>.key` and `<name>.crt` into `dir`; returns (key, cert) paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let key = dir.join(format!("{name}.key"));
        let cert = dir.join(format!("{name}.crt"));
        std::fs::write(&key, &self.key_pem).unwrap();
        std::fs::write(&cert, &self.cert_pem).unwrap();
        (key, cert)
    }
}

/// A fresh RSA 2048 key (PKCS#8 PEM), made by openssl.
pub fn rsa_key() -> KeyPair {
    let mut cmd = Command::new("openssl");
    cmd.args([
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]);
    let out = run_bounded(cmd, Duration::from_secs(60));
    out.assert_success("openssl genpkey");
    KeyPair::from_pem(&out.stdout).expect("RSA key")
}

/// A fresh EC P-256 key.
pub fn ec_key() -> KeyPair {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap()
}

fn params(names: &[&str], ca: bool) -> CertificateParams {
    let mut p =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("x"),
    );
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    }
    p
}

/// A self-signed certificate for `key`.
pub fn self_signed(key: KeyPair, names: &[&str]) -> Identity {
    let cert = params(names, false).self_signed(&key).unwrap();
    Identity {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key,
    }
}

/// A certificate authority.
pub struct Ca {
    pub identity: Identity,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let key = ec_key();
        let p = params(&[name], true);
        let cert = p.self_signed(&key).unwrap();
        let identity = Identity {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key: KeyPair::from_pem(&key.serialize_pem()).unwrap(),
        };
        Self {
            identity,
            issuer: Issuer::new(p, key),
        }
    }

    /// A leaf certificate for `key`, signed by this CA.
    pub fn sign(&self, key: KeyPair, names: &[&str]) -> Identity {
        let cert = params(names, false).signed_by(&key, &self.issuer).unwrap();
        Identity {
            key_pem: key.serialize_pem(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        }
    }
}

pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// libtrust key ID, computed independently of the server: SHA-256 of the DER public key,
/// 240 bits, base32, `:`-separated groups of four.
pub fn libtrust_kid(spki: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = sha2::Sha256::digest(spki);
    let bits: Vec<bool> = hash[..30]
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1 == 1))
        .collect();
    let text: String = bits
        .chunks(5)
        .map(|c| ALPHABET[c.iter().fold(0usize, |a, b| a * 2 + *b as usize)] as char)
        .collect();
    text.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Registry token claims granting `access` (`[("repository", "a", &["pull"])]`).
pub fn claims(iss: &str, aud: &str, access: &[(&str, &str, &[&str])]) -> Value {
    let t = now();
    json!({
        "iss": iss,
        "sub": "tester",
        "aud": aud,
        "exp": t + 300,
        "nbf": t - 10,
        "iat": t,
        "jti": format!("{t}"),
        "access": access
            .iter()
            .map(|(kind, name, actions)| json!({"type": kind, "name": name, "actions": actions}))
            .collect::<Vec<_>>(),
    })
}

/// A signed JWT.
pub fn sign(header: &Header, claims: &Value, key: &KeyPair) -> String {
    let pem = key.serialize_pem();
    let encoding = match header.alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            EncodingKey::from_rsa_pem(pem.as_bytes())
        }
        Algorithm::ES256 | Algorithm::ES384 => EncodingKey::from_ec_pem(pem.as_bytes()),
        Algorithm::EdDSA => EncodingKey::from_ed_pem(pem.as_bytes()),
        _ => panic!("not an asymmetric algorithm"),
    }
    .unwrap();
    jsonwebtoken::encode(header, claims, &encoding).unwrap()
}

/// A header naming the key by `kid`.
pub fn kid_header(alg: Algorithm, kid: &str) -> Header {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    h
}

/// A JWT with arbitrary header and payload and the given signature bytes.
pub fn raw_jwt(header: &Value, claims: &Value, signature: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(signature)
    )
}

/// The payload of a JWT, decoded without verification.
pub fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url payload");
    serde_json::from_slice(&bytes).expect("JSON payload")
}

/// Decodes Basic credentials from a request's `Authorization` line value.
fn basic(value: &str) -> Option<(String, String)> {
    let encoded = value.trim().strip_prefix("Basic ")?;
    let text = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()?,
    )
    .ok()?;
    let (u, p) = text.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

/// What the token server hands to its issuing function.
pub struct TokenRequest {
    pub user: Option<(String, String)>,
    /// Requested scopes as `(type, name, actions)`.
    pub scopes: Vec<(String, String, Vec<String>)>,
}

type Issue = dyn Fn(&TokenRequest) -> Option<String> + Send + Sync;

/// A one-thread HTTP token server on 127.0.0.1: `GET /token?...` answers
/// `{"token": ...}` or 401 when the function returns `None`. Stops when dropped.
pub struct TokenServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TokenServer {
    pub fn start(issue: impl Fn(&TokenRequest) -> Option<String> + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let issue: Arc<Issue> = Arc::new(issue);
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            // Bounded: at most 10 minutes of polling.
            for _ in 0..60_000 {
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        serve_one(stream, &*issue);
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve_one(stream: std::net::TcpStream, issue: &Issue) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let target = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut user = None;
    for _ in 0..200 {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("authorization") {
                user = basic(v);
            }
        }
    }
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or("");
    let mut scopes = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == "scope" {
            for s in v.split(' ') {
                let (kind, rest) = s.split_once(':').unwrap_or(("", ""));
                let (name, actions) = rest.rsplit_once(':').unwrap_or(("", ""));
                scopes.push((
                    kind.to_string(),
                    name.to_string(),
                    actions.split(',').map(str::to_string).collect(),
                ));
            }
        }
    }
    let (status, body) = match issue(&TokenRequest { user, scopes }) {
        Some(token) => ("200 OK", json!({"token": token, "access_token": token})),
        None => ("401 Unauthorized", json!({"details": "bad credentials"})),
    };
    let body = body.to_string();
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// `Authorization: Bearer <token>` on a request.
pub fn bearer(
    request: reqwest::blocking::RequestBuilder,
    token: &str,
) -> reqwest::blocking::RequestBuilder {
    request.header("authorization", format!("Bearer {token}"))
}
