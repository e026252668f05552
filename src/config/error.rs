//! The one error type of configuration loading; every message names the key at fault.

use std::path::PathBuf;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file could not be read (missing, unreadable).
    #[error("reading configuration file {}: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The text is not valid YAML; the message carries line and column.
    #[error("parsing {origin}: {message}")]
    Syntax {
        /// Where the text came from (a path, or the embedded default).
        origin: String,
        /// The YAML parser's message, with line and column.
        message: String,
    },
    /// A `REGISTRY_*` variable could not be applied.
    #[error("parsing environment variable {name}: {message}")]
    Env {
        /// The variable's name.
        name: String,
        /// What is wrong with it.
        message: String,
    },
    /// `storage` names more than one driver (file and environment together).
    #[error("multiple storage drivers specified in configuration or environment: [{}]", drivers.join(" "))]
    MultipleStorageDrivers {
        /// The driver keys found, in order.
        drivers: Vec<String>,
    },
    /// `storage` names no driver at all.
    #[error("storage: no storage driver configured")]
    NoStorageDriver,
    /// `auth` names more than one scheme.
    #[error("auth: exactly one auth scheme may be configured, found [{}]", schemes.join(" "))]
    MultipleAuthSchemes {
        /// The scheme keys found, in order.
        schemes: Vec<String>,
    },
    /// A key has a value that is missing, of the wrong type or out of range.
    #[error("{key}: {message}")]
    Invalid {
        /// Dotted path of the key, e.g. `storage.maintenance.uploadpurging.age`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub(crate) fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}
