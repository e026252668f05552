//! Security cases from registry advisories, each against the real binary: a blob deleted from one
//! repository is never served through it again from the Redis or in-memory descriptor cache,
//! tag deletes obey `storage.delete.enabled`, page sizes and tokens of absurd size cost neither
//! time nor memory, manifest bodies are capped before being read whole, and a bearer token is
//! never taken for a Basic password.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use support::auth;
use support::*;

// ---------------------------------------------------------------------------------------------
// A blob deleted from A and still in B is never served through A
// ---------------------------------------------------------------------------------------------

fn deleted_link_stays_deleted(reg: &Registry, redis: Option<&RedisServer>) {
    let blob = Blob::random(20_000);
    push(reg, "sec/a", &blob);
    push(reg, "sec/b", &blob);
    let path = |repo: &str| format!("/v2/{repo}/blobs/{}", blob.digest);
    for _ in 0..3 {
        for repo in ["sec/a", "sec/b"] {
            send(reg.head(&path(repo))).assert_status(200);
            send(reg.get(&path(repo))).assert_status(200);
        }
    }
    if let Some(redis) = redis {
        let linked = redis
            .command(&["SISMEMBER", "repository::sec/a::blobs", &blob.digest])
            .unwrap();
        assert_eq!(
            linked.text(),
            "1",
            "the cache knows the link before the delete"
        );
    }

    // Readers of A race with the delete: a reader that read the link just before it was
    // deleted must not leave the cache saying A still has the blob.
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), reg.resolve(&path("sec/a")));
            thread::spawn(move || {
                let client = http_client();
                for _ in 0..20_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = client.head(&url).send();
                }
            })
        })
        .collect();
    thread::sleep(Duration::from_millis(100));
    send(reg.delete(&path("sec/a"))).assert_status(202);
    thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().unwrap();
    }

    for _ in 0..20 {
        assert_error(&send(reg.get(&path("sec/a"))), 404, "BLOB_UNKNOWN");
        assert_eq!(send(reg.head(&path("sec/a"))).status, 404);
        let resp = send(reg.get(&path("sec/b")));
        resp.assert_status(200);
        assert!(resp.body == blob.data);
    }
    // Nor can it be mounted from A.
    let resp = send(reg.post(&format!(
        "/v2/sec/c/blobs/uploads/?mount={}&from=sec/a",
        blob.digest
    )));
    resp.assert_status(202);
    if let Some(redis) = redis {
        let linked = redis
            .command(&["SISMEMBER", "repository::sec/a::blobs", &blob.digest])
            .unwrap();
        assert_eq!(linked.text(), "0", "the cache forgot the link");
        let hints = redis
            .command(&[
                "SMEMBERS",
                &format!("wharf::blobs::{}::repositories", blob.digest),
            ])
            .unwrap()
            .items();
        assert!(!hints.iter().any(|r| r == "sec/a"), "{hints:?}");
    }
}

fn deleted_link_redis(driver: Driver) {
    let redis = RedisServer::start();
    let reg = Registry::builder(driver)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "redis")
        .env("REGISTRY_REDIS_ADDR", &redis.addr())
        .start();
    deleted_link_stays_deleted(&reg, Some(&redis));
}

fn deleted_link_inmemory_cache(driver: Driver) {
    let reg = Registry::builder(driver)
        .env("REGISTRY_STORAGE_CACHE_BLOBDESCRIPTOR", "inmemory")
        .start();
    deleted_link_stays_deleted(&reg, None);
}

for_each_driver!(deleted_link_redis, deleted_link_inmemory_cache);

// ---------------------------------------------------------------------------------------------
// Tag deletes obey storage.delete.enabled
// ---------------------------------------------------------------------------------------------

fn stored_state(reg: &Registry) -> Vec<String> {
    match reg.s3() {
        Some(t) => support::s3::shared().keys(&t.bucket, ""),
        None => list_files(reg.root())
            .into_iter()
            .map(|p| p.display().to_string())
            .collect(),
    }
}

fn tag_delete_refused_when_disabled(driver: Driver) {
    let reg = Registry::builder(driver).delete_enabled(false).start();
    let image = push_image(&reg, "sec/app", "v1", Kind::OciManifest);
    push_manifest(&reg, "sec/app", "v2", &image);
    let before = stored_state(&reg);
    for reference in ["v1", "v2", image.digest.as_str(), "unknown"] {
        let resp = send(reg.delete(&format!("/v2/sec/app/manifests/{reference}")));
        assert_error(&resp, 405, "UNSUPPORTED");
    }
    assert_eq!(list_tags(&reg, "sec/app"), ["v1", "v2"]);
    for tag in ["v1", "v2"] {
        get_manifest(&reg, "sec/app", tag, OCI_MANIFEST).assert_status(200);
    }
    assert_eq!(stored_state(&reg), before, "storage unchanged");
}

// ---------------------------------------------------------------------------------------------
// Absurd page sizes: clamped, no allocation sized by the client
// ---------------------------------------------------------------------------------------------

fn huge_page_sizes(driver: Driver) {
    let reg = Registry::start(driver);
    let image = push_image(&reg, "sec/app", "v1", Kind::OciManifest);
    push_manifest(&reg, "sec/app", "v2", &image);
    let before = vm_hwm(reg.pid());
    let digits = "9".repeat(4000);
    for n in [
        "10000",
        "4294967296",
        "18446744073709551615",
        digits.as_str(),
    ] {
        let resp = send(reg.get(&format!("/v2/_catalog?n={n}")));
        resp.assert_status(200);
        assert_eq!(resp.json()["repositories"], serde_json::json!(["sec/app"]));
        let resp = send(reg.get(&format!("/v2/sec/app/tags/list?n={n}")));
        resp.assert_status(200);
        assert_eq!(resp.json()["tags"], serde_json::json!(["v1", "v2"]));
        assert_eq!(next_link(&resp), None);
    }
    let grown = vm_hwm(reg.pid()).saturating_sub(before);
    assert!(grown < 16 << 20, "peak memory grew by {grown} bytes");
}

// ---------------------------------------------------------------------------------------------
// Manifest bodies are capped at 4 MiB before being read whole
// ---------------------------------------------------------------------------------------------

/// An OCI manifest of exactly `len` bytes (padded with an annotation).
fn manifest_of_len(base: &Manifest, len: usize) -> Manifest {
    let mut value = base.json();
    value["annotations"] = serde_json::json!({"org.example.padding": ""});
    let empty = Manifest::from_value(OCI_MANIFEST, &value).body.len();
    value["annotations"]["org.example.padding"] = serde_json::json!("p".repeat(len - empty));
    let m = Manifest::from_value(OCI_MANIFEST, &value);
    assert_eq!(m.body.len(), len);
    m
}

fn manifest_body_cap(driver: Driver) {
    let reg = Registry::start(driver);
    let base = prepare(&reg, "sec/app", Kind::OciManifest);
    const LIMIT: usize = 4 << 20;
    // Exactly 4 MiB is taken, as by registry:2.
    let at_limit = manifest_of_len(&base, LIMIT);
    push_manifest(&reg, "sec/app", "at-limit", &at_limit);
    let files = stored_state(&reg);
    let before = vm_hwm(reg.pid());

    // One byte more, declared: refused from the Content-Length.
    let over = manifest_of_len(&base, LIMIT + 1);
    let head = format!(
        "PUT /v2/sec/app/manifests/over HTTP/1.1\r\nHost: {}\r\nContent-Type: {OCI_MANIFEST}\r\nContent-Length: {}",
        reg.host(),
        over.body.len()
    );
    let resp = raw_request(reg.addr(), &head, &over.body, RawEnd::KeepOpen);
    assert_refused(resp, &[413], &["MANIFEST_INVALID"]);

    // 64 MiB streamed without a length: refused once 4 MiB are in, the rest never buffered.
    let mut chunked = Vec::with_capacity(65 << 20);
    let piece = vec![b' '; 1 << 20];
    for _ in 0..64 {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(&piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "PUT /v2/sec/app/manifests/streamed HTTP/1.1\r\nHost: {}\r\nContent-Type: {OCI_MANIFEST}\r\nTransfer-Encoding: chunked",
        reg.host()
    );
    let resp = raw_request(reg.addr(), &head, &chunked, RawEnd::KeepOpen);
    assert_refused(resp, &[413], &["MANIFEST_INVALID"]);
    drop(chunked);
    let grown = vm_hwm(reg.pid()).saturating_sub(before);
    assert!(grown < 24 << 20, "peak memory grew by {grown} bytes");

    for tag in ["over", "streamed"] {
        let resp = get_manifest(&reg, "sec/app", tag, OCI_MANIFEST);
        assert_error(&resp, 404, "MANIFEST_UNKNOWN");
    }
    assert_eq!(stored_state(&reg), files, "nothing stored");
    get_manifest(&reg, "sec/app", "at-limit", OCI_MANIFEST).assert_status(200);
}

for_each_driver!(
    tag_delete_refused_when_disabled,
    huge_page_sizes,
    manifest_body_cap
);

// ---------------------------------------------------------------------------------------------
// Tokens: absurd ones cost nothing, a token is never a password
// ---------------------------------------------------------------------------------------------

const SERVICE: &str = "wharf-test";
const ISSUER: &str = "wharf-issuer";

/// A built-in token issuer whose key the test also holds, to sign tokens of its own making.
struct Issuer {
    dir: tempfile::TempDir,
    identity: auth::Identity,
}

impl Issuer {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let identity = auth::self_signed(auth::ec_key(), &["wharf-token-issuer"]);
        identity.write(dir.path(), "issuer");
        Self { dir, identity }
    }

    /// `tokenissuer` with user alice (password `alice-pw`, push and pull on `sec/*`).
    fn section(&self) -> String {
        format!(
            "tokenissuer:
  issuer: {ISSUER}
  service: {SERVICE}
  key: {key}
  certificate: {cert}
  users:
    alice: '{alice}'
  acl:
    - match: {{account: alice, name: 'sec/*'}}
      actions: [pull, push]
",
            key = self.dir.path().join("issuer.key").display(),
            cert = self.dir.path().join("issuer.crt").display(),
            alice = bcrypt::hash("alice-pw", 4).unwrap(),
        )
    }

    /// A token signed with the issuer's key over exactly these header and payload bytes.
    fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        use auth::b64url;
        let message = format!("{}.{}", b64url(header), b64url(payload));
        let key = jsonwebtoken::EncodingKey::from_ec_pem(self.identity.key_pem.as_bytes()).unwrap();
        let signature =
            jsonwebtoken::crypto::sign(message.as_bytes(), &key, jsonwebtoken::Algorithm::ES256)
                .unwrap();
        format!("{message}.{signature}")
    }

    fn kid(&self) -> String {
        auth::libtrust_kid(&self.identity.spki())
    }
}

/// GET `<realm>?service=&scope=` with Basic credentials: the whole JSON answer.
fn fetch_token(
    reg: &Registry,
    user: &str,
    password: &str,
    scope: &str,
) -> (u16, serde_json::Value) {
    let resp = send(
        reg.get(&format!(
            "/auth/token?service={SERVICE}&scope={scope}&offline_token=true"
        ))
        .basic_auth(user, Some(password)),
    );
    let body = serde_json::from_slice(&resp.body).unwrap_or_default();
    (resp.status, body)
}

fn token_registry(issuer: &Issuer, extra_http: &[&str]) -> Registry {
    let mut builder = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  token:\n    realm: http://placeholder/auth/token\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
        ))
        .section(&issuer.section())
        .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
        .ready(Ready::V2Answers);
    for line in extra_http {
        builder = builder.http_line(line);
    }
    builder.start()
}

/// Megabytes of dots, of nested JSON in the header or the payload (signed or not): 401 every
/// time, answered without the server's peak memory growing with the token.
#[test]
fn absurd_tokens_cost_nothing() {
    let issuer = Issuer::new();
    // Heads of up to 16 MiB reach the authenticator (the default limit is 64 KiB).
    let reg = token_registry(&issuer, &["  limits:\n    maxheaderbytes: 16777216"]);
    let path = "/v2/sec/app/tags/list";
    let (status, body) = fetch_token(&reg, "alice", "alice-pw", "repository:sec/app:pull");
    assert_eq!(status, 200, "{body}");
    let good = body["token"].as_str().unwrap().to_string();
    send(reg.get(path).bearer_auth(&good)).assert_status(404);

    use auth::b64url;
    let mb = 4 << 20;
    let kid = issuer.kid();
    let header = |kid_value: String| {
        format!(r#"{{"alg":"ES256","typ":"JWT","kid":{kid_value}}}"#).into_bytes()
    };
    let claims = auth::claims(ISSUER, SERVICE, &[("repository", "sec/app", &["pull"])]);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let nested_object =
        |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    // Control: the test's own signing is trusted, so the signed cases below reach the parser.
    let own = issuer.sign_raw(&header(format!("{kid:?}")), claims.to_string().as_bytes());
    send(reg.get(path).bearer_auth(&own)).assert_status(404);
    let tokens: Vec<(&str, String)> = vec![
        ("dots", ".".repeat(mb)),
        ("segments", "a.".repeat(mb / 2)),
        (
            "nested header",
            format!("{}.{}.x", b64url(nested(mb / 2).as_bytes()), b64url(b"{}")),
        ),
        (
            "nested payload",
            format!(
                "{}.{}.x",
                b64url(&header(format!("{kid:?}"))),
                b64url(nested_object(mb / 8).as_bytes())
            ),
        ),
        // Signed by the trusted key: the signature verifies, the JSON does not parse.
        (
            "signed nested payload",
            issuer.sign_raw(&header(format!("{kid:?}")), nested(8000).as_bytes()),
        ),
        (
            "signed nested kid",
            issuer.sign_raw(&header(nested(8000)), claims.to_string().as_bytes()),
        ),
        (
            "signed huge payload",
            issuer.sign_raw(
                &header(format!("{kid:?}")),
                {
                    let mut c = claims.clone();
                    c["padding"] = serde_json::json!("p".repeat(mb));
                    c.to_string()
                }
                .as_bytes(),
            ),
        ),
    ];
    let before = vm_hwm(reg.pid());
    for round in 0..3 {
        for (what, token) in &tokens {
            let resp = send(
                reg.get(path)
                    .header("authorization", format!("Bearer {token}")),
            );
            assert_error(&resp, 401, "UNAUTHORIZED");
            assert!(resp.header("www-authenticate").is_some(), "{what}");
            if round == 0 {
                // The token endpoint takes none of it either.
                let resp = send(
                    reg.get(&format!("/auth/token?service={SERVICE}"))
                        .header("authorization", format!("Bearer {token}")),
                );
                assert_eq!(resp.status, 401, "{what}: {}", resp.describe());
            }
        }
    }
    let basic = format!(
        "Basic {}",
        auth::b64(format!("alice:{}", "x".repeat(mb)).as_bytes())
    );
    assert_eq!(
        send(reg.get(path).header("authorization", &basic)).status,
        401
    );
    let refresh_form = format!(
        "grant_type=refresh_token&service={SERVICE}&refresh_token={}",
        "a.".repeat(mb / 2)
    );
    // Refused after 64 KiB; the server may close before the client has sent it all.
    let head = format!(
        "POST /auth/token HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        reg.host(),
        refresh_form.len()
    );
    match raw_request(reg.addr(), &head, refresh_form.as_bytes(), RawEnd::KeepOpen) {
        Ok(resp) => assert!((400..500).contains(&resp.status), "{}", resp.describe()),
        Err(e) => assert!(
            matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
            "{e}"
        ),
    }
    let grown = vm_hwm(reg.pid()).saturating_sub(before);
    assert!(grown < 48 << 20, "peak memory grew by {grown} bytes");
    // Still serving the genuine token.
    send(reg.get(path).bearer_auth(&good)).assert_status(404);
}

/// Token auth with the built-in issuer: an access or refresh token sent as a Basic password
/// (to the API or to the token endpoint) authenticates nothing.
#[test]
fn bearer_token_is_never_a_basic_password_with_token_auth() {
    let issuer = Issuer::new();
    let reg = token_registry(&issuer, &[]);
    let (status, body) = fetch_token(&reg, "alice", "alice-pw", "repository:sec/app:pull,push");
    assert_eq!(status, 200, "{body}");
    let access = body["token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    send(reg.post("/v2/sec/app/blobs/uploads/").bearer_auth(&access)).assert_status(202);

    for token in [&access, &refresh] {
        for user in [
            "alice",
            "",
            "<token>",
            "00000000-0000-0000-0000-000000000000",
        ] {
            let resp = send(
                reg.post("/v2/sec/app/blobs/uploads/")
                    .basic_auth(user, Some(token)),
            );
            assert_error(&resp, 401, "UNAUTHORIZED");
            let (status, body) = fetch_token(&reg, user, token, "repository:sec/app:pull");
            assert_eq!(status, 401, "{user}: {body}");
        }
        // The token as user name, no password.
        let resp = send(
            reg.get("/v2/sec/app/tags/list")
                .basic_auth(token, None::<&str>),
        );
        assert_error(&resp, 401, "UNAUTHORIZED");
        // The OAuth2 password grant with a token for password.
        let resp = send(
            reg.post("/auth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!(
                    "grant_type=password&service={SERVICE}&username=alice&password={token}&scope=repository:sec/app:pull"
                )),
        );
        assert_eq!(resp.status, 400, "{}", resp.describe());
        assert_eq!(resp.json()["error"], "invalid_grant");
    }
    // An access token is not a refresh token either.
    let resp = send(
        reg.post("/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&service={SERVICE}&refresh_token={access}"
            )),
    );
    assert_eq!(resp.status, 400, "{}", resp.describe());
    // The refresh token itself works where it belongs.
    let resp = send(
        reg.post("/auth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=refresh_token&service={SERVICE}&refresh_token={refresh}&scope=repository:sec/app:pull"
            )),
    );
    resp.assert_status(200);
    // And the refresh token is no access token.
    let resp = send(reg.get("/v2/sec/app/tags/list").bearer_auth(&refresh));
    assert_error(&resp, 401, "UNAUTHORIZED");
}

/// htpasswd with the built-in issuer on the same node: the issuer's tokens are not passwords,
/// and the htpasswd realm takes no bearer token.
#[test]
fn bearer_token_is_never_a_basic_password_with_htpasswd() {
    let issuer = Issuer::new();
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    std::fs::write(
        &htpasswd,
        format!("alice:{}\n", bcrypt::hash("alice-pw", 4).unwrap()),
    )
    .unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .section(&format!(
            "auth:\n  htpasswd:\n    realm: wharf-realm\n    path: {}\n",
            htpasswd.display()
        ))
        .section(&issuer.section())
        .ready(Ready::V2Answers)
        .start();
    let (status, body) = fetch_token(&reg, "alice", "alice-pw", "repository:sec/app:pull,push");
    assert_eq!(status, 200, "{body}");
    let access = body["token"].as_str().unwrap().to_string();
    let refresh = body["refresh_token"].as_str().unwrap().to_string();
    let path = "/v2/sec/app/blobs/uploads/";
    send(reg.post(path).basic_auth("alice", Some("alice-pw"))).assert_status(202);
    for token in [&access, &refresh] {
        let resp = send(reg.post(path).bearer_auth(token));
        assert_error(&resp, 401, "UNAUTHORIZED");
        assert!(resp.must_header("www-authenticate").starts_with("Basic"));
        for user in ["alice", ""] {
            let resp = send(reg.post(path).basic_auth(user, Some(token)));
            assert_error(&resp, 401, "UNAUTHORIZED");
        }
    }
}
