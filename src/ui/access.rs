//! Access decisions for the console, made by the registry's own authentication: the console
//! presents the logged-in user's credentials (or none) to htpasswd, or asks the configured token
//! realm for a token scoped to what a page shows, exactly as a registry client would, and has
//! the registry's verifier read it. The realm is this node's own issuer (asked in-process) or any
//! other token server (asked over HTTP, see `realm`).

use http::{HeaderMap, HeaderValue};

use crate::api::App;
use crate::auth::{Access, Authenticator, Grant, PeerAddr};

use super::realm::{self, RealmAnswer};
use super::session::Login;

/// Scopes asked for in one token request (a page of repositories at most).
pub const MAX_SCOPES: usize = 200;

/// Why the console cannot decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// The credentials were refused, or anonymous access is not admitted: log in.
    LoginNeeded,
    /// The token realm could not be reached or answered something the console cannot use.
    Issuer(String),
}

/// Where the console asks for tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRealm {
    /// No token authentication.
    None,
    /// This node's own issuer, asked in-process (the viewer's address stays known to `ip` rules).
    BuiltIn,
    /// The configured realm's URL, asked over HTTP.
    Remote(String),
}

impl TokenRealm {
    /// The realm for a request with `headers`: the built-in issuer when the configured realm
    /// names its path on the host the request came to (or challenges auto-redirect to this
    /// host), else the configured realm's URL. Never a URL taken from the request's headers:
    /// the user's credentials go to the configured realm only.
    pub fn of(app: &App, headers: &HeaderMap) -> TokenRealm {
        let Some(Authenticator::Token(verifier)) = &app.auth else {
            return TokenRealm::None;
        };
        let url = verifier.configured_realm();
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok());
        match &app.issuer {
            Some(issuer)
                if verifier.autoredirects() || names_local_path(url, host, issuer.path()) =>
            {
                TokenRealm::BuiltIn
            }
            _ => TokenRealm::Remote(url.to_string()),
        }
    }
}

/// True when `realm` is `path` on `host` (any scheme, no query).
fn names_local_path(realm: &str, host: Option<&str>, path: &str) -> bool {
    let Some((_, rest)) = realm.split_once("://") else {
        return false;
    };
    let (authority, realm_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority)) && realm_path == path
}

/// Who is looking at the console, and from where.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The login from the cookie, if any.
    pub login: Option<Login>,
    /// The client's address, for ACL rules that match on it.
    pub peer: Option<PeerAddr>,
    /// Where tokens come from.
    pub realm: TokenRealm,
}

impl Viewer {
    /// The user's name, if logged in.
    pub fn user(&self) -> Option<&str> {
        self.login.as_ref().map(|l| l.user.as_str())
    }
}

fn basic_headers(login: Option<&Login>) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Some(value) = login.and_then(|l| HeaderValue::from_str(&l.basic()).ok()) {
        h.insert(http::header::AUTHORIZATION, value);
    }
    h
}

/// For each of `wanted`, whether `viewer` has it. Without `auth` everything is allowed.
pub async fn permitted(
    app: &App,
    viewer: &Viewer,
    wanted: &[Access],
) -> Result<Vec<bool>, AccessError> {
    let Some(auth) = &app.auth else {
        return Ok(vec![true; wanted.len()]);
    };
    let grant = match auth {
        Authenticator::Token(_) => {
            if wanted.is_empty() {
                // Only the credentials are checked: a token without scopes.
                token_grant(app, auth, viewer, &[]).await?;
                return Ok(Vec::new());
            }
            let mut out = Vec::with_capacity(wanted.len());
            for chunk in wanted.chunks(MAX_SCOPES) {
                let grant = token_grant(app, auth, viewer, chunk).await?;
                out.extend(chunk.iter().map(|a| grant.permits(a)));
            }
            return Ok(out);
        }
        // htpasswd (and silly) authenticate without scopes: a valid login may do everything.
        _ => auth
            .authorize(&basic_headers(viewer.login.as_ref()), &[], &[])
            .await
            .map_err(|_| AccessError::LoginNeeded)?,
    };
    Ok(wanted.iter().map(|a| grant.permits(a)).collect())
}

/// Whether `viewer`'s credentials are accepted at all.
pub async fn check_login(app: &App, viewer: &Viewer) -> Result<(), AccessError> {
    permitted(app, viewer, &[]).await.map(|_| ())
}

/// The query of a token request, as docker sends it: `service`, `account`, then each `scope`.
fn token_query(service: &str, account: Option<&str>, scopes: &[Access]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair("service", service);
    if let Some(account) = account {
        query.append_pair("account", account);
    }
    query
        .extend_pairs(scopes.iter().map(|a| ("scope", a.to_string())))
        .finish()
}

/// Asks the realm for a token with `scopes`, then has the registry's verifier read it.
async fn token_grant(
    app: &App,
    auth: &Authenticator,
    viewer: &Viewer,
    scopes: &[Access],
) -> Result<Grant, AccessError> {
    let Authenticator::Token(verifier) = auth else {
        return Err(AccessError::Issuer("auth.token is not configured".into()));
    };
    let query = token_query(verifier.service(), viewer.user(), scopes);
    let headers = basic_headers(viewer.login.as_ref());
    let token = match (&viewer.realm, &app.issuer) {
        (TokenRealm::BuiltIn, Some(issuer)) => {
            let caller = crate::auth::issuer::Caller {
                peer: viewer.peer.map(|p| p.0),
                headers: &headers,
            };
            let answer = issuer.get(&query, caller).await;
            if answer.status == http::StatusCode::UNAUTHORIZED {
                return Err(AccessError::LoginNeeded);
            }
            answer
                .body
                .get("token")
                .and_then(|t| t.as_str())
                .map(str::to_string)
                .ok_or_else(|| {
                    AccessError::Issuer(format!("token request answered {}", answer.status))
                })?
        }
        (TokenRealm::Remote(url), _) => {
            let authorization = headers
                .get(http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match realm::fetch(url, &query, authorization).await {
                Ok(RealmAnswer::Token(t)) => t,
                Ok(RealmAnswer::Refused) => return Err(AccessError::LoginNeeded),
                Err(why) => return Err(AccessError::Issuer(why)),
            }
        }
        _ => {
            return Err(AccessError::Issuer(
                "no token realm for this request".into(),
            ))
        }
    };
    let mut bearer = HeaderMap::new();
    let value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| AccessError::Issuer("token is not a header value".into()))?;
    bearer.insert(http::header::AUTHORIZATION, value);
    auth.authorize(&bearer, &[], &[]).await.map_err(|d| {
        AccessError::Issuer(format!(
            "the registry refused the issuer's token: {}",
            d.challenge
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_issuers_path_on_this_host_is_local() {
        let local = |realm, host| names_local_path(realm, host, "/auth/token");
        assert!(local("http://r:5000/auth/token", Some("r:5000")));
        assert!(local("https://R:5000/auth/token", Some("r:5000")));
        assert!(!local("http://r:5001/auth/token", Some("r:5000")));
        assert!(!local("http://r:5000/auth", Some("r:5000")));
        assert!(!local("http://r:5000/auth/token?x=1", Some("r:5000")));
        assert!(!local("http://r:5000/auth/token", None));
        assert!(!local("/auth/token", Some("r:5000")));
    }
}
