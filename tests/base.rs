//! The base endpoints and the headers every response carries.

mod support;

use serde_json::json;
use support::*;

fn root_and_version_check(driver: Driver) {
    let reg = Registry::start(driver);

    let resp = send(reg.get("/"));
    resp.assert_status(200);

    let resp = send(reg.get("/v2/"));
    resp.assert_status(200);
    assert_eq!(resp.json(), json!({}));
    assert!(
        resp.header("content-type")
            .unwrap_or("")
            .starts_with("application/json"),
        "{}",
        resp.describe()
    );

    let resp = send(reg.head("/v2/"));
    resp.assert_status(200);
    assert!(resp.body.is_empty());
}

fn api_version_header_on_errors_and_404s(driver: Driver) {
    let reg = Registry::start(driver);
    // `send` checks `Docker-Distribution-API-Version: registry/2.0` on each of these.
    let zero = format!("sha256:{}", "0".repeat(64));
    let unknown_blob = send(reg.get(&format!("/v2/nothing/here/blobs/{zero}")));
    assert_error(&unknown_blob, 404, "BLOB_UNKNOWN");
    let unknown_manifest = send(reg.get("/v2/nothing/manifests/latest"));
    assert_error_in(
        &unknown_manifest,
        &[404],
        &["MANIFEST_UNKNOWN", "NAME_UNKNOWN"],
    );
    let bad_digest = send(reg.get("/v2/nothing/blobs/sha256:abc"));
    assert_error(&bad_digest, 400, "DIGEST_INVALID");
    let no_route = send(reg.get("/v2/nothing/neither-blobs-nor-manifests"));
    assert_eq!(no_route.status, 404, "{}", no_route.describe());
    let not_v2 = send(reg.get("/not-an-api-path"));
    assert_eq!(not_v2.status, 404, "{}", not_v2.describe());
}

fn configured_headers_applied(driver: Driver) {
    let reg = Registry::builder(driver)
        .response_header("X-Wharf-Test", "configured")
        .start();
    let zero = format!("sha256:{}", "0".repeat(64));
    for path in [
        "/v2/".to_string(),
        format!("/v2/some/repo/blobs/{zero}"),
        "/v2/some/repo/tags/list".to_string(),
        "/v2/_catalog".to_string(),
        "/".to_string(),
    ] {
        let resp = send(reg.get(&path));
        assert_eq!(
            resp.header("x-content-type-options"),
            Some("nosniff"),
            "GET {path}: {}",
            resp.describe()
        );
        assert_eq!(
            resp.header("x-wharf-test"),
            Some("configured"),
            "GET {path}: {}",
            resp.describe()
        );
    }
}

for_each_driver!(
    root_and_version_check,
    api_version_header_on_errors_and_404s,
    configured_headers_applied,
);
