//! Who may do what: request credentials + required access -> decision.

pub mod acl;
pub mod credentials;
pub mod htpasswd;
pub mod issuer;
pub mod keys;
pub mod pattern;
pub mod policy;
pub mod scope;
pub mod token;

use std::fmt;

use http::HeaderMap;

/// The connection's peer address, kept with a request for rules that match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub std::net::IpAddr);

/// One action on one resource, as in a token scope (`repository:foo:pull`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    /// `repository` or `registry`.
    pub kind: &'static str,
    /// Repository name, or `catalog`.
    pub name: String,
    /// `pull`, `push`, `delete` or `*`.
    pub action: &'static str,
}

impl Access {
    /// Access to a repository.
    pub fn repository(name: &str, action: &'static str) -> Self {
        Self {
            kind: "repository",
            name: name.to_string(),
            action,
        }
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.action)
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// The `WWW-Authenticate` challenge.
    pub challenge: String,
    /// What was asked for.
    pub access: Vec<Access>,
}

/// What an authorized request may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The authenticated user, when there is one.
    pub user: Option<String>,
    /// `None` when the scheme authenticates without scopes (htpasswd, silly): every access.
    scopes: Option<Vec<scope::ResourceActions>>,
}

impl Grant {
    /// A grant of every access to `user`.
    pub fn everything(user: Option<String>) -> Self {
        Self { user, scopes: None }
    }

    /// True when this grant allows `access`.
    pub fn permits(&self, access: &Access) -> bool {
        match &self.scopes {
            None => true,
            Some(granted) => scope::permits(granted, access),
        }
    }

    /// The repositories this grant allows `action` on, at most `limit`;
    /// `None` when it is not limited to a list (every repository).
    pub fn repositories_allowing(&self, action: &str, limit: usize) -> Option<Vec<String>> {
        let granted = self.scopes.as_ref()?;
        let mut names: Vec<String> = Vec::new();
        for r in granted {
            if names.len() >= limit {
                break;
            }
            if r.kind == "repository"
                && r.actions.iter().any(|a| a == action || a == "*")
                && !names.contains(&r.name)
            {
                names.push(r.name.clone());
            }
        }
        Some(names)
    }
}

/// The configured access controller.
pub enum Authenticator {
    /// `auth.silly`: any `Authorization` header passes (development only).
    Silly {
        /// Challenge realm.
        realm: String,
        /// Challenge service.
        service: String,
    },
    /// `auth.htpasswd`: HTTP Basic against a bcrypt file.
    Htpasswd(htpasswd::Htpasswd),
    /// `auth.token`: bearer JWTs.
    Token(token::TokenVerifier),
}

impl Authenticator {
    /// Checks the request's credentials for `access`. A refusal challenges
    /// for `access` plus `also_ask`: what the request can use without
    /// needing it (pull on a mount's source), so that clients taking their
    /// scopes from the challenge come back with a token for both.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        access: &[Access],
        also_ask: &[Access],
    ) -> Result<Grant, Denial> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let asked: Vec<Access> = access.iter().chain(also_ask).cloned().collect();
        let deny = |challenge: String| Denial {
            challenge,
            access: asked.clone(),
        };
        match self {
            Authenticator::Silly { realm, service } => match authorization {
                Some(_) => Ok(Grant::everything(Some("silly".to_string()))),
                None => {
                    let mut challenge = format!("Bearer realm={realm:?},service={service:?}");
                    if !access.is_empty() {
                        challenge.push_str(&format!(",scope={:?}", scope::challenge_scope(&asked)));
                    }
                    Err(deny(challenge))
                }
            },
            Authenticator::Htpasswd(h) => {
                let user = match authorization.and_then(credentials::parse_authorization) {
                    Some(credentials::Credentials::Basic { user, password }) => {
                        h.verify(&user, &password).await.then_some(user)
                    }
                    _ => None,
                };
                user.map(|u| Grant::everything(Some(u)))
                    .ok_or_else(|| deny(format!("Basic realm={:?}", h.realm())))
            }
            Authenticator::Token(verifier) => {
                let token = match authorization.and_then(credentials::parse_authorization) {
                    Some(credentials::Credentials::Bearer(t)) => t,
                    _ => return Err(deny(verifier.challenge(headers, &asked, None))),
                };
                let claims = match verifier.verify(&token) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::info!(error = %e, "bearer token refused");
                        return Err(deny(verifier.challenge(
                            headers,
                            &asked,
                            Some("invalid_token"),
                        )));
                    }
                };
                if !access.iter().all(|a| claims.permits(a)) {
                    return Err(deny(verifier.challenge(
                        headers,
                        &asked,
                        Some("insufficient_scope"),
                    )));
                }
                Ok(Grant {
                    user: Some(claims.sub).filter(|s| !s.is_empty()),
                    scopes: Some(claims.access),
                })
            }
        }
    }
}
