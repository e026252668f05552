//! Token requests to the configured realm over HTTP, as `docker login` makes them: a GET with
//! `service`, `account` and `scope` parameters and the user's Basic credentials. Redirects are
//! not followed, so the credentials go to the configured realm and nowhere else.

use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

/// Bound on one token request, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest token answer read (a token with its certificate chain is a few KiB).
const MAX_ANSWER: usize = 1024 * 1024;

type RealmClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// One pooled client for every token request the console makes.
fn client() -> &'static RealmClient {
    static CLIENT: OnceLock<RealmClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        crate::tls_client::https_client("the token realm", Some(Duration::from_secs(5)))
    })
}

/// What a realm answered.
#[derive(Debug, PartialEq, Eq)]
pub enum RealmAnswer {
    /// The token.
    Token(String),
    /// 401: the credentials were refused (or anonymous access is not admitted).
    Refused,
}

/// The URL of a token request: `realm` with `query` appended to any query it already has.
pub fn request_url(realm: &str, query: &str) -> String {
    if query.is_empty() {
        realm.to_string()
    } else if realm.contains('?') {
        format!("{realm}&{query}")
    } else {
        format!("{realm}?{query}")
    }
}

/// The token in a realm's JSON answer: `token`, else OAuth2's `access_token`.
pub fn token_of(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    ["token", "access_token"]
        .iter()
        .find_map(|k| v.get(k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
        .map(str::to_string)
}

/// Asks `realm` for a token with `query` (already encoded), sending `authorization` if any.
/// The error names the realm and says what went wrong, for the sign-in error page.
pub async fn fetch(
    realm: &str,
    query: &str,
    authorization: Option<&str>,
) -> Result<RealmAnswer, String> {
    let url = request_url(realm, query);
    let mut req = Request::get(&url).header(header::ACCEPT, "application/json");
    if let Some(a) = authorization {
        req = req.header(header::AUTHORIZATION, a);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("the realm {realm} is not a usable URL: {e}"))?;
    let call = async {
        let resp = client()
            .request(req)
            .await
            .map_err(|e| format!("cannot reach the sign-in service at {realm}: {e}"))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| format!("the sign-in service at {realm} broke off its answer: {e}"))?
            .to_bytes();
        Ok::<_, String>((status, body))
    };
    let (status, body) = tokio::time::timeout(TIMEOUT, call)
        .await
        .map_err(|_| format!("the sign-in service at {realm} did not answer in time"))??;
    match status {
        StatusCode::UNAUTHORIZED => Ok(RealmAnswer::Refused),
        s if s.is_success() => token_of(&body)
            .map(RealmAnswer::Token)
            .ok_or_else(|| format!("the sign-in service at {realm} answered without a token")),
        s if s.is_redirection() => Err(format!(
            "the sign-in service at {realm} answered {s}; redirects are not followed"
        )),
        s => Err(format!("the sign-in service at {realm} answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_join_the_realms_own() {
        assert_eq!(request_url("http://a/t", ""), "http://a/t");
        assert_eq!(request_url("http://a/t", "scope=x"), "http://a/t?scope=x");
        assert_eq!(
            request_url("http://a/t?v=1", "scope=x"),
            "http://a/t?v=1&scope=x"
        );
    }

    #[test]
    fn tokens_from_either_field() {
        assert_eq!(token_of(br#"{"token":"a"}"#), Some("a".into()));
        assert_eq!(token_of(br#"{"access_token":"b"}"#), Some("b".into()));
        assert_eq!(
            token_of(br#"{"token":"","access_token":"b"}"#),
            Some("b".into())
        );
        assert_eq!(token_of(br#"{"errors":[]}"#), None);
        assert_eq!(token_of(b"<html>"), None);
    }
}
