//! Microsoft Entra ID tokens for the Blob service (`credentials.type: client_secret` and
//! `default_credentials`, with a client secret, a client certificate, a federated token or a
//! managed identity): where a token comes from ([`TokenSource`]), the chain of sources
//! `default_credentials` tries in azidentity's order, and a cache that renews a token shortly
//! before it expires, in the background while the old one still serves.

use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use super::certificate::{ClientCertificate, Signing};

/// What every token is for.
const STORAGE_SCOPE: &str = "https://storage.azure.com/.default";
/// The same, as managed identity endpoints name it.
const STORAGE_RESOURCE: &str = "https://storage.azure.com";
/// Entra ID, unless `AZURE_AUTHORITY_HOST` says otherwise (sovereign clouds, tests).
const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";
/// The instance metadata service, unless `AZURE_POD_IDENTITY_AUTHORITY_HOST` says otherwise.
const IMDS_ORIGIN: &str = "http://169.254.169.254";
/// A token is renewed once it has less than this left (azidentity's margin).
const RENEW_BEFORE: Duration = Duration::from_secs(5 * 60);
/// Connecting to a token endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// One token request, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The instance metadata service is taken as absent when it does not answer this fast.
const IMDS_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Answers are read up to this size.
const MAX_ANSWER: usize = 256 * 1024;
/// A failed renewal is tried again no sooner than this (the old token still serves).
const RENEW_RETRY: Duration = Duration::from_secs(15);
/// Bound on running `az`.
const CLI_TIMEOUT: Duration = Duration::from_secs(20);

/// Why no token was had.
#[derive(Debug, Clone, thiserror::Error)]
pub(super) enum TokenError {
    /// The source is not set up here; a chain tries the next one.
    #[error("{0}")]
    Unavailable(String),
    /// The identity provider answered and refused (a wrong secret, an unknown client).
    #[error("{0}")]
    Refused(String),
    /// No usable answer: connection failure, timeout, server error, unreadable answer.
    #[error("{0}")]
    Failed(String),
}

/// One way of getting a token.
#[derive(Clone)]
pub(super) enum TokenSource {
    /// OAuth 2 client credentials with a client secret.
    ClientSecret {
        authority: String,
        tenant: String,
        client_id: String,
        secret: String,
    },
    /// OAuth 2 client credentials with a certificate: a client assertion signed with its key.
    /// The file is read once, when the chain is made; `Err` says why it cannot be used, and the
    /// source is then unavailable (a chain tries the next one, as azidentity's does).
    ClientCertificate {
        authority: String,
        tenant: String,
        client_id: String,
        path: PathBuf,
        certificate: Result<Arc<ClientCertificate>, String>,
        /// `x5c` in the assertion (`AZURE_CLIENT_SEND_CERTIFICATE_CHAIN`), for subject name and
        /// issuer authentication.
        send_chain: bool,
    },
    /// OAuth 2 client credentials with a federated token read from a file (AKS workload
    /// identity); the file is read again for every token, as it is rotated.
    WorkloadIdentity {
        authority: String,
        tenant: String,
        client_id: String,
        token_file: PathBuf,
    },
    /// App Service, Functions, Container Apps: `IDENTITY_ENDPOINT` with `IDENTITY_HEADER`.
    AppService {
        endpoint: String,
        header: String,
        client_id: Option<String>,
    },
    /// The instance metadata service of a VM (or a pod identity endpoint).
    Imds {
        origin: String,
        client_id: Option<String>,
    },
    /// The Azure CLI's signed-in account (`az account get-access-token`).
    AzureCli { program: PathBuf },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl TokenSource {
    /// The source as named in logs and errors (never its secret).
    pub(super) fn describe(&self) -> String {
        match self {
            TokenSource::ClientSecret {
                authority,
                tenant,
                client_id,
                ..
            } => format!("client secret of {client_id} at {authority}/{tenant}"),
            TokenSource::ClientCertificate {
                authority,
                tenant,
                client_id,
                path,
                certificate,
                ..
            } => {
                let thumbprint = match certificate {
                    Ok(c) => format!(", thumbprint {}", c.thumbprint_hex()),
                    Err(_) => String::new(),
                };
                format!(
                    "client certificate {}{thumbprint} of {client_id} at {authority}/{tenant}",
                    path.display()
                )
            }
            TokenSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => format!(
                "workload identity of {client_id} at {authority}/{tenant} (token file {})",
                token_file.display()
            ),
            TokenSource::AppService { endpoint, .. } => {
                format!("managed identity at {endpoint}")
            }
            TokenSource::Imds { origin, .. } => format!("managed identity (IMDS at {origin})"),
            TokenSource::AzureCli { program } => format!("Azure CLI ({})", program.display()),
        }
    }
}

/// `${AZURE_AUTHORITY_HOST:-https://login.microsoftonline.com}` without a trailing `/`.
pub(super) fn authority(env: &dyn Fn(&str) -> Option<String>) -> String {
    env("AZURE_AUTHORITY_HOST")
        .filter(|h| !h.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_AUTHORITY.to_string())
        .trim()
        .trim_end_matches('/')
        .to_string()
}

/// The sources `default_credentials` tries, in azidentity's `DefaultAzureCredential` order:
/// environment (client secret, else client certificate), workload identity, managed identity (App Service style, else
/// IMDS), Azure CLI. A source whose settings are absent is left out, with a debug log; the
/// second list says why each was left out.
pub(super) fn default_chain(
    env: &dyn Fn(&str) -> Option<String>,
) -> (Vec<TokenSource>, Vec<String>) {
    let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let authority = authority(env);
    let mut chain = Vec::new();
    let mut skipped = Vec::new();
    let tenant = get("AZURE_TENANT_ID");
    let client_id = get("AZURE_CLIENT_ID");
    match (&tenant, &client_id, get("AZURE_CLIENT_SECRET")) {
        (Some(tenant), Some(client_id), Some(secret)) => chain.push(TokenSource::ClientSecret {
            authority: authority.clone(),
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            secret,
        }),
        (Some(tenant), Some(client_id), None) => match get("AZURE_CLIENT_CERTIFICATE_PATH") {
            Some(path) => {
                let path = PathBuf::from(path);
                let password = get("AZURE_CLIENT_CERTIFICATE_PASSWORD");
                let certificate = ClientCertificate::load(&path, password.as_deref())
                    .map(Arc::new)
                    .map_err(|why| format!("AZURE_CLIENT_CERTIFICATE_PATH: {why}"));
                chain.push(TokenSource::ClientCertificate {
                    authority: authority.clone(),
                    tenant: tenant.clone(),
                    client_id: client_id.clone(),
                    path,
                    certificate,
                    send_chain: env("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN").is_some_and(|v| {
                        let v = v.trim();
                        v == "1" || v.eq_ignore_ascii_case("true")
                    }),
                })
            }
            None => skipped.push(
                "environment: neither AZURE_CLIENT_SECRET nor AZURE_CLIENT_CERTIFICATE_PATH is set"
                    .to_string(),
            ),
        },
        _ => skipped
            .push("environment: AZURE_TENANT_ID and AZURE_CLIENT_ID are not both set".to_string()),
    }
    match (&tenant, &client_id, get("AZURE_FEDERATED_TOKEN_FILE")) {
        (Some(tenant), Some(client_id), Some(file)) => chain.push(TokenSource::WorkloadIdentity {
            authority,
            tenant: tenant.clone(),
            client_id: client_id.clone(),
            token_file: PathBuf::from(file),
        }),
        _ => skipped.push(
            "workload identity: AZURE_TENANT_ID, AZURE_CLIENT_ID and AZURE_FEDERATED_TOKEN_FILE \
             are not all set"
                .to_string(),
        ),
    }
    match (get("IDENTITY_ENDPOINT"), get("IDENTITY_HEADER")) {
        (Some(endpoint), Some(header)) => chain.push(TokenSource::AppService {
            endpoint,
            header,
            client_id: client_id.clone(),
        }),
        _ => chain.push(TokenSource::Imds {
            origin: get("AZURE_POD_IDENTITY_AUTHORITY_HOST")
                .unwrap_or_else(|| IMDS_ORIGIN.to_string())
                .trim_end_matches('/')
                .to_string(),
            client_id: client_id.clone(),
        }),
    }
    match get("PATH").and_then(|path| find_program(&path, "az")) {
        Some(program) => chain.push(TokenSource::AzureCli { program }),
        None => skipped.push("Azure CLI: no `az` on PATH".to_string()),
    }
    (chain, skipped)
}

fn find_program(path: &str, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A bearer token and when it stops being valid.
#[derive(Clone)]
struct Token {
    value: Arc<str>,
    expires: Instant,
}

impl Token {
    fn due(&self, now: Instant) -> bool {
        self.expires.saturating_duration_since(now) < RENEW_BEFORE
    }

    fn expired(&self, now: Instant) -> bool {
        // A few seconds of margin: the request it goes on takes time to arrive.
        self.expires.saturating_duration_since(now) < Duration::from_secs(10)
    }
}

type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

struct Shared {
    sources: Vec<TokenSource>,
    /// The source that gave the first token: only it is asked from then on (as azidentity).
    chosen: StdMutex<Option<usize>>,
    current: StdMutex<Option<Token>>,
    /// No background renewal starts before this.
    next_renewal: StdMutex<Instant>,
    /// Held by whoever is fetching a token.
    fetching: Arc<tokio::sync::Mutex<()>>,
    http: HttpClient,
}

/// Tokens from a chain of sources, cached and renewed before they expire.
#[derive(Clone)]
pub(super) struct TokenCredential {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for TokenCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.shared.sources).finish()
    }
}

impl TokenCredential {
    /// A credential that asks `sources` in order until one gives a token.
    pub(super) fn new(sources: Vec<TokenSource>) -> Self {
        TokenCredential {
            shared: Arc::new(Shared {
                sources,
                chosen: StdMutex::new(None),
                current: StdMutex::new(None),
                next_renewal: StdMutex::new(Instant::now()),
                fetching: Arc::new(tokio::sync::Mutex::new(())),
                http: crate::tls_client::https_client("Microsoft Entra ID", Some(CONNECT_TIMEOUT)),
            }),
        }
    }

    /// A valid token: the cached one, renewed in the background once it is due; fetched here
    /// only when there is none still valid.
    pub(super) async fn token(&self) -> Result<Arc<str>, TokenError> {
        let now = Instant::now();
        let cached = self.shared.current.lock().unwrap().clone();
        if let Some(token) = cached.filter(|t| !t.expired(now)) {
            if token.due(now) && self.renewal_may_start(now) {
                if let Ok(guard) = self.shared.fetching.clone().try_lock_owned() {
                    let this = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = this.fetch().await {
                            tracing::warn!(
                                target: "wharf::storage::azure",
                                error = %e, "cannot renew the storage access token yet"
                            );
                        }
                        drop(guard);
                    });
                }
            }
            return Ok(token.value);
        }
        let _guard = self.shared.fetching.lock().await;
        // Someone else may have fetched one meanwhile.
        let cached = self.shared.current.lock().unwrap().clone();
        if let Some(token) = cached.filter(|t| !t.due(Instant::now())) {
            return Ok(token.value);
        }
        self.fetch().await
    }

    /// True at most once per [`RENEW_RETRY`]: renewals that fail are not retried on every
    /// request.
    fn renewal_may_start(&self, now: Instant) -> bool {
        let mut next = self.shared.next_renewal.lock().unwrap();
        if now < *next {
            return false;
        }
        *next = now + RENEW_RETRY;
        true
    }

    /// Asks the chosen source, or the sources in order, and caches the token.
    async fn fetch(&self) -> Result<Arc<str>, TokenError> {
        let chosen = *self.shared.chosen.lock().unwrap();
        let order: Vec<usize> = match chosen {
            Some(i) => vec![i],
            None => (0..self.shared.sources.len()).collect(),
        };
        let mut tried = Vec::new();
        for i in order {
            let source = &self.shared.sources[i];
            match self.fetch_from(source).await {
                Ok(token) => {
                    tracing::debug!(
                        target: "wharf::storage::azure",
                        source = %source.describe(),
                        valid_s = token.expires.saturating_duration_since(Instant::now()).as_secs(),
                        "storage access token"
                    );
                    *self.shared.chosen.lock().unwrap() = Some(i);
                    let value = token.value.clone();
                    *self.shared.current.lock().unwrap() = Some(token);
                    return Ok(value);
                }
                Err(TokenError::Unavailable(why)) => {
                    tracing::debug!(
                        target: "wharf::storage::azure",
                        source = %source.describe(), reason = %why, "credential source unavailable"
                    );
                    tried.push(format!("{}: {why}", source.describe()));
                }
                Err(TokenError::Refused(why)) => {
                    return Err(TokenError::Refused(format!("{}: {why}", source.describe())))
                }
                Err(TokenError::Failed(why)) => {
                    return Err(TokenError::Failed(format!("{}: {why}", source.describe())))
                }
            }
        }
        Err(TokenError::Unavailable(format!(
            "no credential available; tried {}",
            tried.join("; ")
        )))
    }

    async fn fetch_from(&self, source: &TokenSource) -> Result<Token, TokenError> {
        match source {
            TokenSource::ClientSecret {
                authority,
                tenant,
                client_id,
                secret,
            } => {
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair("client_secret", secret)
                    .append_pair("scope", STORAGE_SCOPE)
                    .finish();
                self.entra_token(authority, tenant, form).await
            }
            TokenSource::ClientCertificate {
                authority,
                tenant,
                client_id,
                certificate,
                send_chain,
                ..
            } => {
                let certificate = certificate
                    .as_ref()
                    .map_err(|why| TokenError::Unavailable(why.clone()))?;
                // AD FS takes only RS256 assertions (MSAL's rule).
                let signing = if tenant.eq_ignore_ascii_case("adfs") {
                    Signing::Rs256
                } else {
                    Signing::Ps256
                };
                let assertion = certificate
                    .assertion(
                        &token_url(authority, tenant),
                        client_id,
                        signing,
                        *send_chain,
                        SystemTime::now(),
                    )
                    .map_err(TokenError::Failed)?;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    )
                    .append_pair("client_assertion", &assertion)
                    .append_pair("scope", STORAGE_SCOPE)
                    .finish();
                self.entra_token(authority, tenant, form).await
            }
            TokenSource::WorkloadIdentity {
                authority,
                tenant,
                client_id,
                token_file,
            } => {
                let assertion = tokio::fs::read_to_string(token_file).await.map_err(|e| {
                    TokenError::Unavailable(format!("{}: {e}", token_file.display()))
                })?;
                let form = form_urlencoded::Serializer::new(String::new())
                    .append_pair("grant_type", "client_credentials")
                    .append_pair("client_id", client_id)
                    .append_pair(
                        "client_assertion_type",
                        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                    )
                    .append_pair("client_assertion", assertion.trim())
                    .append_pair("scope", STORAGE_SCOPE)
                    .finish();
                self.entra_token(authority, tenant, form).await
            }
            TokenSource::AppService {
                endpoint,
                header,
                client_id,
            } => {
                let query = managed_identity_query("2019-08-01", client_id.as_deref());
                let sep = if endpoint.contains('?') { '&' } else { '?' };
                let request = ::http::Request::get(format!("{endpoint}{sep}{query}"))
                    .header("x-identity-header", header.as_str())
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| TokenError::Unavailable(format!("IDENTITY_ENDPOINT: {e}")))?;
                let (status, body) = self.send(request, CALL_TIMEOUT).await?;
                token_answer(status, &body)
            }
            TokenSource::Imds { origin, client_id } => {
                let query = managed_identity_query("2018-02-01", client_id.as_deref());
                let url = format!("{origin}/metadata/identity/oauth2/token?{query}");
                let request = ::http::Request::get(url)
                    .header("metadata", "true")
                    .body(Full::new(Bytes::new()))
                    .map_err(|e| TokenError::Unavailable(format!("{origin}: {e}")))?;
                // No answer in time: not on a VM with an identity.
                let (status, body) = match self.send(request, IMDS_PROBE_TIMEOUT).await {
                    Err(TokenError::Failed(why)) => return Err(TokenError::Unavailable(why)),
                    other => other?,
                };
                // IMDS without an identity assigned answers 400.
                if status == 400 {
                    return Err(TokenError::Unavailable(format!(
                        "no identity assigned: {}",
                        snippet(&body)
                    )));
                }
                token_answer(status, &body)
            }
            TokenSource::AzureCli { program } => cli_token(program).await,
        }
    }

    /// The client credentials grant at `<authority>/<tenant>/oauth2/v2.0/token`.
    async fn entra_token(
        &self,
        authority: &str,
        tenant: &str,
        form: String,
    ) -> Result<Token, TokenError> {
        let url = token_url(authority, tenant);
        let request = ::http::Request::post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(form)))
            .map_err(|e| TokenError::Refused(format!("token endpoint {url:?}: {e}")))?;
        let (status, body) = self.send(request, CALL_TIMEOUT).await?;
        token_answer(status, &body)
    }

    /// Sends one request; an answer of any status is returned with its (bounded) body.
    async fn send(
        &self,
        request: ::http::Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<(u16, Bytes), TokenError> {
        let uri = request.uri().clone();
        let call = async {
            let response = self.shared.http.request(request).await.map_err(|e| {
                let (_, message) = crate::storage::drivers::rest_io::transport_failure(&e);
                TokenError::Failed(format!("{uri}: {message}"))
            })?;
            let status = response.status().as_u16();
            let body = http_body_util::Limited::new(response.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| TokenError::Failed(format!("{uri}: reading the answer: {e}")))?
                .to_bytes();
            Ok((status, body))
        };
        let started = Instant::now();
        let result = match tokio::time::timeout(timeout, call).await {
            Ok(result) => result,
            Err(_) => Err(TokenError::Failed(format!(
                "{uri}: no answer within {timeout:?}"
            ))),
        };
        crate::ops::metrics::external_call(
            "azure",
            "GetToken",
            started.elapsed(),
            matches!(&result, Ok((s, _)) if *s < 500),
        );
        result
    }
}

/// Entra ID's token endpoint for `tenant` (also the audience of client assertions).
fn token_url(authority: &str, tenant: &str) -> String {
    format!("{authority}/{tenant}/oauth2/v2.0/token")
}

/// The query of a managed identity token request.
fn managed_identity_query(api_version: &str, client_id: Option<&str>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("api-version", api_version)
        .append_pair("resource", STORAGE_RESOURCE);
    if let Some(id) = client_id {
        query.append_pair("client_id", id);
    }
    query.finish()
}

/// The start of an answer, for an error message.
fn snippet(body: &[u8]) -> String {
    String::from_utf8_lossy(body).chars().take(300).collect()
}

/// A token endpoint's answer: `access_token` with `expires_in` (seconds) or `expires_on`
/// (Unix time), either as a number or a string. 4xx is a refusal; anything else that is not a
/// token is a failure.
fn token_answer(status: u16, body: &[u8]) -> Result<Token, TokenError> {
    if (400..500).contains(&status) && status != 408 && status != 429 {
        return Err(TokenError::Refused(format!(
            "HTTP {status}: {}",
            snippet(body)
        )));
    }
    if !(200..300).contains(&status) {
        return Err(TokenError::Failed(format!(
            "HTTP {status}: {}",
            snippet(body)
        )));
    }
    parse_token(body, SystemTime::now()).map_err(TokenError::Failed)
}

fn parse_token(body: &[u8], now: SystemTime) -> Result<Token, String> {
    let json: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("answer is not JSON: {e}"))?;
    let number = |name: &str| match json.get(name) {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let value = json
        .get("access_token")
        .or_else(|| json.get("accessToken"))
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
        .ok_or("answer has no access_token")?;
    let lifetime = if let Some(secs) = number("expires_in") {
        Duration::from_secs(secs)
    } else if let Some(at) = number("expires_on") {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        Duration::from_secs(at.saturating_sub(now))
    } else {
        return Err("answer has neither expires_in nor expires_on".into());
    };
    Ok(Token {
        value: Arc::from(value),
        expires: Instant::now() + lifetime,
    })
}

/// `az account get-access-token --resource https://storage.azure.com`, bounded in time (its
/// answer is small: it fits the pipe until the program exits).
async fn cli_token(program: &std::path::Path) -> Result<Token, TokenError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args([
            "account",
            "get-access-token",
            "--output",
            "json",
            "--resource",
            STORAGE_RESOURCE,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TokenError::Unavailable(e.to_string()))?;
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TokenError::Failed(format!(
                    "no answer within {CLI_TIMEOUT:?}"
                )));
            }
            Err(e) => return Err(TokenError::Failed(e.to_string())),
        }
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_end(&mut stdout);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_end(&mut stderr);
    }
    if !status.success() {
        // Not signed in, most often.
        return Err(TokenError::Unavailable(snippet(&stderr)));
    }
    parse_token(&stdout, SystemTime::now()).map_err(TokenError::Failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn names(chain: &[TokenSource]) -> Vec<&'static str> {
        chain
            .iter()
            .map(|s| match s {
                TokenSource::ClientSecret { .. } => "secret",
                TokenSource::ClientCertificate { .. } => "certificate",
                TokenSource::WorkloadIdentity { .. } => "workload",
                TokenSource::AppService { .. } => "appservice",
                TokenSource::Imds { .. } => "imds",
                TokenSource::AzureCli { .. } => "cli",
            })
            .collect()
    }

    #[test]
    fn chain_follows_azidentity_order_and_skips_what_is_not_set() {
        let (chain, skipped) = default_chain(&env(&[]));
        assert_eq!(names(&chain), ["imds"]);
        assert_eq!(skipped.len(), 3, "{skipped:?}");
        let all = env(&[
            ("AZURE_TENANT_ID", "t"),
            ("AZURE_CLIENT_ID", "c"),
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_FEDERATED_TOKEN_FILE", "/f"),
            ("AZURE_AUTHORITY_HOST", "http://127.0.0.1:9/"),
            ("IDENTITY_ENDPOINT", "http://127.0.0.1:8/msi"),
            ("IDENTITY_HEADER", "h"),
        ]);
        let (chain, _) = default_chain(&all);
        assert_eq!(names(&chain), ["secret", "workload", "appservice"]);
        match &chain[1] {
            TokenSource::WorkloadIdentity { authority, .. } => {
                assert_eq!(authority, "http://127.0.0.1:9")
            }
            other => panic!("{other:?}"),
        }
        assert!(!format!("{chain:?}").contains("\"s\""));
    }

    #[test]
    fn a_client_certificate_is_used_when_there_is_no_secret() {
        let ids = [("AZURE_TENANT_ID", "t"), ("AZURE_CLIENT_ID", "c")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let vars: Vec<(&str, &str)> = ids.iter().chain(extra).copied().collect();
            default_chain(&env(&vars))
        };
        let (chain, _) = with(&[
            ("AZURE_CLIENT_SECRET", "s"),
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent.pem"),
        ]);
        assert_eq!(names(&chain), ["secret", "imds"]);
        let (chain, _) = with(&[
            ("AZURE_CLIENT_CERTIFICATE_PATH", "/nonexistent.pem"),
            ("AZURE_CLIENT_SEND_CERTIFICATE_CHAIN", "TRUE"),
        ]);
        assert_eq!(names(&chain), ["certificate", "imds"]);
        match &chain[0] {
            TokenSource::ClientCertificate {
                certificate: Err(why),
                send_chain: true,
                ..
            } => assert!(
                why.starts_with("AZURE_CLIENT_CERTIFICATE_PATH: cannot read"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
        assert!(chain[0].describe().contains("/nonexistent.pem"));
        let (chain, skipped) = with(&[]);
        assert_eq!(names(&chain), ["imds"]);
        assert!(
            skipped[0].contains("AZURE_CLIENT_CERTIFICATE_PATH"),
            "{skipped:?}"
        );
    }

    #[test]
    fn token_answers_in_every_shape() {
        let now = SystemTime::now();
        let t = parse_token(br#"{"access_token":"a","expires_in":3600}"#, now).unwrap();
        assert_eq!(&*t.value, "a");
        assert!(!t.due(Instant::now()));
        let at = now.duration_since(UNIX_EPOCH).unwrap().as_secs() + 60;
        let body = format!(r#"{{"access_token":"b","expires_on":"{at}"}}"#);
        let t = parse_token(body.as_bytes(), now).unwrap();
        assert!(t.due(Instant::now()) && !t.expired(Instant::now()));
        let t = parse_token(br#"{"accessToken":"c","expires_in":"5"}"#, now).unwrap();
        assert!(t.expired(Instant::now()));
        assert!(parse_token(br#"{"access_token":"a"}"#, now).is_err());
        assert!(parse_token(b"<html>", now).is_err());
    }

    #[test]
    fn refusals_and_failures_are_told_apart() {
        assert!(matches!(
            token_answer(401, br#"{"error":"invalid_client"}"#),
            Err(TokenError::Refused(m)) if m.contains("invalid_client")
        ));
        assert!(matches!(token_answer(503, b""), Err(TokenError::Failed(_))));
        assert!(matches!(token_answer(429, b""), Err(TokenError::Failed(_))));
        assert!(token_answer(200, br#"{"access_token":"a","expires_in":60}"#).is_ok());
    }
}
