//! Checks and rewrites on the YAML tree after the overlay and before typed decoding:
//! the version, deprecated keys, and the one-driver / one-scheme rules.

use serde_yaml::{Mapping, Value};

use super::error::ConfigError;
use super::model::{AUTH_SCHEMES, STORAGE_DRIVERS, STORAGE_OPTIONS};

/// The only configuration version distribution defines.
const VERSION: &str = "0.1";

/// Runs every tree-level rule; deprecations become warnings.
pub(crate) fn normalize(root: &mut Mapping, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    check_version(root)?;
    rename_deprecated(root, warnings);
    check_storage(root)?;
    check_auth(root)
}

/// A scalar as the text Go's YAML decoder would have given a string field.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn check_version(root: &Mapping) -> Result<(), ConfigError> {
    match root.get("version") {
        None | Some(Value::Null) => Err(ConfigError::invalid(
            "version",
            format!("missing; this release reads version {VERSION} configurations"),
        )),
        Some(value) => match scalar_text(value) {
            Some(v) if v == VERSION => Ok(()),
            Some(v) => Err(ConfigError::invalid(
                "version",
                format!("unsupported version {v:?}"),
            )),
            None => Err(ConfigError::invalid(
                "version",
                format!("expected a version such as {VERSION}"),
            )),
        },
    }
}

fn map_mut<'a>(root: &'a mut Mapping, key: &str) -> Option<&'a mut Mapping> {
    root.get_mut(key).and_then(Value::as_mapping_mut)
}

/// Moves deprecated keys to their replacements (unless those are set) and warns.
fn rename_deprecated(root: &mut Mapping, warnings: &mut Vec<String>) {
    if let Some(level) = root.remove("loglevel") {
        warnings.push("loglevel is deprecated; use log.level".into());
        if matches!(root.get("log"), None | Some(Value::Null)) {
            root.insert("log".into(), Value::Mapping(Mapping::new()));
        }
        if let Some(log) = map_mut(root, "log") {
            if !log.contains_key("level") {
                log.insert("level".into(), level);
            }
        }
    }
    let cache = map_mut(root, "storage").and_then(|storage| map_mut(storage, "cache"));
    if let Some(cache) = cache {
        if let Some(layerinfo) = cache.remove("layerinfo") {
            if cache.contains_key("blobdescriptor") {
                warnings.push(
                    "storage.cache.layerinfo is deprecated and ignored, as storage.cache.blobdescriptor is set"
                        .into(),
                );
            } else {
                warnings.push(
                    "storage.cache.layerinfo is deprecated; use storage.cache.blobdescriptor"
                        .into(),
                );
                cache.insert("blobdescriptor".into(), layerinfo);
            }
        }
    }
    if let Some(validation) = map_mut(root, "validation") {
        if validation.remove("enabled").is_some() {
            warnings.push(
                "validation.enabled is deprecated and ignored; use validation.disabled".into(),
            );
        }
    }
}

/// Keys of `map` as text (non-string keys are shown as YAML would print them).
fn key_names(map: &Mapping) -> Vec<String> {
    map.keys()
        .map(|k| scalar_text(k).unwrap_or_else(|| format!("{k:?}")))
        .collect()
}

/// Exactly one known driver under `storage`; an empty driver section means its defaults.
fn check_storage(root: &mut Mapping) -> Result<(), ConfigError> {
    let storage = match root.get_mut("storage") {
        None | Some(Value::Null) => return Err(ConfigError::NoStorageDriver),
        Some(Value::Mapping(storage)) => storage,
        Some(_) => {
            return Err(ConfigError::invalid(
                "storage",
                "expected a mapping naming one storage driver",
            ))
        }
    };
    let drivers: Vec<String> = key_names(storage)
        .into_iter()
        .filter(|k| !STORAGE_OPTIONS.contains(&k.as_str()))
        .collect();
    match drivers.as_slice() {
        [] => Err(ConfigError::NoStorageDriver),
        [driver] if !STORAGE_DRIVERS.contains(&driver.as_str()) => Err(ConfigError::invalid(
            format!("storage.{driver}"),
            format!(
                "unknown storage driver {driver:?}: must be one of {}",
                STORAGE_DRIVERS.join(", ")
            ),
        )),
        [driver] => {
            if let Some(params) = storage.get_mut(driver.as_str()) {
                if params.is_null() || params.as_str() == Some("") {
                    *params = Value::Mapping(Mapping::new());
                }
            }
            Ok(())
        }
        _ => Err(ConfigError::MultipleStorageDrivers { drivers }),
    }
}

/// At most one scheme under `auth`; `none`, an empty section or null mean no auth.
fn check_auth(root: &mut Mapping) -> Result<(), ConfigError> {
    let auth = match root.get_mut("auth") {
        None => return Ok(()),
        Some(Value::Null) => {
            root.remove("auth");
            return Ok(());
        }
        Some(Value::Mapping(auth)) => auth,
        Some(_) => {
            return Err(ConfigError::invalid(
                "auth",
                "expected a mapping naming one auth scheme",
            ))
        }
    };
    let schemes = key_names(auth);
    match schemes.as_slice() {
        [] => {
            root.remove("auth");
            Ok(())
        }
        [scheme] if scheme == "none" => {
            root.remove("auth");
            Ok(())
        }
        [scheme] if !AUTH_SCHEMES.contains(&scheme.as_str()) => Err(ConfigError::invalid(
            format!("auth.{scheme}"),
            format!(
                "unknown auth scheme {scheme:?}: must be one of none, {}",
                AUTH_SCHEMES.join(", ")
            ),
        )),
        [scheme] => {
            if let Some(params) = auth.get_mut(scheme.as_str()) {
                if params.is_null() || params.as_str() == Some("") {
                    *params = Value::Mapping(Mapping::new());
                }
            }
            Ok(())
        }
        _ => Err(ConfigError::MultipleAuthSchemes { schemes }),
    }
}
