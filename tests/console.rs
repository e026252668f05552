//! The web console in a real headless Chromium against the real binary: sign in, search, page
//! through repositories, open an index and one of its images (platforms, layers, config,
//! referrers), delete a tag after confirming, see it gone (through the console and the API);
//! with htpasswd and with the built-in token issuer, whose ACL decides what is listed.
//! Screenshots of every page go to `target/console-screenshots/`.

mod support;

use serde_json::json;
use support::browser::{self, Browser};
use support::*;

const ENTER: &str = "\u{E007}";

/// A repository with an index (two platforms), a richly described image and a signature.
fn push_showcase(reg: &Endpoint, repo: &str) -> (Manifest, Manifest) {
    let index = push_image(reg, repo, "v1", Kind::OciIndex);
    let config = Blob::new(
        serde_json::to_vec(&json!({
            "created": "2026-11-30T10:00:00Z",
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Entrypoint": ["/usr/bin/app"],
                "Cmd": ["--serve"],
                "Env": ["PATH=/usr/bin", "APP_MODE=production"],
                "Labels": {"org.opencontainers.image.source": "https://example.invalid/app"}
            },
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [
                {"created": "2026-11-30T09:59:00Z", "created_by": "ADD rootfs.tar /"},
                {"created": "2026-11-30T10:00:00Z", "created_by": "ENTRYPOINT [\"/usr/bin/app\"]", "empty_layer": true}
            ]
        }))
        .unwrap(),
    );
    let layer = Blob::random(4096);
    push_blob(reg, repo, &config.data);
    push_blob(reg, repo, &layer.data);
    let image = image_manifest(
        OCI_MANIFEST,
        ("application/vnd.oci.image.config.v1+json", &config),
        &[("application/vnd.oci.image.layer.v1.tar+gzip", &layer)],
        None,
    );
    push_manifest(reg, repo, "v2", &image);
    let payload = Blob::random(300);
    push_blob(reg, repo, &payload.data);
    push_blob(reg, repo, b"{}");
    let signature = artifact_manifest(
        "application/vnd.dev.cosign.artifact.sig.v1+json",
        &payload,
        Some(&image),
        None,
    );
    push_manifest(reg, repo, &signature.digest, &signature);
    (index, image)
}

fn sign_in(b: &Browser, user: &str, password: &str) {
    b.type_into(&b.find("#username"), user);
    // The keyboard submits the form: Enter in the password field.
    b.type_into(&b.find("#password"), &format!("{password}{ENTER}"));
    assert!(
        wait_until(WAIT_LIMIT, || !b.url().contains("/login")),
        "still on the login page: {}",
        b.source()
    );
}

fn repo_names(b: &Browser) -> Vec<String> {
    b.texts(".repos li a")
}

/// Opens the repository, the index, one platform's image, then deletes `tag` after confirming;
/// `prefix` names the screenshots.
fn browse_and_delete(b: &Browser, ui: &str, repo: &str, image: &Manifest, prefix: &str) {
    b.goto(&format!("{ui}?q={}", repo.split('/').next_back().unwrap()));
    assert!(repo_names(b).contains(&repo.to_string()), "{}", b.source());
    b.screenshot(&format!("{prefix}-search"));
    b.click(&b.find(&format!(".repos a[href$='{}']", repo.replace('/', "%2F"))));
    let tags = b.texts("#tags tbody th");
    assert_eq!(tags, ["v1", "v2"], "{}", b.source());
    let rows = b.texts("#tags tbody tr");
    assert!(
        rows[0].contains("linux/amd64") && rows[0].contains("linux/arm64"),
        "{rows:?}"
    );
    assert!(rows[1].contains("2026-11-30T10:00:00Z"), "{rows:?}");
    b.screenshot(&format!("{prefix}-tags"));
    // Sorted by date, the dated image comes first.
    b.click(&b.find("a[href*='sort=date']"));
    assert_eq!(b.texts("#tags tbody th")[0], "v2");

    // The index: its platforms, then one of them.
    b.click(&b.find("#tags a[href$='ref=v1']"));
    let platforms = b.texts("#platforms tbody th");
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"], "{}", b.source());
    let pull = b.attribute(&b.find("#docker-pull"), "value").unwrap();
    assert!(
        pull.starts_with("docker pull ") && pull.ends_with(&format!("/{repo}:v1")),
        "{pull}"
    );
    b.screenshot(&format!("{prefix}-index"));
    b.click(&b.find("#platforms a"));
    assert_eq!(b.find_all("#layers tbody tr").len(), 2, "{}", b.source());

    // The described image: config, history, layers, its signature among the referrers.
    b.goto(&format!("{ui}image?name={repo}&ref=v2"));
    assert_eq!(b.text(&b.find("#digest")), image.digest);
    assert_eq!(b.text(&b.find("#created")), "2026-11-30T10:00:00Z");
    let page = b.text(&b.find("main"));
    for expected in [
        "/usr/bin/app",
        "APP_MODE=production",
        "org.opencontainers.image.source",
        "ADD rootfs.tar /",
        "4.0 KiB",
    ] {
        assert!(page.contains(expected), "{expected} missing from\n{page}");
    }
    assert!(
        b.text(&b.find("#referrers"))
            .contains("application/vnd.dev.cosign.artifact.sig.v1+json"),
        "{page}"
    );
    b.screenshot(&format!("{prefix}-image"));
    b.resize(390, 844);
    b.screenshot(&format!("{prefix}-image-phone"));
    b.resize(1280, 900);

    // Delete the tag v2: a confirmation page first.
    b.click(&b.find("#delete-tag"));
    assert!(
        b.text(&b.find("main")).contains("Delete the tag"),
        "{}",
        b.source()
    );
    b.screenshot(&format!("{prefix}-confirm-delete"));
    b.click(&b.find("#confirm-delete"));
    assert!(wait_until(WAIT_LIMIT, || b.url().contains("/repository?")));
    assert_eq!(b.texts("#tags tbody th"), ["v1"], "{}", b.source());
    b.screenshot(&format!("{prefix}-after-delete"));
}

fn console_lines(pagesize: usize) -> String {
    format!("ui:\n  enabled: true\n  path: /ui/\n  pagesize: {pagesize}\n")
}

#[test]
fn htpasswd_users_browse_page_and_delete_in_a_browser() {
    if !browser::available() {
        panic!("chromium and chromium-driver are needed (bash .ci/test installs them)");
    }
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    std::fs::write(&htpasswd, format!("alice:{hash}\n")).unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .section(&format!(
            "auth:\n  htpasswd:\n    realm: wharf\n    path: {}\n",
            htpasswd.display()
        ))
        .section(&console_lines(10))
        .ready(Ready::V2Answers)
        .start();
    let alice = Endpoint::with_basic_auth(reg.url(), "alice", "alice-pw");
    let (_, image) = push_showcase(&alice, "team/app");
    for i in 0..24 {
        push_blob(&alice, &format!("bulk/r{i:02}"), b"{}");
        push_manifest(
            &alice,
            &format!("bulk/r{i:02}"),
            "latest",
            &artifact_manifest(
                "application/vnd.example.bulk",
                &Blob::new(b"{}".to_vec()),
                None,
                None,
            ),
        );
    }
    let ui = format!("{}/ui/", reg.url());

    // Nobody signed in: the console asks for a login, and a wrong password is refused.
    let b = Browser::start(1280, 900);
    b.goto(&ui);
    assert!(b.url().contains("/ui/login"), "{}", b.url());
    b.screenshot("htpasswd-login");
    b.type_into(&b.find("#username"), "alice");
    b.type_into(&b.find("#password"), &format!("wrong{ENTER}"));
    assert!(b.text(&b.find("#login-error")).contains("Wrong"));
    sign_in(&b, "alice", "alice-pw");

    // 25 repositories, 10 a page.
    assert!(b.text(&b.find("#count")).starts_with("25 repositories"));
    let first = repo_names(&b);
    assert_eq!(first.len(), 10);
    assert_eq!(first[0], "bulk/r00");
    b.screenshot("htpasswd-repositories");
    b.click(&b.find("#next-page"));
    let second = repo_names(&b);
    assert_eq!(second[0], "bulk/r10", "{}", b.source());
    b.click(&b.find("#next-page"));
    assert_eq!(
        repo_names(&b),
        ["bulk/r20", "bulk/r21", "bulk/r22", "bulk/r23", "team/app"]
    );
    assert!(b.find_all("#next-page").is_empty());

    browse_and_delete(&b, &ui, "team/app", &image, "htpasswd");
    // The API agrees: v2 is gone, v1 stays.
    let tags = send(alice.get("/v2/team/app/tags/list")).json();
    assert_eq!(tags["tags"], json!(["v1"]));

    // Signing out forgets the login.
    b.click(&b.find("header form button"));
    b.goto(&ui);
    assert!(b.url().contains("/ui/login"), "{}", b.url());
}

#[test]
fn the_issuers_acl_decides_what_the_console_lists_and_deletes() {
    if !browser::available() {
        panic!("chromium and chromium-driver are needed (bash .ci/test installs them)");
    }
    let dir = tempfile::tempdir().unwrap();
    let identity = support::auth::self_signed(support::auth::ec_key(), &["wharf-token-issuer"]);
    identity.write(dir.path(), "issuer");
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    let sections = format!(
        "auth:
  token:
    realm: http://placeholder/auth/token
    service: wharf-console
    issuer: wharf-issuer
tokenissuer:
  key: {key}
  certificate: {cert}
  expiration: 5m
  users:
    admin: {{password: '{admin}'}}
    alice: {{password: '{alice}'}}
    '': {{}}
  acl:
    - match: {{account: admin}}
      actions: ['*']
    - match: {{account: alice, name: 'team/*'}}
      actions: [pull, delete]
    - match: {{name: 'public/*'}}
      actions: [pull]
",
        key = dir.path().join("issuer.key").display(),
        cert = dir.path().join("issuer.crt").display(),
        admin = hash("admin-pw"),
        alice = hash("alice-pw"),
    );
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .section(&sections)
        .section(&console_lines(50))
        .env("REGISTRY_AUTH_TOKEN_REALM", "http://{addr}/auth/token")
        .ready(Ready::V2Answers)
        .start();
    // The admin pushes through the token flow, as skopeo would.
    let token = send(
        reg.get("/auth/token?scope=repository:team/app:pull,push&scope=repository:public/base:pull,push&scope=repository:secret/db:pull,push")
            .basic_auth("admin", Some("admin-pw")),
    )
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = Endpoint::with_bearer(reg.url(), &token);
    let (_, image) = push_showcase(&admin, "team/app");
    push_image(&admin, "public/base", "latest", Kind::OciManifest);
    push_image(&admin, "secret/db", "latest", Kind::OciManifest);
    let ui = format!("{}/ui/", reg.url());

    // Anonymous: only what the ACL lets anyone pull.
    let b = Browser::start(1280, 900);
    b.goto(&ui);
    assert_eq!(repo_names(&b), ["public/base"], "{}", b.source());
    b.screenshot("issuer-anonymous");
    // A repository anonymous may not pull asks for a login instead of showing anything.
    b.goto(&format!("{ui}repository?name=secret/db"));
    assert!(b.url().contains("/ui/login"), "{}", b.url());

    sign_in(&b, "alice", "alice-pw");
    assert!(
        b.url().contains("repository?name=secret"),
        "back where the login was asked: {}",
        b.url()
    );
    // Signed in, alice still may not see secret/db: it is answered as unknown.
    assert!(
        b.text(&b.find("main")).contains("Not found"),
        "{}",
        b.source()
    );
    b.goto(&ui);
    assert_eq!(
        repo_names(&b),
        ["public/base", "team/app"],
        "{}",
        b.source()
    );
    b.screenshot("issuer-repositories");
    // Read-only for alice in public/*: no delete links there.
    b.goto(&format!("{ui}repository?name=public/base"));
    assert!(b.find_all("a.danger").is_empty(), "{}", b.source());
    b.goto(&format!("{ui}delete?name=public/base&ref=latest"));
    assert!(
        b.text(&b.find("main")).contains("may not delete"),
        "{}",
        b.source()
    );

    browse_and_delete(&b, &ui, "team/app", &image, "issuer");
    let tags = send(admin.get("/v2/team/app/tags/list")).json();
    assert_eq!(tags["tags"], json!(["v1"]));
}
