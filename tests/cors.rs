//! `http.cors` on the real binary: preflights answered 204 without credentials and before any
//! handler, exact origins only, credentials never with a wildcard, the registry's headers
//! exposed; `http.headers` keeps registry:2's behaviour.

mod support;

use reqwest::Method;
use support::*;

const UI_ORIGIN: &str = "http://127.0.0.1:1";

fn htpasswd(dir: &std::path::Path) -> String {
    let path = dir.join("htpasswd");
    let hash = bcrypt::hash("alice-pw", 4).unwrap();
    std::fs::write(&path, format!("alice:{hash}\n")).unwrap();
    format!(
        "auth:\n  htpasswd:\n    realm: wharf\n    path: {}\n",
        path.display()
    )
}

fn cors_lines(origins: &str, credentials: bool) -> String {
    format!("  cors:\n    allowedorigins: {origins}\n    allowcredentials: {credentials}\n    maxage: 120\n")
}

#[test]
fn preflights_are_answered_without_credentials_for_allowed_origins_only() {
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .http_line(&cors_lines(&format!("[{UI_ORIGIN:?}]"), true))
        .section(&htpasswd(dir.path()))
        .ready(Ready::V2Answers)
        .start();
    let alice = Endpoint::with_basic_auth(&reg.url(), "alice", "alice-pw");
    push_image(&alice, "cors/app", "v1", Kind::OciManifest);

    let preflight = |origin: &str, path: &str| {
        send(
            reg.request(Method::OPTIONS, path)
                .header("Origin", origin)
                .header("Access-Control-Request-Method", "DELETE")
                .header("Access-Control-Request-Headers", "authorization"),
        )
    };
    for path in [
        "/v2/_catalog",
        "/v2/cors/app/manifests/v1",
        "/v2/no/such/route/x",
    ] {
        let resp = preflight(UI_ORIGIN, path);
        assert_eq!(resp.status, 204, "{path}: {}", resp.describe());
        assert_eq!(resp.header("access-control-allow-origin"), Some(UI_ORIGIN));
        assert_eq!(
            resp.header("access-control-allow-credentials"),
            Some("true")
        );
        assert!(resp
            .must_header("access-control-allow-methods")
            .contains("DELETE"));
        assert!(resp
            .must_header("access-control-allow-headers")
            .to_ascii_lowercase()
            .contains("authorization"));
        assert_eq!(resp.header("access-control-max-age"), Some("120"));
        assert_eq!(resp.header("www-authenticate"), None, "{path}");
    }
    // Other origins (a longer host, another port, another scheme) are refused, still without
    // asking for credentials.
    for origin in [
        "http://127.0.0.1:12",
        "http://127.0.0.1",
        "https://127.0.0.1:1",
        "null",
    ] {
        let resp = preflight(origin, "/v2/_catalog");
        assert_error(&resp, 403, "DENIED");
        assert_eq!(resp.header("access-control-allow-origin"), None, "{origin}");
    }
    // No handler ran: the access log names the preflights as such, and nothing was deleted.
    let lines = wait_until(WAIT_LIMIT, || {
        let l = reg.access_lines();
        (l.iter().filter(|l| l.contains("preflight")).count() >= 7).then_some(l)
    });
    assert!(lines.is_some(), "access log:\n{}", reg.log());
    send(
        alice
            .get("/v2/cors/app/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    )
    .assert_status(200);

    // Actual requests from the allowed origin: the exact origin, credentials, exposed headers.
    let resp = send(
        alice
            .head("/v2/cors/app/manifests/v1")
            .header("Accept", OCI_MANIFEST)
            .header("Origin", UI_ORIGIN),
    );
    resp.assert_status(200);
    assert_eq!(resp.header("access-control-allow-origin"), Some(UI_ORIGIN));
    assert_eq!(
        resp.header("access-control-allow-credentials"),
        Some("true")
    );
    let exposed = resp.must_header("access-control-expose-headers");
    for h in ["Docker-Content-Digest", "Link", "Location"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    assert!(resp.header_all("vary").iter().any(|v| v.contains("Origin")));
    // Without credentials the API still challenges, with CORS headers so the page can read it.
    let resp = send(reg.get("/v2/_catalog").header("Origin", UI_ORIGIN));
    assert_error(&resp, 401, "UNAUTHORIZED");
    assert_eq!(resp.header("access-control-allow-origin"), Some(UI_ORIGIN));
    // A request from elsewhere gets no CORS headers at all.
    let resp = send(
        alice
            .get("/v2/_catalog")
            .header("Origin", "http://evil.example"),
    );
    resp.assert_status(200);
    assert_eq!(resp.header("access-control-allow-origin"), None);
    assert_eq!(resp.header("access-control-allow-credentials"), None);
}

#[test]
fn wildcard_origin_never_goes_out_with_credentials() {
    // Refused in http.cors ...
    let mut reg = Registry::builder(Driver::Inmemory)
        .http_line(&cors_lines("['*']", true))
        .spawn();
    let status = reg.wait_exit(WAIT_LIMIT);
    let stderr = reg.stderr_text();
    assert!(
        status.is_some_and(|s| !s.success()),
        "the server started:\n{stderr}"
    );
    assert!(
        stderr.contains("http.cors.allowcredentials"),
        "the error names the key: {stderr}"
    );

    // ... and dropped when http.headers asks for both, as registry:2 configs sometimes do.
    let reg = Registry::builder(Driver::Inmemory)
        .response_header("Access-Control-Allow-Origin", "*")
        .response_header("Access-Control-Allow-Credentials", "true")
        .start();
    let resp = send(reg.get("/v2/").header("Origin", UI_ORIGIN));
    resp.assert_status(200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(resp.header("access-control-allow-credentials"), None);

    // A wildcard without credentials answers preflights with `*`.
    let reg = Registry::builder(Driver::Inmemory)
        .http_line(&cors_lines("['*']", false))
        .start();
    let resp = send(
        reg.request(Method::OPTIONS, "/v2/_catalog")
            .header("Origin", "http://anything.example")
            .header("Access-Control-Request-Method", "GET"),
    );
    assert_eq!(resp.status, 204, "{}", resp.describe());
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(resp.header("access-control-allow-credentials"), None);
}

#[test]
fn http_headers_keep_registry2_behaviour_without_cors() {
    // The seed configs' CORS through http.headers: every answer carries the headers, and a
    // preflight goes to the API as in registry:2 (which answers it like any other request).
    let reg = Registry::builder(Driver::Inmemory)
        .response_header("Access-Control-Allow-Origin", "*")
        .response_header("Access-Control-Allow-Methods", "HEAD, GET, OPTIONS, DELETE")
        .start();
    for method in [Method::GET, Method::OPTIONS] {
        let resp = send(
            reg.request(method.clone(), "/v2/")
                .header("Origin", UI_ORIGIN)
                .header("Access-Control-Request-Method", "GET"),
        );
        assert!(resp.status < 500, "{method}: {}", resp.describe());
        assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
        assert_eq!(
            resp.header("access-control-allow-methods"),
            Some("HEAD, GET, OPTIONS, DELETE")
        );
    }
}
