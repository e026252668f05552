//! Wharf's `http.cors` (CORS for browser front-ends on other origins) and `ui` (the web
//! console) sections; neither exists in distribution.

use serde::Deserialize;

use super::error::ConfigError;
use super::lenient;

/// Headers a registry front-end reads from answers by default.
const DEFAULT_EXPOSED: &[&str] = &[
    "Docker-Content-Digest",
    "Docker-Distribution-Api-Version",
    "Link",
    "Location",
    "Range",
    "Content-Length",
    "Content-Type",
    "WWW-Authenticate",
    "OCI-Subject",
    "OCI-Filters-Applied",
];

/// `http.cors`: which other origins may call the API from a browser.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct CorsConfig {
    /// Origins allowed, compared exactly (`https://ui.example.com`); `*` allows any.
    #[serde(deserialize_with = "lenient::string_list")]
    pub allowedorigins: Vec<String>,
    /// Methods a preflight allows.
    #[serde(deserialize_with = "lenient::string_list")]
    pub allowedmethods: Vec<String>,
    /// Request headers a preflight allows.
    #[serde(deserialize_with = "lenient::string_list")]
    pub allowedheaders: Vec<String>,
    /// Sends `Access-Control-Allow-Credentials: true` (never with the `*` origin).
    #[serde(deserialize_with = "lenient::bool")]
    pub allowcredentials: bool,
    /// Response headers the browser lets scripts read.
    #[serde(deserialize_with = "lenient::string_list")]
    pub exposeheaders: Vec<String>,
    /// How long a browser may cache a preflight answer, in seconds.
    #[serde(deserialize_with = "lenient::int")]
    pub maxage: i64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        let list = |l: &[&str]| l.iter().map(|s| s.to_string()).collect();
        CorsConfig {
            allowedorigins: Vec::new(),
            allowedmethods: list(&["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]),
            allowedheaders: list(&["Authorization", "Content-Type", "Accept", "Range"]),
            allowcredentials: false,
            exposeheaders: list(DEFAULT_EXPOSED),
            maxage: 600,
        }
    }
}

impl CorsConfig {
    /// True when any origin is allowed at all.
    pub fn enabled(&self) -> bool {
        !self.allowedorigins.is_empty()
    }

    /// A wildcard origin with credentials would hand every site the user's registry access:
    /// refused rather than silently weakened.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.allowcredentials && self.allowedorigins.iter().any(|o| o == "*") {
            return Err(ConfigError::invalid(
                "http.cors.allowcredentials",
                "cannot be true with the wildcard origin \"*\": list the origins that may send credentials",
            ));
        }
        if self.maxage < 0 {
            return Err(ConfigError::invalid(
                "http.cors.maxage",
                format!("{} is negative", self.maxage),
            ));
        }
        for (key, values) in [
            ("allowedorigins", &self.allowedorigins),
            ("allowedmethods", &self.allowedmethods),
            ("allowedheaders", &self.allowedheaders),
            ("exposeheaders", &self.exposeheaders),
        ] {
            if let Some(bad) = values
                .iter()
                .find(|v| v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()))
            {
                return Err(ConfigError::invalid(
                    format!("http.cors.{key}"),
                    format!("{bad:?} is not a header token"),
                ));
            }
        }
        Ok(())
    }
}

/// `ui`: the web console served under `path` on the registry's own listener.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct UiConfig {
    /// Serve the console.
    #[serde(deserialize_with = "lenient::bool")]
    pub enabled: bool,
    /// URL path it is served under; starts and ends with `/`.
    #[serde(deserialize_with = "lenient::string")]
    pub path: String,
    /// Name shown in the page titles and in the `docker pull` lines (defaults to the
    /// request's `Host`).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub registryhost: Option<String>,
    /// Repositories per page of the repository list.
    #[serde(deserialize_with = "lenient::usize")]
    pub pagesize: usize,
    /// How long a console login lasts.
    #[serde(deserialize_with = "lenient::duration")]
    pub sessionttl: std::time::Duration,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig {
            enabled: false,
            path: "/ui/".into(),
            registryhost: None,
            pagesize: 50,
            sessionttl: std::time::Duration::from_secs(8 * 3600),
        }
    }
}

impl UiConfig {
    /// Normalises the path to `/x/`; zero means the default.
    pub(crate) fn apply_defaults(&mut self) {
        if !self.path.starts_with('/') {
            self.path.insert(0, '/');
        }
        if !self.path.ends_with('/') {
            self.path.push('/');
        }
        if self.pagesize == 0 {
            self.pagesize = UiConfig::default().pagesize;
        }
        self.pagesize = self.pagesize.min(1000);
        if self.sessionttl.is_zero() {
            self.sessionttl = UiConfig::default().sessionttl;
        }
    }

    /// Refuses a path that would shadow the API.
    pub(crate) fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled && (self.path == "/" || self.path.starts_with("/v2/")) {
            return Err(ConfigError::invalid(
                "ui.path",
                format!("{:?} would hide the registry API", self.path),
            ));
        }
        if self
            .path
            .bytes()
            .any(|b| !b.is_ascii_graphic() || b == b'?' || b == b'#')
        {
            return Err(ConfigError::invalid("ui.path", "must be a plain URL path"));
        }
        Ok(())
    }
}
