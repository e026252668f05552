//! docker_auth's `auth_config.yml`, read for `tokenissuer.dockerauthconfig`: its `users` and
//! `acl` replace inline ones, its `token` section fills what `tokenissuer` leaves unset, its
//! `server.real_ip_*` keys say where the client address is. Authentication and authorization
//! back-ends this release does not provide are refused by name, in the file and inline.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_yaml::Value;

use super::error::ConfigError;
use super::lenient;
use super::model::{AclRule, Config, IssuerUser};

/// docker_auth sections that are not provided, with what they are.
pub const REFUSED_SECTIONS: &[(&str, &str)] = &[
    ("google_auth", "Google authentication"),
    ("github_auth", "GitHub authentication"),
    ("oidc_auth", "OpenID Connect authentication"),
    ("gitlab_auth", "GitLab authentication"),
    ("ldap_auth", "LDAP authentication"),
    ("mongo_auth", "MongoDB authentication"),
    ("xorm_auth", "XORM database authentication"),
    ("ext_auth", "external program authentication"),
    ("plugin_authn", "authentication plugins"),
    ("acl_mongo", "MongoDB ACLs"),
    ("acl_xorm", "XORM database ACLs"),
    ("ext_authz", "external program authorization"),
    ("plugin_authz", "authorization plugins"),
    ("casbin_authz", "Casbin authorization"),
];

/// The message refusing section `key` (dotted path) when it is one of [`REFUSED_SECTIONS`].
pub fn refusal(prefix: &str, key: &str) -> Option<ConfigError> {
    let (_, what) = REFUSED_SECTIONS.iter().find(|(k, _)| *k == key)?;
    Some(ConfigError::invalid(
        format!("{prefix}{key}"),
        format!("docker_auth's {what} is not supported; use users and acl"),
    ))
}

/// What Wharf takes from a docker_auth configuration file.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct DockerAuthFile {
    /// docker_auth's `server` section (only the client address keys apply).
    pub server: DockerAuthServer,
    /// docker_auth's `token` section.
    pub token: DockerAuthToken,
    /// Static users.
    #[serde(deserialize_with = "lenient::or_default")]
    pub users: BTreeMap<String, Option<IssuerUser>>,
    /// The ACL.
    #[serde(deserialize_with = "lenient::or_default")]
    pub acl: Vec<AclRule>,
}

/// docker_auth's `server` keys that apply: where the client address is, and the TLS pair that
/// signs tokens when `token` names none. The listener keys do not apply: tokens are served on
/// the registry's own port.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct DockerAuthServer {
    /// TLS certificate, the signing certificate when `token.certificate` is unset.
    #[serde(deserialize_with = "lenient::string")]
    pub certificate: String,
    /// TLS key, the signing key when `token.key` is unset.
    #[serde(deserialize_with = "lenient::string")]
    pub key: String,
    /// Header holding the client address.
    #[serde(deserialize_with = "lenient::string")]
    pub real_ip_header: String,
    /// Which address of that header (negative counts from the end).
    #[serde(deserialize_with = "lenient::int")]
    pub real_ip_pos: i64,
}

/// docker_auth's `token` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct DockerAuthToken {
    /// `iss` of tokens.
    #[serde(deserialize_with = "lenient::string")]
    pub issuer: String,
    /// Lifetime in seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub expiration: i64,
    /// Signing certificate.
    #[serde(deserialize_with = "lenient::string")]
    pub certificate: String,
    /// Signing key.
    #[serde(deserialize_with = "lenient::string")]
    pub key: String,
}

/// Reads and checks a docker_auth configuration file; errors name the file's key.
pub fn read_docker_auth(path: &Path) -> Result<DockerAuthFile, ConfigError> {
    let key = "tokenissuer.dockerauthconfig";
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::invalid(key, format!("cannot read {}: {e}", path.display())))?;
    parse_docker_auth(&text)
        .map_err(|e| ConfigError::invalid(key, format!("{}: {e}", path.display())))
}

/// Parses docker_auth configuration text (see [`read_docker_auth`]).
pub fn parse_docker_auth(text: &str) -> Result<DockerAuthFile, ConfigError> {
    let tree: Value = serde_yaml::from_str(text).map_err(|e| ConfigError::Syntax {
        origin: "the docker_auth configuration".into(),
        message: e.to_string(),
    })?;
    let root = match tree {
        Value::Mapping(m) => m,
        Value::Null => Default::default(),
        _ => {
            return Err(ConfigError::invalid(
                "(root)",
                "the docker_auth configuration must be a YAML mapping",
            ))
        }
    };
    for key in root.keys().filter_map(Value::as_str) {
        if let Some(e) = refusal("", key) {
            return Err(e);
        }
    }
    let file: DockerAuthFile = serde_path_to_error::deserialize(Value::Mapping(root))
        .map_err(|e| ConfigError::invalid(e.path().to_string(), e.inner().to_string()))?;
    check_rules(&file.acl, "acl")?;
    Ok(file)
}

/// Every rule needs `match` and `actions` (docker_auth fails every request reaching a rule
/// without them).
pub(crate) fn check_rules(acl: &[AclRule], prefix: &str) -> Result<(), ConfigError> {
    for (i, rule) in acl.iter().enumerate() {
        if rule.matches.is_none() {
            return Err(ConfigError::invalid(
                format!("{prefix}.{i}.match"),
                "required; {} matches every request",
            ));
        }
        if rule.actions.is_none() {
            return Err(ConfigError::invalid(
                format!("{prefix}.{i}.actions"),
                "required; [] denies",
            ));
        }
    }
    Ok(())
}

impl Config {
    /// Reads `tokenissuer.dockerauthconfig` into `tokenissuer`: users and acl, then unset
    /// issuer, key, certificate, expiration and client address header from the file.
    pub(crate) fn apply_docker_auth_file(&mut self) -> Result<(), ConfigError> {
        let Some(t) = &mut self.tokenissuer else {
            return Ok(());
        };
        let Some(path) = t.dockerauthconfig.clone() else {
            return check_rules(&t.acl, "tokenissuer.acl");
        };
        if !t.users.is_empty() || !t.acl.is_empty() {
            return Err(ConfigError::invalid(
                "tokenissuer.dockerauthconfig",
                "users and acl come from this file; remove tokenissuer.users and tokenissuer.acl",
            ));
        }
        let file = read_docker_auth(&path)?;
        let token = &file.token;
        if t.issuer.is_empty() {
            t.issuer = token.issuer.clone();
        }
        // docker_auth signs with the server's TLS pair when the token section names no pair.
        let (cert, key) = if token.certificate.is_empty() && token.key.is_empty() {
            (&file.server.certificate, &file.server.key)
        } else {
            (&token.certificate, &token.key)
        };
        if t.key.is_none() && !key.is_empty() {
            t.key = Some(key.into());
        }
        if t.certificate.is_none() && !cert.is_empty() {
            t.certificate = Some(cert.into());
        }
        if t.expiration.is_zero() && token.expiration > 0 {
            t.expiration = Duration::from_secs(token.expiration as u64);
        }
        if t.realipheader.is_empty() {
            t.realipheader = file.server.real_ip_header.clone();
            t.realippos = file.server.real_ip_pos;
        }
        t.users = file.users;
        t.acl = file.acl;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_sections_are_named() {
        for (key, _) in REFUSED_SECTIONS {
            let text = format!("users: {{}}\nacl: []\n{key}: {{x: 1}}\n");
            let e = parse_docker_auth(&text).unwrap_err().to_string();
            assert!(e.starts_with(&format!("{key}: docker_auth's ")), "{e}");
        }
    }

    #[test]
    fn users_acl_token_and_server_are_read() {
        let f = parse_docker_auth(
            r#"
server: {addr: ":5001", real_ip_header: X-Forwarded-For, real_ip_pos: -2}
token: {issuer: "Acme auth server", expiration: 900}
users:
  "admin": {password: "$2y$05$LO.vzwpWC5LZGqThvEfznu8qhb5SGqvBSWY1J3yZ4AxtMRZ3kN5jC"}
  "": {}
  "dev": {labels: {group: [a, b], project: api}}
  "gone":
acl:
  - match: {account: "admin"}
    actions: ["*"]
    comment: "Admin has full access to everything."
  - match: {labels: {"group": "/trainee|dev/"}, ip: "10.0.0.0/8"}
    actions: []
"#,
        )
        .unwrap();
        assert_eq!(f.server.real_ip_pos, -2);
        assert_eq!(f.token.expiration, 900);
        assert_eq!(f.users[""], Some(IssuerUser::default()));
        assert_eq!(f.users["gone"], None);
        assert_eq!(f.users["dev"].as_ref().unwrap().labels["project"], ["api"]);
        assert_eq!(f.acl[1].actions, Some(vec![]));
        assert_eq!(
            f.acl[1].matches.as_ref().unwrap().ip.as_deref(),
            Some("10.0.0.0/8")
        );
        let e = parse_docker_auth("acl:\n  - actions: [pull]\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "acl.0.match: required; {} matches every request"
        );
        let e = parse_docker_auth("acl:\n  - match: {}\n").unwrap_err();
        assert_eq!(e.to_string(), "acl.0.actions: required; [] denies");
    }
}
