//! Upstream authentication challenges (`WWW-Authenticate`) and where credentials may go:
//! pure functions.

/// A challenge an upstream answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Basic realm=...`.
    Basic,
    /// `Bearer realm=...,service=...,scope=...`: get a token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
}

/// Parses one `WWW-Authenticate` value; `None` for schemes other than Basic and Bearer or a
/// Bearer challenge without a realm.
pub fn parse(value: &str) -> Option<Challenge> {
    let value = value.trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => {
            let params = parameters(rest);
            let get = |k: &str| {
                params
                    .iter()
                    .find(|(name, _)| name.eq_ignore_ascii_case(k))
                    .map(|(_, v)| v.clone())
            };
            Some(Challenge::Bearer {
                realm: get("realm").filter(|r| !r.is_empty())?,
                service: get("service"),
                scope: get("scope"),
            })
        }
        _ => None,
    }
}

/// `name=value` pairs, values quoted (with `\` escapes) or bare, separated by commas.
fn parameters(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    // Bounded by the text: every round consumes at least one character or ends.
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c == ',' {
                break;
            }
            name.push(c);
            chars.next();
        }
        if chars.next() != Some('=') {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((name.trim().to_string(), value.trim().to_string()));
    }
}

/// Scheme, host and port of an absolute http(s) URL, lower-cased, the port made explicit.
pub fn origin(url: &str) -> Option<(String, String, u16)> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let host = uri.host()?.to_ascii_lowercase();
    Some((scheme, host, uri.port_u16().unwrap_or(default_port)))
}

/// Whether the upstream's credentials may be sent to token `realm`: it is on the upstream's
/// own host and port (any scheme), or starts with one of the explicitly `allowed` URLs.
pub fn may_receive_credentials(realm: &str, upstream: &str, allowed: &[String]) -> bool {
    let Some((_, realm_host, realm_port)) = origin(realm) else {
        return false;
    };
    if let Some((_, host, port)) = origin(upstream) {
        if (realm_host.as_str(), realm_port) == (host.as_str(), port) {
            return true;
        }
    }
    let path_of = |url: &str| {
        url.parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_string())
            .unwrap_or_default()
    };
    let realm_path = path_of(realm);
    allowed.iter().any(|a| {
        let a_path = path_of(a);
        origin(a) == origin(realm)
            && (realm_path == a_path || realm_path.starts_with(&format!("{a_path}/")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic() {
        assert_eq!(parse("Basic realm=\"Registry\""), Some(Challenge::Basic));
        assert_eq!(
            parse(
                r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#
            ),
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            })
        );
        assert_eq!(
            parse("bearer realm=http://a/t, service=s"),
            Some(Challenge::Bearer {
                realm: "http://a/t".into(),
                service: Some("s".into()),
                scope: None,
            })
        );
        assert_eq!(
            parse(r#"Bearer realm="a\"b""#),
            Some(Challenge::Bearer {
                realm: "a\"b".into(),
                service: None,
                scope: None
            })
        );
        assert_eq!(parse("Bearer service=x"), None);
        assert_eq!(parse("Negotiate abc"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("Bearer realm"), None);
    }

    #[test]
    fn credentials_go_only_to_the_upstream_host_or_listed_realms() {
        let up = "https://registry.example:5000";
        assert!(may_receive_credentials(
            "https://registry.example:5000/token",
            up,
            &[]
        ));
        assert!(may_receive_credentials(
            "http://REGISTRY.example:5000/auth?x=1",
            up,
            &[]
        ));
        assert!(!may_receive_credentials(
            "https://registry.example/token",
            up,
            &[]
        ));
        assert!(!may_receive_credentials(
            "https://evil.example:5000/token",
            up,
            &[]
        ));
        assert!(!may_receive_credentials(
            "https://registry.example.evil:5000/token",
            up,
            &[]
        ));
        assert!(!may_receive_credentials(
            "ftp://registry.example:5000/token",
            up,
            &[]
        ));
        assert!(!may_receive_credentials("/token", up, &[]));
        let listed = vec!["https://auth.example/token".to_string()];
        assert!(may_receive_credentials(
            "https://auth.example/token",
            up,
            &listed
        ));
        assert!(may_receive_credentials(
            "https://auth.example:443/token/v2",
            up,
            &listed
        ));
        assert!(!may_receive_credentials(
            "https://auth.example/tokenx",
            up,
            &listed
        ));
        assert!(!may_receive_credentials(
            "http://auth.example/token",
            up,
            &listed
        ));
        assert!(!may_receive_credentials(
            "https://auth.example.evil/token",
            up,
            &listed
        ));
    }
}
