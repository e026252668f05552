//! Ordered ACL rules of the token issuer, in the spirit of docker_auth: the first rule whose
//! account, type and name patterns match a requested resource decides which actions are allowed.
//!
//! Patterns are globs: `*` matches within one path segment (no `/`), `**` across segments, `?`
//! one character other than `/`. In `name`, `${account}` stands for the requesting account.
//! The anonymous account is `""`: a rule with `account: ""` matches only anonymous requests, a
//! rule without `account` matches everyone, anonymous included.

use crate::config::AclRule;

use super::scope::ResourceActions;

/// Every action a rule with `*` allows.
const ALL_ACTIONS: &[&str] = &["pull", "push", "delete", "*"];

/// Glob match (see the module documentation).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.as_bytes();
    let t = text.as_bytes();
    // reachable[j]: pattern prefix consumed so far matches text[..j].
    let mut reachable = vec![false; t.len() + 1];
    reachable[0] = true;
    let mut i = 0;
    while i < p.len() {
        let mut next = vec![false; t.len() + 1];
        match p[i] {
            b'*' if p.get(i + 1) == Some(&b'*') => {
                let mut any = false;
                for j in 0..=t.len() {
                    any |= reachable[j];
                    next[j] = any;
                }
                i += 2;
                reachable = next;
                continue;
            }
            b'*' => {
                for j in 0..=t.len() {
                    next[j] = reachable[j] || (j > 0 && next[j - 1] && t[j - 1] != b'/');
                }
            }
            b'?' => {
                for j in 1..=t.len() {
                    next[j] = reachable[j - 1] && t[j - 1] != b'/';
                }
            }
            c => {
                for j in 1..=t.len() {
                    next[j] = reachable[j - 1] && t[j - 1] == c;
                }
            }
        }
        reachable = next;
        i += 1;
    }
    reachable[t.len()]
}

fn field_matches(pattern: Option<&str>, value: &str) -> bool {
    pattern.is_none_or(|p| glob_match(p, value))
}

/// The rule set.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<AclRule>,
}

impl Acl {
    /// Rules in evaluation order.
    pub fn new(rules: Vec<AclRule>) -> Self {
        Self { rules }
    }

    /// The actions of `requested` that `account` is allowed (possibly none).
    pub fn allowed(&self, account: &str, requested: &ResourceActions) -> Vec<String> {
        let rule = self.rules.iter().find(|rule| {
            let m = &rule.matches;
            if m.account
                .as_deref()
                .is_some_and(|p| !glob_match(p, account))
            {
                return false;
            }
            if !field_matches(m.kind.as_deref(), &requested.kind) {
                return false;
            }
            match &m.name {
                None => true,
                Some(p) if p.contains("${account}") => {
                    // An account holding glob characters must not widen the pattern.
                    !account.is_empty()
                        && !account.contains(['*', '?'])
                        && glob_match(&p.replace("${account}", account), &requested.name)
                }
                Some(p) => glob_match(p, &requested.name),
            }
        });
        let Some(rule) = rule else {
            return Vec::new();
        };
        let wildcard = rule.actions.iter().any(|a| a == "*");
        requested
            .actions
            .iter()
            .filter(|a| ALL_ACTIONS.contains(&a.as_str()))
            .filter(|a| wildcard || rule.actions.contains(a))
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AclMatch;

    #[test]
    fn globs() {
        assert!(glob_match("alice/*", "alice/app"));
        assert!(!glob_match("alice/*", "alice/app/x"));
        assert!(glob_match("alice/**", "alice/app/x"));
        assert!(glob_match("**", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "a/c"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
        assert!(glob_match("*", ""));
        assert!(glob_match("lib*/*-dev", "library/x-dev"));
        assert!(!glob_match("public", "public2"));
    }

    fn rule(account: Option<&str>, name: Option<&str>, actions: &[&str]) -> AclRule {
        AclRule {
            matches: AclMatch {
                account: account.map(str::to_string),
                kind: Some("repository".into()),
                name: name.map(str::to_string),
            },
            actions: actions.iter().map(|a| a.to_string()).collect(),
            comment: String::new(),
        }
    }

    fn req(name: &str, actions: &[&str]) -> ResourceActions {
        ResourceActions {
            kind: "repository".into(),
            class: String::new(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn first_matching_rule_decides() {
        let acl = Acl::new(vec![
            rule(Some("admin"), None, &["*"]),
            rule(Some("alice"), Some("${account}/*"), &["pull", "push"]),
            rule(Some("alice"), Some("secret/*"), &[]),
            rule(None, Some("secret/*"), &["pull"]),
            rule(Some(""), Some("public/*"), &["pull"]),
        ]);
        assert_eq!(
            acl.allowed("admin", &req("x/y", &["pull", "push", "delete"])),
            ["pull", "push", "delete"]
        );
        assert_eq!(
            acl.allowed("alice", &req("alice/app", &["pull", "push", "delete"])),
            ["pull", "push"]
        );
        assert!(acl.allowed("alice", &req("bob/app", &["pull"])).is_empty());
        assert!(acl.allowed("alice", &req("secret/a", &["pull"])).is_empty());
        assert_eq!(
            acl.allowed("bob", &req("secret/a", &["pull", "push"])),
            ["pull"]
        );
        assert_eq!(
            acl.allowed("", &req("public/a", &["pull", "push"])),
            ["pull"]
        );
        assert!(acl.allowed("bob", &req("public/a", &["pull"])).is_empty());
        assert!(acl.allowed("a*", &req("a*/x", &["pull"])).is_empty());
    }
}
