//! Checks and rewrites on the YAML tree after the overlay and before typed decoding:
//! the version, deprecated keys, sections registry:2 reads its own way, and the one-driver /
//! one-scheme rules.

use serde_yaml::{Mapping, Value};

use super::error::ConfigError;
use super::lenient::parse_bool;
use super::model::{AUTH_SCHEMES, STORAGE_DRIVERS, STORAGE_OPTIONS};

/// The only configuration version distribution defines.
const VERSION: &str = "0.1";

/// Runs every tree-level rule; deprecations become warnings.
pub(crate) fn normalize(root: &mut Mapping, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
    check_version(root)?;
    rename_deprecated(root, warnings);
    reshape_sections(root, warnings);
    check_storage(root)?;
    check_tokenissuer(root)?;
    check_auth(root)
}

/// docker_auth back-ends written inline under `tokenissuer` are refused by name.
fn check_tokenissuer(root: &Mapping) -> Result<(), ConfigError> {
    let Some(t) = root.get("tokenissuer").and_then(Value::as_mapping) else {
        return Ok(());
    };
    match t
        .keys()
        .filter_map(Value::as_str)
        .find_map(|k| super::docker_auth::refusal("tokenissuer.", k))
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
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
        if let Some(enabled) = validation.remove("enabled") {
            // registry:2: `if !Enabled { Enabled = !Disabled }`, so `enabled: true` wins.
            if truthy(&enabled) && validation.get("disabled").is_some_and(truthy) {
                validation.insert("disabled".into(), Value::Bool(false));
                warnings.push(
                    "validation.enabled is deprecated; enabled: true overrides validation.disabled: true, as in registry:2"
                        .into(),
                );
            } else {
                warnings.push("validation.enabled is deprecated; use validation.disabled".into());
            }
        }
    }
}

/// Whether a value reads as `true` (a boolean, or Go's textual forms).
fn truthy(value: &Value) -> bool {
    match value {
        Value::Bool(b) => *b,
        Value::String(s) => parse_bool(s) == Some(true),
        _ => false,
    }
}

/// Sections whose registry:2 reading differs from a plain decoding of the tree.
fn reshape_sections(root: &mut Mapping, warnings: &mut Vec<String>) {
    if let Some(storage) = map_mut(root, "storage") {
        if let Some(maintenance) = map_mut(storage, "maintenance") {
            // registry:2 wants `{enabled: …}` here and panics on a bare boolean; the intent is clear.
            for section in ["readonly", "uploadpurging"] {
                let Some(value) = maintenance.get_mut(section) else {
                    continue;
                };
                let flag = match value {
                    Value::Bool(b) => Some(*b),
                    Value::String(s) => parse_bool(s),
                    _ => None,
                };
                if let Some(flag) = flag {
                    let mut map = Mapping::new();
                    map.insert("enabled".into(), Value::Bool(flag));
                    *value = Value::Mapping(map);
                    warnings.push(format!(
                        "storage.maintenance.{section}: {flag} is read as storage.maintenance.{section}.enabled: {flag}"
                    ));
                }
            }
        }
        if let Some(delete) = map_mut(storage, "delete") {
            // registry:2 enables deletes only for a boolean true and ignores anything else.
            if let Some(value) = delete.get("enabled") {
                let readable = match value {
                    Value::Null | Value::Bool(_) => true,
                    Value::String(s) => parse_bool(s).is_some(),
                    _ => false,
                };
                if !readable {
                    let shown = scalar_text(value).unwrap_or_else(|| format!("{value:?}"));
                    warnings.push(format!(
                        "storage.delete.enabled: {shown:?} is not a boolean; deletes stay disabled, as in registry:2"
                    ));
                    delete.insert("enabled".into(), Value::Bool(false));
                }
            }
        }
        if let Some(cache) = map_mut(storage, "cache") {
            // registry:2 matches the names exactly and runs without a cache on anything else.
            if let Some(kind) = cache.get("blobdescriptor") {
                let known = matches!(kind, Value::Null)
                    || matches!(kind.as_str(), Some("" | "inmemory" | "redis"));
                if !known {
                    let shown = scalar_text(kind).unwrap_or_else(|| format!("{kind:?}"));
                    warnings.push(format!(
                        "storage.cache.blobdescriptor: unknown cache type {shown:?}, caching disabled"
                    ));
                    cache.remove("blobdescriptor");
                }
            }
        }
    }
    let tls = map_mut(root, "http").and_then(|http| map_mut(http, "tls"));
    if let Some(tls) = tls {
        // registry:2 only turns to ACME when a cache file is named; otherwise the section is inert.
        let inert = match tls.get("letsencrypt") {
            Some(Value::Mapping(le)) => le
                .get("cachefile")
                .and_then(scalar_text)
                .is_none_or(|f| f.is_empty()),
            Some(_) => true,
            None => false,
        };
        if inert {
            tls.remove("letsencrypt");
            warnings.push(
                "http.tls.letsencrypt is ignored: it has no cachefile, so registry:2 does not use it either"
                    .into(),
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
