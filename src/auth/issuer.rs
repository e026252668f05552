//! The built-in token issuer (`tokenissuer`): the Docker token protocol on the registry's own
//! port, so no separate auth server is needed.
//!
//! - `GET <path>?service=&scope=&account=[&offline_token=true]` with optional Basic
//!   credentials answers `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}`.
//! - `POST <path>` with an OAuth2 form: `grant_type=password` (`username`, `password`,
//!   `access_type=offline` for a refresh token) or `grant_type=refresh_token`.
//!
//! Users and ACL are docker_auth's (`users`, `acl`), inline or from a docker_auth configuration
//! file that is reloaded when it changes; see [`super::acl`] for how rules decide. Tokens carry the
//! signing certificate as `x5c` and its libtrust key ID as `kid`, so this node, other Wharf
//! nodes and distribution (2.x and 3.x) trust them through `auth.token.rootcertbundle`.
//! Refresh tokens are JWTs signed with the same key for the audience `<service>:refresh` (no
//! registry accepts them as access tokens); they stop working when the user's hash changes.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use base64::Engine as _;
use http::{HeaderMap, StatusCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::Digest as _;

use super::acl::AuthRequest;
use super::credentials::{parse_authorization, Credentials};
use super::keys::{read_certificates, KeyError, PublicKey};
use super::policy::{Policy, PolicyCell, PolicyError};
use super::scope::{format_scope, parse_scopes, ResourceActions};
use super::token::LEEWAY_SECONDS;
use crate::config::TokenIssuerConfig;

/// Why the issuer could not be set up; every message names its key.
#[derive(Debug, thiserror::Error)]
pub enum IssuerSetupError {
    /// The certificate file.
    #[error(transparent)]
    Certificate(#[from] KeyError),
    /// The key file cannot be read.
    #[error("tokenissuer.key: cannot read {path}: {source}")]
    ReadKey {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The key is not a PEM key of the certificate's type.
    #[error("tokenissuer.key: {path}: {reason}")]
    KeyFormat {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Key and certificate are not a pair.
    #[error("tokenissuer.key: {key} does not match tokenissuer.certificate {certificate}")]
    Mismatch {
        /// Key file.
        key: String,
        /// Certificate file.
        certificate: String,
    },
    /// Users or ACL refused.
    #[error("{origin}{source}")]
    Policy {
        /// `tokenissuer.` or the docker_auth file.
        origin: String,
        /// What is wrong.
        source: PolicyError,
    },
}

/// Who asks for a token: the connection's peer and the request's headers.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The connection's peer address (none on a Unix socket).
    pub peer: Option<IpAddr>,
    /// Request headers (`Authorization`, the real-IP header).
    pub headers: &'a HeaderMap,
}

/// An answer of the token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuerResponse {
    /// HTTP status.
    pub status: StatusCode,
    /// JSON body.
    pub body: Value,
    /// `WWW-Authenticate`, for refused credentials.
    pub challenge: Option<String>,
}

impl IssuerResponse {
    fn ok(body: Value) -> Self {
        Self {
            status: StatusCode::OK,
            body,
            challenge: None,
        }
    }

    /// Registry error JSON (GET form).
    fn registry_error(status: StatusCode, code: &str, message: &str, detail: &str) -> Self {
        Self {
            status,
            body: json!({"errors": [{"code": code, "message": message, "detail": detail}]}),
            challenge: None,
        }
    }

    /// OAuth2 error JSON (POST form).
    fn oauth_error(status: StatusCode, error: &str, description: &str) -> Self {
        Self {
            status,
            body: json!({"error": error, "error_description": description}),
            challenge: None,
        }
    }
}

/// The token issuer.
pub struct TokenIssuer {
    path: String,
    issuer: String,
    service: String,
    key: EncodingKey,
    algorithm: Algorithm,
    verifying: DecodingKey,
    kid: String,
    certificates: Vec<CertificateDer<'static>>,
    lifetime: Duration,
    refresh_lifetime: Duration,
    policy: PolicyCell,
    dockerauthconfig: Option<std::path::PathBuf>,
    realipheader: Option<http::HeaderName>,
    realippos: i64,
    dummy_hash: String,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn rfc3339(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn password_fingerprint(hash: &str) -> String {
    let digest = sha2::Sha256::digest(hash.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl TokenIssuer {
    /// Loads the key and certificate, checks that they pair, and the users' hashes.
    pub fn new(config: &TokenIssuerConfig) -> Result<Self, IssuerSetupError> {
        let (Some(key_path), Some(cert_path)) = (&config.key, &config.certificate) else {
            return Err(IssuerSetupError::KeyFormat {
                path: String::new(),
                reason: "tokenissuer.key and tokenissuer.certificate are required".into(),
            });
        };
        let certificates = read_certificates("tokenissuer.certificate", cert_path)?;
        let public =
            PublicKey::from_certificate(&certificates[0]).map_err(|e| KeyError::Content {
                key: "tokenissuer.certificate",
                path: cert_path.clone(),
                reason: e.to_string(),
            })?;
        let key_display = key_path.display().to_string();
        let pem = std::fs::read(key_path).map_err(|source| IssuerSetupError::ReadKey {
            path: key_display.clone(),
            source,
        })?;
        let (key, algorithm) = match &public {
            PublicKey::Rsa { .. } => (EncodingKey::from_rsa_pem(&pem), Algorithm::RS256),
            PublicKey::P256 { .. } => (EncodingKey::from_ec_pem(&pem), Algorithm::ES256),
            PublicKey::P384 { .. } => (EncodingKey::from_ec_pem(&pem), Algorithm::ES384),
            PublicKey::Ed25519 { .. } => (EncodingKey::from_ed_pem(&pem), Algorithm::EdDSA),
        };
        let key = key.map_err(|e| IssuerSetupError::KeyFormat {
            path: key_display.clone(),
            reason: format!(
                "not a PEM private key of the certificate's type ({e}); EC and Ed25519 keys must be PKCS#8"
            ),
        })?;
        let verifying = public.decoding_key();
        let probe = b"wharf-token-issuer-key-check";
        let matches = jsonwebtoken::crypto::sign(probe, &key, algorithm)
            .ok()
            .and_then(|sig| jsonwebtoken::crypto::verify(&sig, probe, &verifying, algorithm).ok())
            .unwrap_or(false);
        if !matches {
            return Err(IssuerSetupError::Mismatch {
                key: key_display,
                certificate: cert_path.display().to_string(),
            });
        }
        let origin = match &config.dockerauthconfig {
            Some(p) => format!("tokenissuer.dockerauthconfig: {}: ", p.display()),
            None => "tokenissuer.".to_string(),
        };
        let policy = Policy::new(&config.users, &config.acl)
            .map_err(|source| IssuerSetupError::Policy { origin, source })?;
        let cost = policy.cost().unwrap_or(bcrypt::DEFAULT_COST);
        Ok(Self {
            path: config.path.clone(),
            issuer: config.issuer.clone(),
            service: config.service.clone(),
            key,
            algorithm,
            verifying,
            kid: public.libtrust_kid(),
            certificates,
            lifetime: config.expiration,
            refresh_lifetime: config.refreshexpiration,
            policy: PolicyCell::new(policy),
            dockerauthconfig: config.dockerauthconfig.clone(),
            realipheader: http::HeaderName::try_from(&config.realipheader).ok(),
            realippos: config.realippos,
            dummy_hash: bcrypt::hash("wharf-dummy", cost).unwrap_or_default(),
        })
    }

    /// Starts reloading the docker_auth file, when users and ACL come from one.
    pub fn watch_docker_auth_file(&self) -> Option<tokio::task::JoinHandle<()>> {
        let path = self.dockerauthconfig.as_ref()?;
        Some(super::policy::watch(path.clone(), self.policy.clone()))
    }

    /// The endpoint path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The signing certificate chain (for `auth.token` of this node).
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// The labels of `account` when `password` is its password (docker_auth's static users:
    /// a user without a password takes any); unknown users cost as much as known ones.
    async fn authenticate(
        &self,
        policy: &Policy,
        account: &str,
        password: &str,
    ) -> Option<BTreeMap<String, Vec<String>>> {
        let (hash, user) = match policy.user(account) {
            Some(user) => match &user.password {
                None => return Some(user.labels.clone()),
                Some(hash) => (hash.clone(), Some(user)),
            },
            None => (self.dummy_hash.clone(), None),
        };
        if user.is_some() && policy.was_verified(account, password) {
            return user.map(|u| u.labels.clone());
        }
        let attempt = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(attempt, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        let user = user.filter(|_| ok)?;
        policy.remember_verified(account, password);
        Some(user.labels.clone())
    }

    /// The client address rules see: the peer, or the configured header's entry.
    fn client_ip(&self, caller: &Caller<'_>) -> Result<Option<IpAddr>, IssuerResponse> {
        let Some(header) = &self.realipheader else {
            return Ok(caller.peer);
        };
        let bad = |detail: &str| {
            IssuerResponse::registry_error(
                StatusCode::BAD_REQUEST,
                "DENIED",
                "requested access to the resource is denied",
                detail,
            )
        };
        let value = caller
            .headers
            .get(header)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let entries: Vec<&str> = value.split(',').collect();
        let pos = if self.realippos < 0 {
            (entries.len() as i64 + self.realippos).max(0)
        } else {
            self.realippos
        };
        let entry = usize::try_from(pos)
            .ok()
            .and_then(|p| entries.get(p))
            .map_or("", |e| e.trim());
        if entry.is_empty() {
            return Err(bad("client address not provided"));
        }
        parse_remote_addr(entry)
            .map(Some)
            .ok_or_else(|| bad("unable to parse the client address"))
    }

    /// The requested scopes cut down to what the ACL allows `account`.
    pub fn grant(
        &self,
        policy: &Policy,
        account: &str,
        labels: &BTreeMap<String, Vec<String>>,
        ip: Option<IpAddr>,
        requested: &[ResourceActions],
    ) -> Vec<ResourceActions> {
        let mut granted: Vec<ResourceActions> = Vec::new();
        for r in requested {
            let mut asked = r.actions.clone();
            asked.sort();
            let actions = policy
                .acl
                .authorize(&AuthRequest {
                    account,
                    kind: &r.kind,
                    name: &r.name,
                    service: &self.service,
                    ip,
                    actions: &asked,
                    labels,
                })
                .unwrap_or_default();
            if actions.is_empty() {
                continue;
            }
            match granted
                .iter_mut()
                .find(|g| g.kind == r.kind && g.name == r.name && g.class == r.class)
            {
                Some(g) => {
                    for a in actions {
                        if !g.actions.contains(&a) {
                            g.actions.push(a);
                        }
                    }
                    g.actions.sort();
                }
                None => granted.push(ResourceActions {
                    actions,
                    ..r.clone()
                }),
            }
        }
        granted
    }

    fn header(&self) -> Header {
        let mut header = Header::new(self.algorithm);
        header.kid = Some(self.kid.clone());
        header.x5c = Some(
            self.certificates
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.encode(c))
                .collect(),
        );
        header
    }

    fn sign(&self, claims: &Value) -> Option<String> {
        match jsonwebtoken::encode(&self.header(), claims, &self.key) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "token signing failed");
                None
            }
        }
    }

    fn refresh_audience(&self) -> String {
        format!("{}:refresh", self.service)
    }

    /// An access token for `account` with `granted`: (token, issued at, lifetime in seconds).
    fn access_token(&self, account: &str, granted: &[ResourceActions]) -> Option<(String, i64)> {
        let issued = now();
        let claims = json!({
            "iss": self.issuer,
            "sub": account,
            "aud": self.service,
            "exp": issued + self.lifetime.as_secs() as i64,
            "nbf": issued - 1,
            "iat": issued,
            "jti": uuid::Uuid::new_v4().to_string(),
            "access": granted,
        });
        Some((self.sign(&claims)?, issued))
    }

    fn refresh_token(&self, policy: &Policy, account: &str) -> Option<String> {
        let issued = now();
        let hash = policy.user(account)?.password.as_deref().unwrap_or("");
        self.sign(&json!({
            "iss": self.issuer,
            "sub": account,
            "aud": self.refresh_audience(),
            "exp": issued + self.refresh_lifetime.as_secs() as i64,
            "iat": issued,
            "jti": uuid::Uuid::new_v4().to_string(),
            "pwd": password_fingerprint(hash),
        }))
    }

    /// The account a refresh token stands for, if it is still good.
    fn check_refresh(&self, policy: &Policy, token: &str) -> Option<String> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY_SECONDS as u64;
        validation.set_audience(&[self.refresh_audience()]);
        validation.set_issuer(std::slice::from_ref(&self.issuer));
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.verifying, &validation).ok()?;
        let account = data.claims.get("sub")?.as_str()?.to_string();
        let hash = policy.user(&account)?.password.as_deref().unwrap_or("");
        (data.claims.get("pwd")?.as_str()? == password_fingerprint(hash)).then_some(account)
    }

    /// The success body shared by both forms.
    fn token_body(
        &self,
        policy: &Policy,
        account: &str,
        labels: &BTreeMap<String, Vec<String>>,
        ip: Option<IpAddr>,
        requested: &[ResourceActions],
        refresh: bool,
    ) -> Option<Value> {
        let granted = self.grant(policy, account, labels, ip, requested);
        let (token, issued) = self.access_token(account, &granted)?;
        let mut body = json!({
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime.as_secs(),
            "issued_at": rfc3339(issued),
            "scope": granted.iter().map(format_scope).collect::<Vec<_>>().join(" "),
        });
        if refresh {
            body["refresh_token"] = Value::from(self.refresh_token(policy, account)?);
        }
        Some(body)
    }

    fn internal_error() -> IssuerResponse {
        IssuerResponse::registry_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "unknown error",
            "token signing failed",
        )
    }

    /// `GET ?service=&scope=&account=&offline_token=` with optional Basic credentials, as
    /// docker_auth answers it: the account is `account=` or the Basic user (they must agree),
    /// and must be one of `users` (`""` when anonymous) with that password.
    pub async fn get(&self, query: &str, caller: Caller<'_>) -> IssuerResponse {
        let mut scopes = Vec::new();
        let (mut service, mut account_param, mut offline) = (None, None, false);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "scope" => scopes.push(v.into_owned()),
                "service" => service = Some(v.into_owned()),
                "account" => account_param = Some(v.into_owned()),
                "offline_token" => offline = v == "true",
                _ => {}
            }
        }
        let bad = |detail: &str| {
            IssuerResponse::registry_error(
                StatusCode::BAD_REQUEST,
                "DENIED",
                "requested access to the resource is denied",
                detail,
            )
        };
        if service.as_deref().is_some_and(|s| s != self.service) {
            return bad("unknown service");
        }
        let mut requested = Vec::new();
        for s in &scopes {
            match parse_scopes(s) {
                Ok(mut r) => requested.append(&mut r),
                Err(e) => return bad(&e.to_string()),
            }
        }
        let ip = match self.client_ip(&caller) {
            Ok(ip) => ip,
            Err(r) => return r,
        };
        let authorization = caller
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let (user, password) = match authorization.map(parse_authorization) {
            None => (None, String::new()),
            Some(Some(Credentials::Basic { user, password })) => (Some(user), password),
            Some(_) => return self.refused(),
        };
        let account_param = account_param.filter(|a| !a.is_empty());
        if let (Some(u), Some(a)) = (&user, &account_param) {
            if u != a {
                return bad("account does not match the credentials");
            }
        }
        let account = account_param.or(user).unwrap_or_default();
        let policy = self.policy.current();
        let Some(labels) = self.authenticate(&policy, &account, &password).await else {
            return self.refused();
        };
        let refresh = offline && !account.is_empty();
        match self.token_body(&policy, &account, &labels, ip, &requested, refresh) {
            Some(body) => IssuerResponse::ok(body),
            None => Self::internal_error(),
        }
    }

    /// 401 with a Basic challenge: unknown user, wrong password, or anonymous not admitted.
    fn refused(&self) -> IssuerResponse {
        let mut r = IssuerResponse::registry_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
            "invalid username or password",
        );
        r.challenge = Some(format!("Basic realm={:?}", self.issuer));
        r
    }

    /// The OAuth2 form: `grant_type=password` or `grant_type=refresh_token`.
    pub async fn post(&self, form: &[u8], caller: Caller<'_>) -> IssuerResponse {
        let fields: HashMap<String, String> = form_urlencoded::parse(form).into_owned().collect();
        let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
        let invalid = |error: &str, description: &str| {
            IssuerResponse::oauth_error(StatusCode::BAD_REQUEST, error, description)
        };
        if !field("service").is_empty() && field("service") != self.service {
            return invalid("invalid_request", "unknown service");
        }
        let requested = match parse_scopes(field("scope")) {
            Ok(r) => r,
            Err(e) => return invalid("invalid_scope", &e.to_string()),
        };
        let ip = match self.client_ip(&caller) {
            Ok(ip) => ip,
            Err(r) => return r,
        };
        let policy = self.policy.current();
        let (account, labels, refresh) = match field("grant_type") {
            "password" => {
                let user = field("username");
                let labels = match user.is_empty() {
                    true => None,
                    false => self.authenticate(&policy, user, field("password")).await,
                };
                let Some(labels) = labels else {
                    return invalid("invalid_grant", "invalid username or password");
                };
                (user.to_string(), labels, field("access_type") == "offline")
            }
            "refresh_token" => match self.check_refresh(&policy, field("refresh_token")) {
                Some(account) => {
                    let labels = policy
                        .user(&account)
                        .map(|u| u.labels.clone())
                        .unwrap_or_default();
                    (account, labels, true)
                }
                None => return invalid("invalid_grant", "invalid or expired refresh token"),
            },
            "" => return invalid("invalid_request", "grant_type is required"),
            _ => {
                return invalid(
                    "unsupported_grant_type",
                    "grant_type must be password or refresh_token",
                )
            }
        };
        match self.token_body(&policy, &account, &labels, ip, &requested, refresh) {
            Some(body) => IssuerResponse::ok(body),
            None => Self::internal_error(),
        }
    }
}

/// docker_auth's `parseRemoteAddr`: `host:port`, `[v6]:port` or a bare address.
fn parse_remote_addr(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:")?;
        return port
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| host.parse().ok())?;
    }
    let (host, port) = text.split_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && !host.contains(':'))
        .then(|| host.parse().ok())?
}
