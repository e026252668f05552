//! The `Authorization` header: `Basic base64(user:password)` or `Bearer <token>`.

use base64::Engine as _;

/// Longest `Authorization` value considered (a JWT with an `x5c` chain fits easily).
const MAX_AUTHORIZATION_LEN: usize = 32 * 1024;

/// Credentials a request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// HTTP Basic.
    Basic {
        /// User name (before the first `:`).
        user: String,
        /// Password (everything after it).
        password: String,
    },
    /// A bearer token (RFC 6750 `token68` characters only).
    Bearer(String),
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

/// Parses an `Authorization` value; `None` for anything malformed or of another scheme.
pub fn parse_authorization(value: &str) -> Option<Credentials> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return None;
    }
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && is_token68(rest) {
        Some(Credentials::Bearer(rest.to_string()))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_both_schemes() {
        assert_eq!(
            parse_authorization("Basic dXNlcjpwYTpzcw=="),
            Some(Credentials::Basic {
                user: "user".into(),
                password: "pa:ss".into()
            })
        );
        assert_eq!(
            parse_authorization("bearer  abc.def-_.ghi"),
            Some(Credentials::Bearer("abc.def-_.ghi".into()))
        );
        for bad in [
            "",
            "Basic",
            "Basic !!!",
            "Basic dXNlcg==",
            "Bearer",
            "Bearer a b",
            "Bearer \"x\"",
            "Digest x",
        ] {
            assert_eq!(parse_authorization(bad), None, "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn never_panics(value in "\\PC{0,300}") {
            let _ = parse_authorization(&value);
        }

        #[test]
        fn basic_round_trips(user in "[^:\\x00]{0,20}", password in "\\PC{0,40}") {
            let header = format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            );
            prop_assert_eq!(
                parse_authorization(&header),
                Some(Credentials::Basic { user, password })
            );
        }
    }
}
