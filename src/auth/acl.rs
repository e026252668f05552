//! docker_auth's static ACL, with its semantics: rules are tried in order and the first whose
//! `match` holds decides; `["*"]` grants every requested action, any other list grants the
//! requested actions it names (`[]` denies); no matching rule denies.
//!
//! `account`, `type`, `name` and `service` are patterns (see [`super::pattern`]) in which
//! `${account}`, `${type}`, `${name}` and `${service}` stand for the request's values (quoted,
//! so they never widen a pattern), `${<field>:<n>}` for group n of that field's own `/regex/`,
//! and `${labels:<label>}` for each of the user's values of that label in turn. `ip` is an
//! address or a CIDR network; `labels` asks one of the user's values of each label to match.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::LazyLock;

use regex::Regex;

use super::pattern;
use crate::config::{AclMatch, AclRule};

/// Why an ACL was refused; the message names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("entry {index}, invalid match conditions: {reason}")]
pub struct AclError {
    /// Position of the rule.
    pub index: usize,
    /// What is wrong.
    pub reason: String,
}

/// One scope of a token request as the ACL sees it (docker_auth's `AuthRequestInfo`).
#[derive(Debug, Clone, Copy)]
pub struct AuthRequest<'a> {
    /// Authenticated account, `""` when anonymous.
    pub account: &'a str,
    /// Resource type (`repository`, `registry`).
    pub kind: &'a str,
    /// Resource name.
    pub name: &'a str,
    /// The service the token is for.
    pub service: &'a str,
    /// Client address, when known.
    pub ip: Option<IpAddr>,
    /// Requested actions.
    pub actions: &'a [String],
    /// The account's labels.
    pub labels: &'a BTreeMap<String, Vec<String>>,
}

/// An address or network of an `ip` match.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    network: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Parses `1.2.3.4`, `2001:db8::1` or `10.0.0.0/8` as Go's `ParseIP`/`ParseCIDR` do.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            None => {
                let addr: IpAddr = text
                    .parse()
                    .map_err(|_| format!("invalid CIDR address: {text}"))?;
                let addr = addr.to_canonical();
                (addr, if addr.is_ipv4() { 32 } else { 128 })
            }
            Some((a, p)) => {
                let bad = || format!("invalid CIDR address: {text}");
                let addr: IpAddr = a.parse().map_err(|_| bad())?;
                let max = if addr.is_ipv4() { 32 } else { 128 };
                if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let prefix: u8 = p.parse().map_err(|_| bad())?;
                if prefix > max {
                    return Err(bad());
                }
                // A v4-mapped v6 network of /96 or more is the v4 network, as Go compares it.
                match addr {
                    IpAddr::V6(v6) if prefix >= 96 && v6.to_ipv4_mapped().is_some() => (
                        IpAddr::V4(
                            v6.to_ipv4_mapped()
                                .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED),
                        ),
                        prefix - 96,
                    ),
                    _ => (addr, prefix),
                }
            }
        };
        Ok(Self {
            network: mask(addr, prefix),
            prefix,
        })
    }

    /// True when `ip` is in the network; a v4-mapped v6 address counts as v4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix) == self.network
    }
}

fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((bits & m).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((bits & m).into())
        }
    }
}

/// A checked rule.
#[derive(Debug, Clone)]
struct Rule {
    matches: AclMatch,
    ip: Option<IpNet>,
    actions: Vec<String>,
    comment: String,
}

/// docker_auth's static ACL.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// `${field:n}`: group n of that field's own regex (docker_auth's capture-group syntax).
static CAPTURE_GROUP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{(.+?):(\d+)\}").expect("static regex"));

impl Acl {
    /// Checks every rule's patterns as docker_auth does at start-up.
    pub fn new(rules: &[AclRule]) -> Result<Self, AclError> {
        let mut checked = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let err = |reason: String| AclError { index, reason };
            let matches = rule.matches.clone().unwrap_or_default();
            for p in [
                &matches.account,
                &matches.kind,
                &matches.name,
                &matches.service,
            ]
            .into_iter()
            .flatten()
            {
                pattern::validate(p).map_err(|e| err(format!("invalid pattern {p:?}: {e}")))?;
            }
            let ip = matches
                .ip
                .as_deref()
                .map(IpNet::parse)
                .transpose()
                .map_err(|e| err(format!("invalid IP pattern: {e}")))?;
            for (label, p) in &matches.labels {
                pattern::validate(p).map_err(|e| {
                    err(format!(
                        "invalid match pattern {p:?} for label {label}: {e}"
                    ))
                })?;
            }
            checked.push(Rule {
                matches,
                ip,
                actions: rule.actions.clone().unwrap_or_default(),
                comment: rule.comment.clone(),
            });
        }
        Ok(Self { rules: checked })
    }

    /// Number of rules.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// True when there are no rules (everything is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The requested actions the first matching rule allows, sorted and without repeats;
    /// `None` when no rule matches (which denies).
    pub fn authorize(&self, request: &AuthRequest<'_>) -> Option<Vec<String>> {
        let rule = self.rules.iter().find(|r| rule_matches(r, request))?;
        tracing::debug!(
            account = request.account,
            name = request.name,
            comment = %rule.comment,
            "ACL rule matched"
        );
        let mut granted: Vec<String> = if rule.actions.len() == 1 && rule.actions[0] == "*" {
            request.actions.to_vec()
        } else {
            request
                .actions
                .iter()
                .filter(|a| rule.actions.contains(a))
                .cloned()
                .collect()
        };
        granted.sort();
        granted.dedup();
        Some(granted)
    }
}

/// docker_auth's `MatchConditions.Matches`.
fn rule_matches(rule: &Rule, request: &AuthRequest<'_>) -> bool {
    let m = &rule.matches;
    let mut vars: Vec<(String, String)> = vec![
        ("${account}".into(), regex::escape(request.account)),
        ("${type}".into(), regex::escape(request.kind)),
        ("${name}".into(), regex::escape(request.name)),
        ("${service}".into(), regex::escape(request.service)),
    ];
    for field in [&m.account, &m.kind, &m.name, &m.service]
        .into_iter()
        .flatten()
    {
        for found in CAPTURE_GROUP.captures_iter(field) {
            if let Some(value) = capture_group(m, request, &found[1], &found[2]) {
                vars.push((found[0].to_string(), value));
            }
        }
    }
    let labels: Vec<(String, &[String])> = request
        .labels
        .iter()
        .map(|(k, v)| (format!("${{labels:{k}}}"), v.as_slice()))
        .collect();
    let field = |p: &Option<String>, value: &str| match p {
        None => true,
        Some(p) => matches_with_labels(p, value, &vars, &labels),
    };
    field(&m.account, request.account)
        && field(&m.kind, request.kind)
        && field(&m.name, request.name)
        && field(&m.service, request.service)
        && rule
            .ip
            .is_none_or(|net| request.ip.is_some_and(|ip| net.contains(ip)))
        && m.labels.iter().all(|(label, p)| {
            request
                .labels
                .get(label)
                .is_some_and(|values| values.iter().any(|v| matches_subst(p, v, &vars)))
        })
}

/// The value of `${<key>:<index>}`: group `index` of the `key` field's regex run on the
/// request's `key` value; `None` when there is none (the text then stays as written).
fn capture_group(
    m: &AclMatch,
    request: &AuthRequest<'_>,
    key: &str,
    index: &str,
) -> Option<String> {
    // Go looks the field up by its title-cased name: `account` or `Account`, not `ACCOUNT`.
    let mut chars = key.chars();
    let first = chars.next()?.to_uppercase().collect::<String>();
    let (pattern, value) = match (first + chars.as_str()).as_str() {
        "Account" => (m.account.as_deref(), request.account),
        "Type" => (m.kind.as_deref(), request.kind),
        "Name" => (m.name.as_deref(), request.name),
        "Service" => (m.service.as_deref(), request.service),
        _ => return None,
    };
    let p = pattern?;
    if p.len() < 2 || !p.starts_with('/') || !p.ends_with('/') {
        return None;
    }
    let re = pattern::go_regex(&p[1..p.len() - 1]).ok()?;
    let index: usize = index.parse().ok()?;
    let caps = re.captures(value)?;
    if index < 1 || index >= caps.len() {
        return None;
    }
    Some(caps.get(index).map_or("", |g| g.as_str()).to_string())
}

/// Matches after substitution, then with every combination of the labels the pattern names.
fn matches_with_labels(
    p: &str,
    value: &str,
    vars: &[(String, String)],
    labels: &[(String, &[String])],
) -> bool {
    if matches_subst(p, value, vars) {
        return true;
    }
    let named: Vec<&(String, &[String])> = labels
        .iter()
        .filter(|(ph, _)| p.contains(ph.as_str()))
        .collect();
    if named.is_empty() || named.iter().any(|(_, values)| values.is_empty()) {
        return false;
    }
    // An odometer over the cartesian product, so nothing is built up front.
    let mut at = vec![0usize; named.len()];
    loop {
        let mut all = vars.to_vec();
        for (slot, (placeholder, values)) in named.iter().enumerate() {
            // Label values are not quoted: a label may hold a pattern.
            all.push((placeholder.clone(), values[at[slot]].clone()));
        }
        if matches_subst(p, value, &all) {
            return true;
        }
        let mut slot = 0;
        loop {
            if slot == at.len() {
                return false;
            }
            at[slot] += 1;
            if at[slot] < named[slot].1.len() {
                break;
            }
            at[slot] = 0;
            slot += 1;
        }
    }
}

fn matches_subst(p: &str, value: &str, vars: &[(String, String)]) -> bool {
    pattern::matches(&substitute(p, vars), value)
}

/// Go's `strings.NewReplacer(vars...).Replace(p)`: one pass, left to right; where several
/// placeholders start at one position the first in `vars` wins; replacements are not rescanned.
pub fn substitute(p: &str, vars: &[(String, String)]) -> String {
    if !p.contains("${") {
        return p.to_string();
    }
    let mut out = String::with_capacity(p.len());
    let mut rest = p;
    while let Some(c) = rest.chars().next() {
        match vars.iter().find(|(old, _)| rest.starts_with(old.as_str())) {
            Some((old, new)) => {
                out.push_str(new);
                rest = &rest[old.len()..];
            }
            None => {
                out.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fields: &[(&str, &str)]) -> AclMatch {
        let mut m = AclMatch::default();
        for (k, v) in fields {
            let some = Some(v.to_string());
            match *k {
                "account" => m.account = some,
                "type" => m.kind = some,
                "name" => m.name = some,
                "service" => m.service = some,
                "ip" => m.ip = some,
                label => {
                    m.labels
                        .insert(label.trim_start_matches("labels.").into(), v.to_string());
                }
            }
        }
        m
    }

    fn labels(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn check(
        fields: &[(&str, &str)],
        ai: (&str, &str, &str, &str),
        ip: Option<&str>,
        l: &BTreeMap<String, Vec<String>>,
    ) -> bool {
        let rule = AclRule {
            matches: Some(m(fields)),
            actions: Some(vec!["*".into()]),
            comment: String::new(),
        };
        let acl = Acl::new(&[rule]).unwrap();
        let actions = ["pull".to_string()];
        acl.authorize(&AuthRequest {
            account: ai.0,
            kind: ai.1,
            name: ai.2,
            service: ai.3,
            ip: ip.map(|i| i.parse().unwrap()),
            actions: &actions,
            labels: l,
        })
        .is_some()
    }

    /// Match fields, (account, type, name, service), client address, labels, expected match.
    type Case<'a> = (
        Vec<(&'a str, &'a str)>,
        (&'a str, &'a str, &'a str, &'a str),
        Option<&'a str>,
        &'a BTreeMap<String, Vec<String>>,
        bool,
    );

    /// docker_auth's own `TestMatching` cases (auth_server/authz/acl_test.go).
    #[test]
    fn docker_auth_matching_cases() {
        let none = BTreeMap::new();
        let ai1 = ("foo", "bar", "baz", "notary");
        let g = labels(&[("group", &["admins", "VIP"])]);
        let gp = labels(&[
            ("group", &["admins", "VIP"]),
            ("project", &["api", "frontend"]),
        ]);
        let cases: Vec<Case<'_>> = vec![
            (vec![], ai1, None, &none, true),
            (vec![("account", "foo")], ai1, None, &none, true),
            (
                vec![("account", "foo"), ("type", "bar")],
                ai1,
                None,
                &none,
                true,
            ),
            (
                vec![("account", "foo"), ("type", "baz")],
                ai1,
                None,
                &none,
                false,
            ),
            (
                vec![("account", "fo?"), ("type", "b*"), ("name", "/z$/")],
                ai1,
                None,
                &none,
                true,
            ),
            (
                vec![("account", "fo?"), ("type", "b*"), ("name", "/^z/")],
                ai1,
                None,
                &none,
                false,
            ),
            (
                vec![("name", "${account}")],
                ("foo", "", "foo", ""),
                None,
                &none,
                true,
            ),
            (
                vec![("name", "/${account}_.*/")],
                ("foo", "", "foo_x", ""),
                None,
                &none,
                true,
            ),
            (
                vec![("name", "/${account}_.*/")],
                (".*", "", "foo_x", ""),
                None,
                &none,
                false,
            ),
            (
                vec![
                    ("account", r"/^(.+)@test\.com$/"),
                    ("name", "${account:1}/*"),
                ],
                ("john.smith@test.com", "", "john.smith/test", ""),
                None,
                &none,
                true,
            ),
            (
                vec![
                    ("account", r"/^(.+)@test\.com$/"),
                    ("name", "${account:3}/*"),
                ],
                ("john.smith@test.com", "", "john.smith/test", ""),
                None,
                &none,
                false,
            ),
            (
                vec![
                    ("account", r"/^(.+)@(.+?).test\.com$/"),
                    ("name", "${account:1}-${account:2}/*"),
                ],
                ("john.smith@it.test.com", "", "john.smith-it/test", ""),
                None,
                &none,
                true,
            ),
            (
                vec![("service", "notary"), ("type", "bar")],
                ai1,
                None,
                &none,
                true,
            ),
            (
                vec![("service", "notary"), ("type", "baz")],
                ai1,
                None,
                &none,
                false,
            ),
            (
                vec![("service", "notary1"), ("type", "bar")],
                ai1,
                None,
                &none,
                false,
            ),
            (
                vec![("ip", "127.0.0.1")],
                ("", "", "", ""),
                None,
                &none,
                false,
            ),
            (
                vec![("ip", "127.0.0.1")],
                ("", "", "", ""),
                Some("127.0.0.1"),
                &none,
                true,
            ),
            (
                vec![("ip", "127.0.0.1")],
                ("", "", "", ""),
                Some("127.0.0.2"),
                &none,
                false,
            ),
            (
                vec![("ip", "127.0.0.2")],
                ("", "", "", ""),
                Some("127.0.0.1"),
                &none,
                false,
            ),
            (
                vec![("ip", "127.0.0.0/8")],
                ("", "", "", ""),
                Some("127.0.0.1"),
                &none,
                true,
            ),
            (
                vec![("ip", "127.0.0.0/8")],
                ("", "", "", ""),
                Some("127.0.0.2"),
                &none,
                true,
            ),
            (
                vec![("ip", "2001:db8::1")],
                ("", "", "", ""),
                None,
                &none,
                false,
            ),
            (
                vec![("ip", "2001:db8::1")],
                ("", "", "", ""),
                Some("2001:db8::1"),
                &none,
                true,
            ),
            (
                vec![("ip", "2001:db8::1")],
                ("", "", "", ""),
                Some("2001:db8::2"),
                &none,
                false,
            ),
            (
                vec![("ip", "2001:db8::2")],
                ("", "", "", ""),
                Some("2001:db8::1"),
                &none,
                false,
            ),
            (
                vec![("ip", "2001:db8::/48")],
                ("", "", "", ""),
                Some("2001:db8::1"),
                &none,
                true,
            ),
            (
                vec![("ip", "2001:db8::/48")],
                ("", "", "", ""),
                Some("2001:db8::2"),
                &none,
                true,
            ),
            (
                vec![("ip", "127.0.0.0/8")],
                ("", "", "", ""),
                Some("::ffff:127.0.0.9"),
                &none,
                true,
            ),
            (vec![("labels.foo", "bar")], ai1, None, &none, false),
            (vec![("labels.foo", "bar")], ai1, None, &g, false),
            (vec![("labels.group", "admins")], ai1, None, &g, true),
            (
                vec![("labels.foo", "bar"), ("labels.group", "admins")],
                ai1,
                None,
                &g,
                false,
            ),
            (vec![("labels.group", "VIP")], ai1, None, &g, true),
            (vec![("labels.group", "a*")], ai1, None, &g, true),
            (
                vec![("labels.group", "/(admins|VIP)/")],
                ai1,
                None,
                &g,
                true,
            ),
            (vec![("name", "${labels:group}/*")], ai1, None, &none, false),
            (vec![("name", "${labels:noexist}/*")], ai1, None, &g, false),
            (
                vec![("name", "${labels:group}/*")],
                ("foo", "bar", "admins/foo", "notary"),
                None,
                &g,
                true,
            ),
            (
                vec![("name", "${labels:noexist}/*")],
                ("foo", "bar", "admins/foo", "notary"),
                None,
                &g,
                false,
            ),
            (
                vec![("name", "${labels:group}/${labels:project}")],
                ("foo", "bar", "VIP/api", "notary"),
                None,
                &gp,
                true,
            ),
            (
                vec![("name", "${labels:group}/${labels:noexist}")],
                ("foo", "bar", "VIP/api", "notary"),
                None,
                &gp,
                false,
            ),
            (
                vec![("name", "${labels:group}/${labels:project}")],
                ("foo", "bar", "devs/api", "notary"),
                None,
                &gp,
                false,
            ),
        ];
        for (i, (fields, ai, ip, l, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                check(&fields, ai, ip, l),
                want,
                "case {i}: {fields:?} vs {ai:?} {ip:?}"
            );
        }
    }

    /// docker_auth's own `TestValidation` cases.
    #[test]
    fn docker_auth_validation_cases() {
        let ok = |fields: &[(&str, &str)]| {
            Acl::new(&[AclRule {
                matches: Some(m(fields)),
                actions: Some(vec![]),
                comment: String::new(),
            }])
            .is_ok()
        };
        for field in ["account", "type", "name", "service"] {
            assert!(ok(&[(field, "foo")]));
            assert!(ok(&[(field, "foo?*")]));
            assert!(ok(&[(field, "/foo.*/")]));
            assert!(!ok(&[(field, "/foo?*/")]));
        }
        for ip in [
            "192.168.0.1",
            "192.168.0.0/16",
            "2001:db8::1",
            "2001:db8::/48",
        ] {
            assert!(ok(&[("ip", ip)]), "{ip}");
        }
        for ip in ["192.168.0.1/100", "192.168.0.*", "foo", "2001:db8::/222"] {
            assert!(!ok(&[("ip", ip)]), "{ip}");
        }
        assert!(ok(&[("labels.foo", "bar")]));
        assert!(!ok(&[("labels.foo", "/bar?*/")]));
    }

    #[test]
    fn actions_follow_docker_auth() {
        let rule = |actions: &[&str]| AclRule {
            matches: Some(AclMatch::default()),
            actions: Some(actions.iter().map(|a| a.to_string()).collect()),
            comment: String::new(),
        };
        let none = BTreeMap::new();
        let ask = |acl: &Acl, actions: &[&str]| {
            let actions: Vec<String> = actions.iter().map(|a| a.to_string()).collect();
            acl.authorize(&AuthRequest {
                account: "",
                kind: "repository",
                name: "x",
                service: "",
                ip: None,
                actions: &actions,
                labels: &none,
            })
        };
        let star = Acl::new(&[rule(&["*"])]).unwrap();
        assert_eq!(ask(&star, &["push", "pull"]).unwrap(), ["pull", "push"]);
        // "*" among other actions is a literal action name.
        let mixed = Acl::new(&[rule(&["*", "pull"])]).unwrap();
        assert_eq!(ask(&mixed, &["push", "pull"]).unwrap(), ["pull"]);
        assert_eq!(ask(&mixed, &["*"]).unwrap(), ["*"]);
        let deny = Acl::new(&[rule(&[])]).unwrap();
        assert_eq!(ask(&deny, &["pull"]).unwrap(), Vec::<String>::new());
        assert_eq!(ask(&Acl::default(), &["pull"]), None);
    }

    #[test]
    fn substitution_is_one_pass() {
        let vars = vec![
            ("${account}".to_string(), "${name}".to_string()),
            ("${name}".to_string(), "n".to_string()),
        ];
        assert_eq!(substitute("${account}/${name}/$x", &vars), "${name}/n/$x");
    }
}
