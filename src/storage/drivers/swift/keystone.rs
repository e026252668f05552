//! Keystone (OpenStack Identity) v2.0 and v3 token requests and answers, built and read as
//! distribution 2.8's Swift client (ncw/swift) does: which credentials and scope are sent, and
//! which object-store endpoint of the catalog is used. Pure functions: the client sends them.

use std::time::SystemTime;

use serde_json::{json, Value};

/// Keystone settings; empty strings are unset, as in distribution's parameters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeystoneSettings {
    /// Identity API version: 2 or 3.
    pub version: u8,
    /// Project (tenant) name.
    pub tenant: String,
    /// Project (tenant) id; wins over `tenant`.
    pub tenant_id: String,
    /// The user's domain name (v3).
    pub domain: String,
    /// The user's domain id (v3), when `domain` is unset.
    pub domain_id: String,
    /// The project's domain name (v3); defaults to the user's domain, then `Default`.
    pub tenant_domain: String,
    /// The project's domain id (v3).
    pub tenant_domain_id: String,
    /// Trust to scope the token to (v3); wins over the project.
    pub trust_id: String,
    /// Region of the object-store endpoint; any when empty.
    pub region: String,
    /// Endpoint interface: `public` (when empty), `internal` or `admin`.
    pub endpoint_type: String,
}

/// A token and the storage URL it is for, as Keystone granted them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub token: String,
    /// The object-store endpoint chosen from the catalog, no trailing `/`.
    pub storage_url: String,
    /// When the token stops being valid, if Keystone said.
    pub expires: Option<SystemTime>,
}

/// Which of v2's two credential forms a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Credentials {
    /// `passwordCredentials` (OpenStack).
    Password,
    /// `RAX-KSKEY:apiKeyCredentials` (Rackspace's API keys).
    ApiKey,
}

impl V2Credentials {
    /// The form tried first: ncw/swift takes a password of 32 characters or more for an API
    /// key, and tries the other form when the first is refused.
    pub fn first_for(password: &str) -> Self {
        if password.len() >= 32 {
            V2Credentials::ApiKey
        } else {
            V2Credentials::Password
        }
    }

    /// The other form.
    pub fn other(self) -> Self {
        match self {
            V2Credentials::Password => V2Credentials::ApiKey,
            V2Credentials::ApiKey => V2Credentials::Password,
        }
    }
}

/// The token endpoint: `<authurl>/tokens` (v2) or `<authurl>/auth/tokens` (v3).
pub fn token_url(auth_url: &str, version: u8) -> String {
    let mut url = auth_url.to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    url.push_str(if version == 2 {
        "tokens"
    } else {
        "auth/tokens"
    });
    url
}

/// A v2.0 token request.
pub fn v2_request(user: &str, password: &str, s: &KeystoneSettings, form: V2Credentials) -> Value {
    let mut auth = match form {
        V2Credentials::Password => {
            json!({"passwordCredentials": {"username": user, "password": password}})
        }
        V2Credentials::ApiKey => {
            json!({"RAX-KSKEY:apiKeyCredentials": {"username": user, "apiKey": password}})
        }
    };
    if !s.tenant.is_empty() {
        auth["tenantName"] = json!(s.tenant);
    }
    if !s.tenant_id.is_empty() {
        auth["tenantId"] = json!(s.tenant_id);
    }
    json!({ "auth": auth })
}

/// A domain by name, else by id; `None` when neither is set.
fn domain(name: &str, id: &str) -> Option<Value> {
    if !name.is_empty() {
        Some(json!({ "name": name }))
    } else if !id.is_empty() {
        Some(json!({ "id": id }))
    } else {
        None
    }
}

/// A v3 token request: password authentication (or, with no user name, the password taken as
/// a token), scoped to the trust, else the project by id, else by name in its domain.
pub fn v3_request(user: &str, password: &str, s: &KeystoneSettings) -> Value {
    let identity = if user.is_empty() {
        json!({"methods": ["token"], "token": {"id": password}})
    } else {
        let mut u = json!({"name": user, "password": password});
        if let Some(d) = domain(&s.domain, &s.domain_id) {
            u["domain"] = d;
        }
        json!({"methods": ["password"], "password": {"user": u}})
    };
    let scope = if !s.trust_id.is_empty() {
        Some(json!({"OS-TRUST:trust": {"id": s.trust_id}}))
    } else if !s.tenant_id.is_empty() {
        Some(json!({"project": {"id": s.tenant_id}}))
    } else if !s.tenant.is_empty() {
        let d = domain(&s.tenant_domain, &s.tenant_domain_id)
            .or_else(|| domain(&s.domain, &s.domain_id))
            .unwrap_or_else(|| json!({"name": "Default"}));
        Some(json!({"project": {"name": s.tenant, "domain": d}}))
    } else {
        None
    };
    let mut auth = json!({ "identity": identity });
    if let Some(scope) = scope {
        auth["scope"] = scope;
    }
    json!({ "auth": auth })
}

/// The endpoint interface asked for.
fn interface(s: &KeystoneSettings) -> &str {
    if s.endpoint_type.is_empty() {
        "public"
    } else {
        &s.endpoint_type
    }
}

/// Why an answer gives no usable grant.
fn no_endpoint(s: &KeystoneSettings) -> String {
    let region = if s.region.is_empty() {
        "any region".to_string()
    } else {
        format!("region {:?}", s.region)
    };
    format!(
        "the catalog has no object-store endpoint with interface {:?} in {region}",
        interface(s)
    )
}

/// An RFC 3339 time (Keystone's `expires`/`expires_at`).
fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(SystemTime::from)
}

/// Reads a v2.0 answer: the token, and the first object-store endpoint in the region (any
/// when unset), its URL for the interface.
pub fn v2_grant(body: &[u8], s: &KeystoneSettings) -> Result<Grant, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("token answer: {e}"))?;
    let access = &v["access"];
    let token = access["token"]["id"].as_str().unwrap_or_default();
    if token.is_empty() {
        return Err("the token answer has no token id".into());
    }
    let key = match interface(s) {
        "public" => "publicURL",
        "internal" => "internalURL",
        "admin" => "adminURL",
        _ => return Err(no_endpoint(s)),
    };
    let url = access["serviceCatalog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|service| service["type"] == "object-store")
        .flat_map(|service| service["endpoints"].as_array().into_iter().flatten())
        // ncw/swift takes the first endpoint in the region, whether it has this URL or not.
        .find(|e| s.region.is_empty() || e["region"] == s.region.as_str())
        .and_then(|e| e[key].as_str())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| no_endpoint(s))?;
    Ok(Grant {
        token: token.to_string(),
        storage_url: url.trim_end_matches('/').to_string(),
        expires: access["token"]["expires"].as_str().and_then(parse_time),
    })
}

/// Reads a v3 answer: the token (the `X-Subject-Token` header) and the object-store endpoint
/// with the interface, in the region (any when unset).
pub fn v3_grant(subject_token: &str, body: &[u8], s: &KeystoneSettings) -> Result<Grant, String> {
    if subject_token.is_empty() {
        return Err("the token answer has no X-Subject-Token".into());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("token answer: {e}"))?;
    let token = &v["token"];
    let wanted = interface(s);
    let url = token["catalog"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|service| service["type"] == "object-store")
        .flat_map(|service| service["endpoints"].as_array().into_iter().flatten())
        .find(|e| {
            e["interface"] == wanted && (s.region.is_empty() || e["region"] == s.region.as_str())
        })
        .and_then(|e| e["url"].as_str())
        .filter(|u| !u.is_empty())
        .ok_or_else(|| no_endpoint(s))?;
    Ok(Grant {
        token: subject_token.to_string(),
        storage_url: url.trim_end_matches('/').to_string(),
        expires: token["expires_at"].as_str().and_then(parse_time),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(version: u8) -> KeystoneSettings {
        KeystoneSettings {
            version,
            ..KeystoneSettings::default()
        }
    }

    #[test]
    fn token_urls_follow_the_auth_url() {
        assert_eq!(
            token_url("http://k:5000/v3", 3),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            token_url("http://k:5000/v3/", 3),
            "http://k:5000/v3/auth/tokens"
        );
        assert_eq!(
            token_url("http://k:5000/v2.0", 2),
            "http://k:5000/v2.0/tokens"
        );
    }

    #[test]
    fn v3_scopes_trust_then_project_id_then_project_name() {
        let mut s = settings(3);
        s.domain = "users".into();
        s.tenant = "proj".into();
        let body = v3_request("u", "p", &s);
        assert_eq!(
            body["auth"]["identity"]["password"]["user"],
            json!({"name": "u", "password": "p", "domain": {"name": "users"}})
        );
        // The project's domain defaults to the user's.
        assert_eq!(
            body["auth"]["scope"],
            json!({"project": {"name": "proj", "domain": {"name": "users"}}})
        );
        s.tenant_domain_id = "d42".into();
        assert_eq!(
            v3_request("u", "p", &s)["auth"]["scope"]["project"]["domain"],
            json!({"id": "d42"})
        );
        s.tenant_id = "p1".into();
        assert_eq!(
            v3_request("u", "p", &s)["auth"]["scope"],
            json!({"project": {"id": "p1"}})
        );
        s.trust_id = "t1".into();
        assert_eq!(
            v3_request("u", "p", &s)["auth"]["scope"],
            json!({"OS-TRUST:trust": {"id": "t1"}})
        );
    }

    #[test]
    fn v3_defaults_and_token_method() {
        let mut s = settings(3);
        s.tenant = "proj".into();
        let body = v3_request("u", "p", &s);
        assert!(body["auth"]["identity"]["password"]["user"]["domain"].is_null());
        assert_eq!(
            body["auth"]["scope"]["project"]["domain"],
            json!({"name": "Default"})
        );
        s.tenant.clear();
        let body = v3_request("", "tok", &s);
        assert_eq!(
            body["auth"],
            json!({"identity": {"methods": ["token"], "token": {"id": "tok"}}})
        );
    }

    #[test]
    fn v2_requests_carry_the_tenant_and_either_form() {
        let mut s = settings(2);
        s.tenant = "t".into();
        s.tenant_id = "tid".into();
        assert_eq!(
            v2_request("u", "p", &s, V2Credentials::Password),
            json!({"auth": {"passwordCredentials": {"username": "u", "password": "p"},
                            "tenantName": "t", "tenantId": "tid"}})
        );
        let body = v2_request("u", "k", &s, V2Credentials::ApiKey);
        assert_eq!(
            body["auth"]["RAX-KSKEY:apiKeyCredentials"],
            json!({"username": "u", "apiKey": "k"})
        );
        assert_eq!(V2Credentials::first_for("short"), V2Credentials::Password);
        assert_eq!(
            V2Credentials::first_for(&"k".repeat(32)),
            V2Credentials::ApiKey
        );
    }

    const V3_ANSWER: &str = r#"{"token": {"expires_at": "2026-12-06T12:10:11.000000Z",
        "catalog": [
          {"type": "identity", "endpoints": [{"interface": "public", "region": "r1", "url": "http://id"}]},
          {"type": "object-store", "endpoints": [
            {"interface": "internal", "region": "r1", "url": "http://int1/v1/AUTH_p"},
            {"interface": "public", "region": "r1", "url": "http://pub1/v1/AUTH_p/"},
            {"interface": "public", "region": "r2", "url": "http://pub2/v1/AUTH_p"}]}]}}"#;

    #[test]
    fn v3_endpoint_by_interface_and_region() {
        let mut s = settings(3);
        let g = v3_grant("tok", V3_ANSWER.as_bytes(), &s).unwrap();
        assert_eq!(g.token, "tok");
        assert_eq!(g.storage_url, "http://pub1/v1/AUTH_p");
        assert_eq!(
            g.expires,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_796_559_011))
        );
        s.region = "r2".into();
        assert_eq!(
            v3_grant("tok", V3_ANSWER.as_bytes(), &s)
                .unwrap()
                .storage_url,
            "http://pub2/v1/AUTH_p"
        );
        s.endpoint_type = "internal".into();
        let err = v3_grant("tok", V3_ANSWER.as_bytes(), &s).unwrap_err();
        assert!(err.contains("\"internal\" in region \"r2\""), "{err}");
        s.region.clear();
        assert_eq!(
            v3_grant("tok", V3_ANSWER.as_bytes(), &s)
                .unwrap()
                .storage_url,
            "http://int1/v1/AUTH_p"
        );
        assert!(v3_grant("", V3_ANSWER.as_bytes(), &s).is_err());
    }

    #[test]
    fn v2_endpoint_is_the_first_in_the_region() {
        let answer = r#"{"access": {"token": {"id": "t2", "expires": "2026-12-06T12:10:11Z"},
            "serviceCatalog": [{"type": "object-store", "endpoints": [
              {"region": "r1", "publicURL": "http://pub1/v1/AUTH_t", "internalURL": "http://int1/v1/AUTH_t"},
              {"region": "r2", "publicURL": "http://pub2/v1/AUTH_t", "adminURL": "http://adm2"}]}]}}"#;
        let mut s = settings(2);
        let g = v2_grant(answer.as_bytes(), &s).unwrap();
        assert_eq!(
            (g.token.as_str(), g.storage_url.as_str()),
            ("t2", "http://pub1/v1/AUTH_t")
        );
        assert!(g.expires.is_some());
        s.endpoint_type = "admin".into();
        assert!(v2_grant(answer.as_bytes(), &s).is_err());
        s.region = "r2".into();
        assert_eq!(
            v2_grant(answer.as_bytes(), &s).unwrap().storage_url,
            "http://adm2"
        );
        s.endpoint_type = "private".into();
        assert!(v2_grant(answer.as_bytes(), &s).is_err());
    }
}
