//! The `REGISTRY_*` environment overlay, applied to the YAML tree before typed decoding.
//!
//! As distribution's `configuration/parser.go`: variables apply in lexical name order, so
//! `REGISTRY_STORAGE=s3` lands before `REGISTRY_STORAGE_S3_BUCKET`; the name after the prefix is
//! split on `_` into keys matched case-insensitively (new keys are stored lower-case); list items
//! are addressed by index; the value is parsed as YAML.

use serde_yaml::{Mapping, Value};

use super::error::ConfigError;

/// The variable that names the configuration file; never an override.
pub const CONFIGURATION_PATH_VAR: &str = "REGISTRY_CONFIGURATION_PATH";

const PREFIX: &str = "REGISTRY_";

/// One variable that was written into the tree.
#[derive(Debug, Clone)]
pub(crate) struct Applied {
    /// The variable's name.
    pub name: String,
    /// The keys it wrote to, as stored in the tree (list indexes as decimal text).
    pub path: Vec<String>,
    /// How many leading keys of `path` already existed; the rest were created by this variable.
    pub existing: usize,
}

/// What writing one variable found on its way.
struct Walk {
    path: Vec<String>,
    existing: Option<usize>,
}

impl Walk {
    /// Records one key; `found` says whether the tree already had it.
    fn step(&mut self, key: String, found: bool) {
        if !found && self.existing.is_none() {
            self.existing = Some(self.path.len());
        }
        self.path.push(key);
    }
}

/// Why a variable was not written.
enum Skip {
    /// Distribution refuses it too: the start-up fails.
    Error(String),
    /// Distribution ignores it silently; we warn.
    Ignore(String),
}

/// Applies every `REGISTRY_*` variable of `env` to `root`, in lexical order.
pub(crate) fn apply(
    root: &mut Mapping,
    env: &[(String, String)],
    warnings: &mut Vec<String>,
) -> Result<Vec<Applied>, ConfigError> {
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && name != CONFIGURATION_PATH_VAR)
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));

    let mut applied = Vec::new();
    for (name, raw) in vars {
        let segments: Vec<&str> = name[PREFIX.len()..].split('_').collect();
        if segments.iter().any(|s| s.is_empty()) {
            warnings.push(format!(
                "ignoring environment variable {name}: empty key in its name"
            ));
            continue;
        }
        let value = parse_value(raw);
        let mut walk = Walk {
            path: Vec::new(),
            existing: None,
        };
        match set(root, &segments, value, &mut walk) {
            Ok(()) => {}
            Err(Skip::Error(message)) => {
                return Err(ConfigError::Env {
                    name: name.clone(),
                    message,
                })
            }
            Err(Skip::Ignore(why)) => {
                warnings.push(format!("ignoring environment variable {name}: {why}"));
                continue;
            }
        }
        wrap_scheme_names(root);
        applied.push(Applied {
            name: name.clone(),
            existing: walk.existing.unwrap_or(walk.path.len()),
            path: walk.path,
        });
    }
    Ok(applied)
}

/// Parses a variable's value as YAML; text that is not valid YAML is taken as a plain string.
fn parse_value(raw: &str) -> Value {
    match serde_yaml::from_str::<Value>(raw) {
        Ok(mut value) => {
            // Merge keys in a value written as YAML behave as they do in a file.
            if value.apply_merge().is_err() {
                return Value::String(raw.to_owned());
            }
            value
        }
        Err(_) => Value::String(raw.to_owned()),
    }
}

/// `storage: s3` and `auth: htpasswd` (from the file or `REGISTRY_STORAGE=s3`) mean `{s3: {}}`.
///
/// This drops whatever else the section held, as distribution does.
pub(crate) fn wrap_scheme_names(root: &mut Mapping) {
    for section in ["storage", "auth"] {
        if let Some(value) = root.get_mut(section) {
            if let Value::String(name) = value {
                let mut map = Mapping::new();
                map.insert(Value::String(name.clone()), Value::Mapping(Mapping::new()));
                *value = Value::Mapping(map);
            }
        }
    }
}

/// Finds the key of `map` equal to `segment` ignoring case.
fn find_key(map: &Mapping, segment: &str) -> Option<Value> {
    map.keys()
        .find(|k| k.as_str().is_some_and(|k| k.eq_ignore_ascii_case(segment)))
        .cloned()
}

/// A fresh container for the key after `next`: a list when `next` is an index.
fn container_for(next: &str) -> Value {
    if next.parse::<usize>().is_ok() {
        Value::Sequence(Vec::new())
    } else {
        Value::Mapping(Mapping::new())
    }
}

/// Writes `value` at `segments` below `map`, creating what is missing; records the keys used.
fn set(map: &mut Mapping, segments: &[&str], value: Value, walk: &mut Walk) -> Result<(), Skip> {
    let (first, rest) = segments.split_first().expect("segments are never empty");
    let found = find_key(map, first);
    let key = found
        .clone()
        .unwrap_or_else(|| Value::String(first.to_ascii_lowercase()));
    walk.step(key.as_str().unwrap_or(first).to_owned(), found.is_some());
    if rest.is_empty() {
        map.insert(key, value);
        return Ok(());
    }
    let child = map.entry(key).or_insert(Value::Null);
    descend(child, rest, value, walk)
}

/// Continues [`set`] inside `node`, which the previous key led to.
fn descend(node: &mut Value, segments: &[&str], value: Value, walk: &mut Walk) -> Result<(), Skip> {
    if node.is_null() {
        *node = container_for(segments[0]);
    }
    match node {
        Value::Mapping(map) => set(map, segments, value, walk),
        Value::Sequence(items) => {
            let (first, rest) = segments.split_first().expect("segments are never empty");
            let at = walk.path.join(".");
            let index: usize = first.parse().map_err(|_| {
                Skip::Error(format!("non-numeric index {first:?} into the list at {at}"))
            })?;
            if index > items.len() {
                return Err(Skip::Error(format!(
                    "undefined index {index} into the list at {at} ({} items)",
                    items.len()
                )));
            }
            let found = index < items.len();
            if !found {
                items.push(Value::Null);
            }
            walk.step(index.to_string(), found);
            if rest.is_empty() {
                items[index] = value;
                Ok(())
            } else {
                descend(&mut items[index], rest, value, walk)
            }
        }
        _ => Err(Skip::Ignore(format!(
            "{} holds a single value, so it has no key {:?}",
            walk.path.join("."),
            segments[0].to_ascii_lowercase()
        ))),
    }
}

/// The child of `node` under `key` (a map key, or a list index as text).
fn child_mut<'a>(node: &'a mut Value, key: &str) -> Option<&'a mut Value> {
    match node {
        Value::Mapping(map) => map.get_mut(key),
        Value::Sequence(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
        _ => None,
    }
}

/// Removes the node at `path` (keys as stored, list indexes as text) from the tree.
pub(crate) fn remove(root: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = root;
    for key in parents {
        match child_mut(node, key) {
            Some(child) => node = child,
            None => return,
        }
    }
    match node {
        Value::Mapping(map) => {
            map.remove(last.as_str());
        }
        Value::Sequence(items) => {
            if let Some(i) = last.parse::<usize>().ok().filter(|&i| i < items.len()) {
                items.remove(i);
            }
        }
        _ => {}
    }
}
