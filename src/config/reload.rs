//! `reload` section (Wharf's own): when a running node re-reads its configuration file.

use serde::Deserialize;

use super::lenient;

/// `reload` section.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(default)]
pub struct ReloadConfig {
    /// Re-read the file when it changes (checked every second), as on SIGHUP.
    #[serde(deserialize_with = "lenient::bool")]
    pub watch: bool,
}
