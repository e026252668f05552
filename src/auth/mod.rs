//! Who may do what: request credentials + required access -> decision.

pub mod htpasswd;

use std::fmt;

use http::HeaderMap;

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
}

impl Authenticator {
    /// Checks the request's credentials for `access`; the user name on success.
    pub async fn authorize(
        &self,
        headers: &HeaderMap,
        access: &[Access],
    ) -> Result<Option<String>, Denial> {
        let authorization = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        match self {
            Authenticator::Silly { realm, service } => match authorization {
                Some(_) => Ok(Some("silly".to_string())),
                None => {
                    let mut challenge = format!("Bearer realm={realm:?},service={service:?}");
                    if !access.is_empty() {
                        let scope: Vec<String> = access.iter().map(Access::to_string).collect();
                        challenge.push_str(&format!(",scope={:?}", scope.join(" ")));
                    }
                    Err(Denial {
                        challenge,
                        access: access.to_vec(),
                    })
                }
            },
            Authenticator::Htpasswd(h) => {
                let user = match authorization.and_then(htpasswd::parse_basic) {
                    Some((user, password)) => h.verify(&user, &password).await.then_some(user),
                    None => None,
                };
                user.map(Some).ok_or_else(|| Denial {
                    challenge: format!("Basic realm={:?}", h.realm()),
                    access: access.to_vec(),
                })
            }
        }
    }
}
