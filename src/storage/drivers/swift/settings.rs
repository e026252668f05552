//! From `storage.swift` to the driver's settings. The only Swift file that reads the
//! configuration.

use std::time::Duration;

use super::keystone::KeystoneSettings;
use crate::config::SwiftConfig;

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct SwiftSettings {
    /// Authentication URL (tempauth's `/auth/v1.0`, or Keystone's `/v3` or `/v2.0`).
    pub auth_url: String,
    /// User (`account:user` for tempauth).
    pub username: String,
    /// Password (tempauth's key).
    pub password: String,
    /// Container holding everything.
    pub container: String,
    /// Put in front of every object name (`<prefix>/files/...`, `<prefix>/segments/...`).
    pub prefix: String,
    /// Segment size: at most this much is buffered per open writer.
    pub chunk_size: usize,
    /// Temp URL key to use (and set on the account or container); a random one when unset.
    pub secret_key: Option<String>,
    /// Prepended to temp URL signatures (`<tenantid>:<accesskey>:<sig>`), when set.
    pub access_key: Option<String>,
    /// Tenant id, for `access_key` signatures.
    pub tenant_id: String,
    /// Set the temp URL key on the container rather than the account (when `/info` cannot
    /// tell).
    pub temp_url_container_key: bool,
    /// Methods temp URLs may be signed for (when `/info` cannot tell).
    pub temp_url_methods: Vec<String>,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First delay between attempts; doubles on each retry.
    pub retry_delay: Duration,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
    /// Keystone (v2 or v3) authentication; tempauth (v1) when `None`.
    pub keystone: Option<KeystoneSettings>,
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("storage.swift: {0}")]
pub struct SwiftSetupError(pub(super) String);

impl SwiftSettings {
    /// Settings for `storage.swift`.
    pub fn from_config(c: &SwiftConfig) -> Self {
        let nonempty = |v: &Option<String>| v.clone().filter(|s| !s.trim().is_empty());
        SwiftSettings {
            auth_url: c.authurl.trim().to_string(),
            username: c.username.clone(),
            password: c.password.clone(),
            container: c.container.clone(),
            prefix: c.prefix.clone(),
            chunk_size: usize::try_from(c.chunksize).unwrap_or(usize::MAX),
            secret_key: nonempty(&c.secretkey),
            access_key: nonempty(&c.accesskey),
            tenant_id: c.tenantid.clone().unwrap_or_default(),
            temp_url_container_key: c.tempurlcontainerkey,
            temp_url_methods: c.tempurlmethods.clone(),
            max_attempts: 5,
            retry_delay: Duration::from_millis(100),
            skip_verify: c.insecureskipverify,
            keystone: match Self::auth_version(c) {
                v @ (2 | 3) => Some(KeystoneSettings {
                    version: v as u8,
                    tenant: text(&c.tenant),
                    tenant_id: text(&c.tenantid),
                    domain: text(&c.domain),
                    domain_id: text(&c.domainid),
                    tenant_domain: text(&c.tenantdomain),
                    tenant_domain_id: text(&c.tenantdomainid),
                    trust_id: text(&c.trustid),
                    region: text(&c.region),
                    endpoint_type: text(&c.endpointtype),
                }),
                _ => None,
            },
        }
    }

    /// The Keystone version a config asks for, as distribution's client guesses it: the
    /// `authversion` key, else 3 or 2 when the URL names it, else 1 (where distribution's
    /// client guesses 1 only for a URL naming `v1`, and refuses the rest).
    pub fn auth_version(c: &SwiftConfig) -> i64 {
        if c.authversion != 0 {
            return c.authversion;
        }
        if c.authurl.contains("v3") {
            3
        } else if c.authurl.contains("v2") {
            2
        } else {
            1
        }
    }
}

/// An optional key's value; empty when unset.
fn text(v: &Option<String>) -> String {
    v.as_deref().unwrap_or("").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_version_is_guessed_from_the_url() {
        let mut c = SwiftConfig {
            authurl: "http://127.0.0.1:8080/auth/v1.0".into(),
            ..SwiftConfig::default()
        };
        assert_eq!(SwiftSettings::auth_version(&c), 1);
        c.authurl = "https://keystone/v3".into();
        assert_eq!(SwiftSettings::auth_version(&c), 3);
        c.authurl = "https://keystone/v2.0".into();
        assert_eq!(SwiftSettings::auth_version(&c), 2);
        c.authversion = 1;
        assert_eq!(SwiftSettings::auth_version(&c), 1);
    }

    #[test]
    fn keystone_settings_come_from_the_keys() {
        let mut c = SwiftConfig {
            authurl: "http://127.0.0.1:5000/v3".into(),
            tenant: Some("proj".into()),
            domain: Some("Default".into()),
            region: Some("RegionOne".into()),
            endpointtype: Some("internal".into()),
            ..SwiftConfig::default()
        };
        let k = SwiftSettings::from_config(&c).keystone.unwrap();
        assert_eq!(
            (k.version, k.tenant.as_str(), k.domain.as_str()),
            (3, "proj", "Default")
        );
        assert_eq!(
            (k.region.as_str(), k.endpoint_type.as_str()),
            ("RegionOne", "internal")
        );
        c.authversion = 2;
        assert_eq!(SwiftSettings::from_config(&c).keystone.unwrap().version, 2);
        c.authversion = 1;
        assert!(SwiftSettings::from_config(&c).keystone.is_none());
    }
}
