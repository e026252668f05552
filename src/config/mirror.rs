//! Wharf's own pull-through keys beside registry:2's `proxy` section: several upstreams, each
//! selected by a repository prefix or containerd's `?ns=<host>`.

use std::time::Duration;

use serde::Deserialize;

use super::lenient;

/// One entry of `proxy.upstreams`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct UpstreamConfig {
    /// Repository prefix served from this upstream (`docker.io` or `docker.io/*`); also the
    /// host a `?ns=` query names.
    #[serde(deserialize_with = "lenient::string")]
    pub prefix: String,
    /// Upstream registry URL.
    #[serde(deserialize_with = "lenient::string")]
    pub remoteurl: String,
    /// Upstream user.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub username: Option<String>,
    /// Upstream password.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub password: Option<String>,
    /// Cache expiry; 0 means never, absent means 168h as registry:2.
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub ttl: Option<Duration>,
    /// How often a cached tag is checked upstream (default `proxy.tagrecheck`).
    #[serde(deserialize_with = "lenient::opt_duration")]
    pub tagrecheck: Option<Duration>,
    /// Token realms on other hosts that may receive the credentials (URL prefixes).
    #[serde(deserialize_with = "lenient::string_list")]
    pub tokenrealms: Vec<String>,
}

impl UpstreamConfig {
    /// The prefix without a trailing `/*` or `/`.
    pub fn bare_prefix(&self) -> &str {
        self.prefix
            .trim_end_matches('*')
            .trim_end_matches('/')
            .trim()
    }
}

/// Checks `proxy`'s upstream URLs and prefixes.
pub(crate) fn validate(proxy: &super::ProxyConfig) -> Result<(), super::ConfigError> {
    use super::ConfigError;
    if let Some(url) = proxy.remoteurl.as_deref() {
        check_url("proxy.remoteurl", url)?;
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, upstream) in proxy.upstreams.iter().enumerate() {
        check_url(
            &format!("proxy.upstreams.{i}.remoteurl"),
            &upstream.remoteurl,
        )?;
        let prefix = upstream.bare_prefix();
        if prefix.is_empty() {
            return Err(ConfigError::invalid(
                format!("proxy.upstreams.{i}.prefix"),
                "required, but empty",
            ));
        }
        if !seen.insert(prefix.to_string()) {
            return Err(ConfigError::invalid(
                format!("proxy.upstreams.{i}.prefix"),
                format!("{prefix} is named by an earlier upstream"),
            ));
        }
    }
    Ok(())
}

fn check_url(key: &str, url: &str) -> Result<(), super::ConfigError> {
    let parsed: Result<http::Uri, _> = url.trim_end_matches('/').parse();
    match parsed {
        Ok(uri)
            if matches!(uri.scheme_str(), Some("http") | Some("https"))
                && uri.host().is_some_and(|h| !h.is_empty()) =>
        {
            Ok(())
        }
        _ => Err(super::ConfigError::invalid(
            key,
            format!("{url:?} is not an http:// or https:// URL"),
        )),
    }
}
