//! `auth.token`: bearer JWTs from a token server (external, or this registry's own issuer).
//!
//! The signing key is found as distribution does: an `x5c` chain checked against
//! `rootcertbundle`, else a `jwk` header that must equal a trusted key, else the `kid`, which may
//! be a JWKS `kid`, an RFC 7638 thumbprint (registry 3) or a libtrust key ID (registry 2.x auth
//! servers). Claims: `iss`, `aud` (string or list), `exp` and `nbf` with 60 s of leeway, and the
//! `access` list must cover every access the request needs.

use std::path::Path;
use std::str::FromStr;

use base64::Engine as _;
use http::HeaderMap;
use jsonwebtoken::{Algorithm, Validation};
use serde::{Deserialize, Deserializer, Serialize};

use super::keys::{KeyError, TrustedKey, TrustedKeys};
use super::scope::{null_default, permits, ResourceActions};
use super::Access;
use crate::config::UNVERIFIABLE_SIGNING_ALGORITHMS;

/// Clock skew allowed on `exp` and `nbf`, in seconds (distribution's value).
pub const LEEWAY_SECONDS: i64 = 60;

/// The claims of a registry token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer.
    #[serde(default, deserialize_with = "null_default")]
    pub iss: String,
    /// Subject: the user name.
    #[serde(default, deserialize_with = "null_default")]
    pub sub: String,
    /// Audiences (a string or a list in JSON).
    #[serde(default, deserialize_with = "audience")]
    pub aud: Vec<String>,
    /// Expiry (seconds since the epoch).
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    /// Not before.
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    /// Issued at (not checked).
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    /// Token ID (not checked).
    #[serde(default, deserialize_with = "null_default")]
    pub jti: String,
    /// What the token grants.
    #[serde(default, deserialize_with = "null_default")]
    pub access: Vec<ResourceActions>,
}

fn audience<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(s)) => vec![s],
        Some(Aud::Many(v)) => v,
    })
}

/// A JSON number of seconds; fractions are dropped, absurd values refused.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(v) if v.is_finite() && v.abs() < 1e15 => Ok(Some(v.floor() as i64)),
        Some(_) => Err(serde::de::Error::custom("date out of range")),
    }
}

/// Why claims were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    /// The payload is not a claims object.
    #[error("malformed claims: {0}")]
    Malformed(String),
    /// `iss` differs from `auth.token.issuer`.
    #[error("token issuer {0:?} is not trusted")]
    Issuer(String),
    /// `aud` does not hold `auth.token.service`.
    #[error("token audience does not include this service")]
    Audience,
    /// No `exp`, or past it.
    #[error("token expired")]
    Expired,
    /// Before `nbf`.
    #[error("token not yet valid")]
    NotYetValid,
}

impl Claims {
    /// Parses a JWT payload.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ClaimsError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| ClaimsError::Malformed(e.to_string()))?;
        Self::from_value(value)
    }

    /// Reads claims from a JSON object (anything else is refused).
    pub fn from_value(value: serde_json::Value) -> Result<Self, ClaimsError> {
        if !value.is_object() {
            return Err(ClaimsError::Malformed(
                "claims are not a JSON object".into(),
            ));
        }
        serde_json::from_value(value).map_err(|e| ClaimsError::Malformed(e.to_string()))
    }

    /// Checks `iss`, `aud`, `exp` and `nbf` (with [`LEEWAY_SECONDS`]) at time `now`.
    pub fn check(&self, issuer: &str, service: &str, now: i64) -> Result<(), ClaimsError> {
        if self.iss != issuer {
            return Err(ClaimsError::Issuer(self.iss.chars().take(100).collect()));
        }
        if !self.aud.iter().any(|a| a == service) {
            return Err(ClaimsError::Audience);
        }
        match self.exp {
            Some(exp) if now <= exp.saturating_add(LEEWAY_SECONDS) => {}
            _ => return Err(ClaimsError::Expired),
        }
        if let Some(nbf) = self.nbf {
            if now < nbf.saturating_sub(LEEWAY_SECONDS) {
                return Err(ClaimsError::NotYetValid);
            }
        }
        Ok(())
    }

    /// True when the `access` claim allows `access`.
    pub fn permits(&self, access: &Access) -> bool {
        permits(&self.access, access)
    }
}

/// Why a token was refused (all answered with `error="invalid_token"`).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// Not a JWS compact serialization, or an unknown/`none` algorithm.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// Algorithm not in `signingalgorithms`, or not one the key can verify.
    #[error("signing algorithm {0:?} not accepted")]
    Algorithm(String),
    /// No `x5c`, `jwk` or `kid` names a trusted key.
    #[error("untrusted key{0}")]
    UntrustedKey(String),
    /// The `x5c` chain is not trusted.
    #[error(transparent)]
    Chain(#[from] KeyError),
    /// The signature does not verify.
    #[error("invalid signature: {0}")]
    Signature(String),
    /// A claim was refused.
    #[error(transparent)]
    Claims(#[from] ClaimsError),
}

/// Every asymmetric algorithm; HS* is never accepted (there are no shared secrets here).
const ASYMMETRIC: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses `auth.token.signingalgorithms`; empty means every asymmetric algorithm.
pub fn parse_algorithms(names: &[String]) -> Result<Vec<Algorithm>, String> {
    if names.is_empty() {
        return Ok(ASYMMETRIC.to_vec());
    }
    let mut out = Vec::new();
    for name in names {
        // Listed, they admit no token (see the constant); the loader warns about them.
        if UNVERIFIABLE_SIGNING_ALGORITHMS.contains(&name.as_str()) {
            continue;
        }
        let alg = Algorithm::from_str(name).map_err(|_| format!("unknown algorithm {name:?}"))?;
        if !ASYMMETRIC.contains(&alg) {
            return Err(format!("unknown algorithm {name:?}"));
        }
        out.push(alg);
    }
    Ok(out)
}

/// Settings of `auth.token`.
pub struct TokenSettings<'a> {
    /// `realm`.
    pub realm: &'a str,
    /// `service`.
    pub service: &'a str,
    /// `issuer`.
    pub issuer: &'a str,
    /// `rootcertbundle`.
    pub rootcertbundle: Option<&'a Path>,
    /// `jwks`.
    pub jwks: Option<&'a Path>,
    /// `autoredirectpath` when `autoredirect` is on.
    pub autoredirect: Option<&'a str>,
    /// `signingalgorithms`.
    pub signingalgorithms: &'a [String],
    /// Scheme of this listener (`https` with TLS) for auto-redirected realms.
    pub scheme: &'static str,
}

/// Why `auth.token` could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TokenSetupError {
    /// A key file.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// `signingalgorithms`.
    #[error("auth.token.signingalgorithms: {0}")]
    Algorithms(String),
    /// Nothing trusted at all.
    #[error("auth.token: no trusted key (set rootcertbundle or jwks)")]
    NoKeys,
}

/// Verifies bearer tokens.
pub struct TokenVerifier {
    realm: String,
    service: String,
    issuer: String,
    keys: TrustedKeys,
    algorithms: Vec<Algorithm>,
    autoredirect: Option<String>,
    scheme: &'static str,
}

impl TokenVerifier {
    /// Loads the trusted keys; `extra` certificates (this node's own issuer) are trusted too.
    pub fn new(
        s: &TokenSettings<'_>,
        extra: &[rustls::pki_types::CertificateDer<'static>],
    ) -> Result<Self, TokenSetupError> {
        let mut keys = TrustedKeys::load(s.rootcertbundle, s.jwks)?;
        for cert in extra {
            keys.add_certificate(cert.clone())?;
        }
        if keys.is_empty() {
            return Err(TokenSetupError::NoKeys);
        }
        Ok(Self {
            realm: s.realm.to_string(),
            service: s.service.to_string(),
            issuer: s.issuer.to_string(),
            keys,
            algorithms: parse_algorithms(s.signingalgorithms)
                .map_err(TokenSetupError::Algorithms)?,
            autoredirect: s.autoredirect.map(str::to_string),
            scheme: s.scheme,
        })
    }

    /// The realm for a challenge: the configured one, or with `autoredirect` this host's path.
    fn realm(&self, headers: &HeaderMap) -> String {
        let Some(path) = &self.autoredirect else {
            return self.realm.clone();
        };
        let first = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(',').next())
                .map(|v| v.trim().to_string())
        };
        let host = first("x-forwarded-host")
            .or_else(|| first("host"))
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
            });
        let scheme = match first("x-forwarded-proto").as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ => self.scheme,
        };
        match host {
            Some(h) => format!("{scheme}://{h}{path}"),
            None => self.realm.clone(),
        }
    }

    /// `auth.token.realm` as configured.
    pub fn configured_realm(&self) -> &str {
        &self.realm
    }

    /// Whether challenges name this host's `autoredirectpath` instead of the realm.
    pub fn autoredirects(&self) -> bool {
        self.autoredirect.is_some()
    }

    /// `auth.token.service`: the audience tokens must name.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// `Bearer realm=…,service=…[,scope=…][,error=…]`.
    pub fn challenge(&self, headers: &HeaderMap, access: &[Access], error: Option<&str>) -> String {
        let mut c = format!(
            "Bearer realm={:?},service={:?}",
            self.realm(headers),
            self.service
        );
        if !access.is_empty() {
            c.push_str(&format!(
                ",scope={:?}",
                super::scope::challenge_scope(access)
            ));
        }
        if let Some(e) = error {
            c.push_str(&format!(",error={e:?}"));
        }
        c
    }

    /// The key that signed `header`, found as distribution finds it.
    fn signing_key(&self, header: &jsonwebtoken::Header) -> Result<TrustedKey, TokenError> {
        if let Some(chain) = &header.x5c {
            let der: Vec<Vec<u8>> = chain
                .iter()
                .map(|c| base64::engine::general_purpose::STANDARD.decode(c))
                .collect::<Result<_, _>>()
                .map_err(|e| TokenError::Malformed(format!("x5c: {e}")))?;
            return Ok(self.keys.verify_chain(&der)?);
        }
        if let Some(jwk) = &header.jwk {
            let public = super::keys::PublicKey::from_jwk(jwk)?;
            return self
                .keys
                .by_public_key(&public)
                .cloned()
                .ok_or_else(|| TokenError::UntrustedKey(" in jwk header".into()));
        }
        if let Some(kid) = &header.kid {
            return self.keys.by_kid(kid).cloned().ok_or_else(|| {
                TokenError::UntrustedKey(format!(
                    " with ID {:?}",
                    kid.chars().take(100).collect::<String>()
                ))
            });
        }
        Err(TokenError::UntrustedKey(": the token names no key".into()))
    }

    /// Verifies signature and claims; the claims on success.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        self.verify_at(token, chrono::Utc::now().timestamp())
    }

    /// [`Self::verify`] at a given time.
    pub fn verify_at(&self, token: &str, now: i64) -> Result<Claims, TokenError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.signing_key(&header)?;
        if !key.public.algorithms().contains(&header.alg) {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let mut validation = Validation::new(header.alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &validation)
            .map_err(|e| TokenError::Signature(e.to_string()))?;
        let claims = Claims::from_value(data.claims)?;
        claims.check(&self.issuer, &self.service, now)?;
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn audience_is_a_string_or_a_list() {
        let c = Claims::from_json(br#"{"aud":"reg","access":null}"#).unwrap();
        assert_eq!(c.aud, ["reg"]);
        let c = Claims::from_json(br#"{"aud":["a","reg"],"exp":1.5e9}"#).unwrap();
        assert_eq!(c.aud, ["a", "reg"]);
        assert_eq!(c.exp, Some(1_500_000_000));
        assert!(Claims::from_json(br#"{"aud":3}"#).is_err());
        assert!(Claims::from_json(br#"{"exp":1e300}"#).is_err());
        assert!(Claims::from_json(b"[]").is_err());
    }

    #[test]
    fn checks_claims_with_leeway() {
        let c = Claims {
            iss: "i".into(),
            aud: vec!["s".into()],
            exp: Some(1000),
            nbf: Some(900),
            ..Claims::default()
        };
        assert_eq!(c.check("i", "s", 950), Ok(()));
        assert_eq!(c.check("i", "s", 1060), Ok(()));
        assert_eq!(c.check("i", "s", 1061), Err(ClaimsError::Expired));
        assert_eq!(c.check("i", "s", 840), Ok(()));
        assert_eq!(c.check("i", "s", 839), Err(ClaimsError::NotYetValid));
        assert!(matches!(
            c.check("x", "s", 950),
            Err(ClaimsError::Issuer(_))
        ));
        assert_eq!(c.check("i", "x", 950), Err(ClaimsError::Audience));
        let no_exp = Claims { exp: None, ..c };
        assert_eq!(no_exp.check("i", "s", 950), Err(ClaimsError::Expired));
    }

    #[test]
    fn algorithms_config() {
        assert_eq!(parse_algorithms(&[]).unwrap().len(), ASYMMETRIC.len());
        assert_eq!(
            parse_algorithms(&["ES256".into()]).unwrap(),
            [Algorithm::ES256]
        );
        // Listed by the documentation's example; accepted, but they admit no token.
        assert_eq!(
            parse_algorithms(&["EdDSA".into(), "HS256".into(), "ES512".into()]).unwrap(),
            [Algorithm::EdDSA]
        );
        assert_eq!(parse_algorithms(&["HS256".into()]).unwrap(), []);
        assert!(parse_algorithms(&["none".into()]).is_err());
        assert!(parse_algorithms(&["RS1024".into()]).is_err());
    }

    fn access_entry() -> impl Strategy<Value = serde_json::Value> {
        (
            "[a-z]{0,8}",
            "[a-z/]{0,12}",
            proptest::collection::vec("[a-z*]{0,5}", 0..3),
        )
            .prop_map(|(t, n, a)| serde_json::json!({"type": t, "name": n, "actions": a}))
    }

    proptest! {
        #[test]
        fn claims_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Claims::from_json(&bytes);
        }

        #[test]
        fn claims_parser_survives_odd_json(
            iss in proptest::option::of("\\PC{0,10}"),
            aud in prop_oneof![
                Just(serde_json::Value::Null),
                "[a-z]{0,5}".prop_map(serde_json::Value::from),
                proptest::collection::vec("[a-z]{0,5}", 0..3).prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
            ],
            exp in prop_oneof![
                Just(serde_json::Value::Null),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(|f| serde_json::json!(f)),
                "[0-9]{0,5}".prop_map(serde_json::Value::from),
            ],
            access in proptest::collection::vec(access_entry(), 0..4),
        ) {
            let doc = serde_json::json!({"iss": iss, "aud": aud, "exp": exp, "access": access});
            if let Ok(c) = Claims::from_json(doc.to_string().as_bytes()) {
                let _ = c.check("i", "s", 0);
                let _ = c.permits(&Access::repository("a", "pull"));
                prop_assert_eq!(c.access.len(), doc["access"].as_array().unwrap().len());
            }
        }
    }
}
