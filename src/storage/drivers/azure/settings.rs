//! From `storage.azure` to the driver's settings: the service URL, credentials, and where
//! blobs are named. The only Azure file that reads the configuration.

use std::time::Duration;

use crate::config::AzureConfig;

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct AzureSettings {
    /// Storage account name.
    pub account: String,
    /// How requests are authorized.
    pub auth: AzureAuth,
    /// Blob container.
    pub container: String,
    /// Blob service URL, `https://<account>.blob.<realm>` unless configured; on an emulator
    /// it ends with the account (`http://127.0.0.1:10000/devstoreaccount1`).
    pub service_url: String,
    /// Prepended to a driver path without its leading `/` to name its blob: `"/"` for
    /// distribution 2.8's names (the path as is), else `"<rootdirectory>/"` or `""`.
    pub name_prefix: String,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First delay between attempts; doubles on each retry.
    pub retry_delay: Duration,
    /// Accept any TLS certificate.
    pub skip_verify: bool,
}

/// How requests are authorized (`credentials.type`).
#[derive(Clone)]
pub enum AzureAuth {
    /// Shared Key with the base64 account key (`shared_key`, and distribution 2.8 configs).
    SharedKey(String),
    /// Entra ID tokens for an application's client secret (`client_secret`).
    ClientSecret {
        /// Directory (tenant) id.
        tenant: String,
        /// Application (client) id.
        client_id: String,
        /// The secret.
        secret: String,
    },
    /// Entra ID tokens from the environment's identity (`default_credentials`).
    Default,
}

impl std::fmt::Debug for AzureAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AzureAuth::SharedKey(_) => f.write_str("SharedKey"),
            AzureAuth::ClientSecret {
                tenant, client_id, ..
            } => write!(f, "ClientSecret({client_id} in {tenant})"),
            AzureAuth::Default => f.write_str("Default"),
        }
    }
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("storage.azure: {0}")]
pub struct AzureSetupError(pub(super) String);

impl AzureSettings {
    /// Settings for `storage.azure`. Distribution 2.8 (no `credentials` section) names a
    /// blob by the whole driver path, leading `/` included, and has no `rootdirectory`;
    /// distribution 3 (which requires `credentials`) drops the leading `/` and puts
    /// `rootdirectory` in front. Which one a config is for decides the names, so a container
    /// written by either is served as is.
    pub fn from_config(c: &AzureConfig) -> Self {
        let v3 = !c.credentials.kind.is_empty();
        let name_prefix = if !v3 {
            "/".to_string()
        } else {
            match c.rootdirectory.trim_matches('/') {
                "" => String::new(),
                root => format!("{root}/"),
            }
        };
        let service_url = match c.serviceurl.as_deref().map(str::trim) {
            Some(url) if !url.is_empty() => url.trim_end_matches('/').to_string(),
            _ => format!("https://{}.blob.{}", c.accountname, c.realm),
        };
        AzureSettings {
            account: c.accountname.clone(),
            auth: match c.credentials.kind.as_str() {
                "client_secret" => AzureAuth::ClientSecret {
                    tenant: c.credentials.tenantid.clone().unwrap_or_default(),
                    client_id: c.credentials.clientid.clone().unwrap_or_default(),
                    secret: c.credentials.secret.clone().unwrap_or_default(),
                },
                "default_credentials" => AzureAuth::Default,
                _ => AzureAuth::SharedKey(c.accountkey.clone().unwrap_or_default()),
            },
            container: c.container.clone(),
            service_url,
            name_prefix,
            // distribution's max_retries counts retries; -1 turns them off.
            max_attempts: u32::try_from(c.max_retries.max(0))
                .unwrap_or(u32::MAX)
                .min(20)
                + 1,
            retry_delay: c.retry_delay.max(Duration::from_millis(10)),
            skip_verify: c.skipverify,
        }
    }

    /// True when `rootdirectory` is set but, as in distribution 2.8, not used.
    pub fn ignores_rootdirectory(c: &AzureConfig) -> bool {
        c.credentials.kind.is_empty() && !c.rootdirectory.trim_matches('/').is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> AzureConfig {
        AzureConfig {
            accountname: "acct".into(),
            accountkey: Some("a2V5".into()),
            container: "c".into(),
            ..AzureConfig::default()
        }
    }

    #[test]
    fn v2_names_keep_the_leading_slash_and_ignore_the_root() {
        let mut c = config();
        c.rootdirectory = "/r/".into();
        let s = AzureSettings::from_config(&c);
        assert_eq!(s.name_prefix, "/");
        assert_eq!(s.service_url, "https://acct.blob.core.windows.net");
        assert_eq!(s.max_attempts, 6);
        assert!(AzureSettings::ignores_rootdirectory(&c));
    }

    #[test]
    fn v3_names_start_with_the_root() {
        let mut c = config();
        c.credentials.kind = "shared_key".into();
        c.rootdirectory = "/az/prefix/".into();
        c.serviceurl = Some("http://127.0.0.1:1/devstoreaccount1/".into());
        c.max_retries = -1;
        let s = AzureSettings::from_config(&c);
        assert_eq!(s.name_prefix, "az/prefix/");
        assert_eq!(s.service_url, "http://127.0.0.1:1/devstoreaccount1");
        assert_eq!(s.max_attempts, 1);
        c.rootdirectory = String::new();
        assert_eq!(AzureSettings::from_config(&c).name_prefix, "");
        assert!(!AzureSettings::ignores_rootdirectory(&c));
    }

    #[test]
    fn credential_types_choose_the_authorization() {
        let mut c = config();
        assert!(
            matches!(AzureSettings::from_config(&c).auth, AzureAuth::SharedKey(k) if k == "a2V5")
        );
        c.credentials.kind = "client_secret".into();
        c.credentials.tenantid = Some("t".into());
        c.credentials.clientid = Some("id".into());
        c.credentials.secret = Some("s".into());
        let auth = AzureSettings::from_config(&c).auth;
        assert!(
            matches!(&auth, AzureAuth::ClientSecret { tenant, client_id, secret }
            if tenant == "t" && client_id == "id" && secret == "s")
        );
        assert_eq!(format!("{auth:?}"), "ClientSecret(id in t)");
        c.credentials.kind = "default_credentials".into();
        assert!(matches!(
            AzureSettings::from_config(&c).auth,
            AzureAuth::Default
        ));
    }
}
