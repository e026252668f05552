//! The built-in token issuer serving a docker_auth `auth_config.yml` kept as it was: its users
//! log in (Basic, as `docker login` does), skopeo pushes and pulls as its ACL says, its `token`
//! section signs, edits to the file apply within a few seconds, a broken edit keeps the rules
//! in force, and back-ends that are not provided stop the start-up naming their key.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use support::auth::*;
use support::*;

const SERVICE: &str = "Docker registry";
const ISSUER: &str = "Acme auth server";

struct DockerAuth {
    dir: tempfile::TempDir,
}

impl DockerAuth {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        self_signed(ec_key(), &["docker-auth"]).write(dir.path(), "server");
        Self { dir }
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("auth_config.yml")
    }

    /// A docker_auth configuration as docker_auth's examples write it, with `acl` and extra
    /// top-level text.
    fn write(&self, acl: &str, extra: &str) {
        let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
        let text = format!(
            r#"server:
  addr: ":5001"
  certificate: "{cert}"
  key: "{key}"

token:
  issuer: "{ISSUER}"  # Must match issuer in the Registry config.
  expiration: 900

users:
  # Password is specified as a BCrypt hash. Use `htpasswd -nB USERNAME` to generate.
  "admin":
    password: "{admin}"
  "alice":
    password: "{alice}"
    labels:
      team: [blue]
  "": {{}}  # Allow anonymous (no "docker login") access.
{extra}
acl:
{acl}"#,
            cert = self.dir.path().join("server.crt").display(),
            key = self.dir.path().join("server.key").display(),
            admin = hash("badmin"),
            alice = hash("alice-pw"),
        );
        // Written whole, then renamed, as editors and config management do.
        let tmp = self.dir.path().join("auth_config.yml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.file()).unwrap();
    }

    fn builder(&self) -> RegistryBuilder {
        Registry::builder(Driver::Filesystem)
            .section(&format!(
                "auth:
  token:
    realm: http://placeholder/auth/token
    service: {SERVICE}
    issuer: {ISSUER}
tokenissuer:
  dockerauthconfig: {}
",
                self.file().display()
            ))
            .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
            .ready(Ready::V2Answers)
    }
}

const FIRST_ACL: &str = r#"  - match: {account: "admin"}
    actions: ["*"]
    comment: "Admin has full access to everything."
  - match: {account: "/.+/", name: "${account}/*"}
    actions: ["*"]
    comment: "Logged in users have full access to images that are in their 'namespace'"
  - match: {name: "${labels:team}/*"}
    actions: ["pull"]
    comment: "Members pull their team's images"
  - match: {account: "", name: "hello-world"}
    actions: ["pull"]
    comment: "Anonymous users can pull \"hello-world\"."
"#;

/// alice loses push on her namespace; anonymous users may pull it.
const SECOND_ACL: &str = r#"  - match: {account: "admin"}
    actions: ["*"]
  - match: {account: "/^(alice|)$/", name: "alice/*"}
    actions: ["pull"]
"#;

fn token(reg: &Registry, scopes: &[&str], creds: Option<(&str, &str)>) -> Resp {
    let mut query = format!("service={}", SERVICE.replace(' ', "+"));
    for s in scopes {
        query.push_str(&format!("&scope={s}"));
    }
    if let Some((user, _)) = creds {
        query.push_str(&format!("&account={user}"));
    }
    let mut req = reg.get(&format!("/auth/token?{query}"));
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    send(req)
}

/// The `access` claim of a token granted for `scopes`.
fn access(reg: &Registry, scopes: &[&str], creds: Option<(&str, &str)>) -> Value {
    let resp = token(reg, scopes, creds);
    resp.assert_status(200);
    payload(resp.json()["token"].as_str().unwrap())["access"].clone()
}

fn copy_to(reg: &Registry, layout: &Path, repo: &str, creds: Option<&str>) -> CommandOutput {
    let source = format!("oci:{}:v1", layout.display());
    let dest = format!("docker://{}/{repo}:v1", reg.host());
    let mut args = vec!["copy", "--dest-tls-verify=false"];
    match creds {
        Some(c) => args.extend(["--dest-creds", c]),
        None => args.push("--dest-no-creds"),
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args)
}

fn pull(reg: &Registry, repo: &str, creds: Option<&str>, out: &Path) -> CommandOutput {
    let source = format!("docker://{}/{repo}:v1", reg.host());
    let dest = format!("dir:{}", out.display());
    let mut args = vec!["copy", "--src-tls-verify=false"];
    match creds {
        Some(c) => args.extend(["--src-creds", c]),
        None => args.push("--src-no-creds"),
    }
    args.extend([source.as_str(), dest.as_str()]);
    skopeo(&args)
}

#[test]
fn a_docker_auth_file_logs_in_users_and_its_acl_decides() {
    let auth = DockerAuth::new();
    auth.write(FIRST_ACL, "");
    let reg = auth.builder().start();
    let work = tempfile::tempdir().unwrap();
    let layout = one_image_layout(work.path());

    // `docker login`: Basic credentials, no scope.
    token(&reg, &[], Some(("alice", "alice-pw"))).assert_status(200);
    assert_error(
        &token(&reg, &[], Some(("alice", "wrong"))),
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &token(&reg, &[], Some(("mallory", "alice-pw"))),
        401,
        "UNAUTHORIZED",
    );

    // The grant: own namespace, the team's images by label, nothing else; signed as the
    // file's token section says.
    let resp = token(
        &reg,
        &[
            "repository:alice/app:pull,push",
            "repository:blue/base:pull,push",
            "repository:admin/x:pull",
        ],
        Some(("alice", "alice-pw")),
    );
    resp.assert_status(200);
    assert_eq!(resp.json()["expires_in"], 900);
    let claims = payload(resp.json()["token"].as_str().unwrap());
    assert_eq!(claims["iss"], ISSUER);
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "blue/base", "actions": ["pull"]},
        ])
    );

    // skopeo follows the same rules end to end.
    copy_to(&reg, &layout, "alice/app", Some("alice:alice-pw")).assert_success("alice pushes");
    copy_to(&reg, &layout, "hello-world", Some("admin:badmin")).assert_success("admin pushes");
    assert!(
        !copy_to(&reg, &layout, "hello-world", Some("alice:alice-pw"))
            .status
            .success()
    );
    assert!(!copy_to(&reg, &layout, "blue/base", Some("alice:alice-pw"))
        .status
        .success());
    pull(&reg, "hello-world", None, &work.path().join("anon"))
        .assert_success("anonymous pull of hello-world");
    assert!(!pull(&reg, "alice/app", None, &work.path().join("anon2"))
        .status
        .success());
    assert_eq!(
        repositories_in(&reg.v2_root()),
        ["alice/app", "hello-world"]
    );

    // An edit applies within a few seconds: alice may only pull, anonymous users too.
    auth.write(SECOND_ACL, "");
    let alice_push = ["repository:alice/app:pull,push"];
    let pull_only = json!([{"type": "repository", "name": "alice/app", "actions": ["pull"]}]);
    assert!(
        wait_until(Duration::from_secs(20), || {
            access(&reg, &alice_push, Some(("alice", "alice-pw"))) == pull_only
        }),
        "the edited ACL never applied\n{}",
        tail(&reg.stderr_text(), 20)
    );
    assert_eq!(access(&reg, &alice_push, None), pull_only);
    pull(&reg, "alice/app", None, &work.path().join("anon3"))
        .assert_success("anonymous pull after the edit");
    assert!(
        !copy_to(&reg, &layout, "alice/other", Some("alice:alice-pw"))
            .status
            .success()
    );
    assert!(reg
        .wait_stderr(|t| t.contains("docker_auth configuration reloaded"))
        .is_some());

    // Broken edits are refused and the rules in force stay: a bad regex, then a back-end
    // that is not provided.
    let broken = [
        (
            "  - match: {name: \"/(/\"}\n    actions: [\"*\"]\n".to_string(),
            String::new(),
        ),
        (
            SECOND_ACL.to_string(),
            "ldap_auth:\n  addr: ldap.example.com:636\n".to_string(),
        ),
    ];
    for (n, (acl, extra)) in broken.iter().enumerate() {
        auth.write(acl, extra);
        let refusals = |t: &str| t.matches("docker_auth configuration not reloaded").count();
        let text = reg
            .wait_stderr(|t| refusals(t) > n)
            .unwrap_or_else(|| panic!("broken edit {n} was not reported"));
        assert_eq!(
            access(&reg, &alice_push, Some(("alice", "alice-pw"))),
            pull_only
        );
        assert_eq!(access(&reg, &alice_push, None), pull_only);
        let admin = access(&reg, &["repository:x:delete"], Some(("admin", "badmin")));
        assert_eq!(admin[0]["actions"], json!(["delete"]));
        if n == 1 {
            assert!(text.contains("ldap_auth"), "{}", tail(&text, 5));
        }
    }

    // A good file applies again.
    auth.write(FIRST_ACL, "");
    assert!(wait_until(Duration::from_secs(20), || {
        access(&reg, &alice_push, Some(("alice", "alice-pw")))[0]["actions"]
            == json!(["pull", "push"])
    }));
}

#[test]
fn ip_rules_see_the_configured_client_address_header() {
    let auth = DockerAuth::new();
    auth.write(
        r#"  - match: {ip: "10.0.0.0/8"}
    actions: ["*"]
  - match: {ip: "127.0.0.1"}
    actions: ["pull"]
"#,
        "",
    );
    let direct = auth.builder().start();
    let scope = ["repository:x:pull,push"];
    // Straight from 127.0.0.1.
    assert_eq!(access(&direct, &scope, None)[0]["actions"], json!(["pull"]));
    drop(direct);

    // Behind a proxy: docker_auth's server.real_ip_header and real_ip_pos.
    let text = std::fs::read_to_string(auth.file()).unwrap().replace(
        "server:\n",
        "server:\n  real_ip_header: \"X-Forwarded-For\"\n  real_ip_pos: -1\n",
    );
    std::fs::write(auth.file(), text).unwrap();
    let proxied = auth.builder().start();
    let ask = |xff: Option<&str>| {
        let mut req = proxied.get(&format!(
            "/auth/token?service={}&scope={}",
            SERVICE.replace(' ', "+"),
            scope[0]
        ));
        if let Some(v) = xff {
            req = req.header("X-Forwarded-For", v);
        }
        send(req)
    };
    let granted = |resp: Resp| {
        resp.assert_status(200);
        payload(resp.json()["token"].as_str().unwrap())["access"].clone()
    };
    assert_eq!(
        granted(ask(Some("127.0.0.1, 10.2.3.4")))[0]["actions"],
        json!(["pull", "push"])
    );
    assert_eq!(granted(ask(Some("10.2.3.4, 192.168.1.1"))), json!([]));
    assert_eq!(
        granted(ask(Some("[::ffff:10.9.9.9]:4711")))[0]["actions"],
        json!(["pull", "push"])
    );
    assert_error(&ask(None), 400, "DENIED");
    assert_error(&ask(Some("not-an-address")), 400, "DENIED");
}

/// The server must exit by itself, unsuccessfully; returns its stderr.
fn start_failure(builder: RegistryBuilder) -> String {
    let mut reg = builder.spawn();
    let status = reg.wait_exit(WAIT_LIMIT);
    let stderr = reg.stderr_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the server did not refuse to start\n{stderr}"
    );
    stderr
}

#[test]
fn back_ends_that_are_not_provided_are_refused_by_name() {
    let auth = DockerAuth::new();
    for (key, body) in [
        ("ldap_auth", "addr: ldap.example.com:636"),
        ("oidc_auth", "issuer: https://id.example"),
        ("ext_authz", "command: /bin/true"),
        ("casbin_authz", "model_path: m"),
    ] {
        auth.write(FIRST_ACL, &format!("{key}:\n  {body}\n"));
        let stderr = start_failure(auth.builder());
        assert!(
            stderr.contains(&format!("{key}: docker_auth's")),
            "{key}: {}",
            tail(&stderr, 5)
        );
    }
    // Inline under tokenissuer too.
    let stderr = start_failure(
        Registry::builder(Driver::Filesystem).section(
            "auth:\n  token:\n    realm: http://x/auth/token\n    service: s\n    issuer: i\ntokenissuer:\n  key: /k\n  certificate: /c\n  github_auth:\n    organization: acme\n",
        ),
    );
    assert!(
        stderr.contains("tokenissuer.github_auth: docker_auth's GitHub authentication"),
        "{}",
        tail(&stderr, 5)
    );
    // A rule docker_auth would refuse: a bad regex, named by its position.
    auth.write("  - match: {account: \"/foo?*/\"}\n    actions: []\n", "");
    let stderr = start_failure(auth.builder());
    assert!(stderr.contains("entry 0"), "{}", tail(&stderr, 5));
    assert!(
        stderr.contains("tokenissuer.dockerauthconfig"),
        "{}",
        tail(&stderr, 5)
    );
}
