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
const TAB: &str = "\u{E004}";
/// Tab presses allowed to reach a link (a page has a few dozen focusable elements at most).
const MAX_TABS: usize = 80;

/// The form controls of the current page that have neither a label nor an accessible name.
fn unlabelled(b: &Browser) -> Vec<String> {
    let found = b.execute(
        "return Array.from(document.querySelectorAll('input:not([type=hidden]), select, textarea, button'))\
           .filter(e => e.tagName === 'BUTTON'\
             ? !e.textContent.trim() && !e.getAttribute('aria-label')\
             : !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))\
           .map(e => e.outerHTML);",
        json!([]),
    );
    serde_json::from_value(found).unwrap()
}

/// Tabs from the top of the page to the first link whose address ends with `href_end`, then
/// follows it with Enter: the page works from the keyboard alone.
fn follow_by_keyboard(b: &Browser, href_end: &str) {
    b.execute(
        "document.activeElement && document.activeElement.blur(); window.focus();",
        json!([]),
    );
    for _ in 0..MAX_TABS {
        b.press(TAB);
        let href = b.attribute(&b.active(), "href").unwrap_or_default();
        if href.ends_with(href_end) {
            let before = b.url();
            b.press(ENTER);
            assert!(
                wait_until(WAIT_LIMIT, || b.url() != before),
                "Enter did not follow {href}"
            );
            return;
        }
    }
    panic!("no link to …{href_end} reached with Tab: {}", b.source());
}

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
    assert_eq!(unlabelled(b), Vec::<String>::new(), "repositories page");
    // Keyboard only: Tab to the repository's link, Enter.
    follow_by_keyboard(b, &format!("name={}", repo.replace('/', "%2F")));
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
    assert_eq!(unlabelled(b), Vec::<String>::new(), "index page");
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
    assert_eq!(unlabelled(b), Vec::<String>::new(), "image page");
    b.resize(390, 844);
    b.screenshot(&format!("{prefix}-image-phone"));
    // On a phone the page reflows instead of scrolling sideways.
    let wide = b.execute(
        "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];",
        json!([]),
    );
    assert!(
        wide[0].as_u64() <= wide[1].as_u64(),
        "wider than the phone: {wide}"
    );
    b.resize(1280, 900);

    // Delete the tag v2: a confirmation page first.
    b.click(&b.find("#delete-tag"));
    assert!(
        b.text(&b.find("main")).contains("Delete the tag"),
        "{}",
        b.source()
    );
    b.screenshot(&format!("{prefix}-confirm-delete"));
    assert_eq!(unlabelled(b), Vec::<String>::new(), "confirmation page");
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

    // 25 repositories, 10 a page; the plain list does not count them, a search does.
    assert_eq!(b.text(&b.find("#count")), "Repositories in name order");
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
    b.type_into(&b.find("#q"), &format!("r2{ENTER}"));
    assert!(wait_until(WAIT_LIMIT, || b.url().contains("q=r2")));
    assert!(
        b.text(&b.find("#count"))
            .starts_with("4 repositories matching"),
        "{}",
        b.source()
    );
    assert_eq!(
        repo_names(&b),
        ["bulk/r20", "bulk/r21", "bulk/r22", "bulk/r23"]
    );

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

/// A second `wharf` serving only as a token server (`tokenissuer`, no `auth`): the external
/// realm of the registry under test, which has no issuer of its own.
fn external_realm(dir: &std::path::Path) -> Registry {
    let identity = support::auth::self_signed(support::auth::ec_key(), &["external-token-server"]);
    identity.write(dir, "realm");
    let hash = |pw: &str| bcrypt::hash(pw, 4).unwrap();
    Registry::builder(Driver::Inmemory)
        .section(&format!(
            "tokenissuer:
  key: {key}
  certificate: {cert}
  issuer: external-issuer
  service: wharf-registry
  expiration: 5m
  users:
    admin: {{password: '{admin}'}}
    alice: {{password: '{alice}'}}
  acl:
    - match: {{account: admin}}
      actions: ['*']
    - match: {{account: alice, name: 'team/*'}}
      actions: [pull, delete]
",
            key = dir.join("realm.key").display(),
            cert = dir.join("realm.crt").display(),
            admin = hash("admin-pw"),
            alice = hash("alice-pw"),
        ))
        .start()
}

/// `auth.token` pointing at `realm`, trusting `bundle`, with the console on.
fn token_registry(realm: &str, bundle: &std::path::Path) -> Registry {
    Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .section(&format!(
            "auth:
  token:
    realm: {realm}
    service: wharf-registry
    issuer: external-issuer
    rootcertbundle: {}
",
            bundle.display()
        ))
        .section(&console_lines(50))
        .ready(Ready::V2Answers)
        .start()
}

#[test]
fn the_console_signs_in_through_an_external_token_server() {
    if !browser::available() {
        panic!("chromium and chromium-driver are needed (bash .ci/test installs them)");
    }
    let dir = tempfile::tempdir().unwrap();
    let realm = external_realm(dir.path());
    let realm_url = format!("{}/auth/token", realm.url());
    let reg = token_registry(&realm_url, &dir.path().join("realm.crt"));
    // The admin pushes with a token from the external realm, as docker would.
    let token = send(
        realm
            .get("/auth/token?service=wharf-registry&scope=repository:team/app:pull,push&scope=repository:secret/db:pull,push")
            .basic_auth("admin", Some("admin-pw")),
    )
    .json()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let admin = Endpoint::with_bearer(reg.url(), &token);
    let (_, image) = push_showcase(&admin, "team/app");
    push_image(&admin, "secret/db", "latest", Kind::OciManifest);
    let ui = format!("{}/ui/", reg.url());

    // No anonymous account at the realm: a login first, and a wrong password is refused.
    let b = Browser::start(1280, 900);
    b.goto(&ui);
    assert!(b.url().contains("/ui/login"), "{}", b.url());
    b.type_into(&b.find("#username"), "alice");
    b.type_into(&b.find("#password"), &format!("wrong{ENTER}"));
    assert!(
        b.text(&b.find("#login-error")).contains("Wrong"),
        "{}",
        b.source()
    );
    sign_in(&b, "alice", "alice-pw");
    // The realm's ACL decides: alice pulls team/* only.
    assert_eq!(repo_names(&b), ["team/app"], "{}", b.source());
    b.screenshot("external-repositories");
    b.goto(&format!("{ui}repository?name=secret/db"));
    assert!(
        b.text(&b.find("main")).contains("Not found"),
        "{}",
        b.source()
    );

    browse_and_delete(&b, &ui, "team/app", &image, "external");
    let tags = send(admin.get("/v2/team/app/tags/list")).json();
    assert_eq!(tags["tags"], json!(["v1"]));
}

/// A realm that answers every request with a redirect to `to`, keeping each request's head.
fn redirecting_realm(to: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        // Bounded: the test sends a handful of requests.
        for stream in listener.incoming().take(20).flatten() {
            let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                head.push_str(&line);
                line.clear();
            }
            seen.lock().unwrap().push(head);
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    (url, heads)
}

fn post_login(reg: &Registry, user: &str, password: &str) -> Resp {
    send(
        reg.post("/ui/login")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("username={user}&password={password}&then=%2Fui%2F")),
    )
}

#[test]
fn a_realm_that_is_down_or_redirects_gives_a_sign_in_error_and_keeps_the_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let identity = support::auth::self_signed(support::auth::ec_key(), &["some-issuer"]);
    identity.write(dir.path(), "realm");
    let bundle = dir.path().join("realm.crt");

    // Nothing listens on the realm's port.
    let closed = format!(
        "http://127.0.0.1:{}/auth/token",
        support::process::free_port()
    );
    let reg = token_registry(&closed, &bundle);
    let resp = post_login(&reg, "alice", "alice-pw");
    resp.assert_status(403);
    let page = resp.text();
    assert!(
        page.contains("id=\"login-error\"")
            && page.contains("The sign-in service failed")
            && page.contains(&closed),
        "{page}"
    );
    assert!(
        page.contains("id=\"password\""),
        "the form is shown again: {page}"
    );
    // Browsing anonymously asks the realm too, with the same answer.
    let resp = send(reg.get("/ui/"));
    resp.assert_status(403);
    assert!(resp.text().contains("The sign-in service failed"));
    drop(reg);

    // A realm that redirects: the credentials went to it, and to nowhere else.
    let elsewhere = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let (realm, heads) =
        redirecting_realm(format!("http://{}/steal", elsewhere.local_addr().unwrap()));
    let reg = token_registry(&realm, &bundle);
    let resp = post_login(&reg, "alice", "alice-pw");
    resp.assert_status(403);
    let page = resp.text();
    assert!(page.contains("redirects are not followed"), "{page}");
    let heads = heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /token?service=wharf-registry&account=alice")
            && heads[0].to_lowercase().contains("authorization: basic "),
        "{heads:?}"
    );
    // The console answered after its request ended: had it followed the redirect, the
    // connection would be waiting here.
    elsewhere.set_nonblocking(true).unwrap();
    assert!(
        matches!(elsewhere.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the redirect was followed"
    );
}

#[test]
fn image_configs_come_through_the_registry_when_s3_redirects_blobs() {
    let reg = Registry::builder(Driver::S3)
        .redirect(true)
        .section(&console_lines(10))
        .start();
    let (_, image) = push_showcase(&reg, "team/app");
    // Clients are sent to the bucket for blobs...
    let manifest = send(
        reg.get("/v2/team/app/manifests/v2")
            .header("accept", OCI_MANIFEST),
    )
    .json();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let blob = send(reg.get(&format!("/v2/team/app/blobs/{config}")));
    blob.assert_status(307);
    // ...while the console reads the config itself, with no bucket CORS needed by the browser.
    let resp = send(reg.get("/ui/image?name=team/app&ref=v2"));
    resp.assert_status(200);
    let page = resp.text();
    assert!(page.contains(&image.digest), "{page}");
    for expected in ["/usr/bin/app", "APP_MODE=production", "ADD rootfs.tar /"] {
        assert!(page.contains(expected), "{expected} missing from\n{page}");
    }
}
