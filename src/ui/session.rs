//! The console's login cookie: the credentials the console presents to the registry's own
//! authentication on the user's behalf, with an expiry, signed with `http.secret` so every
//! node of a cluster accepts it and nobody can extend it.
//!
//! The cookie holds what a browser would otherwise resend on every request with HTTP Basic:
//! it is `HttpOnly`, `SameSite=Strict`, limited to `ui.path`, and `Secure` behind TLS.

use base64::Engine as _;
use hmac::{KeyInit, Mac};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The cookie's name.
pub const COOKIE: &str = "wharf_console";

/// A logged-in user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// User name.
    pub user: String,
    /// Password, presented to htpasswd or to the token realm.
    pub password: String,
}

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

fn mac(secret: &[u8], payload: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(payload.as_bytes());
    mac
}

impl Login {
    /// The cookie value, valid until `expires` (Unix seconds).
    pub fn seal(&self, secret: &[u8], expires: u64) -> String {
        let payload = format!(
            "{}.{}.{expires}",
            B64.encode(&self.user),
            B64.encode(&self.password)
        );
        let tag = B64.encode(mac(secret, &payload).finalize().into_bytes());
        format!("{payload}.{tag}")
    }

    /// The login a cookie value holds, if its signature checks and it has not expired at `now`.
    pub fn open(value: &str, secret: &[u8], now: u64) -> Option<Login> {
        let (payload, tag) = value.rsplit_once('.')?;
        let tag = B64.decode(tag).ok()?;
        mac(secret, payload).verify_slice(&tag).ok()?;
        let mut parts = payload.split('.');
        let user = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
        let password = String::from_utf8(B64.decode(parts.next()?).ok()?).ok()?;
        let expires: u64 = parts.next()?.parse().ok()?;
        (parts.next().is_none() && now < expires).then_some(Login { user, password })
    }

    /// The `Authorization` header value of HTTP Basic.
    pub fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_logins_open_until_they_expire() {
        let login = Login {
            user: "alice".into(),
            password: "p.w:d=é".into(),
        };
        let sealed = login.seal(b"secret", 100);
        assert_eq!(Login::open(&sealed, b"secret", 99), Some(login.clone()));
        assert_eq!(Login::open(&sealed, b"secret", 100), None);
        assert_eq!(Login::open(&sealed, b"other", 99), None);
        // Changing the expiry breaks the signature.
        let forged = sealed.replace(".100.", ".999.");
        assert_eq!(Login::open(&forged, b"secret", 99), None);
        assert_eq!(Login::open("", b"secret", 0), None);
        assert_eq!(Login::open("a.b.c.d", b"secret", 0), None);
    }

    #[test]
    fn cookies_by_name() {
        assert_eq!(cookie("a=1; wharf_console=x.y; b=2", COOKIE), Some("x.y"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
