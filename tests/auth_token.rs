//! `auth.token` against an external token server run by the test: skopeo pushes with tokens
//! whose key is found by libtrust kid, JWKS kid or x5c chain; forged, expired, misdirected and
//! under-scoped tokens are refused with 401 and nothing is written.

mod support;

use jsonwebtoken::Algorithm;
use serde_json::json;
use support::auth::*;
use support::*;

const ISSUER: &str = "test-token-issuer";
const SERVICE: &str = "wharf-test";
const USER: &str = "alice";
const PASSWORD: &str = "s3cret";

/// Three signing keys the registry trusts in three ways, plus one it does not.
struct Keys {
    /// RSA, its self-signed certificate in the bundle; tokens name it by libtrust kid.
    rsa: Identity,
    /// EC, in the JWKS file under kid `ec-1`.
    ec: Identity,
    /// EC leaf signed by a CA that is in the bundle; tokens carry it as `x5c`.
    leaf: Identity,
    /// Trusted by nobody.
    stranger: Identity,
    dir: tempfile::TempDir,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rsa = self_signed(rsa_key(), &["token-signer"]);
        let ec = self_signed(ec_key(), &["jwks-signer"]);
        let ca = Ca::new("token-ca");
        let leaf = ca.sign(ec_key(), &["x5c-signer"]);
        let stranger = self_signed(rsa_key(), &["stranger"]);
        std::fs::write(
            dir.path().join("bundle.pem"),
            format!("{}{}", rsa.cert_pem, ca.identity.cert_pem),
        )
        .unwrap();
        let raw = ec.key.public_key_raw();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "ec-1", "use": "sig", "alg": "ES256",
            "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65]),
        }]});
        std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
        Self {
            rsa,
            ec,
            leaf,
            stranger,
            dir,
        }
    }

    fn libtrust_token(&self, claims: &serde_json::Value) -> String {
        sign(
            &kid_header(Algorithm::RS256, &libtrust_kid(&self.rsa.spki())),
            claims,
            &self.rsa.key,
        )
    }

    fn jwks_token(&self, claims: &serde_json::Value) -> String {
        sign(&kid_header(Algorithm::ES256, "ec-1"), claims, &self.ec.key)
    }

    fn x5c_token(&self, claims: &serde_json::Value) -> String {
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.x5c = Some(vec![b64(&self.leaf.cert_der)]);
        sign(&header, claims, &self.leaf.key)
    }

    fn section(&self, realm: &str) -> String {
        format!(
            "auth:\n  token:\n    realm: {realm}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n    jwks: {}\n",
            self.dir.path().join("bundle.pem").display(),
            self.dir.path().join("jwks.json").display()
        )
    }
}

fn registry(keys: &Keys, realm: &str) -> Registry {
    Registry::builder(Driver::Filesystem)
        .section(&keys.section(realm))
        .ready(Ready::V2Answers)
        .start()
}

/// Grants what is asked to alice with the right password, via `sign`.
fn token_server(
    sign: impl Fn(&serde_json::Value) -> String + Send + Sync + 'static,
) -> TokenServer {
    TokenServer::start(move |req| {
        let (user, password) = req.user.clone()?;
        if user != USER || password != PASSWORD {
            return None;
        }
        let access: Vec<(&str, &str, &[String])> = req
            .scopes
            .iter()
            .map(|(k, n, a)| (k.as_str(), n.as_str(), a.as_slice()))
            .collect();
        let access: Vec<serde_json::Value> = access
            .iter()
            .map(|(k, n, a)| json!({"type": k, "name": n, "actions": a}))
            .collect();
        let mut c = claims(ISSUER, SERVICE, &[]);
        c["access"] = json!(access);
        c["sub"] = json!(user);
        Some(sign(&c))
    })
}

fn skopeo_push(reg: &Registry, layout: &std::path::Path, repo: &str, creds: &str) -> CommandOutput {
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        creds,
        &format!("oci:{}:v1", layout.display()),
        &format!("docker://{}/{repo}:v1", reg.host()),
    ])
}

#[test]
fn skopeo_pushes_with_every_key_lookup() {
    let keys = std::sync::Arc::new(Keys::new());
    let work = tempfile::tempdir().unwrap();
    let layout = one_image_layout(work.path());
    type Variant = fn(&Keys, &serde_json::Value) -> String;
    let variants: [(&str, Variant); 3] = [
        ("libtrust", Keys::libtrust_token),
        ("jwks", Keys::jwks_token),
        ("x5c", Keys::x5c_token),
    ];
    for (name, variant) in variants {
        let k = keys.clone();
        let server = token_server(move |c| variant(&k, c));
        let reg = registry(&keys, &server.realm());
        let repo = format!("token/{name}");
        skopeo_push(&reg, &layout, &repo, &format!("{USER}:{PASSWORD}"))
            .assert_success(&format!("skopeo copy with {name} tokens"));
        let out = skopeo(&[
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &format!("{USER}:{PASSWORD}"),
            &format!("docker://{}/{repo}:v1", reg.host()),
        ]);
        out.assert_success("skopeo inspect with a token");
        // Wrong password: the token server refuses, so does the push.
        let out = skopeo_push(&reg, &layout, "token/denied", &format!("{USER}:wrong"));
        assert!(
            !out.status.success(),
            "push with a wrong password succeeded"
        );
        assert_eq!(repositories_in(&reg.v2_root()), [repo.as_str()], "{name}");
    }
}

/// Every forged or misdirected token: 401 `UNAUTHORIZED`, `error="invalid_token"`, nothing
/// written.
#[test]
fn forged_tokens_are_refused() {
    let keys = Keys::new();
    let reg = registry(&keys, "https://auth.example/token");
    let push = [("repository", "victim", &["pull", "push"][..])];
    let good = claims(ISSUER, SERVICE, &push);
    let t = now();

    // Control: the genuine token works.
    let resp = send(bearer(
        reg.post("/v2/victim/blobs/uploads/"),
        &keys.libtrust_token(&good),
    ));
    resp.assert_status(202);
    let baseline = repositories_in(&reg.v2_root());

    let kid = libtrust_kid(&keys.rsa.spki());
    let with = |k: &str, v: serde_json::Value| {
        let mut c = good.clone();
        c[k] = v;
        c
    };
    let rsa_public_pem = keys.rsa.key.public_key_pem();
    let hs256 = {
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some(kid.clone());
        jsonwebtoken::encode(
            &h,
            &good,
            &jsonwebtoken::EncodingKey::from_secret(rsa_public_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let tampered = {
        let genuine = keys.libtrust_token(&good);
        let parts: Vec<&str> = genuine.split('.').collect();
        let mut more = good.clone();
        more["access"] = json!([{"type": "repository", "name": "other", "actions": ["*"]}]);
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(more.to_string().as_bytes()),
            parts[2]
        )
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "alg none",
            raw_jwt(
                &json!({"alg": "none", "typ": "JWT", "kid": kid}),
                &good,
                b"",
            ),
        ),
        ("HS256 with the RSA public key as secret", hs256),
        (
            "expired",
            keys.libtrust_token(&with("exp", json!(t - 3600))),
        ),
        ("no exp", {
            let mut c = good.clone();
            c.as_object_mut().unwrap().remove("exp");
            keys.libtrust_token(&c)
        }),
        (
            "not yet valid",
            keys.libtrust_token(&with("nbf", json!(t + 3600))),
        ),
        (
            "wrong issuer",
            keys.libtrust_token(&with("iss", json!("evil"))),
        ),
        (
            "wrong audience",
            keys.libtrust_token(&with("aud", json!(["other-registry"]))),
        ),
        (
            "untrusted key",
            sign(
                &kid_header(Algorithm::RS256, &libtrust_kid(&keys.stranger.spki())),
                &good,
                &keys.stranger.key,
            ),
        ),
        (
            "untrusted key claiming a trusted kid",
            sign(
                &kid_header(Algorithm::RS256, &kid),
                &good,
                &keys.stranger.key,
            ),
        ),
        ("untrusted x5c", {
            let mut h = jsonwebtoken::Header::new(Algorithm::RS256);
            h.x5c = Some(vec![b64(&keys.stranger.cert_der)]);
            sign(&h, &good, &keys.stranger.key)
        }),
        ("untrusted jwk header", {
            let mut h = jsonwebtoken::Header::new(Algorithm::ES256);
            let raw = keys.leaf.key.public_key_raw().to_vec();
            h.jwk = Some(
                serde_json::from_value(json!({
                    "kty": "EC", "crv": "P-256",
                    "x": b64url(&raw[1..33]), "y": b64url(&raw[33..65]),
                }))
                .unwrap(),
            );
            sign(&h, &good, &keys.leaf.key)
        }),
        ("tampered payload", tampered),
        ("garbage", "not.a.jwt".into()),
    ];
    for (what, token) in cases {
        for (method, path) in [
            (reqwest::Method::POST, "/v2/victim/blobs/uploads/"),
            (reqwest::Method::GET, "/v2/victim/tags/list"),
        ] {
            let resp = send(bearer(reg.request(method.clone(), path), &token));
            assert_error(&resp, 401, "UNAUTHORIZED");
            let challenge = resp.must_header("www-authenticate");
            assert!(
                challenge.contains("error=\"invalid_token\""),
                "{what}: {challenge}"
            );
            assert!(
                challenge.starts_with(
                    "Bearer realm=\"https://auth.example/token\",service=\"wharf-test\""
                ),
                "{what}: {challenge}"
            );
        }
    }
    assert_eq!(repositories_in(&reg.v2_root()), baseline, "nothing written");
}

#[test]
fn scopes_are_enforced_per_repository_and_action() {
    let keys = Keys::new();
    let reg = registry(&keys, "https://auth.example/token");
    let token =
        |access: &[(&str, &str, &[&str])]| keys.jwks_token(&claims(ISSUER, SERVICE, access));
    let all_src = token(&[("repository", "src", &["pull", "push"])]);

    // No token: a challenge naming the scope the request needs.
    let resp = send(reg.post("/v2/b/blobs/uploads/"));
    assert_error(&resp, 401, "UNAUTHORIZED");
    assert_eq!(
        resp.must_header("www-authenticate"),
        "Bearer realm=\"https://auth.example/token\",service=\"wharf-test\",scope=\"repository:b:pull,push\""
    );
    assert_eq!(
        resp.json()["errors"][0]["detail"],
        json!([
            {"Type": "repository", "Class": "", "Name": "b", "Action": "pull"},
            {"Type": "repository", "Class": "", "Name": "b", "Action": "push"}
        ])
    );

    // A push token for A used on B.
    let push_a = token(&[("repository", "a", &["pull", "push"])]);
    let resp = send(bearer(reg.post("/v2/b/blobs/uploads/"), &push_a));
    assert_error(&resp, 401, "UNAUTHORIZED");
    assert!(resp
        .must_header("www-authenticate")
        .contains("error=\"insufficient_scope\""));
    // Pull only: no push.
    let pull_b = token(&[("repository", "b", &["pull"])]);
    assert_error(
        &send(bearer(reg.post("/v2/b/blobs/uploads/"), &pull_b)),
        401,
        "UNAUTHORIZED",
    );
    // The catalog needs registry:catalog:*.
    assert_error(
        &send(bearer(reg.get("/v2/_catalog"), &push_a)),
        401,
        "UNAUTHORIZED",
    );
    let catalog = token(&[("registry", "catalog", &["*"])]);
    send(bearer(reg.get("/v2/_catalog"), &catalog)).assert_status(200);
    // The wildcard action covers everything on its repository.
    let star = token(&[("repository", "b", &["*"])]);
    send(bearer(reg.get("/v2/b/tags/list"), &star)).assert_status(404);

    // An upload session of A replayed on B, with a token for B and with the one for A.
    let resp = send(bearer(reg.post("/v2/a/blobs/uploads/"), &push_a));
    resp.assert_status(202);
    let location = location_path(resp.must_header("location"));
    let replayed = location.replacen("/v2/a/", "/v2/b/", 1);
    let push_b = token(&[("repository", "b", &["pull", "push"])]);
    let resp = send(
        bearer(reg.patch(&replayed), &push_b)
            .header("content-type", "application/octet-stream")
            .body(b"stolen".to_vec()),
    );
    assert_error_in(
        &resp,
        &[404],
        &["BLOB_UPLOAD_INVALID", "BLOB_UPLOAD_UNKNOWN"],
    );
    let resp = send(
        bearer(reg.patch(&replayed), &push_a)
            .header("content-type", "application/octet-stream")
            .body(b"stolen".to_vec()),
    );
    assert_error(&resp, 401, "UNAUTHORIZED");
    assert!(
        !repositories_in(&reg.v2_root()).iter().any(|r| r == "b"),
        "nothing written to b"
    );

    // Mount from a repository the token cannot pull: a normal upload (202), no link.
    let data = b"secret layer of src".to_vec();
    let digest = sha256_digest(&data);
    let resp = send(
        bearer(
            reg.post(&format!("/v2/src/blobs/uploads/?digest={digest}")),
            &all_src,
        )
        .header("content-type", "application/octet-stream")
        .body(data.clone()),
    );
    resp.assert_status(201);
    let dst_only = token(&[("repository", "dst", &["pull", "push"])]);
    let mount = format!("/v2/dst/blobs/uploads/?mount={digest}&from=src");
    let resp = send(bearer(reg.post(&mount), &dst_only));
    resp.assert_status(202);
    send(bearer(
        reg.head(&format!("/v2/dst/blobs/{digest}")),
        &dst_only,
    ))
    .assert_status(404);
    // With pull on the source the same mount links the blob.
    let both = token(&[
        ("repository", "dst", &["pull", "push"]),
        ("repository", "src", &["pull"]),
    ]);
    send(bearer(reg.post(&mount), &both)).assert_status(201);
    send(bearer(
        reg.head(&format!("/v2/dst/blobs/{digest}")),
        &dst_only,
    ))
    .assert_status(200);
}

/// The `scope` of a `Bearer` challenge.
fn challenge_scope(challenge: &str) -> String {
    let start = challenge
        .find("scope=\"")
        .expect("a scope in the challenge")
        + 7;
    let rest = &challenge[start..];
    rest[..rest.find('"').unwrap()].to_string()
}

/// A client that takes its scopes from the challenge (as python-dxf and oci-client do): a
/// cross-repository mount without a token is challenged for the target and the source, as
/// registry:2 does, so the token it then fetches mounts (201). A token without pull on the
/// source still gets the upload fallback (202), never 401.
#[test]
fn mount_challenge_names_both_repositories() {
    let keys = std::sync::Arc::new(Keys::new());
    let k = keys.clone();
    let server = token_server(move |c| k.jwks_token(c));
    let reg = registry(&keys, &server.realm());
    let token = |scope: &str| -> String {
        let resp = reqwest::blocking::Client::new()
            .get(format!(
                "{}?service={SERVICE}&scope={}",
                server.realm(),
                form_urlencoded::byte_serialize(scope.as_bytes()).collect::<String>()
            ))
            .basic_auth(USER, Some(PASSWORD))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.json::<serde_json::Value>().unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let blob = Blob::random(3000);
    let src_token = token("repository:team/src:pull,push");
    let resp = send(
        bearer(
            reg.post(&format!(
                "/v2/team/src/blobs/uploads/?digest={}",
                blob.digest
            )),
            &src_token,
        )
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone()),
    );
    resp.assert_status(201);

    let mount = format!(
        "/v2/team/dst/blobs/uploads/?mount={}&from=team/src",
        blob.digest
    );
    let resp = send(reg.post(&mount));
    assert_error(&resp, 401, "UNAUTHORIZED");
    let challenge = resp.must_header("www-authenticate").to_string();
    let scope = challenge_scope(&challenge);
    assert_eq!(
        scope, "repository:team/dst:pull,push repository:team/src:pull",
        "{challenge}"
    );
    assert_eq!(
        resp.json()["errors"][0]["detail"],
        json!([
            {"Type": "repository", "Class": "", "Name": "team/dst", "Action": "pull"},
            {"Type": "repository", "Class": "", "Name": "team/dst", "Action": "push"},
            {"Type": "repository", "Class": "", "Name": "team/src", "Action": "pull"}
        ])
    );
    let both = token(&scope);
    let resp = send(bearer(reg.post(&mount), &both));
    resp.assert_status(201);
    send(bearer(
        reg.head(&format!("/v2/team/dst/blobs/{}", blob.digest)),
        &both,
    ))
    .assert_status(200);

    // A token lacking pull on the source: challenged for both again when it lacks push on
    // the target, the upload fallback when it has it.
    let pull_only = token("repository:team/other:pull");
    let other_mount = mount.replace("team/dst", "team/other");
    let resp = send(bearer(reg.post(&other_mount), &pull_only));
    assert_error(&resp, 401, "UNAUTHORIZED");
    let challenge = resp.must_header("www-authenticate").to_string();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert_eq!(
        challenge_scope(&challenge),
        "repository:team/other:pull,push repository:team/src:pull"
    );
    let push_only = token("repository:team/other:pull,push");
    let resp = send(bearer(reg.post(&other_mount), &push_only));
    resp.assert_status(202);
    send(bearer(
        reg.head(&format!("/v2/team/other/blobs/{}", blob.digest)),
        &push_only,
    ))
    .assert_status(404);

    // A `from` outside the name grammar: 400 before anything else.
    let resp = send(reg.post(&format!(
        "/v2/team/dst/blobs/uploads/?mount={}&from=Team/Src",
        blob.digest
    )));
    assert_error(&resp, 400, "NAME_INVALID");
}

/// Anonymous mount (`?mount=` without `from`) with tokens: only the repositories the token
/// grants pull on are searched; without one, an upload session (202).
#[test]
fn anonymous_mount_searches_only_what_the_token_may_pull() {
    let keys = Keys::new();
    let reg = registry(&keys, "https://auth.example/token");
    let token =
        |access: &[(&str, &str, &[&str])]| keys.jwks_token(&claims(ISSUER, SERVICE, access));
    let blob = Blob::random(2500);
    let src = token(&[("repository", "team/src", &["pull", "push"])]);
    send(
        bearer(
            reg.post(&format!(
                "/v2/team/src/blobs/uploads/?digest={}",
                blob.digest
            )),
            &src,
        )
        .header("content-type", "application/octet-stream")
        .body(blob.data.clone()),
    )
    .assert_status(201);
    let anonymous = format!("/v2/team/dst/blobs/uploads/?mount={}", blob.digest);

    // The sibling holds it, but the token may not pull it: no search there.
    let dst_only = token(&[("repository", "team/dst", &["pull", "push"])]);
    let resp = send(bearer(reg.post(&anonymous), &dst_only));
    resp.assert_status(202);
    send(bearer(
        reg.head(&format!("/v2/team/dst/blobs/{}", blob.digest)),
        &dst_only,
    ))
    .assert_status(404);

    let with_src = token(&[
        ("repository", "team/dst", &["pull", "push"]),
        ("repository", "elsewhere/x", &["pull"]),
        ("repository", "team/src", &["pull"]),
    ]);
    let resp = send(bearer(reg.post(&anonymous), &with_src));
    resp.assert_status(201);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    send(bearer(
        reg.head(&format!("/v2/team/dst/blobs/{}", blob.digest)),
        &dst_only,
    ))
    .assert_status(200);
}
