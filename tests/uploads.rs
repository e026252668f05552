//! Upload sessions: POST, PATCH, PUT, status, cancel, mount, and the `_state` token.

mod support;

use support::*;

const REPO: &str = "team/app";

fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

fn assert_blob(reg: &Registry, repo: &str, blob: &Blob) {
    let resp = send(reg.get(&blob_path(repo, &blob.digest)));
    resp.assert_status(200);
    assert!(resp.body == blob.data, "blob {} reads back", blob.digest);
}

fn assert_no_blob(reg: &Registry, repo: &str, digest: &str) {
    let resp = send(reg.get(&blob_path(repo, digest)));
    assert_error_in(&resp, &[404], &["BLOB_UNKNOWN", "NAME_UNKNOWN"]);
}

/// The blob has no `_layers` link in `repo` and no data under `blobs/`.
fn assert_not_on_disk(reg: &Registry, driver: Driver, repo: &str, digest: &str) {
    if driver != Driver::Filesystem {
        return;
    }
    let hex = digest_hex(digest);
    let link = reg
        .v2_root()
        .join(format!("repositories/{repo}/_layers/sha256/{hex}/link"));
    assert!(!link.exists(), "{} must not exist", link.display());
    let data = reg
        .v2_root()
        .join(format!("blobs/sha256/{}/{hex}/data", &hex[..2]));
    assert!(!data.exists(), "{} must not exist", data.display());
}

fn patch(reg: &Registry, location: &str, range: Option<(usize, usize)>, data: &[u8]) -> Resp {
    let mut request = reg
        .patch(location)
        .header("content-type", "application/octet-stream")
        .body(data.to_vec());
    if let Some((start, end)) = range {
        request = request.header("content-range", format!("{start}-{end}"));
    }
    send(request)
}

fn post_starts_a_session(driver: Driver) {
    let reg = Registry::start(driver);
    let resp = send(reg.post(&format!("/v2/{REPO}/blobs/uploads/")));
    resp.assert_status(202);
    let uuid = resp.must_header("docker-upload-uuid").to_string();
    assert!(!uuid.is_empty());
    let location = location_path(resp.must_header("location"));
    assert!(
        location.starts_with(&format!("/v2/{REPO}/blobs/uploads/{uuid}")),
        "Location {location} names the session"
    );
    assert_eq!(resp.header("range"), Some("0-0"));
    assert_eq!(resp.header("content-length"), Some("0"));
}

fn single_post_upload(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(5000);
    let resp = send(
        reg.post(&format!("/v2/{REPO}/blobs/uploads/?digest={}", blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
    );
    resp.assert_status(201);
    assert_eq!(
        location_path(resp.must_header("location")),
        blob_path(REPO, &blob.digest)
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_blob(&reg, REPO, &blob);
}

/// Clients pushing the same blob at once, monolithically, to one repository and another: each
/// is told it is stored (the content is identical), and it reads back whole.
fn concurrent_monolithic_puts_of_one_blob(driver: Driver) {
    let reg = Registry::start(driver);
    for len in [5000, 6 * 1024 * 1024 + 3] {
        let blob = Blob::random(len);
        let answers: Vec<Resp> = std::thread::scope(|s| {
            let pushes: Vec<_> = (0..6)
                .map(|i| {
                    let (reg, blob) = (&reg, &blob);
                    let repo = if i % 2 == 0 { REPO } else { "team/other" };
                    s.spawn(move || {
                        send(
                            reg.post(&format!("/v2/{repo}/blobs/uploads/?digest={}", blob.digest))
                                .header("content-type", "application/octet-stream")
                                .body(blob.data.clone()),
                        )
                    })
                })
                .collect();
            pushes.into_iter().map(|p| p.join().unwrap()).collect()
        });
        for resp in &answers {
            resp.assert_status(201);
        }
        assert_blob(&reg, REPO, &blob);
        assert_blob(&reg, "team/other", &blob);
    }
}

fn post_then_put(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(5000);
    let location = start_upload(&reg, REPO);
    let resp = send(
        reg.put(&with_digest(&location, &blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
    );
    resp.assert_status(201);
    assert_eq!(
        location_path(resp.must_header("location")),
        blob_path(REPO, &blob.digest)
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_blob(&reg, REPO, &blob);
}

/// Chunked uploads: PATCH with and without `Content-Range`, PUT with and without a last chunk.
fn chunked(driver: Driver) {
    let reg = Registry::start(driver);
    for with_range in [true, false] {
        for final_chunk in [true, false] {
            let blob = Blob::random(10_000);
            let mut location = start_upload(&reg, REPO);
            let body_end = if final_chunk { 7000 } else { 10_000 };
            let mut offset = 0;
            for part in blob.data[..body_end].chunks(3000) {
                let end = offset + part.len() - 1;
                let range = with_range.then_some((offset, end));
                let resp = patch(&reg, &location, range, part);
                resp.assert_status(202);
                assert_eq!(resp.header("range"), Some(format!("0-{end}").as_str()));
                resp.must_header("docker-upload-uuid");
                location = resp.must_header("location").to_string();
                offset = end + 1;
            }
            let mut put = reg.put(&with_digest(&location, &blob.digest));
            if final_chunk {
                put = put
                    .header("content-type", "application/octet-stream")
                    .body(blob.data[body_end..].to_vec());
            }
            let resp = send(put);
            resp.assert_status(201);
            assert_eq!(
                location_path(resp.must_header("location")),
                blob_path(REPO, &blob.digest)
            );
            assert_eq!(
                resp.header("docker-content-digest"),
                Some(blob.digest.as_str())
            );
            assert_blob(&reg, REPO, &blob);
        }
    }
}

fn status(driver: Driver) {
    let reg = Registry::start(driver);
    let location = start_upload(&reg, REPO);
    let resp = patch(&reg, &location, Some((0, 99)), &[7u8; 100]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let uuid = resp.must_header("docker-upload-uuid").to_string();

    let resp = send(reg.get(&location));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-99"));
    assert_eq!(resp.header("docker-upload-uuid"), Some(uuid.as_str()));
    resp.must_header("location");
    assert!(resp.body.is_empty());
}

fn patch_out_of_order(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(300);
    let location = start_upload(&reg, REPO);
    let resp = patch(&reg, &location, Some((0, 99)), &blob.data[..100]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();

    // Skips bytes 100..149.
    let resp = patch(&reg, &location, Some((150, 299)), &blob.data[150..]);
    assert_eq!(resp.status, 416, "{}", resp.describe());
    assert_eq!(resp.header("range"), Some("0-99"));
    // Starts again inside what was written.
    let resp = patch(&reg, &location, Some((50, 149)), &blob.data[50..150]);
    assert_eq!(resp.status, 416, "{}", resp.describe());
    assert_eq!(resp.header("range"), Some("0-99"));

    // The refused chunks were not written: the session goes on from 100.
    let resp = send(reg.get(&location));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-99"));
    let resp = patch(&reg, &location, Some((100, 299)), &blob.data[100..]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    send(reg.put(&with_digest(&location, &blob.digest))).assert_status(201);
    assert_blob(&reg, REPO, &blob);
}

fn cancel(driver: Driver) {
    let reg = Registry::start(driver);
    let location = start_upload(&reg, REPO);
    let resp = patch(&reg, &location, Some((0, 9)), b"0123456789");
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();

    send(reg.delete(&location)).assert_status(204);
    assert_error(&send(reg.get(&location)), 404, "BLOB_UPLOAD_UNKNOWN");
    assert_error(
        &patch(&reg, &location, Some((10, 19)), b"0123456789"),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    let digest = sha256_digest(b"0123456789");
    assert_error(
        &send(reg.put(&with_digest(&location, &digest))),
        404,
        "BLOB_UPLOAD_UNKNOWN",
    );
    assert_no_blob(&reg, REPO, &digest);
}

fn wrong_digest(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(4000);
    let claimed = sha256_digest(b"something else entirely");
    let location = start_upload(&reg, REPO);
    let resp = send(
        reg.put(&with_digest(&location, &claimed))
            .header("content-type", "application/octet-stream")
            .body(blob.data.clone()),
    );
    assert_error(&resp, 400, "DIGEST_INVALID");

    assert_no_blob(&reg, REPO, &claimed);
    assert_no_blob(&reg, REPO, &blob.digest);
    assert_not_on_disk(&reg, driver, REPO, &claimed);
    assert_not_on_disk(&reg, driver, REPO, &blob.digest);

    // Same with a chunked upload completed by an empty PUT.
    let location = start_upload(&reg, REPO);
    let resp = patch(&reg, &location, Some((0, 3999)), &blob.data);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let resp = send(reg.put(&with_digest(&location, &claimed)));
    assert_error(&resp, 400, "DIGEST_INVALID");
    assert_no_blob(&reg, REPO, &claimed);
    assert_no_blob(&reg, REPO, &blob.digest);
    assert_not_on_disk(&reg, driver, REPO, &claimed);
    assert_not_on_disk(&reg, driver, REPO, &blob.digest);
}

fn cross_repository_mount(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(4000);
    push(&reg, "source/app", &blob);

    let resp = send(reg.post(&format!(
        "/v2/target/app/blobs/uploads/?mount={}&from=source/app",
        blob.digest
    )));
    resp.assert_status(201);
    assert_eq!(
        location_path(resp.must_header("location")),
        blob_path("target/app", &blob.digest)
    );
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(blob.digest.as_str())
    );
    assert_blob(&reg, "target/app", &blob);
    assert_blob(&reg, "source/app", &blob);

    // Not in `from`: a new session instead.
    let other = Blob::random(100);
    let resp = send(reg.post(&format!(
        "/v2/third/app/blobs/uploads/?mount={}&from=source/app",
        other.digest
    )));
    resp.assert_status(202);
    resp.must_header("docker-upload-uuid");
    let location = resp.must_header("location").to_string();
    assert!(location_path(&location).starts_with("/v2/third/app/blobs/uploads/"));
    assert_no_blob(&reg, "third/app", &other.digest);
    // The session works.
    let resp = send(
        reg.put(&with_digest(&location, &other.digest))
            .header("content-type", "application/octet-stream")
            .body(other.data.clone()),
    );
    resp.assert_status(201);
    assert_blob(&reg, "third/app", &other);
}

/// The `_state` query parameter of an upload URL, split out.
fn split_state(location: &str) -> (String, String, String) {
    let start = location
        .find("_state=")
        .unwrap_or_else(|| panic!("upload Location carries a _state token: {location}"))
        + "_state=".len();
    let end = location[start..]
        .find('&')
        .map(|i| start + i)
        .unwrap_or(location.len());
    (
        location[..start].to_string(),
        location[start..end].to_string(),
        location[end..].to_string(),
    )
}

fn tampered_state(driver: Driver) {
    let reg = Registry::start(driver);
    let location = start_upload(&reg, REPO);
    let (before, state, after) = split_state(&location);
    // Change one character inside the HMAC part of the token.
    let mut chars: Vec<char> = state.chars().collect();
    chars[10] = if chars[10] == 'A' { 'B' } else { 'A' };
    let tampered: String = chars.into_iter().collect();
    let bad = format!("{before}{tampered}{after}");

    let resp = patch(&reg, &bad, Some((0, 9)), b"0123456789");
    assert_error(&resp, 404, "BLOB_UPLOAD_INVALID");
    let digest = sha256_digest(b"0123456789");
    let resp = send(
        reg.put(&with_digest(&bad, &digest))
            .header("content-type", "application/octet-stream")
            .body(b"0123456789".to_vec()),
    );
    assert_error(&resp, 404, "BLOB_UPLOAD_INVALID");
    assert_no_blob(&reg, REPO, &digest);

    // The genuine session is untouched.
    let resp = send(reg.get(&location));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-0"));
}

fn session_bound_to_repository(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(200);
    let location = start_upload(&reg, "repo/a");
    let resp = patch(&reg, &location, Some((0, 99)), &blob.data[..100]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let files_before = list_files(reg.root());

    let stolen = location.replacen("/v2/repo/a/", "/v2/repo/b/", 1);
    assert_ne!(stolen, location);
    let resp = patch(&reg, &stolen, Some((100, 199)), &blob.data[100..]);
    assert_error_in(&resp, &[400, 404], &["BLOB_UPLOAD_INVALID"]);
    let resp = send(
        reg.put(&with_digest(&stolen, &blob.digest))
            .header("content-type", "application/octet-stream")
            .body(blob.data[100..].to_vec()),
    );
    assert_error_in(&resp, &[400, 404], &["BLOB_UPLOAD_INVALID"]);

    assert_eq!(list_files(reg.root()), files_before, "nothing was written");
    assert_no_blob(&reg, "repo/b", &blob.digest);
    assert_no_blob(&reg, "repo/a", &blob.digest);
    let resp = send(reg.get(&location));
    resp.assert_status(204);
    assert_eq!(resp.header("range"), Some("0-99"));
}

/// The sequence that once stored 22 bytes under the digest of 42: a chunk resent on the
/// POST's `Location` after the upload moved on.
fn stale_location_cannot_rewind(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(42);
    let first = start_upload(&reg, REPO);
    let resp = patch(&reg, &first, Some((0, 21)), &blob.data[..22]);
    resp.assert_status(202);
    assert_eq!(resp.header("range"), Some("0-21"));
    let second = resp.must_header("location").to_string();
    let resp = patch(&reg, &second, Some((22, 41)), &blob.data[22..]);
    resp.assert_status(202);
    assert_eq!(
        resp.header("range"),
        Some("0-41"),
        "Range ends where Content-Range did"
    );
    let newest = resp.must_header("location").to_string();

    // The resent chunk: 416 with the real range and a Location to go on from.
    let resp = patch(&reg, &first, Some((0, 21)), &blob.data[..22]);
    assert_error(&resp, 416, "RANGE_INVALID");
    assert_eq!(resp.header("range"), Some("0-41"));
    let fresh = resp.must_header("location").to_string();
    assert!(fresh.contains("_state="), "{fresh}");
    // Without Content-Range too.
    let resp = patch(&reg, &first, None, &blob.data[..22]);
    assert_error(&resp, 416, "RANGE_INVALID");
    // Status on an older Location reports what is stored, not the token's offset.
    for location in [&first, &second] {
        let resp = send(reg.get(location));
        resp.assert_status(204);
        assert_eq!(resp.header("range"), Some("0-41"));
    }

    send(reg.put(&with_digest(&newest, &blob.digest))).assert_status(201);
    assert_blob(&reg, REPO, &blob);
    let _ = fresh;
}

/// A PUT on an older token finishes exactly what is stored: rehashed, and published only if
/// the digest matches those bytes.
fn put_on_a_stale_token_checks_the_stored_bytes(driver: Driver) {
    let reg = Registry::start(driver);
    let blob = Blob::random(3000);

    // Stored 3000 bytes, token says 1000; the digest is the whole blob's: 201.
    let first = start_upload(&reg, REPO);
    let resp = patch(&reg, &first, Some((0, 999)), &blob.data[..1000]);
    let at_1000 = resp.must_header("location").to_string();
    let resp = patch(&reg, &at_1000, Some((1000, 2999)), &blob.data[1000..]);
    resp.assert_status(202);
    send(reg.put(&with_digest(&at_1000, &blob.digest))).assert_status(201);
    assert_blob(&reg, REPO, &blob);

    // Stored 3000 bytes, token says 1000, and the digest is of those first 1000 bytes (what
    // that token's client believes it sent): the stored bytes do not match, 400, nothing
    // readable under either digest.
    let other = Blob::random(3000);
    let prefix = sha256_digest(&other.data[..1000]);
    let first = start_upload(&reg, REPO);
    let resp = patch(&reg, &first, Some((0, 999)), &other.data[..1000]);
    let at_1000 = resp.must_header("location").to_string();
    patch(&reg, &at_1000, Some((1000, 2999)), &other.data[1000..]).assert_status(202);
    let resp = send(reg.put(&with_digest(&at_1000, &prefix)));
    assert_error(&resp, 400, "DIGEST_INVALID");
    for digest in [&prefix, &other.digest] {
        assert_no_blob(&reg, REPO, digest);
        assert_not_on_disk(&reg, driver, REPO, digest);
    }

    // A last chunk on a stale token is out of order: 416, nothing published.
    let first = start_upload(&reg, REPO);
    let resp = patch(&reg, &first, Some((0, 999)), &other.data[..1000]);
    resp.assert_status(202);
    let resp = send(
        reg.put(&with_digest(&first, &other.digest))
            .header("content-type", "application/octet-stream")
            .header("content-range", "0-2999")
            .body(other.data.clone()),
    );
    assert_error(&resp, 416, "RANGE_INVALID");
    assert_eq!(resp.header("range"), Some("0-999"));
    assert_no_blob(&reg, REPO, &other.digest);
}

/// sha512 blobs (OCI distribution-spec after 1.1.1): chunked with `digest-algorithm`,
/// monolithic, and read back under their digest.
fn sha512_blobs(driver: Driver) {
    use sha2::Digest as _;
    let reg = Registry::start(driver);
    let data = Prng::new(512).bytes(70_000);
    let digest = format!("sha512:{}", hex(&sha2::Sha512::digest(&data)));

    let resp = send(reg.post(&format!(
        "/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"
    )));
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let resp = patch(&reg, &location, Some((0, 29_999)), &data[..30_000]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let resp = patch(&reg, &location, Some((30_000, 69_999)), &data[30_000..]);
    resp.assert_status(202);
    let location = resp.must_header("location").to_string();
    let resp = send(reg.put(&with_digest(&location, &digest)));
    resp.assert_status(201);
    assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
    for method in ["GET", "HEAD"] {
        let resp = send(reg.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            &blob_path(REPO, &digest),
        ));
        resp.assert_status(200);
        assert_eq!(resp.header("docker-content-digest"), Some(digest.as_str()));
        assert_eq!(resp.header("content-length"), Some("70000"));
        if method == "GET" {
            assert!(resp.body == data);
        }
    }

    // Monolithic, with the digest up front.
    let small = b"sha512 in one request".to_vec();
    let small_digest = format!("sha512:{}", hex(&sha2::Sha512::digest(&small)));
    let resp = send(
        reg.post(&format!("/v2/{REPO}/blobs/uploads/?digest={small_digest}"))
            .header("content-type", "application/octet-stream")
            .body(small.clone()),
    );
    resp.assert_status(201);
    assert!(send(reg.get(&blob_path(REPO, &small_digest))).body == small);

    // A sha256 digest finishes a sha512 session too (the stored bytes are rehashed).
    let blob = Blob::random(5000);
    let resp = send(reg.post(&format!(
        "/v2/{REPO}/blobs/uploads/?digest-algorithm=sha512"
    )));
    let location = resp.must_header("location").to_string();
    let resp = patch(&reg, &location, Some((0, 4999)), &blob.data);
    let location = resp.must_header("location").to_string();
    send(reg.put(&with_digest(&location, &blob.digest))).assert_status(201);
    assert_blob(&reg, REPO, &blob);

    // An algorithm the registry does not compute.
    let resp = send(reg.post(&format!("/v2/{REPO}/blobs/uploads/?digest-algorithm=md5")));
    assert_error(&resp, 400, "DIGEST_INVALID");
    let resp = send(reg.get(&blob_path(REPO, "sha384:abcd")));
    assert_error_in(&resp, &[400, 404], &["DIGEST_INVALID", "BLOB_UNKNOWN"]);
}

for_each_driver!(
    stale_location_cannot_rewind,
    put_on_a_stale_token_checks_the_stored_bytes,
    sha512_blobs,
    post_starts_a_session,
    single_post_upload,
    concurrent_monolithic_puts_of_one_blob,
    post_then_put,
    chunked,
    status,
    patch_out_of_order,
    cancel,
    wrong_digest,
    cross_repository_mount,
    tampered_state,
    session_bound_to_repository,
);
