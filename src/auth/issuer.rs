//! The built-in token issuer (`tokenissuer`): the Docker token protocol on the registry's own
//! port, so no separate auth server is needed.
//!
//! - `GET <path>?service=&scope=&account=[&offline_token=true]` with optional Basic
//!   credentials answers `{"token","access_token","expires_in","issued_at"[,"refresh_token"]}`.
//! - `POST <path>` with an OAuth2 form: `grant_type=password` (`username`, `password`,
//!   `access_type=offline` for a refresh token) or `grant_type=refresh_token`.
//!
//! Granted access is the intersection of the requested scopes and the ACL. Tokens carry the
//! signing certificate as `x5c` and its libtrust key ID as `kid`, so this node, other Wharf
//! nodes and distribution (2.x and 3.x) trust them through `auth.token.rootcertbundle`.
//! Refresh tokens are JWTs signed with the same key for the audience `<service>:refresh` (no
//! registry accepts them as access tokens); they stop working when the user's hash changes.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use sha2::Digest as _;

use super::acl::Acl;
use super::credentials::{parse_authorization, Credentials};
use super::keys::{read_certificates, KeyError, PublicKey};
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
    /// A user whose password is not a bcrypt hash.
    #[error("tokenissuer.users.{0}: the password must be a bcrypt hash (htpasswd -B)")]
    NotBcrypt(String),
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
    users: HashMap<String, String>,
    dummy_hash: String,
    acl: Acl,
    verified: Mutex<HashSet<(String, [u8; 32])>>,
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
        let mut users = HashMap::new();
        for (name, user) in &config.users {
            if !user.password.starts_with("$2") {
                return Err(IssuerSetupError::NotBcrypt(name.clone()));
            }
            users.insert(name.clone(), user.password.clone());
        }
        let cost = users
            .values()
            .find_map(|h| h.split('$').nth(2)?.parse().ok())
            .filter(|c| (4..=31).contains(c))
            .unwrap_or(bcrypt::DEFAULT_COST);
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
            users,
            dummy_hash: bcrypt::hash("wharf-dummy", cost).unwrap_or_default(),
            acl: Acl::new(config.acl.clone()),
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The endpoint path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The signing certificate chain (for `auth.token` of this node).
    pub fn certificates(&self) -> &[CertificateDer<'static>] {
        &self.certificates
    }

    /// True when `password` is `user`'s; unknown users cost as much as known ones.
    async fn authenticate(&self, user: &str, password: &str) -> bool {
        let key = (
            user.to_string(),
            sha2::Sha256::digest(password.as_bytes()).into(),
        );
        let verified = || self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified().contains(&key) {
            return true;
        }
        let (hash, known) = match self.users.get(user) {
            Some(h) => (h.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        if ok && known {
            let mut v = verified();
            if v.len() > 10_000 {
                v.clear();
            }
            v.insert(key);
        }
        ok && known
    }

    /// The requested scopes cut down to what the ACL allows `account`.
    pub fn grant(&self, account: &str, requested: &[ResourceActions]) -> Vec<ResourceActions> {
        let mut granted: Vec<ResourceActions> = Vec::new();
        for r in requested {
            let actions = self.acl.allowed(account, r);
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

    fn refresh_token(&self, account: &str) -> Option<String> {
        let issued = now();
        let hash = self.users.get(account)?;
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
    fn check_refresh(&self, token: &str) -> Option<String> {
        let mut validation = Validation::new(self.algorithm);
        validation.leeway = LEEWAY_SECONDS as u64;
        validation.set_audience(&[self.refresh_audience()]);
        validation.set_issuer(std::slice::from_ref(&self.issuer));
        validation.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        let data = jsonwebtoken::decode::<Value>(token, &self.verifying, &validation).ok()?;
        let account = data.claims.get("sub")?.as_str()?.to_string();
        let hash = self.users.get(&account)?;
        (data.claims.get("pwd")?.as_str()? == password_fingerprint(hash)).then_some(account)
    }

    /// The success body shared by both forms.
    fn token_body(
        &self,
        account: &str,
        requested: &[ResourceActions],
        refresh: bool,
    ) -> Option<Value> {
        let granted = self.grant(account, requested);
        let (token, issued) = self.access_token(account, &granted)?;
        let mut body = json!({
            "token": token,
            "access_token": token,
            "expires_in": self.lifetime.as_secs(),
            "issued_at": rfc3339(issued),
            "scope": granted.iter().map(format_scope).collect::<Vec<_>>().join(" "),
        });
        if refresh {
            body["refresh_token"] = Value::from(self.refresh_token(account)?);
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

    /// `GET ?service=&scope=&account=&offline_token=` with optional Basic credentials.
    pub async fn get(&self, query: &str, authorization: Option<&str>) -> IssuerResponse {
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
        let account = match authorization.map(parse_authorization) {
            None => String::new(),
            Some(Some(Credentials::Basic { user, password }))
                if self.authenticate(&user, &password).await =>
            {
                user
            }
            Some(_) => {
                let mut r = IssuerResponse::registry_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "authentication required",
                    "invalid username or password",
                );
                r.challenge = Some(format!("Basic realm={:?}", self.issuer));
                return r;
            }
        };
        if account_param
            .as_deref()
            .is_some_and(|a| !a.is_empty() && a != account)
        {
            return bad("account does not match the credentials");
        }
        let refresh = offline && !account.is_empty();
        match self.token_body(&account, &requested, refresh) {
            Some(body) => IssuerResponse::ok(body),
            None => Self::internal_error(),
        }
    }

    /// The OAuth2 form: `grant_type=password` or `grant_type=refresh_token`.
    pub async fn post(&self, form: &[u8]) -> IssuerResponse {
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
        let (account, refresh) = match field("grant_type") {
            "password" => {
                let user = field("username");
                if user.is_empty() || !self.authenticate(user, field("password")).await {
                    return invalid("invalid_grant", "invalid username or password");
                }
                (user.to_string(), field("access_type") == "offline")
            }
            "refresh_token" => match self.check_refresh(field("refresh_token")) {
                Some(account) => (account, true),
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
        match self.token_body(&account, &requested, refresh) {
            Some(body) => IssuerResponse::ok(body),
            None => Self::internal_error(),
        }
    }
}
