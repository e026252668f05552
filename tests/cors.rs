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
    let alice = Endpoint::with_basic_auth(reg.url(), "alice", "alice-pw");
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
    let logged = wait_until(WAIT_LIMIT, || {
        let l = reg.access_lines();
        l.iter().filter(|l| l.contains("handler=preflight")).count() >= 7
    });
    assert!(logged, "access log:\n{}", reg.log());
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

/// Serves `html` to every request on a free 127.0.0.1 port until dropped: the page of a
/// front-end on another origin.
struct PageServer {
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PageServer {
    fn start(html: String) -> PageServer {
        Self::start_on(0, html)
    }

    /// On `port` (0: any free one).
    fn start_on(port: u16, html: String) -> PageServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
            while !flag.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
                let Ok((mut s, _)) = listener.accept() else {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                };
                let _ = s.set_nonblocking(false);
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (status, body) = if head.starts_with(b"GET / ") {
                    ("200 OK", html.as_str())
                } else {
                    ("404 Not Found", "")
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        PageServer {
            port,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/", self.port)
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A front-end's script: list the catalog, read a digest, delete a tag, list the tags again,
/// all with credentials; the outcome as JSON in `#result`.
fn front_end(registry: &str) -> String {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode("alice:alice-pw");
    format!(
        r#"<!DOCTYPE html><html><head><meta charset="utf-8"><title>front-end</title></head><body><pre id="result">running</pre><script>
const reg = "{registry}";
const auth = {{"Authorization": "Basic {basic}"}};
(async () => {{
  const out = {{}};
  try {{
    let r = await fetch(reg + "/v2/_catalog", {{headers: auth, credentials: "include"}});
    out.catalog = (await r.json()).repositories;
    r = await fetch(reg + "/v2/cors/app/manifests/v1", {{method: "HEAD", credentials: "include",
      headers: Object.assign({{"Accept": "{OCI_MANIFEST}"}}, auth)}});
    out.digest = r.headers.get("Docker-Content-Digest");
    r = await fetch(reg + "/v2/cors/app/manifests/v1", {{method: "DELETE", headers: auth, credentials: "include"}});
    out.deleted = r.status;
    r = await fetch(reg + "/v2/cors/app/tags/list", {{headers: auth, credentials: "include"}});
    out.tags = (await r.json()).tags;
  }} catch (e) {{ out.error = String(e); }}
  document.getElementById("result").textContent = JSON.stringify(out);
}})();
</script></body></html>"#
    )
}

#[test]
fn a_front_end_on_another_origin_lists_and_deletes_with_credentials_in_a_browser() {
    use support::browser::{self, Browser};
    assert!(
        browser::available(),
        "chromium and chromium-driver are needed (bash .ci/test installs them)"
    );
    // The page servers first: their ports are the origins the registry allows (or not).
    let placeholder = PageServer::start(String::new());
    let allowed_origin = format!("http://127.0.0.1:{}", placeholder.port);
    drop(placeholder);
    let dir = tempfile::tempdir().unwrap();
    let reg = Registry::builder(Driver::Filesystem)
        .delete_enabled(true)
        .http_line(&cors_lines(&format!("[{allowed_origin:?}]"), true))
        .section(&htpasswd(dir.path()))
        .ready(Ready::V2Answers)
        .start();
    let alice = Endpoint::with_basic_auth(reg.url(), "alice", "alice-pw");
    let image = push_image(&alice, "cors/app", "v1", Kind::OciManifest);
    push_manifest(&alice, "cors/app", "v2", &image);

    let b = Browser::start(1024, 700);
    let result = |b: &Browser| {
        let mut text = String::new();
        let done = wait_until(WAIT_LIMIT, || {
            text = b.text(&b.find("#result"));
            text != "running"
        });
        assert!(done, "the page's script did not finish");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()
    };

    // From an origin that is not allowed, the browser blocks every call.
    let elsewhere = PageServer::start(front_end(reg.url()));
    b.goto(&elsewhere.url());
    let out = result(&b);
    assert!(
        out["error"]
            .as_str()
            .is_some_and(|e| e.contains("Failed to fetch")),
        "{out}"
    );
    send(
        alice
            .head("/v2/cors/app/manifests/v1")
            .header("Accept", OCI_MANIFEST),
    )
    .assert_status(200);

    // From the allowed origin (the same port, now serving the front-end), everything works.
    let port = allowed_origin
        .rsplit(':')
        .next()
        .unwrap()
        .parse::<u16>()
        .unwrap();
    let front = PageServer::start_on(port, front_end(reg.url()));
    b.goto(&front.url());
    let out = result(&b);
    assert_eq!(out["catalog"], serde_json::json!(["cors/app"]), "{out}");
    assert_eq!(out["digest"], serde_json::json!(image.digest), "{out}");
    assert_eq!(out["deleted"], serde_json::json!(202), "{out}");
    assert_eq!(out["tags"], serde_json::json!(["v2"]), "{out}");
    b.screenshot("cors-front-end");
}
