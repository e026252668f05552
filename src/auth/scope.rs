//! Token scopes as clients request them (`repository:foo/bar:pull,push`) and as tokens grant
//! them (the `access` claim).

use serde::{Deserialize, Deserializer, Serialize};

use super::Access;

/// Longest scope string accepted.
const MAX_SCOPE_LEN: usize = 1024;

/// One resource and the actions on it: an entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceActions {
    /// `repository`, `registry`, ...
    #[serde(rename = "type", deserialize_with = "null_default")]
    pub kind: String,
    /// Resource class (`repository(plugin):...`), usually empty.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub class: String,
    /// Repository name, or `catalog`.
    #[serde(deserialize_with = "null_default")]
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    #[serde(default, deserialize_with = "null_default")]
    pub actions: Vec<String>,
}

/// `null` reads as the default value, as Go's JSON decoder does.
pub(crate) fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Not `type:name:actions`.
    #[error("malformed scope {0:?}: expected type:name:actions")]
    Malformed(String),
    /// Too long.
    #[error("scope longer than {MAX_SCOPE_LEN} characters")]
    TooLong,
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Parses one scope: `type[(class)]:name:action[,action...]`. The name may itself hold `:`
/// (`localhost:5000/foo`): the type ends at the first colon, the actions start after the last.
pub fn parse_scope(text: &str) -> Result<ResourceActions, ScopeError> {
    if text.len() > MAX_SCOPE_LEN {
        return Err(ScopeError::TooLong);
    }
    let bad = || ScopeError::Malformed(text.chars().take(80).collect());
    let (kind, rest) = text.split_once(':').ok_or_else(bad)?;
    let (name, actions) = rest.rsplit_once(':').ok_or_else(bad)?;
    let (kind, class) = match kind.split_once('(') {
        Some((k, c)) => (k, c.strip_suffix(')').ok_or_else(bad)?),
        None => (kind, ""),
    };
    if !is_word(kind) || !(class.is_empty() || is_word(class)) {
        return Err(bad());
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        return Err(bad());
    }
    let actions: Vec<String> = actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    if actions
        .iter()
        .any(|a| !(a == "*" || a.bytes().all(|b| b.is_ascii_lowercase())))
    {
        return Err(bad());
    }
    Ok(ResourceActions {
        kind: kind.to_string(),
        class: class.to_string(),
        name: name.to_string(),
        actions,
    })
}

/// Parses a space-separated list of scopes (one `scope` parameter may carry several).
pub fn parse_scopes(text: &str) -> Result<Vec<ResourceActions>, ScopeError> {
    text.split_ascii_whitespace().map(parse_scope).collect()
}

/// `type:name:a,b` (with the class in parentheses when there is one).
pub fn format_scope(r: &ResourceActions) -> String {
    let kind = if r.class.is_empty() {
        r.kind.clone()
    } else {
        format!("{}({})", r.kind, r.class)
    };
    format!("{kind}:{}:{}", r.name, r.actions.join(","))
}

/// Groups required accesses per resource, in order: `repository:a:pull,push registry:catalog:*`.
pub fn challenge_scope(access: &[Access]) -> String {
    let mut groups: Vec<ResourceActions> = Vec::new();
    for a in access {
        match groups
            .iter_mut()
            .find(|g| g.kind == a.kind && g.name == a.name)
        {
            Some(g) => {
                if !g.actions.iter().any(|x| x == a.action) {
                    g.actions.push(a.action.to_string());
                }
            }
            None => groups.push(ResourceActions {
                kind: a.kind.to_string(),
                class: String::new(),
                name: a.name.clone(),
                actions: vec![a.action.to_string()],
            }),
        }
    }
    groups
        .iter()
        .map(format_scope)
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when `granted` allows `access` (`*` allows every action).
pub fn permits(granted: &[ResourceActions], access: &Access) -> bool {
    granted.iter().any(|r| {
        r.kind == access.kind
            && r.name == access.name
            && r.actions.iter().any(|a| a == access.action || a == "*")
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_docker_scopes() {
        let s = parse_scope("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.name.as_str(), s.actions.clone()),
            (
                "repository",
                "samalba/my-app",
                vec!["pull".into(), "push".into()]
            )
        );
        let s = parse_scope("repository:localhost:5000/foo:pull").unwrap();
        assert_eq!(s.name, "localhost:5000/foo");
        let s = parse_scope("repository(plugin):vieux/sshfs:pull").unwrap();
        assert_eq!(
            (s.kind.as_str(), s.class.as_str()),
            ("repository", "plugin")
        );
        assert_eq!(parse_scope("registry:catalog:*").unwrap().actions, ["*"]);
        assert_eq!(
            parse_scope("repository:foo:").unwrap().actions,
            Vec::<String>::new()
        );
        for bad in [
            "",
            "repository",
            "repository:foo",
            ":foo:pull",
            "repository::pull",
            "repo sitory:foo:pull",
            "repository(:foo:pull",
            "repository:foo:PULL",
            "repository:fo\"o:pull",
        ] {
            assert!(parse_scope(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            parse_scopes("repository:a:pull  registry:catalog:*")
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn challenge_groups_actions_per_resource() {
        let access = [
            Access::repository("foo", "pull"),
            Access::repository("foo", "push"),
            Access::repository("bar", "pull"),
        ];
        assert_eq!(
            challenge_scope(&access),
            "repository:foo:pull,push repository:bar:pull"
        );
    }

    #[test]
    fn wildcard_action_permits_everything_on_its_resource() {
        let granted = vec![parse_scope("repository:foo:*").unwrap()];
        assert!(permits(&granted, &Access::repository("foo", "delete")));
        assert!(!permits(&granted, &Access::repository("foobar", "pull")));
    }

    proptest! {
        #[test]
        fn scope_parser_never_panics(text in "\\PC{0,200}") {
            let _ = parse_scope(&text);
            let _ = parse_scopes(&text);
        }

        #[test]
        fn formatted_scopes_parse_back(
            kind in "[a-z]{1,10}",
            name in "[a-z0-9]{1,10}(/[a-z0-9._-]{1,10}){0,3}(:[0-9]{1,5})?",
            actions in proptest::collection::vec("[a-z]{1,6}|\\*", 0..4),
        ) {
            let r = ResourceActions { kind, class: String::new(), name, actions };
            prop_assert_eq!(parse_scope(&format_scope(&r)).unwrap(), r);
        }
    }
}
