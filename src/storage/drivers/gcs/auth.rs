//! Who the driver is to Google: OAuth 2 access tokens from a service-account key (a signed
//! JWT exchanged at the key's token URI) or from the metadata server, and the key's RSA
//! signatures for signed URLs. An emulator takes no authorization at all.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::settings::{GcsSettings, GcsSetupError, KeySource};

/// The scope asked for: objects read and written.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// The token URI when a key names none.
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Where a Compute Engine / GKE workload gets its tokens.
const METADATA_TOKEN_URL: &str =
    "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token";
/// A token is renewed this long before it expires.
const RENEW_EARLY: Duration = Duration::from_secs(300);

/// The fields of a service-account JSON key the driver uses.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct ServiceAccountKey {
    /// `service_account` for the keys this driver understands.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The account's e-mail: the JWT issuer and the signed URLs' credential.
    pub client_email: String,
    /// PEM private key (PKCS#8 RSA).
    pub private_key: String,
    /// Where the JWT is exchanged for an access token.
    #[serde(default)]
    pub token_uri: Option<String>,
}

/// How the driver gets its access tokens.
pub(super) enum Credentials {
    /// No authorization header (an emulator).
    Anonymous,
    /// A service-account key, which also signs URLs.
    ServiceAccount {
        key: ServiceAccountKey,
        signer: EncodingKey,
    },
    /// The metadata server of the machine (Compute Engine, GKE workload identity).
    Metadata,
}

/// Claims of the JWT exchanged for a token.
#[derive(serde::Serialize)]
struct Claims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

/// A token endpoint's answer.
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: u64,
}

/// A token and when it stops being used.
pub(super) struct CachedToken {
    pub value: String,
    pub renew_at: SystemTime,
}

/// The current access token, shared by every call.
pub(super) type TokenCache = Mutex<Option<CachedToken>>;

impl Credentials {
    /// Reads the key the settings name (or `GOOGLE_APPLICATION_CREDENTIALS`).
    pub(super) fn new(s: &GcsSettings) -> Result<Self, GcsSetupError> {
        if s.anonymous && s.key.is_none() {
            return Ok(Credentials::Anonymous);
        }
        let text = match &s.key {
            Some(KeySource::Inline(text)) => Some(text.clone()),
            Some(KeySource::File(path)) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| GcsSetupError(format!("keyfile {}: {e}", path.display())))?,
            ),
            None => match std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS") {
                Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                    GcsSetupError(format!(
                        "GOOGLE_APPLICATION_CREDENTIALS {}: {e}",
                        path.to_string_lossy()
                    ))
                })?),
                None => None,
            },
        };
        let Some(text) = text else {
            return Ok(Credentials::Metadata);
        };
        let key: ServiceAccountKey = serde_json::from_str(&text)
            .map_err(|e| GcsSetupError(format!("service-account key: {e}")))?;
        if !key.kind.is_empty() && key.kind != "service_account" {
            return Err(GcsSetupError(format!(
                "credentials of type {:?} are not supported; give a service_account key",
                key.kind
            )));
        }
        let signer = EncodingKey::from_rsa_pem(key.private_key.as_bytes())
            .map_err(|e| GcsSetupError(format!("service-account private_key: {e}")))?;
        Ok(Credentials::ServiceAccount { key, signer })
    }

    /// The signed JWT a service account exchanges for a token, with its token URI.
    pub(super) fn assertion(&self) -> Option<Result<(String, String), String>> {
        let Credentials::ServiceAccount { key, signer } = self else {
            return None;
        };
        let now = unix_now();
        let aud = key.token_uri.as_deref().unwrap_or(DEFAULT_TOKEN_URI);
        let claims = Claims {
            iss: &key.client_email,
            scope: SCOPE,
            aud,
            iat: now,
            exp: now + 3600,
        };
        Some(
            jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, signer)
                .map(|jwt| (aud.to_string(), jwt))
                .map_err(|e| e.to_string()),
        )
    }

    /// The metadata server's token URL, for [`Credentials::Metadata`].
    pub(super) fn metadata_url(&self) -> Option<&'static str> {
        matches!(self, Credentials::Metadata).then_some(METADATA_TOKEN_URL)
    }

    /// The account e-mail and an RSA-SHA256 signer, when URLs can be signed.
    pub(super) fn url_signer(&self) -> Option<(&str, &EncodingKey)> {
        match self {
            Credentials::ServiceAccount { key, signer } => Some((&key.client_email, signer)),
            _ => None,
        }
    }
}

/// When a token answered now with `expires_in` seconds should be renewed.
pub(super) fn renew_at(expires_in: u64) -> SystemTime {
    let life = Duration::from_secs(expires_in.max(60));
    SystemTime::now()
        + life
            .saturating_sub(RENEW_EARLY)
            .max(Duration::from_secs(30))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
