//! `Retry-After` on every 503 (and 429): while a health check fails, on the main port and the
//! debug server, and when the object storage cannot be reached.

mod support;

use support::*;

fn assert_retry_after(resp: &Resp, what: &str) {
    let value = resp
        .header("retry-after")
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {}", resp.describe()));
    let seconds: u64 = value
        .parse()
        .unwrap_or_else(|_| panic!("{what}: Retry-After {value:?} is not delay-seconds"));
    assert!((1..=60).contains(&seconds), "{what}: Retry-After {seconds}");
}

#[test]
fn failing_health_check() {
    let dir = tempfile::tempdir().unwrap();
    let down = dir.path().join("down");
    let reg = &Registry::builder(Driver::Filesystem)
        .section(&format!(
            "health:\n  file:\n    - file: {}\n      interval: 200ms\n",
            down.display()
        ))
        .debug_server(true)
        .start();
    std::fs::write(&down, b"maintenance").unwrap();
    let resp = retry_until(|| {
        let resp = send(reg.get("/v2/"));
        if resp.status == 503 {
            Ok(resp)
        } else {
            Err(resp)
        }
    });
    assert_error(&resp, 503, "UNAVAILABLE");
    assert_retry_after(&resp, "GET /v2/");
    let zero = format!("sha256:{}", "0".repeat(64));
    for (method, path) in [
        (reqwest::Method::GET, format!("/v2/a/blobs/{zero}")),
        (reqwest::Method::HEAD, "/v2/a/manifests/latest".to_string()),
        (reqwest::Method::POST, "/v2/a/blobs/uploads/".to_string()),
        (reqwest::Method::GET, "/".to_string()),
    ] {
        let resp = send(reg.request(method.clone(), &path));
        assert_eq!(resp.status, 503, "{method} {path}: {}", resp.describe());
        assert_retry_after(&resp, &format!("{method} {path}"));
    }
    // The debug server (no registry headers there).
    for path in ["/debug/health", "/readyz"] {
        let resp = http_client()
            .get(format!("http://127.0.0.1:{}{path}", reg.debug_port()))
            .send()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503, "{path}");
        let value = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap());
        assert_eq!(value, Some("5"), "{path}");
    }
}

#[test]
fn storage_unreachable() {
    let server = support::s3::shared();
    let proxy = ChaosProxy::start(format!("127.0.0.1:{}", server.port()));
    let target = S3Target {
        endpoint: proxy.endpoint(),
        bucket: server.create_bucket(),
    };
    let reg = Registry::builder(Driver::S3).s3_target(&target).start();
    let blob = Blob::random(1000);
    push(&reg, "down/app", &blob);
    let path = format!("/v2/down/app/blobs/{}", blob.digest);

    proxy.set(Chaos::Cut);
    for (method, path) in [
        (reqwest::Method::GET, path.clone()),
        (reqwest::Method::HEAD, path.clone()),
        (reqwest::Method::GET, "/v2/down/app/tags/list".to_string()),
        (
            reqwest::Method::POST,
            "/v2/down/app/blobs/uploads/".to_string(),
        ),
    ] {
        let resp = send(reg.request(method.clone(), &path));
        assert_eq!(resp.status, 503, "{method} {path}: {}", resp.describe());
        if method != reqwest::Method::HEAD {
            assert_error(&resp, 503, "UNAVAILABLE");
        }
        assert_retry_after(&resp, &format!("{method} {path}"));
    }
    proxy.set(Chaos::Pass);
    let resp = send(reg.get(&path));
    resp.assert_status(200);
    assert!(resp.body == blob.data);
}
