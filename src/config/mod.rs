//! Distribution-compatible configuration: `config.yml`, the `REGISTRY_*` environment overlay,
//! and validation, done once at start-up.
//!
//! [`load`] reads the file (or the embedded [`DEFAULT_CONFIG`]) into a YAML tree, applies the
//! environment to that tree exactly as distribution does, checks the tree-level rules (version,
//! one storage driver, one auth scheme), decodes it into [`Config`] while collecting unknown keys
//! as warnings, and finally checks values. [`Config::unsupported`] lists what is configured but
//! cannot be served by this release.

mod change;
mod console;
mod docker_auth;
mod duration;
mod effective;
mod error;
mod lenient;
mod mirror;
mod model;
mod normalize;
mod overlay;
mod reload;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use serde_yaml::{Mapping, Value};

pub use change::{diff, within, Applies, Change};
pub use console::{CorsConfig, UiConfig};
pub use docker_auth::{parse_docker_auth, read_docker_auth, DockerAuthFile};
pub use duration::parse_go_duration;
pub use effective::masked;
pub use error::ConfigError;
pub use mirror::UpstreamConfig;
pub use model::*;
pub use overlay::CONFIGURATION_PATH_VAR;
pub use reload::ReloadConfig;

use overlay::Applied;

/// The embedded default: the `registry:2` image's config, storing under `./registry-data` and
/// listening on `127.0.0.1:5000`.
pub const DEFAULT_CONFIG: &str = include_str!("default.yml");

/// A loaded configuration and what the operator should be told about it.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// Unknown keys (dotted, e.g. `http.adr`), unknown `REGISTRY_*` variables (by name),
    /// deprecated keys and ignored sections.
    pub warnings: Vec<String>,
    /// The tree the configuration was decoded from (file plus environment overlay), for
    /// `config check` and for telling what a reload changes.
    pub effective: Value,
}

/// Loads config: path (or REGISTRY_CONFIGURATION_PATH, or the embedded default when both are absent), then the REGISTRY_* overlay from `env`, then validation.
pub fn load(path: Option<&Path>, env: &[(String, String)]) -> Result<Loaded, ConfigError> {
    let from_env = env
        .iter()
        .rev()
        .find(|(name, value)| name == CONFIGURATION_PATH_VAR && !value.is_empty())
        .map(|(_, value)| PathBuf::from(value));
    match path.map(Path::to_path_buf).or(from_env) {
        Some(file) => {
            let text = fs::read_to_string(&file).map_err(|source| ConfigError::Read {
                path: file.clone(),
                source,
            })?;
            load_text(&text, &file.display().to_string(), env)
        }
        None => load_text(DEFAULT_CONFIG, "the embedded default configuration", env),
    }
}

/// [`load`] for configuration text already in memory; `origin` names it in errors.
pub fn load_text(
    text: &str,
    origin: &str,
    env: &[(String, String)],
) -> Result<Loaded, ConfigError> {
    let syntax = |message: String| ConfigError::Syntax {
        origin: origin.to_owned(),
        message,
    };
    let mut warnings = Vec::new();
    let mut tree = yaml::parse(text, &mut warnings).map_err(|e| syntax(e.to_string()))?;
    tree.apply_merge().map_err(|e| syntax(e.to_string()))?;
    let mut root = match tree {
        Value::Null => Mapping::new(),
        Value::Mapping(root) => root,
        _ => return Err(syntax("the configuration must be a YAML mapping".into())),
    };

    overlay::wrap_scheme_names(&mut root);
    let applied = overlay::apply(&mut root, env, &mut warnings)?;
    normalize::normalize(&mut root, &mut warnings)?;
    let effective = Value::Mapping(root.clone());
    let mut config = decode(root, &applied, &mut warnings)?;
    config.apply_docker_auth_file()?;
    config.apply_defaults();
    config.validate()?;
    warnings.extend(config.notices());
    Ok(Loaded {
        config,
        warnings,
        effective,
    })
}

/// Decodes the tree into [`Config`]; keys serde does not know become warnings.
///
/// A variable that reaches below a single-valued key (`REGISTRY_HTTP_SECRET_FILE` when
/// `http.secret` is a string) is ignored with a warning, as distribution ignores it; the node it
/// created is removed and decoding retried. Any other decoding error is returned.
fn decode(
    root: Mapping,
    applied: &[Applied],
    warnings: &mut Vec<String>,
) -> Result<Config, ConfigError> {
    let mut tree = Value::Mapping(root);
    let mut applied: Vec<Applied> = applied.to_vec();
    let (config, ignored) = loop {
        match decode_once(tree.clone()) {
            Ok(decoded) => break decoded,
            Err(error) => {
                let failure = DecodeFailure::from(error);
                let (too_deep, rest): (Vec<Applied>, Vec<Applied>) =
                    applied.into_iter().partition(|a| {
                        a.path.len() > failure.location.len()
                            && a.existing < failure.location.len()
                            && either_is_prefix(&a.path, &failure.location)
                    });
                applied = rest;
                if too_deep.is_empty() {
                    return Err(failure.into_error(&applied));
                }
                overlay::remove(&mut tree, &failure.location);
                for a in too_deep {
                    warnings.push(format!(
                        "ignoring unrecognized environment variable {} ({} takes a single value)",
                        a.name,
                        failure.location.join(".")
                    ));
                }
            }
        }
    };

    for path in ignored {
        let setters: Vec<&Applied> = applied
            .iter()
            .filter(|a| either_is_prefix(&a.path, &path))
            .collect();
        if setters.is_empty() || setters.iter().all(|a| a.existing >= path.len()) {
            warnings.push(format!("unknown configuration key {}", path.join(".")));
        }
        for setter in setters {
            warnings.push(format!(
                "ignoring unrecognized environment variable {} (no configuration key {})",
                setter.name,
                setter.path.join(".")
            ));
        }
    }
    warnings.dedup();
    Ok(config)
}

/// One decoding attempt: the config and the paths of the keys serde ignored.
fn decode_once(
    tree: Value,
) -> Result<(Config, Vec<Vec<String>>), serde_path_to_error::Error<serde_yaml::Error>> {
    let mut ignored: Vec<Vec<String>> = Vec::new();
    let mut record = |path: serde_ignored::Path| ignored.push(ignored_segments(&path));
    let config =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(tree, &mut record))?;
    Ok((config, ignored))
}

/// `serde_ignored`'s path as keys and list indexes, root first.
fn ignored_segments(path: &serde_ignored::Path) -> Vec<String> {
    use serde_ignored::Path as P;
    match path {
        P::Root => Vec::new(),
        P::Seq { parent, index } => {
            let mut out = ignored_segments(parent);
            out.push(index.to_string());
            out
        }
        P::Map { parent, key } => {
            let mut out = ignored_segments(parent);
            out.push(key.clone());
            out
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            ignored_segments(parent)
        }
    }
}

/// Whether one key path lies inside the other (keys compared ignoring case).
fn either_is_prefix(a: &[String], b: &[String]) -> bool {
    a.iter().zip(b).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

/// A decoding error located at a dotted key.
struct DecodeFailure {
    /// The key at fault; for a missing key, the key itself rather than its section.
    location: Vec<String>,
    /// What is wrong.
    message: String,
}

impl From<serde_path_to_error::Error<serde_yaml::Error>> for DecodeFailure {
    fn from(error: serde_path_to_error::Error<serde_yaml::Error>) -> Self {
        use serde_path_to_error::Segment;
        let mut location: Vec<String> = error
            .path()
            .iter()
            .map(|segment| match segment {
                Segment::Seq { index } => index.to_string(),
                Segment::Map { key } | Segment::Enum { variant: key } => key.clone(),
                Segment::Unknown => "?".to_owned(),
            })
            .collect();
        let mut message = error.into_inner().to_string();
        // "missing field `age`" is reported at the enclosing section; name the key itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'))
        {
            let in_uploadpurging = location.last().is_some_and(|k| k == "uploadpurging");
            location.push(field.to_owned());
            message = if in_uploadpurging {
                "missing; unless uploadpurging says enabled: false, age, interval and dryrun are all required"
                    .to_owned()
            } else {
                "missing, but required".to_owned()
            };
        } else if let Some((field, rest)) = message
            .strip_prefix("invalid field `")
            .and_then(|rest| rest.split_once("`: "))
        {
            // A section that checks its own fields reports them this way.
            location.push(field.to_owned());
            message = rest.to_owned();
        }
        DecodeFailure { location, message }
    }
}

impl DecodeFailure {
    /// The error, naming the variables that wrote to (or next to) the key.
    fn into_error(self, applied: &[Applied]) -> ConfigError {
        let section = &self.location[..self.location.len().saturating_sub(1)];
        let setters: Vec<&str> = applied
            .iter()
            .filter(|a| {
                either_is_prefix(&a.path, &self.location)
                    || (self.message.starts_with("missing") && either_is_prefix(&a.path, section))
            })
            .map(|a| a.name.as_str())
            .collect();
        let mut message = self.message;
        if !setters.is_empty() {
            message = format!(
                "{message} (set by environment variable {})",
                setters.join(", ")
            );
        }
        ConfigError::invalid(self.location.join("."), message)
    }
}
