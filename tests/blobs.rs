//! Reading and deleting blobs: GET, HEAD, ranges, DELETE.

mod support;

use support::*;

const LEN: usize = 10_000;

fn get_and_head(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let path = format!("/v2/library/app/blobs/{}", blob.digest);

    let resp = send(reg.get(&path));
    resp.assert_status(200);
    assert!(resp.body == blob.data, "GET returns the bytes pushed");
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(resp.header("content-length"), Some("10000"));
    assert_eq!(resp.header("accept-ranges"), Some("bytes"));

    let resp = send(reg.head(&path));
    resp.assert_status(200);
    assert!(resp.body.is_empty());
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_eq!(resp.header("content-length"), Some("10000"));
}

fn ranges(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let path = format!("/v2/library/app/blobs/{}", blob.digest);
    let ranged = |range: &str| send(reg.get(&path).header("range", range));

    let cases: [(&str, usize, usize); 4] = [
        ("bytes=10-19", 10, 19),
        ("bytes=-100", LEN - 100, LEN - 1),
        ("bytes=9990-", 9990, LEN - 1),
        // An end past the blob is clamped (RFC 9110 14.1.1).
        ("bytes=9995-20000", 9995, LEN - 1),
    ];
    for (range, start, end) in cases {
        let resp = ranged(range);
        assert_eq!(resp.status, 206, "Range {range}: {}", resp.describe());
        assert_eq!(
            resp.header("content-range"),
            Some(format!("bytes {start}-{end}/{LEN}").as_str()),
            "Range {range}"
        );
        assert_eq!(
            resp.header("content-length"),
            Some((end - start + 1).to_string().as_str()),
            "Range {range}"
        );
        assert!(resp.body == blob.data[start..=end], "Range {range}: body");
    }

    let resp = ranged("bytes=20000-20010");
    assert_eq!(resp.status, 416, "{}", resp.describe());
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes */{LEN}").as_str())
    );
}

fn delete_enabled(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let path = format!("/v2/library/app/blobs/{}", blob.digest);

    let resp = send(reg.delete(&path));
    resp.assert_status(202);

    assert_error(&send(reg.get(&path)), 404, "BLOB_UNKNOWN");
    let head = send(reg.head(&path));
    head.assert_status(404);
    assert!(head.body.is_empty());
    assert_error(&send(reg.delete(&path)), 404, "BLOB_UNKNOWN");
}

fn delete_disabled(driver: Driver) {
    let reg = Registry::builder(driver).delete_enabled(false).start();
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let path = format!("/v2/library/app/blobs/{}", blob.digest);

    assert_error(&send(reg.delete(&path)), 405, "UNSUPPORTED");
    let resp = send(reg.get(&path));
    resp.assert_status(200);
    assert!(resp.body == blob.data);
}

fn unknown_blob(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let missing = sha256_digest(b"never pushed");

    assert_error(
        &send(reg.get(&format!("/v2/library/app/blobs/{missing}"))),
        404,
        "BLOB_UNKNOWN",
    );
    let head = send(reg.head(&format!("/v2/library/app/blobs/{missing}")));
    head.assert_status(404);
    assert!(head.body.is_empty());

    // A blob is only visible in the repositories it was pushed to (or mounted into).
    assert_error_in(
        &send(reg.get(&format!("/v2/library/other/blobs/{}", blob.digest))),
        &[404],
        &["BLOB_UNKNOWN", "NAME_UNKNOWN"],
    );
    assert_error_in(
        &send(reg.get(&format!("/v2/no/such/repo/blobs/{missing}"))),
        &[404],
        &["BLOB_UNKNOWN", "NAME_UNKNOWN"],
    );
}

for_each_driver!(
    get_and_head,
    ranges,
    delete_enabled,
    delete_disabled,
    unknown_blob
);
