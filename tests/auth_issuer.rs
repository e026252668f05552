//! The built-in token issuer (`tokenissuer`): skopeo logs in through it, ACLs grant pull on one
//! repository and push on another, the OAuth2 form and refresh tokens work, and a second node
//! that only trusts the issuer's certificate accepts its tokens.

mod support;

use serde_json::{json, Value};
use support::auth::*;
use support::*;

const SERVICE: &str = "wharf-test";

struct Issuer {
    dir: tempfile::TempDir,
    identity: Identity,
}

impl Issuer {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = self_signed(ec_key(), &["wharf-token-issuer"]);
        identity.write(dir.path(), "issuer");
        Self { dir, identity }
    }

    fn cert(&self) -> String {
        self.dir.path().join("issuer.crt").display().to_string()
    }

    fn sections(&self) -> String {
        let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
        format!(
            "auth:
  token:
    realm: http://placeholder/auth/token
    service: {SERVICE}
    issuer: wharf-issuer
tokenissuer:
  key: {key}
  certificate: {cert}
  expiration: 5m
  users:
    alice: '{alice}'
    admin: {{password: '{admin}'}}
    '': {{}}
  acl:
    - match: {{account: admin}}
      actions: ['*']
    - match: {{account: alice, name: team/app}}
      actions: [pull, push]
    - match: {{account: alice, name: 'public/*'}}
      actions: [pull]
    - match: {{account: '', name: 'public/*'}}
      actions: [pull]
      comment: anonymous pulls of public images
",
            key = self.dir.path().join("issuer.key").display(),
            cert = self.cert(),
            alice = hash("alice-pw"),
            admin = hash("admin-pw"),
        )
    }

    fn start(&self) -> Registry {
        Registry::builder(Driver::Filesystem)
            .section(&self.sections())
            .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
            .ready(Ready::V2Answers)
            .start()
    }
}

fn copy(
    reg: &Registry,
    layout: &std::path::Path,
    repo: &str,
    creds: Option<&str>,
) -> CommandOutput {
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

fn pull(reg: &Registry, repo: &str, creds: Option<&str>, out: &std::path::Path) -> CommandOutput {
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

fn token(reg: &Registry, query: &str, creds: Option<(&str, &str)>) -> Resp {
    let mut req = reg.get(&format!("/auth/token?{query}"));
    if let Some((u, p)) = creds {
        req = req.basic_auth(u, Some(p));
    }
    send(req)
}

#[test]
fn skopeo_through_the_built_in_issuer_follows_the_acl() {
    let issuer = Issuer::new();
    let reg = issuer.start();
    let work = tempfile::tempdir().unwrap();
    let layout = one_image_layout(work.path());

    copy(&reg, &layout, "team/app", Some("alice:alice-pw")).assert_success("alice pushes team/app");
    copy(&reg, &layout, "public/base", Some("admin:admin-pw"))
        .assert_success("admin pushes public/base");
    // alice may only pull public/*, anonymous too; nobody else may push there.
    assert!(!copy(&reg, &layout, "public/alice", Some("alice:alice-pw"))
        .status
        .success());
    assert!(!copy(&reg, &layout, "public/anon", None).status.success());
    assert!(!copy(&reg, &layout, "team/app", Some("alice:wrong"))
        .status
        .success());
    pull(
        &reg,
        "public/base",
        Some("alice:alice-pw"),
        &work.path().join("a"),
    )
    .assert_success("alice pulls public/base");
    pull(&reg, "public/base", None, &work.path().join("b"))
        .assert_success("anonymous pull of public/base");
    assert!(!pull(&reg, "team/app", None, &work.path().join("c"))
        .status
        .success());
    assert_eq!(repositories_in(&reg.v2_root()), ["public/base", "team/app"]);

    // The token protocol itself: the grant is the intersection of request and ACL.
    let resp = token(
        &reg,
        &format!("service={SERVICE}&scope=repository:team/app:pull,push,delete&scope=repository:public/base:pull,push&account=alice"),
        Some(("alice", "alice-pw")),
    );
    resp.assert_status(200);
    let body = resp.json();
    assert_eq!(body["token"], body["access_token"]);
    assert!(body["expires_in"].as_u64() == Some(300), "{body}");
    assert!(body["issued_at"].as_str().unwrap().ends_with('Z'));
    let claims = payload(body["token"].as_str().unwrap());
    assert_eq!(
        claims["access"],
        json!([
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "public/base", "actions": ["pull"]}
        ])
    );
    assert_eq!(
        (
            claims["iss"].as_str(),
            claims["aud"].as_str(),
            claims["sub"].as_str()
        ),
        (Some("wharf-issuer"), Some(SERVICE), Some("alice"))
    );
    let bearer_token = body["token"].as_str().unwrap().to_string();
    send(bearer(reg.get("/v2/team/app/tags/list"), &bearer_token)).assert_status(200);
    assert_error(
        &send(bearer(
            reg.delete("/v2/team/app/manifests/v1"),
            &bearer_token,
        )),
        401,
        "UNAUTHORIZED",
    );

    // Refusals.
    assert_error(
        &token(&reg, "service=wharf-test", Some(("alice", "bad"))),
        401,
        "UNAUTHORIZED",
    );
    assert_error(
        &token(&reg, "service=wharf-test", Some(("mallory", "alice-pw"))),
        401,
        "UNAUTHORIZED",
    );
    assert_error(&token(&reg, "service=other", None), 400, "DENIED");
    assert_error(
        &token(&reg, "service=wharf-test&scope=nonsense", None),
        400,
        "DENIED",
    );
    assert_error(
        &token(&reg, "account=admin", Some(("alice", "alice-pw"))),
        400,
        "DENIED",
    );
    let anonymous = token(&reg, "scope=repository:team/app:pull", None);
    anonymous.assert_status(200);
    assert_eq!(
        payload(anonymous.json()["token"].as_str().unwrap())["access"],
        json!([])
    );
}

#[test]
fn oauth2_form_refresh_tokens_and_a_second_node() {
    let issuer = Issuer::new();
    let reg = issuer.start();
    let form = |fields: &[(&str, &str)]| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        send(
            reg.post("/auth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body),
        )
    };
    let resp = form(&[
        ("grant_type", "password"),
        ("username", "alice"),
        ("password", "alice-pw"),
        ("service", SERVICE),
        ("client_id", "test"),
        ("access_type", "offline"),
        ("scope", "repository:team/app:pull,push"),
    ]);
    resp.assert_status(200);
    let body: Value = resp.json();
    assert_eq!(body["scope"], "repository:team/app:pull,push");
    let refresh = body["refresh_token"]
        .as_str()
        .expect("refresh token")
        .to_string();
    // A refresh token is no access token.
    assert_error(
        &send(bearer(reg.get("/v2/team/app/tags/list"), &refresh)),
        401,
        "UNAUTHORIZED",
    );
    let resp = form(&[
        ("grant_type", "refresh_token"),
        ("refresh_token", &refresh),
        ("service", SERVICE),
        ("scope", "repository:team/app:pull"),
    ]);
    resp.assert_status(200);
    let access = resp.json()["access_token"].as_str().unwrap().to_string();
    send(bearer(reg.get("/v2/team/app/tags/list"), &access)).assert_status(404);

    for (fields, error) in [
        (
            vec![
                ("grant_type", "password"),
                ("username", "alice"),
                ("password", "x"),
            ],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "refresh_token"), ("refresh_token", "forged")],
            "invalid_grant",
        ),
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (vec![("username", "alice")], "invalid_request"),
    ] {
        let resp = form(&fields);
        resp.assert_status(400);
        assert_eq!(resp.json()["error"], error);
    }

    // Another node trusts the issuer's certificate and accepts its tokens.
    let other = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  token:\n    realm: http://{}/auth/token\n    service: {SERVICE}\n    issuer: wharf-issuer\n    rootcertbundle: {}\n",
            reg.host(),
            issuer.cert()
        ))
        .ready(Ready::V2Answers)
        .start();
    send(bearer(other.get("/v2/team/app/tags/list"), &access)).assert_status(404);
    send(bearer(other.get("/v2/"), &access)).assert_status(200);
    assert_error(
        &send(bearer(other.get("/v2/public/base/tags/list"), &access)),
        401,
        "UNAUTHORIZED",
    );
    let _ = &issuer.identity;
}
