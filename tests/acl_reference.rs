//! docker_auth equivalence: docker_auth's reference ACL (examples/reference.yml) and the label
//! examples of its docs/Labels.md, read from the fixtures as a user's file is read, and a table
//! of (account, client address, scope) -> granted actions whose expectations follow
//! docker_auth's documented rules: first match wins, `["*"]` grants what was asked, other lists
//! grant what they share with the request, no match denies.
//!
//! Each table runs twice: against the ACL as the library reads it, and through the real binary,
//! whose issuer logs each account in with Basic credentials and reads the client address from
//! `X-Forwarded-For` (`tokenissuer.realipheader`), so `ip` rules see the row's address.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use support::auth::*;
use support::*;
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
];

/// The password of a fixture user: docker_auth's "badmin" for admin, its "123" for the others
/// that have one (users without a password take any).
fn password(account: &str) -> &'static str {
    if account == "admin" {
        "badmin"
    } else {
        "123"
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/docker_auth")
        .join(name)
}

fn run_table(fixture_name: &str, rows: &[Row]) -> usize {
    let path = fixture(fixture_name);
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

/// The same table through `wharf`: a token per row, its `access` claim compared.
fn run_table_through_the_binary(fixture_name: &str, rows: &[Row]) {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = self_signed(ec_key(), &["issuer"]).write(dir.path(), "issuer");
    let reg = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:
  token:
    realm: http://placeholder/auth/token
    service: {SERVICE}
    issuer: wharf
tokenissuer:
  key: {}
  certificate: {}
  dockerauthconfig: {}
  realipheader: X-Forwarded-For
  realippos: -1
",
            key.display(),
            cert.display(),
            fixture(fixture_name).display()
        ))
        .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
        .ready(Ready::V2Answers)
        .start();
    let mut failures = Vec::new();
    for (account, ip, scope, want) in rows {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("service", SERVICE)
            .append_pair("scope", scope)
            .finish();
        let mut req = reg.get(&format!("/auth/token?{query}"));
        if let Some(ip) = ip {
            req = req.header("X-Forwarded-For", format!("192.0.2.1, {ip}"));
        }
        if !account.is_empty() {
            req = req.basic_auth(account, Some(password(account)));
        }
        let resp = send(req);
        resp.assert_status(200);
        let access = payload(resp.json()["token"].as_str().unwrap())["access"].clone();
        let got = access
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["actions"].as_array().unwrap().iter())
            .map(|a| a.as_str().unwrap().to_string())
            .collect::<Vec<_>>()
            .join(",");
        if got != *want {
            failures.push(format!(
                "{account:?} from {ip:?} asking {scope:?}: got {got:?}, want {want:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reference_acl_through_the_token_endpoint() {
    run_table_through_the_binary("reference.yml", REFERENCE);
}

#[test]
fn label_examples_through_the_token_endpoint() {
    run_table_through_the_binary("labels.yml", LABELS);
}

#[test]
fn unknown_accounts_and_wrong_passwords_get_no_token() {
    let dir = tempfile::tempdir().unwrap();
    let (key, cert) = self_signed(ec_key(), &["issuer"]).write(dir.path(), "issuer");
    let reg = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  token:\n    realm: http://x/auth/token\n    service: {SERVICE}\n    issuer: wharf\ntokenissuer:\n  key: {}\n  certificate: {}\n  dockerauthconfig: {}\n",
            key.display(),
            cert.display(),
            fixture("reference.yml").display()
        ))
        .ready(Ready::V2Answers)
        .start();
    let ask = |user: &str, password: &str| {
        send(
            reg.get("/auth/token?scope=repository:hello-world:pull")
                .basic_auth(user, Some(password)),
        )
    };
    ask("admin", "badmin").assert_status(200);
    assert_error(&ask("admin", "123"), 401, "UNAUTHORIZED");
    assert_error(&ask("nobody", "123"), 401, "UNAUTHORIZED");
    // The anonymous user `""` has no password: any password is taken, as in docker_auth.
    ask("", "anything").assert_status(200);
}
