//! A stand-in for Microsoft Entra ID on loopback: the token endpoints Wharf's Azure driver asks
//! (the OAuth 2 client-credentials grant with a client secret, a certificate's client assertion
//! or a federated token, App Service's managed identity endpoint, and the instance metadata
//! service's). It checks the credentials it is given (a client assertion: its signature with
//! a registered certificate's key, the thumbprint, audience, issuer, subject and lifetime) and
//! issues JWTs with the issuer, audience and lifetime claims that
//! Azurite (`--oauth basic`) validates; Azurite is the real service checking them. Nothing else
//! of Entra ID is imitated. The server stops when dropped.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The directory (tenant) the stand-in serves.
pub const TENANT: &str = "72f988bf-0000-4000-8000-00000000d1ec";
/// The one application it knows.
pub const CLIENT_ID: &str = "4b5a7e3c-0000-4000-8000-0000000c11e7";
/// That application's secret.
pub const CLIENT_SECRET: &str = "stand-in~secret.value";
/// The federated token a workload identity presents (the content of its token file).
pub const FEDERATED_TOKEN: &str =
    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6d2hhcmYifQ.";
/// The `X-IDENTITY-HEADER` value of the App Service style endpoint.
pub const IDENTITY_HEADER: &str = "stand-in-identity-header";
/// The scope every client-credentials request must ask for.
const SCOPE: &str = "https://storage.azure.com/.default";
/// Requests larger than this are refused.
const MAX_REQUEST: usize = 64 * 1024;
/// The client assertion type of certificates and federated tokens.
const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// What the stand-in knows and saw, shared with its connection threads.
#[derive(Default)]
struct State {
    /// The application's registered certificates (DER).
    certificates: Mutex<Vec<Vec<u8>>>,
    /// The header of the last client assertion accepted.
    last_assertion_header: Mutex<Option<serde_json::Value>>,
    /// Why the last request was refused.
    last_refusal: Mutex<Option<String>>,
}

/// A running stand-in; dropping it stops it.
pub struct EntraStandIn {
    port: u16,
    stop: Arc<AtomicBool>,
    issued: Arc<AtomicUsize>,
    refused: Arc<AtomicUsize>,
    state: Arc<State>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EntraStandIn {
    /// Starts on a free loopback port; tokens are valid for `lifetime`.
    pub fn start(lifetime: Duration) -> EntraStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token stand-in");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let issued = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(State::default());
        let thread = {
            let (stop, issued, refused) = (stop.clone(), issued.clone(), refused.clone());
            let state = state.clone();
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let (issued, refused, state) = (issued.clone(), refused.clone(), state.clone());
                    let audience = format!("http://127.0.0.1:{port}/{TENANT}/oauth2/v2.0/token");
                    thread::spawn(move || {
                        serve(stream, lifetime, &audience, &state, &issued, &refused)
                    });
                }
            })
        };
        EntraStandIn {
            port,
            stop,
            issued,
            refused,
            state,
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:<port>`: the `AZURE_AUTHORITY_HOST` (and
    /// `AZURE_POD_IDENTITY_AUTHORITY_HOST`) to point Wharf at.
    pub fn authority(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The App Service style `IDENTITY_ENDPOINT`.
    pub fn identity_endpoint(&self) -> String {
        format!("{}/msi/token", self.authority())
    }

    /// Tokens issued so far.
    pub fn issued(&self) -> usize {
        self.issued.load(Ordering::SeqCst)
    }

    /// Requests refused so far.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }

    /// Registers a certificate (DER) of the application: client assertions signed with its key
    /// are accepted from now on.
    pub fn register_certificate(&self, der: &[u8]) {
        self.state.certificates.lock().unwrap().push(der.to_vec());
    }

    /// The header of the last client assertion accepted.
    pub fn last_assertion_header(&self) -> Option<serde_json::Value> {
        self.state.last_assertion_header.lock().unwrap().clone()
    }

    /// Why the last refused request was refused.
    pub fn last_refusal(&self) -> Option<String> {
        self.state.last_refusal.lock().unwrap().clone()
    }
}

impl Drop for EntraStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A request: method, path, query, lower-case headers, body.
struct Request {
    method: String,
    path: String,
    query: HashMap<String, String>,
    headers: HashMap<String, String>,
    form: HashMap<String, String>,
}

fn read_request(stream: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(stream.take(MAX_REQUEST as u64));
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = HashMap::new();
    for _ in 0..100 {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    let length: usize = headers
        .get("content-length")
        .and_then(|l| l.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; length.min(MAX_REQUEST)];
    reader.read_exact(&mut body).ok()?;
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let parse = |text: &[u8]| -> HashMap<String, String> {
        form_urlencoded::parse(text).into_owned().collect()
    };
    Some(Request {
        method,
        path: path.to_string(),
        query: parse(query.as_bytes()),
        headers,
        form: parse(&body),
    })
}

fn serve(
    stream: TcpStream,
    lifetime: Duration,
    audience: &str,
    state: &State,
    issued: &AtomicUsize,
    refused: &AtomicUsize,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&stream) else {
        return;
    };
    let (status, body) = answer(&req, lifetime, audience, state);
    if status == 200 {
        issued.fetch_add(1, Ordering::SeqCst);
    } else {
        *state.last_refusal.lock().unwrap() = Some(body.clone());
        refused.fetch_add(1, Ordering::SeqCst);
    }
    let reason = if status == 200 { "OK" } else { "Refused" };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn error(status: u16, code: &str, description: &str) -> (u16, String) {
    (
        status,
        serde_json::json!({"error": code, "error_description": description}).to_string(),
    )
}

fn answer(req: &Request, lifetime: Duration, audience: &str, state: &State) -> (u16, String) {
    let token_path = format!("/{TENANT}/oauth2/v2.0/token");
    let field = |name: &str| req.form.get(name).map(String::as_str).unwrap_or("");
    let query = |name: &str| req.query.get(name).map(String::as_str).unwrap_or("");
    let header = |name: &str| req.headers.get(name).map(String::as_str).unwrap_or("");
    match (req.method.as_str(), req.path.as_str()) {
        ("POST", path) if path == token_path => {
            if field("grant_type") != "client_credentials" || field("scope") != SCOPE {
                return error(400, "invalid_request", "AADSTS900144: bad grant or scope");
            }
            if field("client_id") != CLIENT_ID {
                return error(
                    400,
                    "unauthorized_client",
                    "AADSTS700016: unknown application",
                );
            }
            let assertion = field("client_assertion");
            if field("client_assertion_type") == JWT_BEARER && assertion != FEDERATED_TOKEN {
                let certificates = state.certificates.lock().unwrap().clone();
                match verify_assertion(assertion, audience, &certificates) {
                    Ok(header) => *state.last_assertion_header.lock().unwrap() = Some(header),
                    Err(why) => return error(401, "invalid_client", &why),
                }
            } else if !(field("client_secret") == CLIENT_SECRET
                || (field("client_assertion_type") == JWT_BEARER && assertion == FEDERATED_TOKEN))
            {
                return error(
                    401,
                    "invalid_client",
                    "AADSTS7000215: Invalid client secret provided.",
                );
            }
            let token = jwt(lifetime);
            (
                200,
                serde_json::json!({
                    "token_type": "Bearer",
                    "expires_in": lifetime.as_secs(),
                    "ext_expires_in": lifetime.as_secs(),
                    "access_token": token,
                })
                .to_string(),
            )
        }
        ("POST", path) if path.ends_with("/oauth2/v2.0/token") => {
            error(400, "invalid_tenant", "AADSTS90002: Tenant not found.")
        }
        ("GET", "/msi/token") => {
            if header("x-identity-header") != IDENTITY_HEADER
                || query("api-version") != "2019-08-01"
                || query("resource") != "https://storage.azure.com"
            {
                return error(400, "invalid_request", "bad managed identity request");
            }
            let expires_on = now_secs() + lifetime.as_secs();
            (
                200,
                serde_json::json!({
                    "access_token": jwt(lifetime),
                    "expires_on": expires_on.to_string(),
                    "resource": "https://storage.azure.com",
                    "token_type": "Bearer",
                    "client_id": CLIENT_ID,
                })
                .to_string(),
            )
        }
        ("GET", "/metadata/identity/oauth2/token") => {
            if header("metadata") != "true"
                || query("api-version") != "2018-02-01"
                || query("resource") != "https://storage.azure.com"
            {
                return error(400, "invalid_request", "bad IMDS request");
            }
            (
                200,
                serde_json::json!({
                    "access_token": jwt(lifetime),
                    "expires_in": lifetime.as_secs().to_string(),
                    "resource": "https://storage.azure.com",
                    "token_type": "Bearer",
                })
                .to_string(),
            )
        }
        _ => error(404, "not_found", "no such endpoint"),
    }
}

/// Checks a certificate's client assertion as Entra ID does: the certificate named by its
/// thumbprint (`x5t#S256` with PS256, `x5t` with RS256; base64url or base64) is registered,
/// `x5c` (when sent) starts with it, the signature verifies with its key, `aud` is the token
/// endpoint, `iss` and `sub` are the client id, and `nbf`/`exp` hold now. Gives the header.
fn verify_assertion(
    assertion: &str,
    audience: &str,
    certificates: &[Vec<u8>],
) -> Result<serde_json::Value, String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine;
    use ring::signature;
    let bad = |why: &str| format!("AADSTS50027: Invalid client assertion: {why}");
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, sig] = parts[..] else {
        return Err(bad("not a signed JWT"));
    };
    let json = |part: &str| -> Result<serde_json::Value, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|e| bad(&format!("base64url: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(&format!("JSON: {e}")))
    };
    let header_json = json(header)?;
    let claims_json = json(claims)?;
    let (thumbprint_key, digest, algorithm): (_, _, &dyn signature::VerificationAlgorithm) =
        match header_json["alg"].as_str() {
            Some("PS256") => (
                "x5t#S256",
                &ring::digest::SHA256,
                &signature::RSA_PSS_2048_8192_SHA256,
            ),
            Some("RS256") => (
                "x5t",
                &ring::digest::SHA1_FOR_LEGACY_USE_ONLY,
                &signature::RSA_PKCS1_2048_8192_SHA256,
            ),
            other => return Err(bad(&format!("unsupported alg {other:?}"))),
        };
    let thumbprint = header_json[thumbprint_key]
        .as_str()
        .ok_or_else(|| bad(&format!("no {thumbprint_key} header")))?;
    let thumbprint = URL_SAFE_NO_PAD
        .decode(thumbprint.trim_end_matches('='))
        .or_else(|_| STANDARD.decode(thumbprint))
        .map_err(|_| bad(&format!("{thumbprint_key} is not base64")))?;
    let cert = certificates
        .iter()
        .find(|der| ring::digest::digest(digest, der).as_ref() == thumbprint.as_slice())
        .ok_or_else(|| {
            "AADSTS700027: The certificate with identifier used to sign the client assertion is \
             not registered on application."
                .to_string()
        })?;
    if let Some(x5c) = header_json.get("x5c") {
        let first = x5c[0].as_str().and_then(|c| STANDARD.decode(c).ok());
        if first.as_deref() != Some(cert.as_slice()) {
            return Err(bad("x5c does not start with the signing certificate"));
        }
    }
    let (_, parsed) = x509_parser::parse_x509_certificate(cert).expect("a registered certificate");
    let public = parsed.public_key().subject_public_key.data.to_vec();
    let sig = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| bad("signature is not base64url"))?;
    signature::UnparsedPublicKey::new(algorithm, &public)
        .verify(format!("{header}.{claims}").as_bytes(), &sig)
        .map_err(|_| bad("signature verification failed"))?;
    let now = now_secs();
    let claim = |name: &str| claims_json[name].as_str().unwrap_or("");
    let time = |name: &str| claims_json[name].as_u64();
    if claim("aud") != audience {
        return Err(bad(&format!(
            "aud {:?} is not {audience:?}",
            claims_json["aud"]
        )));
    }
    if claim("iss") != CLIENT_ID || claim("sub") != CLIENT_ID {
        return Err(bad("iss and sub must be the client id"));
    }
    if claim("jti").is_empty() {
        return Err(bad("no jti"));
    }
    match (time("nbf"), time("exp")) {
        (Some(nbf), Some(exp)) if nbf <= now + 300 && now < exp && exp - nbf <= 3600 => {}
        _ => return Err(bad("nbf and exp do not hold now")),
    }
    Ok(header_json)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// An access token for the Blob service: Azurite checks its issuer, audience, `nbf`, `iat` and
/// `exp` (not its signature).
fn jwt(lifetime: Duration) -> String {
    let now = now_secs();
    let claims = serde_json::json!({
        "aud": "https://storage.azure.com",
        "iss": format!("https://sts.windows.net/{TENANT}/"),
        "iat": now,
        "nbf": now - 60,
        "exp": now + lifetime.as_secs(),
        "appid": CLIENT_ID,
        "oid": "6c1f0000-0000-4000-8000-000000000001",
        "tid": TENANT,
        "ver": "1.0",
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(b"entra stand-in").expect("an HMAC key"),
    )
    .expect("encode a JWT")
}
