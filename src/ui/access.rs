//! Access decisions for the console, made by the registry's own authentication: the console
//! presents the logged-in user's credentials (or none) to htpasswd, or asks the built-in token
//! issuer for a token scoped to what a page shows, exactly as a registry client would.

use http::{HeaderMap, HeaderValue};

use crate::api::App;
use crate::auth::{Access, Authenticator, Grant, PeerAddr};

use super::session::Login;

/// Scopes asked for in one token request (a page of repositories at most).
pub const MAX_SCOPES: usize = 200;

/// Why the console cannot decide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// The credentials were refused, or anonymous access is not admitted: log in.
    LoginNeeded,
    /// The token issuer answered something the console cannot use.
    Issuer(String),
}

/// Who is looking at the console, and from where.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The login from the cookie, if any.
    pub login: Option<Login>,
    /// The client's address, for ACL rules that match on it.
    pub peer: Option<PeerAddr>,
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

/// Whether the login's credentials are accepted at all.
pub async fn check_login(app: &App, login: &Login) -> Result<(), AccessError> {
    let viewer = Viewer {
        login: Some(login.clone()),
        peer: None,
    };
    permitted(app, &viewer, &[]).await.map(|_| ())
}

/// Asks the built-in issuer for a token with `scopes`, then has the registry's verifier read it.
async fn token_grant(
    app: &App,
    auth: &Authenticator,
    viewer: &Viewer,
    scopes: &[Access],
) -> Result<Grant, AccessError> {
    let issuer = app.issuer.as_ref().ok_or_else(|| {
        AccessError::Issuer(
            "auth.token without tokenissuer: the console needs the built-in issuer".into(),
        )
    })?;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(scopes.iter().map(|a| ("scope", a.to_string())))
        .finish();
    let headers = basic_headers(viewer.login.as_ref());
    let caller = crate::auth::issuer::Caller {
        peer: viewer.peer.map(|p| p.0),
        headers: &headers,
    };
    let answer = issuer.get(&query, caller).await;
    if answer.status == http::StatusCode::UNAUTHORIZED {
        return Err(AccessError::LoginNeeded);
    }
    let token = answer
        .body
        .get("token")
        .and_then(|t| t.as_str())
        .ok_or_else(|| AccessError::Issuer(format!("token request answered {}", answer.status)))?;
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
