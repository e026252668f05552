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

/// `Docker-Content-Digest` and `Content-Length` on every blob and manifest GET/HEAD answer:
/// 200, 206, 416, and with redirects on (S3) the 307 and the HEAD; a 304 carries the digest
/// (HTTP/1.1 leaves a bodiless 304 without Content-Length).
fn digest_and_length_everywhere(driver: Driver) {
    let reg = Registry::builder(driver)
        .redirect(matches!(driver, Driver::S3 | Driver::Azure))
        .start();
    let blob = Blob::random(LEN);
    push(&reg, "library/app", &blob);
    let image = push_image(&reg, "library/app", "v1", Kind::OciManifest);
    let path = format!("/v2/library/app/blobs/{}", blob.digest);
    let etag = format!("\"{}\"", blob.digest);
    let check = |resp: &Resp, what: &str, digest: &str, length: &str| {
        assert_eq!(
            resp.header("docker-content-digest"),
            Some(digest),
            "{what}: {}",
            resp.describe()
        );
        let expected = (resp.status != 304).then_some(length);
        assert_eq!(
            resp.header("content-length"),
            expected,
            "{what}: {}",
            resp.describe()
        );
    };
    let get = send(reg.get(&path));
    if matches!(driver, Driver::S3 | Driver::Azure) {
        get.assert_status(307);
        check(&get, "GET redirected", &blob.digest, "0");
    } else {
        get.assert_status(200);
        check(&get, "GET", &blob.digest, "10000");
        let resp = send(reg.get(&path).header("range", "bytes=0-9"));
        resp.assert_status(206);
        check(&resp, "GET Range", &blob.digest, "10");
        let resp = send(reg.get(&path).header("range", "bytes=20000-"));
        resp.assert_status(416);
        check(&resp, "GET bad Range", &blob.digest, "0");
    }
    let resp = send(reg.head(&path));
    resp.assert_status(200);
    check(&resp, "HEAD", &blob.digest, "10000");
    for method in [reqwest::Method::HEAD, reqwest::Method::GET] {
        let resp = send(
            reg.request(method.clone(), &path)
                .header("if-none-match", &etag),
        );
        resp.assert_status(304);
        check(
            &resp,
            &format!("{method} If-None-Match"),
            &blob.digest,
            "10000",
        );
    }

    let mpath = format!("/v2/library/app/manifests/{}", image.digest);
    let size = image.body.len().to_string();
    for reference in ["v1", image.digest.as_str()] {
        let path = format!("/v2/library/app/manifests/{reference}");
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let resp = send(
                reg.request(method.clone(), &path)
                    .header("accept", OCI_MANIFEST),
            );
            resp.assert_status(200);
            check(
                &resp,
                &format!("{method} {reference}"),
                &image.digest,
                &size,
            );
            let resp = send(
                reg.request(method.clone(), &mpath)
                    .header("accept", OCI_MANIFEST)
                    .header("if-none-match", format!("\"{}\"", image.digest)),
            );
            resp.assert_status(304);
            check(
                &resp,
                &format!("{method} If-None-Match"),
                &image.digest,
                &size,
            );
        }
    }
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
    digest_and_length_everywhere,
    get_and_head,
    ranges,
    delete_enabled,
    delete_disabled,
    unknown_blob
);
