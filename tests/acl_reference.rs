//! docker_auth equivalence: docker_auth's reference ACL (examples/reference.yml) and the label
//! examples of its docs/Labels.md, read from the fixtures as a user's file is read, and a table
//! of (account, client address, scope) -> granted actions whose expectations follow
//! docker_auth's documented rules: first match wins, `["*"]` grants what was asked, other lists
//! grant what they share with the request, no match denies.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use wharf::auth::acl::{Acl, AuthRequest};
use wharf::auth::scope::parse_scope;
use wharf::config::read_docker_auth;

const SERVICE: &str = "Docker registry";
const ELSEWHERE: &str = "10.1.2.3";

/// (account, client address, scope, granted actions joined by commas).
type Row = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static str,
);

const REFERENCE: &[Row] = &[
    // Anything from localhost or the Docker bridge, whoever asks.
    (
        "",
        Some("127.0.0.1"),
        "repository:anything:pull,push,delete",
        "delete,pull,push",
    ),
    ("", Some("127.200.1.1"), "registry:catalog:*", "*"),
    ("test", Some("127.0.0.1"), "repository:other:push", "push"),
    ("", Some("::1"), "repository:x:push", "push"),
    ("", Some("::ffff:127.0.0.1"), "repository:x:push", "push"),
    ("", Some("172.17.0.1"), "repository:x:delete", "delete"),
    ("", Some("172.17.0.2"), "repository:x:pull", ""),
    ("", Some("::2"), "repository:x:pull", ""),
    // Anonymous: hello-world only, and exactly that name.
    (
        "",
        Some(ELSEWHERE),
        "repository:hello-world:pull,push",
        "pull",
    ),
    (
        "",
        Some(ELSEWHERE),
        "repository:library/hello-world:pull",
        "",
    ),
    ("", Some(ELSEWHERE), "repository:hello-world-2:pull", ""),
    ("", None, "repository:hello-world:pull", "pull"),
    ("", Some(ELSEWHERE), "registry:catalog:*", ""),
    // admin: everything.
    (
        "admin",
        Some(ELSEWHERE),
        "repository:any/thing:pull,push,delete",
        "delete,pull,push",
    ),
    ("admin", Some(ELSEWHERE), "registry:catalog:*", "*"),
    // test: test-* (one path segment) and nothing else, not even its own namespace.
    (
        "test",
        Some(ELSEWHERE),
        "repository:test-app:pull,push",
        "pull,push",
    ),
    ("test", Some(ELSEWHERE), "repository:test-:delete", "delete"),
    ("test", Some(ELSEWHERE), "repository:test-app/sub:pull", ""),
    ("test", Some(ELSEWHERE), "repository:test/x:pull", ""),
    ("test", Some(ELSEWHERE), "repository:hello-world:pull", ""),
    ("test", Some(ELSEWHERE), "registry:catalog:*", ""),
    // Logged-in users: their namespace, the catalog, pull elsewhere.
    (
        "alice",
        Some(ELSEWHERE),
        "repository:alice/app:pull,push,delete",
        "delete,pull,push",
    ),
    (
        "alice",
        Some(ELSEWHERE),
        "repository:alice/app/sub:push",
        "",
    ),
    (
        "alice",
        Some(ELSEWHERE),
        "repository:alice/app/sub:pull,push",
        "pull",
    ),
    ("alice", Some(ELSEWHERE), "repository:alice:push", ""),
    (
        "alice",
        Some(ELSEWHERE),
        "repository:bob/app:pull,push",
        "pull",
    ),
    ("alice", Some(ELSEWHERE), "registry:catalog:*", "*"),
    // alice's VIP label never counts: the pull-for-everyone rule comes first.
    ("alice", Some(ELSEWHERE), "repository:vip/x:push", ""),
    ("alice", Some(ELSEWHERE), "repository:VIP-shared/x:push", ""),
    // ${account} is quoted: dots are dots, and the e-mail rule is never reached.
    (
        "john.smith@test.com",
        Some(ELSEWHERE),
        "repository:john.smith@test.com/app:pull,push",
        "pull,push",
    ),
    (
        "john.smith@test.com",
        Some(ELSEWHERE),
        "repository:john.smith/app:push",
        "",
    ),
    (
        "john.smith@test.com",
        Some(ELSEWHERE),
        "repository:john.smith/app:pull",
        "pull",
    ),
    (
        "john.smith@test.com",
        Some(ELSEWHERE),
        "repository:johnxsmith@test.com/app:push",
        "",
    ),
    // Plugin-class scopes match on their type.
    (
        "alice",
        Some(ELSEWHERE),
        "repository(plugin):alice/p:push",
        "push",
    ),
];

const LABELS: &[Row] = &[
    // Labels.md: label values used as patterns.
    (
        "test-user",
        Some(ELSEWHERE),
        "repository:test/app:pull,push,delete",
        "delete,pull,push",
    ),
    (
        "test-user",
        Some(ELSEWHERE),
        "repository:prod/app:pull,push",
        "pull",
    ),
    (
        "test-user",
        Some(ELSEWHERE),
        "repository:prod/app/x:pull",
        "",
    ),
    ("test-user", Some(ELSEWHERE), "repository:dev/app:pull", ""),
    // Labels.md: every combination of project, group and tier.
    (
        "busy-guy",
        Some(ELSEWHERE),
        "repository:website/web-frontend:push,pull",
        "pull,push",
    ),
    (
        "busy-guy",
        Some(ELSEWHERE),
        "repository:api/webdev-backend:pull",
        "pull",
    ),
    (
        "busy-guy",
        Some(ELSEWHERE),
        "repository:website/web-frontend:delete",
        "",
    ),
    // Unanchored regex: group "webdev" matches /trainee|dev/.
    (
        "busy-guy",
        Some(ELSEWHERE),
        "repository:api/dev-backend:pull,push,delete",
        "pull,push",
    ),
    (
        "busy-guy",
        Some(ELSEWHERE),
        "repository:elsewhere:pull",
        "pull",
    ),
    // reference.yml's label rules.
    ("vip", Some(ELSEWHERE), "repository:x:pull,push", "push"),
    (
        "trainee",
        Some(ELSEWHERE),
        "repository:x:pull,push,delete",
        "pull,push",
    ),
    ("devon", Some(ELSEWHERE), "repository:x:delete", ""),
    ("lead", Some(ELSEWHERE), "repository:x:delete", "delete"),
    ("lead", Some(ELSEWHERE), "registry:catalog:*", "*"),
    (
        "admin-group",
        Some(ELSEWHERE),
        "repository:x:pull,push",
        "push",
    ),
    (
        "opsy",
        Some(ELSEWHERE),
        "repository:ops-shared/tool:pull,push",
        "pull,push",
    ),
    (
        "opsy",
        Some(ELSEWHERE),
        "repository:ops-shared/tool/x:pull",
        "",
    ),
    (
        "opsy",
        Some(ELSEWHERE),
        "repository:dev-shared/tool:pull",
        "",
    ),
    ("pj", Some(ELSEWHERE), "repository:api/x:push", "push"),
    // The rule written `${labels:project}-{labels:tier}/*` substitutes the project only.
    ("pj", Some(ELSEWHERE), "repository:api-backend/x:pull", ""),
    (
        "pj",
        Some(ELSEWHERE),
        "repository:api-{labels:tier}/x:pull",
        "pull",
    ),
    ("", Some(ELSEWHERE), "repository:x:pull", ""),
    ("nobody", Some(ELSEWHERE), "repository:x:pull", ""),
];

fn run_table(fixture: &str, rows: &[Row]) -> usize {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker_auth")
        .join(fixture);
    let file = read_docker_auth(&path).unwrap();
    let acl = Acl::new(&file.acl).unwrap();
    let no_labels = BTreeMap::new();
    let mut failures = Vec::new();
    for (account, ip, scope, want) in rows {
        let labels = file
            .users
            .get(*account)
            .and_then(|u| u.as_ref())
            .map_or(&no_labels, |u| &u.labels);
        let scope = parse_scope(scope).unwrap();
        let mut asked = scope.actions.clone();
        asked.sort();
        let got = acl
            .authorize(&AuthRequest {
                account,
                kind: &scope.kind,
                name: &scope.name,
                service: SERVICE,
                ip: ip.map(|i| i.parse::<IpAddr>().unwrap()),
                actions: &asked,
                labels,
            })
            .unwrap_or_default()
            .join(",");
        if got != *want {
            failures.push(format!(
                "{account:?} from {ip:?} asking {scope:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    rows.len()
}

#[test]
fn reference_acl_grants_what_docker_auth_grants() {
    assert_eq!(run_table("reference.yml", REFERENCE), REFERENCE.len());
}

#[test]
fn label_examples_grant_what_docker_auth_grants() {
    assert_eq!(run_table("labels.yml", LABELS), LABELS.len());
}
