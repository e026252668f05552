//! What changes between two configurations, key by key, and whether each change can apply to
//! a running node or needs a restart.

use std::collections::BTreeMap;

use serde_yaml::Value;

/// When a changed key takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Applies {
    /// On reload (SIGHUP or `reload.watch`), for new requests.
    Live,
    /// Only when the process restarts; a reload keeps the old value.
    NeedsRestart,
}

/// One changed key.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Change {
    /// The dotted key (`http.headers.X-Frame`, `notifications.endpoints.0.url`).
    pub key: String,
    /// When it takes effect.
    pub applies: Applies,
}

/// Sections (dotted key prefixes) a reload applies. A section that becomes reloadable adds
/// its prefix here and rebuilds its state where the node builds a serving generation.
const LIVE: &[&str] = &[
    "log.level",
    "log.fields",
    "log.formatter",
    "log.accesslog",
    "http.headers",
    "auth",
    "tokenissuer",
    "notifications",
    "storage.maintenance",
    "storage.delete",
    "storage.redirect",
    "storage.cache",
    "storage.tag",
    "gc",
    "health",
    "redis",
    "validation",
    "catalog",
    "tags",
    "reload",
    "proxy",
    "http.cors",
    "ui",
];

/// Whether a change of `key` applies live; everything not listed needs a restart (listen
/// addresses, `http.secret`, TLS, the storage driver and its root, ...).
pub fn applies(key: &str) -> Applies {
    if LIVE.iter().any(|prefix| within(key, prefix)) {
        Applies::Live
    } else {
        Applies::NeedsRestart
    }
}

/// Whether the dotted `key` is `prefix` or lies under it (`gc.interval` is within `gc`, not
/// within `g`).
pub fn within(key: &str, prefix: &str) -> bool {
    key.len() >= prefix.len()
        && key[..prefix.len()].eq_ignore_ascii_case(prefix)
        && (key.len() == prefix.len() || key.as_bytes()[prefix.len()] == b'.')
}

/// Every key whose value differs between the trees `old` and `new`, with when it applies.
pub fn diff(old: &Value, new: &Value) -> Vec<Change> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    flatten("", old, &mut a);
    flatten("", new, &mut b);
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| Change {
            key: k.clone(),
            applies: applies(k),
        })
        .collect()
}

/// The tree's leaves by dotted key; an empty section or list is a leaf of its own, so adding
/// or removing one shows.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match value {
        Value::Mapping(map) if !map.is_empty() => {
            for (k, v) in map {
                let key = match k {
                    Value::String(s) => s.clone(),
                    other => serde_yaml::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                flatten(&join(&key), v, out);
            }
        }
        Value::Sequence(items) if !items.is_empty() => {
            for (i, v) in items.iter().enumerate() {
                flatten(&join(&i.to_string()), v, out);
            }
        }
        Value::Tagged(t) => flatten(prefix, &t.value, out),
        other => {
            out.insert(prefix.to_owned(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn changes_are_named_by_key_and_classified() {
        let old = tree(
            "http: {addr: ':5000', secret: a, headers: {X-A: [1]}}\n\
             log: {level: info}\n\
             storage: {filesystem: {rootdirectory: /a}, maintenance: {readonly: {enabled: false}}}\n",
        );
        let new = tree(
            "http: {addr: ':5001', secret: b, headers: {X-A: [1], X-B: [2]}}\n\
             log: {level: debug}\n\
             storage: {filesystem: {rootdirectory: /b}, maintenance: {readonly: {enabled: true}}}\n\
             notifications: {endpoints: [{name: n, url: 'http://127.0.0.1:1/'}]}\n",
        );
        let changes: Vec<(String, Applies)> = diff(&old, &new)
            .into_iter()
            .map(|c| (c.key, c.applies))
            .collect();
        use Applies::*;
        assert_eq!(
            changes,
            vec![
                ("http.addr".into(), NeedsRestart),
                ("http.headers.X-B.0".into(), Live),
                ("http.secret".into(), NeedsRestart),
                ("log.level".into(), Live),
                ("notifications.endpoints.0.name".into(), Live),
                ("notifications.endpoints.0.url".into(), Live),
                ("storage.filesystem.rootdirectory".into(), NeedsRestart),
                ("storage.maintenance.readonly.enabled".into(), Live),
            ]
        );
        assert!(diff(&old, &old).is_empty());
    }

    #[test]
    fn prefixes_match_whole_keys_only() {
        assert_eq!(applies("auth.htpasswd.path"), Applies::Live);
        assert_eq!(applies("authx"), Applies::NeedsRestart);
        assert_eq!(applies("health"), Applies::Live);
        assert_eq!(applies("storage.s3.bucket"), Applies::NeedsRestart);
        assert_eq!(applies("log.hooks.0.type"), Applies::NeedsRestart);
    }
}
