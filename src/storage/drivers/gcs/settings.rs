//! From `storage.gcs` to the driver's settings: the service endpoint, credentials, and where
//! objects are named. The only GCS file that reads the configuration.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::GcsConfig;

/// The public JSON API endpoint.
pub const GOOGLE_ENDPOINT: &str = "https://storage.googleapis.com";

/// The driver's settings.
#[derive(Debug, Clone)]
pub struct GcsSettings {
    /// Bucket (it must exist: distribution does not create it either).
    pub bucket: String,
    /// `scheme://host[:port]` of the JSON API: Google's, or an emulator's.
    pub endpoint: String,
    /// No authorization at all: an emulator (`STORAGE_EMULATOR_HOST`, as Google's client
    /// libraries and so registry:2 honour it).
    pub anonymous: bool,
    /// Service-account JSON key, from `keyfile` or `credentials`; `None`: application default
    /// credentials (`GOOGLE_APPLICATION_CREDENTIALS`, else the metadata server).
    pub key: Option<KeySource>,
    /// Prepended to a driver path without its leading `/` to name its object:
    /// `"<rootdirectory>/"` or `""` (distribution's `pathToKey`).
    pub name_prefix: String,
    /// Bytes buffered per open writer before they are stored as a part.
    pub chunk_size: usize,
    /// Attempts per call, the first included.
    pub max_attempts: u32,
    /// First delay between attempts; doubles on each retry.
    pub retry_delay: Duration,
    /// `User-Agent` of every call (`useragent`); `None`: the HTTP client's default.
    pub user_agent: Option<String>,
    /// Calls in flight to the service at once, retries included (`maxconcurrency`).
    pub max_concurrency: usize,
}

/// Where the service-account key comes from.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// A JSON key file.
    File(PathBuf),
    /// The key's JSON text.
    Inline(String),
}

/// Why the driver could not be built.
#[derive(Debug, thiserror::Error)]
#[error("storage.gcs: {0}")]
pub struct GcsSetupError(pub(super) String);

impl GcsSettings {
    /// Settings for `storage.gcs`; `emulator_host` is `STORAGE_EMULATOR_HOST`.
    pub fn from_config(c: &GcsConfig, emulator_host: Option<&str>) -> Self {
        let emulator = emulator_host.map(str::trim).filter(|h| !h.is_empty());
        let endpoint = match emulator {
            Some(h) if h.contains("://") => h.trim_end_matches('/').to_string(),
            Some(h) => format!("http://{}", h.trim_end_matches('/')),
            None => GOOGLE_ENDPOINT.to_string(),
        };
        let key = match (&c.keyfile, c.credentials.is_empty()) {
            (Some(path), _) => Some(KeySource::File(path.clone())),
            (None, false) => Some(KeySource::Inline(
                serde_json::to_string(&c.credentials).unwrap_or_default(),
            )),
            (None, true) => None,
        };
        GcsSettings {
            bucket: c.bucket.clone(),
            endpoint,
            anonymous: emulator.is_some(),
            key,
            name_prefix: match c.rootdirectory.trim_matches('/') {
                "" => String::new(),
                root => format!("{root}/"),
            },
            chunk_size: usize::try_from(c.chunksize)
                .unwrap_or(usize::MAX)
                .max(256 << 10),
            // distribution retries 5 times (its `retry` helper) with exponential backoff.
            max_attempts: 6,
            retry_delay: Duration::from_millis(100),
            user_agent: c.useragent.clone().filter(|u| !u.is_empty()),
            max_concurrency: c.maxconcurrency.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_start_with_the_root_and_the_emulator_is_anonymous() {
        let mut c = GcsConfig {
            bucket: "b".into(),
            rootdirectory: "/r/s/".into(),
            ..GcsConfig::default()
        };
        let s = GcsSettings::from_config(&c, None);
        assert_eq!(s.name_prefix, "r/s/");
        assert_eq!(s.endpoint, GOOGLE_ENDPOINT);
        assert!(!s.anonymous && s.key.is_none());
        c.rootdirectory = "/".into();
        c.keyfile = Some("/k.json".into());
        let s = GcsSettings::from_config(&c, Some("127.0.0.1:4443"));
        assert_eq!(s.name_prefix, "");
        assert_eq!(s.endpoint, "http://127.0.0.1:4443");
        assert!(s.anonymous);
        assert!(matches!(s.key, Some(KeySource::File(_))));
        assert_eq!(s.chunk_size, 16 << 20);
        assert_eq!((s.user_agent, s.max_concurrency), (None, 50));
        c.useragent = Some("fleet/1".into());
        c.maxconcurrency = 0;
        let s = GcsSettings::from_config(&c, None);
        assert_eq!(
            (s.user_agent.as_deref(), s.max_concurrency),
            (Some("fleet/1"), 1)
        );
    }
}
